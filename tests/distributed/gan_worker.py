"""Runs a list of ganforge trainings in one process pair; launched by ``tests/test_strategy.py``.

Usage::

    python tests/distributed/gan_worker.py JOBS.json OUT_DIR

``JOBS.json`` is a list of jobs, each ``{"tag": str, "overrides": [...], "devices": 1|2,
"global_noise": bool, "capture_grads": bool, "nan_rank": int, "nan_iteration": int,
"expect_error": bool}``. Every job is one ``ganforge.run.runner.fit`` (the real entry point: config
validation, run directory, GANDDPStrategy chosen from ``trainer.devices``).

Launching: start it as one plain process. The first job with ``devices: 2`` makes Lightning's
popen launcher re-execute this command line as rank 1 (``LOCAL_RANK=1``); rank 1 then runs the
same job list from the top, skipping ``devices: 1`` jobs (put those first: they run on rank 0
alone, before rank 1 exists). After that first launch rank 0 has ``LOCAL_RANK=0`` in its
environment, so later ``fit`` calls find the process group and launch nothing: many
distributed trainings cost one start-up. Under ``torchrun`` the same script works unchanged.

Per job and rank it writes ``OUT_DIR/<tag>/rank<r>.pt`` (G, D, EMA and optimizer states,
counters, the first real batch, captured gradients) and ``OUT_DIR/<tag>/result_rank<r>.json``
(``ok``, error type and message, seconds). A job that fails stops the list (a failed
distributed job may leave the ranks out of step); ``expect_error`` jobs belong at the end.

Test-only patches, per job:

* ``global_noise``: ``z`` (and WGAN-GP's interpolation ``alpha``) of a draw depend on the
  sample's position in the *global* batch, not on the rank: rank ``r`` of ``W`` gets slice
  ``r`` of the draw a single process would make. With the data sampler's slicing, W ranks then
  see exactly the single-process batch, so their all-reduced gradients must match it.
* ``nan_rank``/``nan_iteration``: that rank's discriminator loss is NaN at that iteration.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

import lightning as L

from ganforge import hookimpl


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") & (2**63 - 1)


def _global_slice(shape: tuple[int, ...], rank: int, world: int, seed: int, kind: str) -> torch.Tensor:
    """Rank ``rank``'s slice of one draw for the global batch (``shape[0]`` samples per rank)."""
    n = shape[0]
    g = torch.Generator().manual_seed(seed)
    full = (torch.randn if kind == "normal" else torch.rand)((n * world, *shape[1:]), generator=g)
    return full[rank * n : (rank + 1) * n]


# -- the probe callback (registered as a plugin component) ---------------------------------------


