"""GAN DDP: ganforge's separate G/D wrappers against Lightning's one-wrapper workaround.

    .venv/bin/python benchmarks/ddp.py                      # 2 CPU processes (gloo)
    .venv/bin/python benchmarks/ddp.py --iterations 300 --width 256 --repeats 3
    .venv/bin/python benchmarks/ddp.py --accelerator gpu --devices 2   # NCCL, on a GPU machine

Both strategies train the same GAN (MLPs on the ring of 8 Gaussians, non-saturating loss
unless ``--objective``) in the same pair of processes, alternately (ours, theirs, ours, ...),
so they share start-up, data, machine load and process group:

* ``gan_ddp``: :class:`ganforge.loop.strategy.GANDDPStrategy`, G and D in separate DDP wrappers;
  each backward all-reduces the gradients of the network it trained.
* ``ddp_find_unused_parameters_true``: Lightning's usual workaround, one DDP over the whole
  LightningModule with ``find_unused_parameters=True``: every backward walks the autograd graph
  and all-reduces the buckets of *both* networks (the untouched one's gradients as zeros).

A DDP communication hook wraps the all-reduce and adds up each bucket's bytes, attributed to
the phase whose backward produced it (a D backward or a G backward). Time per iteration is
the median wall time between consecutive iterations on rank 0, after ``--warmup`` iterations.
Lightning registers communication hooks only on CUDA; the baseline strategy here registers
its hook on any device (benchmark-only subclass), ``GANDDPStrategy`` does so itself.

Prints one table (rank 0). Exit status 0 unless a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

import lightning as L
from lightning.pytorch.overrides.distributed import _register_ddp_comm_hook
from lightning.pytorch.strategies import DDPStrategy

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ("gan_ddp", "ddp_find_unused_parameters_true")


# -- the all-reduce byte counter --------------------------------------------------------------------


class CommCounter:
    """State of the counting hook: bytes and all-reduce calls per phase ("D" or "G")."""

    def __init__(self) -> None:
        self.phase = "?"
        self.bytes: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.backwards: dict[str, int] = {}
        self.counting = False

    def reset(self) -> None:
        self.bytes, self.calls, self.backwards = {}, {}, {}


def counting_allreduce_hook(state, bucket):  # noqa: ANN001,ANN201 - DDP checks the annotations, and
    # `from __future__ import annotations` would turn them into strings it rejects.
    """The default all-reduce (sum / world size), after adding the bucket's bytes to ``state``."""
    if state.counting:
        buf = bucket.buffer()
        state.bytes[state.phase] = state.bytes.get(state.phase, 0) + buf.numel() * buf.element_size()
        state.calls[state.phase] = state.calls.get(state.phase, 0) + 1
    return default_hooks.allreduce_hook(None, bucket)


class HookedDDPStrategy(DDPStrategy):
    """Lightning's DDPStrategy, with the communication hook registered on CPU as well."""

    def _register_ddp_hooks(self) -> None:
        _register_ddp_comm_hook(model=self.model, ddp_comm_state=self._ddp_comm_state,
                                ddp_comm_hook=self._ddp_comm_hook, ddp_comm_wrapper=self._ddp_comm_wrapper)


def make_strategy(name: str, counter: CommCounter) -> Any:
    if name == "gan_ddp":
        from ganforge.loop.strategy import GANDDPStrategy

        return GANDDPStrategy(ddp_comm_state=counter, ddp_comm_hook=counting_allreduce_hook)
    return HookedDDPStrategy(find_unused_parameters=True, ddp_comm_state=counter,
                             ddp_comm_hook=counting_allreduce_hook)


# -- a callback: phase marks for the counter, iteration timer ----------------------------------------


class Meter(L.Callback):
    def __init__(self, counter: CommCounter, warmup: int) -> None:
        self.counter = counter
        self.warmup = warmup
        self.times: list[float] = []
        self._last: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        objective, counter = pl_module.objective, self.counter

        def marked(fn: Any, phase: str) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                counter.phase = phase  # the backward that follows belongs to this phase
                if counter.counting:
                    counter.backwards[phase] = counter.backwards.get(phase, 0) + 1
                return fn(*args, **kwargs)

            return wrapper

        objective.discriminator_loss = marked(objective.discriminator_loss, "D")
        objective.generator_loss = marked(objective.generator_loss, "G")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if pl_module.iterations > self.warmup and self._last is not None:
            self.times.append(now - self._last)
        self.counter.counting = pl_module.iterations >= self.warmup
        self._last = now

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.counter.counting = False


# -- runs ----------------------------------------------------------------------------------------------


