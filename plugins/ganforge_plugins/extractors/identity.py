"""The ``identity`` feature extractor: flattened samples, for low-dimensional data and tests."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from ganforge import DataInfo
from ganforge_plugins.extractors.frozen import FrozenExtractor


class IdentityFeatures(FrozenExtractor):
    """Flattens each sample to a vector: the features are the data.

    ``feature_dim`` is the product of the sample shape; when no :class:`DataInfo` is given it is
    taken from the first batch (0 until then), and later batches must match it.
    """

    name = "identity"

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "preprocess": "flatten (values unchanged)"}

    def __init__(self, feature_dim: int = 0) -> None:
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.reshape(x.shape[0], -1).to(torch.float32) if x.ndim > 1 else x.reshape(-1, 1).to(torch.float32)
        if self.feature_dim == 0:
            self.feature_dim = out.shape[1]
        elif out.shape[1] != self.feature_dim:
            raise ValueError(
                f"identity features: a sample of shape {tuple(x.shape[1:])} has {out.shape[1]} values, but this "
                f"extractor was set up for {self.feature_dim}; use one extractor per dataset."
            )
        return out


def identity(info: Optional[DataInfo] = None) -> IdentityFeatures:
    """Flattened samples as features (for low-dimensional data and tests)."""
    return IdentityFeatures(math.prod(info.sample_shape) if info is not None else 0)
