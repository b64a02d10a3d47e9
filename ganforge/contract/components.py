"""Component protocols: what a plugin's factory must return for each kind.

The engine checks these when it builds a component (:func:`check_component`), so a plugin
that returns the wrong thing fails at start-up with a message naming the plugin, not deep
inside a training step.

Parameters that the engine passes to factories itself (never written in a config):

``info``
    :class:`DataInfo` of the configured dataset (for generators, discriminators, objectives,
    constraints, metrics and callbacks that declare it).
``seed``
    The run's seed (for datasets that generate data).
``run``
    :class:`LoggerRun` of the run being logged (for loggers).

All other factory parameters come from the config section of the component.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

INJECTED_PARAMETERS = ("info", "seed", "run")


@dataclass
class DataInfo:
    """What the engine and the other components need to know about a dataset.

    Attributes:
        sample_shape: Shape of one sample, without the batch dimension: ``(2,)`` for points,
            ``(C, H, W)`` for images.
        num_classes: Number of class labels (``0`` when the data is not class-labelled).
        cond_dim: Dimension of continuous conditions (``0`` when there are none). A dataset may
            have both: then ``y`` is a float tensor ``(N, 1 + cond_dim)`` whose column 0 holds the
            class index (an integer stored as a float) and columns ``1..cond_dim`` the continuous
            conditions. Class labels alone are ``long (N,)``, conditions alone ``(N, cond_dim)``.
            :meth:`split_conditions` and :meth:`join_conditions` convert between ``y`` and its
            two parts in all four cases.
        kind: ``"points"`` (low-dimensional vectors) or ``"image"``.
        value_range: The range samples are normalized to, e.g. ``(-1.0, 1.0)`` for images.
        modes: For synthetic mixtures, the true mode centres, shape ``(num_modes, *sample_shape)``.
        mode_std: For synthetic mixtures, the standard deviation of each mode.
        name: The dataset's registered name.
        protocol: Everything that defines the data (parameters, sizes, file hashes); part of
            every metric's protocol and of the real-statistics cache key.
        denormalize: How samples map back to the units the data was stored in, as plain data
            (it travels in checkpoints): ``{"scale": [...], "offset": [...]}`` with
            ``stored = x * scale + offset``; one value for all, or one per channel (images) or
            per feature (points). ``None``: the data is used as stored. ``ganforge sample``
            writes ``samples.npz`` in the stored units (:meth:`to_stored_units`).
    """

    sample_shape: tuple[int, ...]
    num_classes: int = 0
    cond_dim: int = 0
    kind: str = "points"
    value_range: tuple[float, float] = (-1.0, 1.0)
    modes: Optional[torch.Tensor] = None
    mode_std: Optional[float] = None
    name: str = ""
    protocol: dict[str, Any] = field(default_factory=dict)
    denormalize: Optional[dict[str, list[float]]] = None

    def __post_init__(self) -> None:
        for key in ("num_classes", "cond_dim"):  # the layout of y (split_conditions) hangs on these two
            v = getattr(self, key)
            if isinstance(v, bool) or not hasattr(v, "__index__") or v.__index__() < 0:
                raise ValueError(f"DataInfo.{key} must be an integer >= 0 (0: none), got {v!r}")
            setattr(self, key, v.__index__())
        if self.denormalize is not None:  # plain data from a plugin or a checkpoint: check it once, here
            d = self.denormalize
            channels = self.sample_shape[0] if self.sample_shape else 1
            if not isinstance(d, Mapping) or set(d) != {"scale", "offset"}:
                raise ValueError(f"DataInfo.denormalize must be {{'scale': [...], 'offset': [...]}}, got {d!r}")
            for key in ("scale", "offset"):
                v = d[key]
                if not (isinstance(v, (list, tuple)) and len(v) in (1, channels)
                        and all(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) for e in v)):
                    raise ValueError(f"DataInfo.denormalize['{key}'] must be a list of 1 or {channels} finite numbers "
                                     f"(one per {'channel' if self.kind == 'image' else 'feature'}), got {v!r}")
            if any(e == 0 for e in d["scale"]):
                raise ValueError(f"DataInfo.denormalize['scale'] has a 0 (not invertible): {d['scale']!r}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0 or self.cond_dim > 0

    @property
    def y_width(self) -> int:
        """Columns of a float ``y``: ``1 + cond_dim`` with classes and conditions, ``cond_dim`` with
        conditions only, ``0`` otherwise (class labels alone are ``long (N,)``)."""
        if self.cond_dim == 0:
            return 0
        return self.cond_dim + (1 if self.num_classes > 0 else 0)

    def _describe_y(self) -> str:
        if self.num_classes > 0 and self.cond_dim > 0:
            return (f"a float tensor (N, {1 + self.cond_dim}): column 0 the class index 0..{self.num_classes - 1}, "
                    f"columns 1..{self.cond_dim} the continuous conditions")
        if self.num_classes > 0:
            return f"an integer tensor (N,) of class indices 0..{self.num_classes - 1}"
        if self.cond_dim > 0:
            return f"a float tensor (N, {self.cond_dim}) of continuous conditions"
        return "None (the dataset is unconditional)"

    def split_conditions(
        self, y: Optional[torch.Tensor], check: bool = True
    ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``y`` as the dataset yields it → ``(labels, conds)``.

        ``labels`` is ``long (N,)`` (``None`` without classes), ``conds`` float ``(N, cond_dim)``
        (``None`` without continuous conditions); the inverse of :meth:`join_conditions`.

        Args:
            y: Class labels ``long (N,)``, conditions ``(N, cond_dim)``, or with both a float
                ``(N, 1 + cond_dim)`` whose column 0 is the class index; ``None`` when unconditional.
            check: Also check the values of the class column (integers in ``0..num_classes-1``);
                this reads the tensor, so networks pass ``False`` to avoid a GPU synchronization
                per step (an embedding raises on an out-of-range index anyway).

        Raises:
            ValueError: ``y`` does not have the layout :attr:`num_classes` / :attr:`cond_dim`
                describe, or (with ``check``) the class column holds a non-integer or
                out-of-range value; the message names the expected layout.
        """
        want = self._describe_y()
        if not self.conditional:
            if y is not None:
                raise ValueError(f"dataset '{self.name}' is unconditional but got y of shape {tuple(y.shape)}; "
                                 "pass y=None.")
            return None, None
        if y is None:
            raise ValueError(f"dataset '{self.name}' is conditional and needs y: {want}; got None.")
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"dataset '{self.name}': y must be a torch.Tensor, {want}; got {type(y).__name__}.")
        if self.cond_dim == 0:  # class labels only
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() != 1:
                raise ValueError(f"dataset '{self.name}': y must be {want}; got dtype {y.dtype}, shape "
                                 f"{tuple(y.shape)} (convert class indices with y.long()).")
            labels = y.long()
            if check and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(f"dataset '{self.name}': class labels must be in 0..{self.num_classes - 1}, got "
                                 f"values from {int(labels.min())} to {int(labels.max())}.")
            return labels, None
        width = self.y_width
        if not y.is_floating_point() or y.dim() not in (1, 2) or (y.dim() == 1 and width != 1) \
                or (y.dim() == 2 and y.shape[1] != width):
            raise ValueError(f"dataset '{self.name}': y must be {want}; got dtype {y.dtype}, shape {tuple(y.shape)}.")
        y = y.reshape(len(y), width)
        if self.num_classes == 0:
            return None, y
        column = y[:, 0]
        if check and column.numel():
            bad = ~(torch.isfinite(column) & (column == column.round()) & (column >= 0) & (column < self.num_classes))
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise ValueError(f"dataset '{self.name}': column 0 of y is the class index and must hold integers "
                                 f"0..{self.num_classes - 1}; row {i} has {column[i].item()!r}. y must be {want}.")
        return column.long(), y[:, 1:]

    def join_conditions(
        self, labels: Optional[torch.Tensor], conds: Optional[torch.Tensor]
    ) -> Optional[torch.Tensor]:
        """``(labels, conds)`` → ``y`` in the dataset's layout; the inverse of :meth:`split_conditions`.

        Args:
            labels: Class indices ``(N,)`` (required exactly when :attr:`num_classes` > 0).
            conds: Continuous conditions ``(N, cond_dim)`` (required exactly when :attr:`cond_dim` > 0).

        Returns:
            ``long (N,)`` labels, float ``(N, cond_dim)`` conditions, float ``(N, 1 + cond_dim)``
            with both (the class index in column 0, in ``conds``' float dtype), or ``None``.

        Raises:
            ValueError: a part is missing or given when the dataset has none, or has the wrong shape.
        """
        name = f"dataset '{self.name}'"
        if (labels is not None) != (self.num_classes > 0):
            raise ValueError(f"{name} has num_classes={self.num_classes}: "
                             + ("give class labels (N,)." if labels is None else "pass labels=None."))
        if (conds is not None) != (self.cond_dim > 0):
            raise ValueError(f"{name} has cond_dim={self.cond_dim}: "
                             + ("give conditions (N, cond_dim)." if conds is None else "pass conds=None."))
        if labels is not None:
            if labels.is_floating_point() and not bool((labels == labels.round()).all()):
                raise ValueError(f"{name}: class labels must be integers, got non-integer values in {labels.dtype}.")
            labels = labels.reshape(-1)
        if conds is not None:
            if conds.dim() == 1 and self.cond_dim == 1:
                conds = conds.reshape(-1, 1)
            if conds.dim() != 2 or conds.shape[1] != self.cond_dim:
                raise ValueError(f"{name}: conditions must have shape (N, {self.cond_dim}), got {tuple(conds.shape)}.")
            if not conds.is_floating_point():
                conds = conds.float()
        if labels is not None and conds is not None:
            if len(labels) != len(conds):
                raise ValueError(f"{name}: {len(labels)} class labels but {len(conds)} rows of conditions; "
                                 "give one of each per sample.")
            return torch.cat([labels.to(conds.dtype).reshape(-1, 1), conds], dim=1)
        if labels is not None:
            return labels.long()
        return conds

    def _affine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, offset)`` of :attr:`denormalize`, shaped to broadcast against a batch ``x``."""
        assert self.denormalize is not None
        parts = []
        for key in ("scale", "offset"):
            v = torch.as_tensor(self.denormalize[key], dtype=torch.float64).reshape(-1)  # checked in __post_init__
            n = v.numel()
            shape = (n,) + (1,) * (len(self.sample_shape) - 1) if n > 1 else ()
            parts.append(v.reshape(shape).to(x.device))
        return parts[0], parts[1]

    def to_stored_units(self, x: torch.Tensor) -> torch.Tensor:
        """Samples (a batch, in training units) in the units the data was stored in (float64)."""
        if self.denormalize is None:
            return x.double()
        scale, offset = self._affine(x)
        return x.double() * scale + offset

    def from_stored_units(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_stored_units`: stored units to training units (float32)."""
        if self.denormalize is None:
            return x.float()
        scale, offset = self._affine(x)
        return ((x.double() - offset) / scale).float()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["modes"] = None if self.modes is None else self.modes.tolist()
        out["sample_shape"] = list(self.sample_shape)
        out["value_range"] = list(self.value_range)
        return out


