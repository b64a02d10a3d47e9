"""The command line end to end: the embedded default from any directory, an image run, and
`ganforge sample` / `ganforge evaluate` on a checkpoint produced here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GANFORGE = [sys.executable, "-m", "ganforge"]


def run(args, cwd, timeout=600):
    env = dict(os.environ, GANFORGE_PROGRESS="0")
    env.pop("GANFORGE_RUN_DIR", None)
    out = subprocess.run(GANFORGE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return out


def test_fit_without_config_runs_the_embedded_default_from_any_directory(tmp_path):
    out = run(["fit", "train.max_steps=30", "metrics.every_n_steps=15", "train.batch_size=64",
               "dataset.num_samples=3000", "metrics.list.0.num_samples=400"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ring8" / "version_0"
    assert "ganforge: run directory runs/ring8/version_0 (1 process, strategy" in out.stdout
    text = " ".join(out.stdout.split())  # the table title wraps
    assert "final metrics after 30 generator steps" in text
    assert "mode-coverage/modes" in out.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counters"]["g_steps"] == 30
    png = Image.open(run_dir / "samples" / "progress.png")
    assert png.width > 2 * png.height  # several panels side by side


@pytest.fixture(scope="module")
def cgan_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("cgan")
    out = run(["fit", "-c", "digits-cgan", "dataset.resolution=8", "generator.width=8", "discriminator.width=8",
               "train.max_steps=6", "train.batch_size=32", "metrics.every_n_steps=3",
               "metrics.list.0.num_samples=200", "metrics.list.1.num_samples=200", f"root_dir={root}"], cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = root / "digits-cgan" / "version_0"
    return run_dir / "checkpoints" / "last.ckpt"


def test_image_run_writes_grids_and_conditional_metrics(cgan_ckpt):
    run_dir = cgan_ckpt.parent.parent
    grid = Image.open(run_dir / "samples" / "step_0000006.png")
    assert grid.width >= 64 and grid.height >= 64
    summary = json.loads((run_dir / "summary.json").read_text())
    cc = summary["metrics"]["class-coverage"]
    assert "class_accuracy" in cc["values"] and cc["protocol"]["classifier"] == "digits-cnn"
    assert summary["metrics"]["fid"]["protocol"]["dtype"] == "float64"


def test_sample_writes_grid_single_images_and_npz(cgan_ckpt, tmp_path):
    out = run(["sample", str(cgan_ckpt), "--num", "12", "--class", "3", "--out", str(tmp_path / "s")], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wrote 12 samples (EMA generator, seed 0)" in out.stdout
    data = np.load(tmp_path / "s" / "samples.npz", allow_pickle=False)
    assert data["x"].shape == (12, 1, 8, 8) and (data["y"] == 3).all()
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 12
    assert (tmp_path / "s" / "grid.png").is_file()
    bad = run(["sample", str(cgan_ckpt), "--class", "10", "--out", str(tmp_path / "t")], cwd=tmp_path)
    assert bad.returncode == 2 and "--class 10: out of range; classes are 0..9" in bad.stderr
    missing = run(["sample", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "t")], cwd=tmp_path)
    assert missing.returncode == 2 and "nope.ckpt' not found" in missing.stderr


def test_evaluate_prints_values_with_protocols_and_saves_the_neighbour_picture(cgan_ckpt, tmp_path):
    out = run(["evaluate", str(cgan_ckpt), "--metrics", "fid,class-coverage,nearest-neighbours",
               "--set", "fid.feature_extractor=digits-cnn", "--set", "nearest-neighbours.num_samples=4",
               "--num-samples", "300", "--json", str(tmp_path / "e.json")], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fid: fid=" in out.stdout and "protocol:" in out.stdout and "class_accuracy=" in out.stdout
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["metrics"]["fid"]["protocol"]["feature_extractor"] == "digits-cnn"
    assert res["metrics"]["fid"]["protocol"]["num_samples"] == 300
    fig = Path(res["metrics"]["nearest-neighbours"]["figure"])
    assert res["metrics"]["nearest-neighbours"]["protocol"]["num_samples"] == 4  # its own --set wins
    img = Image.open(fig)
    assert fig.is_file() and 0 < img.height < 2 * img.width  # 4 rows of 1 + k images
    bad = run(["evaluate", str(cgan_ckpt), "--metrics", "fidd"], cwd=tmp_path)
    assert bad.returncode == 2 and "unknown metric 'fidd'. Did you mean 'fid'" in bad.stderr
