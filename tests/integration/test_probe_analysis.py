"""Probe analyses: mistakes against probes (Fig. 8) and nece by layer and distance (Fig. 10).

The bookkeeping is checked exactly on synthetic model solutions made by editing a reference solution (a known
unnecessary parameter, a known first wrong parameter), with fake probes whose predictions are known; the depth
table and the CLI run on real (tiny) models.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pd = pytest.importorskip("pandas")

from shipped import DEFAULT_REASONER  # noqa: E402

from probekit.evaluate.judge import judge  # noqa: E402
from probekit.evaluate.metrics import wilson_interval  # noqa: E402
from probekit.igsm.generate import GenerationConfig, draw_problem, to_record  # noqa: E402
from probekit.igsm.labels import compute_labels  # noqa: E402
from probekit.igsm.render import prompt_text  # noqa: E402
from probekit.probe import depth, mistakes  # noqa: E402
from probekit.probe.data import (  # noqa: E402
    ProbeBuilder,
    ProblemText,
    probe_pool,
    problems_from_config,
)
from probekit.probe.layers import probe_layers  # noqa: E402

CFG = GenerationConfig("med", op=5, seed=7, split="test")
CKPT = DEFAULT_REASONER


# ---------------------------------------------------------------------------- synthetic model solutions
def _sentences(solution: str) -> list[str]:
    body = solution.strip()
    return (body.removesuffix(".")).split(". ")


def _join(sentences) -> str:
    return ". ".join(sentences) + "."


def _record(problem, reference, solution, set_name, index, answer=None):
    """A record as ``probekit eval`` writes it (generated ``solution``, ``verdict``, ``correct``, ``set``)."""
    answer = str(problem.answer) if answer is None else answer
    rec = to_record(problem, reference, CFG, index)
    rec["reference_solution"] = rec.pop("solution")
    judged = judge(problem, solution, answer)
    return {
        "set": set_name,
        **rec,
        "solution": solution,
        "emitted_answer": answer,
        "correct": judged["correct"],
        "verdict": judged["verdict"],
        "first_error_index": judged["first_error_index"],
    }


@pytest.fixture(scope="module")
def case():
    """Six records of one op=5 problem (reference: k = 12; M = 1 + k; j = k + M; R = 22 * (j + M)).

    0 (set A): an unnecessary constant parameter U written correctly first, then the reference without its first
       sentence, so sentence 1 (Celtic Sword, needs Samurai Sword) is the first wrong one: used_before_defined;
    1 (set A): the reference with a wrong constant in sentence 0 (wrong_value: Samurai Sword was ready);
    2 (set B): the reference itself (correct);
    3 (set B): a first sentence naming a non-parameter (unknown_parameter: skipped as not_a_parameter);
    4 (set B): the reference with a wrong emitted answer (skipped as no_first_error);
    5 (set B): the reference without its last sentence (every sentence right, no query: skipped as ending).
    """
    problem, ref = draw_problem(CFG, 0)
    name = problem.name
    ss = _sentences(ref)
    unnecessary = "Darkroom Image Wing's Light Up Flip Cabinet"
    (u,) = [p for p in problem.params if name(p) == unnecessary]
    assert u not in problem.necessary and not problem.parents[u]
    assert ss[0] == "Define Rotating Flip Cabinet's Samurai Sword as k; so k = 12"
    assert ss[1].startswith("Define Rotating Flip Cabinet's Celtic Sword as M; so M = 1 + k")
    solutions = [
        _join([f"Define {unnecessary} as x; so x = {problem.values[u]}"] + ss[1:]),
        _join([ss[0].replace("= 12", "= 13")] + ss[1:]),
        ref,
        _join(["Define Darkroom Image Wing's Celtic Sword as q; so q = 3"] + ss),
        ref,
        _join(ss[:-1]),
    ]
    sets = ["A", "A", "B", "B", "B", "B"]
    records = [
        _record(problem, ref, s, st, i, answer="21" if i == 4 else None)
        for i, (s, st) in enumerate(zip(solutions, sets))
    ]
    assert [r["correct"] for r in records] == [False, False, True, False, False, False]
    assert records[0]["verdict"]["unnecessary"] == [unnecessary]
    return {
        "problem": problem,
        "reference": ref,
        "records": records,
        "unnecessary": unnecessary,
        "solutions": solutions,
        "ss": ss,
    }


class FakeProbe:
    """Predictions from a rule on each example's meta (a, t, label): known in advance."""

    def __init__(self, task, rule):
        self.task, self.rule, self.calls = task, rule, 0

    def predict(self, data, model=None):
        self.calls += 1
        assert data.tasks == [self.task]
        return np.array([self.rule(a, t, y) for a, t, y in zip(data.meta["a"], data.meta["t"], data.labels)])


