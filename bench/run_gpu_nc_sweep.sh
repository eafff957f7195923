#!/usr/bin/env bash
# NC land-use sweep on a lent GPU: one process per setting (seeds in sequence, their ensemble scored), several
# processes sharing the GPU at once (the models are tiny: launch-bound). Results and each run's map come back
# in $OUT (tars of at most ~15 MB). Usage (device machine, repo root): OUT=/dir bash bench/run_gpu_nc_sweep.sh SETTINGS.json
set -uo pipefail
[ -d .whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
SETTINGS=${1:-bench/gpu_sweep_settings.json}
BASE=$(python3 -c "import json;print(json.dumps(json.load(open('$SETTINGS'))['base']))")
N=$(python3 -c "import json;print(len(json.load(open('$SETTINGS'))['settings']))")
SEEDS=$(python3 -c "import json;print(' '.join(map(str,json.load(open('$SETTINGS')).get('seeds',[0,1,2]))))")
LIMIT=${LIMIT:-460}
mkdir -p /tmp/res
for i in $(seq 0 $((N-1))); do
  S=$(python3 -c "import json;print(json.dumps([json.load(open('$SETTINGS'))['settings'][$i]]))")
  SD=$(python3 -c "import json;s=json.load(open('$SETTINGS'))['settings'][$i];print(' '.join(map(str,s.pop('_seeds',[]))) or '$SEEDS')")
  timeout $LIMIT python3 bench/nc_sweep.py --device ${DEVICE:-cuda} --work /tmp/w$i --base "$BASE" --settings "$S" \
      --seeds $SD --out /tmp/res/sweep_$(printf %02d $i).json --save-maps /tmp/res/maps$(printf %02d $i) \
      > /tmp/res/log_$(printf %02d $i).txt 2>&1 &
done
wait
cat /tmp/res/log_*.txt | grep -v Warning
cd /tmp/res && tar czf "$OUT/results.tgz" sweep_*.json log_*.txt && ls maps*/ >/dev/null 2>&1
python3 - <<'PY'
import os, tarfile, glob
files = sorted(glob.glob("maps*/*"))
part, size, k = [], 0, 0
def flush():
    global part, size, k
    if part:
        with tarfile.open(os.path.join(os.environ["OUT"], f"maps_{k}.tar"), "w") as t:
            for f in part: t.add(f)
        k += 1
    part, size = [], 0
for f in files:
    s = os.path.getsize(f)
    if size + s > 15_000_000: flush()
    part.append(f); size += s
flush()
PY
ls -la "$OUT"
