"""ganforge-astro through ganforge itself: entry point, plugin listing and a 20-step fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "iact-cgan.yaml"
GANFORGE = [sys.executable, "-m", "ganforge"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "GANFORGE_STRICT_PLUGINS": "1"}


def test_plugins_lists_astro_components():
    out = subprocess.run([*GANFORGE, "plugins"], capture_output=True, text=True, env=_env(), check=True).stdout
    assert "ganforge-astro" in out
    for name in ("iact-toy", "iact-file", "hillas", "size-energy", "acceptance"):
        assert name in out
    # found only through its entry point: without it, none of its components exist
    env = {**_env(), "GANFORGE_DISABLE_PLUGINS": "astro"}
    out = subprocess.run([*GANFORGE, "plugins"], capture_output=True, text=True, env=env, check=True).stdout
    assert "iact-toy" not in out and "size-energy" not in out


def test_twenty_step_fit_with_physics_metrics(tmp_path):
    cmd = [*GANFORGE, "fit", "-c", str(CONFIG), "--no-progress", "train.max_steps=20", "train.batch_size=16",
           "dataset.num_samples=160", "metrics.every_n_steps=20", "train.checkpoint_every_n_steps=20",
           "metrics.list=[{name: hillas, num_samples: 60, num_real: 120}, "
           "{name: size-energy, num_samples: 60, num_real: 120}, {name: acceptance, num_samples: 60, num_real: 120}]"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(next(tmp_path.glob("runs/iact-cgan/version_*/summary.json")).read_text())
    assert summary["counters"]["g_steps"] == 20
    text = json.dumps(summary["metrics"])
    for key in ("w1/log10_size", "floor/w1/log10_size", "rel_err", "floor/rel_err", "floor/ratio"):
        assert key in text
