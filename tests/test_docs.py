"""Docs that are generated from the code stay current; documented commands exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    generated = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py")], capture_output=True,
                               text=True, timeout=120, check=True).stdout
    committed = (REPO / "docs" / "config.md").read_text()
    assert committed == generated, "docs/config.md is stale: run `python scripts/config_reference.py > docs/config.md`"


def test_builtin_configs_named_in_the_readme_resolve(registry):
    from ganforge.run.config import load_config

    readme = (REPO / "README.md").read_text()
    for name in ("ring8", "grid25", "digits-dcgan", "digits-cgan", "stacked-digits", "stacked-digits-mbstd", "folder-dcgan", "ring8-collapse",
                 "ring8-saturation"):
        assert f"`{name}`" in readme
        cfg = load_config(name, [], registry)
        assert cfg["name"] == name
