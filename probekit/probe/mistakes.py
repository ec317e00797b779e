"""The mistake analysis (paper §5, Fig. 8): a model's own mistakes against its probes.

Everything takes a model's **own** solutions as ``probekit eval`` writes them (``records.jsonl``: ``problem``,
``categories``, the generated ``solution``, ``verdict``, ``correct``, ``set``); a record without ``verdict`` is
judged here with :func:`~probekit.igsm.check.check_solution`. Labels follow what the model wrote
(:class:`~probekit.probe.data.ProbeBuilder` on ``ProblemText(problem, prompt, model_solution, source="model")``).
Probes are anything with ``predict(data: ProbeData[, model]) -> array`` (a fitted
:class:`~probekit.probe.vprobe.VProbe` or, in tests, a fake one); :func:`run_mistakes` (``probekit probe
--analysis mistakes``) trains them on the usual probe data (reference solutions of train-split problems,
:func:`mistake_probe_data`) or loads saved ones, and applies them to the model's own text. Examples come back as
:class:`~probekit.probe.data.ProbeData` whose ``meta`` carries the analysis columns below, so
:meth:`ProbeData.frame` gives a tidy per-example table.


Mistakes (a): unnecessary parameters and the nece probe at the end of the question
-------------------------------------------------------------------------------------
For every record (every solution, correct or not) and every parameter of the probe pool (plus any problem parameter
the model wrote that lies outside the pool), one ``nece`` example at the end of the question, in one ``group``:

- ``necessary``: nece(A) = 1 (label 1);
- ``written_unnecessary``: the paper's Fig. 8(a) population: not necessary, and computed by a well-formed sentence
  (one the checker lists in ``verdict.unnecessary``) of a **fully correct** solution (label 0);
- ``written_unnecessary_other``: not necessary and defined by a *parseable* sentence of a wrong solution, or by a
  sentence the checker rejects (label 0);
- ``unwritten_unnecessary``: not necessary and never defined by the model (label 0).

The tables (:func:`mistake_analysis`) add ``written_unnecessary_pooled`` = both written groups together (every
parseable unnecessary sentence of every solution: the population before the paper's restriction), a second,
labelled series. Per group, :func:`conditional_table` reports ``p_pred_true`` = P(probe says nece | group) with its
95% interval: the paper's comparison is ``written_unnecessary`` against ``unwritten_unnecessary``. Columns
``solution_correct``, ``written`` and ``written_correctly`` stay in the example frames. ``nece_per_problem`` (default 10, ``None``: all) caps the
necessary and the unwritten-unnecessary examples of one record, drawn uniformly without replacement (seeded);
written unnecessary parameters, the rare group, are always all kept.

Mistakes (b): the first wrong parameter and the can_next / nece_next probes before it
---------------------------------------------------------------------------------------
For every wrong solution (``correct`` false), the first wrong sentence ``k = verdict.first_error_sentence`` (0-based,
as the checker counts sentences: ``" BACK"`` sentences skipped) and its parameter ``A = verdict.first_error``; one
example per step task at position ``t = k`` (after the ``k`` correct sentences before it, i.e. just before A's
sentence), ``group = "first_error"``. Its true label is computed along the model's text, whose first ``k`` sentences
are all correct. Left out, and counted in ``skipped`` by reason: ``no_first_error`` (the chain is right, only the
emitted ``[ANSWER]`` is wrong), ``ending`` (``k`` = number of sentences: every sentence is right but the solution
stops early or its last parameter is not the query), ``no_parameter`` (the first wrong sentence names nothing
readable) and ``not_a_parameter`` (it names something that is not a parameter of the problem, e.g.
``unknown_parameter``: no probe label exists for it).

The paper's Fig. 8(b) statistic is the probe's accuracy on the ``first_error`` rows whose **true label is 0**:
P(probe says false | true label false). It is compared with two control groups, defined here:

- ``correct_step``: the sentences the model wrote correctly *before its first mistake* (all sentences of a fully
  correct solution; up to ``correct_per_problem``, default 10, per solution, drawn uniformly, seeded; ``None``:
  all), each probed at its own position ``t = i`` (just before sentence i) on the parameter it defines.
  Its can_next label is always 1 (a correct sentence's parents are known and it is new), so the can_next control is
  P(probe says true | true label true) on the steps the model got right; nece_next is 1 for necessary parameters
  and 0 for unnecessary ones the model wrote correctly (both rows are reported).
- ``background``: up to ``background_per_problem`` (default 10) (t, B) pairs per solution and task with **true label
  0**, drawn uniformly without replacement (seeded) from the pairs with t in the correct-prefix positions 0..k
  (0..T for a correct solution) and B in the probe pool, excluding the first-error pair and every (i, parameter
  of sentence i) of the correct prefix: the probe's accuracy on ordinary negatives along the same solutions, the
  like-for-like baseline of P(probe says false | true label false).

:func:`conditional_table` splits every group by true label, so ``first_error`` rows with true label 1 (A was
ready but computed wrongly, e.g. an arithmetic error) are reported too.

Tables
------
:func:`conditional_table`: ``task, <by...>, group, true_label, n, n_pred_true, p_pred_true, p_ci_low, p_ci_high,
n_correct, accuracy, ci_low, ci_high`` (``accuracy`` = P(prediction = true label); within a row the true label is
fixed, so accuracy is ``p_pred_true`` or ``1 - p_pred_true``), ``n_solutions``, ``bootstrap``. The ``by`` columns
(default ``set``) are strings; pooled rows have ``"all"``. Intervals are 95% percentile intervals of the bootstrap
over *solutions* (``record``: the examples of one solution share its problem and are correlated;
:mod:`probekit.probe.stats`) with ``bootstrap`` resamples (default 1000, seeded), or Wilson 95% over examples
(:func:`probekit.evaluate.metrics.wilson_interval`) with ``bootstrap=0``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from probekit.igsm.check import SolutionSentence, check_solution, parse_solution
from probekit.probe import stats
from probekit.probe.collect import (
    SINGLE_PARAMETER_DROP,
    ExampleCollector,
    save_table,
    wilson_rate,
)
from probekit.probe.data import (
    META_COLUMNS,
    PER_PROBLEM,
    STEP_TASKS,
    ProbeBuilder,
    ProbeData,
    ProblemText,
    _draw_rng,
    check_task,
)
from probekit.records import table_records

STEP_ANALYSIS_TASKS: tuple[str, ...] = ("can_next", "nece_next")
MISTAKE_TASKS: tuple[str, ...] = ("nece", *STEP_ANALYSIS_TASKS)
NECE_GROUPS: tuple[str, ...] = (
    "necessary",
    "written_unnecessary",
    "written_unnecessary_other",
    "unwritten_unnecessary",
)
WRITTEN_POOLED = "written_unnecessary_pooled"
"""The table-only group of every written unnecessary parameter (``written_unnecessary`` + ``_other``)."""
STEP_GROUPS: tuple[str, ...] = ("first_error", "correct_step", "background")
SKIP_REASONS: tuple[str, ...] = ("bad_record", "no_first_error", "ending", "no_parameter", "not_a_parameter")

NECE_COLUMNS = ("record", "set", "group", "written", "written_correctly", "solution_correct", "in_pool")
STEP_COLUMNS = ("record", "set", "group", "first_error_kind", "first_error_sentence", "solution_correct", "in_pool")
TABLE_COLUMNS = (
    "task",
    "group",
    "true_label",
    "n",
    "n_pred_true",
    "p_pred_true",
    "p_ci_low",
    "p_ci_high",
    "n_correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "n_solutions",
    "bootstrap",
)


# ---------------------------------------------------------------------------- records
def load_records(path: str | Path) -> list[dict]:
    """The records of a ``probekit eval`` ``records.jsonl`` (or of the folder holding it). A line that is not a
    JSON object raises ``ValueError`` naming the line."""
    from probekit.records import read_jsonl

    path = Path(path)
    if path.is_dir():
        path = path / "records.jsonl"
    records = []
    for line in read_jsonl(path):
        if line.record is None:
            raise ValueError(f"{path}:{line.number}: {line.error}")
        records.append(line.record)
    return records


@dataclass
class Solution:
    """One record ready for analysis: the problem with the model's text, its verdict and where it came from."""

    record: int  # row in the records list
    item: ProblemText
    verdict: dict
    correct: bool
    set: str
    _builders: dict = field(default_factory=dict, repr=False, compare=False)

    def builder(self, tokenizer) -> ProbeBuilder:
        """The problem's :class:`ProbeBuilder` along the model's text (built once per tokenizer)."""
        b = self._builders.get(id(tokenizer))
        if b is None:
            b = self._builders[id(tokenizer)] = ProbeBuilder(self.item, tokenizer)
        return b

    @classmethod
    def from_record(cls, record: dict, row: int) -> Solution:
        if "solution" not in record or not isinstance(record["solution"], str):
            raise ValueError("record has no generated 'solution' string")
        item = ProblemText.from_record(record, solution=record["solution"], source="model")
        if "index" not in record:
            item.index = row
        verdict = record.get("verdict")
        if (
            not isinstance(verdict, dict)
            or not {"first_error", "first_error_sentence", "n_sentences", "unnecessary", "correct"} <= verdict.keys()
        ):
            verdict = check_solution(item.problem, item.solution).to_dict()
        correct = bool(record.get("correct", verdict["correct"]))
        return cls(row, item, verdict, correct, str(record.get("set") or "records"))


