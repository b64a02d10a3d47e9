"""Shared fixtures: tiny configs, fake plugin distributions on sys.path, quiet runs."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("GANFORGE_PROGRESS", "0")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "generator.width=32", "generator.depth=2", "discriminator.width=32", "discriminator.depth=2",
    "dataset.num_samples=2000", "train.batch_size=64", "train.max_steps=20", "train.log_every_n_steps=5",
    "metrics.every_n_steps=10", "metrics.list.0.num_samples=500", "logger=csv",
]


@pytest.fixture
def tiny(tmp_path):
    """Overrides for a few-second run of the default ring config inside tmp_path."""
    return TINY + [f"root_dir={tmp_path / 'runs'}"]


@pytest.fixture
def registry():
    from ganforge.registry.registry import get_registry

    return get_registry()


def fit_with_callbacks(registry, overrides: list[str], run_dir: Path, callbacks=()):
    """A fit of the config ``overrides`` with extra Lightning callbacks, outside the runner's
    ``fit`` (no run directory bookkeeping); returns the module and the trainer."""
    from ganforge.run.config import load_config
    from ganforge.run.runner import build_components, make_trainer

    cfg = load_config(None, overrides, registry)
    built = build_components(cfg, registry)
    trainer = make_trainer(cfg, run_dir, built, {}, progress=False)
    trainer.callbacks.extend(callbacks)
    trainer.fit(built.module, datamodule=built.datamodule)
    return built.module, trainer


def make_fake_distribution(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str],
                           version: str = "0.0.1") -> Path:
    """Write modules and a ``*.dist-info`` with ``ganforge`` entry points under ``root``.

    With ``root`` on ``sys.path`` (or ``PYTHONPATH``), importlib.metadata finds the entry points
    exactly as it finds those of a pip-installed distribution.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "[ganforge]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(eps)
    return root


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """Factory: install fake distributions on sys.path for this test."""
    made = []

    def make(dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
        root = tmp_path / f"site_{dist}"
        make_fake_distribution(root, dist, modules, entry_points)
        monkeypatch.syspath_prepend(str(root))
        made.append(root)
        return root

    yield make
    for root in made:
        for mod in list(sys.modules):
            if (root / f"{mod}.py").exists():
                del sys.modules[mod]
    import importlib

    importlib.invalidate_caches()
