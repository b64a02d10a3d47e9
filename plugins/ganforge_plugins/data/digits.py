"""The ``digits`` and ``stacked-digits`` datasets: scikit-learn's bundled digits, no download.

``digits``: 1,797 greyscale 8×8 images, 10 classes. ``stacked-digits``: three digits stacked as the
channels of one image, 1,000 modes, the offline counterpart of Stacked MNIST (VEEGAN, PacGAN).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ganforge import DataInfo
from ganforge_plugins.data.image_tensors import ImageTensorDataset

#: Seed of the frozen NumPy ``RandomState`` that picks each class's test images.
DIGITS_SPLIT_SEED = 0
#: Fraction of each class that goes to the test split.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_RULE = (
    "stratified 80/20: for each class c (in file order), numpy.random.RandomState(0).permutation of "
    "that class's indices (one generator, classes 0..9 in turn); the first round(0.2*n_c) are test"
)
#: The digits have 17 grey levels, 0 (background) .. 16 (ink).
DIGITS_MAX_LEVEL = 16
DIGITS_SIZE = 8

Split = Literal["all", "train", "test"]


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as uint8 ``(N, 8, 8)`` grey levels 0..16 and int64 labels (cached: loading parses a CSV)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@lru_cache(maxsize=1)
def _digits_test_mask() -> np.ndarray:
    _, labels = _digits_raw()
    # RandomState is NumPy's frozen legacy generator: the same stream in every NumPy version,
    # so the split never moves under a cached statistic or a published number.
    rng = np.random.RandomState(DIGITS_SPLIT_SEED)
    mask = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(DIGITS_TEST_FRACTION * len(idx)))
        mask[rng.permutation(idx)[:n_test]] = True
    mask.setflags(write=False)
    return mask


def digits_split_indices(split: Split) -> np.ndarray:
    """Indices (ascending) into ``sklearn.datasets.load_digits()`` of the images in ``split``."""
    if split not in ("all", "train", "test"):
        raise ValueError(f"digits: split={split!r} is not one of 'all', 'train', 'test'.")
    mask = _digits_test_mask()
    if split == "all":
        return np.arange(len(mask))
    return np.flatnonzero(mask if split == "test" else ~mask)


def _check_resolution(dataset: str, resolution: Any) -> int:
    if (isinstance(resolution, bool) or not isinstance(resolution, int) or not DIGITS_SIZE <= resolution <= 256
            or resolution % DIGITS_SIZE):
        raise ValueError(
            f"{dataset}: resolution={resolution!r} is not a multiple of {DIGITS_SIZE} between 8 and 256; use 8, 16, "
            "32 or 64 (the 8×8 digits are upscaled by nearest neighbour, an integer factor)."
        )
    return resolution


def upscale_nearest(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Repeat every pixel of ``(..., 8, 8)`` images as a ``k×k`` block, ``k = resolution / 8``.

    Nearest neighbour rather than bilinear: the grey levels stay exactly the 17 of the source,
    and area downsampling (what ``digits-cnn`` applies) recovers the 8×8 original exactly, so
    real-data metrics do not depend on the resolution a run trains at.
    """
    k = resolution // x.shape[-1]
    if k == 1:
        return x
    return x.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)


