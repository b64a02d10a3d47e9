"""Evaluation, in one place: which noise, which conditions, which real data, and the protocol that
says so. Training (the :class:`ganforge.run.callbacks.Evaluation` callback), ``ganforge evaluate`` and
the tests all call :func:`evaluate`, so a checkpoint evaluated later gives the number training
wrote to ``summary.json`` (issue 12).

Sampling rule: rank ``r`` of ``W`` generates its share of ``num_samples`` (:func:`rank_share`) from
noise seeded with ``noise_seed(seed, r, -7, 0)`` (:func:`sampling_seed`), with the conditions of
:func:`generation_conditions`. ``ganforge evaluate`` replays all ``W`` ranks in one process.

Optional metric capabilities (``ganforge/contract/components.py``): a
:class:`~ganforge.contract.components.GeneratorMetric` is also handed ``generate(n)`` for each rank's
share (:func:`generator_fn`); a :class:`~ganforge.contract.components.PictureMetric` draws its pictures
after the evaluation (:func:`metric_pictures`, rank 0, during training).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

from ganforge.contract.components import DataInfo, GenerateFn, GeneratorMetric, as_pair
from ganforge.io import short_repr
from ganforge.loop.module import noise_seed

EVAL_ITERATION = -7  # noise_seed's iteration slot for evaluation: never a training iteration
UPDATE_BATCH = 500  # samples per metric.update call (memory only; the value does not depend on it)


def sampling_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s evaluation noise (and of its drawn conditions)."""
    return noise_seed(seed, rank, EVAL_ITERATION, 0)


def rank_share(total: int, rank: int, world: int) -> int:
    """Samples rank ``rank`` of ``world`` generates; every rank at least one (collective metric
    states need a batch on every rank)."""
    return max(1, total // world + (1 if rank < total % world else 0))


def conditions_rule(info: DataInfo) -> str:
    """The rule :func:`generation_conditions` follows, as protocol text."""
    if info.num_classes > 0 and info.cond_dim > 0:
        return ("whole rows of y (class and conditions) of training samples drawn uniformly with replacement, "
                "indices from torch.randint seeded with the rank's sampling seed")
    if info.num_classes > 0:
        return f"balanced classes: sample i of each rank gets class i mod {info.num_classes}"
    if info.cond_dim > 0:
        return ("conditions of training samples drawn uniformly with replacement, indices from torch.randint "
                "seeded with the rank's sampling seed")
    return "none (unconditional model)"


def generation_conditions(info: DataInfo, dataset: Any, n: int, seed: int,
                          device: Any = "cpu") -> Optional[torch.Tensor]:
    """Conditions to generate ``n`` samples with: balanced classes, or continuous conditions drawn
    from the data (needs ``dataset``) with ``seed``; ``None`` for an unconditional model.

    With classes and continuous conditions together, whole rows of ``y`` are drawn from the data,
    so each class keeps its own condition distribution (and the classes their frequencies)."""
    if info.num_classes > 0 and info.cond_dim == 0:
        return torch.arange(n, device=device) % info.num_classes
    if info.cond_dim > 0:
        from ganforge.loop.data import fetch_batch

        if dataset is None:
            raise ValueError("this model is conditioned on continuous values, drawn from the training data; "
                             "no dataset was given to draw them from")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(dataset), (n,), generator=g).tolist()
        return as_pair(fetch_batch(dataset, idx))[1].to(device)
    return None


def reference_selection(dataset_size: int, num_real: Optional[int], data_seed: int) -> dict[str, Any]:
    """Which real samples a metric compares with (``GANDataModule.real_batches``): part of the
    real-statistics cache key and of the protocol."""
    if num_real is None or num_real >= dataset_size:
        return {"samples": "all"}
    return {"samples": f"the first {num_real} of a permutation of the dataset", "permutation_seed": data_seed + 1}


