"""V-probe figures from ``kind == "probe"`` rows: fig7a, fig7b, fig12 (Physics of LMs 2.1, Figs. 7 and 12).

Per (checkpoint, model) one layer and one rank are shown: the options ``layer`` / ``rank`` when given, else the
largest rank and then the last layer present. Rows left (seeds) are pooled: correct counts are rebuilt from
each row's accuracy x n (``accuracy_pos`` x ``n_pos``, ``accuracy_neg`` x (n - n_pos), ``accuracy_unnecessary``
x ``n_unnecessary``) and the Wilson 95% interval is recomputed on the pooled counts.

Layout: one panel per (checkpoint, test set), rows = checkpoints, columns = test sets; bars = pretrained vs
random-init probe of the same shape.

- **fig7a**: accuracy per task, with the majority-class baseline of the pretrained probe as dashed ticks.
- **fig7b**: the same restricted to unnecessary parameters (nece(A) = false).
- **fig12**: dep and nece_next accuracy on positive (label true) and negative (label false) examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from probekit.figures.registry import (
    NoData,
    Series,
    baseline_marks,
    caption,
    checkpoint_order,
    column,
    count_range,
    empty_panel,
    floats,
    grouped_bars,
    integer,
    last_per_group,
    legend_below,
    panel_width,
    pooled_rate,
    rows_of,
    set_label,
    sorted_sets,
    weighted_mean,
)
from probekit.figures.style import COLORS, new_figure, save_figure

TASKS = ("nece", "dep", "known", "value", "can_next", "nece_next")
MODELS = ("pretrained", "random-init")
PROBE_COLUMNS = ("checkpoint", "model", "task", "layer", "rank", "test_set", "accuracy", "n")
ACCURACY_LABEL = "probe accuracy (fraction)"
UNITS = "accuracy as a fraction of probe examples (problem-parameter pairs)"
#: metric -> (accuracy column, function giving the per-row count it was measured on)
METRICS = {
    "all": ("accuracy", lambda g: column(g, "n")),
    "pos": ("accuracy_pos", lambda g: column(g, "n_pos")),
    "neg": ("accuracy_neg", lambda g: column(g, "n") - column(g, "n_pos")),
    "unnecessary": ("accuracy_unnecessary", lambda g: column(g, "n_unnecessary")),
}


def select_probes(rows: pd.DataFrame, layer: int | None = None, rank: int | None = None) -> pd.DataFrame:
    """The probe rows at ``rank`` (default: the largest per checkpoint and model) and ``layer`` (default: the last)."""
    keys = ["checkpoint", "model"]
    rows = last_per_group(rows, keys, "rank", rank)
    return last_per_group(rows, keys, "layer", layer)


def pooled_probes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, model, test_set, task, layer, rank): n, accuracy, CI per metric, majority,
    control-task accuracy (Hewitt and Liang; NaN when the rows have none) and selectivity."""
    out = []
    keys = ["checkpoint", "model", "test_set", "task", "layer", "rank"]
    for values, g in rows.groupby(keys, sort=False, dropna=False):
        cell = dict(zip(keys, values))
        cell.update(n_layer=column(g, "n_layer").iloc[0], d_model=column(g, "d_model").iloc[0])
        for metric, (acc_col, count) in METRICS.items():
            n, acc, low, high = pooled_rate(column(g, acc_col), count(g))
            cell.update({f"n_{metric}": n, f"acc_{metric}": acc, f"low_{metric}": low, f"high_{metric}": high})
        cell["majority"] = weighted_mean(column(g, "majority"), g["n"])
        cell["control_accuracy"] = weighted_mean(column(g, "control_accuracy"), g["n"])
        cell["selectivity"] = cell["acc_all"] - cell["control_accuracy"]
        out.append(cell)
    return pd.DataFrame(out)