# ---------------------------------------------------------------------------- (a) unnecessary parameters
def test_unnecessary_groups_are_exactly_the_written_and_unwritten_parameters(case, tok):
    problem, records, u = case["problem"], case["records"], case["unnecessary"]
    name = problem.name
    solutions = mistakes.solutions_from_records(records[:1])
    frame = mistakes.unnecessary_examples(solutions, tok, nece_per_problem=None).frame()
    pool = [name(p) for p in probe_pool(problem)]
    necessary = {name(p) for p in problem.necessary}
    by_group = {g: set(frame.loc[frame.group == g, "a"]) for g in mistakes.NECE_GROUPS}
    assert by_group["necessary"] == necessary
    # record 0 is a wrong solution: U is written, but outside the paper's population (correct solutions)
    assert by_group["written_unnecessary_other"] == {u} and by_group["written_unnecessary"] == set()
    assert by_group["unwritten_unnecessary"] == set(pool) - necessary - {u}
    assert len(frame) == len(pool) and frame["a"].is_unique  # every pool parameter once
    assert (frame["label"] == frame["group"].eq("necessary").astype(int)).all()
    assert set(frame.loc[frame.written, "a"]) == {u} | {name(p) for p in problem.necessary if p != problem.query} - {
        "Rotating Flip Cabinet's Samurai Sword"
    } | {name(problem.query)}
    assert frame.loc[frame.a == u, "written_correctly"].item()
    assert frame["written_correctly"].sum() == 1
    assert (frame["task"] == "nece").all() and frame["t"].isna().all() and (frame["set"] == "A").all()
    # the input is the end of the question: prefix of the prompt, then [START] A [END]
    builder = ProbeBuilder(ProblemText(problem, prompt_text(problem, "pq"), case["solutions"][0], source="model"), tok)
    data = mistakes.unnecessary_examples(solutions, tok, nece_per_problem=None)
    i = data.meta["a"].index(u)
    assert list(data.ids[i]) == builder.example("nece", u)[0]
    # a cap keeps every written unnecessary parameter
    capped = mistakes.unnecessary_examples(solutions, tok, nece_per_problem=1).frame()
    assert capped.group.value_counts().to_dict() == {
        "necessary": 1,
        "written_unnecessary_other": 1,
        "unwritten_unnecessary": 1,
    }


