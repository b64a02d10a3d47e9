#!/usr/bin/env bash
# Creates the virtual environment and installs ganforge, its first-party plugins and the
# test tools. Without a GPU it pins the CPU build of torch (2.13.0, on disk on our machines)
# so pip never pulls a multi-GB CUDA build; with `nvidia-smi` present it takes what pip picks.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# pip's own output and download bars are shown (a first install fetches hundreds of MB); only pip's
# "a newer pip exists" notice is off.
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
CONSTRAINTS="$VENV/constraints.txt"
: > "$CONSTRAINTS"
if [ -n "${GANFORGE_TORCH:-}" ]; then
  echo "torch==${GANFORGE_TORCH}" > "$CONSTRAINTS"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  # CPU-only machine: the CPU wheel. Keep an already installed torch if there is one.
  have=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
  echo "torch==${have:-2.13.0}" > "$CONSTRAINTS"
fi
pin=$(cat "$CONSTRAINTS")
echo "ganforge: installing ganforge, its first-party plugins and the test tools into $VENV (${pin:-torch as pip picks it})"
"${PIP[@]}" -c "$CONSTRAINTS" -e ".[test]" -e plugins/ganforge-relativistic -e plugins/ganforge-torchvision
"${PIP[@]}" -c "$CONSTRAINTS" -e plugins/ganforge-astro  # IACT images with ctapipe (issue 7); pulls ctapipe 0.28
"$VENV/bin/python" -c 'import torch, lightning; print(f"ganforge env ready: torch {torch.__version__}, lightning {lightning.__version__}")'