def solutions_from_records(records: Iterable[dict], skipped: Counter | None = None, tokenizer=None) -> list[Solution]:
    """:class:`Solution` per record. A record whose problem or text cannot be read raises ``ValueError``, or, with
    ``skipped`` (a Counter), is left out and counted as ``skipped["bad_record"]``."""
    from probekit.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    out = []
    for row, record in enumerate(records):
        try:
            sol = Solution.from_record(record, row)
            sol.builder(tokenizer)
            out.append(sol)
        except (ValueError, KeyError, TypeError) as err:
            if skipped is None:
                raise ValueError(f"record {row}: {err}") from err
            skipped["bad_record"] += 1
    return out


# ---------------------------------------------------------------------------- example collection
def _written(solution: str, params: set[str]) -> list[str]:
    """Problem parameters defined by the parseable sentences of ``solution``, in order, once each."""
    names = [s.name for s in parse_solution(solution) if s.error is None]
    return list(dict.fromkeys(n for n in names if n in params))


def unnecessary_examples(
    solutions: Sequence[Solution],
    tokenizer=None,
    max_len: int | None = None,
    nece_per_problem: int | None = PER_PROBLEM,
    seed: int = 0,
) -> ProbeData:
    """The nece examples of analysis (a) (module doc): groups necessary / written_unnecessary /
    written_unnecessary_other / unwritten_unnecessary, at the end of the question of each record."""
    from probekit.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    out = ExampleCollector(NECE_COLUMNS, max_len)
    for sol in solutions:
        builder = sol.builder(tokenizer)
        params = set(builder.labels.params)
        nece = set(builder.labels.nece)
        written = _written(sol.item.solution, params)
        written_set = set(written)
        correctly = set(sol.verdict.get("unnecessary") or ())
        pool = builder.pool_names
        pool_set = set(pool)
        names = pool + [n for n in written if n not in pool_set]
        groups: dict[str, list[str]] = {g: [] for g in NECE_GROUPS}
        for name in names:
            if name in nece:
                groups["necessary"].append(name)
            elif name in written_set:
                paper = sol.correct and name in correctly  # a well-formed sentence of a correct solution
                groups["written_unnecessary" if paper else "written_unnecessary_other"].append(name)
            else:
                groups["unwritten_unnecessary"].append(name)
        if nece_per_problem is not None:
            for g in ("necessary", "unwritten_unnecessary"):
                if len(groups[g]) > nece_per_problem:
                    rng = _draw_rng(seed, sol.record, f"analysis-{g}")
                    keep = set(rng.sample(range(len(groups[g])), nece_per_problem))
                    groups[g] = [n for i, n in enumerate(groups[g]) if i in keep]
        for g in NECE_GROUPS:
            for name in groups[g]:
                out.add(
                    builder,
                    "nece",
                    name,
                    record=sol.record,
                    set=sol.set,
                    group=g,
                    written=name in written_set,
                    written_correctly=name in correctly,
                    solution_correct=sol.correct,
                    in_pool=name in pool_set,
                )
    return out.data(["nece"])


