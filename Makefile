# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint format clean-demo clean gpu-wheels

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

demo: install
	$(BIN)/optimize run --study demo
	$(BIN)/optimize export-best --study demo
	$(BIN)/optimize report --study demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two test processes: most tests wait on subprocesses, databases and heartbeats, so two overlap well on 2 cores.
test: lint
	$(BIN)/python -m pytest -n 2

# Wheels for a lent GPU machine (Python 3.12, JAX, no network): the packages it lacks, at this venv's versions.
GPU_WHEELS := keras|namex|optree|optuna|alembic|mako|colorlog|sqlalchemy|plotly
WHEEL_PLATFORMS := $(foreach n,2_28 2_27 2_17,--platform manylinux_$(n)_x86_64) --platform manylinux2014_x86_64
gpu-wheels: install
	rm -rf .whl
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(WHEEL_PLATFORMS) -d .whl \
		$$($(BIN)/python -m pip freeze | grep -iE '^($(GPU_WHEELS))==')
	ls .whl

# The demo study, its kept models and its outputs, so that `make demo` runs it again from scratch; .venv stays.
clean-demo:
	rm -rf studies/demo.db studies/demo.db-* studies/demo.artifacts/ studies/demo/

# clean-demo, plus .venv and every SQLite study database in studies/ with its kept models (not only the demo's).
clean: clean-demo
	rm -rf $(VENV) studies/*.db studies/*.db-* studies/*.artifacts/