@runtime_checkable
class GANDataset(Protocol):
    """A map-style dataset of samples with its :class:`DataInfo`.

    ``dataset[i]`` returns a tensor ``x`` (unconditional) or a tuple ``(x, y)`` in the layout
    :class:`DataInfo` describes: a class index (``long`` scalar) with classes alone, a float
    vector of ``cond_dim`` conditions with conditions alone, or with both a float vector of
    ``1 + cond_dim`` whose element 0 is the class index (:meth:`DataInfo.join_conditions`). The engine builds the
    data loader: batch size, sharding over ranks, shuffling and resumable order are its job.
    """

    info: DataInfo

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@runtime_checkable
class Generator(Protocol):
    """``nn.Module`` mapping noise (and conditions) to samples.

    ``forward(z, y=None)`` takes ``z`` of shape ``(N, *latent_shape)`` and returns samples of
    shape ``(N, *info.sample_shape)``. ``y`` is batched as the dataset yields it: ``long (N,)``
    class indices, float ``(N, cond_dim)`` conditions, or with both float ``(N, 1 + cond_dim)``
    with the class index in column 0; :meth:`DataInfo.split_conditions` separates them.

    Optional capability: a generator with a penalty on its own weights (BigGAN's orthogonal
    regularization) also follows :class:`RegularizedGenerator`; the engine adds its
    ``regularization_loss()`` to the loss of every generator phase and logs it as
    ``train/g/regularization``.
    """

    latent_shape: tuple[int, ...]

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor: ...


