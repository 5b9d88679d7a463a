#!/usr/bin/env bash
# Issue 16's GPU figures on a lent GPU machine (Python 3.12 with JAX, no TensorFlow, no network), one step per
# call so that each fits the device tool's 10-minute command limit; a lease is 15 minutes in all, start included.
#
# Here, once:  make gpu-wheels        (the packages that machine lacks, as wheels in .whl/, ignored by git)
# There:       bash bench/gpu_session.sh STEP...     through the device tool, with carry [".whl"]
#
# Steps, most needed first (minutes on an H100, estimated from bench/RESULTS.md's parts):
#   study     the whole job, cold pass: microbead512's search at 512², 8 trials on the GPU, export-best, report (≈ 9)
#   autotune  compile seconds against epoch seconds at XLA autotune levels 4, 1, 0 (≈ 4)
#   epoch     a real 512² epoch against its training steps, bfloat16, batch 32; 6 programs compiled (≈ 8)
# Each step appends its table to $OUT/RESULTS.md and keeps its log in $OUT; copy the sections into bench/RESULTS.md.
# GPU_SESSION_SMOKE=1 PYTHON=.venv/bin/python bash bench/gpu_session.sh study autotune epoch   checks it here
# (CPU, each step's --smoke, the venv's packages instead of .whl/).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
if [ $# -eq 0 ]; then
    sed -n '2,/^set/{/^#/p}' "$0"
    exit 2
fi
for name in "$@"; do
    case $name in
        study | autotune | epoch) ;;
        *)
            echo "unknown step $name: study, autotune or epoch" >&2
            exit 2
            ;;
    esac
done
if [ -d .whl ] && [ -z "${GPU_SESSION_SMOKE:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
PYTHON=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1

step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (at most $limit s): $*"
    local started=$SECONDS
    timeout "$limit" "$PYTHON" "$@" ${GPU_SESSION_SMOKE:+--smoke} --results "$OUT/RESULTS.md" > "$OUT/$name.log" 2>&1
    local code=$?
    tail -n 40 "$OUT/$name.log"
    echo "=== $name: exit $code after $((SECONDS - started)) s"
}

for name in "$@"; do
    case $name in
        study) step study 560 bench/study.py --trials 8 --one-pass --timeout 300 ;;
        autotune)
            step autotune 300 bench/compile_cost.py --autotune-levels 4,1,0 --batch 32 --precision mixed_bfloat16
            ;;
        epoch)
            step epoch 540 bench/epoch.py --size 512 --base-filters 64 --depth 4 --batch 32 \
                --precision mixed_bfloat16 --jit --rounds 1 --epochs 6 --learning-epochs 0
            ;;
    esac
done
