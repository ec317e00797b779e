# Every target sets itself up: a virtual environment in .venv with probekit installed in editable mode.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo

.PHONY: demo test bench clean

$(BIN)/probekit: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
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
test: $(BIN)/probekit
	$(BIN)/python -m pytest

## bench: generator and checker throughput (figures in benchmarks/RESULTS.md)
bench: $(BIN)/probekit
	$(BIN)/python benchmarks/bench_igsm.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
