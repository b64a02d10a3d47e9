"""Value constraints of config parameters, declared once in the typed signature.

A factory (or an engine section) writes ``Annotated[<type>, <constraint>...]`` and the config
validation checks the value after type coercion, with one error wording for every key::

    from typing import Annotated, Optional
    from ganforge.registry.bounds import NonNegative, Positive, Range

    def my_metric(num_samples: Annotated[int, Positive] = 1000,
                  threshold: Annotated[float, Range(0.0, 1.0)] = 0.5,
                  every: Annotated[Optional[int], NonNegative] = None): ...

``None`` always passes (``Optional`` says whether it is allowed); in a list or tuple every
item is checked. Put ``Annotated`` outermost.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Constraint:
    """A check on one number and the words that describe it (``"> 0"``, ``"in [0, 1)"``)."""

    check: Callable[[Any], bool]
    text: str

    def describe(self, value: Any = None) -> str:
        """The requirement, worded for ``value`` (``nan`` and ``inf`` are told they must be finite)."""
        items = value if isinstance(value, (list, tuple)) else [value]
        odd = any(isinstance(v, float) and not math.isfinite(v) for v in items)
        return f"a finite number {self.text}" if odd and self is not Finite else self.text

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # types are coerce()'s job; constraints are about numbers
        try:
            return bool(self.check(value))
        except (TypeError, ValueError, OverflowError):
            return False


def _finite(v: Any) -> bool:
    return math.isfinite(v)


Finite = Constraint(_finite, "finite (not nan or inf)")
Positive = Constraint(lambda v: math.isfinite(v) and v > 0, "> 0")
NonNegative = Constraint(lambda v: math.isfinite(v) and v >= 0, ">= 0")


def Range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Constraint:  # noqa: N802
    """``low <= v <= high`` (``low < v`` with ``low_open``, ``v < high`` with ``high_open``)."""
    text = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(v: Any) -> bool:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return math.isfinite(v) and above and below

    return Constraint(check, text)


SEED_RANGE = Range(0, 2**32 - 1)


def split(ann: Any) -> tuple[Any, tuple[Constraint, ...]]:
    """``Annotated[T, c1, c2]`` → ``(T, (c1, c2))``; anything else → ``(ann, ())``."""
    if typing.get_origin(ann) is typing.Annotated:
        base, *extras = typing.get_args(ann)
        return base, tuple(e for e in extras if isinstance(e, Constraint))
    return ann, ()


def violated(value: Any, constraints: tuple[Constraint, ...]) -> Optional[Constraint]:
    """The first constraint ``value`` (or an item of it) breaks, or ``None``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for c in constraints:
        for v in items:
            if v is not None and not c(v):
                return c
    return None


__all__ = ["Constraint", "Finite", "NonNegative", "Positive", "Range", "SEED_RANGE", "split", "violated"]
