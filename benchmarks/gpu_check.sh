#!/usr/bin/env bash
# The GPU checks, ready for the day a GPU is lent: about 8 minutes on one H100 or H200.
#
#     bash benchmarks/gpu_check.sh OUT_DIR          # from the repository root
#
# It runs with the machine's own python3 (the lent machines' image holds CuPy, PyTorch,
# NumPy, matplotlib, pytest and hypothesis; nothing is installed) and minivae from this
# checkout (PYTHONPATH). Every step has its own time limit, writes its output into OUT_DIR
# and records its exit status in OUT_DIR/summary.json, and a failed step does not stop the
# others:
#   1. the machine: nvidia-smi, the versions;
#   2. the CuPy tests on the real GPU (every cupy-parametrized test, the GPU stand-in's
#      tests and the compile check, now with a device);
#   3. the three training examples and approximate_inference.py with --backend cupy, a few
#      epochs each;
#   4. benchmarks/gpu_parity.py: the same draws on NumPy and CuPy, the loss curves within
#      float32 rounding growth (its docstring gives the tolerance and why);
#   5. benchmarks/bench_train_step.py --backend cupy against PyTorch CUDA eager at batch
#      128, 1024 and 8192 (targets: at least 1.0x PyTorch at 128, at least 70 % of the
#      cuBLAS bound, gemm_fraction, from 4096 on).
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_CACHE_DIR="$OUT/cupy-cache"
export MPLBACKEND=Agg
PY=${PYTHON:-python3}
declare -A STATUS

step() {   # step NAME SECONDS COMMAND...: run it with a limit, output to OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    STATUS[$name]="$? $((SECONDS - t0))"
    echo "$name: exit ${STATUS[$name]% *} after ${STATUS[$name]#* } s"
}

step machine 30 bash -c "nvidia-smi; $PY -c 'import json, sys, numpy, cupy; \
print(json.dumps({\"python\": sys.version.split()[0], \"numpy\": numpy.__version__, \
\"cupy\": cupy.__version__, \"device\": cupy.cuda.runtime.getDeviceProperties(0)[\"name\"].decode()}))'"
step pytest_cupy 150 "$PY" -m pytest -q -p no:cacheprovider tests/backend tests/math -k cupy
step examples 120 bash -c "
  set -e
  $PY examples/train_vae.py --backend cupy --epochs 3 --no-progress --iw-samples 50 --out '$OUT/vae'
  $PY examples/train_autoencoder.py --backend cupy --epochs 2 --no-progress --out '$OUT/ae'
  $PY examples/train_denoising.py --backend cupy --epochs 2 --no-progress --out '$OUT/dae'
  $PY examples/approximate_inference.py --backend cupy --epochs 5 --digits 2 --out '$OUT/approx'"
step parity 90 "$PY" benchmarks/gpu_parity.py --steps 300 --json "$OUT/parity.json"
step bench 150 bash -c "cd benchmarks && $PY bench_train_step.py --machine --backend cupy \
  --compare-torch --batch-size 128 1024 8192 --seconds 8 --rounds 4"

{
    echo "{"
    first=1
    for name in machine pytest_cupy examples parity bench; do
        [ $first = 1 ] || echo ","
        first=0
        printf '  "%s": {"exit": %s, "seconds": %s}' "$name" "${STATUS[$name]% *}" "${STATUS[$name]#* }"
    done
    echo
    echo "}"
} > "$OUT/summary.json"
cat "$OUT/summary.json"
