"""ganforge: GAN training on PyTorch Lightning with plugins for every component."""

from ganforge.components import (
    DataInfo,
    Discriminator,
    FeatureExtractor,
    GANDataset,
    GANMetric,
    Generator,
    LossOutput,
    Objective,
    adversarial_logits,
)
from ganforge.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "DataInfo",
    "Discriminator",
    "FeatureExtractor",
    "GANDataset",
    "GANMetric",
    "Generator",
    "LossOutput",
    "Objective",
    "adversarial_logits",
    "hookimpl",
    "__version__",
]
