"""Resume keeps the whole story: an interrupted and resumed run's evaluation history, pictures,
metrics.csv rows and training time tell what an uninterrupted run tells (the CPU resume is
bit-exact, so values and PNGs are compared exactly); ``--resume auto`` says what it took."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.run.callbacks import SamplePictures
from ganforge.contract.components import DataInfo
from ganforge.run.config import load_config
from ganforge.reporting.imaging import points_extent
from ganforge.registry.errors import ConfigError
from ganforge.run.runner import fit

pytestmark = pytest.mark.timeout(300)

# evaluations and pictures every 5 generator steps, checkpoints every 10
OBSERVED = ["metrics.every_n_steps=5", "samples.every_n_steps=5", "samples.snapshots=4",
            "train.checkpoint_every_n_steps=10"]


def _fit(registry, overrides, resume=None):
    return fit(load_config(None, overrides, registry), resume=resume, progress=False, registry=registry)


def _story(run: Path) -> dict:
    """What a run tells afterwards: summary history and times, pictures, metrics.csv rows."""
    summary = json.loads((run / "summary.json").read_text())
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return {
        "summary": summary,
        "history": summary["history"],
        "progress": (run / "samples" / "progress.png").read_bytes(),
        "frames": {p.name: p.read_bytes() for p in sorted((run / "samples").glob("step_*.png"))},
        "rows": rows,
        "eval_steps": [int(r["step"]) for r in rows if r.get("metrics/mode-coverage/modes")],
        "loss_steps": [int(r["step"]) for r in rows if r.get("d_loss")],
    }


def _same_story(whole: dict, parts: dict) -> None:
    assert [h["g_steps"] for h in parts["history"]] == [h["g_steps"] for h in whole["history"]]
    assert parts["history"] == whole["history"]  # values too: the resume is bit-exact on the CPU
    assert parts["frames"].keys() == whole["frames"].keys()
    assert parts["frames"] == whole["frames"]
    assert parts["progress"] == whole["progress"]  # the same panels, pixel for pixel
    assert parts["eval_steps"] == whole["eval_steps"]  # each evaluation once, none lost
    assert parts["loss_steps"] == whole["loss_steps"]
    assert parts["rows"] == whole["rows"]


def _check_times(summary: dict, starts: list[int], ends: list[int]) -> None:
    segments = summary["segments"]
    assert [s["segment"] for s in segments] == list(range(len(starts)))
    assert [s["start_g_steps"] for s in segments] == starts and [s["end_g_steps"] for s in segments] == ends
    assert all(s["wall_time_s"] > 0 and s["host"] and s["started"] for s in segments)
    assert summary["wall_time_s"] >= sum(s["wall_time_s"] for s in segments) - 1e-3
    assert summary["wall_time_s"] > max(s["wall_time_s"] for s in segments)  # all segments, not the last


def test_resumed_run_tells_the_same_story_as_an_uninterrupted_one(tiny, registry):
    whole = _fit(registry, tiny + OBSERVED + ["name=whole", "train.max_steps=20"])
    _fit(registry, tiny + OBSERVED + ["name=parts", "train.max_steps=10"])
    parts = _fit(registry, tiny + OBSERVED + ["name=parts", "train.max_steps=20"], resume="auto")
    a, b = _story(whole["run_dir"]), _story(parts["run_dir"])
    assert [h["g_steps"] for h in a["history"]] == [5, 10, 15, 20]
    assert list(a["frames"]) == [f"step_{s:07d}.png" for s in (0, 5, 10, 15, 20)]
    _same_story(a, b)
    _check_times(b["summary"], [0, 10], [10, 20])
    assert parts["summary"]["segments"] == b["summary"]["segments"]  # fit() returns what it wrote


def test_the_final_evaluation_of_a_segment_survives_the_resume(tiny, registry):
    """Segment 1 ends on a checkpoint step that is not an evaluation step: its final evaluation and
    picture come after that step's checkpoint, which is written again to hold them."""
    common = tiny + ["metrics.every_n_steps=4", "samples.every_n_steps=4", "train.checkpoint_every_n_steps=10",
                     "name=ends"]
    _fit(registry, common + ["train.max_steps=10"])
    out = _fit(registry, common + ["train.max_steps=20"], resume="auto")
    story = _story(out["run_dir"])
    assert [h["g_steps"] for h in story["history"]] == [4, 8, 10, 12, 16, 20]
    assert story["eval_steps"] == [4, 8, 10, 12, 16, 20]  # each exactly once
    assert sorted(story["loss_steps"]) == story["loss_steps"] and len(set(story["loss_steps"])) == len(
        story["loss_steps"])
    ckpt = torch.load(out["run_dir"] / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    frames = next(v for k, v in ckpt["callbacks"].items() if "SamplePictures" in k)["frames"]
    assert [s for s, _ in frames] == [0, 4, 8, 10, 12, 16, 20]


KILL9 = """
import os, signal, sys
from ganforge.loop import module
step = module.GANModule.training_step
def step_then_kill(self, *args):
    step(self, *args)
    if self.g_steps == 13:  # between the checkpoints of steps 10 and 20, after rows of 11-13 were logged
        os.kill(os.getpid(), signal.SIGKILL)
module.GANModule.training_step = step_then_kill
from ganforge.cli.commands import main
sys.exit(main(sys.argv[1:]))
"""


def _ganforge(args: list[str], cwd: Path, kill: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", GANFORGE_PROGRESS="0")
    env.pop("GANFORGE_RUN_DIR", None)
    cmd = [sys.executable, "-c", KILL9] if kill else [sys.executable, "-m", "ganforge"]
    return subprocess.run([*cmd, "fit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_kill_9_mid_run_then_resume_auto_tells_the_same_story(tiny, tmp_path):
    common = [*tiny, *OBSERVED, "train.max_steps=20", "train.log_every_n_steps=1"]
    whole = _ganforge([*common, "name=whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = _ganforge([*common, "name=killed"], tmp_path, kill=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "runs" / "killed" / "version_0"
    assert max(int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))) == 13  # rows past the checkpoint
    resumed = _ganforge([*common, "name=killed", "--resume", "auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"--resume auto: took run {run}, checkpoint last.ckpt (generator step 10, saved "
            in resumed.stdout), resumed.stdout
    a, b = _story(tmp_path / "runs" / "whole" / "version_0"), _story(run)
    assert b["loss_steps"] == list(range(1, 21))  # steps 11-13 of the killed segment were replaced, not repeated
    _same_story(a, b)
    # the killed segment counts up to its checkpoint (the work the model holds), then the resumed one
    _check_times(b["summary"], [0, 10], [10, 20])
    lines = [json.loads(line) for line in (run / "segments.jsonl").read_text().splitlines()]
    assert [(s["segment"], s["start"]["g_steps"]) for s in lines] == [(0, 0), (1, 10)]


def test_resume_auto_takes_the_newest_by_the_checkpoints_own_time_and_says_so(tiny, registry, capsys):
    quick = tiny + ["metrics.list=[]", "name=many"]
    _fit(registry, quick + ["train.max_steps=6"])  # version_0
    _fit(registry, quick + ["train.max_steps=4"])  # version_1, saved later
    base = Path(load_config(None, tiny, registry)["root_dir"]) / "many"
    old = base / "version_0" / "checkpoints" / "last.ckpt"
    os.utime(old, (old.stat().st_atime, old.stat().st_mtime + 3600))  # copied/touched: mtime would mislead
    damaged = base / "version_2" / "checkpoints" / "last.ckpt"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("not a checkpoint")
    capsys.readouterr()
    out = _fit(registry, quick + ["train.max_steps=8"], resume="auto")
    said = capsys.readouterr().out
    assert out["run_dir"] == base / "version_1" and out["module"].g_steps == 8
    assert f"--resume auto: took run {base / 'version_1'}, checkpoint last.ckpt (generator step 4, saved " in said
    assert "1 other run has a checkpoint: version_0 (generator step 6, saved " in said
    assert f"Skipped unreadable: {damaged}." in said


def test_resume_auto_with_only_a_damaged_checkpoint_refuses_instead_of_starting_over(tiny, registry):
    damaged = Path(load_config(None, tiny, registry)["root_dir"]) / "broken" / "version_0" / "checkpoints" / "last.ckpt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"last\.ckpt"):
        _fit(registry, tiny + ["metrics.list=[]", "name=broken"], resume="auto")
    assert not (damaged.parent.parent.parent / "version_1").exists()  # no new run started over it


def test_point_pictures_keep_their_axes_after_a_resume():
    """Points without known modes: the axes come from the first frame (step 0), which the checkpoint
    holds, not from whatever frame a resumed segment draws first."""
    info = DataInfo(sample_shape=(2,), kind="points", name="no-modes")
    first = torch.randn(500, 2)
    later = 10 * torch.randn(500, 2) + 5
    pictures = SamplePictures(Path("."), 5, 500, 4, 0, 20)
    pictures.load_state_dict({"frames": [(0, first)]})

    class Module:
        pass

    module = Module()
    module.info = info
    got = pictures.extent(module, later)
    assert np.allclose(got, points_extent(info, first.numpy()))
    assert not np.allclose(got, points_extent(info, later.numpy()))
