# recsys_attn developer commands; `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real data sets: $RECSYS_ATTN_DATA_DIR if set, else ../shared/data when it exists, else ./data
# (where the loaders download the files on first use).
ifeq ($(origin RECSYS_ATTN_DATA_DIR), undefined)
ifneq ($(wildcard ../shared/data),)
export RECSYS_ATTN_DATA_DIR := $(abspath ../shared/data)
endif
endif

.PHONY: help install lint format test test-full train sweep bench bench-precision reproduce clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

install: ## create .venv and install torch 2.13.0 (CPU) + the package with dev and sweep extras
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev,sweep]'

lint: ## ruff (lint + format check) and mypy
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

format: ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

test: ## fast test suite (CPU, a few minutes)
	$(BIN)/python -m pytest

test-full: ## every test, the slow real-data training and notebooks included
	$(BIN)/python -m pytest -m ''

train: ## the default run: SASRec on ML-1M (pass ARGS='model=bert4rec trainer.max_epochs=5')
	$(BIN)/python -m recsys_attn.train $(ARGS)

sweep: ## a Hydra multirun sweep (pass ARGS='model=sasrec,bert4rec model.hidden_size=64,128')
	$(BIN)/python -m recsys_attn.train -m $(ARGS)

bench: ## benchmarks: preparation, training and 1M-item catalogue speed; results go to benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_catalog.py

bench-precision: ## fp32 vs bf16-mixed BERT4Rec on ML-1M, one GPU; the speed-up goes to benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_precision.py $(ARGS)

reproduce: ## train PRESET=<experiment> to convergence (resumes when run again); row to benchmarks/REPRODUCE.md
	@test -n "$(PRESET)" || { echo "usage: make reproduce PRESET=sasrec_ml-1m [ARGS='trainer=gpu']"; exit 2; }
	$(BIN)/python benchmarks/reproduce.py $(PRESET) $(ARGS)

clean: ## remove caches, logs and build files (not the venv)
	rm -rf .cache logs outputs multirun .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
