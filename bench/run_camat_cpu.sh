#!/bin/sh
# The CPU run recorded in docs/bench_camat.md (2 shared cores): main methods, then the fill variants.
set -e
PY=${PY:-/work/main/.venv/bin/python}
OUT=bench/results/camat_accuracy_cpu.json
COMMON="--arch camnet-s --size 64 --epochs 30 --seeds 3 --auc-samples 64 --out $OUT --plot docs/img/camat_robustness.png"
$PY bench/camat_accuracy.py $COMMON --methods none,cutout,random-erasing,hide-and-seek,camat-fresh,camat-cached --timing-rounds 10
$PY bench/camat_accuracy.py $COMMON --methods camat-white,camat-mixed --resume --timing-rounds 0
