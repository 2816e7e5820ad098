#!/usr/bin/env bash
# Performance measurements of sci2i as JSON files (docs/PERFORMANCE.md explains them).
#
#   bash scripts/gpu_bench.sh [OUT_DIR]        # OUT_DIR defaults to $OUT, else bench-results/
#
# On a CUDA machine: paper scale (VGG16, 384x384 crops, random init), within ~8 minutes:
#   paper_compare_b4.json   seg + I2I step and student one-forward, fp32-eager vs bf16-optimised
#   paper_bf16_b8.json      seg + I2I step at batch 8, bf16
#   paper_data.json         input pipeline alone at paper size (no workers vs workers + cache)
#   paper_r101_bf16_b4.json seg step of the ResNet-101 presets (gta5-cityscapes-r101) at batch 4, bf16
#   paper_compile_b8.json   as paper_bf16_b8 with torch.compile (skipped if time runs short)
# Without CUDA: the CPU fallback measures the toy-city scale (EfficientNet-Lite0, 128x128
# crops) into cpu_toycity.json. SCI2I_BENCH_TINY=1 shrinks everything to a smoke test
# (used by tests/test_bench.py). Each command has its own time limit, so one slow part cannot
# eat the others' time; a part that fails or times out is reported and the rest still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-bench-results}}"
mkdir -p "$OUT_DIR"
if [ -x .venv/bin/sci2i ] && [ -z "${SCI2I_BENCH_PYTHON:-}" ]; then
    SCI2I=(.venv/bin/sci2i)
else
    SCI2I=("${SCI2I_BENCH_PYTHON:-python}" -m sci2i.cli)
fi
PY="${SCI2I_BENCH_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
status=0

run() {  # run LIMIT_S NAME ARGS...: one bench command with a time limit
    local limit="$1" name="$2"; shift 2
    echo "== $name (limit ${limit}s): sci2i bench $*"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=20 "$limit" "${SCI2I[@]}" bench "$@" --json "$OUT_DIR/$name.json"
    local rc=$?
    echo "== $name: rc=$rc after $((SECONDS - t0))s"
    [ $rc -eq 0 ] || status=1
}

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null | tee "$OUT_DIR/gpu.txt"
    run 170 paper_compare_b4 --profile paper --device cuda --phase seg,i2i,seg-forward --compare \
        --batch 4 --amp bf16 --steps 15 --warmup 5
    run 100 paper_bf16_b8 --profile paper --device cuda --phase seg,i2i --batch 8 --amp bf16 \
        --steps 20 --warmup 5
    run 120 paper_data --profile paper --device cuda --phase data --compare --workers 6 --cache \
        --data-images 48 --data-steps 30 --warmup 2
    run 90 paper_r101_bf16_b4 --profile paper-r101 --device cuda --phase seg --batch 4 --amp bf16 \
        --steps 15 --warmup 5
    if [ $SECONDS -lt 330 ]; then
        run $((470 - SECONDS)) paper_compile_b8 --profile paper --device cuda --phase seg,i2i \
            --batch 8 --amp bf16 --compile --steps 20 --warmup 5
    else
        echo "== paper_compile_b8 skipped: ${SECONDS}s used"
    fi
elif [ "${SCI2I_BENCH_TINY:-0}" = "1" ]; then
    run 120 cpu_tiny --device cpu --profile toycity --phase seg,i2i,data --compare --batch 1 --crop 32 \
        --steps 1 --warmup 1 --data-steps 3 --data-images 4 --workers 1 --threads 1
else
    run 1500 cpu_toycity --device cpu --profile toycity --phase seg,i2i,data,seg-forward --compare \
        --steps 5 --warmup 2 --data-steps 40
fi
echo "results in $OUT_DIR (total ${SECONDS}s)"
exit $status
