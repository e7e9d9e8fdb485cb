# One-command set-up: every target below installs the project into .venv first.
# TORCH is the PyTorch requirement handed to pip, which takes the build its package index offers
# (on PyPI for Linux a CUDA build); `make train TORCH=<requirement>` asks for another.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_SPEC := $(VENV)/.torch-spec

.PHONY: setup train test test-fast lint typecheck bench clean FORCE

setup: $(STAMP)

# .venv/.torch-spec holds the TORCH of the last install. A different TORCH rewrites it, which
# leaves the stamp older than it, so the project is installed again with the new one.
ifneq ($(strip $(TORCH)),$(strip $(shell cat $(TORCH_SPEC) 2>/dev/null)))
$(TORCH_SPEC): FORCE
endif
$(TORCH_SPEC):
	mkdir -p $(VENV)
	echo '$(TORCH)' > $(TORCH_SPEC)

$(STAMP): pyproject.toml $(TORCH_SPEC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[test,lint]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) scripts/train.py $(ARGS)

# Two worker processes at one torch thread each (tests/conftest.py); worksteal keeps both busy
# to the end, whatever order the long tests come in.
XDIST := -n 2 --dist worksteal

test: $(STAMP)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The edit-test loop: everything but the learning, kill and sweep tests (marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

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

FORCE:
