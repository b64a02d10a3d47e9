"""A real one-node SLURM cluster (Debian's slurm-wlm, started by tests/cluster/slurm.sh):
the sbatch template runs a 2-task ganforge fit, and a SIGUSR1 mid-run checkpoints, requeues and
resumes the same run with no step done twice or lost."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slurm, pytest.mark.distributed]


DAEMONS = ("slurmd", "slurmctld", "munged")  # stopped in this order: the node, the controller, auth


def _pids(name: str) -> set[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def stop_started(before: dict[str, set[int]], names: tuple[str, ...] = DAEMONS) -> list[str]:
    """Stop the daemons these tests started, by pid, and only those: a daemon that ran before the
    tests (someone's own cluster) is left alone, even if ``slurm.sh up`` restarted it."""
    stopped = []
    for name in names:
        if before[name]:
            continue
        for pid in _pids(name):
            if _comm(pid) == name:
                os.kill(pid, signal.SIGTERM)
                stopped.append(f"{name}[{pid}]")
        end = time.time() + 10
        while time.time() < end and any(_comm(p) == name for p in _pids(name)):
            time.sleep(0.2)
        for pid in _pids(name):
            if _comm(pid) == name:
                os.kill(pid, signal.SIGKILL)
    return stopped


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("SLURM tests need root (they install and start slurm-wlm and munge)")
    if not shutil.which("apt-get") and not shutil.which("sbatch"):
        pytest.skip("SLURM tests need Debian's apt-get to install slurm-wlm")
    before = {name: _pids(name) for name in DAEMONS}
    up = subprocess.run(["bash", str(REPO / "tests" / "cluster" / "slurm.sh"), "up"], capture_output=True, text=True,
                        timeout=900)
    if up.returncode != 0:
        stop_started(before)
        pytest.skip(f"local SLURM cluster could not start: {(up.stderr or up.stdout).strip().splitlines()[-1:]}")
    yield
    if not before["slurmctld"]:  # our controller: cancel what is left of our jobs before it goes
        subprocess.run(["scancel", "--user", str(os.geteuid())], capture_output=True, timeout=60)
    stop_started(before)


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.update(MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", GANFORGE_PROGRESS="0",
               WANDB_MODE="offline", WANDB_DIR=str(tmp), WANDB_CONFIG_DIR=str(tmp / "wandbcfg"),
               WANDB_CACHE_DIR=str(tmp / "wandbcache"), HOME=str(tmp))
    env.pop("GANFORGE_RUN_DIR", None)
    return env


def _submit(tmp: Path, overrides: list[str]) -> str:
    cmd = ["sbatch", "--parsable", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=00:10:00",
           f"--chdir={tmp}", f"--output={tmp}/job-%j.out", str(REPO / "configs" / "slurm" / "ganforge.sbatch"),
           "ring8", f"root_dir={tmp}/runs", "trainer.accelerator=cpu", *overrides]
    out = subprocess.run(cmd, env=_env(tmp), capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().split(";")[0]


def _state(job: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    m = re.search(r"JobState=(\S+)", out)
    return m.group(1) if m else "GONE"


def _wait(job: str, tmp: Path, timeout: float, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "GONE")) -> str:
    end = time.time() + timeout
    while time.time() < end:
        s = _state(job)
        if s in until:
            return s
        time.sleep(1)
    log = "".join(p.read_text()[-3000:] for p in tmp.glob("job-*.out"))
    subprocess.run(["scancel", job])
    pytest.fail(f"job {job} still {_state(job)} after {timeout}s; log tail:\n{log}")


def _rows(run: Path) -> list[dict]:
    return [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("g_steps")]


TINY = ["generator.width=32", "discriminator.width=32", "train.batch_size=64", "dataset.num_samples=5000",
        "metrics.list.0.num_samples=500", "train.log_every_n_steps=5"]


def test_sbatch_template_runs_two_tasks(cluster, tmp_path):
    job = _submit(tmp_path, TINY + ["train.max_steps=40", "metrics.every_n_steps=20"])
    state = _wait(job, tmp_path, 300)
    log = (tmp_path / f"job-{job}.out").read_text()
    assert state == "COMPLETED", log[-3000:]
    run = tmp_path / "runs" / "ring8" / f"slurm_{job}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counters"]["g_steps"] == 40
    assert summary["counters"]["images_seen"] == 40 * 64  # global batch over the 2 ranks
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert f"ganforge: run directory {run} (2 processes, strategy gan_ddp)" in log


def test_signal_checkpoints_requeues_and_resumes(cluster, tmp_path):
    steps = 400
    job = _submit(tmp_path, TINY + [f"train.max_steps={steps}", "metrics.every_n_steps=100", "logger=[csv, wandb]"])
    run = tmp_path / "runs" / "ring8" / f"slurm_{job}"
    end = time.time() + 240
    while time.time() < end:  # signal once training is under way
        if (run / "metrics.csv").is_file() and _rows(run) and float(_rows(run)[-1]["g_steps"]) >= 50:
            break
        assert _state(job) in ("PENDING", "RUNNING", "CONFIGURING"), _state(job)
        time.sleep(0.5)
    else:
        pytest.fail("training did not reach step 50")
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    state = _wait(job, tmp_path, 420)
    log = (tmp_path / f"job-{job}.out").read_text()
    assert state == "COMPLETED", log[-4000:]
    assert "attempt 0" in log and "attempt 1" in log, log[-3000:]  # the sbatch template's per-attempt line
    m = re.search(r"SLURM signal: saved .* at generator step (\d+); requeueing job", log)
    assert m, log[-3000:]
    saved_at = int(m.group(1))
    assert 50 <= saved_at < steps
    assert f"resuming from {run}/checkpoints/last.ckpt" in log
    summary = json.loads((run / "summary.json").read_text())
    c = summary["counters"]
    assert c["g_steps"] == steps and c["d_steps"] == steps and c["iterations"] == steps
    # no step done twice or lost: logged generator steps strictly increase, every 5 steps
    logged = [int(float(r["g_steps"])) for r in _rows(run) if "d_loss" in r and r["d_loss"]]
    assert logged == list(range(5, steps + 1, 5))
    # one W&B run id across both attempts
    ids = {p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")}
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2 and ids == {f"ring8-slurm-{job}".rsplit("-", 1)[-1]}
    # the requeued attempt is a segment of its own with the same config: no changes, config.yaml untouched
    segments = [json.loads(line) for line in (run / "segments.jsonl").read_text().splitlines()]
    assert [(s["segment"], s["start"]["g_steps"], s["changes"], s["config"], s["slurm_job_id"]) for s in segments] == [
        (0, 0, {}, "config.yaml", job), (1, saved_at, {}, "config.yaml", job)]
    assert not list(run.glob("config.segment_*.yaml"))


def _fake_daemon(folder: Path, name: str) -> subprocess.Popen:
    exe = folder / name
    if not exe.exists():
        shutil.copy(shutil.which("sleep"), exe)
    return subprocess.Popen([str(exe), "300"])


@pytest.mark.timeout(60)
def test_teardown_stops_only_the_daemons_the_tests_started(tmp_path):
    """No cluster needed: stand-ins named like daemons (copies of sleep) check the rule."""
    theirs = _fake_daemon(tmp_path, "gf-theirs-d")  # running before the tests: someone else's
    before = {"gf-theirs-d": _pids("gf-theirs-d"), "gf-ours-d": _pids("gf-ours-d")}
    assert theirs.pid in before["gf-theirs-d"] and not before["gf-ours-d"]
    ours = _fake_daemon(tmp_path, "gf-ours-d")  # started by the tests
    try:
        stopped = stop_started(before, names=("gf-ours-d", "gf-theirs-d"))
        assert stopped == [f"gf-ours-d[{ours.pid}]"]
        assert ours.wait(timeout=15) == -signal.SIGTERM
        assert theirs.poll() is None and not _pids("gf-ours-d")
    finally:
        for p in (ours, theirs):
            if p.poll() is None:
                p.kill()
            p.wait()
