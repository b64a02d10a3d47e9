"""GANModule: the alternating discriminator/generator loop.

One training step is one *iteration*, in named phases (StyleGAN2-ADA's ``training/loss.py``):
``n_critic`` discriminator phases (``Dmain``, plus ``Dreg`` every ``objective.reg_every`` steps),
one generator phase (``Gmain``, plus the generator's own ``regularization_loss``), then the EMA
(:mod:`ganforge.loop.ema`); the learning-rate schedule (:mod:`ganforge.loop.schedule`) is applied
before. ganforge keeps its own counters (generator steps, discriminator steps, images seen)
because Lightning's ``global_step`` counts every optimizer step.

No host sync in an ordinary iteration: whether a step is finite is decided on the device
(:mod:`ganforge.loop.nonfinite`); the host settles that, and reads the losses, only at *sync points*:
logging, checkpoint, evaluation and picture steps, and the end. Between sync points the
counters count every step as if it ran; a sync point corrects them for the steps that did not.

Distributed training: :mod:`ganforge.loop.strategy` may wrap G and D in separate DDP instances and
put them in ``self.ddp``; the loop calls the wrapper of the network being trained and the raw
module of the frozen one, so no backward ever leaves a DDP wrapper with unused parameters.
"""

from __future__ import annotations

import hashlib
import random
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

import lightning as L