@runtime_checkable
class RegularizedGenerator(Protocol):
    """A :class:`Generator` with a penalty on its own weights, added to every generator loss."""

    def regularization_loss(self) -> torch.Tensor:
        """A 0-d tensor differentiable in the generator's parameters (already weighted)."""
        ...


@runtime_checkable
class Discriminator(Protocol):
    """``nn.Module``: ``forward(x, y=None)`` returns logits of shape ``(N,)`` or ``(N, 1)``.

    A discriminator with auxiliary outputs (e.g. class logits for AC-GAN) returns a tuple
    ``(logits, aux)``; objectives that do not need ``aux`` use :func:`adversarial_logits`.
    """

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Any: ...


@runtime_checkable
class GroupingDiscriminator(Protocol):
    """Optional capability: a :class:`Discriminator` whose decisions mix samples of the batch in
    groups (PacGAN's packs, minibatch standard deviation).

    ``batch_multiple``: the batch it gets (per process and discriminator step, i.e.
    ``train.batch_size / world size``) must be a multiple of this. The runner checks it at
    start-up and names ``train.batch_size`` when it does not hold.
    """

    batch_multiple: int


DiscriminatorFn = Callable[[torch.Tensor, Optional[torch.Tensor]], Any]


def adversarial_logits(out: Any) -> torch.Tensor:
    """The adversarial logits of a discriminator output, flattened to shape ``(N,)``."""
    logits = out[0] if isinstance(out, (tuple, list)) else out
    return logits.reshape(logits.shape[0])


