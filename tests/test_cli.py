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


# -- bad arguments and misbehaving metrics (issue 11): one line, no traceback ---------------------------


def test_sample_arguments_are_checked_before_the_checkpoint_is_read(cgan_ckpt, tmp_path):
    env_cpu = {"CUDA_VISIBLE_DEVICES": ""}
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    cases = [
        (["--num", "0"], "ganforge: error: --num 0: the number of samples must be >= 1."),
        (["--num", "-5"], "ganforge: error: --num -5: the number of samples must be >= 1."),
        (["--out", str(a_file)], f"ganforge: error: --out {a_file}: '{a_file}' is a file, not a directory"),
        (["--out", str(a_file / "sub")], f"ganforge: error: --out {a_file / 'sub'}: '{a_file}' is a file"),
        (["--device", "cuda"], "ganforge: error: --device cuda: no CUDA GPU is visible on this machine; use --device cpu."),
        (["--device", "gpu0"], "ganforge: error: --device gpu0: not a device; use cpu, cuda or cuda:<index>."),
        (["--seed", "-1"], "ganforge: error: --seed -1: must be in [0, 4294967295]."),
    ]
    for extra, message in cases:
        args = ["sample", str(cgan_ckpt), "--out", str(tmp_path / "ok"), *extra]
        out = run_env(args, tmp_path, env_cpu)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (extra, out.stderr[-2000:])
        assert out.stderr.strip().startswith(message), (extra, out.stderr)
    assert not (tmp_path / "ok").exists()
    good = run_env(["sample", str(cgan_ckpt), "--num", "1", "--seed", "4294967295", "--device", "cpu",
                    "--out", str(tmp_path / "ok")], tmp_path, env_cpu)
    assert good.returncode == 0, good.stderr[-2000:]
    assert np.load(tmp_path / "ok" / "samples.npz")["x"].shape[0] == 1
    bad_eval = run_env(["evaluate", str(cgan_ckpt), "--num-samples", "0"], tmp_path, env_cpu)
    assert bad_eval.returncode == 2 and bad_eval.stderr.strip() == "ganforge: error: --num-samples 0: must be >= 1."
    cuda_eval = run_env(["evaluate", str(cgan_ckpt), "--device", "cuda:0"], tmp_path, env_cpu)
    assert cuda_eval.returncode == 2 and "--device cuda:0: no CUDA GPU is visible" in cuda_eval.stderr


def run_env(args, cwd, extra_env, timeout=600):
    env = dict(os.environ, GANFORGE_PROGRESS="0", **extra_env)
    env.pop("GANFORGE_RUN_DIR", None)
    return subprocess.run(GANFORGE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


BAD_METRIC = {
    "badmetric_mod": """
        from typing import Literal
        import torch
        from ganforge import hookimpl, GANMetric

        class Bad(GANMetric):
            def __init__(self, returns: Literal["list", "vector", "ok"] = "list", num_samples: int = 50):
                self.returns, self.num_samples = returns, num_samples

            def reset(self):
                pass

            def update(self, x, y=None):
                pass

            def compute(self):
                if self.returns == "list":
                    return [1.0, 2.0]
                if self.returns == "vector":
                    return {"score": torch.ones(3)}
                return {"score": torch.tensor(0.5)}

            def protocol(self):
                return {"returns": self.returns}

        @hookimpl
        def ganforge_register_metrics(register):
            register("bad-metric", Bad)
    """
}


def test_a_metric_returning_a_non_dict_stops_training_naming_it_and_the_checkpoint(tmp_path):
    from conftest import TINY, make_fake_distribution

    site = make_fake_distribution(tmp_path / "site", "ganforge-badmetric", BAD_METRIC, {"badmetric": "badmetric_mod"})
    base = TINY + [f"root_dir={tmp_path / 'runs'}", "train.max_steps=10", "metrics.every_n_steps=10",
                   "train.checkpoint_every_n_steps=5", "metrics.list.1.name=bad-metric"]
    env = {"PYTHONPATH": str(site)}
    for returns, what in [("list", "returned list [1.0, 2.0]"), ("vector", "returned 'score' with shape (3,), not a scalar")]:
        out = run_env(["fit", *base, f"metrics.list.1.returns={returns}"], tmp_path, env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
        last = out.stderr.strip().splitlines()[-1]
        ckpt = tmp_path / "runs" / "ring8" / ("version_0" if returns == "list" else "version_1") / "checkpoints" / "last.ckpt"
        assert last == (f"ganforge: error: metrics.list[1] (metric 'bad-metric' from plugin 'badmetric' "
                        f"(ganforge-badmetric 0.0.1)): compute() {what}; expected a dict of name → number. "
                        f"Training stopped at generator step 10; the last checkpoint is {ckpt} (resume with "
                        f"--resume {ckpt} after fixing the metric, or drop it from metrics.list)."), last
        assert ckpt.is_file()
    good = run_env(["fit", *base, "metrics.list.1.returns=ok"], tmp_path, env)
    assert good.returncode == 0, good.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "ring8" / "version_2" / "summary.json").read_text())
    assert summary["metrics"]["bad-metric"]["values"] == {"score": 0.5}
    # `ganforge evaluate` checks the result the same way
    ckpt = tmp_path / "runs" / "ring8" / "version_0" / "checkpoints" / "last.ckpt"
    ev = run_env(["evaluate", str(ckpt), "--metrics", "bad-metric"], tmp_path, env)
    assert ev.returncode == 2 and "Traceback" not in ev.stderr, ev.stderr[-3000:]
    assert ev.stderr.strip() == ("ganforge: error: --metrics bad-metric (metric 'bad-metric' from plugin 'badmetric' "
                                 "(ganforge-badmetric 0.0.1)): compute() returned list [1.0, 2.0]; expected a dict of "
                                 "name → number.")
    ok = run_env(["evaluate", str(ckpt), "--metrics", "bad-metric", "--set", "bad-metric.returns=ok"], tmp_path, env)
    assert ok.returncode == 0 and "bad-metric: score=0.5" in ok.stdout, ok.stderr[-3000:]
