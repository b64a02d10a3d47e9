"""Image datasets that need no download.

``digits``
    scikit-learn's bundled handwritten digits (1,797 greyscale 8×8 images, 10 classes).
``stacked-digits``
    Three digits stacked as the channels of one image: 1,000 modes, the offline counterpart of
    Stacked MNIST (VEEGAN, PacGAN).
``image-folder``
    Any folder of PNG/JPEG files; class sub-folders become labels.

Every item is ``(x, y)`` with ``x`` a ``float32`` tensor ``(C, H, W)`` in ``[-1, 1]`` and ``y``
a ``long`` class index, or just ``x`` when the dataset is built with ``labels=False``.
``info.protocol`` holds everything that defines the data (parameters, the split rule, content
hashes), so real-data statistics cached under it are never reused for different data.
"""

from __future__ import annotations

import hashlib
import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ganforge import DataInfo, hookimpl

# -- the digits ---------------------------------------------------------------------------------------

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


# -- a folder of images -------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
RESIZE_RULE = "centre crop to a square (shorter side), then Pillow BICUBIC (antialiased) to resolution×resolution"
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _walk(root: Path, skipped: Optional[list[str]] = None) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(root, followlinks=True)`` that enters every real folder once: a symlink back to a
    parent (a loop: endless, or one copy of every image per turn) or to a folder already scanned is
    skipped, and ``skipped`` gets ``"link -> target"`` for it."""
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            full = os.path.join(dirpath, d)
            real = os.path.realpath(full)
            if real in seen:
                if skipped is not None:
                    skipped.append(f"{full} -> {real}")
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        yield dirpath, dirnames, filenames


def _scan(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, hidden entries skipped), sorted by relative path."""
    found: list[Path] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in _walk(root, skipped):
        for f in filenames:
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / f)
    if skipped:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        print(f"ganforge: note: image-folder: skipped symlinked folder(s) already scanned (a loop or a second "
              f"link to the same folder): {'; '.join(skipped[:3])}{more}", flush=True)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _other_extensions(root: Path, limit: int = 8) -> list[str]:
    exts: set[str] = set()
    for _, _, filenames in _walk(root):
        exts.update(os.path.splitext(f)[1].lower() or "(none)" for f in filenames if not f.startswith("."))
    return sorted(exts)[:limit]


