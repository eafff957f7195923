#!/usr/bin/env bash
# Issue 15's CAMAT benchmark and issue 14's detection benchmark in one device call (one 15-minute lease): the
# CAMAT bench first measures its interleaved step times alone, then trains while the detection seeds run as
# parallel processes (one per seed: small detectors leave most of the GPU idle). Everything stops at
# DEADLINE seconds; per-row detection results are written as they finish (*.partial). Under $OUT:
# camat_accuracy_gpu.json, camat_robustness_gpu.png, det_seed*.json(.partial), logs.tar.gz.
#
# Before (CPU machine): python bench/detection.py --prepare .gpu/data; ../shared/device/fetch-wheels.sh and keep
# only the wheels the benches import (rasterio affine cligj click-plugins shapely torchgeo). Carry .gpu and .whl.
# Usage (device machine, repo root): OUT=/dir bash bench/gpu_both.sh
set -uo pipefail
start=$(date +%s)
source bench/gpu_env.sh
DEADLINE=${DEADLINE:-560}
DEVICE=${DEVICE:-cuda}
SEEDS=${SEEDS:-0 1 2}
DATA=${GEOCAMAT_DATA:-.gpu/data}
CAMAT_ARGS=${CAMAT_ARGS:---size 144 --arch resnet18 --epochs 60 --seeds 3 --batch-size 64 --threads 6 --timing-rounds 10}
CAMAT_METHODS=${CAMAT_METHODS:-none,cutout,random-erasing,hide-and-seek,camat-cached,camat-default-blur2,camat-fresh,camat-randarea-wide,camat-randarea-p50,camat-rising,camat-rising-randarea}
DET_SET=${DET_SET:-epochs=30 batch_size=8 num_workers=3}
# rows in order of what is least known (a deadline cuts the last ones): clean + occluded pairs (session 10, CPU:
# +3.6 over plain CAMAT on other sites, still -7 under none), then the bench's rows
DET_ROWS=${DET_ROWS:-"none=none camat-pairs=camat:camat.mix=[mean,white,blur],camat.consistency=1 camat=camat:camat.mix=[mean,white,blur] none-init=none:init_from=SCENE random-erasing=random-erasing camat-init=camat:camat.mix=[mean,white,blur],init_from=SCENE"}
left() { echo $(( DEADLINE - ($(date +%s) - start) )); }

python3 bench/camat_accuracy.py --device "$DEVICE" --root "$DATA/rsscn7" $CAMAT_ARGS --methods "$CAMAT_METHODS" \
    --out "$OUT/camat_accuracy_gpu.json" --plot "$OUT/camat_robustness_gpu.png" >"$OUT/camat.log" 2>&1 &
camat=$!
for _ in $(seq 1 120); do  # the step timing runs alone
    grep -q "interleaved step times" "$OUT/camat.log" 2>/dev/null && break
    kill -0 $camat 2>/dev/null || break
    sleep 1
done
echo "camat step timing done after $(( $(date +%s) - start )) s"
pids=()
read -r -a det_rows <<< "$DET_ROWS"  # split on spaces, no glob expansion of the rows' [..] lists
for s in $SEEDS; do
    python3 bench/detection.py --device "$DEVICE" --data "$DATA/deepforest_neon_trees" --rsscn7 "$DATA/rsscn7" \
        --seeds "$s" --threads 3 --set $DET_SET ${DET_ROWS:+--rows "${det_rows[@]}"} --work "/tmp/geocamat-det-$s" --out "$OUT/det_seed$s.json" \
        >"$OUT/det_seed$s.log" 2>&1 &
    pids+=($!)
done
while [ "$(left)" -gt 0 ]; do
    alive=0
    for p in $camat "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 2
done
for p in $camat "${pids[@]}"; do kill "$p" 2>/dev/null; done
sleep 1
echo "stopped after $(( $(date +%s) - start )) s"
grep -h "seed\|interleaved\|scene model\|Error\|error" "$OUT"/*.log | tail -60
(cd "$OUT" && tar czf logs.tar.gz *.log && rm -f *.log)
ls -la "$OUT"
