#!/bin/sh
# The CPU run recorded in docs/bench_camat.md (2 cores shared with 3 other agents: load ~9): main methods,
# then the fill variants. The interleaved step timing was taken once at 64 px
# (bench/results/camat_timing_cpu_64px.json, 2 threads); it is repeated here at 56 px, 1 thread.
set -e
PY=${PY:-/work/main/.venv/bin/python}
OUT=bench/results/camat_accuracy_cpu.json
COMMON="--arch camnet-s --size 56 --epochs 30 --seeds 3 --threads 1 --auc-samples 64 --out $OUT"
$PY bench/camat_accuracy.py $COMMON --methods none,cutout,random-erasing,hide-and-seek,camat-fresh,camat-cached --resume --timing-rounds 10
$PY bench/camat_accuracy.py $COMMON --methods camat-white,camat-mixed --resume --timing-rounds 0
# added after the first results (same settings): fixed-area CAMAT, and Cutout with the same fills as CAMAT
# (is the cloud robustness from the fill or from CAMAT?)
$PY bench/camat_accuracy.py $COMMON --methods camat-area25,cutout-mixed,cutout-white --resume --timing-rounds 0
