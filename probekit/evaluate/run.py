"""Judge and aggregate: run a solution generator on evaluation sets, judge every solution, summarise.

"Produce solutions" and "judge and aggregate" are separate. A **generator** is any callable
``generate(prompts: list[str]) -> list[(solution, answer)]`` (one pair or :class:`~.generation.Completion` per
prompt, ``answer`` the text after ``[ANSWER]`` or None); a **sampler** is
``sample(prompts) -> list[list[(solution, answer)]]`` (N per prompt). Tests pass plain functions (e.g. one
returning the reference solutions); :class:`~.generation.ModelGenerator` is the model-backed one. A callable
with ``budgeted = True`` is also given ``max_new_tokens``: ``tokens_per_op * max(nominal op, largest reference
op in the set) + extra_tokens`` (40 and 64 by default: reference solutions take about 18 tokens per op).

Per set (:func:`evaluate_set`) the row holds: ``n``, ``n_templates`` and ``n_degenerate`` (distinct solution
templates and degenerate problems, :func:`.sets.set_health`; a degenerate or few-template set is named on
stderr, :func:`.sets.set_warnings`), ``correct``, ``accuracy`` with its Wilson 95% interval
(``ci_low``, ``ci_high``), ``unnecessary_per_correct`` (paper Fig. 4), ``mistake_kinds`` (solutions showing each
checker mistake kind), ``first_mistake_kinds``, ``no_answer`` (no ``[ANSWER]`` emitted), ``answer_mismatch``
(emitted answer differs from the true one), ``unfinished`` (no ``[EOS]`` within the budget),
``first_error_position`` (mean over wrong solutions, see :mod:`.metrics`) with its bootstrap 95% interval
(``first_error_position_ci_low``, ``first_error_position_ci_high``), ``wrong_by_length`` (the wrong solutions
with fewer, as many and more sentences than the reference: ``{shorter, same, longer}``,
:func:`.metrics.length_against_reference`), the wrong solutions by the error type of
their first mistake (:mod:`.errors`, paper Fig. 5: ``errors_calculation``, ``errors_reasoning``,
``errors_format``, and ``error_share_calculation`` = calculation / (calculation + reasoning), NaN when both are
0), ``always_zero_accuracy`` (the accuracy of always answering 0: the trivial baseline a weak model must
beat), ``accuracy_by_op`` (``{op: [n, correct]}``), ``accuracy_by_ip`` (the same by the problem's number of
instance parameters, ``{ip: [n, correct]}``), the single-step fit over the set's op bins (``step_accuracy``
with its interval, the fit's chi-square, p-value and R^2, and ``step_fit_bins``: per op bin
``{op, n, correct, accuracy, predicted, residual}`` with ``predicted = step_accuracy ** op`` and
``residual`` the standardised residual, :meth:`.metrics.StepFit.bin_table`) and, with a sampler,
``samples``, ``pass_at_1`` (greedy), ``pass_at_n``, ``pass_ratio_at_n`` with intervals and
``step_accuracy_sampled`` (the fit on sampled counts, as Xwin-Math does).
:func:`evaluate_sets` adds a pooled single-step fit over every non-reask set (``step_fit``, weighted by bin
counts), with ``variants``: the fit unweighted over the op-bin means and the fit over the first four op bins
(:func:`pooled_step_fit`).

Per-problem records (``records.jsonl``) are ``probekit generate`` records of the problem, except that
``solution`` is the **generated** solution (so ``probekit check`` and ``probekit labels`` work on the file
directly, labels along what the model wrote) and ``reference_solution`` the reference; plus ``set``,
``emitted_answer``, ``correct``, ``verdict``, ``first_error_index``, ``n_sentences``, ``n_tokens``, ``finished``
and, with sampling, ``samples``: ``[{solution, answer, correct, mistakes: [kinds]}]``.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from probekit.evaluate import errors, metrics
from probekit.evaluate.judge import judge
from probekit.evaluate.sets import (
    EXTRA_TOKENS,
    TOKENS_PER_OP,
    EvalSet,
    draw_set,
    generation_budget,
    set_health,
    set_warnings,
)
from probekit.igsm.check import MISTAKE_KINDS
from probekit.igsm.generate import to_record
from probekit.igsm.problem import Problem
from probekit.igsm.render import prompt_text
from probekit.texttable import fixed_width, number

Drawn = Sequence[tuple[Problem, str]]


# ---------------------------------------------------------------------------------------------- helpers
def _as_pair(item) -> tuple[str, str | None, int | None, bool]:
    """(solution, answer, n_tokens, finished) from a Completion or a (solution, answer) pair."""
    solution, answer = tuple(item)[:2] if not hasattr(item, "solution") else (item.solution, item.answer)
    return (
        "" if solution is None else str(solution),
        None if answer is None else str(answer),
        getattr(item, "n_tokens", None),
        bool(getattr(item, "finished", True)),
    )


def _call(fn, prompts: list[str], budget: int | None):
    if getattr(fn, "budgeted", False):
        return fn(prompts, max_new_tokens=budget)
    return fn(prompts)


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- one set
@dataclass
class SetResult:
    """One evaluation set's summary ``row``, its per-problem ``records`` and ``(op, correct)`` pairs."""

    eval_set: EvalSet
    row: dict
    records: list[dict]
    ops: list[int]
    correct: list[bool]


def summarize(
    eval_set: EvalSet,
    judged: list[dict],
    ops: list[int],
    completions: list[tuple] | None = None,
    sampled: list[list[dict]] | None = None,
    ips: list[int] | None = None,
) -> dict:
    """The summary row of one set from its judgements (see the module docstring for the keys).

    ``ops`` and ``ips`` hold each problem's number of operations and instance parameters (without ``ips`` the row
    has no ``accuracy_by_ip``).
    """
    correct = [j["correct"] for j in judged]
    verdicts = [j["verdict"] for j in judged]
    row = {**eval_set.to_dict(), **metrics.proportion(correct)}
    row["unnecessary_per_correct"] = metrics.unnecessary_per_correct([v["unnecessary"] for v in verdicts], correct)
    wrong = [j for j in judged if not j["correct"]]
    position, low, high = metrics.first_error_position_interval(
        [j["first_error_index"] for j in wrong], [j["n_sentences"] for j in wrong], seed=eval_set.seed
    )
    row.update(first_error_position=position, first_error_position_ci_low=low, first_error_position_ci_high=high)
    row["wrong_by_length"] = metrics.length_against_reference(
        [j["n_sentences"] for j in judged], [j["reference_sentences"] for j in judged], correct
    )
    row["mistake_kinds"] = metrics.mistake_kind_counts(verdicts, MISTAKE_KINDS)
    row["first_mistake_kinds"] = metrics.first_mistake_kind_counts(verdicts)
    types = errors.error_type_counts(verdicts, correct)
    row.update({f"errors_{t}": types[t] for t in errors.TYPES})
    row["error_share_calculation"] = errors.calculation_share(types)
    if completions is not None:
        row["no_answer"] = sum(c[1] is None for c in completions)
        row["unfinished"] = sum(not c[3] for c in completions)
        tokens = [c[2] for c in completions if c[2] is not None]
        row["mean_generated_tokens"] = sum(tokens) / len(tokens) if tokens else math.nan
    row["answer_mismatch"] = sum(not j["answer_ok"] for j in judged)
    row["always_zero_accuracy"] = (
        sum(v["expected_answer"] == 0 for v in verdicts) / len(verdicts) if verdicts else math.nan
    )
    steps, n, k = metrics.counts_by_steps(ops, correct)
    row["accuracy_by_op"] = _count_table(steps, n, k)
    if ips is not None:
        row["accuracy_by_ip"] = _count_table(*metrics.counts_by_steps(ips, correct))
    fit = metrics.fit_step_accuracy(steps, n, k)
    row.update(_fit_columns(fit, "step_accuracy"))
    row["step_fit_bins"] = fit.bin_table()
    if sampled is not None:
        table = [[s["correct"] for s in per_problem] for per_problem in sampled]
        row.update(metrics.stability_metrics(table, correct, seed=eval_set.seed))
        counts = [sum(r) for r in table]
        trials = [len(r) for r in table]
        fit = metrics.fit_step_accuracy(*metrics.counts_by_steps(ops, counts, trials))
        row.update(_fit_columns(fit, "step_accuracy_sampled", short=True))
    return row


