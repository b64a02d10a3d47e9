"""ganforge-astro through ganforge itself: a 20-step fit with the physics metrics, the generation speed and
the camera pictures logged to an offline W&B run, then `ganforge evaluate` on its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "iact-cgan.yaml"
GANFORGE = [sys.executable, "-m", "ganforge"]
WANDB_ENV = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_RUN_ID", "WANDB_RESUME",
             "WANDB_PROJECT", "WANDB_ENTITY", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def _env(tmp: Path) -> dict[str, str]:
    """One thread, strict plugins, and a private key-less offline W&B (nothing reaches a server)."""
    env = {k: v for k, v in os.environ.items() if k not in WANDB_ENV}
    for var, sub in (("HOME", "home"), ("WANDB_DIR", "wandb_dir"), ("WANDB_CACHE_DIR", "wandb_cache"),
                     ("WANDB_CONFIG_DIR", "wandb_config"), ("WANDB_DATA_DIR", "wandb_data")):
        (tmp / sub).mkdir(exist_ok=True)
        env[var] = str(tmp / sub)
    return {**env, "OMP_NUM_THREADS": "1", "GANFORGE_STRICT_PLUGINS": "1", "WANDB_MODE": "offline",
            "NETRC": str(tmp / "home" / ".netrc"), "WANDB_ERROR_REPORTING": "false", "GANFORGE_PROGRESS": "0"}


def test_twenty_step_fit_with_physics_metrics_speed_and_pictures(tmp_path):
    env = _env(tmp_path)
    cmd = [*GANFORGE, "fit", "-c", str(CONFIG), "--no-progress", "train.max_steps=20", "train.batch_size=16",
           "dataset.num_samples=160", "metrics.every_n_steps=10", "train.checkpoint_every_n_steps=20",
           "generator.base_params.width=16", "discriminator.base_params.width=16", "logger=[csv, wandb]",
           "metrics.list=[{name: hillas, num_samples: 60, num_real: 120}, "
           "{name: size-energy, num_samples: 60, num_real: 120}, {name: acceptance, num_samples: 60, num_real: 120}, "
           "{name: generation-speed, batch: 32, repeats: 2, simulator_events: 8}]"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = next(tmp_path.glob("runs/iact-cgan/version_*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counters"]["g_steps"] == 20
    text = json.dumps(summary["metrics"])
    for key in ("w1/log10_size", "floor/w1/log10_size", "rel_err", "floor/rel_err", "floor/ratio"):
        assert key in text
    speed = summary["metrics"]["generation-speed"]
    v = speed["values"]
    assert v["generator_images_per_s"] > 0 and v["simulator_images_per_s"] > 0 and v["ranks"] == 1
    assert abs(v["ratio"] - v["generator_images_per_s"] / v["simulator_images_per_s"]) < 1e-9 * v["ratio"]
    assert speed["protocol"]["device"] == "cpu" and speed["protocol"]["batch"] == 32

    # The camera pictures at both evaluations: in the run directory and in the offline W&B run (its media
    # files and its records), like the sample pictures.
    for step in (10, 20):
        for name in ("cameras", "hillas"):
            assert (run / "samples" / "hillas" / f"{name}_step_{step:07d}.png").is_file()
    (wandb_run,) = run.glob("wandb/offline-run-*")
    media = sorted(p.name for p in (wandb_run / "files" / "media" / "images" / "hillas").glob("*.png"))
    assert [m.split("_")[:2] for m in media] == [["cameras", "10"], ["cameras", "20"], ["hillas", "10"],
                                                 ["hillas", "20"]]
    records = next(wandb_run.glob("run-*.wandb")).read_bytes()
    assert b"hillas/cameras" in records and b"metrics/generation-speed/ratio" in records
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "metrics/generation-speed/ratio_to_published" in header

    # `ganforge evaluate` times the checkpoint's generator the same way, two ranks replayed
    ckpt = run / "checkpoints" / "last.ckpt"
    out = subprocess.run([*GANFORGE, "evaluate", str(ckpt), "--metrics", "generation-speed", "--world-size", "2",
                          "--set", "generation-speed.batch=16", "--set", "generation-speed.repeats=2",
                          "--set", "generation-speed.simulator_events=4", "--json", str(tmp_path / "e.json")],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ev = json.loads((tmp_path / "e.json").read_text())["metrics"]["generation-speed"]
    assert ev["values"]["ranks"] == 2 and ev["values"]["generator_images_per_s"] > 0
    assert ev["protocol"]["batch"] == 16 and ev["protocol"]["sampling"]["world_size"] == 2