def digits_tensors(split: Split = "all", resolution: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of ``split`` as ``x`` float32 ``(N, 1, R, R)`` in ``[-1, 1]`` and ``y`` long ``(N,)``."""
    resolution = _check_resolution("digits", resolution)
    images, labels = _digits_raw()
    idx = digits_split_indices(split)
    # 0..16 -> [-1, 1]: level/8 - 1 is exact in float32.
    x = torch.from_numpy(images[idx].astype(np.float32)).unsqueeze(1) / (DIGITS_MAX_LEVEL / 2) - 1.0
    return upscale_nearest(x, resolution).contiguous(), torch.from_numpy(labels[idx].copy())


def _digits_protocol(split: Split, resolution: int) -> dict[str, Any]:
    images, labels = _digits_raw()
    idx = digits_split_indices(split)
    h = hashlib.sha256(images.tobytes())
    h.update(labels.tobytes())
    return {
        "source": "sklearn.datasets.load_digits",
        # The hash of the pixels and labels (not the scikit-learn version) names the data.
        "source_sha256": h.hexdigest(),
        "split": split,
        "split_rule": DIGITS_SPLIT_RULE,
        "split_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest(),
        "resolution": resolution,
        "upscale": "nearest (k×k pixel blocks)" if resolution > DIGITS_SIZE else "none",
        "value_map": "level/8 - 1 (17 grey levels 0..16 -> [-1, 1])",
    }


def digits(resolution: int = 8, split: Split = "all", labels: bool = True) -> ImageTensorDataset:
    """scikit-learn's handwritten digits (1,797 greyscale 8×8 images, 10 classes) in [-1, 1].

    Args:
        resolution: Side length; 8 (native) or a multiple of 8, upscaled by nearest neighbour.
        split: ``"all"`` (1,797), ``"train"`` (1,438) or ``"test"`` (359): a fixed stratified 80/20
            split (per class, ``numpy.random.RandomState(0)``), the same on every machine.
        labels: Yield ``(x, y)`` with the digit as class (a conditional dataset) or just ``x``.
    """
    x, y = digits_tensors(split, resolution)
    info = DataInfo(
        sample_shape=(1, resolution, resolution),
        num_classes=10 if labels else 0,
        kind="image",
        value_range=(-1.0, 1.0),
        name="digits",
        protocol={**_digits_protocol(split, resolution), "labels": labels, "num_samples": int(x.shape[0])},
    )
    return ImageTensorDataset(x, y if labels else None, info)


# -- stacked digits -----------------------------------------------------------------------------------

STACKED_LABEL_RULE = "y = 100*d0 + 10*d1 + d2, d_c the digit in channel c"


class StackedDigits(Dataset):
    """Three digits as the channels of one image, built per item from an index table.

    Only the base digits ``(M, 1, R, R)`` and the ``(N, 3)`` table of which digit goes to which
    channel are stored, so 128,000 samples at 32×32 cost 3 MB, not 1.5 GB.
    """

    def __init__(self, base: torch.Tensor, base_labels: torch.Tensor, table: torch.Tensor,
                 labels: bool, info: DataInfo) -> None:
        self.base = base
        self.table = table
        self.info = info
        self.labels = labels
        d = base_labels[table]  # (N, 3): the digit in each channel
        self.modes = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]

    def __len__(self) -> int:
        return int(self.table.shape[0])

    def __getitem__(self, index: int) -> Any:
        x = self.base[self.table[index]].reshape(3, *self.base.shape[-2:])
        if not self.labels:
            return x
        return x, self.modes[index]


def stacked_digits(num_samples: int = 25_600, resolution: int = 8, split: Split = "all",
                   labels: bool = False, seed: int = 0) -> StackedDigits:
    """Three random digits stacked as RGB channels: 1,000 modes (offline Stacked MNIST).

    Each sample draws three images independently and uniformly from ``split`` of the digits
    (``numpy.random.RandomState(seed)``); its mode is ``100*d0 + 10*d1 + d2`` where ``d_c`` is
    the digit in channel ``c``. Mode coverage is measured by classifying each channel with
    ``digits-cnn``.

    Args:
        num_samples: Dataset size. 25,600 as the Unrolled-GAN/PacGAN evaluation set: about 26
            samples per mode, every mode present (a mode is missing with probability ~1e-8);
            128,000 reproduces the VEEGAN training-set size.
        resolution: Side length; 8 or a multiple of 8 (nearest-neighbour upscaling, as ``digits``).
        split: Which digits to draw from (see ``digits``).
        labels: Yield ``(x, y)`` with the mode index as class (1,000 classes: a conditional
            dataset) or just ``x`` (default: the unconditional mode-collapse benchmark).
        seed: The run's seed (injected by the engine): picks the digit triples.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"stacked-digits: num_samples={num_samples!r} must be a positive integer (e.g. 25600).")
    resolution = _check_resolution("stacked-digits", resolution)
    base, base_y = digits_tensors(split, resolution)
    rng = np.random.RandomState(seed % 2**32)
    table = torch.from_numpy(rng.randint(0, base.shape[0], size=(num_samples, 3)).astype(np.int64))
    info = DataInfo(
        sample_shape=(3, resolution, resolution),
        num_classes=1000 if labels else 0,
        kind="image",
        value_range=(-1.0, 1.0),
        name="stacked-digits",
        protocol={
            **_digits_protocol(split, resolution),
            "channels": "three digits drawn independently and uniformly, numpy.random.RandomState(seed).randint",
            "seed": seed,
            "num_samples": num_samples,
            "table_sha256": hashlib.sha256(table.numpy().tobytes()).hexdigest(),
            "num_modes": 1000,
            "mode_rule": STACKED_LABEL_RULE,
            "labels": labels,
        },
    )
    return StackedDigits(base, base_y, table, labels, info)
