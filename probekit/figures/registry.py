"""The figure registry (names -> figure functions, :func:`render`) and what the figure modules share.

Every figure function has the signature ``fig(results, out_dir, *, option=...) -> list[Path]``: it reads only the
results table (one row per result, column ``kind`` says which), writes ``out_dir/NAME.{png,pdf,txt}`` with
:func:`probekit.figures.style.save_figure` and returns the paths. A figure whose rows are absent raises
:class:`NoData`; :func:`render` turns that into a skipped :class:`FigureResult` with the reason.

Importing this module loads neither matplotlib nor pandas (the figure names alone are in :mod:`.names`); the
figure modules are imported on first use of :data:`FIGURES` (a module attribute built lazily, PEP 562).

The helpers below the registry (row selection, pooling over seeds, captions, bars, heat maps) are shared by
:mod:`.accuracy`, :mod:`.probing`, :mod:`.mistakes` and :mod:`.depth`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probekit.evaluate.metrics import wilson_interval
from probekit.figures.names import FIGURE_NAMES, SOURCES

if TYPE_CHECKING:
    import pandas as pd


class NoData(Exception):
    """The results table holds none of the rows a figure needs; the message says which."""


@dataclass
class FigureResult:
    """What :func:`render` did for one figure: the files written, or why it was skipped.

    ``n_rows`` counts the rows of the table of the kind the figure reads (0 for fig1, which reads none).
    """

    name: str
    paths: list[Path] = field(default_factory=list)
    skipped: str | None = None
    n_rows: int = 0

    def to_dict(self) -> dict:
        """``{"figure", "files", "skipped", "n_rows"}`` (JSON-ready)."""
        return {
            "figure": self.name,
            "files": [str(p) for p in self.paths],
            "skipped": self.skipped,
            "n_rows": self.n_rows,
        }


@functools.cache
def _figures() -> dict[str, Callable]:
    return {
        name: getattr(importlib.import_module(f"probekit.figures.{src.module}"), name) for name, src in SOURCES.items()
    }


def __getattr__(name: str):
    """``FIGURES`` (figure name -> function), imported on first access."""
    if name == "FIGURES":
        return _figures()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def figure_options(name: str) -> list[str]:
    """The keyword options figure ``name`` accepts."""
    params = inspect.signature(_figures()[name]).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY]


def check_request(names: Iterable[str] | None = None, options: Mapping[str, Mapping] | None = None) -> list[str]:
    """The figure names to render (every figure when ``names`` is None), checked with their options.

    Raises ``ValueError`` naming an unknown figure (with the allowed names) or an unknown option.
    """
    names = list(FIGURE_NAMES if names is None else names)
    options = options or {}
    unknown = [n for n in [*names, *options] if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(FIGURE_NAMES)}")
    for name, opts in options.items():
        allowed = figure_options(name)
        bad = sorted(set(opts or {}) - set(allowed))
        if bad:
            raise ValueError(
                f"figure {name} has no option(s) {', '.join(bad)}; allowed: {', '.join(allowed) or 'none'}"
            )
    return names


def render(
    results: pd.DataFrame,
    names: Iterable[str] | None,
    out_dir: str | Path,
    options: Mapping[str, Mapping] | None = None,
) -> list[FigureResult]:
    """Draw the named figures (all when None) from ``results`` into ``out_dir``.

    ``options`` maps a figure name to its keyword options. A figure without its rows is skipped with the
    reason; any other error propagates.
    """
    names = check_request(names, options)
    out_dir = Path(out_dir)
    done = []
    for name in names:
        kind = SOURCES[name].kind
        n_rows = int((results["kind"] == kind).sum()) if kind and "kind" in results.columns else 0
        try:
            paths = _figures()[name](results, out_dir, **dict((options or {}).get(name) or {}))
        except NoData as err:
            done.append(FigureResult(name, [], str(err), n_rows))
        else:
            done.append(FigureResult(name, list(paths), None, n_rows))
    return done


# ---------------------------------------------------------------------------------------------- fig1
def fig1(results: pd.DataFrame, out_dir: Path, *, op: int = 6, seed: int = 0) -> list[Path]:
    """Paper Fig. 1: structure and dependency graph of one generated iGSM-med problem (reads no results)."""
    try:
        from probekit.figures.graphs import draw_problem_graphs
    except ModuleNotFoundError as err:
        if err.name != "probekit.figures.graphs":
            raise
        raise NoData("needs probekit.figures.graphs.draw_problem_graphs, which this checkout lacks") from err
    from probekit import __version__
    from probekit.figures.style import save_figure, styled
    from probekit.igsm.generate import GenerationConfig, draw_problem

    problem, _solution = draw_problem(GenerationConfig("med", op=op, seed=seed), index=0)
    caption = (
        "Figure 1 (Physics of LMs 2.1, Fig. 1): structure graph (left) and dependency graph (right) of one "
        f"generated problem.\nProblem: iGSM-med, op={op} (number of operations), seed {seed}, index 0, train split "
        f"(generated, not read from the results store).\nRevision: probekit {__version__}."
    )
    return save_figure(styled(draw_problem_graphs)(problem), Path(out_dir) / "fig1", caption)


# ---------------------------------------------------------------------------------------------- rows
def rows_of(results: pd.DataFrame, kind: str, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of one ``kind`` in which every one of ``columns`` exists and is not all missing; else NoData."""
    if "kind" not in results.columns:
        raise NoData("the results table has no 'kind' column")
    rows = results[results["kind"] == kind]
    if rows.empty:
        raise NoData(f"no {kind!r} rows in the results store")
    missing = [c for c in columns if c not in rows.columns or rows[c].isna().all()]
    if missing:
        raise NoData(f"the {kind!r} rows have no values in column(s) {', '.join(missing)}")
    return rows


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, or an all-NaN column of the same length when the table has no such column."""
    import pandas as pd

    return frame[name] if name in frame.columns else pd.Series(math.nan, index=frame.index, dtype=float)


def floats(values) -> np.ndarray:
    """A float array from a column or sequence (nullable integers, None and non-numbers become NaN)."""
    import pandas as pd

    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def integer(value) -> str:
    """A whole number as text (tables hold integers as floats once kinds are mixed); "-" when missing."""
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "-"


def last_per_group(rows: pd.DataFrame, keys: Sequence[str], column: str, value=None) -> pd.DataFrame:
    """Rows whose ``column`` equals ``value``, or, when ``value`` is None, its largest value within each ``keys`` group.

    Used to pick the last layer (or the largest rank) per checkpoint unless an option names one.
    """
    if value is not None:
        picked = rows[rows[column] == value]
        if picked.empty:
            raise NoData(
                f"no rows with {column} = {value!r} (present: {sorted(rows[column].dropna().unique().tolist())})"
            )
        return picked
    best = rows.groupby(list(keys), dropna=False)[column].transform("max")
    return rows[rows[column] == best]


def deepest_readout(rows: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The rows of the deepest read-out within each ``keys`` group: ``ln_final.hook_out`` (after the final norm)
    before any block's resid_post, a deeper block before a shallower one (by the ``hook`` column; rows without
    one by their numeric ``layer``)."""
    import pandas as pd

    from probekit.probe.readout import readout_depth

    hook = column(rows, "hook")
    order = hook.map(readout_depth).astype(float).fillna(pd.to_numeric(column(rows, "layer"), errors="coerce"))
    return last_per_group(rows.assign(_order=order), keys, "_order").drop(columns="_order")