def test_unnecessary_conditional_probabilities_by_hand(case, tok):
    records, u = case["records"], case["unnecessary"]
    solutions = mistakes.solutions_from_records(records[:3])
    data = mistakes.unnecessary_examples(solutions, tok, nece_per_problem=None)
    frame = data.frame()
    unwritten = sorted(set(frame.loc[frame.group == "unwritten_unnecessary", "a"]))
    w = next(n for n in unwritten if n != u)
    # the probe says nece for necessary parameters, for U and for one unwritten unnecessary parameter w
    probe = FakeProbe("nece", lambda a, t, y: int(y == 1 or a in (u, w)))
    pred = mistakes.predict_frame(data, {"nece": probe})
    table = mistakes.conditional_table(pred, bootstrap=0)  # Wilson intervals over examples
    n_unw_a = int(((frame.group == "unwritten_unnecessary") & (frame.set == "A")).sum())
    n_unw_all = int((frame.group == "unwritten_unnecessary").sum())
    n_nec = int((frame.group == "necessary").sum())

    def row(set_name, group):
        (r,) = table[(table.set == set_name) & (table.group == group)].to_dict("records")
        return r

    # set A: records 0 and 1 (U written only in record 0; w never written)
    r = row("A", "written_unnecessary_other")  # record 0 is wrong: not the paper's population
    assert (r["n"], r["n_pred_true"], r["p_pred_true"], r["true_label"]) == (1, 1, 1.0, 0)
    assert (r["p_ci_low"], r["p_ci_high"]) == pytest.approx(wilson_interval(1, 1))
    assert r["accuracy"] == 0.0 and (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(0, 1))
    r = row("A", "unwritten_unnecessary")
    assert (r["n"], r["n_pred_true"]) == (n_unw_a, 3)  # w in records 0 and 1, U in record 1 (written in 0)
    assert r["p_pred_true"] == pytest.approx(3 / n_unw_a)
    assert (r["p_ci_low"], r["p_ci_high"]) == pytest.approx(wilson_interval(3, n_unw_a))
    assert r["accuracy"] == pytest.approx(1 - 3 / n_unw_a) and r["n_correct"] == n_unw_a - 3
    # pooled over sets: three records, w unwritten in all three, U unwritten in records 1 and 2
    r = row("all", "unwritten_unnecessary")
    assert (r["n"], r["n_pred_true"]) == (n_unw_all, 3 + 2)
    r = row("all", "necessary")
    assert (r["n"], r["n_pred_true"], r["accuracy"], r["true_label"]) == (n_nec, n_nec, 1.0, 1)
    assert list(table.columns) == ["task", "set", *mistakes.TABLE_COLUMNS[1:]]
    assert probe.calls == 1


def test_fig8a_population_is_correct_solutions_with_well_formed_unnecessary_sentences(case, tok):
    """The paper's Fig. 8(a) asks about unnecessary parameters in solutions the model got right: the default group
    holds those only; every written unnecessary parameter stays available as a second, labelled group."""
    problem, ref, u = case["problem"], case["reference"], case["unnecessary"]
    (param,) = [p for p in problem.params if problem.name(p) == u]
    right = _join([f"Define {u} as x; so x = {problem.values[param]}"] + case["ss"])  # correct, one extra step
    correct = _record(problem, ref, right, "A", 6)
    assert correct["correct"] and correct["verdict"]["unnecessary"] == [u]
    wrong = case["records"][0]  # U written correctly, but the solution is wrong
    probes = {t: FakeProbe(t, lambda a, t_, y: 1) for t in mistakes.MISTAKE_TASKS}
    result = mistakes.mistake_analysis([correct, wrong], probes, tokenizer=tok, nece_per_problem=None, bootstrap=0)
    table = result.unnecessary[result.unnecessary.set == "all"].set_index("group")
    assert table.loc["written_unnecessary", "n"] == 1  # the correct solution's U only
    assert table.loc["written_unnecessary_other", "n"] == 1
    assert table.loc[mistakes.WRITTEN_POOLED, "n"] == 2  # the old, pooled population
    assert table.loc[mistakes.WRITTEN_POOLED, "true_label"] == 0
    examples = result.unnecessary_examples
    paper = examples[examples.group == "written_unnecessary"]
    assert paper.solution_correct.all() and paper.written_correctly.all()


def test_mistake_intervals_resample_solutions_not_examples():
    """Ten examples per solution, five solutions all right and five all wrong: the interval over solutions is far
    wider than a Wilson interval that treats the 100 examples as independent."""
    frame = pd.DataFrame(
        {
            "task": "nece",
            "set": "A",
            "group": "necessary",
            "label": 1,
            "record": np.repeat(np.arange(10), 10),
            "pred": np.repeat([1, 0] * 5, 10),
        }
    )
    boot = mistakes.conditional_table(frame, pooled=False).iloc[0]
    wilson = mistakes.conditional_table(frame, pooled=False, bootstrap=0).iloc[0]
    assert boot.accuracy == wilson.accuracy == 0.5 and boot.n_solutions == 10 and boot.bootstrap > 0
    assert (wilson.ci_low, wilson.ci_high) == pytest.approx(wilson_interval(50, 100))
    assert boot.ci_high - boot.ci_low > 2 * (wilson.ci_high - wilson.ci_low)


