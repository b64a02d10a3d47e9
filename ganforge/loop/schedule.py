"""The learning-rate schedule (``train.lr_decay``), a function of the generator step.

``linear`` (BigGAN-style decay at the end of training): with ``s = lr_decay_start · max_steps``,

    lr(g) = lr₀                                   for g ≤ s
    lr(g) = lr₀ · max(0, (max_steps − g) / (max_steps − s))   after

for both networks. A pure function of the generator step: a resumed run needs no schedule state.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

SCHEDULES = ("none", "linear")


class LinearDecay:
    """Constant learning rates, then a linear decay to 0 at ``max_steps``.

    Args:
        base_lrs: The configured learning rate of each network (``optim.<network>.lr``).
        max_steps: ``train.max_steps``.
        start: ``train.lr_decay_start``: the fraction of ``max_steps`` after which the decay starts.
    """

    def __init__(self, base_lrs: dict[str, float], max_steps: int, start: float = 0.5) -> None:
        self.base_lrs = {k: float(v) for k, v in base_lrs.items()}
        self.max_steps = max_steps
        self.start = float(start) * max_steps

    def factor(self, g_steps: int) -> float:
        """The multiplier of the base learning rates at generator step ``g_steps``."""
        if g_steps <= self.start:
            return 1.0
        return max(0.0, (self.max_steps - g_steps) / max(self.max_steps - self.start, 1.0))

    def apply(self, optimizers: Iterable[tuple[str, Any]], g_steps: int) -> None:
        """Set the learning rate of every parameter group of ``(network, optimizer)`` pairs."""
        f = self.factor(g_steps)
        for net, opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = self.base_lrs[net] * f


def make_schedule(train: dict[str, Any], optim: dict[str, Any]) -> Optional[LinearDecay]:
    """The schedule the ``train`` section asks for; ``None`` for constant learning rates."""
    kind = train.get("lr_decay", "none")
    if kind not in SCHEDULES:
        raise ValueError(f"train.lr_decay={kind!r}: unknown schedule; use one of {', '.join(SCHEDULES)}")
    if kind == "none" or not train.get("max_steps"):
        return None
    return LinearDecay({net: optim[net]["lr"] for net in ("generator", "discriminator")}, int(train["max_steps"]),
                       float(train.get("lr_decay_start", 0.5)))
