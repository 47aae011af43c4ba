# `make test` and `make demo` build everything they need from nothing (DESIGN.md §5).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := $(CURDIR)/.cache
export PIP_CACHE_DIR := $(CACHE)/pip
export HF_HOME := $(CACHE)/huggingface
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLCONFIGDIR := $(CACHE)/matplotlib

.PHONY: test venv clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-test.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

test: venv
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(CACHE)