def _count_table(keys, n, k) -> dict[int, list[int]]:
    return {int(key): [int(a), int(b)] for key, a, b in zip(keys, n, k)}


def _fit_columns(fit: metrics.StepFit, prefix: str, short: bool = False) -> dict:
    out = {prefix: fit.step_accuracy, f"{prefix}_ci_low": fit.ci_low, f"{prefix}_ci_high": fit.ci_high}
    if not short:
        out.update(
            {"step_fit_chi2": fit.chi2, "step_fit_dof": fit.dof, "step_fit_p": fit.p_value, "step_fit_r2": fit.r2}
        )
    return out


def evaluate_set(
    eval_set: EvalSet,
    drawn: Drawn,
    generate: Callable,
    sample: Callable | None = None,
    *,
    max_new_tokens: int | None = None,
) -> SetResult:
    """Generate (greedy, and samples when ``sample`` is given), judge and summarise one set.

    ``drawn`` is the set's ``[(problem, reference_solution)]`` (:func:`~.sets.draw_set`); ``max_new_tokens`` is
    passed to budgeted generators (default: :func:`generation_budget`).
    """
    budget = max_new_tokens if max_new_tokens is not None else generation_budget(eval_set, drawn)
    prompts = [prompt_text(p, eval_set.format) for p, _ in drawn]
    start = time.perf_counter()
    raw = list(_call(generate, prompts, budget)) if prompts else []
    if len(raw) != len(prompts):
        raise RuntimeError(f"generator returned {len(raw)} solutions for {len(prompts)} prompts")
    seconds = time.perf_counter() - start
    completions = [_as_pair(c) for c in raw]
    judged = [judge(p, c[0], c[1]) for (p, _), c in zip(drawn, completions)]

    sampled = None
    sample_seconds = None
    if sample is not None:
        start = time.perf_counter()
        raw_samples = list(_call(sample, prompts, budget)) if prompts else []
        sample_seconds = time.perf_counter() - start
        if len(raw_samples) != len(prompts):
            raise RuntimeError(f"sampler returned {len(raw_samples)} lists for {len(prompts)} prompts")
        sampled = []
        for (problem, _), per_problem in zip(drawn, raw_samples):
            items = []
            for item in per_problem:
                sol, ans, _, _ = _as_pair(item)
                j = judge(problem, sol, ans)
                kinds = sorted(metrics.verdict_kinds(j["verdict"]))
                items.append({"solution": sol, "answer": ans, "correct": j["correct"], "mistakes": kinds})
            sampled.append(items)
        if len({len(s) for s in sampled}) > 1:
            raise RuntimeError("the sampler returned different numbers of samples per prompt")

    ops = [p.op_count() for p, _ in drawn]
    row = summarize(eval_set, judged, ops, completions, sampled, ips=[len(p.edges) for p, _ in drawn])
    row.update(set_health(drawn))
    if sample is not None:
        row["temperature"] = getattr(sample, "temperature", None)
    tokens = sum(c[2] for c in completions if c[2] is not None)
    row.update(
        max_new_tokens=budget,
        seconds=seconds,
        problems_per_s=len(prompts) / seconds if seconds > 0 else math.nan,
        tokens_per_s=tokens / seconds if seconds > 0 and tokens else math.nan,
    )
    if sample_seconds is not None:
        row["sample_seconds"] = sample_seconds

    records = []
    config = eval_set.config()
    for index, ((problem, reference), c, j) in enumerate(zip(drawn, completions, judged)):
        rec = to_record(problem, reference, config, index)
        rec["reference_solution"] = rec.pop("solution")
        rec = {"set": eval_set.name, **rec}
        rec.update(
            solution=c[0],
            emitted_answer=c[1],
            correct=j["correct"],
            verdict=j["verdict"],
            first_error_index=j["first_error_index"],
            n_sentences=j["n_sentences"],
            n_tokens=c[2],
            finished=c[3],
        )
        if sampled is not None:
            rec["samples"] = sampled[index]
        records.append(rec)
    return SetResult(eval_set, row, records, ops, [j["correct"] for j in judged])


