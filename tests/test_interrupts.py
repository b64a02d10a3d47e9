"""Ctrl-C and SIGTERM on a real ``ganforge fit``: during training (stop after the step, save
``last.ckpt`` and a summary marked interrupted, exit 130/143, and the printed resume command
finishes the run with exact counters), during start-up, during the final evaluation, and twice."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, make_fake_distribution

pytestmark = pytest.mark.timeout(300)

# A callback plugin that makes the start-up or the end of training slow, so that a signal lands there.
SLOW = {
    "slow_mod": """
        import time
        import lightning as L
        from ganforge import hookimpl

        class SlowEnd(L.Callback):
            def __init__(self, end_delay, step_delay):
                self.end_delay = end_delay
                self.step_delay = step_delay

            def on_train_batch_end(self, trainer, pl_module, *args):
                time.sleep(self.step_delay)

            def on_train_end(self, trainer, pl_module):
                if self.end_delay:
                    print("slow: final evaluation under way", flush=True)
                    time.sleep(self.end_delay)

        def slow(start_delay: float = 0.0, end_delay: float = 0.0, step_delay: float = 0.0) -> SlowEnd:
            if start_delay:
                print("slow: building", flush=True)
                time.sleep(start_delay)
            return SlowEnd(end_delay, step_delay)

        @hookimpl
        def ganforge_register_callbacks(register):
            register("slow", slow, description="sleeps at start-up or at the end (tests)")
    """,
}


def _strict_json(path: Path) -> dict:
    def no_constants(name: str) -> None:
        raise ValueError(f"{path} holds {name}: not JSON")

    return json.loads(path.read_text(), parse_constant=no_constants)


@pytest.fixture
def env(tmp_path):
    site = make_fake_distribution(tmp_path / "site", "ganforge-slow", SLOW, {"slow": "slow_mod"})
    e = dict(os.environ, GANFORGE_PROGRESS="0", OMP_NUM_THREADS="1", PYTHONPATH=str(site))
    e.pop("GANFORGE_RUN_DIR", None)
    return e


def _start(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganforge", "fit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ganforge fit ended (rc {proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {what} after {timeout}s")


def _logged_steps(run: Path) -> list[int]:
    return [int(float(r["g_steps"])) for r in csv.DictReader(open(run / "metrics.csv")) if r.get("d_loss")]


def _mid_run(tmp_path: Path, env: dict, steps: int, extra: tuple = ()) -> tuple[subprocess.Popen, Path]:
    args = [*TINY, f"train.max_steps={steps}", "metrics.every_n_steps=500", "root_dir=runs", *extra]
    proc = _start(args, tmp_path, env)
    run = tmp_path / "runs" / "ring8" / "version_0"
    # under way: the run directory exists and the first losses are logged
    _wait_for(lambda: (run / "metrics.csv").is_file() and _logged_steps(run), proc, "training under way")
    return proc, run


@pytest.mark.parametrize("log_every", [5, 50])
def test_ctrl_c_mid_run_saves_and_the_printed_command_resumes_to_exact_counters(tmp_path, env, log_every):
    """Logging every 50 steps lets chunks of 16 iterations per Lightning batch (train.iterations_per_batch)
    run whole: the signal lands inside one and is acted on at its end."""
    steps = 1500
    proc, run = _mid_run(tmp_path, env, steps, (f"train.log_every_n_steps={log_every}",))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    summary = _strict_json(run / "summary.json")
    stopped = summary["interrupted"]
    assert stopped["signal"] == "SIGINT" and stopped["during"] == "training" and stopped["checkpoint_is_current"]
    g = summary["counters"]["g_steps"]
    assert 0 < g < steps and stopped["g_steps"] == g
    assert f"stopped by SIGINT (Ctrl-C) after generator step {g}: saved runs/ring8/version_0/checkpoints/last.ckpt" in err
    assert (run / "checkpoints" / "last.ckpt").is_file()
    command = err.split("Resume with: ", 1)[1].splitlines()[0]
    argv = shlex.split(command)
    assert argv[:2] == ["ganforge", "fit"] and argv[-2:] == ["--resume", "runs/ring8/version_0/checkpoints/last.ckpt"]

    again = subprocess.run([sys.executable, "-m", "ganforge", *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from runs/ring8/version_0/checkpoints/last.ckpt" in again.stdout
    final = _strict_json(run / "summary.json")
    assert "interrupted" not in final
    c = final["counters"]
    assert c["g_steps"] == c["d_steps"] == c["iterations"] == steps and c["images_seen"] == steps * 64
    assert _logged_steps(run) == list(range(log_every, steps + 1, log_every))  # no step done twice or lost


def test_sigterm_mid_run_saves_and_exits_143(tmp_path, env):
    proc, run = _mid_run(tmp_path, env, 1500)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM after generator step" in err and "Traceback" not in err
    summary = _strict_json(run / "summary.json")
    assert summary["interrupted"]["signal"] == "SIGTERM"
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_three_quick_interrupts_exit_at_once_without_a_traceback(tmp_path, env):
    # half a second per step: the second and third Ctrl-C come while the first waits for the step's end
    proc, run = _mid_run(tmp_path, env, 1500, ("callbacks=[{name: slow, step_delay: 0.5}]",))
    t0 = time.time()
    for _ in range(3):
        try:
            proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.1)  # signals sent closer together merge into one (Linux keeps one pending SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 0.5 + 5
    assert proc.returncode == 130, err[-3000:]
    assert "second interrupt (SIGINT (Ctrl-C)): exiting now without saving" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.exists():  # whatever is there is a complete checkpoint
        import torch

        assert "ganforge" in torch.load(ckpt, map_location="cpu", weights_only=True)


def test_ctrl_c_during_start_up_ends_with_a_message(tmp_path, env):
    proc = _start([*TINY, "root_dir=runs", "callbacks=[{name: slow, start_delay: 60}]"], tmp_path, env)
    lines: list[str] = []
    _wait_for(lambda: "slow: building" in (lines.append(proc.stdout.readline()) or lines[-1]), proc, "start-up")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "SIGINT (Ctrl-C) during start-up, before training began: nothing was trained or saved." in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs" / "ring8" / "version_0" / "checkpoints").exists()


def test_ctrl_c_during_the_final_evaluation_keeps_the_final_checkpoint(tmp_path, env):
    steps = 20
    proc = _start([*TINY, "root_dir=runs", "callbacks=[{name: slow, end_delay: 60}]"], tmp_path, env)
    lines: list[str] = []
    _wait_for(lambda: "slow: final" in (lines.append(proc.stdout.readline()) or lines[-1]), proc, "the end")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    run = tmp_path / "runs" / "ring8" / "version_0"
    assert (f"SIGTERM during the final evaluation: training finished at generator step {steps} and "
            f"runs/ring8/version_0/checkpoints/last.ckpt holds it") in err
    assert "ganforge evaluate runs/ring8/version_0/checkpoints/last.ckpt" in err and "Traceback" not in err
    summary = _strict_json(run / "summary.json")
    assert summary["interrupted"]["during"] == "final evaluation" and summary["counters"]["g_steps"] == steps
    import torch

    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["ganforge"]
    assert state["counters"]["g_steps"] == steps


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z"
    except OSError:
        return True


@pytest.mark.distributed
def test_sigterm_to_rank_zero_alone_stops_both_ranks_at_the_same_step(tmp_path, env):
    """A SIGTERM that reaches one rank only (a scheduler, ``kill <pid>``): the ranks agree at a step
    boundary, both save and exit; none is left waiting in a collective."""
    env = dict(env, MASTER_ADDR="127.0.0.1")
    for k in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_PORT"):
        env.pop(k, None)
    args = [*TINY, "train.max_steps=3000", "metrics.every_n_steps=1000", "root_dir=runs", "trainer.devices=2",
            "trainer.accelerator=cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "fit", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = tmp_path / "runs" / "ring8" / "version_0"
    try:
        _wait_for(lambda: (run / "metrics.csv").is_file() and _logged_steps(run), proc, "training under way", 300)
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                   text=True).stdout.split()]
        assert children, "rank 1 not found"
        proc.send_signal(signal.SIGTERM)  # rank 0 only
        out, err = proc.communicate(timeout=120)
        end = time.time() + 30
        while time.time() < end and not all(_gone(c) for c in children):
            time.sleep(0.2)
        assert all(_gone(c) for c in children), "rank 1 still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "stopped by SIGTERM after generator step" in err
    summary = _strict_json(run / "summary.json")
    g = summary["interrupted"]["g_steps"]
    assert g % 10 == 0  # under DDP the ranks compare requests every 10 iterations, at the same one
    import torch

    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["ganforge"]
    assert state["counters"]["g_steps"] == g


def test_ctrl_c_from_a_terminal_reaches_data_loader_workers_too(tmp_path, env):
    """A terminal's Ctrl-C signals the whole process group, workers included: they keep serving
    batches, the training process alone decides and speaks."""
    args = [*TINY, "train.max_steps=1500", "metrics.every_n_steps=500", "root_dir=runs", "train.num_workers=2"]
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "fit", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = tmp_path / "runs" / "ring8" / "version_0"
    try:
        _wait_for(lambda: (run / "metrics.csv").is_file() and _logged_steps(run), proc, "training under way")
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert err.count("finishing the current step") == 1 and err.count("stopped by SIGINT") == 1, err[-3000:]
    assert "Traceback" not in err and "DataLoader worker" not in err
    assert _strict_json(run / "summary.json")["interrupted"]["signal"] == "SIGINT"


def test_slurm_requeue_signal_still_saves_and_requeues_at_a_step_boundary(tmp_path, env):
    """The SLURM path shares the step-boundary machinery (ganforge.run.stopping.StepBoundaryStop); without a
    cluster: SLURM's variables for a one-task batch job and a stand-in ``scontrol`` that records its call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = dict(env, PATH=f"{bin_dir}:{env['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NAME="gf", SLURM_NTASKS="1",
               SLURM_NTASKS_PER_NODE="1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NNODES="1",
               SLURM_NODELIST="localhost", MASTER_ADDR="127.0.0.1")
    proc = _start([*TINY, "train.max_steps=1500", "metrics.every_n_steps=500", "root_dir=runs"], tmp_path, env)
    run = tmp_path / "runs" / "ring8" / "slurm_4242"
    _wait_for(lambda: (run / "metrics.csv").is_file() and _logged_steps(run), proc, "training under way")
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    m = re.search(r"SLURM signal: saved (\S+) at generator step (\d+); requeueing job 4242", out)
    assert m, out[-2000:]
    import torch

    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["ganforge"]
    assert state["counters"]["g_steps"] == int(m.group(2)) < 1500
    assert calls.read_text().split() == ["requeue", "4242"]
    assert not (run / "summary.json").exists()  # the requeued attempt evaluates at its own end
