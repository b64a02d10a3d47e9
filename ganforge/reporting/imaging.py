"""Pictures of samples: scatter panels with axes for points, grids for images (one row per class
for class-conditional models), and the progress figure's panels in rows.

Pillow only (already needed for image data): no plotting library in the dependencies.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ganforge.io import atomic_path

BG = (255, 255, 255)
SAMPLE = (31, 119, 180)
MODE = (214, 39, 40)
TEXT = (20, 20, 20)
CAPTION = (90, 90, 90)
AXIS = (120, 120, 120)
GRID = (235, 235, 235)


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick positions inside ``[lo, hi]`` (steps of 1, 2 or 5 times a power of ten)."""
    span = hi - lo
    if not (span > 0 and math.isfinite(span)):
        return [lo]
    raw = span / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * span:
        ticks.append(0.0 if abs(t) < 1e-12 * span else t)
        t += step
    return ticks


def _tick_text(t: float) -> str:
    return f"{t:g}" if abs(t) >= 1e-3 or t == 0 else f"{t:.1e}"


def scatter_panel(points: np.ndarray, modes: Optional[np.ndarray], extent: tuple[float, float, float, float],
                  size: int = 420, title: str = "", std: Optional[float] = None, caption: str = "") -> Image.Image:
    """Generated points (blue) over the true modes (red rings of radius 3σ when ``std`` is known), with
    axes (tick labels in data units), a title line and an optional caption (e.g. the metric values at
    that step). ``size`` is the plot area's side in pixels."""
    x0, x1, y0, y1 = extent
    font = _font()
    left, bottom = 46, 22
    top = (20 if title else 4) + (18 if caption else 0)
    img = Image.new("RGB", (left + size + 10, top + size + bottom), BG)
    draw = ImageDraw.Draw(img)

    def to_px(p: np.ndarray) -> np.ndarray:
        u = (p[:, 0] - x0) / (x1 - x0) * (size - 1) + left
        v = (1 - (p[:, 1] - y0) / (y1 - y0)) * (size - 1) + top
        return np.stack([u, v], 1)

    for t in nice_ticks(x0, x1):  # x axis: grid line, tick, label
        u = (t - x0) / (x1 - x0) * (size - 1) + left
        draw.line([(u, top), (u, top + size - 1)], fill=GRID)
        draw.line([(u, top + size), (u, top + size + 3)], fill=AXIS)
        draw.text((u, top + size + 4), _tick_text(t), fill=TEXT, font=font, anchor="ma")
    for t in nice_ticks(y0, y1):
        v = (1 - (t - y0) / (y1 - y0)) * (size - 1) + top
        draw.line([(left, v), (left + size - 1, v)], fill=GRID)
        draw.line([(left - 4, v), (left - 1, v)], fill=AXIS)
        draw.text((left - 6, v), _tick_text(t), fill=TEXT, font=font, anchor="rm")
    draw.rectangle([left, top, left + size - 1, top + size - 1], outline=AXIS)
    pts = to_px(np.asarray(points[:, :2], dtype=np.float64))
    inside = (pts[:, 0] >= left) & (pts[:, 0] < left + size) & (pts[:, 1] >= top) & (pts[:, 1] < top + size)
    for u, v in pts[inside]:
        draw.point([(u, v), (u + 1, v), (u, v + 1), (u + 1, v + 1)], fill=SAMPLE)
    if modes is not None:
        r = 3.0 if std is None else max(3.0, 3 * std / (x1 - x0) * size)
        for u, v in to_px(np.asarray(modes[:, :2], dtype=np.float64)):
            draw.ellipse([u - r, v - r, u + r, v + r], outline=MODE, width=2)
    if title:
        draw.text((left, 2), title, fill=TEXT, font=font)
    if caption:
        draw.text((left, 2 + (20 if title else 0)), caption, fill=CAPTION, font=font)
    return img


def to_uint8_images(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """``(N, C, H, W)`` floats in ``value_range`` → ``(N, H, W, 3)`` uint8."""
    lo, hi = value_range
    x = ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] != 3:
        x = x[:, :3] if x.shape[1] > 3 else torch.cat([x, x[:, -1:].repeat(1, 3 - x.shape[1], 1, 1)], 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def to_pil_images(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), bits: int = 8) -> list[Image.Image]:
    """``(N, C, H, W)`` floats in ``value_range`` → one picture per sample, in the data's own form:
    greyscale (mode ``L``, or ``I;16`` when ``bits`` is 16) for one channel, RGB otherwise (as
    :func:`to_uint8_images`). 16 bits keep what 16-bit detector images hold; colour stays 8-bit."""
    if bits not in (8, 16):
        raise ValueError(f"bits={bits!r}: PNG samples are 8- or 16-bit")
    if x.dim() != 4 or x.shape[1] != 1:
        return [Image.fromarray(a) for a in to_uint8_images(x, value_range)]
    lo, hi = value_range
    top = 255 if bits == 8 else 65535
    v = ((x.detach().double().cpu()[:, 0] - lo) / (hi - lo)).clamp(0, 1).numpy() * top + 0.5
    arr = v.astype(np.uint8 if bits == 8 else np.uint16)
    return [Image.fromarray(a) for a in arr]  # uint8 → mode L, uint16 → I;16


