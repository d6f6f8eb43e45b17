# Two commands on a fresh machine: `make demo` (set up, build the feeds from the
# shipped seeds, preview the digest) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint

$(BIN)/syndicator: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/syndicator

setup: $(BIN)/syndicator

demo: setup
	$(BIN)/syndicator check
	$(BIN)/syndicator build
	$(BIN)/syndicator send --dry-run

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check syndicator tests benchmarks
	$(BIN)/mypy