# ---------------------------------------------------------------------------- (b) first wrong parameter
def test_first_error_examples_pick_the_first_wrong_parameter_and_its_position(case, tok):
    problem, records, u = case["problem"], case["records"], case["unnecessary"]
    skipped = Counter()
    solutions = mistakes.solutions_from_records(records)
    data = mistakes.first_error_examples(
        solutions, tokenizer=tok, background_per_problem=0, skipped=skipped, correct_per_problem=None
    )
    frame = data.frame()
    assert dict(skipped) == {"not_a_parameter": 1, "no_first_error": 1, "ending": 1}
    first = frame[frame.group == "first_error"]
    celtic, samurai = "Rotating Flip Cabinet's Celtic Sword", "Rotating Flip Cabinet's Samurai Sword"
    got = {(r.record, r.task, r.a, r.t, r.label, r.first_error_kind) for r in first.itertuples()}
    assert got == {
        (0, "can_next", celtic, 1, 0, "used_before_defined"),
        (0, "nece_next", celtic, 1, 0, "used_before_defined"),
        (1, "can_next", samurai, 0, 1, "wrong_value"),
        (1, "nece_next", samurai, 0, 1, "wrong_value"),
    }
    # the input is the model's own text cut right before the first wrong sentence
    item = ProblemText(problem, prompt_text(problem, "pq"), case["solutions"][0], source="model")
    builder = ProbeBuilder(item, tok)
    for task in ("can_next", "nece_next"):
        (i,) = [
            j
            for j in range(len(data))
            if data.meta["group"][j] == "first_error" and data.meta["record"][j] == 0 and data.meta["task"][j] == task
        ]
        assert list(data.ids[i]) == builder.example(task, celtic, t=1)[0]
        text = tok.decode(list(data.ids[i]))
        assert f"as x; so x = {problem.values[next(p for p in problem.params if problem.name(p) == u)]}." in text
        assert celtic + " as M" not in text  # its own sentence is not in the input
    # true labels recomputed independently along the model's text
    labels = compute_labels(problem, case["solutions"][0])
    assert celtic not in labels.steps[1]["can_next"] and celtic not in labels.steps[1]["nece_next"]
    # correct steps: the sentences before the first mistake, each at its own position
    steps = frame[frame.group == "correct_step"]
    got = {(r.record, r.task, r.a, r.t, r.label) for r in steps.itertuples()}
    expect = {(0, "can_next", u, 0, 1), (0, "nece_next", u, 0, 0)}  # U is unnecessary: nece_next false
    ref_names = [s.split(" as ")[0][len("Define ") :] for s in case["ss"]]
    for rec in (2, 4):  # correct reference; reference with only the emitted answer wrong
        expect |= {(rec, task, n, i, 1) for i, n in enumerate(ref_names) for task in ("can_next", "nece_next")}
    expect |= {(5, task, n, i, 1) for i, n in enumerate(ref_names[:-1]) for task in ("can_next", "nece_next")}
    assert got == expect
    assert set(frame.record) == {0, 1, 2, 4, 5}  # record 3's first sentence is already wrong
    # a cap draws the same correct steps for both tasks, a subset of all of them
    capped = mistakes.first_error_examples(
        solutions, tokenizer=tok, background_per_problem=0, correct_per_problem=2
    ).frame()
    capped = capped[capped.group == "correct_step"]
    assert capped.groupby(["record", "task"]).size().to_dict() == {
        (r, task): min(2, n) for r, n in ((0, 1), (2, 4), (4, 4), (5, 3)) for task in ("can_next", "nece_next")
    }
    picked = {(r.record, r.task, r.a, r.t, r.label) for r in capped.itertuples()}
    assert picked <= expect
    by_task = {task: {(r, a, t) for r, tk, a, t, _ in picked if tk == task} for task in ("can_next", "nece_next")}
    assert by_task["can_next"] == by_task["nece_next"]


