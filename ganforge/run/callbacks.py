"""Engine callbacks: evaluation, sample pictures, atomic checkpoints, the run summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import RichProgressBar

from ganforge.run.checkpoint import load_checkpoint_file
from ganforge.reporting.imaging import panel_grid, points_extent, samples_picture, save_png
from ganforge.io import atomic_torch_save, write_json
from ganforge.evaluation.core import evaluate as evaluate_metrics
from ganforge.evaluation.core import (full_protocol, generation_conditions, generator_used, metric_pictures,
                                      prepare_real)
from ganforge.loop.module import GANModule, NonFiniteError, log_to_loggers
from ganforge.run.stopping import EarlyStop


class GANProgressBar(RichProgressBar):
    """Rich progress bar over the whole run, in training iterations, with the D/G losses and the
    latest metric (Lightning's epoch counter and ``v_num`` mean nothing for a GAN run)."""

    handles_iteration_chunks = True  # advances by the iterations done, not by Lightning batches

    def __init__(self) -> None:
        super().__init__(leave=False)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # the bar's total is the run's iterations (the loader's length); a batch may hold several
        super().on_train_batch_end(trainer, pl_module, outputs, batch, getattr(pl_module, "iterations", batch_idx + 1) - 1)

    def _get_train_description(self, current_epoch: int) -> str:
        return "training"

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if hasattr(pl_module, "g_steps"):
            items["G steps"] = pl_module.g_steps
        return items


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file, fsynced, then renamed: never half-written. They
    are read back as data only (``weights_only=True``), whatever the caller asks for."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location or "cpu")


def _is_eval_step(g_steps: int, every: int) -> bool:
    return every > 0 and g_steps > 0 and g_steps % every == 0


def _observed(trainer: L.Trainer) -> tuple[int, ...]:
    """How much the evaluation history and the picture frames hold: state a checkpoint must carry."""
    return tuple(len(cb.history) if isinstance(cb, Evaluation) else len(cb.frames)
                 for cb in trainer.callbacks if isinstance(cb, (Evaluation, SamplePictures)))


class GANCheckpoint(L.Callback):
    """Writes ``checkpoints/last.ckpt`` every N generator steps and at the end of training."""

    handles_iteration_chunks = True  # acts on generator steps that are sync points, where a chunk of iterations ends

    def __init__(self, dirpath: Path, every_n_steps: int, early: Optional[EarlyStop] = None) -> None:
        self.early = early if early is not None else EarlyStop()  # set by the stop callbacks
        self.dirpath = Path(dirpath)
        self.every = every_n_steps
        self._saved_at = -1
        self._saved_mark: Optional[tuple] = None

    @property
    def last(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: GANModule, exception: BaseException) -> None:
        if isinstance(exception, NonFiniteError) and exception.last_good is None:
            # The guard kept the weights and optimizers as they were: save that (on every rank, as it halted on all).
            trainer.save_checkpoint(self.last, weights_only=False)
            exception.saved(self.last)

    def save(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        # Saved again at the same iteration when the evaluation history or the picture frames grew
        # since (the final evaluation of a segment whose last step was a checkpoint step but not an
        # evaluation step): a resume would otherwise lose them from summary.json and progress.png.
        mark = (pl_module.iterations, _observed(trainer))
        if self._saved_mark == mark:
            return
        pl_module.sync_buffers()
        trainer.save_checkpoint(self.last, weights_only=False)
        self._saved_at, self._saved_mark = pl_module.iterations, mark

    def saved_now(self, pl_module: GANModule) -> bool:
        """Whether ``last.ckpt`` holds the current iteration (written by this run, just now)."""
        return self._saved_at == pl_module.iterations and self.last.is_file()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GANModule, *args: Any) -> None:
        if _is_eval_step(pl_module.g_steps, self.every):
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        if not self.early.requeued:
            self.save(trainer, pl_module)


class Evaluation(L.Callback):
    """Evaluates the configured metrics on the (EMA) generator every N steps and at the end.

    Every rank generates its share of the samples with its own noise; ``compute()`` is
    collective and runs on every rank. Rank 0 writes ``summary.json`` and prints the final table.
    """

    handles_iteration_chunks = True  # acts on generator steps that are sync points, where a chunk of iterations ends

    def __init__(self, metrics: list[tuple[str, Any]], every_n_steps: int, use_ema: bool, run_dir: Path,
                 seed: int, config_name: str = "", sources: Optional[list[str]] = None,
                 early: Optional[EarlyStop] = None) -> None:
        self.metrics = metrics
        self.early = early if early is not None else EarlyStop()  # set by the stop callbacks
        # Called on rank 0 with (generator step, values) after each evaluation (e.g. StatusLines).
        self.listeners: list[Callable[[int, dict[str, float]], None]] = []
        self.sources = sources or [f"metrics.list[{i}] (metric '{n}')" for i, (n, _) in enumerate(metrics)]
        self.every = every_n_steps
        self.use_ema = use_ema
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.config_name = config_name
        self.history: list[dict[str, Any]] = []
        self.latest: dict[str, float] = {}
        self._prepared = False
        self._context: Optional[tuple[int, int, int]] = None  # (world size, dataset size, data seed)
        self._last_step = -1
        # Training time across segments: the earlier segments' records come from the checkpoint
        # (each up to the checkpoint this one resumed from); ``segment`` describes this one (its
        # number, start time and host, from segments.jsonl), set by the engine on rank 0.
        self.earlier_segments: list[dict[str, Any]] = []
        self.segment: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._t_end: Optional[float] = None
        self._start_g_steps = 0
        self._module: Optional[GANModule] = None
        self.written: Optional[dict[str, Any]] = None  # the dict last written to summary.json

    def caption(self, step: int) -> str:
        """The values evaluated at generator step ``step`` (a picture's caption), or ``""``."""
        from ganforge.reporting.status import format_values

        row = next((r for r in reversed(self.history) if r.get("g_steps") == step), None)
        if row is None:
            return ""
        values = {k: v for k, v in row.items() if k not in ("g_steps", "images_seen") and isinstance(v, (int, float))}
        short = {(k.split("/", 1)[1] if "/" in k and k.split("/", 1)[1] != k.split("/", 1)[0] else k.split("/")[0]): v
                 for k, v in values.items()}
        return format_values(short if len(short) == len(values) else values, limit=3)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "latest": self.latest, "segments": self.segments()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.latest = dict(state.get("latest", {}))
        self.earlier_segments = [dict(s) for s in state.get("segments", [])]
        if self.history:  # the step evaluated last is not evaluated (and logged) a second time
            self._last_step = int(self.history[-1].get("g_steps", -1))

    def on_train_start(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        self._t0, self._t_end = time.monotonic(), None
        self._start_g_steps = pl_module.g_steps
        self._module = pl_module

    def segments(self) -> list[dict[str, Any]]:
        """Every segment's start and end generator step and training time, this one up to now."""
        if self._module is None:  # not started (yet): nothing of this segment to record
            return list(self.earlier_segments)
        now = {"segment": self.segment.get("segment", len(self.earlier_segments)),
               "started": self.segment.get("started"), "host": self.segment.get("host"),
               "start_g_steps": self._start_g_steps, "end_g_steps": self._module.g_steps,
               "wall_time_s": round((self._t_end or time.monotonic()) - self._t0, 3)}
        return [*self.earlier_segments, now]

    def wall_time(self) -> float:
        """Training time over all segments, in seconds."""
        return round(sum(float(s.get("wall_time_s") or 0.0) for s in self.segments()), 3)

    def _prepare(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        prepare_real(self.metrics, pl_module.info, trainer.datamodule, pl_module.device)
        self._prepared = True

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: GANModule) -> dict[str, float]:
        if not self.metrics:
            return {}
        if not self._prepared:
            self._prepare(trainer, pl_module)
        pl_module.sync_buffers()
        from ganforge.contract.components import ComponentError

        dm = trainer.datamodule
        try:  # the shared evaluation (ganforge.evaluation.core): `ganforge evaluate` replays it exactly
            results = evaluate_metrics(pl_module, self.metrics, dm.dataset, self.seed, use_ema=self.use_ema,
                                       world=trainer.world_size, ranks=[trainer.global_rank], sources=self.sources,
                                       data_seed=dm.seed)
        except ComponentError as exc:
            raise self._stop_error(trainer, pl_module, exc) from None
        self._context = (trainer.world_size, len(dm.dataset), dm.seed)
        values = {f"{name}/{k}": v for name, r in results.items() for k, v in r["values"].items()}
        self.latest = values
        self._last_step = pl_module.g_steps
        row = {"g_steps": pl_module.g_steps, "images_seen": pl_module.images_seen, **values}
        self.history.append(row)
        log_to_loggers(trainer, {f"metrics/{k}": v for k, v in values.items()}, pl_module.g_steps)
        if trainer.is_global_zero:
            for listener in self.listeners:
                listener(pl_module.g_steps, values)
            # pictures the metrics draw of what they just measured (PictureMetric), to the picture loggers
            pictures = metric_pictures(self.metrics, self.run_dir, pl_module.g_steps)
            if pictures:
                SamplePictures.publish(trainer, pl_module.g_steps, pictures)
        return values

    def _stop_error(self, trainer: L.Trainer, pl_module: GANModule, exc: Exception) -> Exception:
        from ganforge.contract.components import ComponentError

        ckpt = next((c.last for c in trainer.callbacks if isinstance(c, GANCheckpoint)), None)
        saved = (f"the last checkpoint is {ckpt} (resume with --resume {ckpt} after fixing the metric, or drop "
                 "it from metrics.list)" if ckpt is not None and ckpt.is_file() else "no checkpoint was written yet")
        return ComponentError(f"{exc} Training stopped at generator step {pl_module.g_steps}; {saved}.")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GANModule, *args: Any) -> None:
        if _is_eval_step(pl_module.g_steps, self.every) and pl_module.g_steps != self._last_step:
            values = self.evaluate(trainer, pl_module)
            show = {k: v for k, v in values.items() if len(values) <= 3 or k.endswith(("modes", "fid"))}
            for k, v in list(show.items())[:3]:
                pl_module.log(k, v, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        if self.early:  # stopped early: the requeued/resumed attempt evaluates at its own end
            self._t_end = time.monotonic()
            return
        if pl_module.g_steps != self._last_step:
            self.evaluate(trainer, pl_module)
        self._t_end = time.monotonic()  # the segment's time: training and its final evaluation
        if trainer.is_global_zero:
            self.write_summary(trainer, pl_module)

    def summary(self, pl_module: GANModule) -> dict[str, Any]:
        import ganforge

        return {
            "name": self.config_name,
            "ganforge_version": ganforge.__version__,
            "counters": pl_module.counters(),
            "objective": pl_module.objective_record(),  # what the loop ran: name, protocol, critic steps, ...
            "metrics": {
                name: {
                    "values": {k.split("/", 1)[1]: v for k, v in self.latest.items() if k.startswith(name + "/")},
                    "protocol": self._protocol(metric, pl_module),
                    "generator_used": generator_used(pl_module, self.use_ema),
                }
                for name, metric in self.metrics
            },
            "history": self.history,
            "wall_time_s": self.wall_time(),
            "segments": self.segments(),
        }

    def _protocol(self, metric: Any, pl_module: GANModule) -> dict[str, Any]:
        """The metric's protocol with the sampling seed, counts, conditions rule, generator and
        reference split (:func:`ganforge.evaluation.core.full_protocol`) once the run has evaluated."""
        if self._context is None:
            trainer = getattr(pl_module, "_trainer", None)
            dm = getattr(trainer, "datamodule", None)
            if dm is None:
                return metric.protocol()
            self._context = (trainer.world_size, len(dm.dataset), dm.seed)
        world, size, data_seed = self._context
        return full_protocol(metric, pl_module.info, seed=self.seed, world=world, dataset_size=size,
                             generator=generator_used(pl_module, self.use_ema), data_seed=data_seed,
                             device=pl_module.device.type)

    def write_summary(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        self._publish(trainer, self.summary(pl_module))

    def write_interrupted_summary(self, pl_module: GANModule, interrupted: dict[str, Any]) -> Path:
        """The summary so far (metrics of the last evaluation, in ``history``), marked interrupted."""
        return self._publish(pl_module.trainer, {**self.summary(pl_module), "interrupted": interrupted})

    def _publish(self, trainer: Optional[L.Trainer], summary: dict[str, Any]) -> Path:
        """Write ``summary.json`` (rank 0), keep the dict (``fit`` returns it) and hand the same dict to
        every logger that declares :class:`~ganforge.contract.components.SummaryLogger`."""
        from ganforge.contract.components import SummaryLogger

        path = self.run_dir / "summary.json"
        write_json(path, summary)
        self.written = summary
        for lg in (trainer.loggers if trainer is not None else []):
            if isinstance(lg, SummaryLogger):
                lg.log_summary(summary)
        return path


class SamplePictures(L.Callback):
    """Pictures of generated samples from fixed noise: one per snapshot, and a side-by-side strip.

    ``samples/progress.png`` is the lecture's "Step 0 … Step N" figure: generated samples
    against the true modes at several points of training.
    """

    handles_iteration_chunks = True  # acts on generator steps that are sync points, where a chunk of iterations ends

    def __init__(self, run_dir: Path, every_n_steps: int, num_samples: int, snapshots: int, seed: int,
                 max_steps: Optional[int], use_ema: bool = True,
                 caption: Callable[[int], str] = lambda step: "", early: Optional[EarlyStop] = None) -> None:
        self.early = early if early is not None else EarlyStop()  # set by the stop callbacks
        self.caption = caption  # the metric values evaluated at a step, written under its panel's title
        self._y: Optional[torch.Tensor] = None
        self.dir = Path(run_dir) / "samples"
        self.every = every_n_steps
        self.num = num_samples
        self.snapshots = max(2, snapshots)
        self.seed = seed
        self.max_steps = max_steps
        self.use_ema = use_ema
        self.frames: list[tuple[int, Any]] = []  # (g_steps, uint8 image array or float points)
        self._extent: Optional[tuple] = None

    def state_dict(self) -> dict[str, Any]:
        return {"frames": self.frames}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frames = list(state.get("frames", []))

    def snap(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        if self.frames and self.frames[-1][0] == pl_module.g_steps:
            return
        y = generation_conditions(pl_module.info, trainer.datamodule.dataset, self.num, self.seed, pl_module.device)
        self._y = None if y is None else y.cpu()
        x = pl_module.sample(self.num, y=y, seed=self.seed, ema=self.use_ema).cpu()
        self.frames.append((pl_module.g_steps, x.half() if pl_module.info.kind == "image" else x))
        if trainer.is_global_zero:
            img = self.panel(pl_module, pl_module.g_steps, x)
            step_png = self.dir / f"step_{pl_module.g_steps:07d}.png"
            save_png(img, step_png)
            self.write_strip(pl_module)
            self.publish(trainer, pl_module.g_steps, {"samples/step": step_png, "samples/progress": self.dir / "progress.png"})

    @staticmethod
    def publish(trainer: L.Trainer, step: int, pictures: dict[str, Path]) -> None:
        """Hand the pictures just written to every logger that declares
        :class:`~ganforge.contract.components.PictureLogger` (rank 0)."""
        from ganforge.contract.components import PictureLogger

        for lg in trainer.loggers:
            if isinstance(lg, PictureLogger):
                lg.log_pictures(step, pictures)

    def panel(self, pl_module: GANModule, step: int, x: torch.Tensor) -> Any:
        """One picture: the title, the metric values at that step, class rows for class labels."""
        return samples_picture(x.float(), pl_module.info, f"step {step}", self.extent(pl_module, x.float()),
                               y=self._y, caption=self.caption(step))

    def extent(self, pl_module: GANModule, x: torch.Tensor) -> Optional[tuple]:
        if pl_module.info.kind == "image":
            return None
        if self._extent is None:  # from the first frame (step 0): the same axes after a resume
            first = self.frames[0][1].float() if self.frames else x
            self._extent = points_extent(pl_module.info, first.reshape(first.shape[0], -1).numpy())
        return self._extent

    def write_strip(self, pl_module: GANModule) -> None:
        frames = self.frames
        if len(frames) > self.snapshots:
            idx = np.unique(np.linspace(0, len(frames) - 1, self.snapshots).round().astype(int))
            frames = [frames[i] for i in idx]
        panels = [self.panel(pl_module, s, x) for s, x in frames]
        save_png(panel_grid(panels, ncols=3), self.dir / "progress.png")

    def on_train_start(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        if pl_module.g_steps == 0:
            self.snap(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GANModule, *args: Any) -> None:
        if _is_eval_step(pl_module.g_steps, self.every):
            self.snap(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: GANModule) -> None:
        if not self.early:
            self.snap(trainer, pl_module)
