"""GANModule: the alternating discriminator/generator loop.

One training step is one *iteration*: ``n_critic`` discriminator steps, then one generator
step, then the EMA update. ganforge keeps its own counters (generator steps, discriminator
steps, images seen) because Lightning's ``global_step`` counts every optimizer step.

Distributed training: :mod:`ganforge.strategy` may wrap G and D in separate DDP instances and
put them in ``self.ddp``; the loop calls the wrapper of the network being trained and the raw
module of the frozen one, so no backward ever leaves a DDP wrapper with unused parameters.
"""

from __future__ import annotations

import copy
import hashlib
import random
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

import lightning as L

from ganforge.components import DataInfo, Objective, as_pair


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/inf and ``train.on_nonfinite`` is ``stop``."""


def noise_seed(seed: int, rank: int, iteration: int, slot: int) -> int:
    """A 63-bit seed for one draw: different on every rank, step and slot, same on resume."""
    blob = f"{seed}:{rank}:{iteration}:{slot}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & (2**63 - 1)


class GANModule(L.LightningModule):
    """The alternating D/G loop with manual optimization.

    Args:
        generator: A :class:`ganforge.components.Generator`.
        discriminator: A :class:`ganforge.components.Discriminator`.
        objective: A :class:`ganforge.components.Objective`.
        info: The dataset's :class:`DataInfo`.
        train: The resolved ``train`` config section.
        optim: The resolved ``optim`` config section.
        seed: The run's seed (noise is seeded from it per rank and iteration).
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
        self.n_critic = max(int(train.get("n_critic", 1)), int(getattr(objective, "n_critic", 1)))
        self.generator_ema: Optional[nn.Module] = None
        if train.get("ema_halflife_images"):
            self.generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        # Own counters (saved in checkpoints).
        self.iterations = 0
        self.g_steps = 0
        self.d_steps = 0
        self.images_seen = 0
        self.skipped_steps = 0
        # Filled by the GAN strategy with DDP wrappers: {"generator": DDP(G), "discriminator": DDP(D)}.
        self.ddp: dict[str, nn.Module] = {}
        self._world: Optional[int] = None
        self.last_logs: dict[str, float] = {}
        self.last_grad_norm: Optional[float] = None  # set when train.grad_clip clips
        self.extra_state: dict[str, Any] = {}  # other components' resumable state (e.g. logger run id)
        self.run_config: Optional[dict[str, Any]] = None  # the resolved config, saved in checkpoints
        self.requeued = False  # set when a SLURM requeue stopped training (no final evaluation)
        self.fast_paths: dict[str, bool] = {}  # what ganforge.fastpaths applied in setup (compile, channels_last)

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
        from ganforge import fastpaths  # train.compile, train.channels_last: before DDP wraps G and D

        self.fast_paths = fastpaths.apply(self, self.trainer.strategy.root_device)

    # -- noise ----------------------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self._trainer is not None else 0

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
        g = torch.Generator(device=device)
        g.manual_seed(noise_seed(self.seed, self.rank, iteration, slot))
        shape = tuple(self.generator.latent_shape)
        return torch.randn((n, *shape), generator=g, device=device)

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

    def lr_factor(self) -> float:
        """Learning-rate multiplier at the current generator step (``train.lr_decay``)."""
        t = self.train_cfg
        if t.get("lr_decay", "none") != "linear" or not t.get("max_steps"):
            return 1.0
        start = float(t.get("lr_decay_start", 0.5)) * t["max_steps"]
        if self.g_steps <= start:
            return 1.0
        return max(0.0, (t["max_steps"] - self.g_steps) / max(t["max_steps"] - start, 1.0))

    def _apply_lr(self, opt_g: Any, opt_d: Any) -> None:
        f = self.lr_factor()
        for opt, net in ((opt_g, "generator"), (opt_d, "discriminator")):
            for group in opt.param_groups:
                group["lr"] = float(self.optim_cfg[net]["lr"]) * f

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        self._apply_lr(opt_g, opt_d)
        x, y = as_pair(batch)
        it = self.iterations
        chunks_x = x.chunk(self.n_critic)
        chunks_y = y.chunk(self.n_critic) if y is not None else [None] * self.n_critic
        G, D = self.generator, self.discriminator
        d_train = self.trained("discriminator")
        g_train = self.trained("generator")
        logs: dict[str, torch.Tensor] = {}
        with self._seeded_globals(it):
            # Discriminator phase(s): G frozen (no graph), D trained.
            for k in range(self.n_critic):
                real, yk = chunks_x[k], chunks_y[k]
                with torch.no_grad():
                    fake = G(self.noise(real.shape[0], it, k), yk)
                out = self.objective.discriminator_loss(d_train, real, fake.detach(), yk)
                self.manual_backward(out.loss)
                if self._step_ok("discriminator", out.loss, D, opt_d):
                    opt_d.step()
                    self._after_d_step()
                    self.d_steps += 1
                opt_d.zero_grad(set_to_none=True)
                logs.update({"d_loss": out.loss.detach(), **{f"d/{k_}": v for k_, v in out.logs.items()}})

            # Generator phase: D frozen (its raw module: no DDP bookkeeping), G trained.
            real, yk = chunks_x[-1], chunks_y[-1]
            D.requires_grad_(False)
            try:
                fake = g_train(self.noise(real.shape[0], it, self.n_critic), yk)
                out = self.objective.generator_loss(D, real, fake, yk)
                loss = out.loss
                if hasattr(G, "regularization_loss"):
                    reg = G.regularization_loss()
                    loss = loss + reg
                    logs["g/regularization"] = reg.detach()
                self.manual_backward(loss)
                if self._step_ok("generator", loss, G, opt_g):
                    opt_g.step()
                    self.g_steps += 1
                opt_g.zero_grad(set_to_none=True)
            finally:
                D.requires_grad_(True)
        logs.update({"g_loss": loss.detach(), **{f"g/{k_}": v for k_, v in out.logs.items()}})
        self.iterations += 1
        self.images_seen += x.shape[0] * self.world_size
        self.update_ema()
        if self.stop_reached():
            self.trainer.should_stop = True
        self._log_step(logs)

    # -- guards ---------------------------------------------------------------------------------------

    def _any_rank(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank (collective: every rank decides alike)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor(1.0 if flag else 0.0, device=self.device)
        return bool(self.trainer.strategy.reduce(t, reduce_op="max").item() > 0)

    def _step_ok(self, which: str, loss: torch.Tensor, net: nn.Module, opt: Any) -> bool:
        """After backward: are the loss and the gradients finite on every rank?

        One host sync and (under DDP) one all-reduce per optimizer step. A non-finite loss on one
        rank reaches every rank's gradients through DDP's all-reduce, so all ranks decide alike.
        Under fp16 the GradScaler skips steps with inf/nan gradients itself: only the loss counts.
        """
        flags = [~torch.isfinite(loss.detach()).all()]
        if getattr(self.trainer.precision_plugin, "scaler", None) is None:
            grads = [p.grad for p in net.parameters() if p.grad is not None]
            if grads:  # one fused reduction: any NaN/inf makes its tensor's norm non-finite
                flags.append(~torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())
        local = torch.stack(flags).float()
        total = local if self.world_size == 1 else self.trainer.strategy.reduce(local.clone(), reduce_op="max")
        bad_here, bad_any = local.tolist(), total.tolist()
        if not any(bad_any):
            return True
        opt.zero_grad(set_to_none=True)
        value = loss.detach().float().item()
        if bad_here[0]:
            what = f"{which} loss is {value}"
        elif bad_any[0]:  # the root cause; its NaN reached our gradients through DDP's all-reduce
            what = f"{which} loss is not finite on another rank (here: {value:.6g})"
        elif bad_here[1]:
            what = f"{which} gradient is not finite (loss {value:.6g})"
        else:
            what = f"{which} gradient is not finite on another rank (here: loss {value:.6g})"
        return self._nonfinite(which, what)

    def _nonfinite(self, which: str, what: str) -> bool:
        where = f"iteration {self.iterations} (generator step {self.g_steps}, discriminator step {self.d_steps})"
        if self.train_cfg.get("on_nonfinite", "stop") == "skip":
            self.skipped_steps += 1
            if self.rank == 0:
                print(f"ganforge: warning: {what} at {where}; step skipped (train.on_nonfinite=skip).")
            return False
        saved = ""
        path = getattr(self.trainer, "ganforge_last_ckpt", None)
        if path is not None:
            self.trainer.save_checkpoint(path, weights_only=False)  # weights and optimizers are still the last good ones
            saved = f" The last good state was saved to {path}; resume with --resume {path}."
        raise NonFiniteError(
            f"{what} at {where}.{saved} Lower the learning rates, set train.grad_clip, or set "
            "train.on_nonfinite=skip to skip such steps."
        )

    def _after_d_step(self) -> None:
        clip = getattr(self.objective, "weight_clip", None)
        if clip:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-clip, clip)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called by Lightning after the AMP scaler has unscaled the gradients: the place for clipping.
        clip = self.train_cfg.get("grad_clip")
        if clip:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            self.last_grad_norm = float(norm)

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
        if self.generator_ema is not None:
            for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
                b_ema.copy_(b)

    # -- EMA ------------------------------------------------------------------------------------------

    def ema_beta(self) -> float:
        half = float(self.train_cfg.get("ema_halflife_images") or 0.0)
        rampup = self.train_cfg.get("ema_rampup")
        if rampup:
            half = min(half, self.images_seen * float(rampup))
        batch = float(self.train_cfg["batch_size"])
        return 0.5 ** (batch / max(half, 1e-8))

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.generator_ema is None:
            return
        beta = self.ema_beta()
        # ema <- beta * ema + (1 - beta) * p, fused over all parameters
        torch._foreach_lerp_(list(self.generator_ema.parameters()), [p.detach() for p in self.generator.parameters()],
                             1.0 - beta)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    # -- logging --------------------------------------------------------------------------------------

    def _log_step(self, logs: dict[str, torch.Tensor]) -> None:
        """Losses to the progress bar and the loggers every ``train.log_every_n_steps``
        generator steps, with ``step = g_steps`` (Lightning's own step counts optimizer steps)."""
        every = max(1, int(self.train_cfg.get("log_every_n_steps", 10)))
        if self.g_steps % every and not self.stop_reached():
            return  # self.log costs ~2 ms a call: only on logging steps
        scalars = {k: float(v) for k, v in logs.items()}
        self.last_logs = scalars
        self.log("d_loss", scalars["d_loss"], prog_bar=True, logger=False, on_step=True, on_epoch=False)
        self.log("g_loss", scalars["g_loss"], prog_bar=True, logger=False, on_step=True, on_epoch=False)
        if self.rank != 0:
            return
        row = {("train/" + k if k not in ("d_loss", "g_loss") else k): v for k, v in scalars.items()}
        row.update(self.counters(float_values=True))
        log_to_loggers(self.trainer, row, self.g_steps)

    def counters(self, float_values: bool = False) -> dict[str, Any]:
        c = {"g_steps": self.g_steps, "d_steps": self.d_steps, "images_seen": self.images_seen,
             "iterations": self.iterations, "skipped_steps": self.skipped_steps}
        return {k: float(v) for k, v in c.items()} if float_values else c

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
            "extra": dict(self.extra_state),
            "info": self.info.to_dict(),
            "config": self.run_config,
        }

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
        self.extra_state.update(state.get("extra") or {})


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
