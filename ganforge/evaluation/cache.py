"""The real-data pass of evaluation: collective, cached, done by the engine for every metric.

A metric (:class:`ganforge.contract.components.GANMetric`) says what it needs from real data:
``real_batch(x, y)`` turns a batch into named per-row statistics, ``real_reduce`` says how each is
combined over batches and ranks, ``real_key()`` what besides the data they depend on. The engine
(:func:`real_statistics`) runs this rank's shard, combines the ranks, caches the result on disk and
hands it to ``metric.set_real``: identical on every rank, and no ``torch.distributed`` code in the metric.

Reductions (``real_reduce`` values):

``"cat"``      rows of every rank concatenated in rank order (e.g. all real features, for KID/PRDC).
``"sum"``      summed over rows and ranks (counts, histograms).
``"moments"``  ``(N, D)`` rows → ``{"n", "mean", "cov"}`` in float64, the unbiased (N−1) covariance,
               combined exactly over batches and ranks (Chan, Golub & LeVeque 1979: no
               ``Σxxᵀ − nμμᵀ`` cancellation). What FID needs.

Collective agreement (:func:`cached_real`): every rank looks the entry up, the ranks agree with an
``all_reduce(MIN)`` whether *all* of them found it; if so every rank loads it, otherwise every rank
runs its shard and the result is reduced collectively, and local rank 0 of each node writes the
entry atomically. Agreeing first means a rank never waits in a collective another rank skipped
because it found a file, and nodes without a shared file system stay correct.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor

from ganforge.contract.components import ComponentError, as_pair
from ganforge.evaluation.distributed import all_gather_cat, all_reduce_sum, all_true, is_cache_writer, rank_world
from ganforge.io import cached_torch

__all__ = ["CACHE_FORMAT", "REDUCTIONS", "cached_real", "real_statistics"]

#: Bumped when what a cache entry holds changes, so old entries are never misread.
#: 3: ``{"stats": ..., "count": real samples over all ranks}``.
CACHE_FORMAT = 3

REDUCTIONS = ("cat", "sum", "moments")


class _CacheMiss(Exception):
    """Raised inside ``cached_torch`` to probe the cache without computing."""


def cached_real(key: dict[str, Any], compute: Callable[[], Any]) -> tuple[Any, bool]:
    """Real statistics from the cache, or computed collectively and cached. Returns ``(value, hit)``.

    Collective when ``torch.distributed`` is initialized: call it on every rank with the same key.
    ``compute`` must itself be collective and return the same value on every rank. A corrupt or
    mismatching entry counts as a miss (``cached_torch`` never trusts it) and is rewritten.
    """

    def miss() -> Any:
        raise _CacheMiss

    try:
        value, _, _ = cached_torch(key, miss)
        found = True
    except _CacheMiss:
        value, found = None, False
    if all_true(found):
        return value, True
    value = compute()
    if is_cache_writer():
        # cached_torch re-checks the file and writes atomically (temporary file + os.replace), so
        # writers on a shared file system racing each other leave one complete, identical entry.
        cached_torch(key, lambda: value)
    return value, False


def _name(metric: Any) -> str:
    return str(getattr(metric, "metric_name", type(metric).__name__))


def _checked_reductions(metric: Any) -> dict[str, str]:
    spec = dict(getattr(metric, "real_reduce", {}) or {})
    bad = {k: v for k, v in spec.items() if v not in REDUCTIONS}
    if not spec or bad:
        raise ComponentError(
            f"metric '{_name(metric)}' ({type(metric).__name__}) needs real data but its real_reduce is "
            f"{spec!r}; declare a dict of statistic name → one of {', '.join(REDUCTIONS)}"
        )
    return spec


def _moments(rows: Iterable[Tensor]) -> Optional[tuple[Tensor, Tensor, Tensor]]:
    """``(n, mean, M2)`` of row batches in float64 (parallel update), ``None`` for no rows."""
    n = mean = m2 = None
    for f in rows:
        if f.shape[0] == 0:
            continue
        f = f.double().reshape(f.shape[0], -1)
        nb = torch.tensor(float(f.shape[0]), dtype=torch.float64, device=f.device)
        mb = f.mean(0)
        c = f - mb
        m2b = c.T @ c
        if n is None:
            n, mean, m2 = nb, mb, m2b
            continue
        tot = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + torch.outer(delta, delta) * (n * nb / tot)
        n = tot
    return None if n is None else (n, mean, m2)


def _reduce_moments(parts: Sequence[Tensor], empty: Tensor) -> dict[str, Any]:
    """Exact combination over ranks: the global mean first, then each rank's scatter about it."""
    local = _moments(parts)
    if local is None:  # an empty shard still joins the reductions, with zeros
        d = empty.reshape(0, -1).shape[1]
        z = torch.zeros((), dtype=torch.float64, device=empty.device)
        local = (z, torch.zeros(d, dtype=torch.float64, device=empty.device),
                 torch.zeros(d, d, dtype=torch.float64, device=empty.device))
    n, mean, m2 = local
    n_tot = all_reduce_sum(n)
    mu = all_reduce_sum(mean * n) / n_tot.clamp_min(1)
    dm = mean - mu
    m2_tot = all_reduce_sum(m2 + torch.outer(dm, dm) * n)
    count = int(n_tot)
    cov = m2_tot / (n_tot - 1) if count >= 2 else torch.full_like(m2_tot, float("nan"))
    return {"n": count, "mean": mu.cpu(), "cov": cov.cpu()}


