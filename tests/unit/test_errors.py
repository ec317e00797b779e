"""Error types (probekit.evaluate.errors): the mapping covers every checker kind; counts by FIRST mistake.

No torch: the checker, hand-made verdict dicts and a scripted generator on six small test problems.
"""

from __future__ import annotations

import json
import math

import pytest

from probekit.evaluate import errors
from probekit.evaluate.run import evaluate_set, tidy_rows
from probekit.evaluate.sets import EvalSet, draw_set
from probekit.igsm.check import MISTAKE_KINDS, check_solution
from probekit.igsm.render import prompt_text


def test_every_checker_kind_has_an_error_type():
    assert errors.unmapped_kinds() == []
    missing = [k for k in MISTAKE_KINDS if k not in errors.ERROR_TYPES]
    assert not missing, f"add these checker kinds to probekit.evaluate.errors.ERROR_TYPES: {missing}"
    assert set(errors.ERROR_TYPES.values()) == set(errors.TYPES) == {"calculation", "reasoning", "format"}
    assert set(errors.ERROR_TYPES) == set(MISTAKE_KINDS) | {errors.ANSWER_MISMATCH}  # nothing stale either


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("arithmetic_error", "calculation"),
        ("wrong_value_carried", "calculation"),
        ("wrong_value", "calculation"),
        ("wrong_dependency_set", "reasoning"),
        ("unknown_parameter", "reasoning"),
        ("used_before_defined", "reasoning"),
        ("redefined", "reasoning"),
        ("not_query_at_end", "reasoning"),
        ("unparseable", "format"),
        ("wrong_answer", "format"),
        ("answer_mismatch", "format"),
    ],
)
def test_error_type_table(kind, expected):
    assert errors.error_type(kind) == expected


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="no error type for mistake kind 'typo'"):
        errors.error_type("typo")


def _verdict(*kinds):
    return {"correct": not kinds, "mistakes": [{"param": None, "kind": k, "detail": ""} for k in kinds]}


def test_counts_use_the_first_mistake_only():
    verdicts = [
        _verdict(),  # correct: not counted
        _verdict("arithmetic_error", "wrong_dependency_set", "wrong_answer"),  # calculation (first)
        _verdict("wrong_dependency_set", "arithmetic_error"),  # reasoning
        _verdict("used_before_defined"),  # reasoning
        _verdict("unparseable", "not_query_at_end", "wrong_answer"),  # format
        _verdict("wrong_value_carried"),  # calculation
        _verdict("not_query_at_end"),  # reasoning
    ]
    assert errors.error_type_counts(verdicts) == {"calculation": 2, "reasoning": 3, "format": 1}
    assert errors.calculation_share(errors.error_type_counts(verdicts)) == pytest.approx(2 / 5)
    # a checker-correct chain judged wrong (emitted answer wrong or missing) is a format error
    correct = [False, False, False, False, False, False, False]
    assert errors.error_type_counts(verdicts, correct) == {"calculation": 2, "reasoning": 3, "format": 2}
    assert errors.first_mistake_kind(_verdict(), correct=False) == errors.ANSWER_MISMATCH
    assert errors.first_mistake_kind(_verdict(), correct=True) is None
    with pytest.raises(ValueError):
        errors.error_type_counts(verdicts, [False])


def test_edge_cases():
    assert errors.error_type_counts([]) == {"calculation": 0, "reasoning": 0, "format": 0}
    assert math.isnan(errors.calculation_share({"calculation": 0, "reasoning": 0, "format": 3}))
    assert errors.calculation_share({"calculation": 3, "reasoning": 0}) == 1.0
    all_right = [_verdict()] * 3
    assert errors.error_type_counts(all_right, [True] * 3) == {"calculation": 0, "reasoning": 0, "format": 0}


# ---------------------------------------------------------------------------------------------- with the checker
@pytest.fixture(scope="module")
def drawn():
    return draw_set(EvalSet("med", 5, n=6, seed=5))


def _sentences(solution: str) -> list[str]:
    return solution[:-1].split(". ")


def _join(sentences: list[str]) -> str:
    return ". ".join(sentences) + "."


def _wrong_last_number(solution: str, k: int) -> str:
    sentences = _sentences(solution)
    head, last = sentences[k].rsplit(" ", 1)
    sentences[k] = f"{head} {(int(last) + 1) % 23}"
    return _join(sentences)


def test_real_verdicts_and_row_columns(drawn):
    def corrupt(i, problem, reference):
        s = _sentences(reference)
        if i == 0:  # arithmetic / value slip in sentence 0: calculation
            return _wrong_last_number(reference, 0), str(problem.answer)
        if i == 1:  # stops one sentence early: not_query_at_end (missing step): reasoning
            return _join(s[:-1]), str(problem.answer)
        if i == 2:  # a sentence repeated: redefined (unnecessary step): reasoning
            return _join(s[:1] + s[:1] + s[1:]), str(problem.answer)
        if i == 3:  # garbage: format
            return "Define Define as ; so", str(problem.answer)
        if i == 4:  # right chain, wrong [ANSWER]: format
            return reference, str((problem.answer + 1) % 23)
        return reference, str(problem.answer)  # correct

    by_prompt = {prompt_text(p, "pq"): corrupt(i, p, ref) for i, (p, ref) in enumerate(drawn)}
    kinds = [check_solution(p, by_prompt[prompt_text(p, "pq")][0]).mistakes for p, _ in drawn]
    assert errors.error_type(kinds[0][0].kind) == "calculation"
    assert kinds[1][0].kind == "not_query_at_end" and kinds[2][0].kind == "redefined"
    assert kinds[3][0].kind == "unparseable" and kinds[4] == kinds[5] == ()

    row = evaluate_set(EvalSet("med", 5, n=6, seed=5), drawn, lambda prompts: [by_prompt[p] for p in prompts]).row
    assert row["correct"] == 1
    assert (row["errors_calculation"], row["errors_reasoning"], row["errors_format"]) == (1, 2, 2)
    assert row["error_share_calculation"] == pytest.approx(1 / 3)
    assert row["errors_calculation"] + row["errors_reasoning"] + row["errors_format"] == row["n"] - row["correct"]
    flat = tidy_rows([row])[0]
    assert flat["errors_reasoning"] == 2 and "step_fit_bins" in flat
    json.loads(flat["step_fit_bins"])


def test_all_right_has_no_error_share(drawn):
    refs = {prompt_text(p, "pq"): (ref, str(p.answer)) for p, ref in drawn}
    row = evaluate_set(EvalSet("med", 5, n=6, seed=5), drawn, lambda prompts: [refs[p] for p in prompts]).row
    assert (row["errors_calculation"], row["errors_reasoning"], row["errors_format"]) == (0, 0, 0)
    assert math.isnan(row["error_share_calculation"])
    assert math.isnan(row["first_error_position"]) and math.isnan(row["first_error_position_ci_low"])
