#!/usr/bin/env bash
# The full detection benchmark on one GPU (bf16), seeds one after the other: rows none / random-erasing / camat /
# camat and none from a scene model trained in the same run on RSSCN7; 400 px tiles, resnet10 backbone, batch 8,
# 30 epochs over every training tile of the two YELL crops; scored on OSBS_029 and SOAP_061 clean / occluded (mean,
# noise, texture) / decoys. Results JSON (and the log) under $OUT. About 2 min a row on an H200 (session 9), so
# one seed in 8-10 min: bench/gpu_both.sh runs the seeds as parallel processes instead (3 seeds in ~9 min).
#
# Before (on the CPU machine, once): python bench/detection.py --prepare .gpu/data  (about 28 MB: the NEON
# files and RSSCN7 resized to 144 px); carry .gpu (and .whl with the geo wheels, as for the other GPU benches).
# Usage (device machine, repo root): OUT=/some/dir bash bench/gpu_detection.sh
set -euo pipefail
source bench/gpu_env.sh
DATA=${GEOCAMAT_DATA:-.gpu/data}
python3 bench/detection.py --device cuda --data "$DATA/deepforest_neon_trees" --rsscn7 "$DATA/rsscn7" \
    --max-minutes 7 --work /tmp/geocamat-bench-detection --out "$OUT/results_detection_gpu.json" \
    2>&1 | tee "$OUT/bench_detection_gpu.log"
