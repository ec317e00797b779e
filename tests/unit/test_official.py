"""Agreement with the original authors' checker verdicts and probe labels on the official samples.

The samples live in ``tests/data/`` (with the authors' MIT licence). The label comparison mirrors
``shared/tools/official_compat.py``: only parameters both sides name are compared.
"""

import json
from functools import cache
from pathlib import Path

import pytest

from probekit.igsm.check import check_solution
from probekit.igsm.labels import UNKNOWN_VALUE, compute_labels
from probekit.igsm.parse import parse_problem
from probekit.igsm.problem import Problem

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "official-samples.jsonl"

RECORDS = [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]
IDS = [f"{r['preset']}-{r['format']}-{r['seed']}-{r['index']}" for r in RECORDS]


@cache
def problem(index: int) -> Problem:
    record = RECORDS[index]
    return parse_problem(record["problem"], record["categories"])


@pytest.mark.parametrize("index", range(len(RECORDS)), ids=IDS)
def test_reference_solution_is_correct(index):
    record = RECORDS[index]
    verdict = check_solution(problem(index), record["solution"])
    assert verdict.mistakes == ()
    assert verdict.correct and verdict.answer == record["answer"]


@pytest.mark.parametrize("index", range(len(RECORDS)), ids=IDS)
def test_corrupted_verdicts_agree(index):
    for corrupted in RECORDS[index]["corrupted"]:
        verdict = check_solution(problem(index), corrupted["solution"])
        assert verdict.correct == corrupted["check"]["correct"], (corrupted["kind"], verdict.mistakes)


@pytest.mark.parametrize("index", range(len(RECORDS)), ids=IDS)
def test_labels_agree(index):
    record = RECORDS[index]
    labels = compute_labels(problem(index), record["solution"]).to_dict()
    assert label_mismatch(record, labels) is None


def label_mismatch(record: dict, labels: dict) -> str | None:
    """The first label that disagrees with the official one, as ``official_compat.py`` compares them."""
    ours = set(labels["params"])
    mentioned = {p for p in record["params"] if "each " + p in record["problem"]} | {record["question_param"]}
    if not mentioned <= ours <= set(record["params"]):
        return "params"
    if set(labels["nece"]) != set(record["nece"]):
        return "nece"
    shared = lambda pairs: {tuple(p) for p in pairs if p[0] in ours and p[1] in ours}  # noqa: E731
    if shared(labels["dep"]) != shared(record["dep"]):
        return "dep"
    if len(labels["steps"]) != len(record["steps"]):
        return "steps-length"
    for step, official in zip(labels["steps"], record["steps"]):
        for key in ("known", "can_next", "nece_next"):
            if set(step[key]) & ours != set(official[key]) & ours:
                return f"{key} at t={step['t']}"
        values = {k: v for k, v in step["value"].items() if v != UNKNOWN_VALUE and k in ours}
        if values != {k: v for k, v in official["value"].items() if k in ours}:
            return f"value at t={step['t']}"
    return None