def _step_names(sentences: Sequence[SolutionSentence], prefix: int) -> list[tuple[int, str]]:
    """``(i, parameter name)`` of the first ``prefix`` sentences (they precede the first error, so they parsed)."""
    out = []
    for i in range(prefix):
        sentence = sentences[i]
        if sentence.name is None:
            raise ValueError(f"sentence {i}, before the first error, defines no parameter: {sentence.text!r}")
        out.append((i, sentence.name))
    return out


def first_error_examples(
    solutions: Sequence[Solution],
    tasks: Sequence[str] = STEP_ANALYSIS_TASKS,
    tokenizer=None,
    max_len: int | None = None,
    background_per_problem: int = PER_PROBLEM,
    seed: int = 0,
    skipped: Counter | None = None,
    correct_per_problem: int | None = PER_PROBLEM,
) -> ProbeData:
    """The step-task examples of analysis (b) (module doc): groups first_error / correct_step / background.

    ``skipped`` (a Counter) receives the number of wrong solutions left out of the first_error group, by reason.
    """
    from probekit.tokenizer import default_tokenizer

    tasks = [check_task(task) for task in tasks]
    for task in tasks:
        if task not in STEP_TASKS:
            raise ValueError(f"the first-error analysis probes step tasks ({', '.join(STEP_TASKS)}), not {task!r}")
    tokenizer = tokenizer or default_tokenizer()
    skipped = Counter() if skipped is None else skipped
    out = ExampleCollector(STEP_COLUMNS, max_len)
    for sol in solutions:
        builder = sol.builder(tokenizer)
        T = builder.n_steps
        sentences = parse_solution(sol.item.solution)
        params = set(builder.labels.params)
        pool_set = set(builder.pool_names)
        v = sol.verdict
        k = v.get("first_error_sentence")
        first_error: tuple[int, str] | None = None  # (sentence, parameter) of the first_error group
        kind = None
        if sol.correct:
            prefix = T
        elif k is None:
            prefix = T
            skipped["no_first_error"] += 1
        else:
            k = int(k)
            prefix = min(k, T)
            if k >= T:
                skipped["ending"] += 1
            else:
                first = v.get("first_error") or sentences[k].name
                kind = (v.get("mistakes") or [{}])[0].get("kind")
                if first is None:
                    skipped["no_parameter"] += 1
                elif first not in params:
                    skipped["not_a_parameter"] += 1
                else:
                    first_error = (k, first)
        common = {"record": sol.record, "set": sol.set, "solution_correct": sol.correct}
        steps = _step_names(sentences, prefix)
        if correct_per_problem is not None and len(steps) > correct_per_problem:
            rng = _draw_rng(seed, sol.record, "analysis-correct-steps")
            steps = [steps[j] for j in sorted(rng.sample(range(len(steps)), correct_per_problem))]
        for task in tasks:
            if first_error is not None:
                out.add(
                    builder,
                    task,
                    first_error[1],
                    t=first_error[0],
                    group="first_error",
                    first_error_kind=kind,
                    first_error_sentence=first_error[0],
                    in_pool=first_error[1] in pool_set,
                    **common,
                )
            for i, name in steps:
                out.add(
                    builder,
                    task,
                    name,
                    t=i,
                    group="correct_step",
                    first_error_kind=None,
                    first_error_sentence=None,
                    in_pool=name in pool_set,
                    **common,
                )
            if background_per_problem:
                taken = set(_step_names(sentences, prefix))
                if first_error is not None:
                    taken.add(first_error)
                pairs = [
                    (t, b)
                    for t in range(prefix + 1)
                    for b in builder.pool_names
                    if (t, b) not in taken and builder.label(task, b, t=t) == 0
                ]
                rng = _draw_rng(seed, sol.record, f"analysis-background-{task}")
                for j in sorted(rng.sample(range(len(pairs)), min(background_per_problem, len(pairs)))):
                    t, b = pairs[j]
                    out.add(
                        builder,
                        task,
                        b,
                        t=t,
                        group="background",
                        first_error_kind=None,
                        first_error_sentence=None,
                        in_pool=True,
                        **common,
                    )
    return out.data(tasks)


