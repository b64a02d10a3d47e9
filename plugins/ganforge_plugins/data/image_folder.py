"""The ``image-folder`` dataset: any folder of PNG/JPEG files; class sub-folders become labels."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Iterator, Literal, Optional

import numpy as np
import torch

from ganforge import DataInfo
from ganforge_plugins.data.image_tensors import ImageTensorDataset

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