def probe_table(
    results: pd.DataFrame, layer: int | None = None, rank: int | None = None, tasks=TASKS, columns=()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The selected probe rows of ``tasks`` (having ``columns``) and their :func:`pooled_probes` table.

    NoData when no row is left.
    """
    rows = rows_of(results, "probe", (*PROBE_COLUMNS, *columns))
    rows = rows[rows["task"].isin(list(tasks))]
    if rows.empty:
        raise NoData(f"no probe rows for task(s) {', '.join(tasks)}")
    rows = select_probes(rows, layer, rank)
    return rows, pooled_probes(rows)


def _cells(panel: pd.DataFrame, model: str, categories: list[tuple[str, str, str]]) -> Series:
    """Accuracy and bounds of one model for the ``(label, task, metric)`` categories of a panel."""
    table = panel[panel["model"] == model].set_index("task")

    def pick(field: str) -> np.ndarray:
        return floats(
            [table.at[task, f"{field}_{metric}"] if task in table.index else np.nan for _, task, metric in categories]
        )

    return Series(model, COLORS[model], pick("acc"), pick("low"), pick("high"))


def _baseline(panel: pd.DataFrame, tasks: list[str], name: str = "majority") -> np.ndarray:
    """A baseline per task (``majority`` or ``control_accuracy``): the pretrained probe's (the random-init one's
    when it is alone)."""
    source = "pretrained" if (panel["model"] == "pretrained").any() else "random-init"
    return floats(panel[panel["model"] == source].set_index("task")[name].reindex(tasks))


def _present(table: pd.DataFrame, categories: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The categories with at least one value in the table."""
    return [c for c in categories if not table.loc[table["task"] == c[1], f"acc_{c[2]}"].isna().all()]


def _probe_figure(table: pd.DataFrame, categories, *, majority: bool, ylabel: str):
    """Panels (rows = checkpoints, columns = test sets) of pretrained vs random-init bars over ``categories``."""
    categories = _present(table, categories)
    if not categories:
        raise NoData("the probe rows have no values for the tasks this figure shows")
    ckpts, test_sets = checkpoint_order(table), sorted_sets(table["test_set"])
    models = [m for m in MODELS if (table["model"] == m).any()]
    fig, axes = new_figure(len(test_sets), len(ckpts), panel_width(len(categories), len(models)), 3.0)
    for (ckpt, test_set), ax in zip([(c, t) for c in ckpts for t in test_sets], axes.flat):
        first_column = test_set == test_sets[0]
        panel = table[(table["checkpoint"] == ckpt) & (table["test_set"] == test_set)]
        title = f"{ckpt} - {set_label(test_set)}"
        if panel.empty:
            empty_panel(ax, title)
            continue
        series = [_cells(panel, model, categories) for model in models]
        x = grouped_bars(ax, [label for label, _, _ in categories], series)
        if majority:
            tasks = [t for _, t, _ in categories]
            baseline_marks(ax, x, _baseline(panel, tasks), "majority guess", COLORS["majority"])
            control = _baseline(panel, tasks, "control_accuracy")
            if not np.isnan(control).all():
                baseline_marks(ax, x, control, "control task (Hewitt-Liang)", COLORS["control"])
        ax.set(title=title, xlabel="probing task", ylabel=ylabel if first_column else "", ylim=(0, 1.05))
    legend_below(fig, axes.flat)
    return fig, categories


def _notes(table: pd.DataFrame) -> list[str]:
    """The caption line naming the layer and rank shown per checkpoint and model."""
    picks = table.drop_duplicates(["checkpoint", "model"])
    shown = [f"{r.checkpoint} {r.model}: layer {integer(r.layer)}, rank {integer(r.rank)}" for r in picks.itertuples()]
    return ["Probes shown: " + "; ".join(shown) + "."]


