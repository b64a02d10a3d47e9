"""Sample pictures: axes in data units, panels large enough to see a mode, one row per class."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ganforge.contract.components import DataInfo
from ganforge.reporting.imaging import (MODE, SAMPLE, class_rows, image_grid, nice_ticks, panel_grid, samples_picture,
                              scatter_panel)


@pytest.mark.parametrize("lo, hi, expected", [
    (-1.3, 1.3, [-1.0, 0.0, 1.0]),
    (-0.9, 0.9, [-0.5, 0.0, 0.5]),
    (0.0, 10.0, [0.0, 5.0, 10.0]),
    (-5.5, 5.5, [-5.0, 0.0, 5.0]),
    (0.0, 7.0, [0.0, 2.0, 4.0, 6.0]),
    (2.0, 2.0, [2.0]),
])
def test_nice_ticks(lo, hi, expected):
    assert nice_ticks(lo, hi) == pytest.approx(expected)


def _colour_pixels(img, rgb) -> np.ndarray:
    a = np.asarray(img.convert("RGB")).astype(int)
    return np.argwhere(np.abs(a - np.array(rgb)).sum(-1) < 10)


def test_scatter_panel_places_points_and_modes_in_data_units():
    modes = np.array([[-1.0, 0.0], [1.0, 0.0]])
    pts = np.array([[0.5, 0.5]])
    img = scatter_panel(pts, modes, extent=(-2, 2, -2, 2), size=400, title="t", std=0.01, caption="c")
    blue = _colour_pixels(img, SAMPLE)
    red = _colour_pixels(img, MODE)
    assert len(blue) == 4 and len(red) > 0
    # the point (0.5, 0.5) sits at 5/8 of the plot's width and 3/8 of its height; the modes
    # are symmetric about the plot's centre column
    left, top = 46, 20 + 18
    v, u = blue.min(0)
    assert abs(u - (left + 0.625 * 399)) <= 1 and abs(v - (top + 0.375 * 399)) <= 1
    centre = left + 199.5
    assert abs((red[:, 1].min() + red[:, 1].max()) / 2 - centre) <= 1
    # a mode's 3-sigma ring is visible: at least 6 px across at this size (ring of radius 1 in 4 units)
    ring = red[red[:, 1] < centre]
    assert ring[:, 1].max() - ring[:, 1].min() >= 6


def test_default_panel_is_large_enough_to_see_a_converged_ring_mode():
    info = DataInfo(sample_shape=(2,), modes=torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), mode_std=0.01)
    img = samples_picture(torch.zeros(10, 2), info, "step 0")
    assert img.width >= 400
    ring = _colour_pixels(img, MODE)
    right = ring[ring[:, 1] > img.width / 2]
    assert right[:, 1].max() - right[:, 1].min() >= 9  # was a 5-px ring at 260 px


def test_class_conditional_images_one_row_per_class_with_labels():
    info = DataInfo(sample_shape=(1, 4, 4), num_classes=3, kind="image")
    y = torch.tensor([2, 0, 1, 0, 2, 1])
    x = torch.stack([torch.full((1, 4, 4), -1.0 + c) for c in y.tolist()])  # class c → grey level c
    img = samples_picture(x, info, "", y=y)
    a = np.asarray(img.convert("L")).astype(int)
    # three rows of two tiles: each row's tiles hold one grey level, rows ordered 0, 1, 2
    plain = class_rows(np.repeat(((x + 1) / 2 * 255).round().byte().permute(0, 2, 3, 1).numpy(), 3, -1), y, info,
                       scale=1, title="")
    assert plain.height == 2 + 3 * (4 + 2)  # three rows
    assert a.shape[0] > a.shape[1] / 2  # rows, not one long strip
    grid = np.asarray(plain.convert("L")).astype(int)
    label_w = plain.width - (2 + 2 * (4 + 2))
    rows = [grid[2 + r * 6 : 2 + r * 6 + 4, label_w + 2 : label_w + 6] for r in range(3)]
    assert [int(np.median(r)) for r in rows] == [0, 128, 255]
    assert label_w >= 8  # the label column exists


def test_image_grid_column_labels_and_panel_rows():
    imgs = np.zeros((6, 4, 4, 3), dtype=np.uint8)
    plain = image_grid(imgs, nrow=3)
    labelled = image_grid(imgs, nrow=3, col_labels=["sample", "NN 1", "NN 2"])
    assert labelled.height == plain.height + 18 and labelled.width == plain.width
    panels = [image_grid(imgs[:1], nrow=1) for _ in range(5)]
    grid = panel_grid(panels, ncols=3)
    assert grid.width == 3 * panels[0].width + 2 * 6 and grid.height == 2 * panels[0].height + 6


def test_nice_ticks_handles_tiny_and_huge_spans():
    assert len(nice_ticks(0, 1e-6)) >= 3
    assert len(nice_ticks(-1e6, 1e6)) >= 3
    assert nice_ticks(0, math.inf) == [0]
