"""ganforge-astro installs from its folder into a clean environment with pip, `ganforge plugins` lists its
components under its distribution name, and uninstalling removes them (issue 7). Offline: no index.

The environment: a new virtual environment (``venv --without-pip``, the interpreter ganforge runs on) whose
site-packages holds a link to every entry of this environment's site-packages *except* ganforge-astro's
(its dist-info and its editable-install finder and ``.pth``). It sees ganforge, torch, ctapipe and pip as
installed here, and ``.pth`` files in it are processed as in any site directory (ganforge's own editable
install works), but ganforge-astro does not exist in it until pip installs it. A ``.pth`` line pointing
at this site-packages would not do: importlib.metadata would still find the astro dist-info there. The
plugin is installed from a copy of its folder, so the build writes nothing into the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1]
COMPONENTS = ("iact-toy", "iact-file", "hillas", "size-energy", "acceptance", "generation-speed", "iact-rotated",
              "iact-canonical", "points-to-source", "survives-cleaning")


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _blocks(listing: str) -> dict[str, str]:
    """`ganforge plugins` output as {header line: the indented lines under it}."""
    out: dict[str, list[str]] = {}
    head = ""
    for line in listing.splitlines():
        if line and not line[0].isspace():
            head = line
            out[head] = []
        elif head:
            out[head].append(line)
    return {h: "\n".join(lines) for h, lines in out.items()}


def _names(block: str) -> set[str]:
    """Component names of a plugin's block (lines ``  <kind>  <name>  <description>``)."""
    return {line.split()[1] for line in block.splitlines() if line.startswith("  ") and not line.startswith("    ")
            and len(line.split()) > 1}


def test_pip_install_lists_and_uninstall_removes(tmp_path):
    site = Path(sysconfig.get_paths()["purelib"])
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    new_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    for entry in site.iterdir():
        if "ganforge_astro" in entry.name.lower():
            continue
        (new_site / entry.name).symlink_to(entry)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")}
    env.update({"OMP_NUM_THREADS": "1", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_CACHE_DIR": "1", "GANFORGE_PROGRESS": "0"})  # offline, and no wheel left in ~/.cache/pip
    probe = ("import importlib.metadata as md, importlib.util as u; "
             "print(u.find_spec('ganforge_astro') is None, 'ganforge-astro' in {d.metadata['Name'] for d in "
             "md.distributions()}, u.find_spec('ganforge') is not None, u.find_spec('ctapipe') is not None)")
    # clean: no ganforge-astro, but ganforge and ctapipe are there
    assert _run([str(py), "-c", probe], env).split() == ["True", "False", "True", "True"]

    src = tmp_path / "ganforge-astro"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "tests"))
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src)], env,
         timeout=300)
    assert _run([str(py), "-c", probe], env).split() == ["False", "True", "True", "True"]
    assert not (new_site / "ganforge_astro").is_symlink() and (new_site / "ganforge_astro" / "speed.py").is_file()

    blocks = _blocks(_run([str(py), "-m", "ganforge", "plugins"], env))
    (astro,) = [b for h, b in blocks.items() if "(ganforge-astro " in h]
    assert set(COMPONENTS) <= _names(astro)
    first_party = {h: _names(b) for h, b in blocks.items() if "(ganforge " in h}
    assert first_party and any("mode-coverage" in names for names in first_party.values())

    _run([str(py), "-m", "pip", "uninstall", "-y", "-q", "ganforge-astro"], env)
    assert not (new_site / "ganforge_astro").exists()
    after = _blocks(_run([str(py), "-m", "ganforge", "plugins"], env))
    assert not [h for h in after if "ganforge-astro" in h]
    assert not {"iact-toy", "generation-speed"} & set().union(*map(_names, after.values()))
    # the first-party plugins are untouched
    assert {h: _names(b) for h, b in after.items() if "(ganforge " in h} == first_party