# ---------------------------------------------------------------------------------------------- many sets
@dataclass
class EvalReport:
    """Rows (one per set, in order), the pooled single-step fit over the non-reask sets, and the results."""

    rows: list[dict]
    step_fit: dict | None
    results: list[SetResult] = field(default_factory=list)

    def json_rows(self) -> list[dict]:
        """The rows with NaN as None (valid JSON)."""
        return [_nan_to_none(r) for r in self.rows]

    def summary_records(self) -> list[dict]:
        """The rows as the flat records of ``summary.parquet`` (:func:`summary_table`; needs pandas)."""
        from probekit.records import table_records

        return table_records(summary_table(self.rows))


def evaluate_sets(
    prepared: Sequence[tuple[EvalSet, Drawn]],
    generate: Callable,
    sample: Callable | None = None,
    *,
    tokens_per_op: int = TOKENS_PER_OP,
    extra_tokens: int = EXTRA_TOKENS,
    max_new_tokens: int | None = None,
    on_records: Callable[[list[dict]], None] | None = None,
    keep_records: bool = True,
    log: Callable[[str], None] | None = None,
) -> EvalReport:
    """:func:`evaluate_set` on each ``(set, drawn)`` pair; records go to ``on_records`` as each set finishes."""
    rows, results, pooled_ops, pooled_correct = [], [], [], []
    for eval_set, drawn in prepared:
        budget = max_new_tokens or generation_budget(eval_set, drawn, tokens_per_op, extra_tokens)
        if log:
            log(f"set {eval_set.name}: {len(drawn)} problems, max {budget} new tokens")
        result = evaluate_set(eval_set, drawn, generate, sample, max_new_tokens=budget)
        for warning in set_warnings(result.row):
            print(f"warning: {warning}", file=sys.stderr)
        if on_records:
            on_records(result.records)
        if not keep_records:
            result.records = []
        rows.append(result.row)
        results.append(result)
        if not eval_set.reask:
            pooled_ops += result.ops
            pooled_correct += result.correct
        if log:
            r = result.row
            log(
                f"set {eval_set.name}: accuracy {r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
                f" in {r['seconds']:.1f}s"
            )
    step_fit = None
    if pooled_ops:
        step_fit = {"sets": [s.name for s, _ in prepared if not s.reask], **pooled_step_fit(pooled_ops, pooled_correct)}
    return EvalReport(rows, step_fit, results)


def pooled_step_fit(ops: Sequence[int], correct: Sequence[bool]) -> dict:
    """The count-weighted single-step fit (``StepFit.to_dict()``) plus its variants under ``variants``.

    ``variants`` holds the fit unweighted over the op-bin means (``bins``) and, when there are more bins than
    :data:`.metrics.FIRST_BINS`, the count-weighted fit over the first that many bins (``first_bins``, Xwin-Math
    Fig. 4's dashed curve), each as ``StepFit.to_dict()`` without its bins.
    """
    bins = metrics.counts_by_steps(ops, correct)
    out = metrics.fit_step_accuracy(*bins).to_dict()
    variants = {"bins": metrics.fit_step_accuracy(*bins, weighting="bins")}
    if len(bins[0]) > metrics.FIRST_BINS:
        variants["first_bins"] = metrics.fit_step_accuracy(*bins, first_bins=metrics.FIRST_BINS)
    out["variants"] = {name: {k: v for k, v in fit.to_dict().items() if k != "bins"} for name, fit in variants.items()}
    return out


# ---------------------------------------------------------------------------------------------- output
SUMMARY_COLUMNS = (
    "set",
    "preset",
    "format",
    "op",
    "reask",
    "split",
    "seed",
    "n",
    "n_templates",
    "n_degenerate",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "unnecessary_per_correct",
    "first_error_position",
    "first_error_position_ci_low",
    "first_error_position_ci_high",
    "errors_calculation",
    "errors_reasoning",
    "errors_format",
    "error_share_calculation",
    "step_accuracy",
    "step_accuracy_ci_low",
    "step_accuracy_ci_high",
    "step_fit_chi2",
    "step_fit_dof",
    "step_fit_p",
    "step_fit_r2",
    "step_fit_bins",
)


