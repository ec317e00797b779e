# Every target sets itself up: a virtual environment in .venv with probekit installed in editable mode.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
# The test path pins the CPU build of torch (on these machines it installs from local disk in seconds);
# users installing probekit get whatever torch their platform resolves.
TORCH_CPU ?= torch==2.13.0
TORCH ?=

.PHONY: demo test lint bench clean

$(BIN)/probekit: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.demo-deps: $(BIN)/probekit
	$(BIN)/python -m pip install -q -e '.[train,probe,figures]' $(TORCH)
	touch $@

$(VENV)/.test-deps: $(BIN)/probekit
	$(BIN)/python -m pip install -q $(TORCH_CPU)
	$(BIN)/python -m pip install -q -e '.[train,probe,figures,cluster,test]'
	touch $@

## demo: the main job (experiments/demo.yaml, under 10 minutes on a 2-core CPU): generate and judge iGSM data;
## evaluate the shipped CPU-trained reasoner with the checker, probe it (six tasks, random-init twin, control task,
## nece by layer, its own mistakes), train a tiny model to show the training path; write $(OUT)/report/REPORT.md.
## Re-running resumes (finished jobs are skipped). TORCH=torch==2.13.0 picks a torch build (default: pip's choice).
demo: $(VENV)/.demo-deps
	$(BIN)/probekit generate --preset med --n 500 --seed 0 --workers 2 --out $(OUT)/data/problems.jsonl --tokens $(OUT)/data/tokens --context 768 --overwrite
	$(BIN)/probekit check --input $(OUT)/data/problems.jsonl --out $(OUT)/data/verdicts.jsonl
	$(BIN)/probekit labels --input $(OUT)/data/problems.jsonl --out $(OUT)/data/labels.jsonl
	$(BIN)/probekit run experiments/demo.yaml --results $(OUT) --workers 2
	$(BIN)/probekit figures experiments/demo.yaml --results $(OUT) --out $(OUT)/report
	@echo "report: $(OUT)/report/REPORT.md (results store: $(OUT)/results.parquet)"

## test: lint, format and type checks, then the CPU test suite (what CI runs; GPU tests skip without CUDA).
## Tiers: tests/unit (fast, pure), tests/integration (CLI, sweeps, torchrun), tests/notebooks;
## e.g. `$(BIN)/python -m pytest tests/unit` or `-m "not slow"`.
test: lint
	$(BIN)/python -m pytest

## lint: ruff (lint and format) and mypy, configured in pyproject.toml
lint: $(VENV)/.test-deps
	$(BIN)/ruff check probekit tests benchmarks
	$(BIN)/ruff format --check probekit tests benchmarks
	$(BIN)/mypy

## bench: generator and checker throughput (figures in benchmarks/RESULTS.md)
bench: $(VENV)/.test-deps
	$(BIN)/python benchmarks/bench_igsm.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
