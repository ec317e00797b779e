"""V-probe figures from ``kind == "probe"`` rows: fig7a, fig7b, fig12 (Physics of LMs 2.1, Figs. 7 and 12).

Per (checkpoint, model) one read-out and per task one rank are shown: the options ``layer`` (a layer label or a hook
name) / ``rank`` when given, else each task's largest rank and then the deepest read-out present (``ln_final.hook_out``, after
the final norm, the probes' default, before any block's resid_post; by the ``hook`` column, else ``layer``). The
caption names the hook read. Rows left (probe seeds) are averaged (:func:`~.registry.seed_mean`): the bar is the
mean accuracy over seeds and the whisker the mean of the seeds' own 95% intervals, the bootstrap over test
*problems* of each job (``ci_low`` / ``ci_high``, ``_pos``, ``_neg``, ``_unnecessary``), since up to 10 examples
come from one problem; a row without one falls back to its Wilson interval.

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
    deepest_readout,
    empty_panel,
    floats,
    grouped_bars,
    integer,
    last_per_group,
    legend_below,
    panel_width,
    rows_of,
    seed_mean,
    set_label,
    sorted_sets,
)
from probekit.figures.style import COLORS, new_figure, save_figure, styled
from probekit.probe.readout import readout_text

TASKS = ("nece", "dep", "known", "value", "can_next", "nece_next")
MODELS = ("pretrained", "random-init")
PROBE_COLUMNS = ("checkpoint", "model", "task", "layer", "rank", "test_set", "accuracy", "n")
ACCURACY_LABEL = "probe accuracy (fraction)"
WHISKERS = (
    "whiskers = 95% intervals of the bootstrap over test problems (the examples of one problem are correlated), "
    "averaged over seeds"
)
UNITS = "accuracy as a fraction of probe examples (problem-parameter pairs)"
#: metric -> (accuracy column, interval-column suffix, function giving the per-row count it was measured on)
METRICS = {
    "all": ("accuracy", "", lambda g: column(g, "n")),
    "pos": ("accuracy_pos", "_pos", lambda g: column(g, "n_pos")),
    "neg": ("accuracy_neg", "_neg", lambda g: column(g, "n") - column(g, "n_pos")),
    "unnecessary": ("accuracy_unnecessary", "_unnecessary", lambda g: column(g, "n_unnecessary")),
}


def with_hook(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with a ``hook`` column (the read-out; rows without one: their ``layer`` as text)."""
    if "hook" in rows and rows["hook"].notna().all():
        return rows
    layer = rows["layer"].astype(str)
    return rows.assign(hook=rows["hook"].fillna(layer) if "hook" in rows else layer)


def _at_layer(rows: pd.DataFrame, layer: int | str) -> pd.Series:
    """Which rows read ``layer``: a block index (equal as a number) or a layer label / hook name (as text)."""
    match = (rows["layer"].astype(str) == str(layer)) | (rows["hook"] == str(layer))
    number = pd.to_numeric(pd.Series([layer]), errors="coerce").iloc[0]
    if not pd.isna(number):
        match |= pd.to_numeric(rows["layer"], errors="coerce") == number
    return match


def select_probes(rows: pd.DataFrame, layer: int | str | None = None, rank: int | None = None) -> pd.DataFrame:
    """The probe rows at ``rank`` (default: the largest per checkpoint, model and task: a sweep may run a V-probe
    for some tasks beside linear probes for all) and read-out ``layer`` (a layer label or a hook name; default:
    the deepest read-out present, ``ln_final.hook_out`` first)."""
    keys = ["checkpoint", "model"]
    rows = with_hook(last_per_group(rows, [*keys, "task"], "rank", rank))
    if layer is not None:
        picked = rows[_at_layer(rows, layer)]
        if picked.empty:
            raise NoData(f"no probe rows with layer = {layer!r} (present: {sorted(set(rows['hook']))})")
        return picked
    return deepest_readout(rows, keys)


