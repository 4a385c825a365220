# recsys_attn developer commands; `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Which torch build `make install` takes: empty = the default index (PyPI; on Linux the CUDA build, for GPU
# machines; pip's own configuration, e.g. a find-links folder, still applies); TORCH=cpu = the CPU-only wheel
# from PyTorch's index (any other wheel tag of that index, e.g. TORCH=cu128, works the same way).
TORCH ?=
TORCH_INDEX := https://download.pytorch.org/whl/$(TORCH)
# The preset `make train` runs: a few minutes on a CPU; EXPERIMENT=sasrec_ml-1m is the paper-scale run,
# EXPERIMENT= (empty) the plain defaults of conf/train.yaml.
EXPERIMENT ?= sasrec_ml-1m_quick
# Real data sets: $RECSYS_ATTN_DATA_DIR if set, else ../shared/data when it exists, else ./data
# (where the loaders download the files on first use).
ifeq ($(origin RECSYS_ATTN_DATA_DIR), undefined)
ifneq ($(wildcard ../shared/data),)
export RECSYS_ATTN_DATA_DIR := $(abspath ../shared/data)
endif
endif

.PHONY: help install lint format test test-full test-cpu-kinds notebooks strip-notebooks train sweep bench bench-overhead bench-precision bench-features bench-scale reproduce results-table clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

install: ## create .venv, install torch 2.13.0 (default index; TORCH=cpu: the CPU wheel) + the package with dev, sweep and serve extras
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0 $(if $(TORCH),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e '.[dev,sweep,serve]'

lint: ## ruff (lint + format check) and mypy (src, and benchmarks: scripts the tests run only when slow)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/mypy benchmarks

format: ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

test: ## the test suite without the `slow` marker (CPU, about 5 minutes); what CI runs
	$(BIN)/python -m pytest

test-full: ## every test, those marked `slow` (long real-data trainings, notebooks, resume/DDP runs) included
	$(BIN)/python -m pytest -m ''

# The tests with numerical tolerances, rounded as other kinds of CPU round. ATen, MKL and oneDNN each pick their
# instructions at run time (ATEN_CPU_CAPABILITY alone leaves the matrix products on AVX-512), so all three are
# capped; Inductor's cache does not key on them (a kernel cached for AVX-512 fails to build without vectors),
# so each kind has its own.
NUMERICAL_TESTS := tests/models tests/evaluation tests/test_metrics.py tests/data/test_batches.py \
	tests/serving/test_export.py tests/serving/test_policies.py tests/serving/test_serve.py tests/serving/test_logs.py \
	tests/serving/test_simulation.py tests/serving/test_ope_estimators.py tests/test_tolerances.py \
	tests/serving/test_export_features.py tests/data/test_features.py
CPU_KIND_default := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
CPU_KIND_avx2 := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2

test-cpu-kinds: ## the numerical tests as a CPU without vector units and an AVX2 one would round them (~2 minutes)
	$(CPU_KIND_default) TORCHINDUCTOR_CACHE_DIR=.cache/inductor-default $(BIN)/python -m pytest -q $(NUMERICAL_TESTS)
	$(CPU_KIND_avx2) TORCHINDUCTOR_CACHE_DIR=.cache/inductor-avx2 $(BIN)/python -m pytest -q $(NUMERICAL_TESTS)

notebooks: ## execute every notebook top to bottom on the real data, as the tests do (minutes; part of test-full)
	$(BIN)/python -m pytest -m '' tests/test_notebooks.py

strip-notebooks: ## clear the notebooks' outputs before committing (the tests refuse stored outputs)
	$(BIN)/python -c "import sys, nbformat; [nbformat.write(nb, p) for p in sys.argv[1:] for nb in [nbformat.read(p, as_version=4)] if [c.update(outputs=[], execution_count=None) for c in nb.cells if c.cell_type == 'code'] is not None]" notebooks/*.ipynb

train: ## a short SASRec run on ML-1M (minutes on a CPU); EXPERIMENT=sasrec_ml-1m: paper scale; ARGS='model.lr=3e-3'
	$(BIN)/python -m recsys_attn.train $(if $(EXPERIMENT),experiment=$(EXPERIMENT)) $(ARGS)

sweep: ## a Hydra multirun sweep (pass ARGS='model=sasrec,bert4rec model.hidden_size=64,128')
	$(BIN)/python -m recsys_attn.train -m $(ARGS)

bench: ## benchmarks: preparation, training and 1M-item catalogue speed; results go to benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_catalog.py

bench-scale: ## preparation and one epoch on synthetic logs of ML-20M's shape at 1M, 5M, 20M rows (RESULTS.md)
	$(BIN)/python benchmarks/bench_scale.py $(ARGS)

bench-overhead: ## host time of a training step and a validation pass at tiny sizes, ours vs a plain PyTorch loop (RESULTS.md)
	$(BIN)/python benchmarks/bench_overhead.py $(ARGS)

bench-precision: ## fp32 vs bf16-mixed BERT4Rec on ML-1M, one GPU; the speed-up goes to benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_precision.py $(ARGS)

bench-features: ## each model's epoch time and peak memory with and without item features, side by side (RESULTS.md)
	$(BIN)/python benchmarks/bench_features.py $(ARGS)

reproduce: ## train PRESET=<experiment> [SEED=n] to convergence (resumes when run again); row to benchmarks/REPRODUCE.md
	@test -n "$(PRESET)" || { echo "usage: make reproduce PRESET=sasrec_ml-1m [SEED=1] [ARGS='trainer=gpu']"; exit 2; }
	$(BIN)/python benchmarks/reproduce.py $(PRESET) $(if $(SEED),seed=$(SEED)) $(ARGS)
	$(BIN)/python benchmarks/results_table.py

results-table: ## rewrite the README's results tables from benchmarks/reproduce.csv
	$(BIN)/python benchmarks/results_table.py

clean: ## remove caches, logs and build files (not the venv)
	rm -rf .cache logs outputs multirun .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
