"""Wasserstein objectives: WGAN with weight clipping and WGAN-GP with the gradient penalty."""

from typing import Optional

import torch

from ganforge import DiscriminatorFn, LossOutput, Objective, adversarial_logits
from ganforge_plugins.objectives.common import (
    check_every,
    check_n_critic,
    check_nonnegative,
    loss_logs,
    upcast,
)

Tensor = torch.Tensor


class WGAN(Objective):
    """Wasserstein GAN with weight clipping (Arjovsky et al. 2017).

    * critic: ``E D(G(z)) − E D(x)`` (minimizing it maximizes the Wasserstein estimate
      ``E D(x) − E D(G(z))``, logged as ``wasserstein``);
    * G: ``−E D(G(z))``.

    The engine clamps every critic parameter to ``[−weight_clip, weight_clip]`` after each
    critic step, a crude way to keep the critic Lipschitz.

    Args:
        weight_clip: Clamp bound c for the critic's parameters (``null`` disables clipping,
            e.g. for a spectrally normalized critic).
        n_critic: Critic steps per generator step.
    """

    name = "wgan"

    def __init__(self, weight_clip: Optional[float] = 0.01, n_critic: int = 5) -> None:
        if weight_clip is not None and not weight_clip > 0:
            raise ValueError(
                f"weight_clip must be > 0, got {weight_clip!r}; "
                "use 0.01 (Arjovsky et al.) or null to disable clipping"
            )
        check_n_critic(n_critic)
        self.weight_clip = None if weight_clip is None else float(weight_clip)
        self.n_critic = int(n_critic)

    def _critic(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        real_logits = adversarial_logits(d(real, y))
        fake_logits = adversarial_logits(d(fake, y))
        return real_logits, fake_logits, real_logits.mean() - fake_logits.mean()

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        real_logits, fake_logits, w = self._critic(d, real, fake, y)
        return LossOutput(-w, loss_logs(real_logits, fake_logits, wasserstein=w))

    def generator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        fake_logits = adversarial_logits(d(fake, y))
        return LossOutput(-fake_logits.mean(), loss_logs(fake_logits=fake_logits))


class WGANGP(WGAN):
    """WGAN with gradient penalty (Gulrajani et al. 2017), optional drift (Karras et al. 2018).

    critic: ``E D(G(z)) − E D(x) + λ E (‖∇D(x̂)‖₂ − 1)² + ε E D(x)²`` with
    ``x̂ = α x + (1 − α) G(z)``, ``α ~ U[0, 1]`` per sample; G: ``−E D(G(z))``.

    ``α`` comes from ``torch.rand`` on the device of ``real``: the engine seeds each rank
    differently, so ranks draw different interpolates.

    Args:
        gp_weight: λ, the weight of the gradient penalty.
        n_critic: Critic steps per generator step.
        eps_drift: ε, the weight of the drift term that keeps critic outputs near 0
            (Karras et al. use 0.001).
        gp_every: Evaluate the gradient penalty every this many critic steps, weighted by it
            (lazy; 1: every step, as in the paper).
    """

    name = "wgan-gp"
    needs_double_backward = True

    def __init__(self, gp_weight: float = 10.0, n_critic: int = 5, eps_drift: float = 0.0, gp_every: int = 1) -> None:
        super().__init__(weight_clip=None, n_critic=n_critic)
        check_nonnegative("gp_weight", gp_weight, "use 10.0 (Gulrajani et al.)")
        check_nonnegative("eps_drift", eps_drift, "use 0 to disable it or 0.001 (Karras et al.)")
        check_every("gp_every", gp_every, "use 1 (Gulrajani et al.) or e.g. 4 for a lazy penalty")
        self.gp_weight = float(gp_weight)
        self.eps_drift = float(eps_drift)
        self.gp_every = int(gp_every)

    @property
    def reg_every(self) -> int:  # type: ignore[override]
        return self.gp_every

    def gradient_penalty(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """``E (‖∇D(x̂)‖₂ − 1)²`` (unweighted) and the critic's outputs on the interpolates."""
        if real.shape != fake.shape:
            raise ValueError(
                f"objective '{self.name}' interpolates real and fake samples pairwise, but got real of shape "
                f"{tuple(real.shape)} and fake of shape {tuple(fake.shape)}; generate one fake sample per real sample"
            )
        alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        with torch.enable_grad():
            x_hat = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
            hat_logits = adversarial_logits(d(x_hat, y))
            (grad,) = torch.autograd.grad(hat_logits.sum(), x_hat, create_graph=True)
            norm = torch.linalg.vector_norm(upcast(grad).flatten(1), dim=1)
            return (norm - 1.0).pow(2).mean(), hat_logits

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        real_logits, fake_logits, w = self._critic(d, real, fake, y)
        loss = -w
        extra = {"wasserstein": w}
        if self.gp_every == 1:
            gp, hat_logits = self.gradient_penalty(d, real, fake, y)
            # 0 * logits keeps every critic parameter in the graph of the one backward (DDP)
            loss = loss + self.gp_weight * gp + 0.0 * hat_logits.sum()
            extra["gp"] = gp
        if self.eps_drift > 0:
            drift = upcast(real_logits).pow(2).mean()
            loss = loss + self.eps_drift * drift
            extra["drift"] = drift
        return LossOutput(loss, loss_logs(real_logits, fake_logits, **extra))

    def discriminator_regularization(self, d: DiscriminatorFn, real: Tensor, fake: Tensor,
                                     y: Optional[Tensor]) -> LossOutput:
        """Dreg, lazy gradient penalty: ``k · λ · E(‖∇D(x̂)‖₂ − 1)²`` with ``k = gp_every``."""
        gp, _ = self.gradient_penalty(d, real, fake, y)
        return LossOutput(self.gp_every * self.gp_weight * gp, loss_logs(gp=gp))
