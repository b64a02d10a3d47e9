"""SLURM requeue probe: Lightning CPU DDP (gloo, 2 tasks) under srun, auto-requeue on SIGUSR1.

Two modes:

``train`` (what the job runs, one process per srun task)::

    srun python tests/cluster/requeue_probe.py train --root runs/probe-$SLURM_JOB_ID

    A tiny manual-optimization LightningModule (a few linear layers, two optimizers like a GAN)
    that sleeps a little per step, so a run lasts long enough to be signalled. Rank 0 appends
    one JSON line per event to ``<root>/events.jsonl`` (start, progress, end) with
    SLURM_JOB_ID, SLURM_RESTART_COUNT, MASTER_PORT and the step it (re)started from.

``drive`` (run on the submit host; a self-checking end-to-end test)::

    python tests/cluster/requeue_probe.py drive --signal-via scancel

    submits the job with sbatch, waits until it has trained a few steps, delivers SIGUSR1,
    waits for the requeue and the restarted attempt, and checks: an hpc_ckpt_*.ckpt was
    written, the job id stayed the same, SLURM_RESTART_COUNT went 0 -> 1, the restarted attempt
    began at the saved step, the run finished at max_steps and the job ended COMPLETED.
    Exit 0 when all checks pass; prints a JSON summary (job-state timeline, timings, events)
    and the job log.

    --signal-via scancel           ``scancel --signal=USR1 <jobid>`` (default; works)
                 timelimit         SLURM sends it ``--signal-secs`` before ``--time`` (works)
                 scancel-batch     ``scancel --signal=USR1 --batch`` (fails: shell killed)
                 scancel-full      ``scancel --signal=USR1 --full`` (fails: shell killed)
                 rank0             ``kill -USR1`` to rank 0 only (hangs with Lightning's handler)
                 scontrol-requeue  ``scontrol requeue`` without a signal (restarts from step 0)
    --handler lightning            SLURMEnvironment(auto_requeue=True): Lightning saves and
                                   requeues inside the signal handler (default)
              deferred             DeferredRequeue callback: the handler sets a flag; all ranks
                                   agree at the next batch end, save together, rank 0 requeues

Needs a running cluster: ``tests/cluster/slurm.sh up``. Results: tests/cluster/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------- train (inside the job)


def _event(root: Path, **fields) -> None:
    fields.setdefault("t", round(time.time(), 3))
    with open(root / "events.jsonl", "a") as fh:
        fh.write(json.dumps(fields) + "\n")
        fh.flush()


def train(args: argparse.Namespace) -> int:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    import torch
    from torch import nn
    import lightning as L
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("SLURM_PROCID", "0"))
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    hpc = sorted(p.name for p in root.glob("hpc_ckpt_*.ckpt"))
    print(
        f"[probe rank={rank}] pid={os.getpid()} SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID')} "
        f"SLURM_RESTART_COUNT={restart} SLURM_STEP_ID={os.environ.get('SLURM_STEP_ID')} "
        f"MASTER_PORT={os.environ.get('MASTER_PORT')} hpc_ckpts={hpc}",
        flush=True,
    )

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.g = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
            self.d = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

        def training_step(self, batch, batch_idx):
            # Two optimizers stepped one after the other, like G and D, but one loss through all
            # parameters (DDP with strategy="ddp" rejects parameters that get no gradient).
            (x,) = batch
            opt_g, opt_d = self.optimizers()
            loss = (self.d(self.g(x)) - x.sum(1, keepdim=True)).pow(2).mean()
            opt_g.zero_grad()
            opt_d.zero_grad()
            self.manual_backward(loss)
            opt_d.step()
            opt_g.step()
            time.sleep(args.sleep)  # make the run long enough to be signalled

        def configure_optimizers(self):
            return (
                torch.optim.Adam(self.g.parameters(), 1e-3),
                torch.optim.Adam(self.d.parameters(), 1e-3),
            )

    class Events(L.Callback):
        def on_train_start(self, trainer, pl_module):
            if trainer.is_global_zero:
                _event(
                    root,
                    ev="start",
                    job=os.environ.get("SLURM_JOB_ID"),
                    restart=restart,
                    master_port=os.environ.get("MASTER_PORT"),
                    global_step=trainer.global_step,
                    pid=os.getpid(),
                    ckpt_path=str(trainer.ckpt_path),
                    env=type(trainer._accelerator_connector.cluster_environment).__name__,
                    world_size=trainer.world_size,
                )
            print(f"[probe rank={trainer.global_rank}] train start at global_step={trainer.global_step} "
                  f"ckpt_path={trainer.ckpt_path}", flush=True)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.is_global_zero and trainer.global_step % args.every == 0:
                _event(root, ev="progress", job=os.environ.get("SLURM_JOB_ID"), restart=restart,
                       global_step=trainer.global_step)

        def on_train_end(self, trainer, pl_module):
            if trainer.is_global_zero:
                _event(root, ev="end", job=os.environ.get("SLURM_JOB_ID"), restart=restart,
                       global_step=trainer.global_step)
            print(f"[probe rank={trainer.global_rank}] train end at global_step={trainer.global_step}", flush=True)

    class DeferredRequeue(L.Callback):
        """The alternative to Lightning's handler (``--handler deferred``).

        Lightning's SIGUSR1 handler saves the checkpoint (a collective: it ends in a barrier) right
        inside the signal handler, wherever each rank happens to be. A rank that gets the signal
        late, or not at all, is then in a different collective and both hang. Here the handler only
        sets a flag; at the end of every batch all ranks take the max of the flag, so all of them
        save at the same point, then rank 0 requeues. Lightning still restores the newest
        hpc_ckpt_*.ckpt from default_root_dir on the restart (that part needs no auto_requeue).
        """

        def __init__(self, sig=signal.SIGUSR1):
            self.sig, self.flag, self.done = sig, False, False

        def on_fit_start(self, trainer, pl_module):
            signal.signal(self.sig, self._handler)

        def _handler(self, signum, frame):
            self.flag = True

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.done:
                return
            flag = trainer.strategy.reduce(torch.tensor(float(self.flag), device=pl_module.device), reduce_op="max")
            if flag.item() == 0:
                return
            self.done = True
            print(f"[probe rank={trainer.global_rank}] deferred requeue at global_step={trainer.global_step} "
                  f"(signal seen here: {self.flag})", flush=True)
            path = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
            path = trainer.strategy.broadcast(path)  # every rank must name the same file
            trainer.save_checkpoint(path)
            if trainer.is_global_zero:
                job = os.environ["SLURM_JOB_ID"]
                rc = subprocess.call(["scontrol", "requeue", job])
                print(f"[probe rank=0] scontrol requeue {job} -> {rc}", flush=True)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(256, 8))
    loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        num_nodes=args.nodes,
        strategy="ddp",
        plugins=[SLURMEnvironment(auto_requeue=args.handler == "lightning", requeue_signal=signal.SIGUSR1)],
        max_steps=args.max_steps,  # counts G and D optimizer steps: 2 per batch
        max_epochs=-1,
        default_root_dir=str(root),  # hpc_ckpt_*.ckpt is written to and looked up in here
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Events()] + ([DeferredRequeue()] if args.handler == "deferred" else []),
    )
    ckpt_path = None if args.ckpt_path in (None, "none") else args.ckpt_path
    trainer.fit(Probe(), loader, ckpt_path=ckpt_path)
    return 0


# --------------------------------------------------------------------------- drive (on the submit host)


def _sh(cmd: str, check: bool = True) -> str:
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout.strip()


def _job(jobid: str) -> dict[str, str]:
    out = _sh(f"scontrol show job -o {jobid}", check=False)
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _events(root: Path) -> list[dict]:
    path = root / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def drive(args: argparse.Namespace) -> int:
    t0 = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(args.workdir or f"/tmp/ganforge-requeue-probe-{stamp}").resolve()
    base.mkdir(parents=True, exist_ok=True)
    log = base / "slurm-%j.out"
    python = shlex.quote(sys.executable)
    # Everything the job needs is on this line; the same lines as configs/slurm/ganforge.sbatch.
    inner = (
        "export MASTER_ADDR=127.0.0.1 GLOO_SOCKET_IFNAME=lo OMP_NUM_THREADS=1; "
        "echo \"[batch] job=$SLURM_JOB_ID restart=${SLURM_RESTART_COUNT:-0} host=$(hostname) $(date +%T)\"; "
        f"srun --kill-on-bad-exit=1 {python} {shlex.quote(str(HERE))} train "
        f"--root {shlex.quote(str(base))}/run-$SLURM_JOB_ID --max-steps {args.max_steps} "
        f"--sleep {args.sleep} --ckpt-path {args.ckpt_path} --handler {args.handler}"
    )
    opts = [
        "--parsable", "--job-name=requeue-probe", "--nodes=1", f"--ntasks-per-node={args.devices}",
        "--cpus-per-task=1", "--requeue", f"--open-mode={args.open_mode}", f"--output={log}",
        f"--signal=USR1@{args.signal_secs}",
    ]
    if args.signal_via == "timelimit":
        opts.append(f"--time={args.time}")
    cmd = "sbatch " + " ".join(opts) + " --wrap " + shlex.quote(inner)
    print(f"$ {cmd}", flush=True)
    jobid = _sh(cmd).split(";")[0]
    root = base / f"run-{jobid}"
    summary: dict = {"jobid": jobid, "root": str(root), "submit_cmd": cmd, "signal_via": args.signal_via}

    timeline: list[dict] = []
    summary["job_timeline"] = timeline

    def poll() -> dict[str, str]:
        # Record every change of the job's state as seen by `scontrol show job`.
        j = _job(jobid)
        key = {k: j.get(k) for k in ("JobState", "Reason", "StartTime", "Restarts")}
        if not timeline or {k: timeline[-1][k] for k in key} != key:
            timeline.append({"t": round(time.time() - t0, 1), **key})
        return j

    def wait(pred, what: str, timeout: float, final_ok: bool = False):
        end = time.time() + timeout
        while time.time() < end:
            state = poll().get("JobState")
            val = pred()
            if val:
                return val
            if not final_ok and state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
                raise RuntimeError(f"job {jobid} is {state} while waiting for {what}")
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; job: {_job(jobid)}")

    def step_of(restart: int) -> int:
        ev = [e for e in _events(root) if e.get("restart") == restart and "global_step" in e]
        return ev[-1]["global_step"] if ev else -1

    try:
        signal_at = 0 if args.signal_via == "timelimit" else args.signal_at
        wait(lambda: step_of(0) >= signal_at, f"attempt 0 to reach step {signal_at}", 180)
        summary["t_signal"] = round(time.time() - t0, 1)
        summary["t_first_start"] = round(
            next(e["t"] for e in _events(root) if e["ev"] == "start") - t0, 1)
        t_sig = time.time()
        if args.signal_via == "scancel":
            sig_cmd = f"scancel --signal=USR1 {jobid}"
        elif args.signal_via == "scancel-batch":
            sig_cmd = f"scancel --signal=USR1 --batch {jobid}"
        elif args.signal_via == "scancel-full":
            sig_cmd = f"scancel --signal=USR1 --full {jobid}"
        elif args.signal_via == "scontrol-requeue":  # what preemption/`scontrol requeue` alone does
            sig_cmd = f"scontrol requeue {jobid}"
        elif args.signal_via == "rank0":  # only one of the two tasks gets the signal
            pid = next(e["pid"] for e in _events(root) if e["ev"] == "start")
            sig_cmd = f"kill -USR1 {pid}"
        else:
            sig_cmd = None  # SLURM sends it itself, --signal seconds before --time
        if sig_cmd:
            print(f"$ {sig_cmd}   (at attempt-0 step {step_of(0)})", flush=True)
            _sh(sig_cmd)
        summary["signal_cmd"] = sig_cmd or f"sbatch --time={args.time} --signal=USR1@{args.signal_secs}"

        # The handler writes hpc_ckpt_1.ckpt and runs `scontrol requeue`: the job goes back to PENDING.
        def requeued():
            j = _job(jobid)
            return j if int(j.get("Restarts", "0")) >= 1 else None

        j = wait(requeued, "scontrol requeue (Restarts>=1)", args.signal_secs + 240)
        summary["t_requeued_after_signal"] = round(time.time() - t_sig, 1)
        summary["state_after_requeue"] = f"{j.get('JobState')} Reason={j.get('Reason')} StartTime={j.get('StartTime')}"
        summary["hpc_ckpts"] = sorted(p.name for p in root.glob("hpc_ckpt_*.ckpt"))
        if args.release:
            # Belt and braces: StartTime=now skips the BeginTime hold (AuthInfo=cred_expire, default 120 s).
            _sh(f"scontrol update JobId={jobid} StartTime=now", check=False)

        def restarted():
            ev = [e for e in _events(root) if e["ev"] == "start" and e["restart"] >= 1]
            return ev[0] if ev else None

        st = wait(restarted, "the restarted attempt to start training", 600)
        summary["t_restart_after_signal"] = round(st["t"] - t_sig, 1)
        summary["restart_event"] = st

        def ended():
            ev = [e for e in _events(root) if e["ev"] == "end"]
            return ev[-1] if ev else None

        end = wait(ended, "the run to finish", args.max_steps * args.sleep + 600, final_ok=True)
        summary["end_event"] = end
        wait(lambda: _job(jobid).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", None, ""),
             "the job to leave the queue", 120, final_ok=True)
        summary["final_state"] = _job(jobid).get("JobState")
    except Exception as exc:  # report what happened so far, then cancel
        summary["error"] = str(exc)
        _sh(f"scancel {jobid}", check=False)
    summary["t_total"] = round(time.time() - t0, 1)
    events = _events(root)
    starts = [e for e in events if e["ev"] == "start"]
    before = [e for e in events if e.get("restart") == 0 and "global_step" in e]
    # start/end events, and the last progress event of each attempt
    summary["events"] = [
        e for i, e in enumerate(events)
        if e["ev"] != "progress" or i + 1 == len(events) or events[i + 1]["restart"] != e["restart"]
    ]
    checks = {
        "hpc_ckpt_written": bool(summary.get("hpc_ckpts")),
        "same_job_id": len({e["job"] for e in starts}) == 1 and len(starts) >= 2,
        "restart_count_incremented": [e["restart"] for e in starts][:2] == [0, 1],
        "resumed_from_saved_step": bool(
            len(starts) >= 2 and before and 0 < before[-1]["global_step"] <= starts[1]["global_step"]
        ),
        "finished_at_max_steps": summary.get("end_event", {}).get("global_step") == args.max_steps,
        "job_completed": summary.get("final_state") == "COMPLETED",
    }
    summary["checks"] = checks
    print(json.dumps(summary, indent=2), flush=True)
    print(f"--- job log {base}/slurm-{jobid}.out ---")
    print((base / f"slurm-{jobid}.out").read_text() if (base / f"slurm-{jobid}.out").exists() else "(none)")
    return 0 if all(checks.values()) and "error" not in summary else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("train", help="run inside the job (via srun)")
    t.add_argument("--root", required=True, help="default_root_dir; must be the same for every attempt")
    t.add_argument("--max-steps", type=int, default=400)
    t.add_argument("--sleep", type=float, default=0.2, help="seconds per training step")
    t.add_argument("--every", type=int, default=10, help="progress event every N global steps")
    t.add_argument("--devices", type=int, default=int(os.environ.get("SLURM_NTASKS_PER_NODE", "2")))
    t.add_argument("--nodes", type=int, default=int(os.environ.get("SLURM_NNODES", "1")))
    t.add_argument("--ckpt-path", default="none", help="fit(ckpt_path=...); 'none' = auto (hpc on SLURM)")
    t.add_argument("--handler", choices=["lightning", "deferred"], default="lightning",
                   help="who handles SIGUSR1: Lightning's auto_requeue, or the DeferredRequeue callback")
    d = sub.add_parser("drive", help="submit, signal, follow the requeue, check")
    d.add_argument("--signal-via", choices=["scancel", "scancel-batch", "scancel-full", "rank0", "scontrol-requeue", "timelimit"],
                   default="scancel")
    d.add_argument("--signal-secs", type=int, default=90, help="--signal=USR1@N")
    d.add_argument("--time", default="3", help="--time for --signal-via timelimit (minutes)")
    d.add_argument("--signal-at", type=int, default=40, help="signal once attempt 0 reached this global step")
    d.add_argument("--max-steps", type=int, default=200)
    d.add_argument("--sleep", type=float, default=0.2)
    d.add_argument("--devices", type=int, default=2)
    d.add_argument("--ckpt-path", default="none")
    d.add_argument("--handler", choices=["lightning", "deferred"], default="lightning")
    d.add_argument("--open-mode", default="append", choices=["append", "truncate"])
    d.add_argument("--release", action="store_true", help="scontrol update StartTime=now after the requeue")
    d.add_argument("--workdir", help="where job logs and run dirs go (default /tmp/ganforge-requeue-probe-<time>)")
    args = p.parse_args(argv)
    return train(args) if args.mode == "train" else drive(args)


if __name__ == "__main__":
    sys.exit(main())
