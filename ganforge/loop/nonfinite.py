"""The non-finite guard: whether each optimizer step runs, decided on the device.

A NaN/inf loss or gradient must not reach the weights. Deciding that on the host costs a host
sync per optimizer step, which stalls a GPU's stream. Instead the guard computes a flag on the
device with GradScaler's own fused check of all gradients (all-reduced over ranks under DDP, so
every rank decides alike) and hands it to the optimizer as ``found_inf``, as
``torch.amp.GradScaler`` does: a bad step is a no-op without the host knowing. The host learns what happened at *sync points* (logging
steps, checkpoints, the end) from a record of every step since the last one, in one transfer.

Policies (``train.on_nonfinite``):

* ``stop``: the first bad step *halts* the run on the device: it and every later step are
  no-ops and the EMA stands still, so at the next sync point the weights are still the last
  good state. The engine rolls its counters back to that step, saves a checkpoint and stops.
* ``skip``: bad steps are no-ops, counted and reported at the next sync point. More than
  ``train.max_consecutive_skips`` bad steps in a row of one network halt as ``stop`` does (a
  discriminator that skips every step on broken data would otherwise never stop).

Optimizers that cannot take ``found_inf`` (only torch's fused Adam, AdamW and SGD declare
``_step_supports_amp_scaling``), and fp16 runs (the GradScaler owns ``found_inf``), fall back to
a decision on the host: one sync per optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass
class StepRecord:
    """One optimizer step as the host saw it, and its device-side verdict."""

    which: str  # "discriminator" or "generator"
    iteration: int
    g_steps: int  # the engine's counters before the step, counting every step since the last sync
    d_steps: int
    images_seen: int
    loss: torch.Tensor  # device, 0-dim: the loss on this rank
    grad_bad: torch.Tensor  # device, 0-dim: 1.0 when a gradient is not finite on this rank
    bad_any: Optional[torch.Tensor]  # device, under DDP: [loss not finite, gradient not finite] on any rank
    skip: torch.Tensor  # 1.0: the step was a no-op
    run: torch.Tensor  # this network's non-finite steps in a row, this one included
    halted: torch.Tensor  # 1.0: the run is halted after this step


@dataclass
class Verdict:
    """What the host learns at a sync point about one step that did not run."""

    record: StepRecord
    loss: float
    bad_here: tuple[bool, bool]
    bad_any: tuple[bool, bool]
    run: int  # this network's non-finite steps in a row, this one included
    counters: dict[str, int]  # the engine's counters before this step (corrected for earlier skips)

    def describe(self) -> str:
        """``discriminator loss is nan``, or which gradient, and on which rank."""
        which, value = self.record.which, self.loss
        if self.bad_here[0]:
            return f"{which} loss is {value}"
        if self.bad_any[0]:  # the root cause; its NaN reached our gradients through DDP's all-reduce
            return f"{which} loss is not finite on another rank (here: {value:.6g})"
        if self.bad_here[1]:
            return f"{which} gradient is not finite (loss {value:.6g})"
        return f"{which} gradient is not finite on another rank (here: loss {value:.6g})"

    def where(self) -> str:
        c = self.counters
        return f"iteration {c['iterations']} (generator step {c['g_steps']}, discriminator step {c['d_steps']})"


@dataclass
class Settlement:
    """The outcome of the steps recorded since the last sync point."""

    skipped: list[Verdict]  # steps that were no-ops and are over (policy ``skip``)
    halt: Optional[Verdict]  # the step that halted the run, if one did (new or earlier)


class NonFiniteGuard:
    """Decides per optimizer step, on the device, whether the step runs.

    Args:
        policy: ``stop`` or ``skip`` (``train.on_nonfinite``).
        max_consecutive_skips: Under ``skip``, halt after this many skipped steps in a row
            (``None``: never).
    """

    def __init__(self, policy: str, max_consecutive_skips: Optional[int]) -> None:
        self.policy = policy
        self.max_consecutive_skips = max_consecutive_skips
        # bad steps in a row that are still skipped; one more halts
        self.allowed = 0 if policy == "stop" else (2**62 if max_consecutive_skips is None else max_consecutive_skips)
        self.records: list[StepRecord] = []
        self.halted: Optional[Verdict] = None  # known on the host once a sync point has seen it
        self._runs: dict[str, torch.Tensor] = {}  # device: each network's non-finite steps in a row
        self._halted: Optional[torch.Tensor] = None  # device: 1.0 once halted (latched)
        self._zero: Optional[torch.Tensor] = None

    def check(self, loss: torch.Tensor, grads: list[torch.Tensor], world_size: int, loss_only: bool,
              record: dict[str, Any]) -> torch.Tensor:
        """After backward: the device flag ``skip`` (float 0-dim, 1.0 = this step must be a no-op).

        Args:
            loss: The loss that was back-propagated.
            grads: The gradients the step would apply.
            world_size: Ranks to agree with (an all-reduce when > 1).
            loss_only: Judge the loss only (under an fp16 GradScaler, which skips inf gradients itself).
            record: The host's view of the step: ``which``, ``iteration`` and the counters.
        """
        if self._zero is None or self._zero.device != loss.device:
            self._zero = torch.zeros((), device=loss.device)  # 0-dim: fused Adam subtracts found_inf from 0-dim steps
            self._one = torch.ones((), device=loss.device)
        zero, which = self._zero, record["which"]
        # Few device ops: on a small network each costs as much as a kernel of the step itself
        # (~10 µs on a CPU core whose caches the step has just filled).
        with torch.no_grad():
            loss = loss.float()
            # GradScaler's fused check (x 1.0: values unchanged). On one process the loss joins the
            # gradients: `grad_bad` is then "loss or gradient", and the host tells the two apart at
            # the sync point from the loss's value (Verdict.describe names the loss first).
            grad_bad = torch.zeros((), device=loss.device)
            judged = [] if loss_only else list(grads)
            if world_size == 1:
                judged.append(loss.detach().reshape(1))
            dtypes = {g.dtype for g in judged}
            for dtype in dtypes:
                group = judged if len(dtypes) == 1 else [g for g in judged if g.dtype == dtype]
                torch._amp_foreach_non_finite_check_and_unscale_(group, grad_bad, self._one)
            bad, bad_any = grad_bad, None
            if world_size > 1:  # every rank decides alike: [loss, gradient] not finite on any rank
                bad_any = torch.stack([torch.isnan(loss - loss).float(), grad_bad])  # x - x: NaN for NaN/±inf
                torch.distributed.all_reduce(bad_any, op=torch.distributed.ReduceOp.MAX)
                bad = bad_any.amax()
            halted = zero if self._halted is None else self._halted
            if self.allowed == 0:  # stop: the first bad step halts, and is the run's only bad step
                run = bad
                self._halted = skip = torch.maximum(halted, bad)
            else:
                run = torch.addcmul(bad, bad, self._runs.get(which, zero))  # bad * (run + 1): a finite step resets it
                skip = torch.maximum(bad, halted)
                self._halted = torch.maximum(halted, run > self.allowed)
            self._runs[which] = run
        self.records.append(StepRecord(loss=loss, grad_bad=grad_bad, bad_any=bad_any, skip=skip, run=run,
                                       halted=self._halted, **record))
        return skip

    @property
    def live(self) -> Optional[torch.Tensor]:
        """Device: 1.0 until the run halts, then 0.0 (gates the EMA); ``None`` before the first step."""
        return None if self._halted is None else 1.0 - self._halted

    @staticmethod
    def step(optimizer: Any, skip: torch.Tensor, on_host: bool, run: Optional[Any] = None) -> bool:
        """Run ``optimizer.step()`` so that it has no effect when ``skip`` is 1.

        ``optimizer`` is Lightning's wrapper (its hooks, clipping and precision plugin run as
        usual); ``run(optimizer)``, when given, performs the step instead of ``optimizer.step()``.
        Returns whether the host had to decide (a sync).
        """
        raw = getattr(optimizer, "optimizer", optimizer)
        do = (lambda: run(optimizer)) if run is not None else optimizer.step
        if not on_host and getattr(raw, "_step_supports_amp_scaling", False):
            raw.found_inf, raw.grad_scale = skip, None  # torch's fused kernels skip the update when found_inf is 1
            try:
                do()
            finally:
                raw.found_inf = None
            return False
        if not skip.item():
            do()
        return True

    def settle(self) -> Settlement:
        """A sync point: one transfer of every step recorded since the last one."""
        records, self.records = self.records, []
        skipped: list[Verdict] = []
        if not records or self.halted is not None:
            return Settlement(skipped, self.halted)
        ddp = records[0].bad_any is not None
        columns = [torch.stack([getattr(r, k) for r in records]) for k in ("loss", "grad_bad", "skip", "run", "halted")]
        if ddp:
            columns += list(torch.stack([r.bad_any for r in records]).unbind(1))
        table = torch.stack(columns, 1).tolist()  # the one transfer
        fix = {"g_steps": 0, "d_steps": 0}
        for r, row in zip(records, table):
            loss, grad_bad, skip, run, halted = row[:5]
            if not skip and not halted:
                continue
            here = (not math.isfinite(loss), grad_bad > 0)
            anywhere = (row[5] > 0, row[6] > 0) if ddp else here
            counters = {"iterations": r.iteration, "g_steps": r.g_steps - fix["g_steps"],
                        "d_steps": r.d_steps - fix["d_steps"], "images_seen": r.images_seen}
            verdict = Verdict(r, loss, here, anywhere, int(run), counters)
            if halted:
                self.halted = verdict
                break
            skipped.append(verdict)
            fix["g_steps" if r.which == "generator" else "d_steps"] += 1
        return Settlement(skipped, self.halted)