def tidy_rows(rows: list[dict]) -> list[dict]:
    """Flat rows for a table: mistake kinds as ``kind_<name>`` columns, nested values as JSON strings."""
    out = []
    for row in rows:
        flat = {}
        for key, value in row.items():
            if key == "mistake_kinds":
                flat.update({f"kind_{k}": v for k, v in value.items()})
            elif isinstance(value, (dict, list)):
                flat[key] = json.dumps(value, sort_keys=True)
            else:
                flat[key] = value
        out.append(flat)
    return out


OUTPUT_FILES = ("records.jsonl", "summary.parquet", "summary.csv", "step_fit.json", "eval.json")
"""The files of an evaluation's output folder."""


def write_summary(rows: list[dict], out_dir: str | Path) -> Path:
    """``OUT/summary.parquet`` when pandas and pyarrow are installed, else ``OUT/summary.csv`` (atomic)."""
    from probekit.records import atomic_output

    out_dir = Path(out_dir)
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        import csv

        flat = tidy_rows(rows)
        columns = list(dict.fromkeys(k for r in flat for k in r))
        path = out_dir / "summary.csv"
        with atomic_output(path) as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for r in flat:
                writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        return path
    path = out_dir / "summary.parquet"
    with atomic_output(path, binary=True) as fh:
        summary_table(rows).to_parquet(fh, index=False)
    return path


def summary_table(rows: list[dict]):
    """The rows as the DataFrame of ``summary.parquet``: :func:`tidy_rows`, ``op`` as a nullable integer."""
    import pandas as pd

    frame = pd.DataFrame(tidy_rows(rows))
    if "op" in frame:
        frame["op"] = frame["op"].astype("Int64")
    return frame


def format_table(rows: list[dict], step_fit: dict | None = None) -> str:
    """A fixed-width text table of the rows (and the pooled fit), for stderr."""

    sampling = any("pass_at_n" in r for r in rows)
    header = ["set", "n", "accuracy", "95% CI", "unnec/corr", "1st-err pos", "wrong: short/same/long", "step acc"]
    header += ["no [EOS]", "top mistake"]
    if sampling:
        header += ["N", "pass@1", "pass@N", "ratio@N"]
    lines = []
    for r in rows:
        kinds = {k: v for k, v in r.get("mistake_kinds", {}).items() if v}
        top = max(kinds, key=kinds.__getitem__) if kinds else "-"
        cells = [
            r["set"],
            str(r["n"]),
            number(r["accuracy"]),
            f"[{number(r['ci_low'])}, {number(r['ci_high'])}]",
            number(r["unnecessary_per_correct"], 3),
            number(r["first_error_position"], 3),
            "/".join(str(r["wrong_by_length"][k]) for k in ("shorter", "same", "longer")),
            number(r["step_accuracy"]),
            str(r.get("unfinished", "-")),
            f"{top} ({kinds[top]})" if kinds else "-",
        ]
        if sampling:
            cells += [
                str(r.get("samples", "-")),
                number(r.get("pass_at_1")),
                number(r.get("pass_at_n")),
                number(r.get("pass_ratio_at_n")),
            ]
        lines.append(cells)
    text = [fixed_width(header, lines)]
    if step_fit and step_fit.get("n"):
        text.append(
            f"single-step fit over {', '.join(step_fit['sets'])}: step accuracy {number(step_fit['step_accuracy'], 5)} "
            f"[{number(step_fit['ci_low'], 5)}, {number(step_fit['ci_high'], 5)}], chi2 {number(step_fit['chi2'], 2)} "
            f"on {step_fit['dof']} dof (p {number(step_fit['p_value'], 3)}), R^2 {number(step_fit['r2'], 3)}"
        )
        for name, fit in step_fit.get("variants", {}).items():
            what = "unweighted over op-bin means" if name == "bins" else f"over the first {fit['first_bins']} op bins"
            text.append(f"  {what}: step accuracy {number(fit['step_accuracy'], 5)}, R^2 {number(fit['r2'], 3)}")
    return "\n".join(text)


