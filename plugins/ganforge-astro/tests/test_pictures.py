"""Camera pictures in the true hexagonal layout (ganforge-astro): the functions, the command line over one
and two runs, and the hillas metric's pictures (PictureMetric)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ganforge import PictureMetric
from PIL import Image

from ganforge_astro.metrics import PICTURE_POOL, hillas
from ganforge_astro.physics import Cleaning, hillas_rows_with_conditions
from ganforge_astro.pictures import hillas_overlay, main, real_vs_generated
from ganforge_astro.toy import iact_toy

PNG = b"\x89PNG\r\n\x1a\n"


def _width(path) -> int:
    with Image.open(path) as im:
        return im.size[0]


def test_pictures_of_one_and_two_runs_from_samples_files(tmp_path, real_small):
    fake = iact_toy(num_samples=30, seed=2)
    np.savez(tmp_path / "a.npz", x=fake.x.numpy(), y=fake.y.numpy())
    np.savez(tmp_path / "b.npz", x=real_small.x.numpy()[:30], y=real_small.y.numpy()[:30])
    common = ["--real-num", "60", "--real-seed", "5", "--energy-bins", "1", "--per-side", "1"]
    main(["--samples", str(tmp_path / "a.npz"), "--out", str(tmp_path / "one"), *common])
    main(["--samples", str(tmp_path / "a.npz"), "--label", "plain", "--samples", str(tmp_path / "b.npz"),
          "--label", "constrained", "--out", str(tmp_path / "two"), *common])
    for d in ("one", "two"):
        for name in ("cameras.png", "hillas.png"):
            data = (tmp_path / d / name).read_bytes()
            assert data[:8] == PNG and len(data) > 5000
    # the comparison has a column group per run: real | plain | constrained (one image each per row)
    assert _width(tmp_path / "two" / "cameras.png") == pytest.approx(1.5 * _width(tmp_path / "one" / "cameras.png"),
                                                                      abs=2)
    with pytest.raises(SystemExit, match=r"--label given 1 times for 2 --samples"):
        main(["--samples", str(tmp_path / "a.npz"), "--samples", str(tmp_path / "b.npz"), "--label", "x",
              "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match=r"--samples .*missing.npz: no such file"):
        main(["--samples", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "bad")])
    np.savez(tmp_path / "nox.npz", y=fake.y.numpy())
    with pytest.raises(SystemExit, match=r"needs arrays x and y"):
        main(["--samples", str(tmp_path / "nox.npz"), "--out", str(tmp_path / "bad")])


def test_picture_functions_write_pngs(tmp_path, real_small):
    y = real_small.y.numpy().astype(float)
    p = real_vs_generated(real_small.camera, real_small.pe, y, [("generated", real_small.pe, y)], tmp_path / "c.png",
                          energy_bins=2, per_side=2, title="step 7")
    rows = hillas_rows_with_conditions(real_small.camera, real_small.pe, y, Cleaning())
    q = hillas_overlay(rows, [("generated", rows)], tmp_path / "h.png")
    assert p.read_bytes()[:8] == PNG and q.read_bytes()[:8] == PNG


def test_hillas_metric_draws_its_pictures(tmp_path, real_small):
    m = hillas(real_small.info, num_samples=40, num_real=None, energy_bins=2)
    assert isinstance(m, PictureMetric) and set(m.real_reduce) == {"rows", "images", "y"}
    m.set_real(m.real_batch(real_small.x, real_small.y))
    assert m.real_images.shape == real_small.pe.shape and np.allclose(m.real_images, real_small.pe, atol=1e-3)
    assert m.draw_pictures(tmp_path, 0) == {}  # nothing computed yet
    fake = iact_toy(num_samples=40, seed=9)
    m.update(fake.x[:25], fake.y[:25])
    m.update(fake.x[25:], fake.y[25:])
    m.compute()
    out = m.draw_pictures(tmp_path, 12)
    assert set(out) == {"cameras", "hillas"}
    assert out["cameras"] == tmp_path / "cameras_step_0000012.png" and out["hillas"].name == "hillas_step_0000012.png"
    assert all(p.read_bytes()[:8] == PNG for p in out.values())
    assert sum(len(pe) for pe, _ in m._pool) == 40 <= PICTURE_POOL
    m.reset()  # the next evaluation keeps its own images
    assert m._pool == [] and m.draw_pictures(tmp_path, 13) == {}

    off = hillas(real_small.info, num_samples=40, num_real=None, pictures=False)
    assert off.real_reduce == {"rows": "cat"}  # shares the real pass with size-energy and acceptance
    assert set(off.real_batch(real_small.x, real_small.y)) == {"rows"}
    off.set_real(off.real_batch(real_small.x, real_small.y))
    off.update(fake.x, fake.y)
    off.compute()
    assert off.draw_pictures(tmp_path, 1) == {} and off.protocol()["pictures"] == "none"
    with pytest.raises(ValueError, match=r"hillas: pictures_per_bin=0; expected a positive integer"):
        hillas(real_small.info, pictures_per_bin=0)
