# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint format clean-demo clean

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

# The demo study and its outputs, so that `make demo` runs it again from scratch; .venv stays.
clean-demo:
	rm -rf studies/demo.db studies/demo.db-* studies/demo/

# clean-demo, plus .venv and every SQLite study database in studies/ (not only the demo's).
clean: clean-demo
	rm -rf $(VENV) studies/*.db studies/*.db-*
