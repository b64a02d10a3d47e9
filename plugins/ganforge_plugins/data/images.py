"""The image datasets plugin: ``digits``, ``stacked-digits`` and ``image-folder``, none needing a download.

One module per dataset family (``digits.py``, ``image_folder.py``; the shared tensor dataset in
``image_tensors.py``). Every item is ``(x, y)`` with ``x`` a ``float32`` tensor ``(C, H, W)`` in
``[-1, 1]`` and ``y`` a ``long`` class index, or just ``x`` when built with ``labels=False``;
``info.protocol`` holds everything that defines the data (parameters, the split rule, content
hashes), so real-data statistics cached under it are never reused for different data.
"""

from __future__ import annotations

from ganforge import hookimpl
from ganforge_plugins.data.digits import digits, stacked_digits
from ganforge_plugins.data.image_folder import image_folder

GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_datasets(register) -> None:
    register("digits", digits, description="scikit-learn's handwritten digits: 1,797 greyscale 8×8 images, 10 classes (no download)")
    register("stacked-digits", stacked_digits,
             description="three digits stacked as RGB channels: 1,000 modes (offline Stacked MNIST)")
    register("image-folder", image_folder, description="a folder of PNG/JPEG images; class sub-folders become labels")
