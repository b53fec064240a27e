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

.PHONY: setup repro test test-fast clean-venv

setup: $(VENV)/.installed

# torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

repro: setup
	dvc repro

test: setup
	$(BIN)/python -m pytest -v --durations=10

test-fast: setup
	$(BIN)/python -m pytest -q -m "not e2e"

clean-venv:
	rm -rf $(VENV)