def test_background_examples_are_true_negatives_on_the_correct_prefix(case, tok):
    solutions = mistakes.solutions_from_records(case["records"])
    data = mistakes.first_error_examples(solutions, tokenizer=tok, background_per_problem=7, seed=3)
    frame = data.frame()
    bg = frame[frame.group == "background"]
    assert (bg.label == 0).all()
    prefix = {0: 1, 1: 0, 2: 4, 3: 0, 4: 4, 5: 3}  # k for wrong solutions, T for correct prefixes
    assert all(r.t <= prefix[r.record] for r in bg.itertuples())
    assert bg.groupby(["record", "task"]).size().eq(7).all() and len(bg) == 6 * 2 * 7
    assert not {(0, 1, "Rotating Flip Cabinet's Celtic Sword")} & {(r.record, r.t, r.a) for r in bg.itertuples()}
    again = mistakes.first_error_examples(solutions, tokenizer=tok, background_per_problem=7, seed=3).frame()
    pd.testing.assert_frame_equal(again, frame)  # seeded


def test_first_error_conditional_accuracies_by_hand(case, tok):
    probes = {
        "nece": FakeProbe("nece", lambda a, t, y: y),
        "can_next": FakeProbe("can_next", lambda a, t, y: 1),  # always "ready"
        "nece_next": FakeProbe("nece_next", lambda a, t, y: 0),  # never "next and necessary"
    }
    result = mistakes.mistake_analysis(
        case["records"],
        probes,
        tokenizer=tok,
        background_per_problem=2,
        nece_per_problem=None,
        correct_per_problem=None,
        bootstrap=0,  # Wilson intervals over examples, checked by hand below
    )
    t = result.first_error

    def row(task, set_name, group, label):
        sel = t[(t.task == task) & (t.set == set_name) & (t.group == group) & (t.true_label == label)]
        (r,) = sel.to_dict("records")
        return r

    r = row("can_next", "A", "first_error", 0)  # record 0: the probe wrongly says ready
    assert (r["n"], r["n_correct"], r["accuracy"], r["n_pred_true"]) == (1, 0, 0.0, 1)
    r = row("nece_next", "A", "first_error", 0)
    assert (r["n"], r["n_correct"], r["accuracy"]) == (1, 1, 1.0)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(1, 1))
    r = row("nece_next", "all", "first_error", 1)  # record 1: Samurai Sword was ready and necessary
    assert (r["n"], r["n_correct"]) == (1, 0)
    r = row("can_next", "all", "correct_step", 1)
    assert (r["n"], r["n_correct"]) == (1 + 4 + 4 + 3, 12)
    r = row("nece_next", "all", "correct_step", 0)  # U, written correctly but unnecessary
    assert (r["n"], r["n_correct"]) == (1, 1)
    r = row("can_next", "all", "background", 0)
    assert (r["n"], r["n_correct"], r["accuracy"]) == (6 * 2, 0, 0.0)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(0, 12))
    assert row("can_next", "B", "background", 0)["n"] == 4 * 2
    assert result.counts["first_error_used"] == 2 and result.counts["wrong"] == 5 and result.counts["correct"] == 1
    assert result.counts["skipped"] == {
        "bad_record": 0,
        "no_first_error": 1,
        "ending": 1,
        "no_parameter": 0,
        "not_a_parameter": 1,
    }
    # the tidy per-example frame matches the table
    ex = result.first_error_examples
    sel = ex[(ex.task == "can_next") & (ex.group == "correct_step")]
    assert sel.probe_correct.all() and len(sel) == 12
    rec = result.records(model="fake")
    assert {r["analysis"] for r in rec} == {"unnecessary", "first_error"}
    json.dumps(rec)


