#!/bin/bash
# The product-CLI cross-check of docs/bench_camat.md (session 7): ./bench/run_scenes_cli_check.sh NAME [train options]
# (it used a helper that runs the CLI from a source tree; with an installed geocamat, call `geocamat` instead).
# run.sh NAME [extra]: product CLI on RSSCN7 (56 px, camnet-s, 30 epochs, seed 0), then evaluate --scenes
name=$1; shift
D=/work/shared/data/rsscn7
cd /work/main
{ time OMP_NUM_THREADS=1 TREE=/work/main nice /tmp/lead/gc.sh train --scenes $D --set image_size=56 --arch camnet-s --epochs 30 --batch-size 32 --out /tmp/lead/sc/$name --overwrite -q "$@" ; } > /tmp/lead/sc/$name.train.log 2>&1
OMP_NUM_THREADS=1 TREE=/work/main /tmp/lead/gc.sh evaluate --model /tmp/lead/sc/$name/model.geocamat --scenes $D > /tmp/lead/sc/$name.eval.log 2>&1
