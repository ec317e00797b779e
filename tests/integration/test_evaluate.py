"""Tests for probekit.evaluate: metrics by hand, judge/aggregate with fake generators, generation, end to end.

The metric and judge tests need no torch; generation and end-to-end tests use a random ``gpt2-tiny`` /
``llama-tiny`` (CPU) and a scripted fake language model that emits fixed token sequences.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from probekit.checkpoint import provenance_value
from probekit.evaluate import metrics
from probekit.evaluate.judge import judge
from probekit.evaluate.run import (
    evaluate_set,
    evaluate_sets,
    format_table,
    pooled_step_fit,
    tidy_rows,
    write_summary,
)
from probekit.evaluate.sets import EvalSet, default_suite, draw_set, parse_sets, set_health, set_warnings
from probekit.igsm.check import MISTAKE_KINDS, check_solution, parse_solution
from probekit.igsm.generate import HELDOUT_SEED_BASE
from probekit.igsm.jobs import check_record
from probekit.igsm.render import prompt_text

Z2 = metrics.Z95**2


# ============================================================================================== metrics
def test_wilson_edges_and_hand_values():
    assert metrics.wilson_interval(0, 10) == (0.0, pytest.approx(Z2 / (10 + Z2)))
    assert metrics.wilson_interval(10, 10) == (pytest.approx(10 / (10 + Z2)), 1.0)
    low, high = metrics.wilson_interval(5, 10)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.2366, abs=1e-4)
    assert all(math.isnan(x) for x in metrics.wilson_interval(0, 0))
    # 1/1: low = 1 / (1 + z^2)
    assert metrics.wilson_interval(1, 1) == (pytest.approx(1 / (1 + Z2)), 1.0)
    with pytest.raises(ValueError):
        metrics.wilson_interval(3, 2)
    p = metrics.proportion([True, False, True, True])
    assert (p["n"], p["correct"], p["accuracy"]) == (4, 3, 0.75) and p["ci_low"] < 0.75 < p["ci_high"]


@pytest.mark.parametrize(
    "table,pass_n,ratio",
    [
        ([[0, 0, 0], [0, 0, 0]], 0.0, 0.0),  # all wrong
        ([[1, 1], [1, 1], [1, 1]], 1.0, 1.0),  # all right
        ([[1], [0], [1], [1]], 0.75, 0.75),  # N = 1: both are the accuracy
        ([[1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]], 0.75, (1 / 3 + 0 + 1 + 1 / 3) / 4),  # mixed
    ],
)
def test_pass_at_n_and_pass_ratio(table, pass_n, ratio):
    assert metrics.pass_at_n(table) == pytest.approx(pass_n)
    assert metrics.pass_ratio_at_n(table) == pytest.approx(ratio)
    n = len(table[0])
    assert metrics.pass_at_k(table, n) == pytest.approx(pass_n)  # the unbiased estimator at k = N
    assert metrics.pass_at_k(table, 1) == pytest.approx(ratio)  # ... and at k = 1
    s = metrics.stability_metrics(table, [row[0] for row in table])
    assert s["samples"] == n and s["pass_at_n"] == pytest.approx(pass_n)
    assert s["pass_at_n_ci_low"] <= pass_n <= s["pass_at_n_ci_high"]
    assert s["pass_ratio_ci_low"] <= ratio + 1e-12 and ratio - 1e-12 <= s["pass_ratio_ci_high"]
    assert s["pass_at_1"] == pytest.approx(np.mean([row[0] for row in table]))


def test_pass_at_k_hand_value_and_ratio_interval():
    # one problem, 4 samples, 1 correct: pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert metrics.pass_at_k([[1, 0, 0, 0]], 2) == pytest.approx(0.5)
    assert metrics.stability_metrics([[1, 1]] * 5)["pass_ratio_ci_low"] == 1.0  # constant ratios: point interval
    rng = np.random.default_rng(0)
    table = rng.random((400, 8)) < 0.3
    s = metrics.stability_metrics(table)
    normal = metrics.normal_mean_interval(table.mean(axis=1))
    assert s["pass_ratio_ci_low"] == pytest.approx(normal[0], abs=0.01)
    assert s["pass_ratio_ci_high"] == pytest.approx(normal[1], abs=0.01)
    with pytest.raises(ValueError):
        metrics.pass_at_n([[1, 0], [1]])


def test_step_accuracy_fit_recovers_known_value():
    steps = np.arange(1, 21)
    n = np.full(20, 2000)
    k = np.round(n * 0.95**steps).astype(int)
    fit = metrics.fit_step_accuracy(steps, n, k)
    assert fit.step_accuracy == pytest.approx(0.95, abs=2e-4)
    assert fit.ci_low < 0.95 < fit.ci_high and fit.ci_high - fit.ci_low < 0.005
    assert fit.r2 > 0.999 and fit.dof == 19 and fit.p_value > 0.99  # exact expectations: chi2 ~ 0
    assert [b["steps"] for b in fit.bins] == list(range(1, 21))
    assert max(abs(b["residual"]) for b in fit.bins) < 1e-3

    # binomial draws from per-problem results
    rng = np.random.default_rng(1)
    ops = rng.integers(1, 24, size=20000)
    correct = rng.random(ops.size) < 0.97**ops
    fit = metrics.fit_step_accuracy(*metrics.counts_by_steps(ops, correct))
    assert fit.ci_low < 0.97 < fit.ci_high
    assert 0.001 < fit.p_value  # the model is right, so the chi-square test does not reject it

    # a wrong model (accuracy flat in op) fits badly
    flat = rng.random(ops.size) < 0.6
    bad = metrics.fit_step_accuracy(*metrics.counts_by_steps(ops, flat))
    assert bad.p_value < 1e-6 and bad.r2 < 0.5


def test_step_accuracy_fit_edges():
    one = metrics.fit_step_accuracy([4], [100], [81])
    assert one.step_accuracy == pytest.approx(0.81**0.25, abs=1e-9)  # one bin: p^s = k/n
    assert one.dof == 0 and math.isnan(one.p_value) and math.isnan(one.r2)
    assert metrics.fit_step_accuracy([1, 2], [5, 5], [5, 5]).step_accuracy == 1.0
    zero = metrics.fit_step_accuracy([1, 2], [5, 5], [0, 0])
    assert zero.step_accuracy == 0.0 and zero.ci_high > 0
    assert math.isnan(metrics.fit_step_accuracy([], [], []).step_accuracy)
    steps, n, k = metrics.counts_by_steps([3, 1, 3, 3], [1, 0, 0, 1])
    assert (steps.tolist(), n.tolist(), k.tolist()) == ([1, 3], [1, 3], [0, 2])
    steps, n, k = metrics.counts_by_steps([2, 2], [3, 1], trials=[4, 4])
    assert (n.tolist(), k.tolist()) == ([8], [4])


def test_pass_at_k_hand_values_and_empty_tables():
    # [1,0,0]: pass@2 = 1 - C(2,2)/C(3,2) = 2/3; [1,1,0]: 1 - C(1,2)/C(3,2) = 1
    assert metrics.pass_at_k([[1, 0, 0], [1, 1, 0]], 2) == pytest.approx(5 / 6)
    assert metrics.pass_at_k([[0, 0, 0]], 2) == 0.0 and metrics.pass_at_k([[1, 1, 1]], 2) == 1.0
    table = [[1, 0], [0, 0], [1, 1]]
    s = metrics.stability_metrics(table, [True, False, False])
    assert (s["pass_at_n"], s["pass_ratio_at_n"], s["pass_at_1"]) == pytest.approx((2 / 3, 1 / 2, 1 / 3))
    low, high = metrics.wilson_interval(2, 3)
    assert (s["pass_at_n_ci_low"], s["pass_at_n_ci_high"]) == (low, high)
    assert math.isnan(metrics.pass_at_n(np.zeros((0, 3), dtype=bool)))
    with pytest.raises(ValueError, match="greedy"):
        metrics.stability_metrics(table, [True])
    with pytest.raises(ValueError):
        metrics.pass_at_k(table, 3)  # k > N


def test_step_fit_two_bins_by_hand():
    # bins (s=1: 6/10) and (s=2: 1/7): the score 6 - 4 p/(1-p) + 2 - 12 p^2/(1-p^2) vanishes at p = 1/2
    fit = metrics.fit_step_accuracy([1, 2], [10, 7], [6, 1])
    assert fit.step_accuracy == pytest.approx(0.5, abs=1e-12)
    assert fit.log_likelihood == pytest.approx(10 * math.log(0.5) + math.log(0.25) + 6 * math.log(0.75))
    r1 = (6 - 10 * 0.5) / math.sqrt(10 * 0.5 * 0.5)
    r2 = (1 - 7 * 0.25) / math.sqrt(7 * 0.25 * 0.75)
    assert fit.chi2 == pytest.approx(r1**2 + r2**2) and fit.dof == 1
    assert fit.p_value == pytest.approx(metrics._chi2_sf(r1**2 + r2**2, 1))
    # R^2 weighted by n: mean 7/17
    mean = 7 / 17
    ss_tot = 10 * (0.6 - mean) ** 2 + 7 * (1 / 7 - mean) ** 2
    ss_res = 10 * (0.6 - 0.5) ** 2 + 7 * (1 / 7 - 0.25) ** 2
    assert fit.r2 == pytest.approx(1 - ss_res / ss_tot)
    assert fit.ci_low < 0.5 < fit.ci_high
    # profile interval: the log-likelihood at the bounds is 1.92 below the maximum
    for bound in (fit.ci_low, fit.ci_high):
        drop = fit.log_likelihood - metrics._log_likelihood(
            bound, np.array([1.0, 2.0]), np.array([10.0, 7.0]), np.array([6.0, 1.0])
        )
        assert drop == pytest.approx(metrics.CHI2_1_95 / 2, abs=1e-6)
    table = fit.bin_table()
    assert table == [
        {
            "op": 1,
            "n": 10,
            "correct": 6,
            "accuracy": pytest.approx(0.6),
            "predicted": pytest.approx(0.5),
            "residual": pytest.approx(r1),
        },
        {
            "op": 2,
            "n": 7,
            "correct": 1,
            "accuracy": pytest.approx(1 / 7),
            "predicted": pytest.approx(0.25),
            "residual": pytest.approx(r2),
        },
    ]
    assert [b["pearson"] for b in fit.bins] == pytest.approx([r1, r2])
    assert [b["residual"] for b in fit.bins] == pytest.approx([0.1, 1 / 7 - 0.25])  # raw differences


def test_step_fit_bins_edges():
    right = metrics.fit_step_accuracy([1, 3], [4, 2], [4, 2])  # all right: p = 1, predictions 1
    assert [b["predicted"] for b in right.bin_table()] == [1.0, 1.0]
    assert [b["residual"] for b in right.bin_table()] == [None, None]  # JSON-able, no NaN
    wrong = metrics.fit_step_accuracy([2], [5], [0])  # all wrong: p = 0
    assert wrong.bin_table() == [{"op": 2, "n": 5, "correct": 0, "accuracy": 0.0, "predicted": 0.0, "residual": None}]
    one = metrics.fit_step_accuracy([3], [1], [1])  # a single problem (N = 1)
    assert one.step_accuracy == 1.0 and one.n == 1 and one.bin_table()[0]["op"] == 3
    assert metrics.fit_step_accuracy([], [], []).bin_table() == []
    json.dumps(right.bin_table() + wrong.bin_table(), allow_nan=False)


def test_step_fit_unweighted_over_bin_means():
    # a crowded easy bin and a sparse hard one: the count-weighted fit follows the crowded bin, the unweighted
    # fit is the least-squares curve through the two bin means
    steps, n, k = [1, 2], [1000, 10], [900, 2]
    counts = metrics.fit_step_accuracy(steps, n, k)
    means = metrics.fit_step_accuracy(steps, n, k, weighting="bins")
    grid = np.linspace(0, 1, 1_000_001)
    best = grid[np.argmin((0.9 - grid) ** 2 + (0.2 - grid**2) ** 2)]
    assert means.step_accuracy == pytest.approx(best, abs=1e-6) and means.weighting == "bins"
    assert counts.step_accuracy > 0.85 > means.step_accuracy
    assert math.isnan(means.ci_low) and math.isnan(means.ci_high)  # least squares: no likelihood interval
    acc, pred = np.array([0.9, 0.2]), means.step_accuracy ** np.array([1.0, 2.0])
    assert means.r2 == pytest.approx(1 - np.sum((acc - pred) ** 2) / np.sum((acc - acc.mean()) ** 2))
    with pytest.raises(ValueError, match="weighting"):
        metrics.fit_step_accuracy(steps, n, k, weighting="problems")


def test_step_fit_over_the_first_bins():
    # Xwin-Math Fig. 4: the dashed curve fits the first four of seven bins; the long bins fall below it
    steps = np.arange(1, 8)
    n = np.full(7, 4000)
    acc = 0.95**steps * np.where(steps > 4, 0.7, 1.0)
    k = np.round(n * acc).astype(int)
    part = metrics.fit_step_accuracy(steps[::-1], n, k[::-1], first_bins=4)  # bin order does not matter
    whole = metrics.fit_step_accuracy(steps, n, k)
    assert part.step_accuracy == pytest.approx(0.95, abs=1e-3) and whole.step_accuracy < 0.94
    assert part.first_bins == 4 and part.n == 4 * 4000 and part.dof == 3
    assert [b["steps"] for b in part.bins] == list(range(1, 8))
    assert [b["fitted"] for b in part.bins] == [True] * 4 + [False] * 3
    assert all(b["residual"] < -0.1 for b in part.bins[4:])  # the long bins sit below the dashed curve
    assert metrics.fit_step_accuracy(steps, n, k, first_bins=10).step_accuracy == whole.step_accuracy
    with pytest.raises(ValueError, match="first_bins"):
        metrics.fit_step_accuracy(steps, n, k, first_bins=0)


def test_pooled_step_fit_reports_the_variants():
    ops = [1] * 50 + [2] * 50 + [3] * 20 + [4] * 20 + [5] * 10 + [6] * 10
    correct = [i % 2 == 0 for i in range(len(ops))]
    fit = pooled_step_fit(ops, correct)
    assert fit["weighting"] == "counts" and set(fit["variants"]) == {"bins", "first_bins"}
    assert fit["variants"]["first_bins"]["first_bins"] == metrics.FIRST_BINS
    assert fit["variants"]["bins"]["weighting"] == "bins" and "bins" not in fit["variants"]["bins"]
    assert set(pooled_step_fit([1, 2], [True, False])["variants"]) == {"bins"}


def test_first_error_position_interval():
    # 1-based (Xwin-Math: position of the first wrong step / total steps): 1/4, 3/4, ending-only 3/3
    mean, low, high = metrics.first_error_position_interval([0, 2, 3, None], [4, 4, 3, 5], seed=1)
    assert mean == pytest.approx(2 / 3) and 0.25 <= low < 2 / 3 < high <= 1.0
    assert (low, high) == metrics.bootstrap_mean_interval([0.25, 0.75, 1.0], seed=1)
    assert metrics.first_error_position_interval([1, 1], [2, 2]) == (1.0, 1.0, 1.0)
    assert all(math.isnan(x) for x in metrics.first_error_position_interval([None], [3]))


def test_chi2_tail():
    assert metrics._chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, abs=1e-7)
    assert metrics._chi2_sf(18.307038053275146, 10) == pytest.approx(0.05, abs=1e-7)
    assert metrics._chi2_sf(0.5, 3) == pytest.approx(0.918891, abs=1e-6)
    assert metrics._chi2_sf(0.0, 4) == 1.0


def test_first_error_position_and_unnecessary():
    pos = metrics.first_error_positions([0, 2, 3, None, 0, 0], [4, 4, 3, 5, 0, 1])
    assert pos[:3].tolist() == [0.25, 0.75, 1.0] and math.isnan(pos[3]) and pos[4] == 0.0 and pos[5] == 1.0
    assert metrics.mean_first_error_position([0, 2, 3, None], [4, 4, 3, 5]) == pytest.approx(2 / 3)
    assert math.isnan(metrics.mean_first_error_position([None], [3]))
    with pytest.raises(ValueError):
        metrics.first_error_positions([5], [4])
    assert metrics.unnecessary_per_correct([0, 2, 1, ["a", "b", "c"]], [True, True, False, True]) == pytest.approx(
        5 / 3
    )
    assert math.isnan(metrics.unnecessary_per_correct([1], [False]))


def test_mistake_kind_counts_from_dicts_and_verdicts():
    problem, reference = _drawn("med", 4)[0]
    verdicts = [
        check_solution(problem, reference),
        check_solution(problem, "garbage"),
        check_solution(problem, "garbage").to_dict(),
    ]
    counts = metrics.mistake_kind_counts(verdicts, MISTAKE_KINDS)
    assert list(counts)[: len(MISTAKE_KINDS)] == list(MISTAKE_KINDS)
    assert counts["unparseable"] == 2 and counts["arithmetic_error"] == 0
    assert metrics.first_mistake_kind_counts(verdicts) == {"unparseable": 2}


# ============================================================================================== sets
def test_suites():
    med = default_suite("med", n=5, seed=3)
    assert [s.name for s in med] == [
        "op<=15",
        "op=15",
        "op=20",
        "op=21",
        "op=22",
        "op=23",
        "reask op=20",
        "reask op=21",
        "reask op=22",
        "reask op=23",
    ]
    assert all(s.split == "test" and s.n == 5 and s.seed == 3 for s in med)
    hard = default_suite("hard")
    assert [s.name for s in hard][:2] == ["op<=21", "op=21"] and len(hard) == 12
    assert [s.op for s in hard if s.reask] == [28, 29, 30, 31, 32]
    assert [s.name for s in parse_sets("7, r20,7,ood", "med")] == [
        "op=7",
        "reask op=20",
        "op=20",
        "op=21",
        "op=22",
        "op=23",
    ]
    with pytest.raises(ValueError):
        parse_sets("op=7")
    with pytest.raises(ValueError):
        EvalSet("med", None, reask=True)


def test_provenance_lookup():
    assert provenance_value({"format": "qp"}, "format", ("pq", "qp")) == "qp"
    assert provenance_value({"data": {"format": "qp", "preset": "hard"}}, "preset", ("med", "hard")) == "hard"
    assert provenance_value({"train": {"data": [{"format": "qp"}]}}, "format", ("pq", "qp")) == "qp"
    assert provenance_value({"format": "xx"}, "format", ("pq", "qp")) is None


def test_a_checkpoint_is_evaluated_on_its_own_training_family():
    from probekit.checkpoint import training_family
    from probekit.igsm.presets import resolve_preset

    trained = {"training_config": {"data": {"preset": "med", "max_op": 4, "max_edge": 12, "format": "qp"}}}
    assert training_family(trained) == ("med-op4-ip12", "qp")
    assert (resolve_preset("med-op4-ip12").max_op, resolve_preset("med-op4-ip12").max_edge) == (4, 12)
    assert training_family({}) == ("med", "pq") and training_family({"data": {"preset": "hard"}}) == ("hard", "pq")
    # its default suite: in distribution up to op 4, out of distribution at op 5 and 6, and their re-asked versions
    names = [s.name for s in parse_sets("default", "med-op4-ip12")]
    assert names == ["op<=4", "op=4", "op=5", "op=6", "reask op=5", "reask op=6"]
    assert [s.name for s in parse_sets("ood", "med")] == ["op=20", "op=21", "op=22", "op=23"]  # the paper's


# ============================================================================================== judge / aggregate
_CACHE: dict = {}


def _drawn(preset: str, op: int | None, n: int = 6, reask: bool = False):
    key = (preset, op, n, reask)
    if key not in _CACHE:
        _CACHE[key] = draw_set(EvalSet(preset, op, reask, n=n, seed=5))
    return _CACHE[key]


def _reference_generator(drawn):
    by_prompt = {}
    for problem, reference in drawn:
        by_prompt[prompt_text(problem, "pq")] = (reference, str(problem.answer))
    return lambda prompts: [by_prompt[p] for p in prompts]


def _corrupt_sentence(solution: str, k: int) -> str:
    """Sentence ``k`` of a solution with its last number changed (an arithmetic or value error)."""
    sentences = solution[:-1].split(". ")
    head, last = sentences[k].rsplit(" ", 1)
    sentences[k] = f"{head} {(int(last) + 1) % 23}"
    return ". ".join(sentences) + "."


def test_reference_solutions_score_one():
    eval_set = EvalSet("med", 6, n=6, seed=5)
    drawn = _drawn("med", 6)
    result = evaluate_set(eval_set, drawn, _reference_generator(drawn))
    row = result.row
    assert (row["n"], row["correct"], row["accuracy"], row["ci_high"]) == (6, 6, 1.0, 1.0)
    assert row["unnecessary_per_correct"] == 0.0
    assert all(v == 0 for v in row["mistake_kinds"].values())
    assert math.isnan(row["first_error_position"]) and row["answer_mismatch"] == 0
    assert row["step_accuracy"] == 1.0 and row["accuracy_by_op"] == {6: [6, 6]}
    assert row["step_fit_bins"] == [
        {"op": 6, "n": 6, "correct": 6, "accuracy": 1.0, "predicted": 1.0, "residual": None}
    ]
    assert row["errors_calculation"] == row["errors_reasoning"] == row["errors_format"] == 0
    assert len(result.records) == 6
    rec = result.records[0]
    assert rec["solution"] == rec["reference_solution"] and rec["correct"] and rec["set"] == "op=6"
    assert check_record(rec) == rec["verdict"]  # records re-check with `probekit check` as they are


def test_corrupted_solutions_score_zero_and_count_kinds():
    eval_set = EvalSet("med", 6, n=6, seed=5)
    drawn = _drawn("med", 6)
    refs = _reference_generator(drawn)

    def corrupted(prompts):
        out = []
        for i, (solution, answer) in enumerate(refs(prompts)):
            kind = i % 4
            if kind == 0:  # right chain of thought, wrong emitted answer: NOT correct
                out.append((solution, str((int(answer) + 1) % 23)))
            elif kind == 1:  # no [ANSWER]
                out.append((solution, None))
            elif kind == 2:  # a wrong number in sentence 1
                out.append((_corrupt_sentence(solution, 1), answer))
            else:  # garbage
                out.append(("Define Define as ; so", answer))
        return out

    row = evaluate_set(eval_set, drawn, corrupted).row
    assert row["correct"] == 0 and row["accuracy"] == 0.0 and row["ci_low"] == 0.0
    assert math.isnan(row["unnecessary_per_correct"])
    assert row["answer_mismatch"] == 4  # kinds 0 and 1
    kinds = row["mistake_kinds"]
    assert kinds["unparseable"] == 1
    assert kinds["arithmetic_error"] + kinds["wrong_value"] + kinds["wrong_value_carried"] >= 2
    # kind 0/1 solutions are checker-correct: error only at the end (position 1); kind 2 at 1/sentences
    assert 0 < row["first_error_position"] < 1
    assert row["first_error_position_ci_low"] <= row["first_error_position"] <= row["first_error_position_ci_high"]
    # first-mistake error types: kinds 0, 1 (answer only) and 3 (garbage) are format, kind 2 calculation
    assert (row["errors_calculation"], row["errors_reasoning"], row["errors_format"]) == (1, 0, 5)
    assert row["error_share_calculation"] == 1.0
    assert row["step_fit_bins"] == [
        {"op": 6, "n": 6, "correct": 0, "accuracy": 0.0, "predicted": 0.0, "residual": None}
    ]
    table = format_table([row])
    assert "op=6" in table and "0.0000" in table


def test_wrong_solutions_are_counted_by_length_against_the_reference():
    eval_set = EvalSet("med", 6, n=6, seed=5)
    drawn = _drawn("med", 6)
    refs = _reference_generator(drawn)

    def by_length(prompts):
        out = []
        for i, (solution, answer) in enumerate(refs(prompts)):
            sentences = solution[:-1].split(". ")
            if i % 3 == 0:  # the last step left out
                out.append((". ".join(sentences[:-1]) + ".", answer))
            elif i % 3 == 1:  # the first step written twice
                out.append((". ".join(sentences[:1] + sentences) + ".", answer))
            else:  # right length, a wrong number
                out.append((_corrupt_sentence(solution, 0), answer))
        return out

    row = evaluate_set(eval_set, drawn, by_length).row
    assert row["correct"] == 0 and row["wrong_by_length"] == {"shorter": 2, "same": 2, "longer": 2}
    assert evaluate_set(eval_set, drawn, refs).row["wrong_by_length"] == {"shorter": 0, "same": 0, "longer": 0}
    assert "2/2/2" in format_table([row])
    assert metrics.length_against_reference([1, 3, 2, 5], [2, 2, 2, 4], [False, False, False, True]) == {
        "shorter": 1,
        "same": 1,
        "longer": 1,
    }  # correct solutions are left out
    with pytest.raises(ValueError, match="same length"):
        metrics.length_against_reference([1], [1, 2], [False])


def test_first_wrong_sentence_is_exact():
    def first(solution):
        verdict = check_solution(problem, solution)
        return verdict.first_error_sentence, verdict.n_sentences

    for problem, reference in _drawn("med", 6):
        n = len(parse_solution(reference))
        assert first(reference) == (None, n)
        for k in range(n):
            assert first(_corrupt_sentence(reference, k)) == (k, n)
        # a correct sentence repeated: the repetition is the first wrong one (redefined), not the original
        sentences = reference[:-1].split(". ")
        repeated = ". ".join(sentences[:1] + sentences[:1] + sentences[1:]) + "."
        assert first(repeated) == (1, n + 1)
        j = judge(problem, reference, str(problem.answer))
        assert j["correct"] and j["first_error_index"] is None
        j = judge(problem, reference, str((problem.answer + 1) % 23))
        assert not j["correct"] and j["verdict"]["correct"] and j["first_error_index"] == n


def test_op1_test_set_is_degenerate_and_the_held_out_set_is_not():
    test, held = parse_sets("1,h1", "med", n=30, seed=2)
    assert (held.name, held.split, held.op, held.seed) == ("held-out op=1", "heldout", 1, 2)
    config = held.config()
    assert (config.split, config.seed) == ("all", HELDOUT_SEED_BASE + 2)  # all bins, a seed training refuses
    assert held.to_dict()["split"] == "heldout" and test.config().seed == 2
    test_drawn, held_drawn = draw_set(test), draw_set(held)
    test_health, held_health = set_health(test_drawn), set_health(held_drawn)
    # every ordinary op=1 template hashes into a train bin: the test bins hold one degenerate template
    assert test_health == {"n_templates": 1, "n_degenerate": 30} and {p.answer for p, _ in test_drawn} == {0}
    assert held_health["n_degenerate"] < 15 and len({p.answer for p, _ in held_drawn}) > 3
    warned = set_warnings({"set": test.name, "n": 30, **test_health})
    assert any("degenerate" in w and "hK" in w for w in warned) and any("1 solution templates" in w for w in warned)
    assert not any("degenerate" in w for w in set_warnings({"set": held.name, "n": 30, **held_health}))
    with pytest.raises(ValueError, match="split"):
        EvalSet("med", 1, split="train")
    with pytest.raises(ValueError, match="seed"):
        EvalSet("med", 1, seed=HELDOUT_SEED_BASE)


def test_evaluate_sets_reports_templates_and_warns_on_degenerate_sets(capsys):
    drawn = draw_set(EvalSet("med", 1, n=4, seed=5))
    report = evaluate_sets([(EvalSet("med", 1, n=4, seed=5), drawn)], _reference_generator(drawn))
    row = report.rows[0]
    assert (row["n_templates"], row["n_degenerate"]) == (1, 4)
    assert "warning: set op=1: 4 of 4 problems are degenerate" in capsys.readouterr().err
    assert {"n_templates", "n_degenerate"} <= set(report.summary_records()[0])


def test_sampling_metrics_with_fake_sampler_and_suite_fit():
    drawn = {op: _drawn("med", op) for op in (2, 5)}
    refs = {op: _reference_generator(d) for op, d in drawn.items()}

    def generate(prompts):
        for r in refs.values():
            with contextlib.suppress(KeyError):
                return r(prompts)
        raise KeyError

    def sample(prompts):  # 3 samples: right, wrong, right
        return [[pair, ("garbage", "1"), pair] for pair in generate(prompts)]

    sample.temperature = 0.7
    prepared = [(EvalSet("med", op, n=6, seed=5), d) for op, d in drawn.items()]
    seen = []
    report = evaluate_sets(prepared, generate, sample, on_records=seen.extend)
    assert len(seen) == 12 and len(seen[0]["samples"]) == 3
    for row in report.rows:
        assert row["samples"] == 3 and row["temperature"] == 0.7
        assert row["pass_at_1"] == 1.0 and row["pass_at_n"] == 1.0
        assert row["pass_ratio_at_n"] == pytest.approx(2 / 3)
        assert row["pass_ratio_ci_low"] == row["pass_ratio_ci_high"] == pytest.approx(2 / 3)
        assert row["step_accuracy_sampled"] == pytest.approx((2 / 3) ** (1 / row["op"]), abs=1e-6)
    assert report.step_fit["sets"] == ["op=2", "op=5"] and report.step_fit["step_accuracy"] == 1.0
    assert "pass@N" in format_table(report.rows, report.step_fit)
    json.dumps(report.json_rows(), allow_nan=False)


def test_accuracy_by_ip_counts_each_problem_size():
    drawn = _drawn("med", 3)
    sizes = [len(problem.edges) for problem, _ in drawn]
    cut = sorted(sizes)[len(sizes) // 2]
    right = _reference_generator(drawn)
    small = {prompt_text(p, "pq") for p, _ in drawn if len(p.edges) <= cut}

    def generate(prompts):  # right on problems with at most `cut` instance parameters, a wrong answer above
        return [pair if prompt in small else (pair[0], "-1") for prompt, pair in zip(prompts, right(prompts))]

    row = evaluate_set(EvalSet("med", 3, n=6, seed=5), drawn, generate).row
    expected = {ip: [sizes.count(ip), sizes.count(ip) if ip <= cut else 0] for ip in set(sizes)}
    assert row["accuracy_by_ip"] == expected
    assert sum(n for n, _ in expected.values()) == 6 and row["correct"] == sum(k for _, k in expected.values())


def test_summary_file(tmp_path):
    drawn = _drawn("med", 3)
    row = evaluate_set(EvalSet("med", 3, n=6, seed=5), drawn, _reference_generator(drawn)).row
    flat = tidy_rows([row])[0]
    assert flat["kind_unparseable"] == 0 and json.loads(flat["accuracy_by_op"]) == {"3": [6, 6]}
    path = write_summary([row, row], tmp_path)
    assert path.exists() and path.name in ("summary.parquet", "summary.csv")


def test_summary_falls_back_to_csv(tmp_path, monkeypatch):
    import csv

    drawn = _drawn("med", 3)
    row = evaluate_set(EvalSet("med", 3, n=6, seed=5), drawn, _reference_generator(drawn)).row
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    path = write_summary([row], tmp_path)
    assert path.name == "summary.csv"
    (read,) = list(csv.DictReader(path.open()))
    assert read["set"] == "op=3" and float(read["accuracy"]) == 1.0 and read["kind_wrong_answer"] == "0"


def test_budgeted_generators_get_the_op_budget():
    drawn = _drawn("med", 6, reask=True)
    refs = _reference_generator(drawn)
    seen = []

    def generate(prompts, max_new_tokens=None):
        seen.append(max_new_tokens)
        return refs(prompts)

    generate.budgeted = True
    eval_set = EvalSet("med", 6, reask=True, n=6, seed=5)
    evaluate_sets([(eval_set, drawn)], generate)
    assert seen == [40 * max(6, *(p.op_count() for p, _ in drawn)) + 64]
    evaluate_sets([(eval_set, drawn)], generate, tokens_per_op=10, extra_tokens=1)
    evaluate_sets([(eval_set, drawn)], generate, max_new_tokens=17)
    assert seen[1:] == [10 * max(6, *(p.op_count() for p, _ in drawn)) + 1, 17]


# ============================================================================================== generation
HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs torch and transformers")

if HAS_TORCH:
    import torch

    from probekit.checkpoint import save_checkpoint
    from probekit.evaluate.generation import (
        Completion,
        ModelGenerator,
        greedy_reference,
        split_completion,
    )
    from probekit.modeling import build_model, load_model_config, padded_vocab
    from probekit.tokenizer import default_tokenizer

    TOK = default_tokenizer()

    class ScriptedLM(torch.nn.Module):
        """A fake causal LM with the HF call signature: row r emits ``scripts[prompt length of r]`` step by step."""

        def __init__(self, scripts: dict[int, list[int]], vocab: int):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))
            self.scripts, self.vocab = scripts, vocab
            self.config = SimpleNamespace(max_position_embeddings=4096)

        def forward(self, input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep):
            if past_key_values is None:
                past_key_values = {"step": 0, "lengths": attention_mask.sum(-1).tolist()}
            step = past_key_values["step"]
            logits = torch.zeros(input_ids.shape[0], 1, self.vocab)
            for r, length in enumerate(past_key_values["lengths"]):
                script = self.scripts[length]
                logits[r, 0, script[min(step, len(script) - 1)]] = 1.0
            past_key_values["step"] += 1
            return SimpleNamespace(logits=logits, past_key_values=past_key_values)


@needs_torch
def test_split_completion_is_robust():
    t = TOK
    sol = t.encode("so a = 5.")
    answer = t.special("[ANSWER]")
    c = split_completion([*sol, answer, *t.encode("12"), t.eos_id, 77, 78], t)
    assert c == Completion("so a = 5.", "12", len(sol) + 3, True)
    assert tuple(c) == ("so a = 5.", "12")
    c = split_completion([*sol, t.vocab_size + 5, 99999], t)  # padded-embedding ids, no [ANSWER], no [EOS]
    assert c.answer is None and not c.finished and "[UNK]" in c.solution and c.n_tokens == len(sol) + 2
    c = split_completion([t.eos_id], t)
    assert c == Completion("", None, 1, True)
    c = split_completion([answer, answer, t.eos_id], t)
    assert c.solution == "" and c.answer == "[ANSWER]"


@needs_torch
def test_generation_loop_with_scripted_model():
    t = TOK
    answer = t.special("[ANSWER]")
    body = t.encode("so a = 5.")
    scripts = {
        5: [*body, answer, *t.encode("5"), t.eos_id],  # finishes early
        7: [*body, *body, *body, answer, *t.encode("7"), t.eos_id],  # finishes later
        6: [padded_vocab(t.vocab_size) - 1] * 3 + [t.pad_id] * 2,  # never finishes: garbage to the budget
    }
    lm = ScriptedLM(scripts, padded_vocab(t.vocab_size))
    prompts = [[t.eos_id] * n for n in (5, 7, 6)]
    for batch_size in (1, 3):
        gen = ModelGenerator(lm, t, batch_size=batch_size, progress=False)
        rows = gen.generate_ids(prompts, max_new_tokens=40)
        assert rows[0] == scripts[5] and rows[1] == scripts[7] and len(rows[2]) == 40
        done = [split_completion(r, t) for r in rows]
        assert [c.answer for c in done] == ["5", "7", None] and [c.finished for c in done] == [True, True, False]
        assert done[0].solution == "so a = 5."
    assert gen.generate_ids(prompts, max_new_tokens=3) == [scripts[5][:3], scripts[7][:3], scripts[6][:3]]


@pytest.fixture(scope="module")
def tiny_models():
    if not HAS_TORCH:
        pytest.skip("needs torch and transformers")
    return {name: build_model(load_model_config(name), TOK, seed=3).eval() for name in ("gpt2-tiny", "llama-tiny")}


def _prompts(k=3):
    return [prompt_text(p, "pq") for p, _ in _drawn("med", 3, n=k)] + [
        prompt_text(p, "pq") for p, _ in _drawn("med", 8, n=1)
    ]


@needs_torch
@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.filterwarnings("error::FutureWarning")  # the cache goes under the keyword transformers wants now
def test_kv_cache_matches_no_cache_reference(tiny_models, name):
    model = tiny_models[name]
    ids = [TOK.prompt_ids(p) for p in _prompts()]
    reference = [greedy_reference(model, p, 12, TOK.eos_id) for p in ids]
    for batch_size in (1, 4):  # unpadded and left-padded batches
        rows = ModelGenerator(model, TOK, batch_size=batch_size, progress=False).generate_ids(ids, 12)
        assert rows == reference


@needs_torch
def test_greedy_is_deterministic_and_sampling_seeded(tiny_models):
    model = tiny_models["gpt2-tiny"]
    prompts = _prompts()
    first = ModelGenerator(model, TOK, batch_size=3, progress=False)(prompts, max_new_tokens=16)
    again = ModelGenerator(model, TOK, batch_size=6, progress=False)(prompts, max_new_tokens=16)
    assert first == again and all(isinstance(c, Completion) for c in first)
    s1 = ModelGenerator(model, TOK, batch_size=8, seed=4, progress=False).sample(prompts[:2], 3, 1.0, max_new_tokens=8)
    s2 = ModelGenerator(model, TOK, batch_size=8, seed=4, progress=False).sample(prompts[:2], 3, 1.0, max_new_tokens=8)
    assert s1 == s2 and [len(s) for s in s1] == [3, 3]


@needs_torch
def test_prompt_longer_than_context_is_counted_not_dropped():
    model = build_model(load_model_config("gpt2-tiny"), TOK)
    gen = ModelGenerator(model, TOK, batch_size=2, progress=False)
    gen.context = 40  # shorter than any iGSM prompt
    out = gen(_prompts(2)[:2], max_new_tokens=5)
    assert out == [Completion("", None, 0, False)] * 2


# ============================================================================================== end to end
@needs_torch
def test_beam_sample_is_the_papers_second_decoding_mode(tiny_models, monkeypatch):
    """Paper App. F.1: beam 4 with do_sample; one completion per prompt, seeded, the global RNG untouched."""
    model = tiny_models["gpt2-tiny"]
    calls = []
    generate = model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    prompts = _prompts()
    state = torch.random.get_rng_state()
    first = ModelGenerator(model, TOK, batch_size=2, seed=4, progress=False).decoder("beam-sample")(prompts, 12)
    assert torch.equal(state, torch.random.get_rng_state())
    again = ModelGenerator(model, TOK, batch_size=2, seed=4, progress=False).decoder("beam-sample")(prompts, 12)
    assert first == again and len(first) == len(prompts) and all(c.n_tokens <= 12 for c in first)
    assert calls and all(c["num_beams"] == 4 and c["do_sample"] and c["num_return_sequences"] == 1 for c in calls)
    greedy = ModelGenerator(model, TOK, progress=False)
    assert greedy.decoder("greedy") is greedy
    with pytest.raises(ValueError, match="decoding"):
        greedy.decoder("beam")


@needs_torch
def test_eval_decoding_option_reaches_the_rows(tmp_path, tiny_models):
    ckpt = save_checkpoint(tiny_models["gpt2-tiny"], TOK, tmp_path / "ckpt", {"data": {"preset": "med"}})
    argv = [str(ckpt), "--op", "2", "--n", "2", "--max-new-tokens", "8", "--json", "--quiet", "--workers", "1"]
    status, stdout = _run_eval([*argv, "--decoding", "beam-sample", "--out", str(tmp_path / "out")])
    assert status == 0 and [r["decoding"] for r in json.loads(stdout)] == ["beam-sample"]
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["decoding"] == "beam-sample"
    status, stdout = _run_eval(argv)
    assert status == 0 and json.loads(stdout)[0]["decoding"] == "greedy"


@needs_torch
def test_eval_preset_option_takes_a_restricted_family(tmp_path, tiny_models):
    """``--preset med-op3-ip12`` evaluates on that family whatever the checkpoint was trained on (med): every problem
    has at most 12 instance parameters and op <= 3, and the rows count them in ``accuracy_by_ip``."""
    ckpt = save_checkpoint(tiny_models["gpt2-tiny"], TOK, tmp_path / "ckpt", {"data": {"preset": "med"}})
    argv = [str(ckpt), "--preset", "med-op3-ip12", "--sets", "2,unforced", "--n", "4", "--max-new-tokens", "8"]
    status, stdout = _run_eval([*argv, "--json", "--quiet", "--workers", "1", "--out", str(tmp_path / "out")])
    assert status == 0
    rows = json.loads(stdout)
    assert [(r["preset"], r["op"]) for r in rows] == [("med-op3-ip12", 2), ("med-op3-ip12", None)]
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(r["op"] <= 3 and r["ip"] <= 12 for r in records)
    for row in rows:
        assert sum(n for n, _ in row["accuracy_by_ip"].values()) == 4
        assert max(int(ip) for ip in row["accuracy_by_ip"]) <= 12


def _run_eval(argv: list[str]) -> tuple[int, str]:
    from probekit.evaluate.command import register

    parser = argparse.ArgumentParser(prog="probekit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = args.func(args)
    return status, stdout.getvalue()


@needs_torch
def test_end_to_end_tiny_checkpoint(tmp_path, tiny_models):
    ckpt = save_checkpoint(
        tiny_models["gpt2-tiny"], TOK, tmp_path / "ckpt", {"data": {"preset": "med", "format": "qp"}}
    )
    out = tmp_path / "out"
    status, stdout = _run_eval(
        [
            str(ckpt),
            "--sets",
            "2,r3",
            "--n",
            "3",
            "--max-new-tokens",
            "24",
            "--out",
            str(out),
            "--json",
            "--quiet",
            "--workers",
            "1",
            "--samples",
            "2",
            "--temperature",
            "1.0",
        ]
    )
    assert status == 0
    rows = json.loads(stdout)
    assert [r["set"] for r in rows] == ["op=2", "reask op=3"]
    for row in rows:
        for key in (
            "set",
            "n",
            "accuracy",
            "ci_low",
            "ci_high",
            "unnecessary_per_correct",
            "pass_at_n",
            "pass_ratio_at_n",
            "pass_at_1",
            "step_accuracy",
            "mistake_kinds",
        ):
            assert key in row
        assert row["n"] == 3 and row["format"] == "qp" and 0 <= row["accuracy"] <= 1
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {r["set"] for r in records} == {"op=2", "reask op=3"}
    for rec in records:
        for key in (
            "set",
            "index",
            "seed",
            "problem",
            "question",
            "categories",
            "solution",
            "emitted_answer",
            "verdict",
            "reference_solution",
            "first_error_index",
            "n_sentences",
        ):
            assert key in rec
        assert len(rec["samples"]) == 2
        assert check_record(rec) == rec["verdict"]
    assert any((out / name).exists() for name in ("summary.parquet", "summary.csv"))
    assert json.loads((out / "eval.json").read_text())["provenance"]["data"]["format"] == "qp"

    # greedy decoding is deterministic: the same command gives the same solutions
    out2 = tmp_path / "out2"
    status, _ = _run_eval(
        [str(ckpt), "--op", "2", "--n", "3", "--max-new-tokens", "24", "--out", str(out2), "--quiet", "--workers", "1"]
    )
    again = [json.loads(line) for line in (out2 / "records.jsonl").read_text().splitlines()]
    assert status == 0 and [r["solution"] for r in again] == [r["solution"] for r in records[:3]]


def test_command_rejects_bad_options(tmp_path):
    status, _ = _run_eval([str(tmp_path), "--n", "2"])
    assert status == 2
    (tmp_path / "config.json").write_text("{}")
    assert _run_eval([str(tmp_path), "--reask"])[0] == 2
    assert _run_eval([str(tmp_path), "--samples", "2", "--temperature", "0"])[0] == 2


@needs_torch
def test_run_eval_is_a_library_call_returning_the_summary_rows(tmp_path, tiny_models):
    """What ``probekit eval`` (and a sweep's accuracy job) calls, without the command line."""
    pd = pytest.importorskip("pandas")
    from probekit.evaluate.job import EvalSpec, run_eval
    from probekit.records import table_records

    ckpt = save_checkpoint(tiny_models["gpt2-tiny"], TOK, tmp_path / "ckpt", {"data": {"preset": "med"}})
    spec = EvalSpec(
        str(ckpt), sets="2,r3", n=2, max_new_tokens=16, device="cpu", out=str(tmp_path / "out"), progress=False
    )
    report = run_eval(spec)
    rows = report.summary_records()
    assert [r["set"] for r in rows] == ["op=2", "reask op=3"] and [r["op"] for r in rows] == [2, 3]
    assert all(r["n"] == 2 and r["checkpoint"] == str(ckpt) and "kind_unparseable" in r for r in rows)
    assert rows == table_records(pd.read_parquet(tmp_path / "out" / "summary.parquet"))  # the rows it wrote
    with pytest.raises(ValueError, match="temperature must be > 0"):
        run_eval(EvalSpec(str(ckpt), samples=2, temperature=0))


def test_imports_stay_light(imported_modules):
    code = "import probekit.evaluate, probekit.evaluate.command, probekit.evaluate.metrics"
    assert imported_modules(code, ["torch"]) == []
