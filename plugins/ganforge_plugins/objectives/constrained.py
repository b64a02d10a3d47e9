"""Constrained GANs: prior knowledge about valid samples as a penalty on the generator's samples.

Any base objective, with weighted penalties from registered **constraint** components added to the
generator's loss; the discriminator's loss is the base's, unchanged::

    L_D = L_D^base,        L_G = L_G^base + Σᵢ wᵢ · mean_n pᵢ(G(z)ₙ, yₙ)

where ``pᵢ >= 0`` is constraint i's per-sample penalty (0 where the sample satisfies it). Constraints
whose parameters are measured on the training data (:class:`ganforge.CalibratedConstraint`) are
calibrated once by the engine at the start of a fresh fit and saved with the run.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Optional

import torch

from ganforge import (
    CalibratedConstraint,
    ComponentList,
    ComponentRef,
    Constraint,
    DataInfo,
    DiscriminatorFn,
    LossOutput,
    NonNegative,
    Objective,
    Positive,
    build_component,
)
from ganforge_plugins.objectives.common import WrappedObjective, upcast

Tensor = torch.Tensor


def constraint_entry(weight: Annotated[float, NonNegative] = 1.0, id: Optional[str] = None) -> None:  # noqa: A002
    """The keys of an ``objective.constraints`` entry besides the constraint's own parameters.

    Args:
        weight: wᵢ, the penalty's weight in G's loss (0: logged, not trained on).
        id: The entry's name in logs, checkpoints and ``constraints.json`` (default: the constraint's name);
            two entries need distinct ids.
    """


class Constrained(WrappedObjective):
    """Any objective with weighted constraint penalties on G's samples (constrained GANs).

    ``L_G = L_G^base + Σᵢ wᵢ · mean(penalty_i(G(z), y))``; D's loss and everything the engine reads
    (critic steps, double backward, weight clipping, lazy regularization) are the base objective's.

    Args:
        base: The registered objective whose losses are used (any but ``constrained``).
        constraints: Entries ``{name: <registered constraint>, weight: 1.0, id: <name>, <its parameters>}``.
        calibration_samples: Training samples the calibrated constraints are measured on at the start
            of a fresh fit (the first of a permutation seeded by the run's seed; ``null``: all).
        base_params: Parameters of the base objective, e.g. ``{r1_weight: 1.0}``.
    """

    name = "constrained"

    def __init__(
        self,
        base: Annotated[str, ComponentRef("objective", params="base_params")] = "non-saturating",
        constraints: Annotated[list[dict[str, Any]],
                               ComponentList("constraint", entry=constraint_entry, unique="id")] = [],  # noqa: B006 - never mutated
        calibration_samples: Annotated[Optional[int], Positive] = 20000,
        base_params: Optional[dict[str, Any]] = None,
        info: Optional[DataInfo] = None,
    ) -> None:
        if base == self.name:
            raise ValueError("objective.base must be an adversarial objective, got 'constrained' (a constrained "
                             "objective inside another); list all constraints in one objective.constraints")
        self.base = base
        self.base_params = dict(base_params or {})
        self.calibration_samples = None if calibration_samples is None else int(calibration_samples)
        # through the registry, so third-party objectives and constraints work the same
        self.inner: Objective = build_component("objective", base, self.base_params, name_key="objective.base",
                                                params_key="objective.base_params", info=info)
        self.adopt_base_attributes()
        self.needs_double_backward = bool(self.inner.needs_double_backward)
        self.entries: list[dict[str, Any]] = []  # {id, name, weight, params}
        self.constraints: list[Constraint] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(constraints):
            where = f"objective.constraints[{i}]"
            if not isinstance(raw, dict) or not raw.get("name"):
                raise ValueError(f"{where}: expected a mapping {{name: <registered constraint>, ...}}, got {raw!r}")
            entry = dict(raw)
            name = str(entry.pop("name"))
            weight = entry.pop("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise ValueError(f"{where}.weight: must be a finite number >= 0, got {weight!r}")
            cid = entry.pop("id", None) or name
            if cid in seen:
                raise ValueError(f"{where}.id: {cid!r} is also the id of objective.constraints[{seen[cid]}]; two "
                                 "entries need distinct ids: give one of them `id: <another name>`")
            seen[cid] = i
            self.constraints.append(build_component("constraint", name, entry, name_key=f"{where}.name",
                                                    params_key=where, info=info))
            self.entries.append({"id": cid, "name": name, "weight": float(weight), "params": entry})
        self.calibrated_on: Optional[int] = None  # training samples the calibration used (None: not calibrated)

    # -- losses ---------------------------------------------------------------------------------------

    def penalties(self, fake: Tensor, y: Optional[Tensor]) -> list[Tensor]:
        """Each constraint's per-sample penalty ``(N,)`` on ``fake`` (checked for shape, not values: no host sync)."""
        out = []
        for entry, c in zip(self.entries, self.constraints):
            p = c.penalty(fake, y)
            if not isinstance(p, torch.Tensor) or tuple(p.shape) != (fake.shape[0],):
                got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                raise ValueError(f"constraint '{entry['name']}' (objective.constraints id '{entry['id']}') returned a "
                                 f"penalty of shape {got}; penalty(fake, y) must return one value per sample, "
                                 f"shape ({fake.shape[0]},)")
            out.append(upcast(p))
        return out

    def generator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        """``L_G^base + Σᵢ wᵢ · mean(pᵢ)``; logs ``constraint/<id>`` (mean unweighted penalty) and
        ``constraint/<id>/violated`` (fraction of the batch with a penalty > 0)."""
        out = self.inner.generator_loss(d, real, fake, y)
        loss = out.loss
        run_logs = dict(out.run_logs)
        for entry, p in zip(self.entries, self.penalties(fake, y)):
            mean = p.mean()
            if entry["weight"] > 0:  # weight 0: monitored only, and G's loss stays the base's exactly
                loss = loss + entry["weight"] * mean
            run_logs[f"constraint/{entry['id']}"] = mean.detach()
            run_logs[f"constraint/{entry['id']}/violated"] = (p.detach() > 0).float().mean()
        return LossOutput(loss, out.logs, run_logs)

    # -- calibration (ganforge.CalibratedObjective) ---------------------------------------------------

    def calibrated(self) -> list[tuple[dict[str, Any], CalibratedConstraint]]:
        return [(e, c) for e, c in zip(self.entries, self.constraints) if isinstance(c, CalibratedConstraint)]

    def needs_calibration(self) -> bool:
        return bool(self.calibrated())

    def calibrate(self, x: Tensor, y: Optional[Tensor]) -> None:
        """Calibrate every :class:`ganforge.CalibratedConstraint` on the training samples ``x`` (conditions ``y``)."""
        for entry, c in self.calibrated():
            try:
                c.calibrate(x, y)
            except (ValueError, TypeError, RuntimeError) as exc:
                raise ValueError(f"objective.constraints id '{entry['id']}' (constraint '{entry['name']}') could "
                                 f"not be calibrated on the training data: {exc}") from exc
            odd = _not_plain(c.state_dict())  # checked now, not when the first checkpoint cannot be read back
            if odd:
                raise ValueError(f"constraint '{entry['name']}' (objective.constraints id '{entry['id']}'): its "
                                 f"state_dict() holds {odd}; checkpoints hold plain data only (numbers, strings, "
                                 "lists, dicts, tensors): convert it, e.g. torch.as_tensor(array)")
        self.calibrated_on = int(x.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {"calibrated_on": self.calibrated_on,
                "constraints": {e["id"]: c.state_dict() for e, c in self.calibrated()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the calibrated constraints; a ``ValueError`` names the constraint id whose state is missing or bad."""
        if not isinstance(state, dict) or not isinstance(state.get("constraints"), dict):
            raise ValueError(f"no constraint states (expected {{'constraints': {{<id>: <state>}}}}, got "
                             f"{_short(state)})")
        for entry, c in self.calibrated():
            cid = entry["id"]
            if cid not in state["constraints"]:
                raise ValueError(f"no state for the calibrated constraint id '{cid}' (constraint '{entry['name']}'); "
                                 f"it has states for: {', '.join(map(repr, state['constraints'])) or 'none'}")
            try:
                c.load_state_dict(_copy(state["constraints"][cid]))
            except Exception as exc:  # noqa: BLE001 - a plugin's own error, reported with the id
                raise ValueError(f"the state of constraint id '{cid}' (constraint '{entry['name']}') is malformed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        self.calibrated_on = state.get("calibrated_on")

    def protocol(self) -> dict[str, Any]:
        calibrated = {e["id"] for e, _ in self.calibrated()}
        return {"base": self.base, "base_protocol": self.inner.protocol(),
                "calibration_samples": self.calibration_samples, "calibrated_on": self.calibrated_on,
                "constraints": [{**e, "calibrated": e["id"] in calibrated,
                                 "state": c.state_dict() if e["id"] in calibrated else None}
                                for e, c in zip(self.entries, self.constraints)]}


def _not_plain(obj: Any, where: str = "state") -> str:
    """Where ``obj`` holds something a ``weights_only`` checkpoint cannot (``''`` when it is all plain data)."""
    if isinstance(obj, (torch.Tensor, str, int, float, bool, type(None))):
        return ""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                return f"a key of type {type(k).__name__} in {where}"
            found = _not_plain(v, f"{where}[{k!r}]")
            if found:
                return found
        return ""
    if isinstance(obj, (list, tuple)):
        return next((f for f in (_not_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)) if f), "")
    return f"a {type(obj).__module__}.{type(obj).__name__} at {where}"


def _copy(obj: Any) -> Any:
    """A deep copy whose tensors own their memory (a checkpoint's may be memory-mapped)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(v) for v in obj)
    return obj


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."
