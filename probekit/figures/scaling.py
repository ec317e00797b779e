"""Data-scaling figures from ``kind == "accuracy"`` rows: scaling_accuracy, scaling_stability, scaling_steps,
scaling_errors (Xwin-Math, arXiv 2403.04706, Figs. 1, 3, 4 and 5 and Table 4).

The x axis is the number of distinct training problems of the evaluated checkpoint (column ``train_n_problems``;
null = unlimited fresh data, drawn at the right end and labelled "unlimited"), on a log scale. The figures draw
the pooled tables of :mod:`.tables`: one line per run, one point per **cell** = (run, data size), its rows pooled
over checkpoints (training seeds) and evaluation seeds.

- **scaling_accuracy** (Fig. 1): greedy accuracy against data size per evaluation set, one line per run, Wilson
  intervals; Pass@N as stars where sampled.
- **scaling_stability** (Fig. 3): Pass@1, Pass@N and PassRatio@N against data size per evaluation set.
- **scaling_steps** (Fig. 4, Table 4): accuracy against op, one colour per data size, with the fitted
  ``step_accuracy ** op`` curves; a second panel compares length resampling with none at the largest data size
  that has both. The caption tabulates step accuracy and the mean normalised first-error position per cell.
- **scaling_errors** (Fig. 5): share of calculation vs reasoning errors (by the type of the first mistake) among
  the wrong solutions, stacked bars per data size, one panel per run.

Only ``train_n_problems`` is required of the training metadata (:mod:`.tables`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator, NullLocator

from probekit.evaluate.metrics import StepFit
from probekit.figures.accuracy import (
    ACCURACY_AXIS,
    ACCURACY_COLUMNS,
    ACCURACY_LABEL,
    STABILITY_COLUMNS,
    pooled_stability,
    wilson_points,
)
from probekit.figures.registry import (
    NoData,
    caption,
    column,
    count_range,
    floats,
    grid,
    legend_below,
    rows_of,
    set_label,
    sorted_sets,
)
from probekit.figures.style import COLORS, CYCLE, save_figure, styled
from probekit.figures.tables import (
    as_cells,
    cells_of,
    error_table,
    markdown_table,
    samples_text,
    scaling_rows,
    scaling_table,
    size_label,
    step_table,
)

SIZE_LABEL = "distinct training problems (log scale)"
LINESTYLES: tuple[Literal["-", "--", ":", "-."], ...] = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


# ---------------------------------------------------------------------------------------------- cells
def size_text(size: float) -> str:
    """How a caption names a data size: ``"4096 training problems"`` or ``"unlimited training data"``."""
    return "unlimited training data" if not math.isfinite(size) else f"{size_label(size)} training problems"


def runs_of(cells: pd.DataFrame) -> list[str]:
    """The runs (lines) in plotting order."""
    return list(dict.fromkeys(cells["run"]))


def _cell_lines(cells: pd.DataFrame) -> list[str]:
    """Caption lines: which checkpoints each cell pools."""

    def start(c) -> str:
        return f" (fine-tuned from {', '.join(c['init_from'])})" if c["init_from"] and "from " not in c["init"] else ""

    return [
        "Cells (run at data size: checkpoints pooled): "
        + "; ".join(
            f"{c['run']} at {size_text(c['data_size'])}: {', '.join(c['checkpoints'])}{start(c)}"
            for c in cells.to_dict("records")
        )
    ]


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
        ax.plot(
            x[tail],
            values[tail],
            color=color,
            linestyle="none",
            marker=marker,
            ms=4,
            label=None if finite.any() else label,
        )
    if low is not None and high is not None:
        low, high = np.asarray(low, dtype=float)[order], np.asarray(high, dtype=float)[order]
        yerr = np.vstack([values - low, high - values])
        good = ok & ~np.isnan(yerr).any(axis=0)
        ax.errorbar(
            x[good],
            values[good],
            yerr=np.clip(yerr[:, good], 0, None),
            fmt="none",
            ecolor=color,
            elinewidth=0.8,
            capsize=2,
        )


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
@styled
def scaling_accuracy(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Xwin-Math Fig. 1 analogue: accuracy against the number of distinct training problems, one line per run."""
    rows, cells, table = scaling_table(results)
    positions = size_positions(cells["data_size"])
    panels = _panels(table)
    runs = runs_of(cells)
    n_label = samples_text(rows[~np.isnan(floats(column(rows, "pass_at_n")))])
    fig, axes = grid(len(panels), ncols=min(len(panels), 3), width=3.6, height=3.0)
    for ax, (title, panel) in zip(axes, panels):
        for i, run in enumerate(runs):
            sizes, (acc, low, high, pass_n) = _by_cell(panel, cells, run, "accuracy", "ci_low", "ci_high", "pass_at_n")
            color = CYCLE[i % len(CYCLE)]
            size_line(
                ax,
                positions,
                sizes,
                acc,
                low,
                high,
                color=color,
                label=run,
                linestyle=LINESTYLES[i // len(CYCLE) % len(LINESTYLES)],
            )
            stars = ~np.isnan(pass_n)
            if stars.any():
                ax.plot(
                    [positions[s] for s, keep in zip(sizes, stars) if keep],
                    pass_n[stars],
                    linestyle="none",
                    marker="*",
                    ms=9,
                    color=color,
                    markeredgecolor="black",
                    markeredgewidth=0.4,
                    label=f"{run}: Pass@{n_label}",
                )
        size_axis(ax, positions)
        ax.set(title=title, ylabel=ACCURACY_AXIS, ylim=(0, 1.05))
    legend_below(fig, axes)
    sampled = table["pass_at_n"].notna().any()
    text = caption(
        "Scaling accuracy (Xwin-Math, Fig. 1 analogue): accuracy against the number of distinct training problems.",
        "greedy single-answer accuracy (Pass@1: share of test problems whose whole solution the checker accepts and "
        "whose answer is right) per run (line: from scratch vs fine-tuned, resampling) and data size (x, log scale; "
        "'unlimited' = fresh problems every step, drawn at the right end), one panel per evaluation set; whiskers = "
        "Wilson 95% intervals on the counts pooled over the cell's checkpoints and evaluation seeds"
        + (
            f"; stars = Pass@{n_label} (share of problems with at least one correct sample among {n_label})"
            if sampled
            else "; no sampled evaluations, so no Pass@N stars"
        )
        + ".",
        ACCURACY_LABEL + "; x: distinct training problems",
        count_range(table["n"], "problems"),
        rows,
        _cell_lines(cells),
    )
    return save_figure(fig, Path(out_dir) / "scaling_accuracy", text)


# ---------------------------------------------------------------------------------------------- scaling_stability
@styled
def scaling_stability(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Xwin-Math Fig. 3 analogue: Pass@N stays high while PassRatio@N and Pass@1 rise with the data size."""
    rows = scaling_rows(results, ACCURACY_COLUMNS)
    rows = rows[~np.isnan(floats(column(rows, "pass_at_n")))]
    if rows.empty:
        raise NoData("no sampled evaluations (pass_at_n is absent or NaN): evaluate with samples > 0")
    rows = rows_of(rows, "accuracy", STABILITY_COLUMNS)
    cells = cells_of(rows)
    table = pooled_stability(as_cells(rows))
    positions = size_positions(cells["data_size"])
    n_label = samples_text(rows)
    temps = sorted({t for cell in table["temperature"] for t in cell})
    metrics = [
        ("pass_at_n", "pass_at_n_ci_low", "pass_at_n_ci_high", f"Pass@{n_label}"),
        ("pass_ratio_at_n", "pass_ratio_ci_low", "pass_ratio_ci_high", f"PassRatio@{n_label}"),
        ("pass_at_1", "pass_at_1_ci_low", "pass_at_1_ci_high", "Pass@1 (greedy)"),
    ]
    runs = runs_of(cells)
    panels = _panels(table)
    fig, axes = grid(len(panels), ncols=min(len(panels), 3), width=3.6, height=3.2)
    for ax, (title, panel) in zip(axes, panels):
        for j, run in enumerate(runs):
            for i, (value, low, high, label) in enumerate(metrics):
                sizes, (v, lo, hi) = _by_cell(panel, cells, run, value, low, high)
                size_line(
                    ax,
                    positions,
                    sizes,
                    v,
                    lo,
                    hi,
                    color=CYCLE[i],
                    marker=MARKERS[j % len(MARKERS)],
                    linestyle=LINESTYLES[j % len(LINESTYLES)],
                    label=label,
                )
        size_axis(ax, positions)
        ax.set(title=title, ylabel=ACCURACY_AXIS, ylim=(0, 1.05))
    if len(runs) == 1:
        legend_below(fig, axes)
    else:  # colour = metric, line style and marker = run
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=CYCLE[i], label=m[3]) for i, m in enumerate(metrics)]
        handles += [
            Line2D(
                [],
                [],
                color="0.3",
                linestyle=LINESTYLES[j % len(LINESTYLES)],
                marker=MARKERS[j % len(MARKERS)],
                ms=4,
                label=run,
            )
            for j, run in enumerate(runs)
        ]
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
def resampling_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of the resampling comparison: per run without resampling, the largest data size at which a
    length-resampled run of the same init exists, both cells (empty when there is none)."""
    picked = []
    for _init, g in cells.groupby("init", sort=False):
        plain = g[g["resample"] == "none"]
        resampled = g[g["resample"] == "length"]
        common = sorted(set(plain["data_size"]) & set(resampled["data_size"]))
        if common:
            picked += [plain[plain["data_size"] == common[-1]], resampled[resampled["data_size"] == common[-1]]]
    return pd.concat(picked, ignore_index=True) if picked else cells.iloc[0:0]


def _op_points(ax, bins, fit: StepFit, *, color, label, linestyle="--", marker="o", offset=0.0) -> None:
    """Measured accuracy per op (Wilson whiskers) and the fitted curve ``step_accuracy ** op``."""
    ops, n, k = bins
    wilson_points(ax, ops + offset, n, k, color, fmt=marker, elinewidth=0.8)
    grid_ops = np.linspace(ops.min(), ops.max(), 100)
    ax.plot(
        grid_ops,
        fit.step_accuracy**grid_ops,
        color=color,
        linestyle=linestyle,
        label=f"{label}: {fit.step_accuracy:.3f}^op",
    )


def _steps_caption_table(cells: pd.DataFrame, fits: dict) -> list[str]:
    rows = []
    for c in cells.to_dict("records"):
        fit = fits[c["cell"]][1]
        spot = (
            "-"
            if math.isnan(c["first_error"])
            else f"{c['first_error']:.3f}"
            + (
                ""
                if math.isnan(c["first_error_low"])
                else f" [{c['first_error_low']:.3f}, {c['first_error_high']:.3f}]"
            )
        )
        rows.append(
            (
                c["run"],
                size_label(c["data_size"]),
                f"{fit.step_accuracy:.4f} [{fit.ci_low:.4f}, {fit.ci_high:.4f}]",
                spot,
                "-" if math.isnan(fit.r2) else f"{fit.r2:.3f}",
                fit.n,
                len(fit.bins),
                ", ".join(c["checkpoints"]),
            )
        )
    headers = [
        "run",
        "training problems",
        "step accuracy [95% profile CI]",
        "first-error position",
        "R^2",
        "problems",
        "op bins",
        "checkpoints",
    ]
    return ["Table (Xwin-Math Table 4 analogue):", *markdown_table(headers, rows).splitlines()]


@styled
def scaling_steps(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Xwin-Math Fig. 4 / Table 4 analogue: accuracy against op per data size with ``step_accuracy ** op`` fits,
    and length resampling vs none at one data size."""
    rows, cells, fits = step_table(results)
    sizes = sorted(set(cells["data_size"]))
    size_color = {s: CYCLE[i % len(CYCLE)] for i, s in enumerate(sizes)}
    pairs = resampling_pairs(cells)
    compared = set(pairs["cell"])
    panels = [
        (run, g)
        for run, g in cells.groupby("run", sort=False)
        if (g["resample"] == "none").all() or not set(g["cell"]) <= compared
    ]
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
                label = ("resampled by length" if resampled else "not resampled") + (
                    f", {c['init']}" if len(inits) > 1 else ""
                )
                style = ("--", ":", "-.", "-")[inits.index(c["init"]) % 4]
                _op_points(ax, bins, fit, color=color, label=label, linestyle=style, offset=0.1 if resampled else -0.1)
            else:
                _op_points(
                    ax,
                    bins,
                    fit,
                    color=size_color[c["data_size"]],
                    label=size_label(c["data_size"], short=True),
                    offset=0.08 * (i - (len(panel) - 1) / 2),
                )
        ax.set(title=title, xlabel="op (number of operations)", ylabel=ACCURACY_AXIS, ylim=(0, 1.05))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", title=None if comparing else "training problems", fontsize=7)
    pair_text = "; ".join(f"{c['run']} at {size_text(c['data_size'])}" for c in pairs.to_dict("records"))
    note = (
        "Resampling panel: per init, the largest data size with both a length-resampled and an unresampled run "
        f"({pair_text})."
        if not pairs.empty
        else "No resampling comparison: no data size has both a length-resampled and an "
        "unresampled run of the same init."
    )
    text = caption(
        "Scaling steps (Xwin-Math, Fig. 4 and Table 4 analogue): accuracy against the number of operations per data size.",
        "points = greedy accuracy per op bin with Wilson 95% intervals, counts pooled per cell (run and data size) over its "
        "checkpoints, non-reask evaluation sets and seeds, one colour per data size; dashed curves = step_accuracy ** op "
        "with step_accuracy fitted by binomial maximum likelihood on those pooled counts "
        "(probekit.evaluate.metrics.fit_step_accuracy); one panel per init (from scratch / fine-tuned) and, when "
        "present, a panel comparing length resampling with none. First-error position = mean 1-based position of the "
        "first wrong sentence divided by the sentences written, over the wrong solutions of the non-reask sets (weighted by their number; interval "
        "= weighted mean of the rows' bounds where recorded).",
        ACCURACY_LABEL + "; x: op (number of operations); step accuracy and first-error position as fractions",
        count_range(np.concatenate([bins[1] for bins, _ in fits.values()]), "problems per op bin"),
        rows,
        [note, *_steps_caption_table(cells, fits), *_cell_lines(cells)],
    )
    return save_figure(fig, Path(out_dir) / "scaling_steps", text)


# ---------------------------------------------------------------------------------------------- scaling_errors
@styled
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
        ax.bar(
            x,
            1 - share,
            0.7,
            bottom=share,
            color=COLORS["pretrained"],
            label="reasoning",
            edgecolor="white",
            linewidth=0.5,
        )
        yerr = np.vstack([share - floats(mine["share_low"]), floats(mine["share_high"]) - share])
        ok = ~np.isnan(yerr).any(axis=0)
        ax.errorbar(
            x[ok], share[ok], yerr=np.clip(yerr[:, ok], 0, None), fmt="none", ecolor="black", elinewidth=0.8, capsize=2
        )
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
        for c in cells.to_dict("records")
    )
    text = caption(
        "Scaling errors (Xwin-Math, Fig. 5 analogue): calculation vs reasoning errors against the data size.",
        "share of the wrong greedy solutions whose first mistake is a calculation error (bottom, with Wilson 95% interval) "
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
