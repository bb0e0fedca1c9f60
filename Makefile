# fraudlab: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Quiet, passive threads on shared machines; nothing is sent anywhere.
export OMP_WAIT_POLICY := PASSIVE
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: demo test lint bench lab clean help browser

help:
	@echo "make demo   set up and run the main job on the built-in simulated world"
	@echo "make test   set up and run the whole test suite (lint included)"
	@echo "make bench  run the benchmarks (ratios against baselines measured in the same run)"
	@echo "make lab    start JupyterLab on localhost with the project's environment"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,notebooks,sql,serve,dask]'
	touch $(STAMP)

# The main job on the simulated world (configs/demo.yaml): first champion, then refresh
# periods across the start of the emerging fraud pattern.
demo: $(STAMP)
	$(BIN)/fraudlab demo --config configs/demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check .

# The report test opens the HTML report in Debian's headless Chromium.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium (report test)"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

# Two pytest workers, each test file on one of them (module fixtures are built once): the
# suite waits on subprocesses, services and kernels much of the time.
PYTEST_WORKERS ?= 2
test: lint browser
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_contracts.py
	$(BIN)/python benchmarks/bench_features.py --scale 1 5
	$(BIN)/python benchmarks/bench_explain.py
	$(BIN)/python benchmarks/bench_search_gains.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_public_handbook.py
	$(BIN)/python benchmarks/bench_scale.py --sizes 1000000 5000000

lab: $(STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,) notebooks/

clean:
	rm -rf $(VENV) data reports mlruns .pytest_cache .ruff_cache