# ---------------------------------------------------------------------------- predictions and tables
class Predictor(Protocol):
    """A fitted probe: ``predict(data)``, or ``predict(data, model)`` for probes that need the model (VProbe)."""

    def predict(self, data: ProbeData, model: Any = None, /) -> Any: ...


def predict_frame(data: ProbeData, probes: Mapping[str, Predictor], model=None):
    """``data.frame()`` with ``pred`` (the probe of each row's task) and ``probe_correct`` (pred == label)."""
    import pandas as pd

    frame = data.frame()
    for col in ("first_error_sentence", "record"):
        if col in frame:
            frame[col] = pd.array(frame[col].tolist(), dtype="Int64")
    pred = np.full(len(data), -1, dtype=np.int64)
    tasks = np.asarray(data.meta.get("task", []), dtype=object)
    for task in data.tasks:
        if task not in probes:
            raise ValueError(f"no {task!r} probe given (have: {', '.join(probes) or 'none'})")
        mask = tasks == task
        probe = probes[task]
        sub = data.select(mask)
        got = probe.predict(sub) if model is None else probe.predict(sub, model)
        got = np.asarray(got).reshape(-1)
        if len(got) != int(mask.sum()):
            raise RuntimeError(f"the {task!r} probe returned {len(got)} predictions for {int(mask.sum())} examples")
        pred[mask] = got
    frame["pred"] = pred
    frame["probe_correct"] = frame["pred"] == frame["label"]
    return frame