def proportion(k: float, n: float) -> tuple[float, float, float]:
    """``(k / n, Wilson low, Wilson high)`` for counts (NaN when ``n`` is 0)."""
    n, k = int(n), round(k)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    low, high = wilson_interval(k, n)
    return (k / n, low, high)


def pooled_rate(rates, ns) -> tuple[int, float, float, float]:
    """Pool rates measured on ``ns`` items each: ``(n, rate, Wilson low, Wilson high)``; NaN rows are ignored."""
    r, n = floats(rates), floats(ns)
    keep = ~(np.isnan(r) | np.isnan(n))
    total = int(n[keep].sum())
    return (total, *proportion(float((r[keep] * n[keep]).sum()), total))


def seed_mean(rates, lows, highs, ns) -> tuple[float, float, float, float]:
    """One cell from its rows (probe seeds): ``(n, mean rate, mean low, mean high)``. NaN rates are ignored.

    The rows of one cell are repeats of the same measurement (probe seeds, usually on the same test problems), so
    their counts are not independent evidence: the rate is averaged, not pooled, and so are the rows' own
    intervals (each the problem-level bootstrap of its job: the examples of one problem are correlated). ``n`` is
    the mean count of a row. A row without an interval (bootstrap off, older stores) falls back to the Wilson
    interval of its rate on its count, which ignores the clustering; the caption says intervals are per row."""
    r, lo, hi, n = floats(rates), floats(lows), floats(highs), floats(ns)
    keep = ~(np.isnan(r) | np.isnan(n))
    if not keep.any():
        return 0.0, math.nan, math.nan, math.nan
    r, lo, hi, n = r[keep], lo[keep], hi[keep], n[keep]
    missing = np.isnan(lo) | np.isnan(hi)
    for i in np.flatnonzero(missing):
        _, lo[i], hi[i] = proportion(r[i] * n[i], n[i])
    return float(n.mean()), float(r.mean()), _nanmean(lo), _nanmean(hi)


