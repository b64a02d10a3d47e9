"""What a run prints: status lines when nobody watches, the final table, where the outputs are."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from ganforge.cli.commands import main
from ganforge.reporting.status import StatusLines, final_table, format_values


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _module(g_steps: int, images: int, **losses: float) -> SimpleNamespace:
    """The module as the status line reads it: counters, device, the latest logged losses."""
    return SimpleNamespace(g_steps=g_steps, images_seen=images, device=torch.device("cpu"), last_losses=losses)


def _trainer() -> SimpleNamespace:
    return SimpleNamespace(is_global_zero=True, should_stop=False)


def test_status_lines_every_interval_first_and_last_with_rate_and_eta():
    clock, out = FakeClock(), io.StringIO()
    latest = {"fid/fid": 3.5, "mode-coverage/num_modes": 8.0}
    s = StatusLines(every_s=30, max_steps=1000, max_images=None, latest_metrics=lambda: latest, out=out, clock=clock)
    trainer = _trainer()
    s.on_train_start(trainer, _module(0, 0))
    for step in range(1, 1001):
        clock.t += 0.125  # 8 steps a second (exact in binary), 64 images a step
        trainer.should_stop = step == 1000
        s.on_train_batch_end(trainer, _module(step, 64 * step, d_loss=1.25, g_loss=0.5))
    lines = out.getvalue().splitlines()
    # first step, then every 30 s (240 steps), then the last
    steps = [int(line.split()[2].split("/")[0]) for line in lines]
    assert steps == [1, 241, 481, 721, 961, 1000]
    mid = lines[1]
    assert mid.startswith("ganforge: step 241/1000 (24.1%) | 15.4k img |")
    assert "| 1.95 s/kimg |" in mid  # 30 s for 240 steps of 64 images
    assert "d_loss 1.25 g_loss 0.5" in mid and "fid/fid 3.5" in mid and "num_modes" not in mid
    assert "rss " in mid and mid.endswith("ETA 1m35s")  # 759 steps left at 8 a second
    assert lines[-1].endswith("ETA 0s")


def test_status_lines_print_each_evaluation_once_and_only_first_last_when_interval_is_zero():
    clock, out = FakeClock(), io.StringIO()
    s = StatusLines(every_s=0, max_steps=None, max_images=640, out=out, clock=clock)
    trainer = _trainer()
    s.on_train_start(trainer, _module(0, 0))
    for step in range(1, 11):
        clock.t += 100
        trainer.should_stop = step == 10
        s.on_train_batch_end(trainer, _module(step, 64 * step))
        if step == 5:
            s.evaluated(5, {"fid/fid": 12.0})
            s.evaluated(5, {"fid/fid": 12.0})
    lines = out.getvalue().splitlines()
    assert [line.split("|")[0].strip() for line in lines] == [
        "ganforge: step 1 (10.0%)", "ganforge: evaluation at step 5: fid/fid 12", "ganforge: step 10 (100.0%)"]


def test_status_lines_only_on_rank_zero():
    out = io.StringIO()
    s = StatusLines(every_s=1, max_steps=10, max_images=None, out=out)
    s.on_train_start(_trainer(), _module(0, 0))
    trainer = _trainer()
    trainer.is_global_zero = False
    s.on_train_batch_end(trainer, _module(1, 64))
    assert out.getvalue() == ""


def test_final_table_names_each_metric_once_with_units_and_no_setup_values():
    from rich.console import Console

    fid = SimpleNamespace(units={}, context=())
    cov = SimpleNamespace(units={"modes": "modes", "high_quality": "fraction", "kl_uniform": "nats"},
                          context=("num_modes",))
    values = {"fid/fid": 3.125, "mode-coverage/modes": 8.0, "mode-coverage/high_quality": 0.9644,
              "mode-coverage/kl_uniform": 0.00147, "mode-coverage/num_modes": 8.0}
    buf = io.StringIO()
    Console(file=buf, width=120).print(final_table(values, [("fid", fid), ("mode-coverage", cov)],
                                                   _module(8000, 2048000)))
    text = buf.getvalue()
    assert "final metrics after 8,000 generator steps (2,048,000 images)" in " ".join(text.split())
    assert "fid/fid" not in text and "│ fid " in text and "3.125" in text
    assert "modes (of 8)" in text and "fraction" in text and "nats" in text
    assert "num_modes" not in text


def test_format_values_skips_setup_values():
    assert format_values({"a/num_modes": 8.0, "a/modes": 7.0, "b/x": 0.12345}) == "a/modes 7 b/x 0.1235"


def test_redirected_fit_prints_status_lines_and_where_the_outputs_are(tmp_path):
    """stdout is a pipe (as in a batch job) and GANFORGE_PROGRESS unset: no bar, status lines."""
    env = {k: v for k, v in os.environ.items() if k != "GANFORGE_PROGRESS"}
    out = subprocess.run([sys.executable, "-m", "ganforge", "fit", "train.max_steps=40", "metrics.every_n_steps=20",
                          "metrics.list.0.num_samples=300", "dataset.num_samples=2000", "train.batch_size=64",
                          "console.status_every_s=0", "logger=csv", f"root_dir={tmp_path}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    status = [line for line in lines if line.startswith("ganforge: step ")]
    assert [line.split()[2] for line in status] == ["1/40", "40/40"]
    assert [line for line in lines if line.startswith("ganforge: evaluation at step ")][:2] == [
        line for line in lines if "evaluation at step 20:" in line or "evaluation at step 40:" in line]
    assert "━" not in out.stdout.split("final metrics")[0]  # no progress bar before the table
    run_dir = tmp_path / "ring8" / "version_0"
    assert lines[-1].startswith("ganforge: trained 40 iterations in ")
    assert f"Outputs in {run_dir}/" in lines[-1] and f"ganforge report {run_dir}" in lines[-1]


@pytest.mark.parametrize("value, ok", [("-1", False), ("nan", False), ("0", True), ("2.5", True)])
def test_status_interval_is_validated(value, ok, capsys):
    rc = main(["config", "show", f"console.status_every_s={value}"])
    err = capsys.readouterr().err
    if ok:
        assert rc == 0
    else:
        assert rc == 2 and "console.status_every_s" in err and value in err
