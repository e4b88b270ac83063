#!/usr/bin/env bash
# Every GPU check in one run, for a CUDA machine that already has torch and triton (the numbers
# in RESULTS.md, "GPU", come from this script). Logs go to ${OUT:-gpu_logs}/.
#   bash benchmarks/gpu_checks.sh [DEMO_DIR]
# Without an installed mediqa, the repo's packages are linked onto PYTHONPATH; wheels of missing
# dependencies (pydicom, nibabel, pylibjpeg...) in .whl/ are installed there first.
set -u
out=${OUT:-gpu_logs}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ! python3 -c "import mediqa_cli, mediqa_kernels" 2>/dev/null; then
    site=/tmp/mediqa-site
    mkdir -p "$site"
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    fi
    for pair in kernels:mediqa_kernels train:mediqa_train weights:mediqa_weights; do
        ln -sfn "$PWD/${pair%%:*}" "$site/${pair##*:}"
    done
    export PYTHONPATH="$site:$PWD"
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$out/env.log"
timeout 200 python3 -m pytest -q -p no:cacheprovider -rfE tests/kernels/test_kernels_cuda.py \
    2>&1 | tee "$out/cuda_tests.log"
timeout 120 python3 benchmarks/kernels.py --device cuda 2>&1 | tee "$out/kernels_bench.log"
timeout 60 python3 benchmarks/tune_attention.py --split-only --head-dims 64 32 \
    2>&1 | tee "$out/attention_split.log"
demo=()
if [ $# -ge 1 ]; then demo=(--demo "$1"); fi
timeout 210 python3 benchmarks/gpu.py "${demo[@]}" --corpus corpus --train-steps 400 \
    2>&1 | tee "$out/gpu_bench.log"
