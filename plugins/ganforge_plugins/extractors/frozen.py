"""The base of the feature extractors: frozen (no gradients) and always in eval mode.

The module stays in eval mode even when a parent calls ``.train()`` (Lightning does, on the
LightningModule), because a batch-norm layer switched to training mode would silently change the
features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FrozenExtractor(nn.Module):
    """Base of the extractors: no gradients, always in eval mode."""

    name: str = ""
    feature_dim: int = 0
    weights_sha256: str = ""

    def freeze(self) -> "FrozenExtractor":
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> "FrozenExtractor":  # noqa: ARG002 - frozen, see the module docstring
        return super().train(False)

    def protocol(self) -> dict[str, Any]:
        """What defines these features; metrics put it into their own protocol."""
        return {"name": self.name, "feature_dim": self.feature_dim, "weights_sha256": self.weights_sha256}


def check_images(who: str, x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{who}: expected images of shape (N, C, H, W), got shape {tuple(x.shape)}.")