def data_protocol(info: DataInfo, dataset_size: int, num_real: Optional[int], data_seed: int) -> dict[str, Any]:
    """What defines a metric's real data: the dataset's protocol and the selection from it."""
    return {"dataset": info.name, **info.protocol,
            "reference": reference_selection(dataset_size, num_real, data_seed)}


def reference_protocol(metric: Any, info: DataInfo, dataset_size: int, data_seed: int) -> dict[str, Any]:
    """The ``reference`` entry of a metric's protocol: the data split and the real sample count."""
    if not getattr(metric, "needs_real", False):
        return {"real_data": False}
    num_real = getattr(metric, "num_real", None)
    count = getattr(metric, "real_count", None)
    if count is None:
        count = dataset_size if num_real is None else min(num_real, dataset_size)
    return {
        "real_data": True,
        "dataset": info.name,
        "split": info.protocol.get("split", "the whole dataset (it has no splits)"),
        "dataset_size": dataset_size,
        "real_count": int(count),
        **reference_selection(dataset_size, num_real, data_seed),
    }


def sampling_protocol(metric: Any, info: DataInfo, seed: int, world: int, generator: str,
                      device: str = "cpu") -> dict[str, Any]:
    """The ``sampling`` entry of a metric's protocol: everything the generated samples depend on
    besides the checkpoint (the noise generator is the device's, so the device type is recorded)."""
    total = int(getattr(metric, "num_samples", 1000))
    shares = [rank_share(total, r, world) for r in range(world)]
    return {
        "seed": seed,
        "noise": f"z ~ N(0, I) from a torch.Generator on the device, seeded with noise_seed(seed, rank, "
                 f"{EVAL_ITERATION}, 0)",
        "device": device,
        "world_size": world,
        "num_samples": sum(shares),
        "per_rank": shares,
        "conditions": conditions_rule(info),
        "generator": generator,
    }


def full_protocol(metric: Any, info: DataInfo, *, seed: int, world: int, generator: str, dataset_size: int,
                  data_seed: int, device: str = "cpu") -> dict[str, Any]:
    """``metric.protocol()`` with the engine's ``sampling`` and ``reference`` entries."""
    return {**metric.protocol(), "sampling": sampling_protocol(metric, info, seed, world, generator, device),
            "reference": reference_protocol(metric, info, dataset_size, data_seed)}


def prepare_real(metrics: Sequence[tuple[str, Any]], info: DataInfo, datamodule: Any, device: Any) -> None:
    """Move the metrics to ``device`` and give those that need it their real statistics: the engine's
    collective, cached real pass (:func:`ganforge.evaluation.cache.real_statistics`), then ``set_real``."""
    n = len(datamodule.dataset)
    for _, metric in metrics:
        if hasattr(metric, "to"):
            metric.to(device)
        if getattr(metric, "needs_real", False):
            receive_real(metric, info, datamodule.real_batches(getattr(metric, "num_real", None)),
                         data_protocol(info, n, getattr(metric, "num_real", None), datamodule.seed), device)


def receive_real(metric: Any, info: DataInfo, batches: Any, protocol: dict[str, Any],
                 device: Any = None) -> None:
    """One metric's real statistics from the engine's real pass, handed to its ``set_real``."""
    from ganforge.evaluation.cache import real_statistics

    stats, metric.cache_hit = real_statistics(metric, batches, protocol, sample_shape=info.sample_shape, device=device)
    metric.set_real(stats)


def generator_used(module: Any, use_ema: bool) -> str:
    """Which generator evaluation samples: ``"ema"`` or ``"raw"`` (summary.json's ``generator_used``)."""
    return "ema" if use_ema and module.generator_ema is not None else "raw"