def _nanmean(values: np.ndarray) -> float:
    """The mean of the non-NaN values (NaN, without a warning, when there is none)."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def weighted_mean(values, weights) -> float:
    """Mean of ``values`` weighted by ``weights``, ignoring NaN values (NaN when no weight is left)."""
    v, w = floats(values), floats(weights)
    keep = ~(np.isnan(v) | np.isnan(w))
    total = w[keep].sum()
    return float((v[keep] * w[keep]).sum() / total) if total > 0 else math.nan


# ---------------------------------------------------------------------------------------------- ordering
_SET = re.compile(r"^(reask )?op\s*(<=|=)\s*(\d+)$")
_SHORT_SET = re.compile(r"^(r?)(\d+)$")  # the sweep's test-set spelling: K (op=K), rK (reask op=K)


def set_label(name) -> str:
    """The display name of an evaluation / test set: ``"20"`` -> ``"op=20"``, ``"r20"`` -> ``"reask op=20"``."""
    match = _SHORT_SET.match(str(name))
    if not match:
        return str(name)
    return f"{'reask ' if match.group(1) else ''}op={match.group(2)}"


def set_sort_key(name) -> tuple:
    """Order of sets: in-distribution ("id", "op<=K") first, then op=K by K, then reask op=K, "all" last."""
    label = set_label(name)
    if label == "id":
        return (0, 0, label)
    match = _SET.match(label)
    if match:
        reask, relation, op = match.groups()
        return (2 if reask else 1 if relation == "=" else 0, int(op), label)
    return (4 if label == "all" else 3, 0, label)


def sorted_sets(names: Iterable[str]) -> list[str]:
    """Distinct set names in :func:`set_sort_key` order."""
    return sorted(set(names), key=set_sort_key)


def checkpoint_order(rows: pd.DataFrame) -> list[str]:
    """Checkpoint labels sorted by (n_layer, d_model, label)."""
    cols = [c for c in ("n_layer", "d_model") if c in rows.columns]
    table = rows.drop_duplicates("checkpoint")[["checkpoint", *cols]]
    return sorted(table["checkpoint"], key=lambda c: (*_shape(table, c, cols), str(c)))


def _shape(table: pd.DataFrame, checkpoint: str, cols: Sequence[str]) -> tuple:
    values = table.loc[table["checkpoint"] == checkpoint, list(cols)].iloc[0]
    return tuple(math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values)


def checkpoint_colors(results: pd.DataFrame) -> dict[str, str]:
    """A fixed colour per checkpoint label over the whole table, so every figure agrees."""
    from probekit.figures.style import CYCLE

    return {c: CYCLE[i % len(CYCLE)] for i, c in enumerate(checkpoint_order(results))}


# ---------------------------------------------------------------------------------------------- captions
def provenance(rows: pd.DataFrame) -> str:
    """Which runs produced ``rows``: job count, sweeps, checkpoint labels with sha256 prefixes, revisions."""
    parts = []
    for label in checkpoint_order(rows):
        shas = (
            _distinct(rows.loc[rows["checkpoint"] == label, "checkpoint_sha256"], 12)
            if "checkpoint_sha256" in rows
            else []
        )
        parts.append(f"{label} (sha256 {', '.join(shas) or 'unknown'})")
    jobs = rows["job_id"].nunique() if "job_id" in rows else 0
    sweeps = ", ".join(_distinct(rows.get("sweep", []))) or "unknown"
    revisions = ", ".join(_distinct(rows.get("revision", []))) or "unknown"
    return f"Runs: {jobs} job(s) of sweep(s) {sweeps}; checkpoints: {'; '.join(parts)}; revision(s): {revisions}."


def _distinct(values, width: int | None = None) -> list[str]:
    return sorted({str(v)[:width] for v in values if isinstance(v, str) and v})


def count_range(values, unit: str) -> str:
    """``"4096 problems"`` or ``"512-4096 problems"`` over the cells' n (cells with n = 0 left out)."""
    n = floats(values)
    n = n[~np.isnan(n) & (n > 0)].astype(int)
    if not n.size:
        return f"0 {unit}"
    low, high = int(n.min()), int(n.max())
    return f"{low} {unit}" if low == high else f"{low}-{high} {unit}"


