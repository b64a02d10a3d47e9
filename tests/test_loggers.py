"""Loggers are a plugin kind: the docs' third-party logger installed and trained with, config errors,
the csv rule, and the capabilities (history, state, summary, callbacks) driven through their protocols."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.loggers import Logger

from conftest import make_fake_distribution
from ganforge import CallbackLogger, HistoryLogger, LoggerRun, PictureLogger, StatefulLogger, SummaryLogger
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge.reporting.loggers import CHECKPOINT_KEY, LoggerStates, log_summary, logger_callbacks, make_loggers
from ganforge.run import config as config_mod

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TINY = ["train.max_steps=20", "train.log_every_n_steps=5", "train.checkpoint_every_n_steps=10",
        "metrics.every_n_steps=10", "metrics.list.0.num_samples=500", "samples.every_n_steps=0",
        "dataset.num_samples=2000", "generator.width=32", "discriminator.width=32"]


def docs_logger_example() -> str:
    """The complete third-party logger of docs/plugins.md ("Loggers"), as written there."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    (example,) = [b for b in blocks if "ganforge_register_loggers" in b]
    assert len(example.splitlines()) < 40, "the docs promise a complete logger in under 40 lines"
    return example


def test_the_docs_logger_installs_and_receives_metrics_and_the_summary(tmp_path) -> None:
    site = make_fake_distribution(tmp_path / "site", "ganforge-jsonl", {"ganforge_jsonl": docs_logger_example()},
                                  {"jsonl": "ganforge_jsonl"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "GANFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "GANFORGE_STRICT_PLUGINS": "1"}
    env.pop("GANFORGE_DOCS_MAX_STEPS", None)
    cli = [sys.executable, "-m", "ganforge.cli.commands"]
    listed = subprocess.run([*cli, "plugins"], capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "jsonl" in listed.stdout and "ganforge-jsonl" in listed.stdout
    fit = subprocess.run([*cli, "fit", *TINY, f"root_dir={tmp_path / 'runs'}", "logger=[csv, jsonl]"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert fit.returncode == 0, fit.stdout[-2000:] + fit.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    assert [e["name"] for e in json_or_yaml(run_dir / "config.yaml")["logger"]] == ["csv", "jsonl"]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows, summaries = [r for r in lines if "summary" not in r], [r["summary"] for r in lines if "summary" in r]
    assert [r["step"] for r in rows if "d_loss" in r] == [5, 10, 15, 20]  # step = generator steps
    assert [r["step"] for r in rows if "metrics/mode-coverage/modes" in r] == [10, 20]
    # The summary arrives once, the same dict that is written to summary.json (not read back from it).
    assert summaries == [json.loads((run_dir / "summary.json").read_text())]
    assert (run_dir / "metrics.csv").is_file()  # csv kept next to it


def json_or_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


# -- config ------------------------------------------------------------------------------------------------


def load(registry: Any, *overrides: str) -> dict[str, Any]:
    return config_mod.load_config(None, list(overrides), registry)


def test_logger_names_and_parameters_come_from_the_registry(registry) -> None:
    assert load(registry)["logger"] == [{"name": "csv"}]
    assert load(registry, "logger=[]")["logger"] == []
    wandb = load(registry, "logger=wandb")["logger"]
    assert [e["name"] for e in wandb] == ["csv", "wandb"]  # csv is always added: the run's own record
    assert wandb[1] == {"name": "wandb", "project": "ganforge", "entity": None, "mode": "auto", "tags": []}
    with pytest.raises(ConfigError, match=r"^logger\.name: unknown logger 'wand'\. Did you mean 'wandb'\?.*csv, "):
        load(registry, "logger=wand")
    with pytest.raises(ConfigError, match=r"^logger\[1\]\.mode: expected 'auto' \| 'online'.*got 'onlin'"):
        load(registry, "logger=[csv, {name: wandb, mode: onlin}]")
    # W&B's parameters belong to wandb only.
    with pytest.raises(ConfigError, match=r"^logger\[0\]\.project: unknown parameter of logger 'csv'"):
        load(registry, "logger=[{name: csv, project: x}]")
    with pytest.raises(ConfigError, match=r"^logger\[1\]: logger 'csv' is given twice; keep one entry\."):
        load(registry, "logger=[csv, csv]")
    with pytest.raises(ConfigError, match=r"^logger\[0\]: expected a mapping like \{name: \.\.\., \.\.\.\} or a name"):
        load(registry, "logger=[3]")


# -- capabilities ------------------------------------------------------------------------------------------


class _Probe(Logger):
    """A logger with every capability, recording what the engine did to it."""

    name, version = "probe", "0"

    def __init__(self, run: LoggerRun, tag: str) -> None:
        super().__init__()
        self.run, self.tag, self.calls = run, tag, []

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None: ...

    def log_metrics(self, metrics: Any, step: Any = None) -> None: ...

    def truncate_after(self, step: int) -> None:
        self.calls.append(("truncate_after", step))

    def state_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "step": self.run.step()}

    def log_summary(self, summary: dict[str, Any]) -> None:
        self.calls.append(("log_summary", summary))

    def log_pictures(self, step: int, pictures: dict[str, Any]) -> None:
        self.calls.append(("log_pictures", step, sorted(pictures)))

    def extra_callbacks(self) -> list[Any]:
        import lightning as L

        return [L.Callback()]


class _Plugin:
    from ganforge import hookimpl

    @staticmethod
    @hookimpl
    def ganforge_register_loggers(register: Any) -> None:
        register("probe", lambda run, tag="a": _Probe(run, tag))
        register("plain", lambda run: _Plain())
        register("not-a-logger", lambda run: object())


class _Plain(Logger):
    name, version = "plain", "0"

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None: ...

    def log_metrics(self, metrics: Any, step: Any = None) -> None: ...


def test_capabilities_are_driven_through_their_protocols(tmp_path) -> None:
    reg = load_registry(extra=[("probe-plugin", _Plugin)], warn=False)
    cfg = config_mod.load_config(None, ["logger=[csv, {name: probe, tag: b}, plain]"], reg)
    g = {"steps": 7}
    loggers = make_loggers(cfg, tmp_path, reg, step=lambda: g["steps"], resume_states={"probe": {"tag": "old"}},
                           resumed_step=7)
    assert list(loggers) == ["csv", "probe", "plain"]
    probe, plain = loggers["probe"], loggers["plain"]
    # The factory got its own parameters, the run and its own state from the checkpoint, before it existed.
    assert probe.tag == "b" and probe.run.resume_state == {"tag": "old"} and probe.run.resuming
    assert probe.run.run_dir == tmp_path and probe.run.name == cfg["name"] and probe.run.config is cfg
    assert probe.calls == [("truncate_after", 7)]  # history cut before anything is logged
    assert isinstance(loggers["csv"], HistoryLogger) and not isinstance(loggers["csv"], StatefulLogger)
    assert not isinstance(plain, (SummaryLogger, HistoryLogger, StatefulLogger, CallbackLogger, PictureLogger))
    # Callbacks: the probe's own, and the one that writes the stateful loggers' state into checkpoints.
    callbacks = logger_callbacks(loggers)
    assert len(callbacks) == 2 and isinstance(callbacks[1], LoggerStates)
    checkpoint: dict[str, Any] = {}
    g["steps"] = 9
    callbacks[1].on_save_checkpoint(None, None, checkpoint)
    assert checkpoint == {CHECKPOINT_KEY: {"probe": {"tag": "b", "step": 9}}}
    torch.save(checkpoint, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True) == checkpoint  # plain data
    summary = {"metrics": {}, "counters": {"g_steps": 9}}
    log_summary(loggers.values(), summary)
    assert probe.calls[-1] == ("log_summary", summary)
    # Pictures: handed over by the callback that writes them, to the loggers that declare PictureLogger only.
    from types import SimpleNamespace

    from ganforge.run.callbacks import SamplePictures

    SamplePictures.publish(SimpleNamespace(loggers=list(loggers.values())), 9,
                           {"samples/step": tmp_path / "s.png", "samples/progress": tmp_path / "p.png"})
    assert isinstance(probe, PictureLogger) and probe.calls[-1] == ("log_pictures", 9, ["samples/progress", "samples/step"])
    # A fresh run: no state; no loggers with capabilities: no callbacks.
    fresh = make_loggers(cfg, tmp_path, reg, step=lambda: 0)
    assert fresh["probe"].run.resume_state is None and fresh["probe"].calls == []
    assert logger_callbacks({"plain": plain}) == []


def test_a_factory_that_returns_no_logger_is_named(tmp_path) -> None:
    reg = load_registry(extra=[("probe-plugin", _Plugin)], warn=False)
    cfg = config_mod.load_config(None, ["logger=[csv, not-a-logger]"], reg)
    with pytest.raises(Exception, match=r"logger 'not-a-logger' \(from .*probe-plugin.*\) is invalid: expected a "
                                        r"lightning\.pytorch\.loggers\.Logger, got object"):
        make_loggers(cfg, tmp_path, reg, step=lambda: 0)

