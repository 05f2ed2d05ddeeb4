#!/usr/bin/env bash
# Issue 14, item 5: the CUDA checks, as one script for a GPU machine (none was lent to the
# session that wrote it). Writes everything to ${OUT:-/tmp/rsseg-cuda}; about 5-8 minutes on
# one H100/H200. Needs a CUDA build of torch in the environment that runs it.
#   bash benchmarks/cuda_checks.sh [PYTHON]
set -u
PY=${1:-python}
OUT=${OUT:-/tmp/rsseg-cuda}
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"
  uptime
} > "$OUT/device.txt" 2>&1
# correctness first: the device path against the host path on the same GPU
timeout 240 "$PY" -m pytest -q tests/predict/test_device_path.py > "$OUT/tests.txt" 2>&1
# the pipeline's ceiling: null network on the device path (uint8 batches, blend on the GPU)
timeout 240 "$PY" benchmarks/pipeline_ceiling.py --device cuda --predictor torch \
  --batch-size auto --readers 8 --size 8192 --repeats 3 > "$OUT/ceiling_cuda.txt" 2>&1
# end-to-end / model-only, bf16 autocast: goal end-to-end >= 0.8 of model-only for bafnet
timeout 300 "$PY" benchmarks/predict_overhead.py --device cuda --batch-size auto \
  --threads 8 --size 8192 --repeats 3 --model bafnet,baff_skipnet > "$OUT/overhead_cuda.txt" 2>&1
tail -n 5 "$OUT"/*.txt