def _decode(path: Path, data: bytes, channels: int, resolution: Optional[int]) -> tuple[np.ndarray, int, tuple[int, int]]:
    """Decode one file to ``(C, H, W)`` integers; return it with its bit depth and original (W, H)."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now: a truncated file fails here, naming the file, not mid-training
    except Exception as exc:  # noqa: BLE001 - Pillow raises several types for bad files
        raise ValueError(
            f"image-folder: cannot read image '{path}': {type(exc).__name__}: {exc}. "
            "Remove or replace the file (it is corrupt or not an image)."
        ) from exc
    size = img.size
    box = None
    if resolution is not None:
        w, h = size
        s = min(w, h)
        box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    if img.mode in _SIXTEEN_BIT_MODES:
        # 16-bit greyscale (detector images): keep the full precision; Pillow's convert("L")
        # would clip it to 8 bits.
        arr = np.asarray(img, dtype=np.float32)
        if box is not None:
            f = Image.fromarray(arr).resize((resolution, resolution), Image.Resampling.BICUBIC, box=box)
            arr = np.asarray(f, dtype=np.float32)
        arr = np.clip(np.rint(arr), 0, 65535).astype(np.int32)[None]
        if channels == 3:
            arr = np.repeat(arr, 3, axis=0)
        return arr, 16, size
    img = img.convert("L" if channels == 1 else "RGB")
    if box is not None:
        img = img.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return arr, 8, size


def image_folder(root: str, resolution: Optional[int] = None, channels: Literal[1, 3] = 3,
                 labels: bool = False) -> ImageTensorDataset:
    """A folder of PNG/JPEG images (searched recursively); class sub-folders give labels.

    All images are decoded when the dataset is built, so a corrupt file is reported at start-up
    with its name. Images are stored as 8-bit (or 16-bit for 16-bit greyscale PNGs) integers
    and mapped to ``[-1, 1]`` per item.

    Args:
        root: The folder. With ``labels=True`` it must hold one sub-folder per class (images
            anywhere below it); classes are the sorted names of the sub-folders that hold images,
            indexed from 0 (``info.protocol["classes"]``).
        resolution: Side of the square output images: each is centre-cropped to a square and
            resized with Pillow's BICUBIC filter (antialiased). ``None`` keeps the files'
            size, which must then be the same for all.
        channels: 1 (greyscale, Pillow ``convert("L")``) or 3 (``convert("RGB")``; alpha dropped).
        labels: Yield ``(x, y)`` with the class sub-folder as label, or just ``x``.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"image-folder: root '{root}' does not exist (resolved to {path.resolve()}). "
            f"Set root to a folder of {'/'.join(IMAGE_EXTENSIONS)} files (one sub-folder per class for labels)."
        )
    if not path.is_dir():
        raise FileNotFoundError(f"image-folder: root '{root}' is a file, not a folder. Set root to the folder that holds the images.")
    if channels not in (1, 3):
        raise ValueError(f"image-folder: channels={channels!r}; expected 1 (greyscale) or 3 (RGB).")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"image-folder: resolution={resolution!r}; expected a positive integer or null (keep the files' size).")

    files = _scan(path)
    if not files:
        others = _other_extensions(path)
        seen = f" Found only files with extensions: {', '.join(others)}." if others else " The folder is empty."
        raise ValueError(
            f"image-folder: no images in '{root}'. Accepted extensions (any case, searched recursively, "
            f"hidden files skipped): {', '.join(IMAGE_EXTENSIONS)}.{seen}"
        )

    rel = [f.relative_to(path).as_posix() for f in files]
    classes: list[str] = []
    targets: Optional[torch.Tensor] = None
    if labels:
        top = [r.split("/", 1) for r in rel]
        loose = [r for r, parts in zip(rel, top) if len(parts) == 1]
        classes = sorted({parts[0] for parts in top if len(parts) == 2})
        if not classes:
            raise ValueError(
                f"image-folder: labels=true but '{root}' has no class sub-folders (all {len(rel)} images lie "
                f"directly in it). Move each class's images into a sub-folder named after the class "
                f"(e.g. {root}/cats/1.png), or set labels=false."
            )
        if loose:
            raise ValueError(
                f"image-folder: labels=true but {len(loose)} image(s) lie directly in '{root}', outside any class "
                f"sub-folder (e.g. '{loose[0]}'). Move them into a class sub-folder, or set labels=false."
            )
        index = {c: i for i, c in enumerate(classes)}
        targets = torch.tensor([index[parts[0]] for parts in top], dtype=torch.long)

    arrays: list[np.ndarray] = []
    depths: set[int] = set()
    first: Optional[tuple[str, tuple[int, int]]] = None
    digest = hashlib.sha256()
    for f, r in zip(files, rel):
        data = f.read_bytes()
        digest.update(r.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
        arr, depth, size = _decode(f, data, channels, resolution)
        if resolution is None:
            if first is None:
                first = (r, size)
            elif size != first[1]:
                raise ValueError(
                    f"image-folder: images in '{root}' have different sizes and resolution is not set: "
                    f"'{first[0]}' is {first[1][0]}×{first[1][1]} but '{r}' is {size[0]}×{size[1]} (width×height). "
                    "Set resolution (e.g. resolution=64) to centre-crop and resize all images, or make them one size."
                )
        arrays.append(arr)
        depths.add(depth)

    if 16 in depths:
        # 16-bit data sets the scale; 8-bit images join it exactly (v * 257 maps 255 to 65535).
        images = torch.from_numpy(np.stack([a.astype(np.int32) * (257 if a.dtype == np.uint8 else 1) for a in arrays]))
        max_value = 65535.0
    else:
        images = torch.from_numpy(np.stack(arrays))
        max_value = 255.0
    c, h, w = images.shape[1:]
    info = DataInfo(
        sample_shape=(int(c), int(h), int(w)),
        num_classes=len(classes) if labels else 0,
        kind="image",
        value_range=(-1.0, 1.0),
        name="image-folder",
        protocol={
            "source": "image-folder",
            "root_name": path.resolve().name,
            "num_samples": len(files),
            "files_sha256": digest.hexdigest(),
            "extensions": list(IMAGE_EXTENSIONS),
            "channels": channels,
            "bit_depth": max(depths),
            "resolution": resolution,
            "resize": RESIZE_RULE if resolution is not None else "none (all files one size)",
            "value_map": f"v/{max_value / 2} - 1",
            "labels": labels,
            "classes": classes,
        },
    )
    return ImageTensorDataset(images, targets, info, max_value=max_value)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_datasets(register) -> None:
    register("digits", digits, description="scikit-learn's handwritten digits: 1,797 greyscale 8×8 images, 10 classes (no download)")
    register("stacked-digits", stacked_digits,
             description="three digits stacked as RGB channels: 1,000 modes (offline Stacked MNIST)")
    register("image-folder", image_folder, description="a folder of PNG/JPEG images; class sub-folders become labels")
