"""NonFiniteGuard on its own: the device-side verdicts and what the host learns at a sync point."""

from __future__ import annotations

import torch

from ganforge.loop.nonfinite import NonFiniteGuard

INF, NAN = float("inf"), float("nan")


def _check(guard: NonFiniteGuard, step: int, loss: float, grad: float = 0.5, which: str = "discriminator"):
    grads = [torch.full((3, 2), 0.1), torch.tensor([grad, 0.2])]
    rec = {"which": which, "iteration": step, "g_steps": step, "d_steps": step, "images_seen": 64 * step}
    return float(guard.check(torch.tensor(loss), grads, 1, False, rec))


def test_stop_halts_on_the_first_bad_step_and_names_loss_or_gradient():
    for loss, grad, said in ((NAN, NAN, "discriminator loss is nan"),
                             (1.5, INF, "discriminator gradient is not finite (loss 1.5)"),
                             (INF, 0.5, "discriminator loss is inf")):
        guard = NonFiniteGuard("stop", 100)
        skips = [_check(guard, 0, 0.7), _check(guard, 1, loss, grad), _check(guard, 2, 0.7), _check(guard, 3, 0.7)]
        assert skips == [0.0, 1.0, 1.0, 1.0]  # halted: every later step is a no-op too
        assert float(guard.live) == 0.0
        result = guard.settle()
        assert result.skipped == [] and result.halt is not None
        assert result.halt.describe() == said and result.halt.counters["iterations"] == 1


def test_skip_counts_runs_per_network_resets_on_a_good_step_and_halts_past_the_cap():
    guard = NonFiniteGuard("skip", 2)
    skips = [_check(guard, 0, NAN), _check(guard, 1, 0.7, which="generator"), _check(guard, 2, 1.0, INF),
             _check(guard, 3, 0.7), _check(guard, 4, NAN), _check(guard, 5, NAN)]
    assert skips == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert float(guard.live) == 1.0  # two in a row is the cap, not past it
    result = guard.settle()
    assert [v.record.iteration for v in result.skipped] == [0, 2, 4, 5] and result.halt is None
    assert [v.run for v in result.skipped] == [1, 2, 1, 2]  # the good step at 3 reset the run
    assert _check(guard, 6, NAN) == 1.0 and float(guard.live) == 0.0  # the third in a row halts
    halt = guard.settle().halt
    assert halt is not None and halt.run == 3 and halt.describe() == "discriminator loss is nan"


def test_the_guard_leaves_loss_and_gradients_unchanged():
    guard = NonFiniteGuard("stop", 100)
    loss, grads = torch.tensor(0.25), [torch.tensor([1.0, -2.0])]
    guard.check(loss, grads, 1, False, {"which": "generator", "iteration": 0, "g_steps": 0, "d_steps": 0,
                                        "images_seen": 0})
    assert float(loss) == 0.25 and grads[0].tolist() == [1.0, -2.0]
    assert guard.settle().skipped == []