@dataclass
class LossOutput:
    """A loss to back-propagate and scalars to log (without the ``loss`` itself).

    ``logs`` are the phase's own values, logged as ``train/d/<key>`` or ``train/g/<key>``;
    ``run_logs`` are values about the run rather than the phase's loss (the ``constrained``
    objective's ``constraint/<id>``), logged as ``train/<key>``. Both are read on logging steps only,
    and a value of any shape is logged as its mean (in float32): hand over per-sample values (e.g.
    detached logits) and the reduction runs on logging steps only.
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    run_logs: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective:
    """Base class of GAN objectives.

    Subclasses implement :meth:`discriminator_loss` and :meth:`generator_loss`. Both receive
    ``d``, a callable ``d(x, y) -> output`` (the discriminator, possibly wrapped for
    distributed training: always call ``d``, never a module captured elsewhere). In
    :meth:`generator_loss` D is frozen and ``d`` is the discriminator's own ``nn.Module``, never a
    DDP wrapper, so an objective may also call it functionally with other weights
    (``torch.func.functional_call``; the unrolled GAN does).

    Attributes:
        n_critic: Discriminator steps per generator step this objective asks for; the engine
            uses ``max(train.n_critic, objective.n_critic)``.
        needs_double_backward: ``True`` when the discriminator loss differentiates through a
            gradient (gradient penalties, R1): the engine refuses ``train.compile`` for it (a
            compiled discriminator cannot run the double backward).
        weight_clip: If set, the engine clamps every discriminator parameter to
            ``[-weight_clip, weight_clip]`` after each discriminator step (WGAN).
        reg_every: Lazy regularization (StyleGAN2's ``Dreg`` phase): when ``> 1``, the engine
            adds :meth:`discriminator_regularization` to the discriminator loss of every
            ``reg_every``-th discriminator step (and :meth:`discriminator_loss` leaves the
            regularizer out). ``1``: the regularizer, if any, is part of ``discriminator_loss``.
    """

    n_critic: int = 1
    needs_double_backward: bool = False
    weight_clip: Optional[float] = None
    reg_every: int = 1

    def discriminator_loss(
        self, d: DiscriminatorFn, real: torch.Tensor, fake: torch.Tensor, y: Optional[torch.Tensor]
    ) -> LossOutput:
        """Loss the discriminator minimizes. ``fake`` is detached from the generator."""
        raise NotImplementedError

    def generator_loss(
        self, d: DiscriminatorFn, real: torch.Tensor, fake: torch.Tensor, y: Optional[torch.Tensor]
    ) -> LossOutput:
        """Loss the generator minimizes. ``real`` is given for objectives that pair samples."""
        raise NotImplementedError

    def discriminator_regularization(
        self, d: DiscriminatorFn, real: torch.Tensor, fake: torch.Tensor, y: Optional[torch.Tensor]
    ) -> LossOutput:
        """``Dreg``: the regularizer of a lazy objective, already multiplied by :attr:`reg_every`.

        Called by the engine every ``reg_every`` discriminator steps (only when ``reg_every > 1``);
        its loss is added to that step's :meth:`discriminator_loss` before the one backward.
        """
        raise NotImplementedError(f"{type(self).__name__} sets reg_every > 1 but has no discriminator_regularization")

    def protocol(self) -> dict[str, Any]:
        """Parameters that define this objective: ``summary.json`` records them under
        ``objective.protocol``, next to what the engine read from the attributes above (tensors in it
        are written as lists of numbers)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, (int, float, str, bool, type(None)))}


