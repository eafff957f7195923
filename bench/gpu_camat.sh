#!/usr/bin/env bash
# Issue 15's CAMAT benchmark on one GPU: every candidate for the default against the baselines on RSSCN7
# (ResNet-18 CamNet from scratch, 144 px, 60 epochs, 3 seeds; clean / random / top-CAM / cloud / noise / blur
# occlusions; step times measured round-robin). JSON + plot under $OUT. Budget: a few minutes on an H100 (the
# 224 px / 40 epoch run of 2026-11-26 took 124 s of training and scoring for 23 runs).
#
# Before (CPU machine, once): python bench/detection.py --prepare .gpu/data (RSSCN7 at 144 px) and carry .gpu (and .whl with the
# geo wheels, as for the other GPU benches). Usage (device machine, repo root): OUT=/dir bash bench/gpu_camat.sh
set -euo pipefail
source bench/gpu_env.sh
METHODS=${METHODS:-none,cutout,random-erasing,hide-and-seek,camat-cached,camat-fresh,camat-area25-half-random-meanmix-p35,camat-randarea,camat-p50,camat-pairs,camat-random75}
python3 bench/camat_accuracy.py --device cuda --root "${GEOCAMAT_DATA:-.gpu/data}/rsscn7" --size 144 --arch resnet18 \
    --epochs 60 --seeds 3 --batch-size 64 --threads 8 --timing-rounds 10 --methods "$METHODS" \
    --out "$OUT/camat_accuracy_gpu.json" --plot "$OUT/camat_robustness_gpu.png" 2>&1 | tee "$OUT/camat_accuracy_gpu.log"