def _metric_cell(g: pd.DataFrame, metric: str) -> dict:
    """``n_``, ``acc_``, ``low_``, ``high_`` of ``metric`` for the rows (seeds) of one cell (:func:`seed_mean`)."""
    acc_col, suffix, count = METRICS[metric]
    n, acc, low, high = seed_mean(
        column(g, acc_col), column(g, f"ci_low{suffix}"), column(g, f"ci_high{suffix}"), count(g)
    )
    return {f"n_{metric}": n, f"acc_{metric}": acc, f"low_{metric}": low, f"high_{metric}": high}


def _mean(values: pd.Series) -> float:
    """Mean of the non-missing values (NaN when none)."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if len(values) else np.nan


def pooled_probes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, model, test_set, task, hook, rank): n, accuracy and interval per metric (mean
    over seeds, :func:`seed_mean`), majority, control-task accuracy (Hewitt and Liang; NaN when the rows have
    none) and selectivity."""
    out = []
    keys = ["checkpoint", "model", "test_set", "task", "hook", "rank"]
    for values, g in with_hook(rows).groupby(keys, sort=False, dropna=False):
        cell = dict(zip(keys, values))
        cell.update(
            layer=g["layer"].iloc[0], n_layer=column(g, "n_layer").iloc[0], d_model=column(g, "d_model").iloc[0]
        )
        for metric in METRICS:
            cell.update(_metric_cell(g, metric))
        cell["seeds"] = len(g)
        cell["majority"] = _mean(column(g, "majority"))
        cell["control_accuracy"] = _mean(column(g, "control_accuracy"))
        cell["selectivity"] = cell["acc_all"] - cell["control_accuracy"]
        out.append(cell)
    return pd.DataFrame(out)


def probe_table(
    results: pd.DataFrame, layer: int | str | None = None, rank: int | None = None, tasks=TASKS, columns=()
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
    """The caption line naming the read-out (hook) and the rank(s) shown per checkpoint and model (with the
    tasks of each rank when they differ)."""
    shown = []
    for (ckpt, model), g in table.groupby(["checkpoint", "model"], sort=False):
        by_rank = g.groupby("rank", sort=True)["task"].unique()
        ranks = [
            f"rank {integer(rank)}"
            + (" (linear probe, not the paper's V-probe)" if integer(rank) == "0" else "")
            + ("" if len(by_rank) == 1 else f" for {', '.join(sorted(tasks, key=list(TASKS).index))}")
            for rank, tasks in by_rank.items()
        ]
        shown.append(f"{ckpt} {model}: read-out {readout_text(g['hook'].iloc[0])}, {' and '.join(ranks)}")
    return ["Probes shown: " + "; ".join(shown) + "."]


def _render(
    results: pd.DataFrame,
    out_dir: Path,
    name: str,
    categories,
    *,
    layer: int | str | None,
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


@styled
def fig7a(
    results: pd.DataFrame, out_dir: Path, *, layer: int | str | None = None, rank: int | None = None
) -> list[Path]:
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
        "initialised model of the same shape, one panel per (checkpoint, test set); bars = mean over probe seeds, "
        f"{WHISKERS}; dashed ticks = majority-class guess (the most frequent training "
        "label of the pretrained model's probe) and, when the rows have one, the control-task accuracy (the same "
        "probe on labels assigned at random per item or category word, scored on words seen in training; Hewitt "
        "and Liang 2019).",
    )


@styled
def fig7b(
    results: pd.DataFrame, out_dir: Path, *, layer: int | str | None = None, rank: int | None = None
) -> list[Path]:
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
        f"bars = mean over probe seeds, {WHISKERS}.",
    )


@styled
def fig12(
    results: pd.DataFrame, out_dir: Path, *, layer: int | str | None = None, rank: int | None = None
) -> list[Path]:
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
        "vs random-init, one panel per (checkpoint, test set); bars = mean over probe seeds, "
        f"{WHISKERS}. An all-false guess scores 1 on (-) and 0 on (+).",
    )