from ganforge.contract.components import CalibratedObjective, DataInfo, Objective, RegularizedGenerator, as_pair
from ganforge.io import jsonable
from ganforge.loop.data import DeviceIterations
from ganforge.loop.ema import GeneratorEMA
from ganforge.loop.nonfinite import NonFiniteGuard, Verdict
from ganforge.loop.schedule import make_schedule


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/inf and ``train.on_nonfinite`` is ``stop``.

    The guard has kept the weights and optimizers at the last good state. The event reaches the
    callbacks through Lightning's ``on_exception``: the checkpoint callback saves that state and
    calls :meth:`saved` so the message says where (``last_good``: the path, once saved).
    """

    def __init__(self, what: str, fix: str) -> None:
        self.what, self.fix = what, fix
        self.last_good: Optional[str] = None
        super().__init__(f"{what}. {fix}")

    def saved(self, path: Any) -> None:
        """Record that the last good state was saved to ``path`` (the message names it)."""
        self.last_good = str(path)
        self.args = (f"{self.what}. The last good state was saved to {path}; resume with --resume {path}. "
                     f"{self.fix}",)


def noise_seed(seed: int, rank: int, iteration: int, slot: int) -> int:
    """A 63-bit seed for one draw: different on every rank, step and slot, same on resume."""
    blob = f"{seed}:{rank}:{iteration}:{slot}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & (2**63 - 1)


class GANModule(L.LightningModule):
    """The alternating D/G loop with manual optimization.

    Args:
        generator: A :class:`ganforge.contract.components.Generator`.
        discriminator: A :class:`ganforge.contract.components.Discriminator`.
        objective: A :class:`ganforge.contract.components.Objective`.
        info: The dataset's :class:`DataInfo`.
        train: The resolved ``train`` config section.
        optim: The resolved ``optim`` config section.
        seed: The run's seed (noise is seeded from it per rank and iteration).

    Attributes:
        ema: The generator's :class:`ganforge.loop.ema.GeneratorEMA` (``None`` without
            ``train.ema_halflife_images``); its weights are the submodule ``generator_ema``.
        schedule: The learning-rate schedule (:func:`ganforge.loop.schedule.make_schedule`), or ``None``.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, objective: Objective, info: DataInfo,
                 train: dict[str, Any], optim: dict[str, Any], seed: int = 0) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.objective = objective
        self.info = info
        self.train_cfg = dict(train)
        self.optim_cfg = optim
        self.seed = seed
        self.n_critic = max(int(train.get("n_critic", 1)), int(objective.n_critic))
        self.ema: Optional[GeneratorEMA] = None
        self.generator_ema: Optional[nn.Module] = None  # the EMA's weights: generator_ema.* in checkpoints
        if train.get("ema_halflife_images"):
            self.ema = GeneratorEMA(generator, train["ema_halflife_images"], train["batch_size"],
                                    train.get("ema_rampup"))
            self.generator_ema = self.ema.module
        self.schedule = make_schedule(train, optim)
        # Own counters (saved in checkpoints).
        self.iterations = 0
        self.g_steps = 0
        self.d_steps = 0
        self.images_seen = 0
        self.skipped_steps = 0
        # Filled by the GAN strategy with DDP wrappers: {"generator": DDP(G), "discriminator": DDP(D)}.
        self.ddp: dict[str, nn.Module] = {}
        self._world: Optional[int] = None
        self._rank: Optional[int] = None
        self._grad_norm: Optional[torch.Tensor] = None  # set when train.grad_clip clips (read: last_grad_norm)
        # Gradient norms of the optimizer steps of an iteration that ends on a logging step, kept on the
        # device until _log_step reads them with the losses (no extra host sync).
        self._grad_norms: dict[str, torch.Tensor] = {}
        self._measure: Optional[str] = None  # the network whose next optimizer step records its norm
        self.guard = NonFiniteGuard(train.get("on_nonfinite", "stop"), train.get("max_consecutive_skips", 100))
        self._noise_generators: dict[torch.device, torch.Generator] = {}
        self._loop: dict[str, Any] = {}  # per-fit lists the loop reuses (on_train_start)
        self._outputs: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}  # last losses, read on logging steps
        self._run_logs: dict[str, torch.Tensor] = {}  # the objectives' run_logs (train/<key>), read on logging steps
        self.last_losses: dict[str, float] = {}  # d_loss and g_loss of the latest logging step (host floats)
        self.run_config: Optional[dict[str, Any]] = None  # the resolved config, saved in checkpoints
        self.fast_paths: dict[str, Any] = {}  # what ganforge.loop.fastpaths applied in setup (compile, channels_last)

    # -- networks -------------------------------------------------------------------------------------

    def trained(self, name: str) -> nn.Module:
        """The network being updated: its DDP wrapper when distributed, else the module."""
        return self.ddp.get(name) or getattr(self, name)

    @property
    def sampling_generator(self) -> nn.Module:
        return self.generator_ema if self.generator_ema is not None else self.generator

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [make_optimizer(self.generator.parameters(), self.optim_cfg["generator"]),
                make_optimizer(self.discriminator.parameters(), self.optim_cfg["discriminator"])]

    def setup(self, stage: str) -> None:
        from ganforge.loop import fastpaths  # train.compile, train.channels_last: before DDP wraps G and D

        self.fast_paths = fastpaths.apply(self, self.trainer.strategy.root_device)

    # -- noise ----------------------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        if self._trainer is None:
            return 0
        if self._rank is None:
            self._rank = self.trainer.global_rank
        return self._rank

    @property
    def world_size(self) -> int:
        if self._trainer is None:
            return 1
        if self._world is None:
            self._world = self.trainer.world_size  # Lightning computes it through several properties
        return self._world

    def noise(self, n: int, iteration: int, slot: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """Latent noise for one draw, a pure function of (seed, rank, iteration, slot)."""
        device = device or self.device
        g = self._noise_generators.get(device)  # one generator per device, re-seeded for each draw
        if g is None:
            g = self._noise_generators[device] = torch.Generator(device=device)
        g.manual_seed(noise_seed(self.seed, self.rank, iteration, slot))
        return torch.randn((n, *self.generator.latent_shape), generator=g, device=device)

    @contextmanager
    def _seeded_globals(self, iteration: int) -> Iterator[None]:
        """Seed the global torch RNG per rank and iteration (penalty interpolation, dropout, ...).

        Only the generator of the device in use: ``torch.manual_seed`` also queues seeds for every
        uninitialized accelerator backend, formatting a stack trace each time (~5 ms per call).
        """
        s = noise_seed(self.seed, self.rank, iteration, -1)
        torch.default_generator.manual_seed(s)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(s)
        yield

    # -- the loop -------------------------------------------------------------------------------------

    def stop_reached(self) -> bool:
        t = self.train_cfg
        if t.get("max_steps") is not None and self.g_steps >= t["max_steps"]:
            return True
        if t.get("max_images") is not None and self.images_seen >= t["max_images"]:
            return True
        return False

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        if self.stop_reached():
            self.trainer.should_stop = True
            return -1
        return None

    def on_train_start(self) -> None:
        """Look up once per fit what every iteration needs (Lightning's and nn.Module's lookups
        cost more than the small networks' steps)."""
        G, D = self.generator, self.discriminator
        cfg, t = self.run_config or {}, self.train_cfg
        metrics_every = (cfg.get("metrics") or {}).get("every_n_steps", 0)
        samples_every = (cfg.get("samples") or {}).get("every_n_steps", 0) or metrics_every
        self._loop = {
            "params": {"generator": list(G.parameters()), "discriminator": list(D.parameters())},
            "fp16": getattr(self.trainer.precision_plugin, "scaler", None) is not None,
            # Sync points: where the host reads losses or counters (logging, checkpoints, evaluation, pictures).
            "sync_every": sorted({int(t.get("log_every_n_steps", 10)), int(t.get("checkpoint_every_n_steps") or 0),
                                  int(metrics_every or 0), int(samples_every or 0)} - {0}),
            "g_regularization": isinstance(G, RegularizedGenerator),
            "direct": direct_steps(self.trainer, self),
            # CUDA graphs (train.compile_mode=reduce-overhead): each iteration is a new step of the graph
            # trees, whose outputs of the previous iteration may then be overwritten.
            "cudagraphs": self.fast_paths.get("compile_mode") == "reduce-overhead",  # as applied in setup
        }
        if self.ema is not None:
            self.ema.bind()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One iteration (a batch from the data loader), or, when Lightning hands a
        :class:`ganforge.loop.data.DeviceIterations`, up to its ``size`` iterations, each on its own
        batch gathered on the device: Lightning's per-batch work (fetcher, batch hooks, callbacks) then
        runs once per chunk (``train.iterations_per_batch``). A chunk ends after any iteration that is
        a sync point (logging, checkpoint, evaluation, picture steps) or the last, so every callback
        sees the batch ends it acts on; the weights are the same as one iteration per batch."""
        if not isinstance(batch, DeviceIterations):
            self.iteration(batch)
            return
        for _ in range(1 if batch_idx == 0 else batch.size):  # the fit's first batch: one iteration (first status line)
            if self.iteration(batch.batch(self.iterations)) or self.trainer.should_stop:
                return

    def iteration(self, batch: Any) -> bool:
        """One iteration: discriminator phase(s), generator phase, EMA; then the iteration's end.
        Returns whether it ended on a sync point."""
        opt_g, opt_d = self.optimizers()
        if self._loop["cudagraphs"]:
            torch.compiler.cudagraph_mark_step_begin()
        if self.schedule is not None:
            self.schedule.apply((("generator", opt_g), ("discriminator", opt_d)), self.g_steps)
        x, y = as_pair(batch)
        it = self.iterations
        # this iteration ends on a logging step (by its counters after it): measure the gradients
        logged = self._log_due(self.g_steps + 1, self.images_seen + x.shape[0] * self.world_size)
        with self._seeded_globals(it):
            for k, (real, cond) in enumerate(self._critic_batches(x, y)):
                self._measure = "discriminator" if logged and k == self.n_critic - 1 else None
                self.discriminator_phase(opt_d, real, cond, it, k)
            self._measure = "generator" if logged else None
            self.generator_phase(opt_g, real, cond, it)  # the last critic batch's reals and conditions
            self._measure = None
        self.iterations += 1
        self.images_seen += x.shape[0] * self.world_size
        if self.ema is not None:
            self.ema.update(self.images_seen, self.guard.live)
        return self._end_iteration()

    def _critic_batches(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> list[tuple[torch.Tensor, Any]]:
        """The iteration's batch cut into ``n_critic`` parts, one per discriminator phase."""
        reals = x.chunk(self.n_critic)
        return list(zip(reals, y.chunk(self.n_critic) if y is not None else [None] * self.n_critic))

    def _end_iteration(self) -> bool:
        """At a sync point settle the non-finite guard; stop when the run is done; log. Returns
        whether this was a sync point."""
        sync = self._sync_due()
        if sync:
            self._settle()
        if self.stop_reached():
            self.trainer.should_stop = True
        self._log_step()
        return sync

    # -- phases ---------------------------------------------------------------------------------------

    def discriminator_phase(self, opt: Any, real: torch.Tensor, y: Optional[torch.Tensor], it: int, k: int) -> None:
        """One discriminator step: ``Dmain``, plus ``Dreg`` when due; G frozen (no graph), D trained."""
        with torch.no_grad():
            fake = self.generator(self.noise(real.shape[0], it, k), y)
        d = self.trained("discriminator")
        out = self.objective.discriminator_loss(d, real, fake, y)  # Dmain
        loss = out.loss
        if self._dreg_due(it, k):
            reg = self.objective.discriminator_regularization(d, real, fake, y)  # Dreg, already x reg_every
            loss = loss + reg.loss
            self._outputs["d_reg"] = (reg.loss, reg.logs)
        self._optimizer_step("discriminator", opt, loss)
        self._outputs["d"] = (out.loss, out.logs)
        if out.run_logs:
            self._run_logs.update(out.run_logs)

    def _dreg_due(self, it: int, k: int) -> bool:
        """Lazy regularization (StyleGAN2): its k-weighted penalty on every k-th discriminator step,
        counted over iterations (not successful steps) so that it is the same on every rank and after resume."""
        reg_every = self.objective.reg_every
        return reg_every > 1 and (it * self.n_critic + k) % reg_every == 0

    def generator_phase(self, opt: Any, real: torch.Tensor, y: Optional[torch.Tensor], it: int) -> None:
        """One generator step: ``Gmain``, plus the generator's ``regularization_loss``; D frozen (its
        raw module: no DDP bookkeeping), G trained."""
        with frozen(self._loop["params"]["discriminator"]):
            fake = self.trained("generator")(self.noise(real.shape[0], it, self.n_critic), y)
            out = self.objective.generator_loss(self.discriminator, real, fake, y)  # Gmain
            loss = out.loss
            if self._loop["g_regularization"]:
                reg = self.generator.regularization_loss()
                loss = loss + reg
                self._outputs["g_reg"] = (reg, {})
            self._optimizer_step("generator", opt, loss)
        self._outputs["g"] = (loss, out.logs)
        if out.run_logs:  # e.g. the constrained objective's constraint/<id>: logged as train/<key>
            self._run_logs.update(out.run_logs)

    def _optimizer_step(self, which: str, opt: Any, loss: torch.Tensor) -> None:
        """Backward, the guarded step, WGAN's weight clipping after a discriminator step, zero the gradients."""
        if self._loop["direct"]:
            loss.backward()  # what manual_backward ends in, without its hook dispatch (see direct_steps)
        else:
            self.manual_backward(loss)
        self._guarded_step(which, loss, opt)
        if which == "discriminator":
            self._clip_weights()
        opt.zero_grad(set_to_none=True)

    # -- guards ---------------------------------------------------------------------------------------

    def _guarded_step(self, which: str, loss: torch.Tensor, opt: Any) -> None:
        """The optimizer step, made a no-op on the device when the loss or a gradient is not finite
        on any rank (or the run has halted): :class:`ganforge.loop.nonfinite.NonFiniteGuard`.

        Under fp16 the GradScaler skips steps with inf/nan gradients itself: only the loss counts.
        """
        fp16 = self._loop["fp16"]
        grads = [p.grad for p in self._loop["params"][which] if p.grad is not None]
        record = {"which": which, "iteration": self.iterations, "g_steps": self.g_steps, "d_steps": self.d_steps,
                  "images_seen": self.images_seen}
        skip = self.guard.check(loss, grads, self.world_size, loss_only=fp16, record=record)
        synced = self.guard.step(opt, skip, on_host=fp16, run=self._run_step)
        if which == "generator":  # as if it ran; the next sync point corrects
            self.g_steps += 1
        else:
            self.d_steps += 1
        if synced:  # the host has decided already (no found_inf support): report now
            self._settle()

    def _run_step(self, opt: Any) -> None:
        """``opt.step()`` (Lightning's optimizer wrapper); on the direct path the same calls without
        the precision plugin's closure and hook dispatch: the manual loop's step counting (Lightning's
        ``global_step``), this module's ``on_before_optimizer_step`` (clipping, gradient norms), the step."""
        if not self._loop["direct"]:
            opt.step()
            return
        raw = opt.optimizer
        opt._on_before_step()
        self.on_before_optimizer_step(raw)
        raw.step()
        opt._on_after_step()

    def _sync_due(self) -> bool:
        """Is the end of this iteration a sync point? (Logging, checkpoint, evaluation and picture
        steps, the end of training, and any iteration after the guard halted.)"""
        g = self.g_steps
        return (any(g % every == 0 for every in self._loop["sync_every"]) or self.stop_reached()
                or self.guard.halted is not None)

    def _settle(self, final: bool = True) -> None:
        """A sync point: learn which steps since the last one were no-ops (one transfer), correct
        the counters, warn about skipped steps; on a halt roll the counters back to the last good
        state and, when ``final``, save it and stop."""
        result = self.guard.settle()
        for v in result.skipped:
            self.skipped_steps += 1
            if v.record.which == "generator":
                self.g_steps -= 1
            else:
                self.d_steps -= 1
            if self.rank == 0:
                print(f"ganforge: warning: {v.describe()} at {v.where()}; step skipped (train.on_nonfinite=skip).")
        if result.halt is None:
            return
        c = result.halt.counters
        self.iterations, self.g_steps, self.d_steps, self.images_seen = (
            c["iterations"], c["g_steps"], c["d_steps"], c["images_seen"])
        if final:
            self._nonfinite_stop(result.halt)

    def _nonfinite_stop(self, v: Verdict) -> None:
        what = f"{v.describe()} at {v.where()}"
        fix = "Lower the learning rates, set train.grad_clip, or set train.on_nonfinite=skip to skip such steps."
        if self.guard.policy == "skip":
            what += (f", after {v.run - 1} skipped {v.record.which} steps in a row (train.max_consecutive_skips="
                     f"{self.guard.max_consecutive_skips})")
            fix = "Lower the learning rates, set train.grad_clip, or raise train.max_consecutive_skips."
        raise NonFiniteError(what, fix)  # the checkpoint callback saves the last good state (on_exception)

    def _clip_weights(self) -> None:
        """WGAN (Arjovsky et al. 2017): every D parameter clamped to ``[-c, c]`` (``objective.weight_clip``)."""
        clip = self.objective.weight_clip
        if clip:  # after a skipped step too: clamping clamped weights changes nothing
            with torch.no_grad():
                torch._foreach_clamp_min_(self._loop["params"]["discriminator"], -clip)
                torch._foreach_clamp_max_(self._loop["params"]["discriminator"], clip)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called by Lightning after the AMP scaler has unscaled the gradients: the place for clipping,
        # and for the norm logged as train/g/grad_norm, train/d/grad_norm on logging steps (before clipping).
        clip = self.train_cfg.get("grad_clip")
        if not clip and self._measure is None:
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm: Optional[torch.Tensor] = None
        if clip:
            norm = self._grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)  # stays on the device
        if self._measure is not None:
            # The total 2-norm over the network's parameters, on the device: the saturating loss's
            # vanishing generator gradient (Goodfellow et al. 2014, §3) shows here as a number.
            if norm is None:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
            self._grad_norms[self._measure] = norm.detach()

    @property
    def last_grad_norm(self) -> Optional[float]:
        """The gradient norm before the latest clipping (``train.grad_clip``); reading it is a host sync."""
        return None if self._grad_norm is None else float(self._grad_norm)

    # -- distributed consistency ----------------------------------------------------------------------

    @torch.no_grad()
    def sync_buffers(self) -> None:
        """Average floating buffers (BatchNorm running statistics) over ranks; copy integer ones
        from rank 0. Called before evaluation and checkpointing, so every rank evaluates and saves
        the same networks (DDP runs with ``broadcast_buffers=False``)."""
        if self.world_size == 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return
        for net in (self.generator, self.discriminator):
            for b in net.buffers():
                if b.is_floating_point():
                    torch.distributed.all_reduce(b, op=torch.distributed.ReduceOp.SUM)
                    b.div_(self.world_size)
                else:
                    torch.distributed.broadcast(b, src=0)
        if self.ema is not None:
            self.ema.copy_buffers()

    # -- logging --------------------------------------------------------------------------------------

    def _log_step(self) -> None:
        """Losses to the progress bar and the loggers every ``train.log_every_n_steps``
        generator steps, with ``step = g_steps`` (Lightning's own step counts optimizer steps).
        Only here do the losses leave the device: in one transfer."""
        if not self._log_due(self.g_steps):
            return  # self.log costs ~2 ms a call: only on logging steps
        logs: dict[str, torch.Tensor] = {}
        for phase, (loss, parts) in self._outputs.items():
            if phase in ("d", "g"):
                logs[f"{phase}_loss"] = loss
            elif phase == "g_reg":
                logs["g/regularization"] = loss
            prefix = "d" if phase.startswith("d") else "g"
            logs.update({f"{prefix}/{k}": v for k, v in parts.items()})
        logs.update(self._run_logs)
        for net, norm in self._grad_norms.items():  # measured in this iteration (see training_step)
            logs[f"{net[0]}/grad_norm"] = norm
        self._grad_norms = {}
        values = torch.stack([v.detach().float().mean() if v.dim() else v.detach().float()
                              for v in logs.values()]).tolist()  # a log value of any shape: its mean
        scalars = dict(zip(logs, values))
        self.last_losses = {"d_loss": scalars["d_loss"], "g_loss": scalars["g_loss"]}  # the status line's
        if self.trainer.progress_bar_callback is not None:  # self.log feeds only the bar (~1 ms a call)
            self.log("d_loss", scalars["d_loss"], prog_bar=True, logger=False, on_step=True, on_epoch=False)
            self.log("g_loss", scalars["g_loss"], prog_bar=True, logger=False, on_step=True, on_epoch=False)
        if self.rank != 0:
            return
        row = {("train/" + k if k not in ("d_loss", "g_loss") else k): v for k, v in scalars.items()}
        row.update(self.counters(float_values=True))
        log_to_loggers(self.trainer, row, self.g_steps)

    def _log_due(self, g_steps: int, images_seen: Optional[int] = None) -> bool:
        """Is generator step ``g_steps`` (with ``images_seen``, default the current count) a logging step:
        every ``train.log_every_n_steps``, and the last one (``train.max_steps`` or ``train.max_images``)?"""
        t = self.train_cfg
        images = self.images_seen if images_seen is None else images_seen
        return (g_steps % max(1, int(t.get("log_every_n_steps", 10))) == 0
                or (t.get("max_steps") is not None and g_steps >= t["max_steps"])
                or (t.get("max_images") is not None and images >= t["max_images"]))

    def counters(self, float_values: bool = False) -> dict[str, Any]:
        """The counters, exact: steps since the last sync point are settled first (a host sync),
        without stopping a halted run (the loop does that at its next sync point)."""
        if self.guard.records:
            self._settle(final=False)
        c = {"g_steps": self.g_steps, "d_steps": self.d_steps, "images_seen": self.images_seen,
             "iterations": self.iterations, "skipped_steps": self.skipped_steps}
        return {k: float(v) for k, v in c.items()} if float_values else c

    def objective_record(self) -> dict[str, Any]:
        """What the objective was and what the engine did with it (``summary.json``'s ``objective``):
        its name and :meth:`Objective.protocol`, and the attributes the loop read: the critic steps
        it ran (``max(train.n_critic, objective.n_critic)``), lazy regularization, weight clipping,
        double backward (which refuses ``train.compile``)."""
        obj = self.objective
        name = ((self.run_config or {}).get("objective") or {}).get("name", type(obj).__name__)
        return {"name": name, "protocol": jsonable(obj.protocol()), "n_critic": self.n_critic, "reg_every": obj.reg_every,
                "weight_clip": obj.weight_clip, "needs_double_backward": bool(obj.needs_double_backward)}

    # -- sampling -------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, y: Optional[torch.Tensor] = None, seed: int = 0, ema: bool = True,
               batch_size: int = 1000) -> torch.Tensor:
        """``n`` samples from the (EMA) generator with a fixed seed, in eval mode."""
        G = self.sampling_generator if ema else self.generator
        was_training = G.training
        G.eval()
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        out = []
        for i in range(0, n, batch_size):
            m = min(batch_size, n - i)
            z = torch.randn((m, *self.generator.latent_shape), generator=g, device=self.device)
            yi = None if y is None else y[i : i + m].to(self.device)
            out.append(G(z, yi).float())
        G.train(was_training)
        return torch.cat(out) if out else torch.empty(0)

    # -- checkpoints ----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ganforge"] = {
            "counters": self.counters(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": numpy_rng_to_data(np.random.get_state()),
                "python": python_rng_to_data(random.getstate()),
            },
            "n_critic": self.n_critic,
            "info": self.info.to_dict(),
            "config": self.run_config,
            "saved_unix": time.time(),  # --resume auto takes the newest by this, not the file's mtime
        }
        if isinstance(self.objective, CalibratedObjective):  # measured once on the data: restored on resume
            checkpoint["objective"] = self.objective.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ganforge")
        if state is None:
            raise ValueError("this checkpoint was not written by ganforge (no 'ganforge' section).")
        c = state["counters"]
        self.iterations, self.g_steps, self.d_steps = c["iterations"], c["g_steps"], c["d_steps"]
        self.images_seen, self.skipped_steps = c["images_seen"], c.get("skipped_steps", 0)
        rng = state.get("rng") or {}
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if rng.get("numpy") is not None:
            np.random.set_state(numpy_rng_from_data(rng["numpy"]))
        if rng.get("python") is not None:
            random.setstate(python_rng_from_data(rng["python"]))


