"""The data module's rank and world: from the trainer in training, from the process group outside it."""

from __future__ import annotations

from types import SimpleNamespace

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
