"""The ``csv`` logger: ``<run_dir>/metrics.csv``, the run's own record (``ganforge report`` reads it).

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when its directory is reused, so a
resumed run would lose its history. :class:`ResumableCSVLogger` keeps the rows up to the resumed
step (:class:`ganforge.HistoryLogger`) and appends.
"""

from __future__ import annotations

import csv
import io
from argparse import Namespace
from pathlib import Path
from typing import Any, Callable, Optional, Union

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ganforge import LoggerRun, atomic_write_text, hookimpl


class ResumableCSVLogger(Logger):
    """Writes ``<run_dir>/metrics.csv``; on resume keeps the rows logged up to the checkpoint."""

    def __init__(self, run_dir: Union[str, Path]) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.csv"
        self._rows: list[dict[str, Any]] = []
        self._keys: list[str] = []
        self._pending: list[dict[str, Any]] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self._keys = list(reader.fieldnames or [])
                self._rows = list(reader)

    @property
    def name(self) -> str:
        return self.run_dir.parent.name

    @property
    def version(self) -> str:
        return self.run_dir.name

    @property
    def save_dir(self) -> str:
        return str(self.run_dir.parent.parent)

    @property
    def log_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (the resumed run logs them again)."""
        self._rows = [r for r in self._rows if not r.get("step") or float(r["step"]) <= step]
        self._write_all()

    @rank_zero_only
    def log_hyperparams(self, params: Union[dict[str, Any], Namespace], *args: Any, **kwargs: Any) -> None:
        """The resolved config is written to ``config.yaml`` by the engine."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        row: dict[str, Any] = {"step": step}
        for k, v in metrics.items():
            row[k] = v.item() if hasattr(v, "item") else v
        self._pending.append(row)

    @rank_zero_only
    def save(self) -> None:
        if not self._pending:
            return
        new = [k for r in self._pending for k in r if k not in self._keys]
        for k in new:
            if k not in self._keys:
                self._keys.append(k)
        self._rows.extend(self._pending)
        if new or not self.path.is_file():
            self._write_all()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._keys).writerows(self._pending)
        self._pending = []

    def _write_all(self) -> None:
        if not self._keys:
            return
        keys = ["step"] + sorted(k for k in self._keys if k != "step")
        self._keys = keys
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self._rows)
        atomic_write_text(self.path, buf.getvalue())

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def csv_logger(run: LoggerRun) -> ResumableCSVLogger:
    """``metrics.csv`` in the run directory: one row per logging step, kept across resumes."""
    return ResumableCSVLogger(run.run_dir)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_loggers(register: Callable[..., None]) -> None:
    register("csv", csv_logger, description="metrics.csv in the run directory (kept across resumes)")