def generator_fn(module: Any, dataset: Any, seed: int, use_ema: bool) -> GenerateFn:
    """``generate(n) -> (x, y)`` for a :class:`~ganforge.contract.components.GeneratorMetric`: ``n`` samples
    in one batch from the generator evaluation uses, noise seeded with ``seed`` (the rank's sampling seed)
    and conditions drawn by :func:`generation_conditions` with it, so every call gives the same samples."""

    @torch.no_grad()
    def generate(n: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"generate(n): n={n!r}; expected a positive integer")
        y = generation_conditions(module.info, dataset, n, seed, module.device)
        return module.sample(n, y=y, seed=seed, ema=use_ema, batch_size=n), y

    return generate


@torch.no_grad()
def evaluate(module: Any, metrics: Sequence[tuple[str, Any]], dataset: Any, seed: int, *, use_ema: bool = True,
             world: int = 1, ranks: Optional[Iterable[int]] = None, sources: Optional[Sequence[str]] = None,
             data_seed: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """Evaluate prepared ``metrics`` (see :func:`prepare_real`) on ``module``'s generator.

    Args:
        module: A :class:`ganforge.loop.module.GANModule`.
        metrics: ``(id, metric)`` pairs (the id of its ``metrics.list`` entry, default its name).
        dataset: The training dataset (continuous conditions are drawn from it; its size is recorded).
        seed: The run's seed (``config.yaml``'s ``seed``); the noise follows from it.
        use_ema: Evaluate the EMA generator when there is one.
        world: Number of ranks the samples are split over.
        ranks: The ranks this process generates: ``[global_rank]`` under DDP (then ``compute()`` is
            collective); ``None``: all of ``range(world)`` in this process, the same samples.
        sources: Where each metric comes from, for errors (default: its name).
        data_seed: The data-order seed (selects the real subset; default ``seed``).

    Returns:
        ``{id: {"values": {key: float}, "protocol": {...}, "generator_used": "ema" | "raw"}}``; a bad ``compute()`` result raises
        a ComponentError naming the source.
    """
    ranks = list(range(world)) if ranks is None else list(ranks)
    generator = generator_used(module, use_ema)
    out: dict[str, dict[str, Any]] = {}
    for entry, (name, metric) in enumerate(metrics):
        metric.reset()
        total = int(getattr(metric, "num_samples", 1000))
        for rank in ranks:
            n = rank_share(total, rank, world)
            s = sampling_seed(seed, rank)
            if isinstance(metric, GeneratorMetric):
                metric.observe_generator(generator_fn(module, dataset, s, use_ema))
            y = generation_conditions(module.info, dataset, n, s, module.device)
            x = module.sample(n, y=y, seed=s, ema=use_ema)
            for i in range(0, n, UPDATE_BATCH):
                metric.update(x[i : i + UPDATE_BATCH], None if y is None else y[i : i + UPDATE_BATCH])
        where = sources[entry] if sources else f"metric '{name}'"
        out[name] = {
            "values": metric_values(metric.compute(), where),
            "protocol": full_protocol(metric, module.info, seed=seed, world=world, generator=generator,
                                      dataset_size=len(dataset), data_seed=seed if data_seed is None else data_seed,
                                      device=module.device.type),
            "generator_used": generator,
        }
    return out


def metric_pictures(metrics: Sequence[tuple[str, Any]], run_dir: Any, step: int) -> dict[str, Any]:
    """The pictures of every :class:`~ganforge.contract.components.PictureMetric` in ``metrics`` after an
    evaluation at generator step ``step``: each draws into ``<run_dir>/samples/<metric id>/``; the result
    maps ``"<metric id>/<name>"`` to the PNG's path (what :class:`~ganforge.contract.components.PictureLogger`
    receives). A metric that returns something else than ``{name: existing file}`` is a ComponentError."""
    from pathlib import Path

    from ganforge.contract.components import ComponentError, PictureMetric

    out: dict[str, Any] = {}
    for name, metric in metrics:
        if not isinstance(metric, PictureMetric):
            continue
        directory = Path(run_dir) / "samples" / name
        directory.mkdir(parents=True, exist_ok=True)
        drawn = metric.draw_pictures(directory, step)
        problem = "" if isinstance(drawn, Mapping) else f"{type(drawn).__name__} {short_repr(drawn)}"
        for k, v in (drawn.items() if not problem else ()):
            if not isinstance(k, str) or not isinstance(v, (str, Path)) or not Path(v).is_file():
                shown = f"'{v}'" if isinstance(v, (str, Path)) else short_repr(v)  # a path in full: it is the clue
                problem = f"{short_repr(k)} → {shown}, which is not a file"
                break
        if problem:
            raise ComponentError(f"metric '{name}': draw_pictures() returned {problem}; expected a dict of picture "
                                 "name → path of a PNG file it wrote")
        out.update({f"{name}/{k}": Path(v) for k, v in drawn.items()})
    return out


def floor_counts(dataset_size: int, num_real: int, num_generated: int) -> tuple[int, int, bool]:
    """Sizes of two disjoint real sets for the real-vs-real floor: ``(reference, compared, matched)``.
    At the model's counts when the dataset holds both; else the dataset split in the same proportion."""
    if num_real + num_generated <= dataset_size:
        return num_real, num_generated, True
    a = int(round(dataset_size * num_real / (num_real + num_generated)))
    return a, dataset_size - a, False


@torch.no_grad()
def real_floor(metric: Any, info: DataInfo, datamodule: Any, num_real: int, num_generated: int,
               where: str) -> dict[str, Any]:
    """The real-vs-real floor of a fresh ``metric`` (built like the model's): the value it gives two
    disjoint sets of real samples, the first ``num_real`` of the reference permutation (the model's
    own reference when the counts match) against the next ``num_generated``. What a perfect generator
    would score at these counts."""
    n = len(datamodule.dataset)
    a, b, matched = floor_counts(n, num_real, num_generated)
    if a < 2 or b < 2:
        return {"available": False,
                "why": f"the dataset has {n} samples; two disjoint real sets of at least 2 are needed"}
    receive_real(metric, info, datamodule.real_batches(a), data_protocol(info, n, a, datamodule.seed),
                 getattr(metric, "device", None))
    metric.reset()
    for batch in datamodule.real_batches(b, start=a)():
        x, y = as_pair(batch)
        dev = getattr(metric, "device", "cpu")
        metric.update(x.to(dev), None if y is None else y.to(dev))
    return {
        "available": True,
        "values": metric_values(metric.compute(), f"{where} (real-vs-real floor)"),
        "reference_count": a,
        "compared_count": b,
        "matched": matched,
        "selection": f"two disjoint sets of real samples: the first {a} and the next {b} of the reference "
                     f"permutation (seed {datamodule.seed + 1})",
    }


def metric_values(result: Any, where: str) -> dict[str, float]:
    """A metric's ``compute()`` result as ``{name: float}``, or a ComponentError saying what is wrong
    with it, prefixed by ``where`` (the metric's config entry and plugin)."""
    problem = ""
    if not isinstance(result, Mapping):
        problem = f"returned {type(result).__name__} {short_repr(result)}"
    else:
        for k, v in result.items():
            if not isinstance(k, str):
                problem = f"returned key {k!r} ({type(k).__name__}), not a string name"
            elif isinstance(v, torch.Tensor) and v.numel() != 1 or isinstance(v, np.ndarray) and v.size != 1:
                problem = f"returned '{k}' with shape {tuple(v.shape)}, not a scalar"
            elif isinstance(v, bool) or not isinstance(v, (int, float, np.number, torch.Tensor, np.ndarray)):
                problem = f"returned '{k}' = {short_repr(v)} ({type(v).__name__}), not a number"
            if problem:
                break
    if not problem:
        return {k: float(v) for k, v in result.items()}
    from ganforge.contract.components import ComponentError

    raise ComponentError(f"{where}: compute() {problem}; expected a dict of name → number.")

