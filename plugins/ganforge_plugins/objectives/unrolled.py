"""Unrolled GAN (Metz et al. 2017, arXiv 1611.02163): G looks ``k`` discriminator steps ahead.

The surrogate generator loss is the base objective's G loss through a discriminator that has
taken ``k`` differentiable gradient steps on the base objective's D loss (the paper's §2.1)::

    θ_D⁰ = θ_D,   θ_Dᵏ⁺¹ = θ_Dᵏ − η ∇_θ L_D(θ_Dᵏ; x, G(z)),   L_G^unrolled = L_G(θ_Dᴷ; G(z))

and G's gradient flows through every ``θ_Dᵏ`` (second order), which is what lets G anticipate
D's reaction and stop hopping between modes. The real D is not modified: its own update is the
base objective's, unchanged.
"""

from typing import Annotated, Any, Optional

import torch
from torch import nn
from torch.func import functional_call

from ganforge import ComponentRef, DiscriminatorFn, LossOutput, Objective, build_component
from ganforge_plugins.objectives.common import WrappedObjective

Tensor = torch.Tensor


class Unrolled(WrappedObjective):
    """Any adversarial objective with the generator step unrolled through ``steps`` D updates.

    The unrolled updates are plain gradient descent, ``θ ← θ − lr · ∇_θ L_D`` (the update of the paper's
    §2.1), on the current real batch and the generator's samples, with WGAN's weight clipping
    after each step when the base clips. Not D's Adam: the objective does not see D's optimizer
    state, and Adam started from an empty state moves each weight by ``lr · sign(g)``, whose
    derivative in ``g`` (the path to G) vanishes.

    Under several processes each rank unrolls on its own share of the batch (the real D's step
    averages over ranks); G's gradient is then averaged by DDP as usual, so ranks stay identical.

    Args:
        base: The registered objective whose losses are unrolled (any but ``unrolled``).
        steps: k, the unrolled D updates; 0 is the base objective exactly.
        lr: η, the step size of the unrolled updates.
        base_params: Parameters of the base objective, e.g. ``{r1_weight: 1.0}``.
    """

    name = "unrolled"
    # the G loss differentiates through D's gradient: no train.compile
    needs_double_backward = True

    def __init__(
        self,
        base: Annotated[str, ComponentRef("objective", params="base_params")] = "non-saturating",
        steps: int = 5,
        lr: float = 0.001,
        base_params: Optional[dict[str, Any]] = None,
    ) -> None:
        # checked here rather than with the Positive/NonNegative bounds, so the message says what to use
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"objective.steps must be an integer >= 0 (unrolled discriminator updates), got "
                             f"{steps!r}; use 5 or 10 as in Metz et al. 2017, or 0 for the base objective")
        if not (isinstance(lr, (int, float)) and 0 < lr < float("inf")):
            raise ValueError(f"objective.lr must be a finite number > 0 (the unrolled step size), got {lr!r}; "
                             "use 0.001")
        if base == self.name:
            raise ValueError("objective.base must be an adversarial objective, got 'unrolled' (unrolling an unrolled "
                             "objective); use e.g. objective.base=non-saturating and raise objective.steps instead")
        if base == "constrained":  # its penalties, logs and calibration belong outside any other wrapper
            raise ValueError("objective.base: 'constrained' goes outside unrolled, not inside: write objective={name: "
                             "constrained, base: unrolled, base_params: {steps: ...}, constraints: [...]}")
        self.base = base
        self.steps = int(steps)
        self.lr = float(lr)
        self.base_params = dict(base_params or {})
        # through the registry, so a third-party objective can be the base too
        self.inner: Objective = build_component(
            "objective", base, self.base_params, name_key="objective.base", params_key="objective.base_params"
        )
        self.adopt_base_attributes()

    def generator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        """The base G loss through D after ``steps`` differentiable updates (``fake`` keeps G's graph)."""
        if self.steps == 0:
            return self.inner.generator_loss(d, real, fake, y)
        if not isinstance(d, nn.Module):
            raise ValueError(
                f"objective 'unrolled' needs the discriminator module in generator_loss, got a {type(d).__name__}; "
                "an objective that wraps D (e.g. acgan) must be unrolled's base, not the other way round: "
                "objective={name: unrolled, base: acgan}"
            )
        params = {k: p.detach().requires_grad_(True) for k, p in d.named_parameters()}
        # copies: BatchNorm's running statistics of the real D stay as they are
        buffers = {k: b.clone() for k, b in d.named_buffers()}
        names = list(params)
        with torch.enable_grad():
            theta = params
            for _ in range(self.steps):
                d_k = _functional(d, theta, buffers)
                loss_d = self.inner.discriminator_loss(d_k, real, fake, y).loss
                grads = torch.autograd.grad(loss_d, [theta[k] for k in names], create_graph=True, allow_unused=True)
                theta = {k: theta[k] if g is None else theta[k] - self.lr * g for k, g in zip(names, grads)}
                if self.weight_clip:
                    theta = {k: v.clamp(-self.weight_clip, self.weight_clip) for k, v in theta.items()}
            out = self.inner.generator_loss(_functional(d, theta, buffers), real, fake, y)
        return LossOutput(out.loss, dict(out.logs, unrolled_d_loss=loss_d.detach()))

    def protocol(self) -> dict[str, Any]:
        return {"base": self.base, "steps": self.steps, "lr": self.lr, "optimizer": "sgd",
                "base_protocol": self.inner.protocol()}


def _functional(module: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor]) -> DiscriminatorFn:
    """``module`` as a function of the given parameters (the unrolled ``θ_Dᵏ``)."""
    state = {**buffers, **params}

    def d(x: Tensor, y: Optional[Tensor] = None) -> Any:
        return functional_call(module, state, (x, y))

    return d
