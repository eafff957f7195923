# Two entry points for a fresh machine: `make demo` (the main job on the sample) and `make test`.
PYTHON ?= $(shell python3.12 -c 'import sys' >/dev/null 2>&1 && echo python3.12 || echo "env PYENV_VERSION=3.12 python3.12")
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# OpenMP threads sleep instead of spinning when they wait: on a machine where another process holds a core,
# spinning made the test suite up to 15x slower (52 s idle; 14 min with one core busy).
TEST_ENV := OMP_WAIT_POLICY=PASSIVE

.PHONY: demo test test-slow lint clean

# The install needs ~6 GB (torch's wheels); pip's cache would hold a second copy, so it is off.
$(STAMP): pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); [ "$$free" -ge 10 ] || \
	  echo "make: warning: $$free GB free here; installing torch needs about 10 GB while it runs (6 GB after)" >&2
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install -q --no-cache-dir -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/geocamat train samples/nc_landsat.yaml --out demo/run --overwrite
	$(BIN)/geocamat predict --model demo/run/model.geocamat --out demo/map --overwrite samples/nc_landsat/lsat7_2000_*.tif
	$(BIN)/geocamat evaluate --model demo/run/model.geocamat --map demo/map/landuse.tif --reference samples/nc_landsat/strata.tif --blocks 4 --parity odd --label-offset model

test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo
