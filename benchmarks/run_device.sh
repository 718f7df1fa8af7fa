#!/bin/bash
# Run one part of the GPU benchmark on a machine with python3 + torch (CUDA) but without the
# app's pure-Python dependencies: those come as wheels in $WHEELS (default ../.whl).
set -o pipefail
WHEELS=${WHEELS:-../.whl}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $WHEELS/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
python3 benchmarks/gpu_bench.py "$@"