def restore_objective_state(objective: Objective, checkpoint: Any, path: Any) -> None:
    """Hand a :class:`CalibratedObjective` its state from a checkpoint (``checkpoint["objective"]``);
    one error naming the checkpoint (and, through the objective's message, the constraint id) when it
    is missing or malformed. Objectives without the capability: nothing to do."""
    from ganforge.registry.errors import ConfigError

    if not isinstance(objective, CalibratedObjective):
        return
    state = checkpoint.get("objective") if isinstance(checkpoint, dict) else None
    if state is None and not objective.needs_calibration():
        return  # nothing was measured: nothing to give back
    if state is None:
        raise ConfigError(f"checkpoint '{path}' has no objective state (checkpoint['objective']), but the objective "
                          "was calibrated on the training data when the run started (calibrated constraints); "
                          "resume from a checkpoint this run wrote, or start again without --resume.")
    try:
        objective.load_state_dict(state)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"checkpoint '{path}': the objective's calibrated state (checkpoint['objective']) cannot be "
                          f"restored: {exc}. Resume from another checkpoint of this run, or start again without "
                          "--resume (the constraints are then calibrated anew).") from None


@contextmanager
def frozen(params: list[torch.Tensor]) -> Iterator[None]:
    """``requires_grad`` off for ``params`` inside the block (the network not being trained)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# Checkpoints are plain data (tensors, numbers, strings), loadable with torch.load(weights_only=True):
# numpy's and Python's RNG states are converted to that and back, bit for bit.


def numpy_rng_to_data(state: tuple) -> dict[str, Any]:
    """``np.random.get_state()`` (legacy tuple, MT19937) as plain data."""
    name, key, pos, has_gauss, cached = state
    return {"bit_generator": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def numpy_rng_from_data(d: dict[str, Any]) -> tuple:
    return (d["bit_generator"], d["key"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached_gaussian"])


def python_rng_to_data(state: tuple) -> dict[str, Any]:
    """``random.getstate()`` (version, 625 words of Mersenne Twister state, cached gaussian) as plain data."""
    version, internal, gauss_next = state
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}


def python_rng_from_data(d: dict[str, Any]) -> tuple:
    return (d["version"], tuple(int(v) for v in d["internal"].tolist()), d["gauss_next"])


def log_to_loggers(trainer: Any, row: dict[str, float], step: int) -> None:
    """Write one row to every logger now (rank 0 only), with ``step`` = generator steps."""
    if trainer is None or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(row, step=step)
        logger.save()


_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def direct_steps(trainer: Any, module: L.LightningModule) -> bool:
    """Whether the loop may run ``loss.backward()`` and ``optimizer.step()`` itself.

    Lightning's ``manual_backward`` and optimizer wrapper dispatch six hooks per optimizer step
    (``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step``, each to every
    callback and to the module) through its profiler contexts: ~0.15 ms a step on the CPU, a
    quarter of the loop's own cost on the ring. When nothing listens to them and the precision
    plugin and strategy add nothing to backward or the step (32-bit, bf16 without a scaler,
    half/double; one device, or :class:`GANDDPStrategy` whose wrappers do their own all-reduce),
    the direct calls do exactly what Lightning's would. Otherwise (a callback implementing one of
    those hooks, fp16's GradScaler, another strategy) Lightning's path is used.
    """
    from lightning.pytorch.plugins.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

    from ganforge.loop.strategy import GANDDPStrategy

    plugin, strategy = trainer.precision_plugin, trainer.strategy
    plain_precision = (type(plugin) in (Precision, HalfPrecision, DoublePrecision)
                       or (type(plugin) is MixedPrecision and plugin.scaler is None))
    plain_strategy = type(strategy) in (SingleDeviceStrategy, GANDDPStrategy)
    listened = any(is_overridden(h, cb, L.Callback) for cb in trainer.callbacks for h in _STEP_HOOKS)
    module_hooks = (any(is_overridden(h, module, L.LightningModule) for h in _STEP_HOOKS[:2])
                    or is_overridden("backward", module, L.LightningModule))
    profiled = not isinstance(trainer.profiler, PassThroughProfiler)  # a profiler times the hooks: keep them
    return plain_precision and plain_strategy and not listened and not module_hooks and not profiled


_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")


def iterations_per_batch(trainer: Any, requested: int) -> int:
    """How many iterations the module may run per Lightning batch (``train.iterations_per_batch``).

    Lightning's per-batch work (data fetcher, three batch-transfer hooks, the batch hooks of every
    callback, loop bookkeeping) costs about as much as a small network's iteration on the CPU.
    Running several iterations per batch changes when the callbacks' ``on_train_batch_start`` /
    ``on_train_batch_end`` run, nothing else: ganforge's own callbacks act on sync points, where a
    chunk always ends, and declare it with ``handles_iteration_chunks = True``. A callback that
    implements a batch hook without declaring it (e.g. a third party's, written for one iteration per
    batch) gets one iteration per batch: ``requested`` falls back to 1.
    """
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if requested <= 1:
        return 1
    for cb in trainer.callbacks:
        if getattr(cb, "handles_iteration_chunks", False):
            continue
        if any(is_overridden(h, cb, L.Callback) for h in _BATCH_HOOKS):
            return 1
    return requested


def fused_available(params: list[torch.Tensor]) -> bool:
    """Whether torch has fused optimizer kernels for all of ``params`` (floating, one device type)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    types_ = {p.device.type for p in params}
    return (len(types_) == 1 and types_.pop() in _get_fused_kernels_supported_devices()
            and all(p.is_floating_point() for p in params))


def make_optimizer(params: Any, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """One network's optimizer from its ``optim.<network>`` section.

    Adam, AdamW and SGD use torch's fused kernels where every parameter sits on a device that has
    them (CUDA, and the CPU since torch 2.4): one kernel per step instead of a dozen per tensor
    (3x faster on the CPU for the ring MLPs, the same update); otherwise torch's own choice
    (foreach on GPUs). RMSprop has no fused kernel: foreach. Fused and foreach steps are
    deterministic, so resume stays bit-exact.
    """
    name, lr = cfg["name"], float(cfg["lr"])
    params = list(params)
    fast: dict[str, Any] = {"fused": True} if params and fused_available(params) else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"],
                                **fast)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"],
                                 **fast)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, eps=cfg["eps"], weight_decay=cfg["weight_decay"], momentum=cfg["momentum"],
                                   foreach=True if params else None)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=cfg["weight_decay"], momentum=cfg["momentum"], **fast)
    raise ValueError(f"unknown optimizer {name!r}; use adam, adamw, rmsprop or sgd")
