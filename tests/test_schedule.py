"""The learning-rate schedule (ganforge.loop.schedule): a function of the generator step."""

from __future__ import annotations

import pytest
import torch

from ganforge.loop.schedule import LinearDecay, make_schedule

OPTIM = {"generator": {"lr": 2e-4}, "discriminator": {"lr": 1e-3}}


def test_linear_decay_is_constant_then_linear_to_zero():
    s = LinearDecay({"generator": 1.0}, max_steps=100, start=0.5)
    for g, f in [(0, 1.0), (50, 1.0), (75, 0.5), (100, 0.0), (120, 0.0)]:
        assert s.factor(g) == pytest.approx(f), g
    assert LinearDecay({}, max_steps=10, start=1.0).factor(10) == 1.0  # starts at the end: never decays


def test_apply_sets_each_network_from_its_own_base_rate():
    p = [torch.nn.Parameter(torch.zeros(1))]
    opts = {net: torch.optim.Adam(p, lr=OPTIM[net]["lr"]) for net in OPTIM}
    s = make_schedule({"lr_decay": "linear", "lr_decay_start": 0.0, "max_steps": 10}, OPTIM)
    s.apply(opts.items(), 5)
    assert opts["generator"].param_groups[0]["lr"] == pytest.approx(1e-4)
    assert opts["discriminator"].param_groups[0]["lr"] == pytest.approx(5e-4)
    s.apply(opts.items(), 0)  # a function of the step, not of the previous rate: resume needs no state
    assert opts["generator"].param_groups[0]["lr"] == pytest.approx(2e-4)


def test_make_schedule():
    assert make_schedule({"lr_decay": "none", "max_steps": 10}, OPTIM) is None
    assert make_schedule({"max_steps": 10}, OPTIM) is None
    assert make_schedule({"lr_decay": "linear", "max_steps": None, "max_images": 100}, OPTIM) is None
    s = make_schedule({"lr_decay": "linear", "max_steps": 40}, OPTIM)  # lr_decay_start defaults to half-way
    assert s.start == 20 and s.base_lrs == {"generator": 2e-4, "discriminator": 1e-3}
    with pytest.raises(ValueError, match=r"train.lr_decay='cosine': unknown schedule; use one of none, linear"):
        make_schedule({"lr_decay": "cosine", "max_steps": 10}, OPTIM)
