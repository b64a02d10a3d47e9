"""Images held in one tensor, with optional labels: what the image datasets return."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from ganforge import DataInfo


class ImageTensorDataset(Dataset):
    """Images held in one tensor (and optional labels), with their :class:`DataInfo`.

    Args:
        images: ``(N, C, H, W)``; float32 already in ``[-1, 1]``, or integers in ``[0, max_value]``
            (stored compactly and mapped to ``[-1, 1]`` per item).
        labels: ``(N,)`` long class indices, or ``None`` for an unlabelled dataset (items are just ``x``).
        info: The dataset's metadata.
        max_value: For integer ``images``: the value that maps to ``+1`` (255 for 8-bit, 65535 for 16-bit).
    """

    def __init__(self, images: torch.Tensor, labels: Optional[torch.Tensor], info: DataInfo,
                 max_value: Optional[float] = None) -> None:
        self.images = images
        self.labels = labels
        self.info = info
        # v / (max/2) - 1 is exact at both ends in float32 (127.5 and 32767.5 are representable).
        self._half = None if max_value is None else float(max_value) / 2.0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> Any:
        x = self.images[index]
        if self._half is not None:
            x = x.to(torch.float32) / self._half - 1.0
        if self.labels is None:
            return x
        return x, self.labels[index]

    def tensors(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """All images at once, mapped as ``__getitem__`` maps them (``ganforge.loop.data.InMemoryDataset``)."""
        x = self.images if self._half is None else self.images.to(torch.float32) / self._half - 1.0
        return x, self.labels
