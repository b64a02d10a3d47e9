"""What the first-party objectives share: parameter checks, dtype upcasting, the logged values, R1.

The conventions every objective here follows are in docs/objectives.md ("Conventions").
"""

from typing import Optional

import torch

from ganforge import DiscriminatorFn, LossOutput, Objective, adversarial_logits

Tensor = torch.Tensor


def check_nonnegative(name: str, value: float, hint: str) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value!r}; {hint}")


def check_every(name: str, value: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (discriminator steps between penalty evaluations), got "
                         f"{value!r}; {hint}")


def check_n_critic(n_critic: int) -> None:
    if n_critic < 1:
        raise ValueError(
            f"n_critic must be >= 1 (critic steps per generator step), got {n_critic!r}; "
            "use 5 as in the WGAN papers"
        )


def upcast(t: Tensor) -> Tensor:
    """float16/bfloat16 to float32 (squares and means of half values lose too much); wider dtypes stay."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def loss_logs(real_logits: Optional[Tensor] = None, fake_logits: Optional[Tensor] = None, **extra: Tensor) -> dict[str, Tensor]:
    """``d_real`` / ``d_fake`` (D's mean output on real / generated samples) and ``extra``, detached.
    The logits are handed over unreduced: the engine logs a value's mean, on logging steps only
    (:class:`ganforge.LossOutput`), so the other steps pay no reduction."""
    out: dict[str, Tensor] = {}
    if real_logits is not None:
        out["d_real"] = real_logits.detach()
    if fake_logits is not None:
        out["d_fake"] = fake_logits.detach()
    out.update({k: upcast(v.detach()) for k, v in extra.items()})
    return out


def logits_and_r1(d: DiscriminatorFn, real: Tensor, y: Optional[Tensor], r1_weight: float) -> tuple[Tensor, Optional[Tensor]]:
    """D's logits on ``real`` and, when ``r1_weight > 0``, the R1 term ``E‖∇ₓD(x)‖²`` (unweighted).

    The penalty reuses the logits of the adversarial term, so R1 costs no extra forward pass.
    """
    if r1_weight <= 0:
        return adversarial_logits(d(real, y)), None
    with torch.enable_grad():
        x = real.detach().requires_grad_(True)
        logits = adversarial_logits(d(x, y))
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        return logits, upcast(grad).pow(2).flatten(1).sum(1).mean()


class WrappedObjective(Objective):
    """An objective around a base objective ``self.inner`` (``unrolled``, ``constrained``): D's update,
    its regularization and what the engine reads of them (critic steps, weight clipping, lazy
    regularization) are the base's. Subclasses set ``self.inner`` and change the generator's loss."""

    inner: Objective

    def adopt_base_attributes(self) -> None:
        """Copy the attributes the engine reads once, after ``self.inner`` is built."""
        self.n_critic = self.inner.n_critic
        self.weight_clip = self.inner.weight_clip

    @property
    def reg_every(self) -> int:  # type: ignore[override]
        return self.inner.reg_every

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        """D's own update: the base objective's, unchanged."""
        return self.inner.discriminator_loss(d, real, fake, y)

    def discriminator_regularization(self, d: DiscriminatorFn, real: Tensor, fake: Tensor,
                                     y: Optional[Tensor]) -> LossOutput:
        return self.inner.discriminator_regularization(d, real, fake, y)