def test_records_without_verdicts_are_judged_and_bad_ones_counted(case, tok):
    records = [dict(r) for r in case["records"][:2]]
    for r in records:
        r.pop("verdict")
        r.pop("correct")
    records.append({"problem": "not an iGSM problem", "solution": "x"})
    probes = {t: FakeProbe(t, lambda a, t_, y: y) for t in mistakes.MISTAKE_TASKS}
    result = mistakes.mistake_analysis(records, probes, tokenizer=tok, background_per_problem=0)
    assert result.counts["skipped"]["bad_record"] == 1 and result.counts["solutions"] == 2
    first = result.first_error_examples
    assert set(first.loc[first.group == "first_error", "record"]) == {0, 1}
    assert (result.first_error.accuracy == 1).all() and (result.unnecessary.accuracy == 1).all()


# ---------------------------------------------------------------------------- depth
def test_depth_table_counts_add_up_per_layer(gpt2, tok):
    train, test = depth.depth_data("med", "pq", n_train=8, n_test=5, seed=0, op=4, tokenizer=tok)
    expected = Counter()  # distance -> necessary parameters of the test problems, from the labels
    for p in problems_from_config(GenerationConfig("med", 4, "pq", False, "test", 1), 5):
        labels = compute_labels(p.problem, p.solution)
        expected.update(labels.distance[name] for name in labels.nece)
    n_necessary = sum(expected.values())
    positives = test.select(test.labels == 1)
    assert len(positives) == n_necessary and (test.labels == 0).sum() > 0  # and nece = false examples beside
    table = depth.depth_analysis(gpt2, train, test, layers="all", rank=0, steps=20)
    assert list(table.columns[:8]) == list(depth.DEPTH_COLUMNS)
    assert not table.duplicated(["layer", "distance"]).any()
    assert set(table.layer) == {0, 1}
    for _layer, sub in table.groupby("layer"):
        assert sub.set_index("distance").n.to_dict() == dict(expected)  # one row per distance present
        assert sub.n.sum() == n_necessary
        assert sub.n_neg.nunique() == 1 and sub.n_neg.iloc[0] == (test.labels == 0).sum()
    assert ((table.accuracy >= 0) & (table.accuracy <= 1)).all() and (table.ci_low <= table.accuracy).all()
    assert (table.probe == "linear").all() and table.train_prior.iloc[0] == pytest.approx(train.labels.mean())
    # per layer, the pooled accuracy is the per-layer probe's accuracy on the same examples
    per_layer = probe_layers(gpt2, train, positives, "nece", layers="all", rank=0, steps=20)
    pooled = table.groupby("layer")[["n_correct", "n"]].sum()
    assert (pooled.n_correct / pooled.n).tolist() == pytest.approx(per_layer.accuracy.tolist())
    negatives = probe_layers(gpt2, train, test.select(test.labels == 0), "nece", layers="all", rank=0, steps=20)
    assert table.groupby("layer").accuracy_neg.first().tolist() == pytest.approx(negatives.accuracy.tolist())
    # a rank > 0 probe on one layer takes the full path
    one = depth.depth_analysis(gpt2, train, test, layers="0", rank=2, steps=2, batch_size=8)
    assert set(one.layer) == {0} and one.n.sum() == n_necessary and (one["rank"] == 2).all()
    assert (one.probe == "v-probe").all()


def test_depth_defaults_to_the_paper_v_probe_and_intervals_over_problems(gpt2, tok):
    """Fig. 10 uses V-probes (rank 8), so must the depth analysis by default; its intervals resample problems."""
    from probekit.probe.experiment import DepthSpec

    assert DepthSpec("ckpt").rank == 8
    assert inspect.signature(depth.depth_analysis).parameters["rank"].default == 8
    frame = pd.DataFrame(
        {
            "layer": 0,
            "hook": "h0",
            "distance": 1,
            "label": 1,
            "pred": np.repeat([1, 0] * 5, 10),
            "group": np.repeat(np.arange(10), 10),
        }
    )
    boot = depth.depth_table(frame).iloc[0]
    wilson = depth.depth_table(frame.drop(columns="group")).iloc[0]
    assert (wilson.ci_low, wilson.ci_high) == pytest.approx(wilson_interval(50, 100))
    assert boot.ci_high - boot.ci_low > 2 * (wilson.ci_high - wilson.ci_low)


