# Sourced by the GPU scripts (gpu_check.sh, gpu_speed.sh) from the repository root: their timer and
# `say`, the Python to use ($PYTHON, else .venv/bin/python when it exists and imports torch, else python3),
# and `use_checkout`, which makes ganforge importable from this checkout when it is not installed.
t_start=$(date +%s)
say() { echo "== [$(( $(date +%s) - t_start ))s] $*"; }
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PYTHON=.venv/bin/python
    else PYTHON=python3; fi
fi

# ganforge from this checkout, without building or installing anything: the checkout on
# PYTHONPATH plus a generated ganforge.dist-info whose entry_points.txt is pyproject.toml's
# (the registry finds the first-party plugins through those entry points).
use_checkout() {
if ! "$PYTHON" -c "
import sys
from importlib.metadata import entry_points
sys.exit(0 if any(e.name == 'objectives' for e in entry_points(group='ganforge')) else 1)" 2>/dev/null; then
    SITE="$(mktemp -d /tmp/ganforge-site.XXXXXX)"
    say "ganforge is not installed: using this checkout with entry points from pyproject.toml ($SITE)"
    "$PYTHON" - "$SITE" <<'EOF' || return 4
import sys, tomllib
from pathlib import Path
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
info = Path(sys.argv[1]) / f"ganforge-{project['version']}.dist-info"
info.mkdir(parents=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ganforge\nVersion: {project['version']}\n")
eps = project["entry-points"]["ganforge"]
(info / "entry_points.txt").write_text("[ganforge]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
(info / "top_level.txt").write_text("ganforge\nganforge_plugins\n")
EOF
    export PYTHONPATH="$SITE:$PWD:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}"
fi
}