def with_pooled_written(frame):
    """``frame`` plus a copy of its written-unnecessary rows (both groups) as group :data:`WRITTEN_POOLED`."""
    import pandas as pd

    if frame is None or not len(frame):
        return frame
    written = frame[frame["group"].isin(["written_unnecessary", "written_unnecessary_other"])]
    return pd.concat([frame, written.assign(group=WRITTEN_POOLED)], ignore_index=True)


def _rate(hits, records, bootstrap: int, seed: int) -> tuple[float, float, float]:
    """``(rate, low, high)`` of boolean ``hits``: bootstrap over ``records`` (solutions) or Wilson (module doc)."""
    hits = np.asarray(hits, dtype=bool)
    rate, low, high = wilson_rate(int(hits.sum()), len(hits))
    if bootstrap > 0 and len(hits):
        low, high = stats.bootstrap_ci(hits.astype(np.float64), stats.codes(list(records)), None, bootstrap, seed)
    return rate, low, high


def conditional_table(
    frame, by: Sequence[str] = ("set",), pooled: bool = True, bootstrap: int = stats.N_BOOT, seed: int = 0
):
    """Per (task, ``by``..., group, true label): counts, P(probe says true) and accuracy with 95% intervals over
    solutions (module doc; ``bootstrap=0``: Wilson over examples). ``frame`` is a :func:`predict_frame` output
    (columns task, group, label, pred, record, ``by``)."""
    import pandas as pd

    by = list(by)
    columns = ["task", *by, *TABLE_COLUMNS[1:]]
    if frame is None or not len(frame):
        return pd.DataFrame(columns=columns)
    frame = frame.copy()
    for c in by:
        frame[c] = frame[c].astype(str)
    parts = [frame]
    if pooled and by:
        parts.append(frame.assign(**{c: "all" for c in by}))
    data = pd.concat(parts, ignore_index=True)
    groups = [g for g in (*NECE_GROUPS, WRITTEN_POOLED, *STEP_GROUPS) if g in set(data["group"])]
    groups += sorted(set(data["group"]) - set(groups))
    rows = []
    for key, sub in data.groupby(["task", *by, "group", "label"], sort=False):
        n = len(sub)
        n_true = int((sub["pred"] == 1).sum())
        n_ok = int((sub["pred"] == sub["label"]).sum())
        records = sub["record"] if "record" in sub else range(n)
        p, p_low, p_high = _rate(sub["pred"] == 1, records, bootstrap, seed)
        acc, low, high = _rate(sub["pred"] == sub["label"], records, bootstrap, seed)
        rows.append(
            dict(
                zip(["task", *by, "group", "true_label"], key),
                n=n,
                n_pred_true=n_true,
                p_pred_true=p,
                p_ci_low=p_low,
                p_ci_high=p_high,
                n_correct=n_ok,
                accuracy=acc,
                ci_low=low,
                ci_high=high,
                n_solutions=len(set(records)),
                bootstrap=int(bootstrap),
            )
        )
    table = pd.DataFrame(rows, columns=columns)
    task_order = {t: i for i, t in enumerate(MISTAKE_TASKS)}
    group_order = {g: i for i, g in enumerate(groups)}
    by_order = []
    for c in by:  # keep the order of first appearance, pooled "all" last
        seen = list(dict.fromkeys(frame[c]))
        order = {v: i for i, v in enumerate(seen)}
        order.setdefault("all", len(seen))
        by_order.append(table[c].map(order))
    sort = pd.DataFrame(
        {
            "_task": table["task"].map(lambda t: task_order.get(t, 99)),
            **{f"_by{i}": s for i, s in enumerate(by_order)},
            "_group": table["group"].map(group_order),
            "_label": -table["true_label"],
        }
    )
    table = table.iloc[np.lexsort([sort[c].to_numpy() for c in reversed(sort.columns)])].reset_index(drop=True)
    table["true_label"] = table["true_label"].astype(int)
    return table


