"""Status lines for runs nobody watches: a batch job's log, ``--no-progress``, a redirected stdout.

Without a progress bar a run would print its directory and then nothing until the end. Every
``every_s`` seconds (and at the first and last step) rank 0 prints one line in the manner of
StyleGAN2-ADA's ticks::

    ganforge: step 1200/8000 (15.0%) | 76.8k img | 0.52 s/kimg | d_loss 1.23 g_loss 0.456 | 8 modes | mem 1.2 GiB | ETA 3m12s

and each evaluation prints its values as it finishes.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any, Callable, Optional

import torch

import lightning as L


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _count(n: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))


def memory_text(device: torch.device) -> str:
    """Peak memory: the CUDA allocator's on a GPU, the process's peak resident set on a CPU."""
    if device.type == "cuda":
        return f"mem {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"rss {peak_kib / 2**20:.2f} GiB"


def format_values(values: dict[str, float], limit: int = 6) -> str:
    """``fid 3.12 | mode-coverage/modes 8``: short, a metric named once, no bookkeeping values."""
    parts = []
    for k, v in values.items():
        if k.endswith("num_modes"):
            continue
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) and not float(v).is_integer() else f"{k} {v:g}")
        if len(parts) == limit:
            break
    return " ".join(parts)


class StatusLines(L.Callback):
    """Periodic one-line status on rank 0 (for logs without a progress bar): after the first batch of
    the fit, every ``every_s`` seconds, at the end.

    Args:
        every_s: Seconds between lines (``0`` disables the periodic lines; evaluations still print).
        max_steps: The run's ``train.max_steps`` (for the percentage and the ETA), or ``None``.
        max_images: The run's ``train.max_images``, or ``None``.
        latest_metrics: Returns the values of the latest evaluation (the evaluation callback's).
        out: Where to print (standard output).
        clock: The time source (tests pass a fake one).
    """

    handles_iteration_chunks = True  # reads the counters; any batch end will do (train.iterations_per_batch)

    def __init__(self, every_s: float, max_steps: Optional[int], max_images: Optional[int],
                 latest_metrics: Callable[[], dict[str, float]] = dict, out: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = float(every_s)
        self.max_steps = max_steps
        self.max_images = max_images
        self.latest_metrics = latest_metrics
        self.out = out
        self.clock = clock
        self._start = 0.0
        self._last = 0.0
        self._last_images = 0
        self._start_images = 0
        self._start_steps = 0
        self._printed_eval_step = -1
        self._first_pending = True  # the first batch end of the fit prints a line

    def _print(self, text: str) -> None:
        print(f"ganforge: {text}", file=self.out or sys.stdout, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._start = self._last = self.clock()
        self._start_images = self._last_images = pl_module.images_seen
        self._start_steps = pl_module.g_steps
        self._first_pending = True

    def progress(self, pl_module: Any) -> Optional[float]:
        """Fraction of the run done, by whichever limit is nearer."""
        fracs = []
        if self.max_steps:
            fracs.append(pl_module.g_steps / self.max_steps)
        if self.max_images:
            fracs.append(pl_module.images_seen / self.max_images)
        return min(max(fracs), 1.0) if fracs else None

    def line(self, trainer: L.Trainer, pl_module: Any, now: float) -> str:
        step = f"step {pl_module.g_steps}" + (f"/{self.max_steps}" if self.max_steps else "")
        frac = self.progress(pl_module)
        if frac is not None:
            step += f" ({100 * frac:.1f}%)"
        parts = [step, f"{_count(pl_module.images_seen)} img"]
        new_images = pl_module.images_seen - self._last_images
        if new_images > 0 and now > self._last:
            parts.append(f"{(now - self._last) / new_images * 1000:.3g} s/kimg")
        losses = dict(getattr(pl_module, "last_losses", None) or {})  # the latest logging step's
        if losses:
            parts.append(" ".join(f"{k} {v:.4g}" for k, v in sorted(losses.items())))
        metrics = format_values(self.latest_metrics(), limit=3)
        if metrics:
            parts.append(metrics)
        parts.append(memory_text(pl_module.device))
        done = pl_module.images_seen - self._start_images
        if frac is not None and done > 0 and now > self._start:
            rate = done / (now - self._start)  # images per second over this segment
            total = self._total_images(pl_module)
            if total is not None:
                parts.append(f"ETA {_duration((total - pl_module.images_seen) / rate)}")
        return " | ".join(parts)

    def _total_images(self, pl_module: Any) -> Optional[float]:
        totals = []
        if self.max_steps and pl_module.g_steps > 0:
            totals.append(self.max_steps * pl_module.images_seen / pl_module.g_steps)
        if self.max_images:
            totals.append(float(self.max_images))
        return min(totals) if totals else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if not trainer.is_global_zero:
            return
        now = self.clock()
        first = self._first_pending
        self._first_pending = False
        due = self.every_s > 0 and now - self._last >= self.every_s
        if first or due or trainer.should_stop:
            self._print(self.line(trainer, pl_module, now))
            self._last, self._last_images = now, pl_module.images_seen

    def evaluated(self, step: int, values: dict[str, float]) -> None:
        """Called by the evaluation callback after each evaluation (rank 0 prints it)."""
        if values and step != self._printed_eval_step:
            self._printed_eval_step = step
            self._print(f"evaluation at step {step}: {format_values(values, limit=12)}")


def final_table(values: dict[str, float], metrics: list[tuple[str, Any]], pl_module: Any) -> Any:
    """The final metrics as a rich table: one row per result value, each metric named once
    (``fid``, not ``fid/fid``), its unit beside it, set-up values (``num_modes``) left out."""
    from rich.table import Table

    by_name = dict(metrics)
    table = Table(title=f"ganforge — final metrics after {pl_module.g_steps:,} generator steps "
                        f"({pl_module.images_seen:,} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for key, v in values.items():
        name, _, value = key.partition("/")
        metric = by_name.get(name)
        if value in getattr(metric, "context", ()):
            continue
        unit = getattr(metric, "units", {}).get(value, "")
        total = values.get(f"{name}/num_{unit}") if unit else None
        if total is not None:
            unit = f"{unit} (of {total:g})"
        label = name if value in ("", name) else f"{name} {value}"
        text = f"{v:g}" if float(v).is_integer() else f"{v:.4g}"
        table.add_row(label, text, unit)
    if not values:
        table.add_row("(no metrics configured)", "", "")
    return table


def print_final(values: dict[str, float], metrics: list[tuple[str, Any]], pl_module: Any, run_dir: Any,
                iterations: int, seconds: float, out: Any = None) -> None:
    """The table, then one line with the training time and where the outputs are."""
    from rich.console import Console

    Console(file=out).print(final_table(values, metrics, pl_module))
    rate = iterations / seconds if seconds > 0 else float("nan")
    print(f"ganforge: trained {iterations} iterations in {seconds:.1f} s ({rate:.1f} it/s). Outputs in {run_dir}/: "
          "config.yaml, metrics.csv, summary.json, checkpoints/last.ckpt, samples/progress.png; "
          f"a page with curves and pictures: ganforge report {run_dir}", file=out or sys.stdout, flush=True)
