# Sourced by the bench/gpu_*.sh scripts on the device machine (no network there): install the geo wheels
# carried in .whl/ (if any) into /tmp/site, put them and the repo on PYTHONPATH, say which GPU this is.
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
