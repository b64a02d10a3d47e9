"""ganforge: GAN training on PyTorch Lightning with plugins for every component.

The public names are imported on first use (PEP 562), so ``import ganforge`` and the command
line's ``--help``/``--version`` do not import torch, and the CLI can set OpenMP's environment
(``OMP_WAIT_POLICY``) before torch starts its thread pool.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "DataInfo": "ganforge.contract.components",
    "Discriminator": "ganforge.contract.components",
    "FeatureExtractor": "ganforge.contract.components",
    "GANDataset": "ganforge.contract.components",
    "GANMetric": "ganforge.contract.components",
    "Generator": "ganforge.contract.components",
    "LossOutput": "ganforge.contract.components",
    "NotApplicable": "ganforge.contract.components",
    "Objective": "ganforge.contract.components",
    "adversarial_logits": "ganforge.contract.components",
    "hookimpl": "ganforge.contract.hookspecs",
}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below imports on demand
    from ganforge.contract.components import (
        DataInfo,
        Discriminator,
        FeatureExtractor,
        GANDataset,
        GANMetric,
        Generator,
        LossOutput,
        NotApplicable,
        Objective,
        adversarial_logits,
    )
    from ganforge.contract.hookspecs import hookimpl


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
