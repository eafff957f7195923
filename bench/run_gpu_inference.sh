#!/usr/bin/env bash
# The GPU inference benchmark as run on a lent H100/H200 (no network there): geo wheels carried in .whl/,
# then bench/inference.py on an 8192^2 3-band deflate scene, ResNet-18, 256 px tiles, overlap 0.5.
# Usage (device machine, repo root): OUT=/some/dir bash bench/run_gpu_inference.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, rasterio; print('torch', torch.__version__, 'gdal', rasterio.__gdal_version__)"
python3 bench/inference.py --device cuda --size 8192 --tile 256 --arch resnet18 --batch-size 256 \
    --loader-workers 12 --workers 16 --threads 8 --rss-sizes 4096,16384 --rss-arch resnet18 --rss-overlap 0.5 --also-no-vector --also-writers 8 --skip n \
    --out /tmp/geocamat-bench --json "$OUT/bench_inference_gpu.json"
