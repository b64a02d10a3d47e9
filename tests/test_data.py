"""The data module's rank and world: from the trainer in training, from the process group outside it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import ganforge.evaluation.distributed as distributed
from ganforge.loop.data import GANDataModule


def _module() -> GANDataModule:
    dataset = SimpleNamespace(info=SimpleNamespace(kind="points"))
    return GANDataModule(dataset, batch_size=4, n_critic=1, seed=0)


def test_world_without_a_trainer_follows_the_process_group(monkeypatch):
    dm = _module()
    assert dm.world() == (0, 1)  # not distributed
    # Used outside Lightning under torch.distributed (the engine's real pass in `ganforge evaluate`,
    # a third party's evaluation): every rank must read its own share, not rank 0's.
    monkeypatch.setattr(distributed, "rank_world", lambda: (1, 2))
    assert dm.world() == (1, 2)


def test_world_with_a_trainer_is_the_trainers(monkeypatch):
    dm = _module()
    monkeypatch.setattr(distributed, "rank_world", lambda: (1, 2))
    dm.trainer = SimpleNamespace(global_rank=3, world_size=4)
    assert dm.world() == (3, 4)


@pytest.mark.parametrize("n,batch,n_critic,world", [(50, 8, 1, 1), (50, 8, 3, 1), (50, 8, 1, 2), (50, 12, 3, 3),
                                                    (7, 4, 2, 2), (1000, 64, 5, 1), (10, 32, 1, 1)])
def test_sampler_indices_are_the_epoch_permutations_at_each_position(n, batch, n_critic, world):
    """The one-slice fast path and the general path both give perm(epoch)[position % n] for every
    position of the iteration, across epoch boundaries, for every rank."""
    from ganforge.loop.data import IterationSampler, _perm

    for rank in range(world):
        s = IterationSampler(n, batch, n_critic, seed=3, rank=rank, world_size=world, start=lambda: 0,
                             epoch_length=40)
        per = batch // world
        for it in range(40):
            want = [int(_perm(n, 3, p // n)[p % n]) for k in range(n_critic)
                    for p in range(it * n_critic * batch + k * batch + rank * per,
                                   it * n_critic * batch + k * batch + (rank + 1) * per)]
            got = s.index_tensor(it)
            assert got.dtype == torch.int64 and got.tolist() == want == s.indices(it)
        assert [t.tolist() for t in s] == [s.indices(it) for it in range(40)]
