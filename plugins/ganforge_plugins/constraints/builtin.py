"""Generic constraints on generated samples: ``box`` (per-feature bounds) and ``norm-range`` (‖x‖ in an annulus).

Both are penalties of the constrained objective (``objective: {name: constrained, constraints: [...]}``),
in training units (the dataset's ``value_range``), zero exactly where the sample satisfies them and
quadratic outside, so their gradient grows with the violation::

    box:         p(x) = Σ_j relu(x_j − high_j)² + relu(low_j − x_j)²       (j over features / pixels)
    norm-range:  p(x) = relu(‖x‖ − high)² + relu(low − ‖x‖)²                 (points only)
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ganforge import DataInfo, Register, hookimpl

GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for

Tensor = torch.Tensor


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class Box:
    """Per-feature (points) or per-pixel (images) bounds: ``low <= x <= high``.

    ``p(x) = Σ_j relu(x_j − high_j)² + relu(low_j − x_j)²``. ``low``/``high`` are one number for all
    features, or one per feature (points) / per channel (images), in training units.

    Args:
        low: Lower bound(s).
        high: Upper bound(s), each > its ``low``.
    """

    def __init__(self, low: Union[float, list[float]] = -1.0, high: Union[float, list[float]] = 1.0,
                 info: Optional[DataInfo] = None) -> None:
        if info is None:
            raise ValueError("box needs the dataset's info (sample shape) and is built by the constrained objective")
        lows = [low] if not isinstance(low, (list, tuple)) else list(low)
        highs = [high] if not isinstance(high, (list, tuple)) else list(high)
        per = info.sample_shape[0] if info.sample_shape else 1
        what = "channel" if info.kind == "image" else "feature"
        for name, v in (("low", lows), ("high", highs)):
            if len(v) not in (1, per):
                raise ValueError(f"{name} must be one number or {per} (one per {what} of dataset "
                                 f"'{info.name}', sample shape {tuple(info.sample_shape)}), got {len(v)}: {v!r}")
            for i, e in enumerate(v):
                _finite(f"{name}[{i}]" if len(v) > 1 else name, e)
        n = max(len(lows), len(highs))
        lows, highs = lows * (n // len(lows)), highs * (n // len(highs))
        bad = [i for i, (a, b) in enumerate(zip(lows, highs)) if not a < b]
        if bad:
            i = bad[0]
            raise ValueError(f"low must be < high, got low={lows[i]!r} >= high={highs[i]!r}"
                             + (f" ({what} {i})" if n > 1 else "") + "; e.g. low: -1.0, high: 1.0")
        shape = (n,) + (1,) * (len(info.sample_shape) - 1) if n > 1 else ()
        self.low = torch.tensor([float(v) for v in lows]).reshape(shape)
        self.high = torch.tensor([float(v) for v in highs]).reshape(shape)
        self.sample_shape = tuple(info.sample_shape)

    def penalty(self, fake: Tensor, y: Optional[Tensor]) -> Tensor:
        low, high = self.low.to(fake), self.high.to(fake)
        over = torch.relu(fake - high).pow(2) + torch.relu(low - fake).pow(2)
        return over.flatten(1).sum(1)


class NormRange:
    """Points whose Euclidean norm lies in ``[low, high]`` (an annulus around the origin, e.g. a ring).

    ``p(x) = relu(‖x‖ − high)² + relu(low − ‖x‖)²``, in training units.

    Args:
        low: Smallest allowed norm (>= 0).
        high: Largest allowed norm (> low).
    """

    def __init__(self, low: float = 0.0, high: float = 1.0, info: Optional[DataInfo] = None) -> None:
        if info is None:
            raise ValueError("norm-range needs the dataset's info and is built by the constrained objective")
        if info.kind != "points" or len(info.sample_shape) != 1:
            raise ValueError(f"norm-range constrains the norm of points (vectors), but dataset '{info.name}' has "
                             f"{info.kind} samples of shape {tuple(info.sample_shape)}; use the box constraint "
                             "for images")
        self.low, self.high = _finite("low", low), _finite("high", high)
        if self.low < 0:
            raise ValueError(f"low must be >= 0 (a norm), got {low!r}")
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={low!r} >= high={high!r}; e.g. low: 0.8, high: 1.2 "
                             "around a ring of radius 1")

    def penalty(self, fake: Tensor, y: Optional[Tensor]) -> Tensor:
        norm = fake.flatten(1).norm(dim=1)
        return torch.relu(norm - self.high).pow(2) + torch.relu(self.low - norm).pow(2)


@hookimpl
def ganforge_register_constraints(register: Register) -> None:
    register("box", Box, description="Per-feature/pixel bounds: penalty Σ relu(x-high)² + relu(low-x)²")
    register("norm-range", NormRange, description="Points with ‖x‖ in [low, high]: penalty relu(‖x‖-high)² + "
                                                  "relu(low-‖x‖)²")
