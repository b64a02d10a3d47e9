"""The generator EMA (ganforge.loop.ema): half-life in images, ramp-up, the update, the halted state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.loop.ema import GeneratorEMA


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


def test_beta_is_the_halflife_in_images_with_a_rampup():
    ema = GeneratorEMA(Net(), halflife_images=1000, batch_size=100)
    assert ema.beta(0) == pytest.approx(0.5 ** 0.1) and ema.beta(10**6) == ema.beta(0)  # ten batches halve it
    ramped = GeneratorEMA(Net(), halflife_images=1000, batch_size=100, rampup=0.5)
    assert ramped.beta(200) == pytest.approx(0.5 ** 1.0)  # half-life min(1000, 0.5 x 200) = 100
    assert ramped.beta(10**6) == pytest.approx(0.5 ** 0.1)  # ramp-up over: the configured half-life
    assert ramped.beta(0) == pytest.approx(0.0)  # no images yet: the average is the generator


def test_update_moves_the_average_by_one_minus_beta_and_copies_buffers():
    g = Net()
    ema = GeneratorEMA(g, halflife_images=100, batch_size=100)  # beta 0.5
    assert all(not p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
        g.norm.running_mean.fill_(3.0)
    ema.update(images_seen=100)
    for name, p in g.named_parameters():
        torch.testing.assert_close(ema.module.get_parameter(name), 0.5 * before[name] + 0.5 * p.detach())
    assert torch.equal(ema.module.norm.running_mean, g.norm.running_mean)  # buffers are copied, not averaged
    prev = ema.module.lin.weight.clone()
    with torch.no_grad():
        g.lin.weight.fill_(7.0)
    ema.update(100)  # the bound lists follow the same parameter objects
    torch.testing.assert_close(ema.module.lin.weight, 0.5 * prev + 3.5)


def test_a_halted_run_keeps_the_average_still():
    g = Net()
    ema = GeneratorEMA(g, halflife_images=100, batch_size=100)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    still = {k: v.clone() for k, v in ema.module.named_parameters()}
    ema.update(100, live=torch.tensor(0.0))  # the guard's device flag after a halt: no host read
    assert all(torch.equal(v, ema.module.get_parameter(k)) for k, v in still.items())
    ema.update(100, live=torch.tensor(1.0))
    assert not torch.equal(still["lin.weight"], ema.module.lin.weight)


def test_copy_buffers_after_averaging_over_ranks():
    g = Net()
    ema = GeneratorEMA(g, halflife_images=100, batch_size=10)
    g.norm.running_var.fill_(5.0)
    ema.copy_buffers()
    assert torch.equal(ema.module.norm.running_var, g.norm.running_var)
