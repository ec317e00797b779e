"""Data-scaling figures from ``kind == "accuracy"`` rows: scaling_accuracy, scaling_stability, scaling_steps,
scaling_errors (Xwin-Math, arXiv 2403.04706, Figs. 1, 3, 4 and 5 and Table 4).

The x axis is the number of distinct training problems of the evaluated checkpoint (column ``train_n_problems``;
null = unlimited fresh data, drawn at the right end and labelled "unlimited"), on a log scale. Rows are grouped
into **cells** = (run, data size): the run says how the checkpoint was trained, "from scratch"
(``train_init_from`` null) or "fine-tuned" (otherwise; "fine-tuned from X" when several starting points occur),
with the model shape added when several shapes occur and ", resampled by length" when ``train_resample`` is
"length". Within a cell, rows are pooled over checkpoints (training seeds) and evaluation seeds by the helpers of
:mod:`.accuracy`, with the cell standing in for the checkpoint: counts are summed and Wilson 95% intervals
recomputed; PassRatio@N is n-weighted as in ``stability``; the single-step model is refitted on the pooled
``accuracy_by_op`` counts of the non-reask sets, as in ``step_fit``.

- **scaling_accuracy** (Fig. 1): greedy accuracy against data size per evaluation set, one line per run, Wilson
  intervals; Pass@N as stars where sampled.
- **scaling_stability** (Fig. 3): Pass@1, Pass@N and PassRatio@N against data size per evaluation set.
- **scaling_steps** (Fig. 4, Table 4): accuracy against op, one colour per data size, with the fitted
  ``step_accuracy ** op`` curves; a second panel compares length resampling with none at the largest data size
  that has both. The caption tabulates step accuracy and the mean normalised first-error position per cell.
- **scaling_errors** (Fig. 5): share of calculation vs reasoning errors (by the type of the first mistake) among
  the wrong solutions, stacked bars per data size, one panel per run.

Only ``train_n_problems`` is required of the training metadata; without ``train_init_from`` every run counts as
from scratch, without ``train_resample`` as not resampled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator, NullLocator

from probekit.evaluate.metrics import StepFit, wilson_interval
from probekit.figures.accuracy import (
    ACCURACY_COLUMNS,
    ACCURACY_LABEL,
    STABILITY_COLUMNS,
    pooled_accuracy,
    pooled_stability,
    step_fits,
)
from probekit.figures.registry import (
    NoData,
    caption,
    checkpoint_order,
    column,
    count_range,
    floats,
    grid,
    integer,
    legend_below,
    pooled_rate,
    proportion,
    rows_of,
    set_label,
    sorted_sets,
    weighted_mean,
)
from probekit.figures.style import COLORS, CYCLE, save_figure

SIZE = "train_n_problems"
SIZE_LABEL = "distinct training problems (log scale)"
ERROR_COLUMNS = ("errors_calculation", "errors_reasoning")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


# ---------------------------------------------------------------------------------------------- cells
def size_label(size: float, *, short: bool = False) -> str:
    """``"unlimited"`` for an infinite (null) size, else the count: ``"7500"`` or, with ``short``, ``"7.5K"``."""
    if not math.isfinite(size):
        return "unlimited"
    size = int(size)
    if short:
        for unit, scale in (("M", 1_000_000), ("K", 1_000)):
            if size >= scale:
                return f"{size / scale:.3g}{unit}"
    return str(size)


def size_text(size: float) -> str:
    """How a caption names a data size: ``"4096 training problems"`` or ``"unlimited training data"``."""
    return "unlimited training data" if not math.isfinite(size) else f"{size_label(size)} training problems"


def _is_init(value) -> bool:
    return isinstance(value, str) and bool(value)


def scaling_rows(results: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The accuracy rows (having ``columns``) with the cell columns added; NoData without ``train_n_problems``.

    Added: ``data_size`` (float, ``inf`` = unlimited), ``init`` ("from scratch" / "fine-tuned" ...), ``resample``
    ("none", "length", ...), ``run`` (init + shape + resampling: one line), ``cell`` (run and data size: the
    label that stands in for the checkpoint when pooling).
    """
    rows = rows_of(results, "accuracy", ("checkpoint", *columns))
    if SIZE not in rows.columns:
        raise NoData(f"the 'accuracy' rows have no column {SIZE} (distinct training problems): evaluate checkpoints "
                     "whose training data size is recorded")
    sizes = floats(rows[SIZE]).copy()
    sizes[np.isnan(sizes)] = math.inf
    if (sizes <= 0).any():
        raise NoData(f"{SIZE} must be positive (null = unlimited); found {sorted(set(sizes[sizes <= 0].tolist()))}")
    inits = [v if _is_init(v) else None for v in column(rows, "train_init_from")]
    several = len({v for v in inits if v}) > 1
    init = ["from scratch" if v is None else f"fine-tuned from {v}" if several else "fine-tuned" for v in inits]
    resample = [v if isinstance(v, str) and v else "none" for v in column(rows, "train_resample")]
    shapes = [f"{integer(a)}-layer {integer(b)}-dim" for a, b in zip(column(rows, "n_layer"), column(rows, "d_model"))]
    if len(set(shapes)) > 1:
        init = [f"{i}, {s}" for i, s in zip(init, shapes)]
    run = [i if r == "none" else f"{i}, resampled by {r}" for i, r in zip(init, resample)]
    cell = [f"{r} @ {size_label(s)}" for r, s in zip(run, sizes)]
    return rows.assign(data_size=sizes, init=init, resample=resample, run=run, cell=cell)


