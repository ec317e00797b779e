"""Mistake-analysis figures from ``kind == "mistakes"`` rows: fig8a, fig8b (Physics of LMs 2.1, Fig. 8).

Per checkpoint one layer is shown (the option ``layer``, else the last present); the caption names the hook read
(column ``hook``). One panel per (checkpoint, model, probe task): pretrained and random-init rows are never mixed.
Rows left per cell (probe seeds) are averaged (:func:`~.registry.seed_mean`): the mean rate and the mean of the
rows' 95% intervals, which the analysis computes by a bootstrap over *solutions* (the examples of one solution
share its problem; Wilson over examples for rows without it). Rows with ``set == "all"`` (pooled over sets by
the analysis) are drawn as the last category.

- **fig8a**: on reask data, P(nece probe says necessary) for unnecessary parameters the model computed with a
  well-formed sentence in a **correct** solution (the paper's population, group ``written_unnecessary``), the same
  pooled over every solution and every parseable sentence (``written_unnecessary_pooled``, a second labelled
  series), unnecessary parameters it did not write, and necessary parameters; x = evaluation set.
- **fig8b**: can_next / nece_next probe accuracy on the first wrong parameter of wrong solutions (true label
  false) vs other label-false parameters at that position (background), and vs correct steps (label true).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from probekit.figures.registry import (
    NoData,
    Series,
    caption,
    checkpoint_order,
    column,
    count_range,
    deepest_readout,
    grid,
    grouped_bars,
    last_per_group,
    legend_below,
    panel_width,
    rows_of,
    seed_mean,
    set_label,
    sorted_sets,
)
from probekit.figures.style import COLORS, save_figure, styled
from probekit.probe.readout import readout_text

MISTAKE_COLUMNS = ("checkpoint", "analysis", "task", "set", "group", "n")


class Group(NamedTuple):
    """One bar series: rows of ``group`` (with ``true_label`` when not None), drawn as ``label``."""

    group: str
    true_label: int | None
    label: str
    color: str


FIG8A = (
    Group("written_unnecessary", None, "unnecessary, written in a correct solution", COLORS["negative"]),
    Group("written_unnecessary_pooled", None, "unnecessary, written (any solution, pooled)", COLORS["majority"]),
    Group("unwritten_unnecessary", None, "unnecessary, not written", COLORS["control"]),
    Group("necessary", None, "necessary", COLORS["positive"]),
)
FIG8B = (
    Group("first_error", 0, "first wrong parameter (label false)", COLORS["negative"]),
    Group("background", 0, "other parameters (label false)", COLORS["control"]),
    Group("correct_step", 1, "correct steps (label true)", COLORS["positive"]),
)


def mistake_rows(results: pd.DataFrame, analysis: str, count: str, layer: int | None = None) -> pd.DataFrame:
    """The rows of one analysis having the ``count`` column, at ``layer`` (default: the last per checkpoint)."""
    rows = rows_of(results, "mistakes", (*MISTAKE_COLUMNS, count))
    rows = rows[rows["analysis"] == analysis]
    if rows.empty:
        raise NoData(f"no mistakes rows with analysis = {analysis!r}")
    if layer is not None:
        rows = last_per_group(rows, ["checkpoint", "task"], "layer", layer)
    elif ("layer" in rows and rows["layer"].notna().any()) or "hook" in rows:
        rows = deepest_readout(rows, ["checkpoint", "task"])
    return rows


#: the rate a figure draws -> (its interval columns)
INTERVALS = {"p_pred_true": ("p_ci_low", "p_ci_high"), "accuracy": ("ci_low", "ci_high")}


def _cell(rows: pd.DataFrame, rate: str) -> tuple[float, float, float, float]:
    """``(n, rate, low, high)`` of one cell: the mean over its rows (seeds) of ``rate`` and its interval."""
    low, high = INTERVALS[rate]
    return seed_mean(column(rows, rate), column(rows, low), column(rows, high), rows["n"])


def _series(panel: pd.DataFrame, sets: list[str], group: Group, rate: str) -> tuple[Series, list[int]]:
    """The mean ``rate`` of one group per set (over seeds), with its n per set."""
    rows = panel[panel["group"] == group.group]
    if group.true_label is not None and "true_label" in rows:
        rows = rows[rows["true_label"] == group.true_label]
    cells = [_cell(rows[rows["set"] == s], rate) for s in sets]
    n, values, low, high = (np.array(v, dtype=float) for v in zip(*cells))
    return Series(group.label, group.color, values, low, high), [int(x) for x in n]


def _panels(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(title, rows)`` per (checkpoint, model, task): checkpoints in shape order, pretrained first."""
    rows = rows.assign(model=rows["model"].fillna("pretrained") if "model" in rows else "pretrained")
    order = {c: i for i, c in enumerate(checkpoint_order(rows))}
    keyed = sorted(
        rows.groupby(["checkpoint", "model", "task"]),
        key=lambda kv: (order[kv[0][0]], kv[0][1] != "pretrained", kv[0][2]),
    )
    return [(f"{c}{'' if m == 'pretrained' else f' ({m})'} - {t} probe", g) for (c, m, t), g in keyed]


