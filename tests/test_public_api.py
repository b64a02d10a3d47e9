"""The public API: plugins import only ``ganforge``'s exported names, and ``import ganforge`` stays light.

The import checks read the source with ``ast`` (imports inside functions count too), so they hold
for code paths no other test runs.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ganforge

REPO = Path(__file__).resolve().parents[1]
PLUGIN_ROOTS = [
    REPO / "plugins" / "ganforge_plugins",
    REPO / "plugins" / "ganforge-relativistic" / "ganforge_relativistic",
    REPO / "plugins" / "ganforge-torchvision" / "ganforge_torchvision",
]
PLUGIN_PACKAGES = ("ganforge_plugins", "ganforge_relativistic", "ganforge_torchvision")
PLUGIN_FILES = sorted(p for root in PLUGIN_ROOTS for p in root.rglob("*.py"))


def _rel(path: Path) -> str:
    """``ganforge_plugins/networks/mlp.py``: the path from the plugin's top-level package."""
    parts = path.relative_to(REPO / "plugins").parts
    return "/".join(parts[next(i for i, p in enumerate(parts) if p in PLUGIN_PACKAGES):])


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in ``tree``; ``names`` is empty for ``import x``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def import_problems(source: str, filename: str) -> list[str]:
    """What in ``source`` reaches past the public API: ``ganforge.<submodule>`` imports, names
    ``ganforge`` does not export, another plugin's private names, the registry."""
    tree = ast.parse(source, filename)
    problems = []
    own_package = filename.split("/", 1)[0]
    plugin_aliases = set()
    for line, module, names in _imports(tree):
        root = module.split(".", 1)[0]
        if module.startswith("ganforge."):
            problems.append(f"{filename}:{line}: imports {module} (use `from ganforge import ...`)")
        elif module == "ganforge":
            private = [n for n in names if n not in ganforge.__all__]
            if private:
                problems.append(f"{filename}:{line}: imports {private} from ganforge, which does not export them")
        elif root in PLUGIN_PACKAGES:
            private = [n for n in names if n.startswith("_")]
            if private:
                problems.append(f"{filename}:{line}: imports private names {private} from {module}")
            if root != own_package:
                problems.append(f"{filename}:{line}: imports from another distribution's plugin {module}")
            if not names:
                plugin_aliases.add(module)
    for node in ast.walk(tree):  # `import ganforge_plugins.x as m` then `m._private`
        if isinstance(node, ast.alias) and node.asname and node.name.split(".", 1)[0] in PLUGIN_PACKAGES:
            plugin_aliases.add(node.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and ast.unparse(node.value) in plugin_aliases):
            problems.append(f"{filename}:{node.lineno}: uses private {ast.unparse(node)}")
    return problems


def test_the_plugin_files_are_found():
    names = {_rel(p) for p in PLUGIN_FILES}
    assert "ganforge_plugins/networks/mlp.py" in names and "ganforge_relativistic/__init__.py" in names
    assert "ganforge_torchvision/__init__.py" in names and "ganforge_plugins/objectives/losses.py" in names


@pytest.mark.parametrize("path", [pytest.param(p, id=_rel(p)) for p in PLUGIN_FILES])
def test_plugins_import_only_the_public_api(path):
    rel = _rel(path)
    assert import_problems(path.read_text(encoding="utf-8"), rel) == []


@pytest.mark.parametrize("source, expected", [
    ("from ganforge.io import torch_load_data", "imports ganforge.io"),
    ("import ganforge.registry.registry", "imports ganforge.registry.registry"),
    ("def f():\n    from ganforge.registry.registry import build", "imports ganforge.registry.registry"),
    ("from ganforge import _LAZY", "does not export"),
    ("from ganforge_plugins.networks.dcgan import _check_int", "private names ['_check_int']"),
    ("import ganforge_plugins.networks.layers as L\nL._conv(1, 2)", "uses private L._conv"),
])
def test_the_import_check_catches(source, expected):
    problems = import_problems(source, "ganforge_plugins/objectives/losses.py")
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_import_check_passes_public_use():
    ok = "from ganforge import DataInfo, hookimpl\nfrom ganforge_plugins.networks.layers import conv\nimport torch\n"
    assert import_problems(ok, "ganforge_plugins/networks/dcgan.py") == []


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_examples_use_only_the_public_api():
    """The docs are what third-party authors copy: their Python examples import only ``ganforge``."""
    problems = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in _python_blocks(doc.read_text(encoding="utf-8")):
            try:
                ast.parse(block)
            except SyntaxError:  # a fragment (e.g. a signature ending in `: ...` elsewhere); checked by eye
                continue
            problems += import_problems(block, f"docs/{doc.name}")
    assert problems == []


def test_every_exported_name_resolves_and_unknown_names_fail():
    for name in ganforge.__all__:
        assert getattr(ganforge, name) is not None, name
    assert set(ganforge.__all__) <= set(dir(ganforge))
    with pytest.raises(AttributeError, match="module 'ganforge' has no attribute 'GANModul'"):
        ganforge.GANModul  # noqa: B018
    from ganforge.contract.components import DataInfo
    from ganforge.loop.module import GANModule

    assert ganforge.DataInfo is DataInfo and ganforge.GANModule is GANModule


def test_import_ganforge_does_not_import_torch():
    code = ("import sys, ganforge\n"
            "heavy = sorted(m for m in ('torch', 'lightning', 'numpy', 'pluggy') if m in sys.modules)\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_build_component_names_the_keys_in_its_errors():
    from ganforge import ConfigError, build_component

    obj = build_component("objective", "wgan-gp", {"gp_weight": 5.0})
    assert obj.name == "wgan-gp" and obj.gp_weight == 5.0
    with pytest.raises(ConfigError, match=r"^my.base: unknown objective 'hing'. Did you mean 'hinge'"):
        build_component("objective", "hing", name_key="my.base")
    with pytest.raises(ConfigError, match=r"^my.params.gp_wieght: unknown parameter.*'gp_weight'"):
        build_component("objective", "wgan-gp", {"gp_wieght": 1.0}, params_key="my.params")


def test_a_separate_distribution_does_not_import_first_party_plugins():
    problems = import_problems("from ganforge_plugins.networks.mlp import MLPGenerator", "ganforge_relativistic/x.py")
    assert len(problems) == 1 and "another distribution's plugin ganforge_plugins.networks.mlp" in problems[0]