def test_depth_table_accuracy_by_hand():
    frame = pd.DataFrame(
        {
            "layer": [0, 0, 0, 1, 1, 1],
            "hook": ["h0"] * 3 + ["h1"] * 3,
            "distance": [1, 1, 2, 1, 1, 2],
            "label": [1] * 6,
            "pred": [1, 0, 0, 1, 1, 1],
        }
    )
    table = depth.depth_table(frame)
    assert table[["layer", "distance", "n", "n_correct"]].values.tolist() == [
        [0, 1, 2, 1],
        [0, 2, 1, 0],
        [1, 1, 2, 2],
        [1, 2, 1, 1],
    ]
    assert table.accuracy.tolist() == [0.5, 0.0, 1.0, 1.0]
    assert (table.ci_low[0], table.ci_high[0]) == pytest.approx(wilson_interval(1, 2))


# ---------------------------------------------------------------------------- CLI on the shipped checkpoint
PROBE = ["probe", str(CKPT)]
"""``probekit probe`` on the shipped checkpoint."""


@pytest.mark.slow
@pytest.mark.skipif(not (CKPT / "model.safetensors").exists(), reason="shipped checkpoint missing")
def test_cli_mistakes_on_the_shipped_checkpoint(tmp_path, case, probe_cli):
    records = tmp_path / "eval" / "records.jsonl"
    records.parent.mkdir()
    records.write_text("".join(json.dumps(r) + "\n" for r in case["records"]))
    tiny = "--rank 0 --steps 5 --n-train 4 --per-problem 4 --op 3 --device cpu --background-per-problem 3".split()
    tiny += "--correct-per-problem all --nece-per-problem all --json --quiet".split()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, err = probe_cli(
            [*PROBE, "--analysis", "mistakes", "--records", str(records.parent), "--out", str(tmp_path / "a"), *tiny]
        )
    assert {r["analysis"] for r in out} == {"unnecessary", "first_error"}
    for r in out:
        assert r["model"] == "pretrained" and r["n"] > 0 and 0 <= r["accuracy"] <= 1
        assert {"task", "set", "group", "true_label", "p_pred_true", "ci_low", "ci_high"} <= r.keys()
    first = [r for r in out if r["analysis"] == "first_error" and r["group"] == "first_error" and r["set"] == "all"]
    assert {(r["task"], r["true_label"], r["n"]) for r in first} == {
        ("can_next", 0, 1),
        ("can_next", 1, 1),
        ("nece_next", 0, 1),
        ("nece_next", 1, 1),
    }
    assert "first errors probed: 2" in err
    folder = tmp_path / "a"
    for name in ("unnecessary", "first_error", "unnecessary_examples", "first_error_examples"):
        assert (folder / f"{name}.csv").exists()
    assert json.loads((folder / "counts.json").read_text())["counts"]["pretrained"]["first_error_used"] == 2
    # the probes saved by that run, loaded back, give the same numbers
    again, _ = probe_cli([*PROBE, "--analysis", "mistakes", "--records", str(records), "--probes", str(folder), *tiny])
    assert again == out


