"""Mistake-analysis figures from ``kind == "mistakes"`` rows: fig8a, fig8b (Physics of LMs 2.1, Fig. 8).

Per checkpoint one layer is shown (the option ``layer``, else the last present); rows left are pooled by
summing their counts, and Wilson 95% intervals are recomputed on the pooled counts. Rows with
``set == "all"`` (pooled over sets by the analysis) are drawn as the last category.

- **fig8a**: on reask data, P(nece probe says necessary) for parameters the model wrote although unnecessary,
  unnecessary parameters it did not write, and necessary parameters; x = evaluation set.
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
    count_range,
    grid,
    grouped_bars,
    last_per_group,
    legend_below,
    panel_width,
    proportion,
    rows_of,
    set_label,
    sorted_sets,
)
from probekit.figures.style import COLORS, save_figure

MISTAKE_COLUMNS = ("checkpoint", "analysis", "task", "set", "group", "n")


class Group(NamedTuple):
    """One bar series: rows of ``group`` (with ``true_label`` when not None), drawn as ``label``."""

    group: str
    true_label: int | None
    label: str
    color: str


FIG8A = (
    Group("written_unnecessary", None, "unnecessary, written by the model", COLORS["negative"]),
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
    if "layer" in rows and rows["layer"].notna().any():
        rows = last_per_group(rows, ["checkpoint", "task"], "layer", layer)
    return rows


def _cell(rows: pd.DataFrame, count: str) -> tuple[int, float, float, float]:
    n = int(rows["n"].sum())
    return (n, *proportion(rows[count].sum(), n))


def _series(panel: pd.DataFrame, sets: list[str], group: Group, count: str) -> tuple[Series, list[int]]:
    """Pooled proportion ``count / n`` of one group per set, with its n per set."""
    rows = panel[panel["group"] == group.group]
    if group.true_label is not None and "true_label" in rows:
        rows = rows[rows["true_label"] == group.true_label]
    cells = [_cell(rows[rows["set"] == s], count) for s in sets]
    n, values, low, high = (np.array(v, dtype=float) for v in zip(*cells))
    return Series(group.label, group.color, values, low, high), [int(x) for x in n]


def _mistake_figure(rows: pd.DataFrame, groups, count: str, ylabel: str):
    """Panels per (checkpoint, task): x = set, one bar series per group; returns the figure and n per cell."""
    pairs = set(zip(rows["checkpoint"], rows["task"]))
    panels = [
        (f"{c} - {t} probe", c, t) for c in checkpoint_order(rows) for t in sorted(t for cc, t in pairs if cc == c)
    ]
    n_sets = rows["set"].nunique()
    fig, axes = grid(len(panels), width=panel_width(n_sets, len(groups)), height=3.0)
    counts: list[int] = []
    for ax, (title, ckpt, task) in zip(axes, panels):
        panel = rows[(rows["checkpoint"] == ckpt) & (rows["task"] == task)]
        sets = sorted_sets(panel["set"])
        drawn = [_series(panel, sets, g, count) for g in groups]
        grouped_bars(ax, [set_label(s) for s in sets], [s for s, _ in drawn])
        counts += [n for _, ns in drawn for n in ns]
        ax.set(title=title, xlabel="evaluation set", ylabel=ylabel, ylim=(0, 1.05))
    legend_below(fig, axes)
    return fig, counts


@dataclass(frozen=True)
class MistakeFigure:  # not a NamedTuple: its field ``count`` would shadow tuple.count
    """One figure: the rows of ``analysis`` with the ``count`` column, drawn as ``groups`` on a ``ylabel`` axis,
    captioned ``title`` and ``description`` (what a bar shows; :func:`_render` adds the layout)."""

    analysis: str
    count: str
    groups: tuple[Group, ...]
    ylabel: str
    title: str
    description: str


#: figure name -> what it draws and its caption (:func:`_render`)
MISTAKE_FIGURES = {
    "fig8a": MistakeFigure(
        "unnecessary",
        "n_pred_true",
        FIG8A,
        "P(probe: necessary) (fraction)",
        "Figure 8(a) (Physics of LMs 2.1, Fig. 8a): unnecessary steps are planned before the solution starts.",
        "share of parameters that the nece probe (end of the question) calls necessary, for unnecessary parameters "
        "the model computed in its (correct) solution, unnecessary parameters it did not compute, and necessary "
        "parameters",
    ),
    "fig8b": MistakeFigure(
        "first_error",
        "n_correct",
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
    fig, counts = _mistake_figure(rows, spec.groups, spec.count, spec.ylabel)
    text = caption(
        spec.title,
        f"{spec.description}, per evaluation set (x; 'all' = pooled), one panel per (checkpoint, probe task); "
        "whiskers = Wilson 95% intervals on the pooled counts.",
        "fraction of parameters",
        count_range(counts, "parameters"),
        rows,
    )
    return save_figure(fig, Path(out_dir) / name, text)


def fig8a(results: pd.DataFrame, out_dir: Path, *, layer: int | None = None) -> list[Path]:
    """Paper Fig. 8(a): nece probe's P(necessary) for written vs unwritten unnecessary (and necessary) parameters."""
    return _render(results, out_dir, "fig8a", layer)


def fig8b(results: pd.DataFrame, out_dir: Path, *, layer: int | None = None) -> list[Path]:
    """Paper Fig. 8(b): can_next / nece_next probe accuracy on first wrong parameters vs background and correct steps."""
    return _render(results, out_dir, "fig8b", layer)