@runtime_checkable
class CalibratedObjective(Protocol):
    """Optional capability of an :class:`Objective`: parameters measured on the training data.

    At the start of a *fresh* fit (never on a resume) the engine calls :meth:`calibrate` once, on
    every rank with the same data: the whole training set when :attr:`calibration_samples` is
    ``None`` or not smaller than it, else the first ``calibration_samples`` of a permutation seeded
    by the run's seed. It then saves :meth:`state_dict` in every checkpoint
    (``checkpoint["objective"]``), writes it to the run directory (``constraints.json``) and, on
    resume, hands it back with :meth:`load_state_dict` instead of calibrating again. The
    ``constrained`` objective is one (its calibrated constraints are measured so).

    Attributes:
        calibration_samples: Training samples to calibrate on (``None``: all of them).
    """

    calibration_samples: Optional[int]

    def needs_calibration(self) -> bool:
        """Whether :meth:`calibrate` does anything (``False``: the engine reads no data for it)."""
        ...

    def calibrate(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> None:
        """Measure the parameters on real samples ``x`` (CPU, training units) and conditions ``y``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The measured state: plain data (numbers, strings, lists, dicts) and tensors."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; raise ``ValueError`` naming what is missing or malformed."""
        ...


@runtime_checkable
class Constraint(Protocol):
    """A differentiable penalty on generated samples (constrained GANs).

    A constraint factory receives the injected ``info`` (:class:`DataInfo`) plus its typed
    parameters, and is used by the ``constrained`` objective, which adds ``weight · mean(penalty)``
    to the generator's loss: prior knowledge about valid samples, as a penalty on G's samples.
    """

    def penalty(self, fake: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """Per-sample penalty, shape (N,), >= 0, exactly 0 where the sample satisfies the constraint;
        differentiable w.r.t. ``fake``. ``fake`` is in training units (``info.value_range``), ``y`` the
        conditions as the dataset gives them (None when unconditional)."""
        ...


@runtime_checkable
class CalibratedConstraint(Constraint, Protocol):
    """A constraint whose parameters are measured on the training data (e.g. a size-energy relation).

    :meth:`calibrate` is called once at the start of a fresh fit with real samples on the CPU
    (training units); the state is saved in every checkpoint and restored on resume, so
    :meth:`penalty` should move its calibrated tensors to ``fake``'s device itself.
    """

    def calibrate(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...        # plain data (numbers, lists, str) and/or tensors

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class GANMetric:
    """Base class of metrics evaluated on generated samples (and real data).

    Write a metric as a :class:`torchmetrics.Metric` and this class; the engine does the rest, the
    same in one process and under DDP, without any ``torch.distributed`` code in the metric:

    * **Generated samples** are the metric's torchmetrics state: declare it with
      ``self.add_state(name, default, dist_reduce_fx="sum" | "cat" | ...)`` and fill it in
      ``update(x, y)``. Per evaluation the engine calls ``reset()``, ``update`` with each rank's share
      of the samples (``y``: the conditions they were generated with, or ``None``), then
      ``compute()`` on every rank, which reduces the states over ranks before your code sees them.
    * **Real statistics** are received, not gathered: when :attr:`needs_real`, declare in
      :attr:`real_reduce` what you need from real data and how it combines (``"cat"``: rows of all
      ranks; ``"sum"``; ``"moments"``: float64 mean and unbiased covariance of ``(N, D)`` rows),
      return those statistics for one real batch from :meth:`real_batch`, and name in
      :meth:`real_key` what besides the data they depend on (e.g. the extractor's weights hash).
      The engine's real pass (:func:`ganforge.evaluation.cache.real_statistics`) runs every rank's
      shard once per run, combines the ranks, caches the result on disk under a key of the data, the
      ``real_key`` and ``num_real``, and calls :meth:`set_real` on every rank with identical values.
      Two metrics with the same key share one pass (KID and PRDC on the same extractor).

    Samples arrive in the dataset's value range (images: ``(N, C, H, W)`` in ``[-1, 1]``).

    Attributes:
        num_samples: Generated samples to evaluate, over all ranks.
        needs_real: Whether the metric uses real data (then the three real-data methods are required).
        num_real: Real samples to use over all ranks (``None``: the whole dataset).
        real_reduce: ``{statistic: "cat" | "sum" | "moments"}``, the keys :meth:`real_batch` returns.
        units: Unit of each value ``compute()`` returns, shown in the final table (``fraction``,
            ``nats``, ``modes``, ...); values not named have no unit.
        context: Values that describe the set-up rather than the result (e.g. ``num_modes``): kept
            in ``summary.json``, left out of the final table.
        real_count: Real samples behind the statistics last received (set by :meth:`prepare_real`).
        cache_hit: Whether they came from the cache (set by :meth:`prepare_real`).
    """

    num_samples: int = 2500
    needs_real: bool = False
    num_real: Optional[int] = None
    real_reduce: ClassVar[dict[str, str]] = {}
    units: ClassVar[dict[str, str]] = {}
    context: ClassVar[tuple[str, ...]] = ()
    real_count: Optional[int] = None
    cache_hit: Optional[bool] = None

    def real_key(self) -> dict[str, Any]:
        """What the real statistics depend on besides the data (extractor, its weights hash,
        preprocessing): part of the cache key. Required when :attr:`needs_real`."""
        raise NotImplementedError(f"{type(self).__name__} needs real data but does not define real_key()")

    def real_batch(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The statistics of one batch of real samples, one entry per key of :attr:`real_reduce`
        (``"cat"`` and ``"moments"`` entries have one row per sample; an empty batch gives empty rows)."""
        raise NotImplementedError(f"{type(self).__name__} needs real data but does not define real_batch()")

    def set_real(self, stats: dict[str, Any]) -> None:
        """Receive the combined real statistics (on the CPU, identical on every rank): a ``"moments"``
        entry is ``{"n": int, "mean": (D,), "cov": (D, D)}``, the others tensors. Resets the generated state."""
        raise NotImplementedError(f"{type(self).__name__} needs real data but does not define set_real()")

    def prepare_real(self, batches: Callable[[], Any], data_protocol: dict[str, Any]) -> None:
        """Engine-provided, not to be overridden: the collective, cached real pass
        (:func:`ganforge.evaluation.cache.real_statistics`), then :meth:`set_real`. Collective under
        DDP: call it on every rank. ``batches()`` iterates this rank's shard of real ``(x, y)`` batches."""
        from ganforge.evaluation.cache import real_statistics

        stats, self.cache_hit = real_statistics(self, batches, data_protocol)
        self.set_real(stats)

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """Named values, e.g. ``{"modes": 8.0, "high_quality": 0.97}`` (collective)."""
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        """Everything needed to reproduce the number: extractor and its weights hash, sample
        counts, preprocessing, dtype, thresholds."""
        raise NotImplementedError


#: ``generate(n) -> (x, y)``: ``n`` fresh samples of the generator being evaluated, with their conditions.
GenerateFn = Callable[[int], tuple[torch.Tensor, Optional[torch.Tensor]]]


@runtime_checkable
class GeneratorMetric(Protocol):
    """Optional capability of a :class:`GANMetric`: it measures the generator itself, not only the
    samples ``update()`` receives (e.g. how fast it generates).

    In every evaluation, before the ``update()`` calls of a rank's share, the engine's ``evaluate()``
    calls ``observe_generator(generate)`` on that rank. ``generate(n)`` returns ``(x, y)``: ``n`` new
    samples in one batch from the generator being evaluated (EMA or raw, in eval mode, under
    ``torch.no_grad``, on the module's device) and the conditions they were generated with (drawn by
    the evaluation's rule; ``None`` when unconditional). Record what you measure in torchmetrics state
    so ``compute()`` reduces it over ranks like any other state.
    """

    def observe_generator(self, generate: GenerateFn) -> None: ...


@runtime_checkable
class PictureMetric(Protocol):
    """Optional capability of a :class:`GANMetric`: pictures of what it measured.

    During training, after each evaluation, the engine calls ``draw_pictures(directory, step)`` on
    rank 0 (after ``compute()``, at generator step ``step``). Write PNG files under ``directory``
    (``<run>/samples/<metric id>/``, created for you) and return ``{name: path}``; the engine hands them
    to every :class:`PictureLogger` under the keys ``"<metric id>/<name>"``. Return ``{}`` to draw
    nothing this time.
    """

    def draw_pictures(self, directory: Path, step: int) -> dict[str, Path]: ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """``nn.Module`` mapping a batch of samples to feature vectors ``(N, feature_dim)``.

    Attributes:
        name: Registered name, reported in every metric's protocol.
        feature_dim: Length of the feature vectors.
        weights_sha256: SHA-256 of the weights file (``""`` for parameter-free extractors).
    """

    name: str
    feature_dim: int
    weights_sha256: str

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


# -- loggers ----------------------------------------------------------------------------------------------
#
# A logger factory receives the injected parameter ``run`` (a :class:`LoggerRun`) plus its own config
# parameters, and returns a ``lightning.pytorch.loggers.Logger``. Rows arrive through ``log_metrics(row,
# step)`` with ``step`` = generator steps, on rank 0. Everything else a logger may do is one of the optional
# capabilities below, each a protocol the engine checks with ``isinstance``.


@dataclass(frozen=True)
class LoggerRun:
    """What the engine tells a logger factory about the run it logs.

    Attributes:
        run_dir: The run directory (``runs/<name>/version_<n>``); a logger writes its files under it.
        name: The run's name (``name:`` in the config).
        config: The resolved config, as written to ``config.yaml``.
        rank: This process's global rank (loggers write on rank 0 only).
        resume_state: What this logger's :meth:`StatefulLogger.state_dict` returned into the checkpoint the
            run resumes from; ``None`` for a fresh run (or a checkpoint written without this logger).
        launch: How this process was started (``ganforge.Launch``: launcher kind, job id, a logger
            run id that survives a requeue), or ``None`` when unknown.
        step: The current generator step (counts continue after a resume).
    """

    run_dir: Any
    name: str
    config: Mapping[str, Any]
    rank: int = 0
    resume_state: Optional[Mapping[str, Any]] = None
    launch: Any = None
    step: Callable[[], int] = lambda: 0

    @property
    def resuming(self) -> bool:
        return self.resume_state is not None


@runtime_checkable
class SummaryLogger(Protocol):
    """Receives the run's final summary: the dict written to ``summary.json`` (also when interrupted).

    Called once on rank 0, after ``summary.json`` is written and before the logger is finalized.
    """

    def log_summary(self, summary: dict[str, Any]) -> None: ...


@runtime_checkable
class PictureLogger(Protocol):
    """Receives the sample pictures as the engine writes them (rank 0, at the generator step ``step``).

    ``pictures`` maps a key to a PNG in the run directory: ``"samples/step"`` is this snapshot and
    ``"samples/progress"`` the "Step 0 … Step N" strip, rewritten at every snapshot;
    ``"<metric id>/<name>"`` a picture a :class:`PictureMetric` drew after an evaluation. A resumed run
    sends only the pictures it writes itself.
    """

    def log_pictures(self, step: int, pictures: dict[str, Path]) -> None: ...


@runtime_checkable
class CallbackLogger(Protocol):
    """Needs callbacks in the trainer (e.g. to log sample pictures); they run after the engine's own
    evaluation and picture callbacks of the same step, before the checkpoint."""

    def extra_callbacks(self) -> list[Any]: ...


@runtime_checkable
class HistoryLogger(Protocol):
    """Keeps a history on disk that a resume must cut: rows logged after the checkpoint's generator step
    ``step`` are logged again by the resumed run, so the engine calls ``truncate_after(step)`` first."""

    def truncate_after(self, step: int) -> None: ...


@runtime_checkable
class StatefulLogger(Protocol):
    """Has state that must survive a resume (e.g. the W&B run id). ``state_dict()`` (plain data: strings,
    numbers, lists, dicts) goes into every checkpoint; on resume the factory receives it back as
    ``run.resume_state``, before the logger exists, so it can reopen the same run."""

    def state_dict(self) -> dict[str, Any]: ...


class NotApplicable(ValueError):
    """Raised by a metric's factory when the data lacks what it measures (mode-coverage without true modes).

    Training drops such a configured metric with a one-line note instead of failing, so a config's
    default metrics follow the data it is pointed at (``dataset.name=tensor-file`` on ring8);
    ``ganforge evaluate --metrics NAME`` asks for it explicitly and still gets the error.
    """


class ComponentError(TypeError):
    """A plugin's factory returned something that does not follow its kind's protocol."""


def check_component(kind: str, name: str, obj: Any, provider: str) -> Any:
    """Check ``obj`` against the protocol of ``kind``; raise :class:`ComponentError` naming the plugin."""
    problems: list[str] = []
    if kind in ("generator", "discriminator", "feature_extractor") and not isinstance(obj, nn.Module):
        problems.append(f"expected a torch.nn.Module, got {type(obj).__name__}")
    if kind == "generator" and not problems:
        shape = getattr(obj, "latent_shape", None)
        if not (isinstance(shape, Sequence) and all(isinstance(s, int) for s in shape)):
            problems.append("generator must expose `latent_shape` (a tuple of ints)")
    if kind == "objective" and not isinstance(obj, Objective):
        problems.append(f"expected a ganforge.contract.components.Objective, got {type(obj).__name__}")
    if kind == "dataset":
        if isinstance(getattr(obj, "info", None), DataInfo):
            if not hasattr(obj, "__getitem__") or not hasattr(obj, "__len__"):
                problems.append("dataset must be map-style (define __len__ and __getitem__)")
        else:
            problems.append("dataset must have an `info` attribute of type ganforge.contract.components.DataInfo")
    if kind == "constraint" and not callable(getattr(obj, "penalty", None)):
        problems.append("constraint must define penalty(fake, y) -> per-sample tensor (N,)")
    if kind == "metric":
        for attr in ("reset", "update", "compute", "protocol"):
            if not callable(getattr(obj, attr, None)):
                problems.append(f"metric must define {attr}()")
    if kind == "feature_extractor" and not problems:
        for attr in ("name", "feature_dim", "weights_sha256"):
            if not hasattr(obj, attr):
                problems.append(f"feature extractor must expose `{attr}`")
    if kind == "callback":
        import lightning

        if not isinstance(obj, lightning.Callback):
            problems.append(f"expected a lightning.Callback, got {type(obj).__name__}")
    if kind == "logger":
        from lightning.pytorch.loggers import Logger

        if not isinstance(obj, Logger):
            problems.append(f"expected a lightning.pytorch.loggers.Logger, got {type(obj).__name__}")
    if problems:
        raise ComponentError(f"{kind} '{name}' (from {provider}) is invalid: " + "; ".join(problems))
    return obj


def as_pair(batch: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Split a batch into ``(x, y)``; ``y`` is ``None`` for unconditional data."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        return batch["x"], batch.get("y")
    return batch, None