def run_once(args: argparse.Namespace, strategy_name: str, out: Path, index: int) -> dict[str, Any]:
    from ganforge.run.config import load_config
    from ganforge.registry.registry import get_registry
    from ganforge.run.runner import RUN_DIR_ENV, build_components, make_trainer

    overrides = [
        f"objective.name={args.objective}",
        f"generator.width={args.width}", f"discriminator.width={args.width}",
        f"generator.depth={args.depth}", f"discriminator.depth={args.depth}",
        f"train.batch_size={args.batch_size}", f"train.max_steps={args.warmup + args.iterations + 1}",
        "train.ema_halflife_images=10000", "metrics.list=[]", "metrics.every_n_steps=0",
        "samples.every_n_steps=1000000", "train.checkpoint_every_n_steps=1000000",
        "train.log_every_n_steps=1000000", "logger=[]",
        f"trainer.accelerator={args.accelerator}", f"trainer.devices={args.devices}",
        f"trainer.precision={args.precision}", f"root_dir={out}",
    ]
    registry = get_registry()
    cfg = load_config(None, overrides, registry)
    run_dir = out / f"{index:02d}_{strategy_name}"
    os.environ[RUN_DIR_ENV] = str(run_dir)
    counter = CommCounter()
    meter = Meter(counter, args.warmup)
    built = build_components(cfg, registry)
    built.callbacks.append(meter)
    # A strategy object (make_trainer passes it on), in a copy: the config itself goes into checkpoints.
    trainer_cfg = {**cfg, "trainer": {**cfg["trainer"], "strategy": make_strategy(strategy_name, counter)}}
    trainer = make_trainer(trainer_cfg, run_dir, built, [], progress=False)
    trainer.fit(built.module, datamodule=built.datamodule)
    module = built.module
    nbytes = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    return {
        "strategy": strategy_name,
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "s_per_iteration": statistics.median(meter.times) if meter.times else float("nan"),
        "iterations_timed": len(meter.times),
        "bytes": counter.bytes,
        "calls": counter.calls,
        "backwards": counter.backwards,
        "param_bytes": {"G": nbytes(module.generator), "D": nbytes(module.discriminator)},
    }


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows = []
    by: dict[str, list[dict[str, Any]]] = {s: [r for r in results if r["strategy"] == s] for s in STRATEGIES}
    first = results[0]
    summary: dict[str, dict[str, float]] = {}
    for name, runs in by.items():
        t = statistics.median(r["s_per_iteration"] for r in runs)
        last = runs[-1]
        per = {ph: last["bytes"].get(ph, 0) / max(1, last["backwards"].get(ph, 0)) for ph in ("D", "G")}
        calls = {ph: last["calls"].get(ph, 0) / max(1, last["backwards"].get(ph, 0)) for ph in ("D", "G")}
        iters = max(1, last["backwards"].get("G", 0))
        per_it = sum(last["bytes"].values()) / iters
        summary[name] = {"t": t, "D": per["D"], "G": per["G"], "it": per_it, "calls_D": calls["D"],
                         "calls_G": calls["G"], "runs": [round(r["s_per_iteration"] * 1e3, 3) for r in runs]}
    ours, theirs = summary["gan_ddp"], summary["ddp_find_unused_parameters_true"]
    head = (f"{'strategy':<34} {'ms/iteration':>12} {'per D backward':>15} {'per G backward':>15} "
            f"{'per iteration':>14} {'buckets D/G':>11}")
    rows.append(head)
    rows.append("-" * len(head))
    for name in STRATEGIES:
        s = summary[name]
        rows.append(f"{name:<34} {s['t'] * 1e3:>12.3f} {fmt_bytes(s['D']):>15} {fmt_bytes(s['G']):>15} "
                    f"{fmt_bytes(s['it']):>14} {s['calls_D']:>5.1f}/{s['calls_G']:<5.1f}")
    rows.append("-" * len(head))
    rows.append(f"{'ratio ours/theirs':<34} {ours['t'] / theirs['t']:>12.2f} "
                f"{ours['D'] / max(theirs['D'], 1):>15.2f} {ours['G'] / max(theirs['G'], 1):>15.2f} "
                f"{ours['it'] / max(theirs['it'], 1):>14.2f}")
    pb = first["param_bytes"]
    info = (f"{first['world_size']} processes, {args.accelerator}, {args.precision}, objective {args.objective}, "
            f"MLP width {args.width} depth {args.depth}, global batch {args.batch_size}; parameters: "
            f"G {fmt_bytes(pb['G'])}, D {fmt_bytes(pb['D'])} (fp32); {args.iterations} timed iterations after "
            f"{args.warmup} warm-up, {args.repeats} run(s) per strategy, interleaved; "
            f"ms/iteration per run: ours {ours['runs']}, theirs {theirs['runs']}")
    return info + "\n\n" + "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--objective", default="non-saturating")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    ap.add_argument("--out", default="/tmp/ganforge-bench-ddp")
    ap.add_argument("--json", default=None, help="also write the results here (rank 0)")
    args = ap.parse_args()
    if args.devices < 2:
        ap.error("--devices must be >= 2 (a comparison of DDP strategies)")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from ganforge.run.runner import quiet_lightning

    quiet_lightning()
    out = Path(args.out)
    results = []
    index = 0
    for _ in range(args.repeats):
        for name in STRATEGIES:
            results.append(run_once(args, name, out, index))
            index += 1
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and results[0]["rank"] == 0:
        text = table(results, args)
        print("\n" + text, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
