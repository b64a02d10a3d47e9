"""Pictures of samples: scatter panels for points, grids for images, side-by-side strips.

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


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def scatter_panel(points: np.ndarray, modes: Optional[np.ndarray], extent: tuple[float, float, float, float],
                  size: int = 260, title: str = "", std: Optional[float] = None) -> Image.Image:
    """Generated points (blue) over the true modes (red rings of radius 3σ when ``std`` is known)."""
    x0, x1, y0, y1 = extent
    pad_top = 20 if title else 0
    img = Image.new("RGB", (size, size + pad_top), BG)
    draw = ImageDraw.Draw(img)

    def to_px(p: np.ndarray) -> np.ndarray:
        u = (p[:, 0] - x0) / (x1 - x0) * (size - 1)
        v = (1 - (p[:, 1] - y0) / (y1 - y0)) * (size - 1) + pad_top
        return np.stack([u, v], 1)

    draw.rectangle([0, pad_top, size - 1, size + pad_top - 1], outline=(180, 180, 180))
    pts = to_px(np.asarray(points[:, :2], dtype=np.float64))
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < size) & (pts[:, 1] >= pad_top) & (pts[:, 1] < size + pad_top)
    for u, v in pts[inside]:
        draw.point([(u, v), (u + 1, v), (u, v + 1), (u + 1, v + 1)], fill=SAMPLE)
    if modes is not None:
        r = 3.0 if std is None else max(3.0, 3 * std / (x1 - x0) * size)
        for u, v in to_px(np.asarray(modes[:, :2], dtype=np.float64)):
            draw.ellipse([u - r, v - r, u + r, v + r], outline=MODE, width=2)
    if title:
        draw.text((4, 2), title, fill=TEXT, font=_font())
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


def image_grid(images: np.ndarray, nrow: Optional[int] = None, pad: int = 2, scale: int = 1,
               title: str = "") -> Image.Image:
    """``(N, H, W, 3)`` uint8 → one grid picture (upscaled by ``scale`` with nearest neighbours)."""
    n, h, w, _ = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    pad_top = 20 if title else 0
    H, W = h * scale, w * scale
    grid = Image.new("RGB", (nrow * (W + pad) + pad, ncol * (H + pad) + pad + pad_top), BG)
    for i in range(n):
        r, c = divmod(i, nrow)
        tile = Image.fromarray(images[i]).resize((W, H), Image.NEAREST)
        grid.paste(tile, (pad + c * (W + pad), pad_top + pad + r * (H + pad)))
    if title:
        ImageDraw.Draw(grid).text((4, 2), title, fill=TEXT, font=_font())
    return grid


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


def samples_picture(samples: torch.Tensor, info, title: str, extent: Optional[tuple] = None) -> Image.Image:
    """One panel for a set of samples, in the form that suits the data."""
    if info.kind == "image" and samples.dim() == 4:
        n = samples.shape[0]
        scale = max(1, 64 // samples.shape[-1])
        return image_grid(to_uint8_images(samples, tuple(info.value_range)), nrow=int(math.ceil(math.sqrt(n))),
                          scale=scale, title=title)
    pts = samples.reshape(samples.shape[0], -1).cpu().numpy()
    modes = None if info.modes is None else info.modes.reshape(info.modes.shape[0], -1).cpu().numpy()
    return scatter_panel(pts, modes, extent or points_extent(info, pts), title=title, std=info.mode_std)


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