def cells_of(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell in plotting order (runs: from scratch first, unresampled first; then by data size).

    Columns: ``cell``, ``run``, ``init``, ``resample``, ``data_size``, ``checkpoints`` (labels, sorted),
    ``init_from`` (the checkpoints fine-tuned from, sorted; empty from scratch).
    """
    out = []
    for cell, g in rows.groupby("cell", sort=False):
        first = g.iloc[0]
        out.append({"cell": cell, "run": first["run"], "init": first["init"], "resample": first["resample"],
                    "data_size": float(first["data_size"]), "checkpoints": checkpoint_order(g),
                    "init_from": sorted({v for v in column(g, "train_init_from") if _is_init(v)})})
    out.sort(key=lambda r: (not r["init"].startswith("from scratch"), r["init"], r["resample"] != "none",
                            r["resample"], r["data_size"]))
    return pd.DataFrame(out, columns=["cell", "run", "init", "resample", "data_size", "checkpoints", "init_from"])


def runs_of(cells: pd.DataFrame) -> list[str]:
    """The runs (lines) in plotting order."""
    return list(dict.fromkeys(cells["run"]))


def _as_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``checkpoint`` replaced by the cell label, for the per-checkpoint pooling helpers."""
    return rows.assign(checkpoint=rows["cell"])


def _cell_lines(cells: pd.DataFrame) -> list[str]:
    """Caption lines: which checkpoints each cell pools."""
    def start(c) -> str:
        return f" (fine-tuned from {', '.join(c['init_from'])})" if c["init_from"] and "from " not in c["init"] else ""

    return ["Cells (run at data size: checkpoints pooled): " + "; ".join(
        f"{c['run']} at {size_text(c['data_size'])}: {', '.join(c['checkpoints'])}{start(c)}"
        for c in cells.to_dict("records"))]


# ---------------------------------------------------------------------------------------------- size axis
def size_positions(sizes: Iterable[float]) -> dict[float, float]:
    """x position (log axis) of each data size: itself, and "unlimited" (inf) 4x beyond the largest finite size."""
    sizes = sorted(set(sizes))
    finite = [s for s in sizes if math.isfinite(s)]
    unlimited = 4.0 * finite[-1] if finite else 1.0
    return {s: (s if math.isfinite(s) else unlimited) for s in sizes}


def size_axis(ax, positions: dict[float, float]) -> None:
    """A log x axis with one tick per data size (compact labels, "unlimited" last) and a dotted break before it."""
    ax.set_xscale("log")
    sizes = sorted(positions)
    ax.set_xticks([positions[s] for s in sizes], [size_label(s, short=True) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    finite = [positions[s] for s in sizes if math.isfinite(s)]
    if finite and not math.isfinite(sizes[-1]):
        ax.axvline(math.sqrt(finite[-1] * positions[sizes[-1]]), color="0.6", linestyle=":", linewidth=0.8)
    lo, hi = min(positions.values()), max(positions.values())
    ax.set_xlim(lo / 1.6, hi * 1.6)
    ax.set_xlabel(SIZE_LABEL)


def size_line(ax, positions, sizes, values, low=None, high=None, *, color, label, linestyle="-", marker="o") -> None:
    """One line against data size with interval whiskers; the unlimited point is joined by a dotted segment.

    Missing values (NaN) are left out.
    """
    sizes = np.asarray(sizes, dtype=float)
    values = np.asarray(values, dtype=float)
    order = np.argsort(sizes)
    sizes, values = sizes[order], values[order]
    x = np.array([positions[s] for s in sizes])
    ok = ~np.isnan(values)
    finite = ok & np.isfinite(sizes)
    ax.plot(x[finite], values[finite], color=color, linestyle=linestyle, marker=marker, ms=4, label=label)
    tail = ok & ~np.isfinite(sizes)
    if tail.any():
        joined = np.flatnonzero(finite)[-1:].tolist() + np.flatnonzero(tail).tolist()
        ax.plot(x[joined], values[joined], color=color, linestyle=":", linewidth=1.0)
        ax.plot(x[tail], values[tail], color=color, linestyle="none", marker=marker, ms=4,
                label=None if finite.any() else label)
    if low is not None and high is not None:
        low, high = np.asarray(low, dtype=float)[order], np.asarray(high, dtype=float)[order]
        yerr = np.vstack([values - low, high - values])
        good = ok & ~np.isnan(yerr).any(axis=0)
        ax.errorbar(x[good], values[good], yerr=np.clip(yerr[:, good], 0, None), fmt="none", ecolor=color,
                    elinewidth=0.8, capsize=2)


def _panels(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(title, rows)`` per evaluation set (and per (preset, format) when several occur), sets in set order."""
    several = table[["preset", "format"]].drop_duplicates().shape[0] > 1
    panels = []
    for (preset, fmt), g in table.groupby(["preset", "format"], sort=True, dropna=False):
        for name in sorted_sets(g["set"]):
            title = set_label(name) + (f" (iGSM-{preset}_{fmt})" if several else "")
            panels.append((title, g[g["set"] == name]))
    return panels


def _by_cell(panel: pd.DataFrame, cells: pd.DataFrame, run: str, *columns: str) -> tuple[list[float], list[np.ndarray]]:
    """Data sizes of ``run`` and ``columns`` of ``panel`` (one row per cell) aligned with them."""
    mine = cells[cells["run"] == run]
    table = panel.set_index("checkpoint").reindex(mine["cell"])
    return list(mine["data_size"]), [floats(table[c]) for c in columns]


# ---------------------------------------------------------------------------------------------- scaling_accuracy
def scaling_table(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(rows, cells, table)``: table = one row per (cell, preset, format, set) with pooled accuracy (Wilson CI)
    and, where sampled, Pass@N (Wilson CI on pooled counts) and PassRatio@N; column ``checkpoint`` = the cell."""
    rows = scaling_rows(results, ACCURACY_COLUMNS)
    cells = cells_of(rows)
    table = pooled_accuracy(_as_cells(rows))
    sampled = rows[~np.isnan(floats(column(rows, "pass_at_n")))]
    keys = ["checkpoint", "preset", "format", "set"]
    if sampled.empty or "samples" not in sampled.columns:
        extra = pd.DataFrame(columns=[*keys, "pass_at_n", "pass_at_n_ci_low", "pass_at_n_ci_high", "pass_ratio_at_n"])
    else:
        stab = pooled_stability(_as_cells(sampled))
        extra = stab[[*keys, "pass_at_n", "pass_at_n_ci_low", "pass_at_n_ci_high", "pass_ratio_at_n"]]
    return rows, cells, table.merge(extra, on=keys, how="left")


def _samples_text(rows: pd.DataFrame) -> str:
    samples = sorted({int(s) for s in floats(column(rows, "samples")) if not np.isnan(s)})
    return "/".join(map(str, samples)) if samples else "N"


def scaling_accuracy(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Xwin-Math Fig. 1 analogue: accuracy against the number of distinct training problems, one line per run."""
    rows, cells, table = scaling_table(results)
    positions = size_positions(cells["data_size"])
    panels = _panels(table)
    runs = runs_of(cells)
    n_label = _samples_text(rows[~np.isnan(floats(column(rows, "pass_at_n")))])
    fig, axes = grid(len(panels), ncols=min(len(panels), 3), width=3.6, height=3.0)
    for ax, (title, panel) in zip(axes, panels):
        for i, run in enumerate(runs):
            sizes, (acc, low, high, pass_n) = _by_cell(panel, cells, run, "accuracy", "ci_low", "ci_high", "pass_at_n")
            color = CYCLE[i % len(CYCLE)]
            size_line(ax, positions, sizes, acc, low, high, color=color, label=run,
                      linestyle=LINESTYLES[i // len(CYCLE) % len(LINESTYLES)])
            stars = ~np.isnan(pass_n)
            if stars.any():
                ax.plot([positions[s] for s, keep in zip(sizes, stars) if keep], pass_n[stars], linestyle="none",
                        marker="*", ms=9, color=color, markeredgecolor="black", markeredgewidth=0.4,
                        label=f"{run}: Pass@{n_label}")
        size_axis(ax, positions)
        ax.set(title=title, ylabel=ACCURACY_LABEL, ylim=(0, 1.05))
    legend_below(fig, axes)
    sampled = table["pass_at_n"].notna().any()
    text = caption(
        "Scaling accuracy (Xwin-Math, Fig. 1 analogue): accuracy against the number of distinct training problems.",
        "greedy single-answer accuracy (Pass@1: share of test problems whose whole solution the checker accepts and "
        "whose answer is right) per run (line: from scratch vs fine-tuned, resampling) and data size (x, log scale; "
        "'unlimited' = fresh problems every step, drawn at the right end), one panel per evaluation set; whiskers = "
        "Wilson 95% intervals on the counts pooled over the cell's checkpoints and evaluation seeds"
        + (f"; stars = Pass@{n_label} (share of problems with at least one correct sample among {n_label})"
           if sampled else "; no sampled evaluations, so no Pass@N stars") + ".",
        ACCURACY_LABEL + "; x: distinct training problems",
        count_range(table["n"], "problems"),
        rows,
        _cell_lines(cells),
    )
    return save_figure(fig, Path(out_dir) / "scaling_accuracy", text)


# ---------------------------------------------------------------------------------------------- scaling_stability
def scaling_stability(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Xwin-Math Fig. 3 analogue: Pass@N stays high while PassRatio@N and Pass@1 rise with the data size."""
    rows = scaling_rows(results, ACCURACY_COLUMNS)
    rows = rows[~np.isnan(floats(column(rows, "pass_at_n")))]
    if rows.empty:
        raise NoData("no sampled evaluations (pass_at_n is absent or NaN): evaluate with samples > 0")
    rows = rows_of(rows, "accuracy", STABILITY_COLUMNS)
    cells = cells_of(rows)
    table = pooled_stability(_as_cells(rows))
    positions = size_positions(cells["data_size"])
    n_label = _samples_text(rows)
    temps = sorted({t for cell in table["temperature"] for t in cell})
    metrics = [("pass_at_n", "pass_at_n_ci_low", "pass_at_n_ci_high", f"Pass@{n_label}"),
               ("pass_ratio_at_n", "pass_ratio_ci_low", "pass_ratio_ci_high", f"PassRatio@{n_label}"),
               ("pass_at_1", "pass_at_1_ci_low", "pass_at_1_ci_high", "Pass@1 (greedy)")]
    runs = runs_of(cells)
    panels = _panels(table)
    fig, axes = grid(len(panels), ncols=min(len(panels), 3), width=3.6, height=3.2)
    for ax, (title, panel) in zip(axes, panels):
        for j, run in enumerate(runs):
            for i, (value, low, high, label) in enumerate(metrics):
                sizes, (v, lo, hi) = _by_cell(panel, cells, run, value, low, high)
                size_line(ax, positions, sizes, v, lo, hi, color=CYCLE[i], marker=MARKERS[j % len(MARKERS)],
                          linestyle=LINESTYLES[j % len(LINESTYLES)], label=label)
        size_axis(ax, positions)
        ax.set(title=title, ylabel=ACCURACY_LABEL, ylim=(0, 1.05))
    if len(runs) == 1:
        legend_below(fig, axes)
    else:  # colour = metric, line style and marker = run
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=CYCLE[i], label=m[3]) for i, m in enumerate(metrics)]
        handles += [Line2D([], [], color="0.3", linestyle=LINESTYLES[j % len(LINESTYLES)], marker=MARKERS[j % len(MARKERS)],
                           ms=4, label=run) for j, run in enumerate(runs)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), frameon=False)
    text = caption(
        "Scaling stability (Xwin-Math, Fig. 3 analogue): best-of-N vs single-answer accuracy against the data size.",
        f"Pass@{n_label} (share of problems with at least one correct sample among {n_label}), PassRatio@{n_label} "
        "(mean share of correct samples per problem) and Pass@1 (greedy decoding; colour = metric) per run (line "
        "style and marker) and data size (x, log scale; 'unlimited' at the right end), one panel per evaluation set; "
        "samples at "
        f"temperature {', '.join(f'{t:g}' for t in temps) or 'unknown'}; whiskers: Wilson 95% on pooled counts "
        "(Pass@1, Pass@N), n-weighted bootstrap 95% bounds over problems (PassRatio@N).",
        ACCURACY_LABEL + "; x: distinct training problems",
        count_range(table["n"], "problems"),
        rows,
        _cell_lines(cells),
    )
    return save_figure(fig, Path(out_dir) / "scaling_stability", text)


# ---------------------------------------------------------------------------------------------- scaling_steps
def _by_op_from_bins(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``accuracy_by_op`` rebuilt from ``step_fit_bins`` where it is missing (same counts)."""
    if "step_fit_bins" not in rows.columns:
        return rows
    raw = column(rows, "accuracy_by_op").astype(object)
    missing = [not isinstance(v, str) for v in raw]
    rebuilt = [json.dumps({str(int(b.get("op", b.get("steps")))): [int(b["n"]), int(b["correct"])]
                           for b in json.loads(bins)}) if gap and isinstance(bins, str) else value
               for value, bins, gap in zip(raw, rows["step_fit_bins"], missing)]
    return rows.assign(accuracy_by_op=rebuilt)


def first_error(rows: pd.DataFrame) -> tuple[float, float, float]:
    """Mean normalised first-error position over the non-reask ``rows``, weighted by their wrong solutions.

    Returns ``(mean, low, high)``; the bounds are the n-weighted means of the rows' interval bounds (conservative)
    and NaN without ``first_error_position_ci_low/high``.
    """
    rows = rows[floats(column(rows, "reask")) != 1]
    wrong = floats(column(rows, "n")) - floats(column(rows, "correct"))
    return tuple(weighted_mean(column(rows, c), wrong) for c in (
        "first_error_position", "first_error_position_ci_low", "first_error_position_ci_high"))


def step_table(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(rows, cells, fits)``: fits = cell -> ((ops, n, correct), StepFit) on the pooled non-reask op counts;
    ``cells`` gains ``first_error``, ``first_error_low``, ``first_error_high``."""
    rows = rows_of(results, "accuracy", ("checkpoint",))
    have = [c for c in ("accuracy_by_op", "step_fit_bins") if c in rows.columns and rows[c].notna().any()]
    if not have:
        raise NoData("the 'accuracy' rows have no values in column(s) accuracy_by_op (or step_fit_bins)")
    rows = scaling_rows(_by_op_from_bins(rows))
    fits = step_fits(_as_cells(rows))
    rows = rows[rows["cell"].isin(list(fits))]
    cells = cells_of(rows)
    spots = [first_error(rows[rows["cell"] == c]) for c in cells["cell"]]
    cells = cells.assign(first_error=[s[0] for s in spots], first_error_low=[s[1] for s in spots],
                         first_error_high=[s[2] for s in spots])
    return rows, cells, fits


def resampling_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of the resampling comparison: per run without resampling, the largest data size at which a
    length-resampled run of the same init exists, both cells (empty when there is none)."""
    picked = []
    for init, g in cells.groupby("init", sort=False):
        plain = g[g["resample"] == "none"]
        resampled = g[g["resample"] == "length"]
        common = sorted(set(plain["data_size"]) & set(resampled["data_size"]))
        if common:
            picked += [plain[plain["data_size"] == common[-1]], resampled[resampled["data_size"] == common[-1]]]
    return pd.concat(picked, ignore_index=True) if picked else cells.iloc[0:0]


def _op_points(ax, bins, fit: StepFit, *, color, label, linestyle="--", marker="o", offset=0.0) -> None:
    """Measured accuracy per op (Wilson whiskers) and the fitted curve ``step_accuracy ** op``."""
    ops, n, k = bins
    acc = k / n
    bounds = np.array([wilson_interval(ki, ni) for ki, ni in zip(k, n)])
    ax.errorbar(ops + offset, acc, yerr=np.clip([acc - bounds[:, 0], bounds[:, 1] - acc], 0, None), fmt=marker, ms=3,
                color=color, capsize=2, elinewidth=0.8)
    grid_ops = np.linspace(ops.min(), ops.max(), 100)
    ax.plot(grid_ops, fit.step_accuracy**grid_ops, color=color, linestyle=linestyle,
            label=f"{label}: {fit.step_accuracy:.3f}^op")


def _steps_caption_table(cells: pd.DataFrame, fits: dict) -> list[str]:
    from probekit.figures.report import markdown_table

    rows = []
    for c in cells.to_dict("records"):
        fit = fits[c["cell"]][1]
        spot = "-" if math.isnan(c["first_error"]) else f"{c['first_error']:.3f}" + (
            "" if math.isnan(c["first_error_low"]) else f" [{c['first_error_low']:.3f}, {c['first_error_high']:.3f}]")
        rows.append((c["run"], size_label(c["data_size"]), f"{fit.step_accuracy:.4f} [{fit.ci_low:.4f}, {fit.ci_high:.4f}]",
                     spot, "-" if math.isnan(fit.r2) else f"{fit.r2:.3f}", fit.n, len(fit.bins), ", ".join(c["checkpoints"])))
    headers = ["run", "training problems", "step accuracy [95% profile CI]", "first-error position", "R^2",
               "problems", "op bins", "checkpoints"]
    return ["Table (Xwin-Math Table 4 analogue):", *markdown_table(headers, rows).splitlines()]


def scaling_steps(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Xwin-Math Fig. 4 / Table 4 analogue: accuracy against op per data size with ``step_accuracy ** op`` fits,
    and length resampling vs none at one data size."""
    rows, cells, fits = step_table(results)
    sizes = sorted(set(cells["data_size"]))
    size_color = {s: CYCLE[i % len(CYCLE)] for i, s in enumerate(sizes)}
    pairs = resampling_pairs(cells)
    compared = set(pairs["cell"])
    panels = [(run, g) for run, g in cells.groupby("run", sort=False)
              if (g["resample"] == "none").all() or not set(g["cell"]) <= compared]
    if not pairs.empty:
        at = sorted({size_label(s, short=True) for s in pairs["data_size"]})
        panels.append((f"resampling by length at {', '.join(at)} problems", pairs))
    fig, axes = grid(len(panels), ncols=min(len(panels), 3), width=4.0, height=3.2)
    for p, (ax, (title, panel)) in enumerate(zip(axes, panels)):
        comparing = not pairs.empty and p == len(panels) - 1
        inits = list(dict.fromkeys(panel["init"]))
        for i, c in enumerate(panel.to_dict("records")):
            bins, fit = fits[c["cell"]]
            if comparing:
                resampled = c["resample"] != "none"
                color = COLORS["negative"] if resampled else COLORS["pretrained"]
                label = ("resampled by length" if resampled else "not resampled") + (f", {c['init']}" if len(inits) > 1 else "")
                style = ("--", ":", "-.", "-")[inits.index(c["init"]) % 4]
                _op_points(ax, bins, fit, color=color, label=label, linestyle=style, offset=0.1 if resampled else -0.1)
            else:
                _op_points(ax, bins, fit, color=size_color[c["data_size"]], label=size_label(c["data_size"], short=True),
                           offset=0.08 * (i - (len(panel) - 1) / 2))
        ax.set(title=title, xlabel="op (number of operations)", ylabel=ACCURACY_LABEL, ylim=(0, 1.05))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", title=None if comparing else "training problems", fontsize=7)
    pair_text = "; ".join(f"{c['run']} at {size_text(c['data_size'])}" for c in pairs.to_dict("records"))
    note = ("Resampling panel: per init, the largest data size with both a length-resampled and an unresampled run "
            f"({pair_text})."
            if not pairs.empty else "No resampling comparison: no data size has both a length-resampled and an "
            "unresampled run of the same init.")
    text = caption(
        "Scaling steps (Xwin-Math, Fig. 4 and Table 4 analogue): accuracy against the number of operations per data size.",
        "points = accuracy per op bin with Wilson 95% intervals, counts pooled per cell (run and data size) over its "
        "checkpoints, non-reask evaluation sets and seeds, one colour per data size; dashed curves = step_accuracy ** op "
        "with step_accuracy fitted by binomial maximum likelihood on those pooled counts "
        "(probekit.evaluate.metrics.fit_step_accuracy); one panel per init (from scratch / fine-tuned) and, when "
        "present, a panel comparing length resampling with none. First-error position = mean normalised position of "
        "the first wrong sentence over the wrong solutions of the non-reask sets (weighted by their number; interval "
        "= weighted mean of the rows' bounds where recorded).",
        ACCURACY_LABEL + "; x: op (number of operations); step accuracy and first-error position as fractions",
        count_range(np.concatenate([bins[1] for bins, _ in fits.values()]), "problems per op bin"),
        rows,
        [note, *_steps_caption_table(cells, fits), *_cell_lines(cells)],
    )
    return save_figure(fig, Path(out_dir) / "scaling_steps", text)


# ---------------------------------------------------------------------------------------------- scaling_errors
def error_table(results: pd.DataFrame, set: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows, cells)``: per cell the summed ``calculation``, ``reasoning``, ``format`` and ``wrong`` counts and
    ``share`` = calculation / (calculation + reasoning) with its Wilson interval (``share_low``, ``share_high``).

    Pools the non-reask sets, or only ``set`` when given.
    """
    rows = scaling_rows(results, ERROR_COLUMNS)
    if set is None:
        rows = rows[floats(column(rows, "reask")) != 1]
        if rows.empty:
            raise NoData("no non-reask accuracy rows with error counts")
    else:
        picked = rows[[set_label(s) == set_label(set) for s in rows["set"]]] if "set" in rows.columns else rows.iloc[0:0]
        if picked.empty:
            present = sorted_sets(rows["set"].dropna()) if "set" in rows.columns else []
            raise NoData(f"no accuracy rows with set = {set!r} (present: {present})")
        rows = picked
    cells = cells_of(rows)
    out = []
    for cell in cells["cell"]:
        g = rows[rows["cell"] == cell]
        calc, reason, fmt = (int(np.nansum(floats(column(g, c)))) for c in
                             ("errors_calculation", "errors_reasoning", "errors_format"))
        wrong = int(np.nansum(floats(column(g, "n")) - floats(column(g, "correct"))))
        share, low, high = proportion(calc, calc + reason)
        out.append({"calculation": calc, "reasoning": reason, "format": fmt, "wrong": wrong, "share": share,
                    "share_low": low, "share_high": high})
    return rows, pd.concat([cells, pd.DataFrame(out)], axis=1)


def scaling_errors(results: pd.DataFrame, out_dir: Path, *, set: str | None = None) -> list[Path]:
    """Xwin-Math Fig. 5 analogue: share of calculation vs reasoning errors among wrong solutions, per data size.

    ``set``: one evaluation set (default: every non-reask set pooled).
    """
    rows, cells = error_table(results, set)
    runs = runs_of(cells)
    sizes = sorted(cells["data_size"].unique().tolist())  # the same categories in every panel (`set` is the option)
    fig, axes = grid(len(runs), ncols=min(len(runs), 3), width=max(3.6, 1.0 + 0.5 * len(sizes)), height=3.0)
    for ax, run in zip(axes, runs):
        mine = cells[cells["run"] == run].sort_values("data_size")
        x = np.array([sizes.index(s) for s in mine["data_size"]], dtype=float)
        share = floats(mine["share"])
        ax.bar(x, share, 0.7, color=COLORS["negative"], label="calculation", edgecolor="white", linewidth=0.5)
        ax.bar(x, 1 - share, 0.7, bottom=share, color=COLORS["pretrained"], label="reasoning", edgecolor="white",
               linewidth=0.5)
        yerr = np.vstack([share - floats(mine["share_low"]), floats(mine["share_high"]) - share])
        ok = ~np.isnan(yerr).any(axis=0)
        ax.errorbar(x[ok], share[ok], yerr=np.clip(yerr[:, ok], 0, None), fmt="none", ecolor="black", elinewidth=0.8,
                    capsize=2)
        for xi, c in zip(x, mine.to_dict("records")):
            ax.text(xi, 1.02, str(c["calculation"] + c["reasoning"]), ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(sizes)), [size_label(s, short=True) for s in sizes])
        ax.set_xlim(-0.6, len(sizes) - 0.4)
        ax.grid(axis="x", visible=False)
        ax.set(title=run, xlabel="distinct training problems", ylabel="share of wrong solutions", ylim=(0, 1.1))
    legend_below(fig, axes)
    counts = "; ".join(
        f"{c['run']} at {size_text(c['data_size'])}: calculation {c['calculation']}, reasoning {c['reasoning']}, format "
        f"{c['format']} of {c['wrong']} wrong solutions, calculation share "
        + ("-" if math.isnan(c["share"]) else f"{c['share']:.3f} [{c['share_low']:.3f}, {c['share_high']:.3f}]")
        for c in cells.to_dict("records"))
    text = caption(
        "Scaling errors (Xwin-Math, Fig. 5 analogue): calculation vs reasoning errors against the data size.",
        "share of the wrong solutions whose first mistake is a calculation error (bottom, with Wilson 95% interval) "
        "or a reasoning error (top) among those two types, per run (panel) and data size (x); counts summed over the "
        "cell's checkpoints, evaluation seeds and "
        + (f"evaluation set {set_label(set)}" if set is not None else "non-reask evaluation sets")
        + "; format errors are left out of the shares; the number above a bar = calculation + reasoning errors.",
        "fraction of (calculation + reasoning) errors",
        count_range(cells["calculation"] + cells["reasoning"], "classified wrong solutions"),
        rows,
        [f"Counts: {counts}.", *_cell_lines(cells)],
    )
    return save_figure(fig, Path(out_dir) / "scaling_errors", text)


# ---------------------------------------------------------------------------------------------- report table
def scaling_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per cell over its non-reask sets: n, accuracy (Wilson CI), Pass@N, PassRatio@N, the step fit and
    first-error position (as in scaling_steps) and the calculation share (as in scaling_errors); NaN where absent."""
    rows = scaling_rows(results, ACCURACY_COLUMNS)
    plain = rows[floats(column(rows, "reask")) != 1]
    if plain.empty:
        raise NoData("no non-reask accuracy rows")
    try:
        _, steps, fits = step_table(results)
    except NoData:
        steps, fits = pd.DataFrame(columns=["cell"]), {}
    try:
        _, errors = error_table(results)
    except NoData:
        errors = pd.DataFrame(columns=["cell"])
    steps, errors = steps.set_index("cell"), errors.set_index("cell")
    out = []
    for c in cells_of(plain).to_dict("records"):
        g = plain[plain["cell"] == c["cell"]]
        acc, low, high = proportion(g["correct"].sum(), g["n"].sum())
        fit = fits.get(c["cell"], (None, None))[1]
        step, err = steps.reindex([c["cell"]]).iloc[0], errors.reindex([c["cell"]]).iloc[0]
        out.append({
            **c, "n": int(g["n"].sum()), "accuracy": acc, "ci_low": low, "ci_high": high,
            "pass_at_n": pooled_rate(column(g, "pass_at_n"), g["n"])[1],
            "pass_ratio_at_n": weighted_mean(column(g, "pass_ratio_at_n"), g["n"]),
            "samples": _samples_text(g[~np.isnan(floats(column(g, "pass_at_n")))]),
            "step_accuracy": math.nan if fit is None else fit.step_accuracy,
            "step_ci_low": math.nan if fit is None else fit.ci_low, "step_ci_high": math.nan if fit is None else fit.ci_high,
            "first_error": step.get("first_error", math.nan),
            "calculation_share": err.get("share", math.nan), "share_low": err.get("share_low", math.nan),
            "share_high": err.get("share_high", math.nan),
        })
    return pd.DataFrame(out)
