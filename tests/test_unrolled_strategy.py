"""The unrolled GAN objective through the real entry point: one process, and two ranks under GANDDPStrategy
(gloo on CPU) that stay bit-identical. Uses tests/distributed/gan_worker.py like tests/test_strategy.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from test_strategy import SMALL, Ranks, assert_identical_across_ranks, assert_real_ddp_run, run_worker, tail

pytestmark = pytest.mark.distributed

UNROLLED = ["objective.name=unrolled", "objective.steps=3", "objective.lr=0.05"]


def test_unrolled_trains_on_one_process_and_two_ranks_agree(tmp_path: Path) -> None:
    jobs = [
        {"tag": "unrolled-1proc", "devices": 1, "overrides": SMALL + UNROLLED + ["train.max_steps=20"]},
        {"tag": "unrolled-ddp", "overrides": SMALL + UNROLLED + ["train.max_steps=30"]},
        {"tag": "unrolled-ddp-wgan", "overrides": SMALL + ["objective.name=unrolled", "objective.base=wgan",
                                                           "objective.steps=2", "train.max_steps=6"]},
    ]
    rc, log = run_worker(jobs, tmp_path, timeout=300)
    assert rc == 0, f"the distributed worker exited with {rc}; log tail:\n{tail(log)}"

    single = Ranks(tmp_path, "unrolled-1proc", world=1)
    single.assert_ok(log)
    c = single.states[0]["counters"]
    assert c["g_steps"] == 20 and c["skipped_steps"] == 0, c
    assert all(math.isfinite(t.abs().sum().item()) for t in single.states[0]["generator"].values())

    for tag, g_steps, n_critic in (("unrolled-ddp", 30, 1), ("unrolled-ddp-wgan", 6, 5)):
        job = Ranks(tmp_path, tag)
        job.assert_ok(log)
        assert_identical_across_ranks(job)  # G, D, EMA, both optimizers, counters: bit for bit
        assert_real_ddp_run(job, g_steps, n_critic)
    # WGAN's clipping still bounds the real D (the unrolled copies are clipped on their own)
    wgan_d = Ranks(tmp_path, "unrolled-ddp-wgan").states[0]["discriminator"]
    assert max(t.abs().max().item() for t in wgan_d.values()) <= 0.01 + 1e-7