def _render(
    results: pd.DataFrame,
    out_dir: Path,
    name: str,
    categories,
    *,
    layer: int | None,
    rank: int | None,
    title: str,
    description: str,
    tasks=TASKS,
    columns=(),
    counts=("n_all",),
    majority: bool = False,
) -> list[Path]:
    """Figure ``name``: the probe rows of ``tasks`` (having ``columns``; :func:`probe_table` at ``layer`` / ``rank``)
    as bars over ``categories`` (:func:`_probe_figure`), captioned ``title`` / ``description`` (``{tasks}`` in it:
    the tasks drawn) with n per cell from the ``counts`` columns."""
    rows, table = probe_table(results, layer, rank, tasks, columns)
    fig, drawn = _probe_figure(table, categories, majority=majority, ylabel=ACCURACY_LABEL)
    text = caption(
        title,
        description.format(tasks=", ".join(c[1] for c in drawn)),
        UNITS,
        count_range(pd.concat([table[c] for c in counts]), "examples"),
        rows,
        _notes(table),
    )
    return save_figure(fig, Path(out_dir) / name, text)


def fig7a(results: pd.DataFrame, out_dir: Path, *, layer: int | None = None, rank: int | None = None) -> list[Path]:
    """Paper Fig. 7(a): V-probe accuracy per task, pretrained vs random-init, with the majority-guess baseline."""
    return _render(
        results,
        out_dir,
        "fig7a",
        [(t, t, "all") for t in TASKS],
        layer=layer,
        rank=rank,
        majority=True,
        title="Figure 7(a) (Physics of LMs 2.1, Fig. 7a): V-probe accuracy on the six probing tasks.",
        description="test accuracy of the probe per task ({tasks}) for the pretrained model and a randomly "
        "initialised model of the same shape, one panel per (checkpoint, test set); whiskers = Wilson 95% "
        "intervals on the counts pooled over seeds; dashed ticks = majority-class guess (the most frequent training "
        "label of the pretrained model's probe) and, when the rows have one, the control-task accuracy (the same "
        "probe on labels assigned at random per parameter name; Hewitt and Liang 2019).",
    )


def fig7b(results: pd.DataFrame, out_dir: Path, *, layer: int | None = None, rank: int | None = None) -> list[Path]:
    """Paper Fig. 7(b): V-probe accuracy restricted to unnecessary parameters (nece(A) = false)."""
    return _render(
        results,
        out_dir,
        "fig7b",
        [(t, t, "unnecessary") for t in TASKS],
        layer=layer,
        rank=rank,
        columns=("accuracy_unnecessary", "n_unnecessary"),
        counts=("n_unnecessary",),
        title="Figure 7(b) (Physics of LMs 2.1, Fig. 7b): V-probe accuracy on unnecessary parameters.",
        description="test accuracy of the probe per task ({tasks}) on the examples whose parameter A is not needed "
        "for the answer (nece(A) = false), pretrained vs random-init, one panel per (checkpoint, test set); "
        "whiskers = Wilson 95% intervals on the pooled counts.",
    )


def fig12(results: pd.DataFrame, out_dir: Path, *, layer: int | None = None, rank: int | None = None) -> list[Path]:
    """Paper Fig. 12: dep and nece_next probe accuracy on positive and on negative labels."""
    tasks = ("dep", "nece_next")
    return _render(
        results,
        out_dir,
        "fig12",
        [(f"{task} {sign}", task, metric) for task in tasks for sign, metric in (("+", "pos"), ("-", "neg"))],
        layer=layer,
        rank=rank,
        tasks=tasks,
        columns=("accuracy_pos", "accuracy_neg", "n_pos"),
        counts=("n_pos", "n_neg"),
        title="Figure 12 (Physics of LMs 2.1, Fig. 12): dep and nece_next probe accuracy split by label.",
        description="test accuracy of the probe on examples whose true label is true (+) and false (-), pretrained "
        "vs random-init, one panel per (checkpoint, test set); whiskers = Wilson 95% intervals on the pooled "
        "counts. An all-false guess scores 1 on (-) and 0 on (+).",
    )
