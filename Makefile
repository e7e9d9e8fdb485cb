# One-command set-up: every target below installs the project into .venv first.
# TORCH pins the PyTorch wheel; on a GPU machine `make train TORCH=torch` keeps pip's CUDA build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup train test test-fast lint typecheck bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[test,lint]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) scripts/train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The edit-test loop: everything but the learning, kill and sweep tests (marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

# Ruff (lint and the format check) and mypy, configured in pyproject.toml. CI runs it first.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

typecheck: $(STAMP)
	$(PY) -m mypy

# Throughput and memory against one gymnasium env and Stable-Baselines3 (the `bench` extra).
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