def caption(title: str, plotted: str, units: str, n_cells: str, rows: pd.DataFrame, notes: Iterable[str] = ()) -> str:
    """The caption text: title, what is plotted, units, n per cell, the runs, and any notes (one per line)."""
    lines = [title, f"Plotted: {plotted}", f"Units: {units}", f"n per cell: {n_cells}", provenance(rows), *notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- drawing
@dataclass
class Series:
    """One bar series: a label, a colour, values aligned with the categories and optional interval bounds."""

    label: str
    color: str
    values: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None


def grid(n_panels: int, *, ncols: int = 2, width: float = 3.6, height: float = 2.8):
    """``(fig, axes)``: ``n_panels`` axes in rows of ``ncols`` (a flat list); spare axes are hidden."""
    from probekit.figures.style import new_figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig, axes = new_figure(ncols, nrows, width, height)
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def panel_width(n_categories: int, n_series: int) -> float:
    """Panel width in inches for grouped bars (at least the style's 3.6)."""
    return max(3.6, 0.6 + 0.22 * n_categories * (n_series + 1))


def grouped_bars(ax, categories: Sequence[str], series: Sequence[Series]) -> np.ndarray:
    """Grouped bars with 95% interval whiskers; returns the category centres (for baseline markers).

    A missing value (NaN) draws no bar, so it cannot be mistaken for zero.
    """
    x = np.arange(len(categories), dtype=float)
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        values = np.asarray(s.values, dtype=float)
        pos = x - 0.4 + width * (i + 0.5)
        present = ~np.isnan(values)
        ax.bar(pos[present], values[present], width, color=s.color, label=s.label, edgecolor="white", linewidth=0.5)
        if s.low is not None and s.high is not None:
            yerr = np.vstack([values - s.low, s.high - values])
            ok = ~np.isnan(yerr).any(axis=0)
            ax.errorbar(
                pos[ok],
                values[ok],
                yerr=np.clip(yerr[:, ok], 0, None),
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=2,
            )
    ax.set_xticks(
        x, categories, rotation=30 if len(categories) > 3 else 0, ha="right" if len(categories) > 3 else "center"
    )
    return x


def legend_below(fig, axes) -> None:
    """One legend for the whole figure, below the panels: each label drawn in ``axes`` once."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not (isinstance(handle, tuple) and not handle):  # skip a bar series with no bar in this panel
                entries.setdefault(label, handle)
    if not entries:
        return
    per_entry = 0.45 + 0.07 * max(len(label) for label in entries)  # inches, at the style's legend font size
    ncols = max(1, min(len(entries), int(fig.get_figwidth() // per_entry)))
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=ncols, frameon=False)


def baseline_marks(ax, x: np.ndarray, values, label: str, color: str) -> None:
    """A dashed horizontal tick across each category group at ``values`` (NaN: none)."""
    values = np.asarray(values, dtype=float)
    ok = ~np.isnan(values)
    if ok.any():
        ax.hlines(
            values[ok], x[ok] - 0.42, x[ok] + 0.42, colors=color, linestyles="--", linewidth=1.2, label=label, zorder=4
        )


def heatmap(ax, matrix: np.ndarray, xlabels: Sequence, ylabels: Sequence, *, lower_origin: bool = False):
    """An accuracy heat map in [0, 1] with each cell annotated in percent; returns the image (for a colour bar)."""
    image = ax.imshow(
        matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", origin="lower" if lower_origin else "upper"
    )
    ax.set_xticks(range(len(xlabels)), [str(v) for v in xlabels])
    ax.set_yticks(range(len(ylabels)), [str(v) for v in ylabels])
    ax.grid(False)
    size = 7 if matrix.size <= 60 else 5
    for (i, j), value in np.ndenumerate(matrix):
        if not math.isnan(value):
            ax.text(
                j,
                i,
                f"{100 * value:.0f}",
                ha="center",
                va="center",
                fontsize=size,
                color="black" if value > 0.6 else "white",
            )
    return image


def empty_panel(ax, title: str) -> None:
    """Mark a panel that has no rows."""
    ax.set_title(title)
    ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
