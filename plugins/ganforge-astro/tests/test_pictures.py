"""Camera pictures in the true hexagonal layout (ganforge-astro)."""

from __future__ import annotations

import numpy as np

from ganforge_astro.physics import Cleaning, hillas_rows_with_conditions
from ganforge_astro.pictures import hillas_overlay, main, real_vs_generated
from ganforge_astro.toy import iact_toy

PNG = b"\x89PNG\r\n\x1a\n"


def test_pictures_from_samples_file(tmp_path):
    real = iact_toy(num_samples=40, seed=1)
    fake = iact_toy(num_samples=30, seed=2)
    np.savez(tmp_path / "samples.npz", x=fake.x.numpy(), y=fake.y.numpy())
    main(["--samples", str(tmp_path / "samples.npz"), "--out", str(tmp_path / "pics"), "--real-num", "40",
          "--real-seed", "1", "--energy-bins", "1", "--per-side", "1"])
    for name in ("cameras.png", "hillas.png"):
        data = (tmp_path / "pics" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_picture_functions_write_pngs(tmp_path):
    real = iact_toy(num_samples=30, seed=3)
    y = real.y.numpy().astype(float)
    p = real_vs_generated(real.camera, real.pe, y, real.pe, y, tmp_path / "c.png", energy_bins=2, per_side=2)
    rows = hillas_rows_with_conditions(real.camera, real.pe, y, Cleaning())
    q = hillas_overlay(rows, rows, tmp_path / "h.png")
    assert p.read_bytes()[:8] == PNG and q.read_bytes()[:8] == PNG
