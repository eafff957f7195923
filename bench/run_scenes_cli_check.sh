#!/bin/bash
# The product-CLI cross-check of docs/bench_camat.md (session 7): train a scene model on RSSCN7 through
# `geocamat train --scenes` (56 px, camnet-s, 30 epochs, 1 thread), then score it with `geocamat evaluate
# --scenes` (clean and occluded). Usage, from the repo root: bash bench/run_scenes_cli_check.sh NAME [train options]
# e.g. `... new --seed 1`, `... cutout --regulariser cutout`. Output: $WORK/NAME/, $WORK/NAME.{train,eval}.log
set -euo pipefail
name=$1; shift
DATA=${DATA:-../shared/data/rsscn7}
WORK=${WORK:-/tmp/geocamat-scenes-check}
GEOCAMAT=${GEOCAMAT:-.venv/bin/geocamat}
mkdir -p "$WORK"
{ time OMP_NUM_THREADS=1 $GEOCAMAT train --scenes "$DATA" --set image_size=56 --arch camnet-s --epochs 30 \
    --batch-size 32 --out "$WORK/$name" --overwrite -q "$@" ; } > "$WORK/$name.train.log" 2>&1
OMP_NUM_THREADS=1 $GEOCAMAT evaluate --model "$WORK/$name/model.geocamat" --scenes "$DATA" > "$WORK/$name.eval.log" 2>&1
cat "$WORK/$name.eval.log"
