#!/usr/bin/env bash
# Issue 9's GPU measurements in one call (239 s on an H200), for a lent GPU machine with no network:
#   1. the CUDA tests of the loop (no host sync in a non-logging iteration or outside a chunk's sync
#      point, DDP over NCCL with world size 1, metrics on the GPU): `pytest -m cuda`;
#   2. benchmarks/gpu.py on DCGAN-64 at batch 128 (naive fp32, ganforge fp32, bf16-mixed, bf16 + CUDA
#      graphs + channels_last, then naive and ganforge fp32 again: the call's own noise), at batch 256,
#      and ResNet-32 at batch 128 (naive and ganforge fp32).
#
#   bash benchmarks/gpu_speed.sh            # from the repository root (or anywhere)
#   QUICK=1 bash benchmarks/gpu_speed.sh    # no GPU: the same steps on the CPU, tiny (a smoke test)
#
# Each step has its own time limit, so a slow one does not lose the others. Logs and each
# benchmark's gpu_benchmark.json go to $OUT/<step> (or /tmp/ganforge-gpu-speed). The figures of
# docs/results.md ("GPU") came from this script.

set -u
cd "$(dirname "$0")/.." || exit 2
LOG_DIR="${OUT:-/tmp/ganforge-gpu-speed}"
mkdir -p "$LOG_DIR"
export PYTHONUNBUFFERED=1
STATUS=0
. benchmarks/use_checkout.sh  # say, $PYTHON, use_checkout
use_checkout || exit 4  # ganforge from this checkout when it is not installed
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "${QUICK:-}" ]; then
    BENCH=(--device cpu --quick); MARK="cuda"; TESTS=(tests/test_module.py)
else
    BENCH=(); MARK="cuda"
    TESTS=(tests/test_module.py tests/test_strategy.py tests/plugins/test_classifier_metrics.py tests/plugins/test_image_metrics.py)
fi

say "pytest -m $MARK ${TESTS[*]}"
mkdir -p "$LOG_DIR/tests"
timeout 200 "$PYTHON" -m pytest "${TESTS[@]}" -m "$MARK" -v -rs -p no:cacheprovider >"$LOG_DIR/tests/pytest.log" 2>&1
rc=$?
grep -E "PASSED|FAILED|SKIPPED|ERROR|passed|failed" "$LOG_DIR/tests/pytest.log" | tail -15
say "pytest exit $rc"
# 5: no test collected, which is right where no GPU is visible (QUICK) and wrong on a GPU
[ "$rc" -ne 0 ] && ! { [ -n "${QUICK:-}" ] && [ "$rc" -eq 5 ]; } && STATUS=1

bench() {  # bench <step name> <time limit s> <gpu.py arguments...>
    local name=$1 limit=$2; shift 2
    say "benchmarks/gpu.py $* ${BENCH[*]}"
    mkdir -p "$LOG_DIR/$name"
    OUT="$LOG_DIR/$name" timeout "$limit" "$PYTHON" benchmarks/gpu.py "$@" "${BENCH[@]}" 2>&1 \
        | grep -v -E "^\s*$|Warning|warn\(" | tee "$LOG_DIR/$name/gpu.log" | tail -12
    local rc=${PIPESTATUS[0]}
    say "$name: exit $rc"
    [ "$rc" -ne 0 ] && STATUS=1
}
bench dcgan64_b128 170 --models dcgan-64 \
    --variants "naive fp32,ganforge fp32,ganforge bf16-mixed,ganforge bf16+compile-ro+cl,naive fp32,ganforge fp32"
bench dcgan64_b256 110 --models dcgan-64 --batch-size 256 --iterations 150 \
    --variants "naive fp32,ganforge fp32,ganforge bf16+compile-ro+cl"
bench resnet32_b128 60 --models resnet-32 --variants "naive fp32,ganforge fp32"
say "done: status $STATUS (logs in $LOG_DIR)"
exit $STATUS
