"""``REPORT.md``: compact markdown tables of a results store, and the figures written with their captions.

One section per row kind present (accuracy, probe, depth, mistakes, train), built from the same pooled
tables the figures draw (counts pooled over seeds, Wilson 95% intervals recomputed), then the figure list.
Accuracy rows of checkpoints trained on a limited number of problems (``train_n_problems``) add a data-scaling
table. Before the tables: the jobs of the experiment without rows, and the jobs whose rows replaced rows computed
from other inputs (a checkpoint retrained or overwritten; the rows' ``replaces`` column).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from probekit.figures.registry import (
    FigureResult,
    NoData,
    checkpoint_order,
    integer,
    provenance,
    set_label,
    set_sort_key,
)
from probekit.figures.tables import markdown_table
from probekit.records import write_atomic


def _num(value, digits: int = 3) -> str:
    """A number for a table cell ("-" when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ci(value, low, high) -> str:
    """``value [low, high]`` ("-" when the value is missing)."""
    return "-" if _num(value) == "-" else f"{_num(value)} [{_num(low)}, {_num(high)}]"


def _order(table: pd.DataFrame, *keys: str):
    """A sort key for rows: checkpoint order, then ``keys`` (sets in set order, tasks in paper order, else text)."""
    from probekit.figures.probing import TASKS

    rank = {c: i for i, c in enumerate(checkpoint_order(table))}

    def part(key: str, value):
        if key in ("set", "test_set"):
            return set_sort_key(value)
        if key == "task":
            return (TASKS.index(value) if value in TASKS else len(TASKS), str(value))
        return str(value)

    return lambda row: (rank[row["checkpoint"]], *(part(k, row[k]) for k in keys))


def accuracy_section(results: pd.DataFrame) -> str:
    """Greedy accuracy per checkpoint and set: n, accuracy [CI], always-0 baseline, unnecessary per correct
    solution (other decodings are Fig. 9's)."""
    from probekit.figures.accuracy import accuracy_table

    _, table = accuracy_table(results)
    records = sorted(table.to_dict("records"), key=_order(table, "preset", "format", "set"))
    rows = [
        (
            r["checkpoint"],
            f"{r['preset']}_{r['format']}",
            r["set"],
            r["n"],
            _ci(r["accuracy"], r["ci_low"], r["ci_high"]),
            _num(r["always_zero"]),
            _num(r["unnecessary_per_correct"], 2),
        )
        for r in records
    ]
    headers = ["checkpoint", "data", "set", "n", "greedy accuracy [95% CI]", "always-0", "unnecessary/correct"]
    return markdown_table(headers, rows)


def _probe_cell(cell: dict | None) -> str:
    return "-" if cell is None else _ci(cell["acc_all"], cell["low_all"], cell["high_all"])


def probe_section(results: pd.DataFrame) -> str:
    """Probe accuracy per checkpoint, task and test set: pretrained vs random-init vs majority and the control
    task (selectivity = accuracy - control accuracy, of the pretrained probe when present), pos / neg."""
    from probekit.figures.probing import probe_table

    _, table = probe_table(results)
    cells: dict[tuple, dict[str, dict]] = {}
    for r in table.to_dict("records"):
        cells.setdefault((r["checkpoint"], r["test_set"], r["task"]), {})[r["model"]] = r
    order = _order(table, "task", "test_set")
    rows = []
    for ckpt, test_set, task in sorted(
        cells, key=lambda k: order({"checkpoint": k[0], "test_set": k[1], "task": k[2]})
    ):
        pre, rnd = cells[ckpt, test_set, task].get("pretrained"), cells[ckpt, test_set, task].get("random-init")
        first = pre or rnd
        if first is None:  # rows of another model only (MODELS: pretrained, random-init)
            raise ValueError(f"no pretrained or random-init probe row for {ckpt} / {task} / {test_set}")
        rows.append(
            (
                ckpt,
                task,
                set_label(test_set),
                first.get("hook") or integer(first["layer"]),
                integer(first["rank"]),
                _probe_cell(pre),
                _probe_cell(rnd),
                _num(first["majority"]),
                _num(first["control_accuracy"]),
                _num(first["selectivity"]),
                "-" if pre is None else f"{_num(pre['acc_pos'])} / {_num(pre['acc_neg'])}",
                integer(first["n_all"]),
            )
        )
    headers = [
        "checkpoint",
        "task",
        "test set",
        "read-out",
        "rank",
        "pretrained [95% CI]",
        "random-init [95% CI]",
        "majority",
        "control task",
        "selectivity",
        "pretrained pos / neg",
        "n",
    ]
    return markdown_table(headers, rows)


def depth_section(results: pd.DataFrame) -> str:
    """Per checkpoint, model and test set: layers, n and the last layer's accuracy by distance."""
    from probekit.figures.depth import depth_table

    _, table = depth_table(results)
    rows = []
    for ckpt in checkpoint_order(table):
        for (model, test_set), g in table[table["checkpoint"] == ckpt].groupby(["model", "test_set"]):
            last = g[g["layer"] == g["layer"].max()].sort_values("distance")
            by_distance = ", ".join(f"t={int(d)}: {_num(a)}" for d, a in zip(last["distance"], last["accuracy"]))
            rows.append(
                (
                    ckpt,
                    model,
                    set_label(test_set),
                    f"{integer(g['layer'].min())}-{integer(g['layer'].max())}",
                    int(g["n"].sum()),
                    f"layer {integer(last['layer'].iloc[0])}: {by_distance}",
                )
            )
    return markdown_table(["checkpoint", "model", "test set", "layers", "n", "last-layer accuracy by distance"], rows)


def _mistakes_table(rows: pd.DataFrame, count: str) -> list[tuple]:
    """Per (checkpoint, task, group, true label): n and ``count / n`` with its Wilson CI, over all sets."""
    from probekit.figures.registry import proportion

    pooled = rows[rows["set"] == "all"] if (rows["set"] == "all").any() else rows
    if "true_label" not in pooled:
        pooled = pooled.assign(true_label=math.nan)
    table = []
    for (ckpt, task, group, label), g in pooled.groupby(["checkpoint", "task", "group", "true_label"], dropna=False):
        n = int(g["n"].sum())
        table.append((ckpt, task, group, integer(label), n, _ci(*proportion(g[count].sum(), n))))
    return table


def mistakes_section(results: pd.DataFrame) -> str:
    """Both analyses: per checkpoint, task, group and true label, the pooled proportion over every set with its CI."""
    from probekit.figures.mistakes import mistake_rows

    parts = []
    for analysis, count, what in (
        ("unnecessary", "n_pred_true", "P(probe says true)"),
        ("first_error", "n_correct", "accuracy"),
    ):
        try:
            table = _mistakes_table(mistake_rows(results, analysis, count), count)
        except NoData:
            continue
        headers = ["checkpoint", "task", "group", "true label", "n", f"{what} [95% CI]"]
        parts.append(f"**{analysis}** ({what}, over all sets)\n\n" + markdown_table(headers, table))
    if not parts:
        raise NoData("no mistakes rows of analysis 'unnecessary' or 'first_error'")
    return "\n\n".join(parts)


def train_section(results: pd.DataFrame) -> str:
    """Per checkpoint: last step, tokens, final loss and solution-token loss, the last learning-curve accuracy
    (``run.eval_every``) and seconds of training (``train_seconds``, else ``seconds``, else ``elapsed_s``)."""
    from probekit.figures.registry import rows_of

    rows = rows_of(results, "train", ("checkpoint", "step"))
    table = []
    for ckpt in checkpoint_order(rows):
        last = rows[rows["checkpoint"] == ckpt].sort_values("step").iloc[-1]
        seconds = next(
            (last.get(k) for k in ("train_seconds", "seconds", "elapsed_s") if _num(last.get(k)) != "-"), None
        )
        table.append(
            (
                ckpt,
                integer(last["step"]),
                integer(last.get("tokens")),
                _num(last.get("loss"), 4),
                _num(last.get("solution_loss"), 4),
                _num(last.get("curve_accuracy")),
                _num(seconds, 1),
            )
        )
    return markdown_table(
        ["checkpoint", "last step", "tokens", "loss", "solution loss", "accuracy (curve)", "seconds"], table
    )


def scaling_section(results: pd.DataFrame) -> str | None:
    """Per run and data size (non-reask sets pooled): accuracy, Pass@N, PassRatio@N, step accuracy, first-error
    position, calculation share; None (no section) when no accuracy row records a limited training data size."""
    from probekit.figures.tables import SIZE, scaling_summary, size_label

    if SIZE not in results.columns or results.loc[results["kind"] == "accuracy", SIZE].isna().all():
        return None  # no checkpoint trained on a limited number of problems: not a data-scaling study
    table = scaling_summary(results)
    rows = [
        (
            r["run"],
            size_label(r["data_size"]),
            ", ".join(r["checkpoints"]),
            r["n"],
            _ci(r["accuracy"], r["ci_low"], r["ci_high"]),
            _num(r["pass_at_n"]) + ("" if _num(r["pass_at_n"]) == "-" else f" (N={r['samples']})"),
            _num(r["pass_ratio_at_n"]),
            _ci(r["step_accuracy"], r["step_ci_low"], r["step_ci_high"]),
            _num(r["first_error"]),
            _ci(r["calculation_share"], r["share_low"], r["share_high"]),
        )
        for r in table.to_dict("records")
    ]
    headers = [
        "run",
        "training problems",
        "checkpoints",
        "n",
        "accuracy [95% CI]",
        "Pass@N",
        "PassRatio@N",
        "step accuracy [95% CI]",
        "first-error position",
        "calculation share [95% CI]",
    ]
    return "Non-reask evaluation sets pooled per run and data size.\n\n" + markdown_table(headers, rows)


#: section key -> (title, table function); the section is written when the store has rows of the key's kind
#: (:data:`SECTION_KINDS`, else the key itself); a function returning None writes no section
SECTIONS = {
    "accuracy": ("Generation accuracy", accuracy_section),
    "scaling": ("Data scaling", scaling_section),
    "probe": ("V-probes", probe_section),
    "depth": ("Layer-wise nece probing", depth_section),
    "mistakes": ("Mistake analysis", mistakes_section),
    "train": ("Training", train_section),
}
SECTION_KINDS = {"scaling": "accuracy"}


def _figure_lines(figure_results: Sequence[FigureResult], out_dir: Path) -> list[str]:
    lines = []
    for fr in figure_results:
        if fr.skipped:
            lines.append(f"- **{fr.name}**: skipped ({fr.skipped})")
            continue
        files = ", ".join(f"[{p.name}]({Path(os.path.relpath(p, out_dir)).as_posix()})" for p in fr.paths)
        lines.append(f"- **{fr.name}** ({fr.n_rows} rows): {files}")
        captions = [p for p in fr.paths if p.suffix == ".txt"]
        if captions:
            lines += ["", *(f"  > {line}" for line in captions[0].read_text().splitlines()), ""]
    return lines


def missing_section(missing: Sequence[dict]) -> str:
    """The jobs of the experiment that have no rows, with why and where their log is."""
    rows = [(m["job_id"], m["kind"], m.get("checkpoint") or "-", m["reason"], f"`{m['log']}`") for m in missing]
    return markdown_table(("job", "kind", "checkpoint", "why", "log"), rows)


def replaced_rows(results: pd.DataFrame) -> list[dict]:
    """One entry per job whose rows replaced rows of other inputs (the rows' ``replaces`` column, written by
    ``probekit run`` when a job's checkpoint was retrained or overwritten): ``job_id``, ``kind``,
    ``checkpoint``, ``changed``, ``old_inputs_sha256``, ``inputs_sha256``, ``old_checkpoint_sha256``,
    ``checkpoint_sha256``, ``at``, ``old_rows``."""
    if "replaces" not in results.columns:
        return []
    out = []
    rows = results[results["replaces"].notna()].drop_duplicates("job_id")
    for r in rows.to_dict("records"):
        replaced = json.loads(r["replaces"])
        out.append(
            {
                **{k: r.get(k) for k in ("job_id", "kind", "checkpoint", "inputs_sha256", "checkpoint_sha256")},
                **replaced,
            }
        )
    return sorted(out, key=lambda e: (str(e.get("at")), str(e["job_id"])))


def _short(digest) -> str:
    if isinstance(digest, list):
        return ", ".join(_short(d) for d in digest) or "-"
    return f"`{digest[:12]}`" if isinstance(digest, str) and digest else "-"


def replaced_section(replaced: Sequence[dict]) -> str:
    """The jobs whose rows replaced rows computed from other inputs: what changed, old and new fingerprints,
    when, and where the old rows are."""
    rows = [
        (
            r["job_id"],
            r.get("kind") or "-",
            r.get("checkpoint") or "-",
            ", ".join(r.get("changed") or []) or "-",
            f"{_short(r.get('old_inputs_sha256'))} -> {_short(r.get('inputs_sha256'))}",
            f"{_short(r.get('old_checkpoint_sha256'))} -> {_short(r.get('checkpoint_sha256'))}",
            r.get("at") or "-",
            f"`{r['old_rows']}`" if r.get("old_rows") else "-",
        )
        for r in replaced
    ]
    headers = ("job", "kind", "checkpoint", "changed", "inputs", "checkpoint sha256", "replaced at", "old rows")
    return markdown_table(headers, rows)


def write_report(
    results: pd.DataFrame,
    out_dir: str | Path,
    figure_results: Sequence[FigureResult],
    missing: Sequence[dict] = (),
) -> Path:
    """Write ``out_dir/REPORT.md`` (atomically): the store's provenance, the jobs without rows (``missing``, from
    :meth:`probekit.sweep.store.ResultsStore.missing_jobs`: failed or not run, so that they cannot vanish from
    the report), the jobs whose rows replaced rows of other inputs (:func:`replaced_rows`), a table per kind,
    the figures."""
    out_dir = Path(out_dir)
    counts = results["kind"].value_counts() if "kind" in results else pd.Series(dtype=int)
    lines = [
        "# Results report",
        "",
        f"{len(results)} rows: " + (", ".join(f"{k} {int(n)}" for k, n in sorted(counts.items())) or "none") + ".",
    ]
    if len(results):
        lines.append(provenance(results))
    if missing:
        lines += [
            "",
            f"## Jobs without rows ({len(missing)})",
            "",
            "These jobs of the experiment have no rows, so the tables and figures below leave them out.",
            "",
            missing_section(missing),
        ]
    replaced = replaced_rows(results)
    if replaced:
        lines += [
            "",
            f"## Replaced rows ({len(replaced)})",
            "",
            "The inputs of these jobs changed after their rows were stored (a checkpoint retrained or overwritten "
            "at the same path): the jobs ran again on the new inputs, the tables below hold only their new rows, "
            "and the old rows were set aside in the results store (`replaced/`, listed in `replaced.jsonl`).",
            "",
            replaced_section(replaced),
        ]
    for key, (title, section) in SECTIONS.items():
        if SECTION_KINDS.get(key, key) not in counts:
            continue
        try:
            body = section(results)
        except NoData as err:
            body = f"_no table: {err}_"
        if body is None:
            continue
        lines += ["", f"## {title}", "", body]
    lines += ["", "## Figures", "", *(_figure_lines(figure_results, out_dir) or ["_none rendered_"])]
    path = out_dir / "REPORT.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")
    return path
