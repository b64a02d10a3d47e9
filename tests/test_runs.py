"""Runs never collide or get overwritten: atomic run directories, resume with a changed config,
finished runs, leftovers of failed starts and killed writes, evaluation before checkpoint, run names."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ganforge.run import rundir
from ganforge.cli.commands import main
from ganforge.run.config import load_config
from ganforge.registry.errors import ConfigError
from ganforge.run.runner import fit

QUICK = ["metrics.list=[]", "train.checkpoint_every_n_steps=1000"]


def _fit(registry, overrides, resume=None):
    return fit(load_config(None, overrides, registry), resume=resume, progress=False, registry=registry)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` with its modification time and content (but the lock, which records
    the process that last held it)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != rundir.LOCK_NAME}


# -- claiming a directory ------------------------------------------------------------------------------


def _claim(base: str, barrier, out) -> None:
    barrier.wait()
    out.put(str(rundir.claim_version(Path(base))))


def test_concurrent_starts_claim_distinct_directories(tmp_path):
    base = tmp_path / "runs" / "same"
    old = time.time() - 3600
    for i in range(3):  # leftovers of killed starts, which every claimer also sweeps at the same time
        (base / f"version_{i}").mkdir(parents=True)
        (base / f"version_{i}" / "config.yaml").write_text("name: same\n")
        os.utime(base / f"version_{i}" / "config.yaml", (old, old))
    ctx = mp.get_context("fork")
    n = 12
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(str(base), barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n
    assert len(set(got)) == n and all(Path(d).is_dir() and not any(Path(d).iterdir()) for d in got)
    assert not list(base.glob("*/config.yaml"))  # the leftovers are gone (or their number was reused)


def test_two_ganforge_fit_started_together_get_two_runs(tiny, tmp_path):
    """The issue's case: two `ganforge fit` of one name at the same moment (before: 2 of 6 shared one)."""
    cmd = [sys.executable, "-m", "ganforge", "fit", *tiny, *QUICK, "name=twins", "train.max_steps=2", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", GANFORGE_PROGRESS="0")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    base = tmp_path / "runs" / "twins"
    assert sorted(p.name for p in base.iterdir()) == ["version_0", "version_1"]
    assert sorted(re.search(r"run directory (\S+) ", o).group(1) for o in outs) == [
        str(base / "version_0"), str(base / "version_1")]
    pids = [[json.loads(line)["pid"] for line in (run / "segments.jsonl").read_text().splitlines()]
            for run in sorted(base.iterdir())]
    assert sorted(pid for (pid,) in pids) == sorted(p.pid for p in procs)  # one segment each, one process each


def test_claim_takes_the_next_number_when_another_process_got_there_first(tmp_path, monkeypatch):
    """Everyone lists the same versions (a stale view): mkdir without exist_ok still separates them."""
    base = tmp_path / "runs" / "same"
    monkeypatch.setattr(rundir, "_max_version", lambda base: -1)
    claimed = [rundir.claim_version(base) for _ in range(3)]
    assert [p.name for p in claimed] == ["version_0", "version_1", "version_2"]


def test_a_run_in_use_cannot_be_resumed_by_a_second_process(tiny, registry, tmp_path):
    first = _fit(registry, tiny + QUICK + ["name=busy", "train.max_steps=4"])
    run = first["run_dir"]
    held = rundir.RunLock(run).acquire()  # as a live process running it would
    try:
        before = snapshot(run)
        with pytest.raises(ConfigError, match=rf"run directory {run} is in use by another ganforge process "
                                              rf"\(pid {os.getpid()} on .*\); wait for it"):
            _fit(registry, tiny + QUICK + ["name=busy", "train.max_steps=6"], resume="auto")
        assert snapshot(run) == before
    finally:
        held.release()
    assert _fit(registry, tiny + QUICK + ["name=busy", "train.max_steps=6"], resume="auto")["module"].g_steps == 6


# -- resume with a different config --------------------------------------------------------------------


def test_resume_refuses_changes_to_what_is_trained_and_changes_nothing(tiny, registry):
    first = _fit(registry, tiny + QUICK + ["name=exp", "train.max_steps=6"])
    run = first["run_dir"]
    ckpt = run / "checkpoints" / "last.ckpt"
    before = snapshot(run)
    for overrides, keys in [
        (["objective.name=minimax", "generator.width=64", "seed=3"], ["generator.width: 32 -> 64", "seed: 0 -> 3",
                                                                      "objective.name: 'hinge' -> 'minimax'"]),
        (["dataset.name=gaussian-grid"], ["dataset.name: 'gaussian-ring' -> 'gaussian-grid'",
                                          "dataset.num_modes: 8 -> (absent)", "dataset.per_side: (absent) -> 5"]),
        (["train.batch_size=32", "optim.generator.name=sgd"], ["train.batch_size: 64 -> 32",
                                                              "optim.generator.name: 'adam' -> 'sgd'"]),
    ]:
        with pytest.raises(ConfigError) as err:
            _fit(registry, tiny + QUICK + ["name=exp", "train.max_steps=12", *overrides], resume=str(ckpt))
        msg = str(err.value)
        assert msg.startswith(f"--resume {ckpt}: the config differs from the checkpoint's in what is trained")
        assert "\n" not in msg and "Nothing was changed" in msg and "train.max_steps" in msg.split("Allowed")[1]
        for key in keys:
            assert key in msg, (key, msg)
        assert "train.max_steps: 6 -> 12" not in msg  # an allowed change is not listed as refused
        assert snapshot(run) == before
    # the CLI: one line on stderr, exit 2, no traceback
    rc = main(["fit", *tiny, *QUICK, "name=exp", "train.max_steps=12", "seed=3", "--resume", str(ckpt),
               "--no-progress"])
    assert rc == 2 and snapshot(run) == before


def test_max_steps_is_fixed_when_the_learning_rate_decays_to_it(tiny, registry):
    first = _fit(registry, tiny + QUICK + ["name=decay", "train.max_steps=6", "train.lr_decay=linear"])
    before = snapshot(first["run_dir"])
    with pytest.raises(ConfigError, match=r"\(train.max_steps moves the end of train.lr_decay=linear\): "
                                          r"train.max_steps: 6 -> 9"):
        _fit(registry, tiny + QUICK + ["name=decay", "train.max_steps=9", "train.lr_decay=linear"], resume="auto")
    assert snapshot(first["run_dir"]) == before


def test_allowed_changes_continue_and_are_recorded(tiny, registry):
    first = _fit(registry, tiny + QUICK + ["name=grow", "train.max_steps=6"])
    run = first["run_dir"]
    original = (run / "config.yaml").read_bytes()
    second = _fit(registry, tiny + QUICK + ["name=grow", "train.max_steps=9", "train.log_every_n_steps=3",
                                            "samples.snapshots=3", "train.on_nonfinite=skip",
                                            "optim.generator.lr=0.0005"], resume="auto")
    assert second["run_dir"] == run and second["module"].g_steps == 9
    assert (run / "config.yaml").read_bytes() == original  # the first start's config stays as written
    segments = [json.loads(line) for line in (run / "segments.jsonl").read_text().splitlines()]
    assert [s["segment"] for s in segments] == [0, 1]
    assert segments[0]["changes"] == {} and segments[0]["config"] == "config.yaml"
    assert segments[0]["start"]["g_steps"] == 0 and segments[0]["resumed_from"] is None
    assert segments[1]["changes"] == {"train.max_steps": [6, 9], "train.log_every_n_steps": [5, 3],
                                      "samples.snapshots": [6, 3], "train.on_nonfinite": ["stop", "skip"],
                                      "optim.generator.lr": [0.001, 0.0005]}
    assert segments[1]["start"]["g_steps"] == 6 and segments[1]["resumed_from"].endswith("last.ckpt")
    assert segments[1]["config"] == "config.segment_1.yaml" and segments[1]["host"]
    effective = yaml.safe_load((run / "config.segment_1.yaml").read_text())
    assert effective["train"]["max_steps"] == 9 and effective["train"]["on_nonfinite"] == "skip"
    assert effective == json.loads(json.dumps(second["module"].run_config))


def test_a_finished_run_is_not_touched_by_a_lower_or_equal_max_steps(tiny, registry, capsys):
    first = _fit(registry, tiny + ["name=done", "train.max_steps=10", "metrics.every_n_steps=5"])
    run = first["run_dir"]
    before = snapshot(run)
    with pytest.raises(ConfigError, match=r"the run is already past train.max_steps=4 \(it is at generator step 10\)"
                                          r"\. Nothing was changed\. To train further set train.max_steps above 10"):
        _fit(registry, tiny + ["name=done", "train.max_steps=4", "metrics.every_n_steps=5"], resume="auto")
    assert snapshot(run) == before
    capsys.readouterr()
    again = _fit(registry, tiny + ["name=done", "train.max_steps=10", "metrics.every_n_steps=5"], resume="auto")
    assert "has already reached train.max_steps=10 (generator step 10): nothing to do" in capsys.readouterr().out
    assert again["module"] is None and again["summary"]["counters"]["g_steps"] == 10
    assert snapshot(run) == before  # no rewritten config, summary (wall_time_s) or duplicated row
    with pytest.raises(ConfigError, match=r"already past train.max_images=320 \(it is at 640 images seen\)"):
        _fit(registry, tiny + ["name=done", "train.max_steps=null", "train.max_images=320",
                               "metrics.every_n_steps=5"], resume="auto")
    assert snapshot(run) == before


# -- leftovers ------------------------------------------------------------------------------------------


def test_a_failed_start_removes_its_directory(tiny, registry, monkeypatch):
    import lightning as L

    def broken(self, *args, **kwargs):
        raise RuntimeError("could not initialise the accelerator")

    monkeypatch.setattr(L.Trainer, "fit", broken)
    with pytest.raises(RuntimeError, match="accelerator"):
        _fit(registry, tiny + ["name=fails"])
    base = Path(load_config(None, tiny, registry)["root_dir"]) / "fails"
    assert list(base.iterdir()) == []


def test_leftovers_of_killed_starts_are_removed_and_nothing_else(tmp_path, capsys):
    base = tmp_path / "runs" / "x"
    old = time.time() - 3600

    def make(name: str, files: dict[str, str], mtime: float = old) -> Path:
        d = base / name
        d.mkdir(parents=True)
        for f, text in files.items():
            (d / f).write_text(text)
            os.utime(d / f, (mtime, mtime))
        return d

    legacy = make("version_0", {"config.yaml": "name: x\n"})                       # old ganforge, died in start
    dead = make("version_1", {"config.yaml": "a", "segments.jsonl": "{}\n", rundir.LOCK_NAME: ""})  # owner gone
    mine = make("version_2", {"config.yaml": "a", "notes.txt": "my notes"})       # a user's file: keep all
    empty = base / "version_3"
    empty.mkdir()                                                                  # empty: keep
    live = make("version_4", {"config.yaml": "a", rundir.LOCK_NAME: ""})
    fresh = make("version_5", {"config.yaml": "a"}, mtime=time.time())            # may be starting right now
    other = make("keep_me", {"config.yaml": "a"})                                   # not a run directory name
    held = rundir.RunLock(live).acquire()                                           # its owner is alive
    try:
        claimed = rundir.claim_version(base)
    finally:
        held.release()
    assert claimed == base / "version_6"
    assert not legacy.exists() and not dead.exists()
    assert all(p.is_dir() for p in (mine, empty, live, fresh, other))
    assert (mine / "notes.txt").read_text() == "my notes" and (mine / "config.yaml").is_file()
    out = capsys.readouterr().out
    assert f"removed {legacy}: the leftover of a start that failed before training" in out and str(mine) not in out


# -- a kill right after the checkpoint of an evaluation step --------------------------------------------

KILL = """
import os, sys
from ganforge.run import callbacks
save = callbacks.GANCheckpoint.save
def save_then_die(self, trainer, pl_module):
    save(self, trainer, pl_module)
    if pl_module.g_steps == 10:
        os._exit(9)  # kill -9 right after the checkpoint of step 10
callbacks.GANCheckpoint.save = save_then_die
from ganforge.cli.commands import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_after_the_eval_step_checkpoint_keeps_evaluation_and_pictures(tiny, registry):
    overrides = tiny + ["name=killed", "train.checkpoint_every_n_steps=10", "metrics.every_n_steps=10"]
    env = dict(os.environ, OMP_NUM_THREADS="1", GANFORGE_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-c", KILL, "fit", *overrides, "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    run = Path(load_config(None, tiny, registry)["root_dir"]) / "killed" / "version_0"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [float(r["step"]) for r in rows if r.get("metrics/mode-coverage/modes")] == [10]
    assert (run / "samples" / "step_0000010.png").is_file()
    # a write killed half-way leaves its temporary; ganforge's are removed on resume, a user's are kept
    (run / "checkpoints" / ".last.ckpt.k1ll3d_x.tmp").write_bytes(b"half")
    (run / "samples" / ".step_0000020.png.abcd1234.tmp").write_bytes(b"half")
    (run / "checkpoints" / "mine.tmp").write_text("user")
    (run / "checkpoints" / ".last.ckpt.tmp").write_text("user")
    out = _fit(registry, overrides, resume="auto")
    assert out["module"].g_steps == 20
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [float(r["step"]) for r in rows if r.get("metrics/mode-coverage/modes")] == [10, 20]
    assert [h["g_steps"] for h in out["summary"]["history"]] == [10, 20]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [".last.ckpt.tmp", "last.ckpt", "mine.tmp"]
    assert not list((run / "samples").glob("*.tmp"))
    # the same config after a kill (a SLURM requeue's case): no changes, still a segment of its own
    segments = [json.loads(line) for line in (run / "segments.jsonl").read_text().splitlines()]
    assert [(s["segment"], s["start"]["g_steps"], s["changes"], s["config"]) for s in segments] == [
        (0, 0, {}, "config.yaml"), (1, 10, {}, "config.yaml")]


# -- run names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", "a/b", "/abs", ".", "a\\b"])
def test_path_like_names_are_refused(registry, name):
    with pytest.raises(ConfigError, match=rf"^name: {re.escape(repr(name))} is not a run name: .* set root_dir\.$"):
        load_config(None, [f"name={name}"], registry)


def test_plain_names_are_accepted(registry):
    for name in ("ring8", "ring8-hinge_v2", "run.1"):
        assert load_config(None, [f"name={name}"], registry)["name"] == name