def _run_shard(metric: Any, batches: Callable[[], Iterable[Any]], spec: dict[str, str], empty_x: Optional[Tensor],
               device: Any) -> dict[str, Any]:
    """This rank's shard through ``real_batch``, reduced over ranks: ``{"stats": ..., "count": n}``."""
    _, world = rank_world()
    num_real = getattr(metric, "num_real", None)
    cap = None if num_real is None else math.ceil(num_real / world)  # a no-op on the engine's own shards
    parts: dict[str, list[Tensor]] = {k: [] for k in spec}
    seen = 0
    first: Optional[dict[str, Tensor]] = None

    def take(x: Tensor, y: Optional[Tensor]) -> dict[str, Tensor]:
        out = metric.real_batch(x.to(device), None if y is None else y.to(device))
        if not isinstance(out, dict) or set(out) != set(spec):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise ComponentError(f"metric '{_name(metric)}': real_batch() returned {got}; expected a dict with "
                                 f"the keys of its real_reduce, {sorted(spec)}")
        return out

    for batch in batches():
        x, y = as_pair(batch)
        if cap is not None:
            x, y = x[: cap - seen], None if y is None else y[: cap - seen]
        if x.shape[0] == 0:
            break
        seen += x.shape[0]
        out = take(x, y)
        first = first or out
        for k, v in out.items():
            parts[k].append(v)
        if cap is not None and seen >= cap:
            break
    if first is None:  # this rank's shard is empty: the shapes still have to join the collectives
        if empty_x is None:
            raise ComponentError(f"metric '{_name(metric)}': no real samples on rank {rank_world()[0]} and no sample "
                                 "shape to build an empty batch from; give the metric a DataInfo (info=...)")
        first = take(empty_x, None)
        parts = {k: [v] for k, v in first.items()}
    result: dict[str, Any] = {}
    for k, how in spec.items():
        if how == "moments":
            result[k] = _reduce_moments(parts[k], first[k])
        elif how == "cat":
            result[k] = all_gather_cat(torch.cat(parts[k], 0)).cpu()
        else:
            result[k] = all_reduce_sum(torch.stack([p.sum(0) for p in parts[k]]).sum(0)).cpu()
    count = int(all_reduce_sum(torch.tensor(seen, dtype=torch.int64, device=device)).item())
    return {"stats": result, "count": count}


def real_statistics(metric: Any, batches: Callable[[], Iterable[Any]], data_protocol: dict[str, Any],
                    sample_shape: Optional[Sequence[int]] = None, device: Any = None) -> tuple[dict[str, Any], bool]:
    """The real statistics ``metric`` declares (``real_reduce``), combined over ranks and cached.

    Collective under DDP: call it on every rank. Returns ``(statistics, cache_hit)``; the statistics
    are on the CPU and identical on every rank. Sets ``metric.real_count`` to the number of real
    samples behind them (all ranks together), which the protocol's ``reference.real_count`` reports.

    Args:
        metric: A :class:`~ganforge.contract.components.GANMetric` with ``needs_real``.
        batches: ``batches()`` iterates this rank's shard of real ``(x, y)`` batches.
        data_protocol: What defines the real data (dataset, its protocol, the selection): part of the key.
        sample_shape: Shape of one sample, for an empty shard (default: ``metric.info.sample_shape``).
        device: Where ``real_batch`` runs (default: ``metric.device`` when it has one, else the CPU).
    """
    spec = _checked_reductions(metric)
    key = {"format": CACHE_FORMAT, "metric": metric.real_key(), "data": data_protocol,
           "num_real": getattr(metric, "num_real", None), "reduce": spec}
    if device is None:
        device = getattr(metric, "device", "cpu")
    if sample_shape is None:
        info = getattr(metric, "info", None)
        sample_shape = getattr(info, "sample_shape", None)
    empty_x = None if sample_shape is None else torch.zeros((0, *sample_shape))
    value, hit = cached_real(key, lambda: _run_shard(metric, batches, spec, empty_x, device))
    metric.real_count = value["count"]
    return value["stats"], hit