# ---------------------------------------------------------------------------- the mistake analysis
@dataclass
class MistakeAnalysis:
    """Results of :func:`mistake_analysis`: summary tables, per-example frames and bookkeeping counts."""

    unnecessary: object  # DataFrame (conditional_table of analysis (a))
    first_error: object  # DataFrame (conditional_table of analysis (b))
    unnecessary_examples: object  # DataFrame, one row per nece example, with pred
    first_error_examples: object  # DataFrame, one row per step example, with pred
    counts: dict = field(default_factory=dict)

    def records(self, **extra) -> list[dict]:
        """Both tables as JSON-ready records with an ``analysis`` key (``unnecessary`` / ``first_error``)."""
        return [
            r
            for name, table in (("unnecessary", self.unnecessary), ("first_error", self.first_error))
            for r in table_records(table, analysis=name, **extra)
        ]

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``unnecessary.*``, ``first_error.*``, ``unnecessary_examples.*``, ``first_error_examples.*``
        (CSV, and parquet when pyarrow is installed) and ``counts.json`` under ``out_dir``."""
        from probekit.records import write_atomic

        out = Path(out_dir)
        paths = []
        for name in ("unnecessary", "first_error", "unnecessary_examples", "first_error_examples"):
            paths += save_table(getattr(self, name), out / name)
        write_atomic(out / "counts.json", json.dumps(self.counts, indent=2) + "\n")
        return paths + [out / "counts.json"]


def mistake_analysis(
    records: Iterable[dict],
    probes: Mapping[str, Predictor],
    model=None,
    tokenizer=None,
    tasks: Sequence[str] = STEP_ANALYSIS_TASKS,
    max_len: int | None = None,
    nece_per_problem: int | None = PER_PROBLEM,
    correct_per_problem: int | None = PER_PROBLEM,
    background_per_problem: int = PER_PROBLEM,
    seed: int = 0,
    by: Sequence[str] = ("set",),
    bootstrap: int = stats.N_BOOT,
) -> MistakeAnalysis:
    """Analyses (a) and (b) of the module doc on a model's own solutions.

    ``probes``: ``{"nece": ..., "can_next": ..., "nece_next": ...}`` (any object with ``predict``); ``model`` is
    passed to ``probe.predict(data, model)`` when given (probes loaded from disk need it). ``max_len``: the model's
    context (longer examples are left out and counted). ``bootstrap``: resamples of the intervals over solutions
    (0: Wilson over examples), seeded by ``seed``. The unnecessary table has the extra group
    :data:`WRITTEN_POOLED`.
    """
    from probekit.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    skipped: Counter = Counter()
    solutions = solutions_from_records(records, skipped, tokenizer)
    nece_data = unnecessary_examples(solutions, tokenizer, max_len, nece_per_problem, seed)
    step_data = first_error_examples(
        solutions, tasks, tokenizer, max_len, background_per_problem, seed, skipped, correct_per_problem
    )
    nece_frame = predict_frame(nece_data, probes, model) if len(nece_data) else _empty_frame(NECE_COLUMNS)
    step_frame = predict_frame(step_data, probes, model) if len(step_data) else _empty_frame(STEP_COLUMNS)
    wrong = sum(not s.correct for s in solutions)
    counts = {
        "records": len(solutions) + skipped.get("bad_record", 0),
        "solutions": len(solutions),
        "correct": len(solutions) - wrong,
        "wrong": wrong,
        "first_error_used": int(step_frame[step_frame["group"] == "first_error"]["record"].nunique())
        if len(step_frame)
        else 0,
        "skipped": {r: int(skipped.get(r, 0)) for r in SKIP_REASONS},
        "n_too_long": {**nece_data.n_too_long, **step_data.n_too_long},
        "examples": {
            "nece": len(nece_data),
            **{t: int((step_frame["task"] == t).sum()) if len(step_frame) else 0 for t in tasks},
        },
    }
    return MistakeAnalysis(
        conditional_table(with_pooled_written(nece_frame), by, bootstrap=bootstrap, seed=seed),
        conditional_table(step_frame, by, bootstrap=bootstrap, seed=seed),
        nece_frame,
        step_frame,
        counts,
    )


def _empty_frame(extra: Sequence[str]):
    import pandas as pd

    cols = [c for c in META_COLUMNS if c not in SINGLE_PARAMETER_DROP] + list(extra)
    cols += ["label", "length", "pred", "probe_correct"]
    return pd.DataFrame(columns=list(dict.fromkeys(cols)))


def train_probes(model, train: ProbeData, tasks: Sequence[str] = MISTAKE_TASKS, **probe_kwargs) -> dict:
    """``{task: VProbe(task, **probe_kwargs).fit(model, train)}`` for each task."""
    from probekit.probe.vprobe import VProbe

    return {task: VProbe(task, **probe_kwargs).fit(model, train) for task in tasks}


def mistake_probe_data(
    preset: str = "med",
    fmt: str = "pq",
    n_train: int = 1000,
    seed: int = 0,
    op: int | None = None,
    tasks: Sequence[str] = MISTAKE_TASKS,
    **kwargs,
) -> ProbeData:
    """Train-split probe data for the mistake probes (as ``train_test_data``'s train half)."""
    from probekit.igsm.generate import GenerationConfig
    from probekit.probe.data import examples_from_config

    return examples_from_config(
        GenerationConfig(preset, op, fmt, False, "train", seed), n_train, tasks=list(tasks), seed=seed, **kwargs
    )


def find_probe(directory: str | Path, task: str, layer: str | None = None) -> Path:
    """The folder of a saved ``task`` probe under ``directory`` (a probe folder, a ``probekit probe --out`` folder
    or its ``probes/``); with several, ``layer`` (hook name) picks one, else a pretrained-model probe of the
    deepest block. Raises ``FileNotFoundError`` when there is none."""
    from probekit.probe.vprobe import PROBE_CONFIG

    root = Path(directory)
    candidates = []
    for folder in [
        root,
        *sorted(p for p in root.glob("*") if p.is_dir()),
        *sorted(p for p in (root / "probes").glob("*") if p.is_dir()),
    ]:
        cfg = folder / PROBE_CONFIG
        if not cfg.exists():
            continue
        rec = json.loads(cfg.read_text())
        if rec.get("hparams", {}).get("task") != task:
            continue
        if layer is not None and rec.get("layer_name") != layer:
            continue
        candidates.append((folder, rec))
    if not candidates:
        raise FileNotFoundError(f"no saved {task!r} probe{'' if layer is None else f' at {layer}'} under {root}")
    if len(candidates) > 1:
        pretrained = [c for c in candidates if not c[0].name.startswith("random-init")]
        candidates = pretrained or candidates

    def depth(c):
        from probekit.probe.hooks import layer_label

        label = layer_label(c[1].get("layer_name") or "")
        return label if isinstance(label, int) else -1

    return max(candidates, key=depth)[0]
