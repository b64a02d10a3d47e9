#!/usr/bin/env bash
# ganforge on one GPU, in under 5 minutes: the DDP test module with CUDA, then a short bf16 DCGAN
# fit on the bundled digits with its final metrics. For a lent GPU machine with no network.
#
#   bash benchmarks/gpu_check.sh                 # from the repository root (or anywhere)
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#   DRY_RUN=1 bash benchmarks/gpu_check.sh       # no GPU: the same steps on the CPU, shorter
#
# Python: $PYTHON, else .venv/bin/python when it exists and imports torch, else python3 (on the
# lent machines, the one that holds PyTorch). It installs nothing: an uninstalled ganforge runs
# from this checkout, and missing third-party modules are listed (carry them as wheels).
# Logs, the run's summary.json and its sample strip go to $OUT (or /tmp/ganforge-gpu-check).
# Exit status: 0 when every step passed.

set -u
cd "$(dirname "$0")/.." || exit 2
LOG_DIR="${OUT:-/tmp/ganforge-gpu-check}"
mkdir -p "$LOG_DIR"
RUNS="$(mktemp -d /tmp/ganforge-gpu-runs.XXXXXX)"
STATUS=0
. benchmarks/use_checkout.sh  # say, $PYTHON, use_checkout
say "python: $(command -v "$PYTHON" || echo "$PYTHON")"
"$PYTHON" - <<'EOF' || { echo "no usable Python with torch"; exit 2; }
import sys, torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), {n} GPU(s):",
      ", ".join(torch.cuda.get_device_name(i) for i in range(n)) or "none")
if n:
    print("bf16 supported:", torch.cuda.is_bf16_supported(), "| NCCL:", torch.distributed.is_nccl_available())
EOF

MISSING=$("$PYTHON" - <<'EOF'
import importlib.util
need = {"lightning": "lightning", "torchmetrics": "torchmetrics", "pluggy": "pluggy", "yaml": "pyyaml",
        "numpy": "numpy", "rich": "rich", "PIL": "pillow", "sklearn": "scikit-learn", "pytest": "pytest",
        "pytest_timeout": "pytest-timeout"}
print(" ".join(dist for mod, dist in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [ -n "$MISSING" ]; then
    echo "MISSING Python packages: $MISSING"
    echo "  carry them as wheels (pip download --no-deps ... -d .whl) and install with --no-index."
    case " $MISSING " in *" lightning "*|*" pluggy "*|*" pyyaml "*|*" torchmetrics "*|*" pytest "*) exit 3 ;; esac
fi

use_checkout || exit 4  # ganforge from this checkout when it is not installed
"$PYTHON" -c "import ganforge, ganforge_plugins; print('ganforge', ganforge.__file__)" || exit 4

if [ -n "${DRY_RUN:-}" ]; then ACC=cpu; STEPS=60; MARK="distributed"; else ACC=gpu; STEPS=400; MARK="cuda"; fi
MARK="${GPU_CHECK_MARK:-$MARK}"  # e.g. GPU_CHECK_MARK="cuda or distributed": the CPU (gloo) tests too

# 1. The DDP test module. On a GPU: its CUDA tests (one GPU: GANDDPStrategy over NCCL with
#    world size 1, bf16-mixed; the two-GPU test skips itself on one GPU).
say "pytest tests/test_strategy.py -m $MARK"
t0=$(date +%s)
timeout 240 "$PYTHON" -m pytest tests/test_strategy.py -m "$MARK" -v -rs -p no:cacheprovider \
    2>&1 | tee "$LOG_DIR/pytest.log" | grep -E "PASSED|FAILED|SKIPPED|ERROR|passed|failed|error" | tail -20
rc=${PIPESTATUS[0]}
say "pytest exit $rc in $(( $(date +%s) - t0 )) s"
[ "$rc" -ne 0 ] && STATUS=1

# 2. A short DCGAN on the digits (16x16), bf16-mixed, with the config's metrics at the end
#    (FID and class coverage on the shipped digits-cnn features, 2000 samples).
say "ganforge fit -c digits-dcgan, $STEPS steps, bf16-mixed on $ACC"
t0=$(date +%s)
timeout 150 "$PYTHON" -m ganforge fit -c digits-dcgan train.max_steps="$STEPS" trainer.precision=bf16-mixed \
    trainer.accelerator="$ACC" trainer.devices=1 metrics.every_n_steps=0 train.checkpoint_every_n_steps=100000 \
    root_dir="$RUNS" --no-progress 2>&1 | tee "$LOG_DIR/dcgan.log" | grep -v "^\s*$" | tail -25
rc=${PIPESTATUS[0]}
dt=$(( $(date +%s) - t0 ))
say "fit exit $rc in $dt s (start-up and final evaluation included)"
[ "$rc" -ne 0 ] && STATUS=1
"$PYTHON" - "$RUNS" <<'EOF' || STATUS=1
import json, sys
from pathlib import Path
runs = sorted(Path(sys.argv[1]).glob("digits-dcgan/*/summary.json"))
if not runs:
    sys.exit("no summary.json written")
s = json.loads(runs[-1].read_text())
print("counters:", s.get("counters"))
for name, m in (s.get("metrics") or {}).items():
    print(f"  {name} ({m.get('evaluated')}):", {k: round(v, 4) for k, v in m.get("values", {}).items()})
print("sample strip:", runs[-1].parent / "samples" / "progress.png")
EOF

for f in "$RUNS"/digits-dcgan/*/summary.json "$RUNS"/digits-dcgan/*/samples/progress.png; do
    [ -f "$f" ] && cp "$f" "$LOG_DIR/"
done
say "done: status $STATUS (logs in $LOG_DIR)"
exit $STATUS