class Probe(L.Callback):
    """Saves each rank's final state; optionally captures the first gradients, injects a NaN."""

    def __init__(self, out_dir: str, capture_grads: bool = False, nan_rank: int = -1, nan_iteration: int = -1) -> None:
        self.out = Path(out_dir)
        self.capture_grads = capture_grads
        self.nan_rank, self.nan_iteration = nan_rank, nan_iteration
        self.grads: dict[str, dict[str, torch.Tensor]] = {}
        self.first_batch: Optional[torch.Tensor] = None
        self.loss_dtypes: set[str] = set()

    def setup(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        objective = pl_module.objective
        inner = objective.discriminator_loss
        probe = self

        def discriminator_loss(d: Any, real: torch.Tensor, fake: torch.Tensor, y: Any) -> Any:
            out = inner(d, real, fake, y)
            probe.loss_dtypes.add(str(out.loss.dtype))
            if pl_module.rank == probe.nan_rank and pl_module.iterations == probe.nan_iteration:
                out.loss = out.loss * float("nan")
            return out

        objective.discriminator_loss = discriminator_loss  # instance attribute: this run only
        run_iteration = pl_module.iteration

        def iteration(batch: Any) -> bool:  # each iteration's batch, however Lightning batches them
            if probe.first_batch is None:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                probe.first_batch = x.detach().cpu().clone()
            return run_iteration(batch)

        pl_module.iteration = iteration  # instance attribute: this run only

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        def sd(m: Optional[torch.nn.Module]) -> Optional[dict[str, torch.Tensor]]:
            return None if m is None else {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}

        state = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "precision": str(trainer.precision),
            "generator": sd(pl_module.generator),
            "discriminator": sd(pl_module.discriminator),
            "generator_ema": sd(pl_module.generator_ema),
            "optimizers": [opt.state_dict() for opt in trainer.optimizers],
            "counters": pl_module.counters(),
            "grads": self.grads,
            "first_batch": self.first_batch,
            "loss_dtypes": sorted(self.loss_dtypes),
            "ddp_wrapped": sorted(pl_module.ddp),
            "run_dir": str(trainer.default_root_dir),
            "torchelastic_run_id": os.environ.get("TORCHELASTIC_RUN_ID"),
            # the fast paths this run took (a Probe leaves them on; a GradProbe's hook turns direct steps off)
            "iterations_per_batch": pl_module.fast_paths.get("iterations_per_batch"),
            "direct_steps": bool(pl_module._loop.get("direct")),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


class GradProbe(Probe):
    """A Probe that also keeps each network's first gradients (its optimizer-step hook makes the
    run take Lightning's hooked optimizer steps)."""

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        if not self.capture_grads:
            return
        first = optimizer.param_groups[0]["params"][0]
        which = "generator" if any(first is p for p in pl_module.generator.parameters()) else "discriminator"
        if which not in self.grads:
            net = getattr(pl_module, which)
            self.grads[which] = {n: p.grad.detach().cpu().clone() for n, p in net.named_parameters()
                                 if p.grad is not None}


def probe(out_dir: str, capture_grads: bool = False, nan_rank: int = -1, nan_iteration: int = -1) -> Probe:
    """Test probe: saves each rank's final networks, optimizers and counters."""
    return (GradProbe if capture_grads else Probe)(out_dir, capture_grads, nan_rank, nan_iteration)


@hookimpl
def ganforge_register_callbacks(register: Any) -> None:
    register("ddp-probe", probe, description="test probe (tests/distributed/gan_worker.py)")


# -- patches -------------------------------------------------------------------------------------


class _TorchWithGlobalRand:
    """Stands in for ``torch`` inside the objectives module: ``torch.rand`` becomes rank r's slice
    of a global draw (WGAN-GP's alpha); everything else is torch."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def rand(self, *size: Any, device: Any = None, dtype: Any = None, **kw: Any) -> torch.Tensor:
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        s = self._state
        t = _global_slice(tuple(shape), s["rank"], s["world"], _seed("alpha", s["iteration"], s["slot"]), "uniform")
        return t.to(device=device, dtype=dtype or torch.float32)


@contextmanager
def global_noise() -> Iterator[None]:
    from ganforge.loop.module import GANModule
    import ganforge_plugins.objectives.wasserstein as objectives  # WGAN-GP's torch.rand

    state: dict[str, Any] = {"rank": 0, "world": 1, "iteration": 0, "slot": 0}
    original_noise, original_torch = GANModule.noise, objectives.torch

    def noise(self: GANModule, n: int, iteration: int, slot: int, device: Any = None) -> torch.Tensor:
        state.update(rank=self.rank, world=self.world_size, iteration=iteration, slot=slot)
        z = _global_slice((n, *self.generator.latent_shape), self.rank, self.world_size,
                          _seed("z", self.seed, iteration, slot), "normal")
        return z.to(device or self.device)

    GANModule.noise = noise
    objectives.torch = _TorchWithGlobalRand(state)
    try:
        yield
    finally:
        GANModule.noise = original_noise
        objectives.torch = original_torch


# -- the job loop --------------------------------------------------------------------------------


def run_job(job: dict[str, Any], out: Path, registry: Any) -> None:
    from ganforge.run.config import load_config
    from ganforge.run.runner import RUN_DIR_ENV, fit

    tag = job["tag"]
    job_dir = out / tag
    overrides = list(job.get("overrides", [])) + [
        f"trainer.devices={job.get('devices', 2)}",
        "callbacks.0.name=ddp-probe",
        f"callbacks.0.out_dir={job_dir}",
        f"callbacks.0.capture_grads={str(bool(job.get('capture_grads'))).lower()}",
        f"callbacks.0.nan_rank={job.get('nan_rank', -1)}",
        f"callbacks.0.nan_iteration={job.get('nan_iteration', -1)}",
    ]
    cfg = load_config(job.get("config"), overrides, registry)
    if job.get("set_run_dir", True):
        os.environ[RUN_DIR_ENV] = str(job_dir / "run")  # the same on both ranks, whatever ran before
    else:
        os.environ.pop(RUN_DIR_ENV, None)  # let choose_run_dir decide (torchrun, SLURM, version_<n>)
    with ExitStack() as stack:
        if job.get("global_noise"):
            stack.enter_context(global_noise())
        fit(cfg, progress=False, registry=registry)


def main() -> int:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    from ganforge.registry.registry import load_registry
    from ganforge.run.runner import quiet_lightning

    quiet_lightning()
    registry = load_registry(strict=True, warn=False, extra=[("ddp-probe", sys.modules[__name__])])
    for job in jobs:
        rank = _rank()
        if job.get("devices", 2) == 1 and rank != 0:
            continue
        result: dict[str, Any] = {"tag": job["tag"], "ok": True}
        t0 = time.perf_counter()
        try:
            run_job(job, out, registry)
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to assert on
            result.update(ok=False, error_type=type(exc).__name__, error=str(exc),
                          traceback=traceback.format_exc())
        result["seconds"] = round(time.perf_counter() - t0, 3)
        rank = _rank()  # rank 0 learns its LOCAL_RANK only at the first launch
        (out / job["tag"]).mkdir(parents=True, exist_ok=True)
        (out / job["tag"] / f"result_rank{rank}.json").write_text(json.dumps(result, indent=1))
        print(f"[gan_worker rank {rank}] {job['tag']}: {'ok' if result['ok'] else result['error_type']} "
              f"in {result['seconds']} s", flush=True)
        if not result["ok"] and not job.get("expect_error"):
            return 1  # the ranks may be out of step now; expected errors are raised on every rank alike
    return 0


if __name__ == "__main__":
    sys.exit(main())
