# Two entry points that work on a fresh clone with only Python 3.11+ and pip:
#   make demo   - start the emulator, collect, reconcile, print a summary
#   make test   - the whole test suite (lint and type checks included)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/agent demo

lint: $(STAMP)
	$(BIN)/ruff check agent emulator tests
	$(BIN)/mypy

# Most end-to-end tests wait on emulated clocks, quotas and subprocesses, not on the CPU: four
# workers (one test file each at a time) finish the suite in about a quarter of the serial time.
test: lint
	$(BIN)/pytest -q -n 4 --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
