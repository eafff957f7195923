#!/bin/bash
# Detection predict in 1 vs 2 processes (CPU), each run a fresh process timed by /usr/bin/time.
#   bash bench/detection_ranks.sh MODEL SCENE WORK
# MODEL: a detection bundle; SCENE: e.g. the 100x mirrored OSBS scene that bench/detection_sheets.py --repeat 10
# writes to WORK/scene.tif. Outputs go to WORK/rk_*; compare their detections.gpkg.
set -e
MODEL=$1; S=$2; WORK=$3
G=${GEOCAMAT:-geocamat}
mkdir -p "$WORK" && cd "$WORK"
for run in "p1t2 2 " "p1t1 1 " "p2t1 2 --devices 2"; do
  set -- $run
  name=$1; threads=$2; shift 2
  /usr/bin/time -f "$name %e s %M KB" env OMP_NUM_THREADS=$threads $G predict --model "$MODEL" --out rk_$name --overwrite -q "$@" $S 2>&1 | grep -v note || true
done
