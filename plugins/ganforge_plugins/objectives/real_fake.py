"""Objectives whose D loss is ``E a(D(x)) + E b(D(G(z)))``: minimax, non-saturating, hinge, least squares.

Each takes an optional R1 penalty (``r1_weight``, lazy with ``r1_every``).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from ganforge import DiscriminatorFn, LossOutput, Objective, adversarial_logits
from ganforge_plugins.objectives.common import (
    check_every,
    check_nonnegative,
    logits_and_r1,
    loss_logs,
)

Tensor = torch.Tensor


class RealFakeObjective(Objective):
    """Objectives whose D loss is ``E a(D(x)) + E b(D(G(z)))`` plus an optional R1 penalty.

    R1 (Mescheder et al. 2018): ``γ/2 · E_real ‖∇ₓD(x)‖²``, ``γ = r1_weight``; with
    ``r1_every = k > 1`` it is lazy: ``k · γ/2 · E‖∇ₓD(x)‖²`` every k-th discriminator step (Dreg).
    """

    name = ""

    def __init__(self, r1_weight: float = 0.0, r1_every: int = 16) -> None:
        check_nonnegative(
            "r1_weight", r1_weight, "use 0 to disable R1, or a positive γ (StyleGAN2 uses 10 at 1024 px)"
        )
        check_every("r1_every", r1_every, "use 1 for R1 on every step or 16 (StyleGAN2's lazy R1)")
        self.r1_weight = float(r1_weight)
        self.r1_every = int(r1_every)
        # an instance attribute, so protocol() records it and the engine sees it per instance
        self.needs_double_backward = self.r1_weight > 0

    @property
    def reg_every(self) -> int:  # type: ignore[override]
        return self.r1_every if self.r1_weight > 0 else 1

    def real_term(self, real_logits: Tensor) -> Tensor:
        """Per-sample D loss on real samples."""
        raise NotImplementedError

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        """Per-sample D loss on generated samples."""
        raise NotImplementedError

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        """Per-sample G loss."""
        raise NotImplementedError

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        real_logits, r1 = logits_and_r1(d, real, y, self.r1_weight if self.reg_every == 1 else 0.0)
        fake_logits = adversarial_logits(d(fake, y))
        adv = self.real_term(real_logits).mean() + self.fake_term(fake_logits).mean()
        extra = {"d_loss_adv": adv}
        loss = adv
        if r1 is not None:
            loss = loss + 0.5 * self.r1_weight * r1
            extra["r1"] = r1
        return LossOutput(loss, loss_logs(real_logits, fake_logits, **extra))

    def discriminator_regularization(self, d: DiscriminatorFn, real: Tensor, fake: Tensor,
                                     y: Optional[Tensor]) -> LossOutput:
        """Dreg, lazy R1: ``k · γ/2 · E‖∇ₓD(x)‖²`` with ``k = r1_every`` (its own forward on ``real``)."""
        _, r1 = logits_and_r1(d, real, y, self.r1_weight)
        assert r1 is not None
        return LossOutput(self.r1_every * 0.5 * self.r1_weight * r1, loss_logs(r1=r1))

    def generator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        fake_logits = adversarial_logits(d(fake, y))
        return LossOutput(self.generator_term(fake_logits).mean(), loss_logs(fake_logits=fake_logits))


class Minimax(RealFakeObjective):
    """The saturating minimax game of Goodfellow et al. (2014), exactly as written.

    ``min_G max_D V(D, G) = E_x log D(x) + E_z log(1 − D(G(z)))`` with ``D = σ(l)``:

    * D minimizes ``−V = E softplus(−l_real) + E softplus(l_fake)``;
    * G minimizes ``E log(1 − D(G(z))) = −E softplus(l_fake)``; ``∂/∂l = −σ(l)``, which
      vanishes when D confidently rejects the samples (``σ(l) → 0``): the saturation problem.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "minimax"

    def real_term(self, real_logits: Tensor) -> Tensor:
        return F.softplus(-real_logits)

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(fake_logits)

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return -F.softplus(fake_logits)


class NonSaturating(Minimax):
    """Non-saturating GAN (Goodfellow et al. 2014, Sec. 3): G maximizes ``E log D(G(z))``.

    * D: as in ``minimax``, ``E softplus(−l_real) + E softplus(l_fake)``;
    * G minimizes ``−E log D(G(z)) = E softplus(−l_fake)``; ``∂/∂l = −(1 − σ(l))``, largest
      where the samples are worst.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "non-saturating"

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits)


class Hinge(RealFakeObjective):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018).

    * D: ``E relu(1 − D(x)) + E relu(1 + D(G(z)))``;
    * G: ``−E D(G(z))``.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "hinge"

    def real_term(self, real_logits: Tensor) -> Tensor:
        return F.relu(1.0 - real_logits)

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        return F.relu(1.0 + fake_logits)

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits


class LeastSquares(RealFakeObjective):
    """Least-squares GAN (Mao et al. 2017) with targets a = 0 (fake), b = 1 (real), c = 1.

    * D: ``½ E (D(x) − 1)² + ½ E D(G(z))²``;
    * G: ``½ E (D(G(z)) − 1)²``.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "lsgan"

    def real_term(self, real_logits: Tensor) -> Tensor:
        return 0.5 * (real_logits - 1.0).pow(2)

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * fake_logits.pow(2)

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - 1.0).pow(2)
