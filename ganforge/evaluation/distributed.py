"""Collectives for evaluation: no-ops in one process, ``torch.distributed`` under DDP.

Metric authors do not call these for the real data (the engine's real pass does, see
:mod:`ganforge.evaluation.cache`); they are public for metrics that need one more reduction.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

__all__ = ["distributed_on", "rank_world", "all_reduce_sum", "all_gather_cat", "all_true", "is_cache_writer"]


def distributed_on() -> bool:
    """Whether ``torch.distributed`` is initialized (collectives are real)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` when not distributed."""
    if not distributed_on():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _comm_device(t: Tensor) -> torch.device:
    """Device a collective on ``t`` must run on: NCCL only moves CUDA tensors, gloo prefers CPU."""
    backend = str(torch.distributed.get_backend())
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    if t.is_cuda and "nccl" in backend:  # a mixed "cpu:gloo,cuda:nccl" backend
        return t.device
    return torch.device("cpu")


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over ranks (``t`` itself when not distributed), on ``t``'s device."""
    if not distributed_on():
        return t
    c = t.detach().to(_comm_device(t)).clone()
    torch.distributed.all_reduce(c, op=torch.distributed.ReduceOp.SUM)
    return c.to(t.device)


def all_gather_cat(t: Tensor) -> Tensor:
    """Rows of ``t`` from every rank, in rank order (uneven row counts allowed; every rank's ``t``
    has the same number of dimensions)."""
    if not distributed_on():
        return t
    from torchmetrics.utilities.distributed import gather_all_tensors  # pads uneven shapes

    parts = gather_all_tensors(t.detach().to(_comm_device(t)).contiguous())
    return torch.cat([p.to(t.device) for p in parts], dim=0)


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank (a collective when distributed)."""
    if not distributed_on():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    t = t.to(_comm_device(t))
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


def is_cache_writer() -> bool:
    """Local rank 0 of each node writes shared files: one writer per (possibly non-shared) file system."""
    rank, _ = rank_world()
    local = os.environ.get("LOCAL_RANK")
    return int(local) == 0 if local is not None else rank == 0