# ---------------------------------------------------------------------------------------------- checkpoints
def evaluate_checkpoint(
    checkpoint: str | Path,
    sets: Sequence[EvalSet],
    *,
    out: str | Path | None = None,
    batch_size: int = 32,
    device: str | None = None,
    samples: int = 0,
    temperature: float = 1.0,
    workers: int = 1,
    tokens_per_op: int = TOKENS_PER_OP,
    extra_tokens: int = EXTRA_TOKENS,
    max_new_tokens: int | None = None,
    progress: bool = True,
    keep_records: bool = False,
    checks: bool = True,
    decoding: str = "greedy",
) -> EvalReport:
    """Evaluate a checkpoint folder on ``sets``: draw the problems, load the model, generate, judge, write.

    ``decoding`` (:data:`~.sets.DECODINGS`): how the judged solution is generated, ``greedy`` or the paper's
    ``beam-sample`` (beam 4 with sampling); every row records it in ``decoding``.

    With ``out``: ``records.jsonl``, ``summary.parquet`` (or ``.csv``), ``step_fit.json`` and ``eval.json``
    (the evaluation's settings and the checkpoint's provenance), written as one set: a temporary folder replaces
    ``out`` when all are written, so a killed run leaves the previous set or none, never a mix; an ``out`` holding
    other files is refused before any work (:func:`probekit.records.atomic_folder`). Problems are drawn before the model is loaded
    (``workers`` forked processes). ``checks`` runs the fast load-time model checks
    (:func:`probekit.modelcheck.require_healthy`) on the loaded model first; rows record ``checks_skipped``.
    """
    from probekit.records import atomic_folder, check_replaceable, dumps

    def log(msg):
        if progress:
            print(f"probekit eval: {msg}", file=sys.stderr)

    if out is not None:
        check_replaceable(out, OUTPUT_FILES)  # before the work, not after it

    prepared = []
    for s in sets:
        start = time.perf_counter()
        prepared.append((s, draw_set(s, workers)))
        log(f"drew {s.n} problems for {s.name} in {time.perf_counter() - start:.1f}s")

    from probekit.checkpoint import load_checkpoint, select_device
    from probekit.evaluate.generation import ModelGenerator

    device = select_device(device)
    model, tokenizer, provenance = load_checkpoint(checkpoint, device=device)
    if checks:
        from probekit.modelcheck import require_healthy

        require_healthy((model, tokenizer, provenance), device=device)
    gen = ModelGenerator(
        model, tokenizer, batch_size=batch_size, device=device, seed=sets[0].seed if sets else 0, progress=progress
    )
    sampler = gen.sampler(samples, temperature) if samples else None

    with contextlib.ExitStack() as stack:
        out_dir = stack.enter_context(atomic_folder(out, OUTPUT_FILES)) if out is not None else None
        fh = stack.enter_context(open(out_dir / "records.jsonl", "w", encoding="utf-8")) if out_dir else None

        def write(records):
            for rec in records:
                fh.write(dumps(rec) + "\n")

        report = evaluate_sets(
            prepared,
            gen.decoder(decoding),
            sampler,
            tokens_per_op=tokens_per_op,
            extra_tokens=extra_tokens,
            max_new_tokens=max_new_tokens,
            on_records=write if fh else None,
            keep_records=keep_records,
            log=log,
        )
        for row in report.rows:
            row["checkpoint"] = str(checkpoint)
            row["checks_skipped"] = not checks
            row["decoding"] = decoding
        if out_dir and fh:
            fh.close()
            write_summary(report.rows, out_dir)
            (out_dir / "step_fit.json").write_text(json.dumps(_nan_to_none(report.step_fit), indent=2) + "\n")
            settings = {
                "checkpoint": str(checkpoint),
                "sets": [s.to_dict() | {"n": s.n} for s in sets],
                "batch_size": batch_size,
                "device": str(device),
                "samples": samples,
                "temperature": temperature if samples else None,
                "tokens_per_op": tokens_per_op,
                "extra_tokens": extra_tokens,
                "max_new_tokens": max_new_tokens,
                "decoding": decoding + (f" + {samples} samples at T={temperature}" if samples else ""),
                "generator_stats": gen.stats,
                "provenance": {k: v for k, v in provenance.items() if k != "fingerprint"},
            }
            (out_dir / "eval.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    return report
