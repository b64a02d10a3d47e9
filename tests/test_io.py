"""Writing a run's files: strict JSON (no bare NaN), and a full disk, a read-only file system or a
missing permission as one message naming the file, the cause, the previous checkpoint and the fix."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY
from ganforge.io import DiskWriteError, atomic_torch_save, atomic_write_text, write_json


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_write_json_turns_nan_and_inf_into_null_and_names_them(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"metrics": {"fid": {"values": {"fid": math.nan, "kid": 0.5}}},
                      "history": [{"g_steps": 10, "kl": math.inf}, {"g_steps": 20, "kl": -math.inf}]})
    data = _strict(path.read_text())  # a bare NaN/Infinity would raise here
    assert data["metrics"]["fid"]["values"] == {"fid": None, "kid": 0.5}
    assert data["history"][0]["kl"] is None and data["history"][1]["kl"] is None
    assert data["non_finite"] == {"metrics.fid.values.fid": "nan", "history[0].kl": "inf", "history[1].kl": "-inf"}
    write_json(path, {"a": 1.0})
    assert "non_finite" not in _strict(path.read_text())


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only): a disk that fills, or is remounted read-only."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> None:
    with open(mnt / "filler", "wb", buffering=0) as f:  # unbuffered: the last write fails, not close()
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def test_full_disk_checkpoint_names_file_cause_and_the_intact_previous_one(tiny_disk):
    last = tiny_disk / "run" / "checkpoints" / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.zeros(100)}, last)
    before = last.read_bytes()
    _fill(tiny_disk)
    with pytest.raises(DiskWriteError) as exc:
        atomic_torch_save({"step": 2, "w": torch.zeros(200_000)}, last)
    msg = str(exc.value)
    assert msg.startswith(f"cannot write {last}: the disk is full")
    assert f"The previous checkpoint {last} is intact" in msg and f"--resume {last}" in msg
    assert "df -h" in msg and "root_dir" in msg
    assert last.read_bytes() == before  # the old checkpoint survived
    assert not list(last.parent.glob(".*.tmp"))  # no half-written temporary file left behind


def test_full_disk_before_any_checkpoint_says_there_is_none(tiny_disk):
    _fill(tiny_disk)
    with pytest.raises(DiskWriteError) as exc:
        atomic_write_text(tiny_disk / "run" / "summary.json", "x" * 100_000)
    assert "No checkpoint of this run had been written yet." in str(exc.value)
    assert "intact" not in str(exc.value)


def _fit(root: Path, tmp_path: Path, extra: tuple = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, GANFORGE_PROGRESS="0", OMP_NUM_THREADS="1")
    env.pop("GANFORGE_RUN_DIR", None)
    return subprocess.run([sys.executable, "-m", "ganforge", "fit", *TINY, f"root_dir={root}", *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_fit_on_a_read_only_file_system_is_one_message(tiny_disk, tmp_path):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    out = _fit(tiny_disk / "runs", tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    line = [x for x in out.stderr.splitlines() if x.startswith("ganforge: error:")]
    assert len(line) == 1 and f"cannot write {tiny_disk / 'runs'}" in line[0]
    assert "the file system is read-only" in line[0] and "set root_dir to a writable directory" in line[0]


def test_disk_full_mid_run_names_the_checkpoint_and_keeps_the_previous_one(tiny_disk, tmp_path, monkeypatch, capsys):
    from ganforge.cli import commands as cli
    from ganforge.run.callbacks import GANCheckpoint

    save = GANCheckpoint.save

    def save_then_fill(self, trainer, pl_module):
        save(self, trainer, pl_module)
        if pl_module.g_steps == 10:
            _fill(tiny_disk)  # the disk fills up after the first checkpoint

    monkeypatch.setattr(GANCheckpoint, "save", save_then_fill)
    monkeypatch.delenv("GANFORGE_RUN_DIR", raising=False)
    rc = cli.main(["fit", *TINY, f"root_dir={tiny_disk / 'runs'}", "train.checkpoint_every_n_steps=10",
                   "samples.every_n_steps=1000", "logger=[]"])
    err = capsys.readouterr().err
    last = tiny_disk / "runs" / "ring8" / "version_0" / "checkpoints" / "last.ckpt"
    assert rc == 1, err[-3000:]
    assert "Traceback" not in err
    assert f"ganforge: error: cannot write {last}: the disk is full" in err
    assert f"The previous checkpoint {last} is intact" in err
    state = torch.load(last, map_location="cpu", weights_only=True)["ganforge"]
    assert state["counters"]["g_steps"] == 10  # the checkpoint before the disk filled, whole


def test_fit_on_a_full_disk_is_one_message(tiny_disk, tmp_path):
    _fill(tiny_disk)
    out = _fit(tiny_disk / "runs", tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    lines = [x for x in out.stderr.splitlines() if x.startswith("ganforge: error:")]
    assert len(lines) == 1 and "the disk is full" in lines[0] and "root_dir" in lines[0]
