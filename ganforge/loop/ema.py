"""The generator's exponential moving average, with its half-life in images.

StyleGAN2-ADA's ``ema_kimg`` / ``ema_rampup`` (Karras et al. 2020), per iteration of ``B`` images:

    h = min(halflife_images, rampup · images_seen)      (the ramp-up only when ``rampup`` is set)
    β = 0.5 ** (B / h)
    θ_ema ← β θ_ema + (1 − β) θ                          (buffers, e.g. BatchNorm statistics: copied)

β is a function of the images seen, so the EMA needs no state of its own in a checkpoint beyond its
weights (``generator_ema.*`` in the module's ``state_dict``).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn


class GeneratorEMA:
    """Keeps ``module``, an averaged copy of ``generator``, and updates it after each iteration.

    Args:
        generator: The trained generator (read at every :meth:`update`, never modified).
        halflife_images: The half-life of a weight in the average, in images (``train.ema_halflife_images``).
        batch_size: Images per iteration over all ranks (``train.batch_size``).
        rampup: ``train.ema_rampup``: the half-life is at most ``rampup · images_seen`` (``None``: no ramp-up).
    """

    def __init__(self, generator: nn.Module, halflife_images: float, batch_size: int,
                 rampup: Optional[float] = None) -> None:
        self.generator = generator
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)
        self.halflife_images = float(halflife_images)
        self.batch_size = float(batch_size)
        self.rampup = float(rampup) if rampup else None
        self._tensors: Optional[tuple[list[torch.Tensor], ...]] = None

    def beta(self, images_seen: int) -> float:
        """The weight the average keeps at this iteration."""
        half = self.halflife_images
        if self.rampup:
            half = min(half, images_seen * self.rampup)
        return 0.5 ** (self.batch_size / max(half, 1e-8))

    def bind(self) -> None:
        """Look up the parameter and buffer lists once (per fit: nn.Module's lookups cost more
        than the update of a small network)."""
        self._tensors = (list(self.module.parameters()), list(self.generator.parameters()),
                         list(self.module.buffers()), list(self.generator.buffers()))

    @torch.no_grad()
    def update(self, images_seen: int, live: Optional[torch.Tensor] = None) -> None:
        """One EMA step, fused over all parameters; no host sync.

        Args:
            images_seen: The images seen after this iteration (for the ramp-up).
            live: ``None``, or a 0-d device tensor that is ``0`` once the run has halted on a
                non-finite step (:attr:`ganforge.loop.nonfinite.NonFiniteGuard.live`): then the
                average stands still at the last good state.
        """
        if self._tensors is None:
            self.bind()
        ema_params, params, ema_buffers, buffers = self._tensors
        weight = 1.0 - self.beta(images_seen)
        if live is None:
            torch._foreach_lerp_(ema_params, params, weight)  # ema <- ema + (1 - beta) (p - ema), fused
        elif live.device.type == "cpu":  # lerp reads a tensor weight on the host: free for a CPU tensor
            torch._foreach_lerp_(ema_params, params, live * weight)
        else:  # on an accelerator that read would be a sync: the same update with a device multiplier
            delta = torch._foreach_sub(params, ema_params)
            torch._foreach_mul_(delta, live * weight)
            torch._foreach_add_(ema_params, delta)
        if buffers:
            torch._foreach_copy_(ema_buffers, buffers)

    @torch.no_grad()
    def copy_buffers(self) -> None:
        """Copy the generator's buffers into the average (after they were averaged over ranks)."""
        for b_ema, b in zip(self.module.buffers(), self.generator.buffers()):
            b_ema.copy_(b)
