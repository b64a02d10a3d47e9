"""The feature extractors plugin: ``identity``, ``digits-cnn`` and ``inception-v3`` (images → feature vectors).

One module per extractor (``identity.py``, ``digits_cnn.py``, ``inception.py``), sharing the frozen
base in ``frozen.py``. Inputs are images in ``[-1, 1]``; the features feed Fréchet distances and
coverage metrics.
"""

from __future__ import annotations

from ganforge import hookimpl
from ganforge_plugins.extractors.digits_cnn import digits_cnn
from ganforge_plugins.extractors.identity import identity
from ganforge_plugins.extractors.inception import inception_v3

GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_feature_extractors(register) -> None:
    register("identity", identity, description="flattened samples as features (low-dimensional data, tests)")
    register("digits-cnn", digits_cnn,
             description="small CNN trained on the digits (shipped, SHA-256 checked): 64-d features, 10-class logits")
    register("inception-v3", inception_v3,
             description="FID Inception-v3, 2048-d pool3 features; weights from a local file, never downloaded")