def _mistake_figure(rows: pd.DataFrame, groups, rate: str, ylabel: str):
    """Panels per (checkpoint, model, task): x = set, one bar series per group; returns the figure and n per cell."""
    panels = _panels(rows)
    n_sets = rows["set"].nunique()
    fig, axes = grid(len(panels), width=panel_width(n_sets, len(groups)), height=3.0)
    counts: list[int] = []
    for ax, (title, panel) in zip(axes, panels):
        sets = sorted_sets(panel["set"])
        drawn = [_series(panel, sets, g, rate) for g in groups]
        grouped_bars(ax, [set_label(s) for s in sets], [s for s, _ in drawn])
        counts += [n for _, ns in drawn for n in ns]
        ax.set(title=title, xlabel="evaluation set", ylabel=ylabel, ylim=(0, 1.05))
    legend_below(fig, axes)
    return fig, counts


@dataclass(frozen=True)
class MistakeFigure:  # not a NamedTuple: its field ``count`` would shadow tuple.count
    """One figure: the rows of ``analysis`` with the ``count`` column, drawn as the ``rate`` of ``groups`` on a
    ``ylabel`` axis, captioned ``title`` and ``description`` (what a bar shows; :func:`_render` adds the layout)."""

    analysis: str
    count: str
    rate: str
    groups: tuple[Group, ...]
    ylabel: str
    title: str
    description: str


#: figure name -> what it draws and its caption (:func:`_render`)
MISTAKE_FIGURES = {
    "fig8a": MistakeFigure(
        "unnecessary",
        "n_pred_true",
        "p_pred_true",
        FIG8A,
        "P(probe: necessary) (fraction)",
        "Figure 8(a) (Physics of LMs 2.1, Fig. 8a): unnecessary steps are planned before the solution starts.",
        "share of parameters that the nece probe (end of the question) calls necessary, for unnecessary parameters "
        "the model computed with a well-formed sentence in a correct solution (the paper's population), the same "
        "pooled over all solutions and every parseable sentence (wrong solutions and sentences the checker rejects "
        "included), unnecessary parameters it did not compute, and necessary parameters",
    ),
    "fig8b": MistakeFigure(
        "first_error",
        "n_correct",
        "accuracy",
        FIG8B,
        "probe accuracy (fraction)",
        "Figure 8(b) (Physics of LMs 2.1, Fig. 8b): wrong steps are foreshadowed by the model's mental state.",
        "accuracy of the can_next / nece_next probe (position right before the sentence) on the first wrong "
        "parameter of wrong greedy solutions whose true label is false (low accuracy = the model believed it was "
        "ready), on the other label-false parameters at that position (background), and on the parameters of "
        "correct steps (label true)",
    ),
}


def _render(results: pd.DataFrame, out_dir: Path, name: str, layer: int | None) -> list[Path]:
    """Figure ``name`` of :data:`MISTAKE_FIGURES`: its rows (:func:`mistake_rows`) drawn by :func:`_mistake_figure`."""
    spec = MISTAKE_FIGURES[name]
    rows = mistake_rows(results, spec.analysis, spec.count, layer)
    fig, counts = _mistake_figure(rows, spec.groups, spec.rate, spec.ylabel)
    text = caption(
        spec.title,
        f"{spec.description}, per evaluation set (x; 'all' = pooled), one panel per (checkpoint, model, probe "
        "task); bars = mean over probe seeds; whiskers = 95% intervals of the bootstrap over solutions (the "
        "examples of one solution are correlated), averaged over seeds.",
        "fraction of parameters",
        count_range(counts, "parameters"),
        rows,
        [_readout_note(rows)],
    )
    return save_figure(fig, Path(out_dir) / name, text)


def _readout_note(rows: pd.DataFrame) -> str:
    """The caption line naming the hook(s) the probes read."""
    if "hook" in rows and rows["hook"].notna().any():
        hooks = "; ".join(readout_text(h) for h in sorted(set(rows["hook"].dropna())))
    else:
        hooks = "not recorded (rows older than the hook column)"
    return f"Probe read-out: {hooks}."


@styled
def fig8a(results: pd.DataFrame, out_dir: Path, *, layer: int | None = None) -> list[Path]:
    """Paper Fig. 8(a): nece probe's P(necessary) for written vs unwritten unnecessary (and necessary) parameters."""
    return _render(results, out_dir, "fig8a", layer)


@styled
def fig8b(results: pd.DataFrame, out_dir: Path, *, layer: int | None = None) -> list[Path]:
    """Paper Fig. 8(b): can_next / nece_next probe accuracy on first wrong parameters vs background and correct steps."""
    return _render(results, out_dir, "fig8b", layer)