def image_grid(images: np.ndarray, nrow: Optional[int] = None, pad: int = 2, scale: int = 1,
               title: str = "", row_labels: Optional[Sequence[str]] = None,
               col_labels: Optional[Sequence[str]] = None, caption: str = "") -> Image.Image:
    """``(N, H, W, 3)`` uint8 → one grid picture (upscaled by ``scale`` with nearest neighbours).

    ``nrow`` is the number of images per row. ``row_labels`` (one per row, e.g. the class) are
    written in a column on the left; ``col_labels`` (one per column) above the first row.
    """
    n, h, w, _ = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    font = _font()
    pad_top = (20 if title else 0) + (18 if caption else 0) + (18 if col_labels else 0)
    pad_left = 0
    if row_labels:
        pad_left = 8 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(str(t), font=font))
                           for t in row_labels)
    H, W = h * scale, w * scale
    grid = Image.new("RGB", (pad_left + nrow * (W + pad) + pad, ncol * (H + pad) + pad + pad_top), BG)
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        r, c = divmod(i, nrow)
        tile = Image.fromarray(images[i]).resize((W, H), Image.NEAREST)
        grid.paste(tile, (pad_left + pad + c * (W + pad), pad_top + pad + r * (H + pad)))
    if row_labels:
        for r, text in enumerate(row_labels[:ncol]):
            draw.text((pad_left - 4, pad_top + pad + r * (H + pad) + H / 2), str(text), fill=TEXT, font=font,
                      anchor="rm")
    if col_labels:
        for c, text in enumerate(col_labels[:nrow]):
            draw.text((pad_left + pad + c * (W + pad) + W / 2, pad_top - 2), str(text), fill=TEXT, font=font,
                      anchor="md")
    if title:
        draw.text((4, 2), title, fill=TEXT, font=font)
    if caption:
        draw.text((4, 2 + (20 if title else 0)), caption, fill=CAPTION, font=font)
    return grid


def panel_grid(panels: Sequence[Image.Image], ncols: int = 3, gap: int = 6) -> Image.Image:
    """Panels in rows of ``ncols`` (the progress figure: large panels that stay readable)."""
    rows = [hstack(panels[i : i + ncols], gap) for i in range(0, len(panels), ncols)]
    w = max(r.width for r in rows)
    h = sum(r.height for r in rows) + gap * (len(rows) - 1)
    out = Image.new("RGB", (w, h), BG)
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + gap
    return out


def hstack(panels: Sequence[Image.Image], gap: int = 6) -> Image.Image:
    h = max(p.height for p in panels)
    w = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (w, h), BG)
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def save_png(img: Image.Image, path: str | Path) -> None:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def samples_picture(samples: torch.Tensor, info, title: str, extent: Optional[tuple] = None,
                    y: Optional[torch.Tensor] = None, caption: str = "") -> Image.Image:
    """One panel for a set of samples, in the form that suits the data.

    Images conditioned on classes (``y`` holds class indices, or with continuous conditions too
    the class in its column 0) are laid out one row per class, labelled with the class (its name
    when the dataset gives ``class_names``).
    """
    if info.kind == "image" and samples.dim() == 4:
        n = samples.shape[0]
        scale = max(1, 64 // samples.shape[-1])
        images = to_uint8_images(samples, tuple(info.value_range))
        if y is not None and info.num_classes > 0 and info.cond_dim > 0 and y.dim() == 2 and y.shape[0] == n:
            y = info.split_conditions(y, check=False)[0]  # the class column; the conditions vary within a row
        if y is not None and info.num_classes > 0 and y.dim() == 1 and y.numel() == n:
            return class_rows(images, y.cpu().long(), info, scale, title, caption)
        return image_grid(images, nrow=int(math.ceil(math.sqrt(n))), scale=scale, title=title, caption=caption)
    pts = samples.reshape(samples.shape[0], -1).cpu().numpy()
    modes = None if info.modes is None else info.modes.reshape(info.modes.shape[0], -1).cpu().numpy()
    return scatter_panel(pts, modes, extent or points_extent(info, pts), title=title, std=info.mode_std,
                         caption=caption)


def class_rows(images: np.ndarray, y: torch.Tensor, info, scale: int, title: str, caption: str = "") -> Image.Image:
    """One row per class present in ``y`` (samples of that class in order), labelled on the left."""
    classes = sorted(set(y.tolist()))
    per_row = max(int((y == c).sum()) for c in classes)
    h, w = images.shape[1:3]
    tiles = np.full((len(classes) * per_row, h, w, 3), 255, dtype=np.uint8)
    for r, c in enumerate(classes):
        idx = (y == c).nonzero().flatten().tolist()
        tiles[r * per_row : r * per_row + len(idx)] = images[idx]
    names = list(getattr(info, "class_names", None) or [])
    labels = [names[c] if c < len(names) else str(c) for c in classes]
    return image_grid(tiles, nrow=per_row, scale=scale, title=title, row_labels=labels, caption=caption)


def points_extent(info, pts: np.ndarray) -> tuple[float, float, float, float]:
    if info.modes is not None:
        m = info.modes.reshape(info.modes.shape[0], -1).cpu().numpy()[:, :2]
        lo, hi = m.min(0), m.max(0)
    else:
        lo, hi = np.percentile(pts[:, :2], 1, axis=0), np.percentile(pts[:, :2], 99, axis=0)
    span = max(float((hi - lo).max()), 1e-3)
    c = (lo + hi) / 2
    half = span * 0.65 + 0.05
    return (c[0] - half, c[0] + half, c[1] - half, c[1] + half)
