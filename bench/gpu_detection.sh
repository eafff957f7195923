#!/usr/bin/env bash
# The full detection benchmark on one GPU (H100, bf16): rows none / random-erasing / camat / camat from a scene
# model trained in the same run on RSSCN7; 3 seeds; 400 px tiles, resnet10 backbone, 12 epochs over every
# training tile of the two YELL crops; scored on OSBS_029 and SOAP_061 clean / occluded (mean, noise,
# texture) / decoys. Results JSON (and the log) under $OUT. Budget: < 8 minutes (the bench starts no seed
# that would end after 7 minutes, judged by the previous seed's duration).
#
# Before (on the CPU machine, once): python bench/detection.py --prepare .gpu/data  (about 25 MB: the NEON
# files and RSSCN7 resized to 128 px); carry .gpu (and .whl with the geo wheels, as for the other GPU benches).
# Usage (device machine, repo root): OUT=/some/dir bash bench/gpu_detection.sh
set -euo pipefail
source bench/gpu_env.sh
DATA=${GEOCAMAT_DATA:-.gpu/data}
python3 bench/detection.py --device cuda --data "$DATA/deepforest_neon_trees" --rsscn7 "$DATA/rsscn7" \
    --max-minutes 7 --work /tmp/geocamat-bench-detection --out "$OUT/results_detection_gpu.json" \
    2>&1 | tee "$OUT/bench_detection_gpu.log"
