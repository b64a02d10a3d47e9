"""The engine's side of loggers: build the configured ones through the registry, and drive the optional
capabilities they declare (:mod:`ganforge.contract.components`, "loggers"). No logger is named here:
``csv`` and ``wandb`` are plugins like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ganforge.contract.components import CallbackLogger, HistoryLogger, LoggerRun, StatefulLogger, SummaryLogger

CHECKPOINT_KEY = "loggers"  # checkpoint["loggers"][<logger name>] = that logger's state_dict()


def make_loggers(cfg: Mapping[str, Any], run_dir: Path, registry: Any, step: Callable[[], int],
                 resume_states: Optional[Mapping[str, Any]] = None, resumed_step: Optional[int] = None,
                 launch: Any = None) -> dict[str, Any]:
    """The loggers of ``cfg["logger"]``, by name, in config order.

    Args:
        cfg: The resolved config.
        run_dir: The run directory.
        registry: The plugin registry the config was resolved with.
        step: Returns the current generator step (``LoggerRun.step``).
        resume_states: ``checkpoint["loggers"]`` of the checkpoint being resumed (see :class:`LoggerStates`).
        resumed_step: The checkpoint's generator step: loggers with a history (:class:`HistoryLogger`)
            drop what they logged after it.
        launch: How this process was started (``LoggerRun.launch``).
    """
    states = resume_states if isinstance(resume_states, Mapping) else {}
    rank = int(getattr(rank_zero_only, "rank", 0) or 0)
    loggers: dict[str, Any] = {}
    for i, spec in enumerate(cfg["logger"]):
        state = states.get(spec["name"])
        run = LoggerRun(run_dir=Path(run_dir), name=str(cfg["name"]), config=cfg, rank=rank,
                        resume_state=state if isinstance(state, Mapping) else None, launch=launch, step=step)
        loggers[spec["name"]] = registry.create("logger", dict(spec), f"logger[{i}]", run=run)
    if resumed_step is not None:
        for lg in loggers.values():
            if isinstance(lg, HistoryLogger):
                lg.truncate_after(resumed_step)
    return loggers


def logger_callbacks(loggers: Mapping[str, Any]) -> list[L.Callback]:
    """The callbacks the loggers need: their own (:class:`CallbackLogger`) and :class:`LoggerStates`."""
    callbacks: list[L.Callback] = [cb for lg in loggers.values() if isinstance(lg, CallbackLogger)
                                   for cb in lg.extra_callbacks()]
    if any(isinstance(lg, StatefulLogger) for lg in loggers.values()):
        callbacks.append(LoggerStates(loggers))
    return callbacks


class LoggerStates(L.Callback):
    """Writes each :class:`StatefulLogger`'s ``state_dict()`` into every checkpoint, under
    ``checkpoint["loggers"][<logger name>]``; a resume hands it back to the factory as ``run.resume_state``."""

    def __init__(self, loggers: Mapping[str, Any]) -> None:
        self.loggers = {name: lg for name, lg in loggers.items() if isinstance(lg, StatefulLogger)}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {name: dict(lg.state_dict()) for name, lg in self.loggers.items()}


def log_summary(loggers: Iterable[Any], summary: dict[str, Any]) -> None:
    """Give the run's summary (the dict written to ``summary.json``) to every :class:`SummaryLogger`."""
    for lg in loggers:
        if isinstance(lg, SummaryLogger):
            lg.log_summary(summary)
