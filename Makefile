# Every target sets itself up: a virtual environment in .venv with probekit installed in editable mode.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
# The test path pins the CPU build of torch (on these machines it installs from local disk in seconds);
# users installing probekit get whatever torch their platform resolves.
TORCH_CPU ?= torch==2.13.0

.PHONY: demo test bench clean

$(BIN)/probekit: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/probekit
	$(BIN)/python -m pip install -q $(TORCH_CPU)
	$(BIN)/python -m pip install -q -e '.[train,probe,test]'
	touch $@

## demo: generate 500 iGSM-med problems, judge them with the checker, write their probe labels to $(OUT)/
demo: $(BIN)/probekit
	$(BIN)/probekit generate --preset med --n 500 --seed 0 --workers 2 --out $(OUT)/problems.jsonl --tokens $(OUT)/tokens --context 768 --overwrite
	$(BIN)/probekit generate --preset med --op 15 --split test --n 100 --seed 1 --out $(OUT)/test-op15.jsonl
	$(BIN)/probekit check --input $(OUT)/problems.jsonl --out $(OUT)/verdicts.jsonl
	$(BIN)/probekit check --input $(OUT)/test-op15.jsonl --out $(OUT)/verdicts-op15.jsonl
	$(BIN)/probekit labels --input $(OUT)/problems.jsonl --out $(OUT)/labels.jsonl
	@echo "demo outputs in $(OUT)/"

## test: the CPU test suite (what CI runs)
test: $(VENV)/.test-deps
	$(BIN)/python -m pytest

## bench: generator and checker throughput (figures in benchmarks/RESULTS.md)
bench: $(VENV)/.test-deps
	$(BIN)/python benchmarks/bench_igsm.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