@pytest.mark.skipif(not (CKPT / "model.safetensors").exists(), reason="shipped checkpoint missing")
def test_cli_depth_on_the_shipped_checkpoint(tmp_path, probe_cli):
    options = "--analysis depth --rank 0 --steps 5 --n-train 4 --n-test 3 --op 3 --device cpu --json --quiet".split()
    out, _ = probe_cli([*PROBE, *options, "--out", str(tmp_path / "d")])
    assert {r["model"] for r in out} == {"pretrained", "random-init"}  # the random-init baseline is on by default
    assert {r["layer"] for r in out} == set(range(8))  # eight blocks
    n = json.loads((tmp_path / "d" / "data.json").read_text())["n_necessary_test"]
    for model in ("pretrained", "random-init"):
        for layer in range(8):
            assert sum(r["n"] for r in out if r["layer"] == layer and r["model"] == model) == n
    assert all(r["analysis"] == "depth" and not math.isnan(r["accuracy"]) for r in out)
    assert all(r["probe"] == "linear" and r["rank"] == 0 and 0 <= r["accuracy_neg"] <= 1 for r in out)
    assert (tmp_path / "d" / "depth.csv").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (CKPT / "model.safetensors").exists(), reason="shipped checkpoint missing")
def test_cli_mistakes_generates_solutions_without_records(tmp_path, probe_cli):
    options = "--analysis mistakes --sets 2,r3 --n-eval 2 --max-new-tokens 24 --rank 0 --steps 3 --n-train 3".split()
    out, _ = probe_cli([*PROBE, *options, "--device", "cpu", "--out", str(tmp_path / "g"), "--json", "--quiet"])
    assert out and {r["analysis"] for r in out} <= {"unnecessary", "first_error"}
    assert {r["set"] for r in out} <= {"op=2", "reask op=3", "all"}
    records = (tmp_path / "g" / "eval" / "records.jsonl").read_text().splitlines()
    assert len(records) == 4
    counts = json.loads((tmp_path / "g" / "counts.json").read_text())["counts"]["pretrained"]
    assert counts["records"] == 4 and sum(counts["skipped"].values()) + counts["first_error_used"] <= 4


# ---------------------------------------------------------------------------- library jobs, no CLI
@pytest.mark.slow
@pytest.mark.skipif(not (CKPT / "model.safetensors").exists(), reason="shipped checkpoint missing")
def test_library_jobs_return_the_rows_they_write(tmp_path, case):
    from probekit.probe.experiment import DepthSpec, MistakesSpec, run_depth, run_mistakes
    from probekit.records import table_records

    tiny = dict(rank=0, steps=5, n_train=4, per_problem=4, op=3, device="cpu", progress=False)
    depth_spec = DepthSpec(str(CKPT), layers="-1", n_test=3, out=str(tmp_path / "d"), models=("pretrained",), **tiny)
    depth_result = run_depth(depth_spec)
    rows = depth_result.records()
    assert rows and {r["layer"] for r in rows} == {7} and all(r["model"] == "pretrained" for r in rows)
    assert rows == table_records(pd.read_parquet(tmp_path / "d" / "depth.parquet"))  # what the sweep stored
    assert depth_result.data["n_necessary_test"] == sum(r["n"] for r in rows)

    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in case["records"]))
    spec = MistakesSpec(
        str(CKPT),
        records=str(records),
        models=("pretrained", "random-init"),
        background_per_problem=3,
        out=str(tmp_path / "m"),
        **tiny,
    )
    result = run_mistakes(spec)
    rows = result.records()
    assert {r["analysis"] for r in rows} == {"unnecessary", "first_error"}
    assert {r["model"] for r in rows} == {"pretrained", "random-init"}
    stored = [
        {"analysis": name, **r}
        for name in ("unnecessary", "first_error")
        for r in table_records(pd.read_parquet(tmp_path / "m" / f"{name}.parquet"))
    ]
    assert rows == stored
    assert result.layer == "ln_final.hook_out"  # the default read-out, after the final norm
    assert {r["hook"] for r in rows} == {"ln_final.hook_out"}  # stated in every row
    assert json.loads((tmp_path / "m" / "counts.json").read_text())["counts"]["random-init"]["solutions"] == 6
    with pytest.raises(ValueError, match="random-init model needs probes trained here"):
        run_mistakes(MistakesSpec(str(CKPT), probes=str(tmp_path / "m"), models=("random-init",)))
