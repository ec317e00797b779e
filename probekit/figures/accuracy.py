"""Generation-accuracy figures from ``kind == "accuracy"`` rows: fig3, fig4, fig9, stability, step_fit, by_size.

Rows are pooled over evaluation seeds per (checkpoint, preset, format, set): counts are summed and the
Wilson 95% interval is recomputed from the pooled counts; means (unnecessary parameters per correct
solution, the always-0 baseline) are weighted by the rows' counts.

- **fig3** (Physics of LMs 2.1, Fig. 3): accuracy by evaluation set, bars per checkpoint with Wilson
  intervals and the always-answer-0 baseline; one panel per (preset, format).
- **fig4** (Fig. 4): unnecessary parameters per fully-correct solution by set.
- **fig9** (Fig. 9): depth vs width: an accuracy table, rows = model shapes sorted by (n_layer, d_model),
  columns = sets; each cell the best over the shape's checkpoints (training seeds) and decodings (the paper's
  best of 2 seeds x {greedy, beam 4 with sampling}; option ``best_of``).
- **stability** (Xwin-Math, Fig. 3 analogue): Pass@1, Pass@N and PassRatio@N per set with intervals, one panel
  per (checkpoint, preset, format); only with sampled evaluations.
- **step_fit** (Xwin-Math eq. 3 / Fig. 4): accuracy against op pooled per checkpoint over the non-reask sets,
  with the single-step model ``step_accuracy ** op`` refitted on the pooled counts by
  :func:`probekit.evaluate.metrics.fit_step_accuracy` over all bins (solid) and over the first four bins
  (dashed, the paper's dashed curve); options ``weighting`` (``counts`` | ``bins``) and ``first_bins``.
- **by_size**: accuracy against the problem's number of instance parameters, one line per non-reask evaluation
  set (so at a fixed op for the ``op=K`` sets), one panel per checkpoint, from the rows' ``accuracy_by_ip`` counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from probekit.evaluate.metrics import FIRST_BINS, StepFit, fit_step_accuracy, wilson_interval
from probekit.figures.registry import (
    NoData,
    Series,
    baseline_marks,
    caption,
    checkpoint_colors,
    checkpoint_order,
    column,
    count_range,
    floats,
    grid,
    grouped_bars,
    heatmap,
    integer,
    legend_below,
    panel_width,
    pooled_rate,
    proportion,
    rows_of,
    sorted_sets,
    weighted_mean,
)
from probekit.figures.style import COLORS, CYCLE, new_figure, save_figure, styled

ACCURACY_COLUMNS = ("checkpoint", "preset", "format", "set", "n", "correct")
PANEL_KEYS = ["preset", "format"]
ACCURACY_LABEL = "accuracy (fraction of problems; greedy decoding unless stated)"
ACCURACY_AXIS = "full-solution accuracy"
"""The y-axis label of the accuracy panels (their captions give the units, :data:`ACCURACY_LABEL`)."""
SET_LABEL = "evaluation set"


def with_decoding(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with a ``decoding`` column (rows written before decodings existed: ``greedy``)."""
    return rows.assign(
        decoding=column(rows, "decoding").astype(object).where(column(rows, "decoding").notna(), "greedy")
    )


def decoding_rows(rows: pd.DataFrame, decoding: str = "greedy") -> pd.DataFrame:
    """The ``rows`` of one ``decoding`` (rows without a ``decoding`` column are greedy); NoData without any."""
    rows = with_decoding(rows)
    rows = rows[rows["decoding"] == decoding]
    if rows.empty:
        raise NoData(f"no accuracy rows with {decoding} decoding")
    return rows


def pooled_accuracy(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, preset, format, set, decoding): n, correct, accuracy with Wilson CI, baseline,
    means (decodings are never pooled with each other; rows without one are greedy)."""
    out = []
    keys = ["checkpoint", *PANEL_KEYS, "set", "decoding"]
    for (ckpt, preset, fmt, name, decoding), g in with_decoding(rows).groupby(keys, sort=False, dropna=False):
        n, k = int(g["n"].sum()), int(g["correct"].sum())
        acc, low, high = proportion(k, n)
        out.append(
            {
                "checkpoint": ckpt,
                "preset": preset,
                "format": fmt,
                "set": name,
                "decoding": decoding,
                "n_layer": column(g, "n_layer").iloc[0],
                "d_model": column(g, "d_model").iloc[0],
                "n": n,
                "correct": k,
                "accuracy": acc,
                "ci_low": low,
                "ci_high": high,
                "always_zero": weighted_mean(column(g, "always_zero_accuracy"), g["n"]),
                "unnecessary_per_correct": weighted_mean(column(g, "unnecessary_per_correct"), g["correct"]),
            }
        )
    return pd.DataFrame(out)


def accuracy_table(
    results: pd.DataFrame, *columns: str, decoding: str | None = "greedy"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The accuracy rows (having ``columns`` too) of one ``decoding`` (the paper's Figs. 3-5 and the report use
    greedy; None: every decoding, as Fig. 9's best-of protocol) and their :func:`pooled_accuracy` table (one row
    per decoding: decodings are never pooled with each other); NoData without rows."""
    rows = rows_of(results, "accuracy", (*ACCURACY_COLUMNS, *columns))
    rows = with_decoding(rows) if decoding is None else decoding_rows(rows, decoding)
    return rows, pooled_accuracy(rows)


def _aligned(frame: pd.DataFrame, sets: list[str], *columns: str) -> list[np.ndarray]:
    """Columns of ``frame`` (one row per set) reindexed to ``sets`` (NaN where absent)."""
    table = frame.set_index("set").reindex(sets)
    return [floats(table[c]) for c in columns]


def _panels(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(title, rows)`` per (preset, format), e.g. ``iGSM-med_pq``."""
    return [(f"iGSM-{preset}_{fmt}", g) for (preset, fmt), g in table.groupby(PANEL_KEYS, sort=True)]


def _checkpoint_bars(results, table, value, ylabel, *, low=None, high=None, baseline=None, ylim=None):
    """fig3 / fig4 layout: one panel per (preset, format), x = set, bars per checkpoint."""
    colors = checkpoint_colors(results)
    panels = _panels(table)
    columns = [c for c in (value, low, high) if c]
    n_sets = max(g["set"].nunique() for _, g in panels)
    fig, axes = grid(len(panels), width=panel_width(n_sets, table["checkpoint"].nunique()), height=3.0)
    for ax, (title, panel) in zip(axes, panels):
        sets = sorted_sets(panel["set"])
        series = [
            Series(c, colors[c], *_aligned(panel[panel["checkpoint"] == c], sets, *columns))
            for c in checkpoint_order(panel)
        ]
        x = grouped_bars(ax, sets, series)
        if baseline:
            cells = [panel[panel["set"] == s] for s in sets]
            baseline_marks(
                ax, x, [weighted_mean(c[baseline], c["n"]) for c in cells], "always answer 0", COLORS["majority"]
            )
        ax.set(title=title, xlabel=SET_LABEL, ylabel=ylabel, ylim=ylim)
    legend_below(fig, axes)
    return fig


@styled
def fig3(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Paper Fig. 3: accuracy by evaluation set, bars per checkpoint with Wilson 95% CIs and the always-0 baseline."""
    rows, table = accuracy_table(results)
    fig = _checkpoint_bars(
        results, table, "accuracy", ACCURACY_AXIS, low="ci_low", high="ci_high", baseline="always_zero", ylim=(0, 1.05)
    )
    text = caption(
        "Figure 3 (Physics of LMs 2.1, Fig. 3): generation accuracy by evaluation set.",
        "share of test problems whose whole solution the checker accepts and whose answer is right, per checkpoint "
        "(bars) and evaluation set (x), one panel per (preset, format); whiskers = Wilson 95% intervals on the counts "
        "pooled over evaluation seeds; dashed ticks = accuracy of always answering 0 (trivial baseline).",
        ACCURACY_LABEL,
        count_range(table["n"], "problems"),
        rows,
    )
    return save_figure(fig, Path(out_dir) / "fig3", text)


@styled
def fig4(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Paper Fig. 4: mean number of unnecessary parameters per fully-correct solution, by evaluation set."""
    rows, table = accuracy_table(results, "unnecessary_per_correct")
    fig = _checkpoint_bars(results, table, "unnecessary_per_correct", "unnecessary params (count)")
    text = caption(
        "Figure 4 (Physics of LMs 2.1, Fig. 4): redundancy of correct solutions.",
        "mean number of parameters a fully-correct solution computes although the query does not need them, per "
        "checkpoint (bars) and evaluation set (x), one panel per (preset, format); means over the correct solutions "
        "pooled over evaluation seeds.",
        "parameters per correct solution (count)",
        count_range(table["correct"], "correct solutions"),
        rows,
    )
    return save_figure(fig, Path(out_dir) / "fig4", text)


def _shape_labels(panel: pd.DataFrame, ckpts: list[str]) -> list[str]:
    """ "L-layer d-dim" per checkpoint; the checkpoint label is added where two share a shape."""
    first = panel.drop_duplicates("checkpoint").set_index("checkpoint")
    labels = [f"{integer(first.at[c, 'n_layer'])}-layer {integer(first.at[c, 'd_model'])}-dim" for c in ckpts]
    return [f"{lab} ({c})" if labels.count(lab) > 1 else lab for lab, c in zip(labels, ckpts)]


def best_of_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Paper Fig. 9 protocol: per (shape, preset, format, set) the best accuracy over the checkpoints of that shape
    (its training seeds) and the decodings (``decoding``; rows without it count as ``greedy``).

    Each (checkpoint, decoding) candidate is pooled over evaluation seeds (:func:`pooled_accuracy`); the returned
    table has one row per cell with the winner's columns, ``checkpoint`` = the shape ("L-layer d-dim"),
    ``best`` = "winning checkpoint / decoding" and ``candidates`` = the number of (checkpoint, decoding) pairs.
    """
    table = pooled_accuracy(rows)
    table["shape"] = [f"{integer(a)}-layer {integer(b)}-dim" for a, b in zip(table["n_layer"], table["d_model"])]
    keys = ["shape", *PANEL_KEYS, "set"]
    table = table.sort_values(["accuracy", "checkpoint", "decoding"], ascending=[False, True, True], na_position="last")
    best = table.groupby(keys, sort=False, dropna=False).head(1).copy()
    sizes = table.groupby(keys, sort=False, dropna=False).size().rename("candidates").reset_index()
    best = best.merge(sizes, on=keys, how="left")
    best["best"] = best["checkpoint"].astype(str) + " / " + best["decoding"].astype(str)
    best["checkpoint"] = best["shape"]
    return best.reset_index(drop=True)


@styled
def fig9(results: pd.DataFrame, out_dir: Path, *, best_of: bool = True) -> list[Path]:
    """Paper Fig. 9: depth vs width: accuracy table, rows = model shapes by (n_layer, d_model), columns = sets.

    ``best_of`` (default, the paper's protocol): each cell is the best over the checkpoints of a shape (training
    seeds) and the decodings (greedy, beam-sample) it was evaluated with (:func:`best_of_table`); False: one row
    per checkpoint, greedy decoding.
    """
    rows, table = accuracy_table(results, "n_layer", "d_model", decoding=None if best_of else "greedy")
    if best_of:
        table = best_of_table(rows)
    panels = _panels(table)
    height = 1.6 + 0.35 * max(g["checkpoint"].nunique() for _, g in panels)
    width = 2.2 + 0.6 * max(g["set"].nunique() for _, g in panels)
    fig, axes = new_figure(len(panels), 1, width, height)
    for ax, (title, panel) in zip(axes[0], panels):
        ckpts, sets = checkpoint_order(panel), sorted_sets(panel["set"])
        matrix = np.vstack([_aligned(panel[panel["checkpoint"] == c], sets, "accuracy")[0] for c in ckpts])
        labels = ckpts if best_of else _shape_labels(panel, ckpts)
        image = heatmap(ax, matrix, sets, labels)
        ax.set(title=title, xlabel=SET_LABEL)
        ax.tick_params(axis="x", labelrotation=30)
    fig.colorbar(image, ax=list(axes.flat), label="accuracy (fraction)")
    if best_of:
        how = (
            "each cell is the best over the checkpoints of that shape (training seeds) and the decodings they were "
            "evaluated with (paper: 2 seeds x {beam 1, beam 4 with sampling}), each candidate's counts pooled over "
            "evaluation seeds"
        )
        notes = [
            f"{r['checkpoint']}, {r['set']} ({r['preset']}_{r['format']}): best of {r['candidates']}: {r['best']}"
            for _, r in table.iterrows()
        ]
    else:
        how = "one row per checkpoint, greedy decoding, counts pooled over evaluation seeds"
        notes = []
    text = caption(
        "Figure 9 (Physics of LMs 2.1, Fig. 9): depth vs width.",
        "generation accuracy (cell text in percent) per model shape (rows, sorted by number of layers then hidden "
        f"width, labelled 'L-layer d-dim') and evaluation set (columns), one panel per (preset, format); {how}.",
        ACCURACY_LABEL + "; cell text in percent",
        count_range(table["n"], "problems"),
        rows,
        notes,
    )
    return save_figure(fig, Path(out_dir) / "fig9", text)


# ---------------------------------------------------------------------------------------------- stability
STABILITY_COLUMNS = ("samples", "pass_at_n", "pass_ratio_at_n")


def pooled_stability(rows: pd.DataFrame) -> pd.DataFrame:
    """Pass@1 / Pass@N (Wilson CI on pooled counts) and PassRatio@N per (checkpoint, preset, format, set).

    PassRatio@N is the n-weighted mean over seeds; its interval is the row's bootstrap interval for one seed
    and the n-weighted mean of the seeds' bounds for several (wider than a pooled interval: conservative).
    """
    out = []
    for (ckpt, preset, fmt, name), g in rows.groupby(["checkpoint", *PANEL_KEYS, "set"], sort=False, dropna=False):
        cell = {"checkpoint": ckpt, "preset": preset, "format": fmt, "set": name, "n": int(g["n"].sum())}
        for metric in ("pass_at_1", "pass_at_n"):
            _, rate, low, high = pooled_rate(column(g, metric), g["n"])
            cell.update({metric: rate, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        for col in ("pass_ratio_at_n", "pass_ratio_ci_low", "pass_ratio_ci_high"):
            cell[col] = weighted_mean(column(g, col), g["n"])
        cell["samples"] = _distinct_numbers(g["samples"])
        cell["temperature"] = _distinct_numbers(column(g, "temperature"))
        out.append(cell)
    return pd.DataFrame(out)


def _distinct_numbers(values) -> list[float]:
    return sorted({float(v) for v in floats(values) if not np.isnan(v)})


@styled
def stability(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Xwin-Math Fig. 3 analogue: Pass@1, Pass@N and PassRatio@N per evaluation set with 95% intervals (rows of
    greedy evaluations: Pass@1 is the greedy accuracy; beam-sample rows are left out)."""
    rows = decoding_rows(rows_of(results, "accuracy", ACCURACY_COLUMNS))
    rows = rows[~np.isnan(floats(column(rows, "pass_at_n")))]
    if rows.empty:
        raise NoData("no sampled evaluations (pass_at_n is absent or NaN): evaluate with samples > 0")
    rows = rows_of(rows, "accuracy", STABILITY_COLUMNS)
    table = pooled_stability(rows)
    samples = sorted({s for cell in table["samples"] for s in cell})
    temps = sorted({t for cell in table["temperature"] for t in cell})
    n_label = f"{samples[0]:g}" if len(samples) == 1 else "N"
    metrics = [
        ("pass_at_1", "pass_at_1_ci_low", "pass_at_1_ci_high", "Pass@1 (greedy)"),
        ("pass_at_n", "pass_at_n_ci_low", "pass_at_n_ci_high", f"Pass@{n_label}"),
        ("pass_ratio_at_n", "pass_ratio_ci_low", "pass_ratio_ci_high", f"PassRatio@{n_label}"),
    ]
    panels = [
        (f"{ckpt} - iGSM-{preset}_{fmt}", g) for (ckpt, preset, fmt), g in table.groupby(["checkpoint", *PANEL_KEYS])
    ]
    fig, axes = grid(len(panels), width=panel_width(max(len(g) for _, g in panels), len(metrics)), height=3.0)
    for ax, (title, panel) in zip(axes, panels):
        sets = sorted_sets(panel["set"])
        series = [
            Series(label, CYCLE[i], *_aligned(panel, sets, v, lo, hi)) for i, (v, lo, hi, label) in enumerate(metrics)
        ]
        grouped_bars(ax, sets, series)
        ax.set(title=title, xlabel=SET_LABEL, ylabel=ACCURACY_AXIS, ylim=(0, 1.05))
    legend_below(fig, axes)
    text = caption(
        "Stability (Xwin-Math, Fig. 3 analogue): single-answer vs best-of-N accuracy.",
        f"Pass@1 (greedy decoding), Pass@N (share of problems with at least one correct sample among N) and "
        f"PassRatio@N (mean share of correct samples per problem) per evaluation set (x), one panel per checkpoint "
        f"and (preset, format); N = {', '.join(f'{n:g}' for n in samples)} samples at temperature "
        f"{', '.join(f'{t:g}' for t in temps) or 'unknown'}; whiskers: Wilson 95% (Pass@1, Pass@N), bootstrap 95% "
        "over problems (PassRatio@N).",
        ACCURACY_LABEL,
        count_range(table["n"], "problems"),
        rows,
    )
    return save_figure(fig, Path(out_dir) / "stability", text)


# ---------------------------------------------------------------------------------------------- step fit
def pooled_counts(rows: pd.DataFrame, table: str, by: str | list[str]) -> dict:
    """``{key: (values, n, correct)}``: the count tables ``{value: [n, correct]}`` of column ``table`` (a dict or
    its JSON) summed over the non-reask ``rows`` of each key of column(s) ``by`` (a tuple for several); NoData
    when no such row has one."""
    rows = rows[floats(column(rows, "reask")) != 1]
    keys = zip(*(rows[c] for c in by)) if isinstance(by, list) else rows[by]
    counts: dict = {}
    for key, raw in zip(keys, column(rows, table)):
        cells = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(cells, dict):
            continue
        bins = counts.setdefault(key, {})
        for value, (n, k) in cells.items():
            cell = bins.setdefault(int(value), [0, 0])
            cell[0] += int(n)
            cell[1] += int(k)
    if not counts:
        raise NoData(f"no non-reask accuracy rows with {table} counts")
    out = {}
    for key, bins in counts.items():
        values = np.array(sorted(bins), dtype=int)
        out[key] = (values, np.array([bins[v][0] for v in values]), np.array([bins[v][1] for v in values]))
    return out


def pooled_by_op(rows: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per checkpoint, ``(ops, n, correct)`` summed from ``accuracy_by_op`` over its non-reask rows."""
    return pooled_counts(rows, "accuracy_by_op", "checkpoint")


def wilson_points(
    ax, x: np.ndarray, n: np.ndarray, k: np.ndarray, color: str, label: str | None = None, fmt: str = "o", **style
) -> None:
    """Accuracy ``k / n`` at ``x`` with Wilson 95% whiskers (``style``: more ``errorbar`` settings)."""
    acc = k / n
    bounds = np.array([wilson_interval(ki, ni) for ki, ni in zip(k, n)])
    ax.errorbar(
        x,
        acc,
        yerr=np.clip([acc - bounds[:, 0], bounds[:, 1] - acc], 0, None),
        fmt=fmt,
        ms=3,
        color=color,
        capsize=2,
        label=label,
        **style,
    )


def step_fits(
    results: pd.DataFrame, *, weighting: str = "counts", first_bins: int | None = None
) -> dict[str, tuple[tuple[np.ndarray, np.ndarray, np.ndarray], StepFit]]:
    """Per checkpoint: the pooled ``(ops, n, correct)`` and the single-step fit on them (see ``fit_step_accuracy``)."""
    rows = rows_of(results, "accuracy", ("checkpoint", "accuracy_by_op"))
    return {
        ckpt: (bins, fit_step_accuracy(*bins, weighting=weighting, first_bins=first_bins))
        for ckpt, bins in pooled_by_op(rows).items()
    }


def _fit_line(ckpt: str, fit: StepFit) -> str:
    over = f"the first {fit.first_bins} op bins" if fit.first_bins else "all op bins"
    how = "weighted by bin counts" if fit.weighting == "counts" else "unweighted over bin means"
    interval = f"95% profile CI {fit.ci_low:.4f}-{fit.ci_high:.4f}" if fit.weighting == "counts" else "no interval"
    return (
        f"{ckpt} ({how}, {over}): step accuracy {fit.step_accuracy:.4f} ({interval}), R^2 {fit.r2:.3f}, "
        f"chi2 {fit.chi2:.2f} on {fit.dof} dof (p = {fit.p_value:.3g}), {fit.n} problems in "
        f"{sum(b['fitted'] for b in fit.bins)} op bins."
    )


def _draw_fit(ax, ops: np.ndarray, fit: StepFit, color: str, linestyle: str, label: str) -> None:
    grid_ops = np.linspace(ops.min(), ops.max(), 100)
    ax.plot(grid_ops, fit.step_accuracy**grid_ops, color=color, linestyle=linestyle, label=label)


@styled
def step_fit(
    results: pd.DataFrame, out_dir: Path, *, weighting: str = "counts", first_bins: int = FIRST_BINS
) -> list[Path]:
    """Xwin-Math Fig. 4 analogue: accuracy against op with the fitted single-step curves ``step_accuracy ** op``.

    Solid: the fit over all op bins; dashed (for a checkpoint with more than ``first_bins`` bins): the fit over
    the first ``first_bins`` bins, as the paper's dashed curve (its long bins fall below it when long problems
    were rare in training). ``weighting`` is ``counts`` (binomial likelihood on the pooled counts) or ``bins``
    (least squares over the bin means).
    """
    fits = step_fits(results, weighting=weighting)
    short = step_fits(results, weighting=weighting, first_bins=first_bins)
    rows = results[(results["kind"] == "accuracy") & results["checkpoint"].isin(list(fits))]
    colors = checkpoint_colors(results)
    fig, axes = new_figure(1, 1, 4.8, 3.4)
    ax = axes[0, 0]
    notes = []
    for ckpt in checkpoint_order(rows):
        (ops, n, k), fit = fits[ckpt]
        wilson_points(ax, ops, n, k, colors[ckpt], f"{ckpt} (measured)")
        _draw_fit(ax, ops, fit, colors[ckpt], "-", f"{ckpt}: {fit.step_accuracy:.4f}^op")
        notes.append(_fit_line(ckpt, fit))
        if len(ops) > first_bins:
            part = short[ckpt][1]
            _draw_fit(
                ax, ops, part, colors[ckpt], "--", f"{ckpt}, first {first_bins} bins: {part.step_accuracy:.4f}^op"
            )
            notes.append(_fit_line(ckpt, part))
    ax.set(
        xlabel="op (number of operations)",
        ylabel=ACCURACY_AXIS,
        ylim=(0, 1.05),
        title="single-step model: accuracy = step_accuracy^op",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best")
    how = (
        "binomial maximum likelihood on those pooled counts (weighted by bin counts)"
        if weighting == "counts"
        else "least squares over the per-bin accuracies (every bin weighs the same)"
    )
    text = caption(
        "Step fit (Xwin-Math eq. 3 / Fig. 4 analogue): accuracy against the number of operations.",
        "points = accuracy per op bin with Wilson 95% intervals, counts pooled per checkpoint over its non-reask "
        f"evaluation sets and seeds; solid curves = step_accuracy ** op fitted over all op bins, dashed curves = the "
        f"fit over the first {first_bins} op bins only (drawn when a checkpoint has more bins); step_accuracy by "
        f"{how} (probekit.evaluate.metrics.fit_step_accuracy).",
        ACCURACY_LABEL + "; x: op (number of operations)",
        count_range(np.concatenate([bins[1] for bins, _ in fits.values()]), "problems per op bin"),
        rows,
        notes,
    )
    return save_figure(fig, Path(out_dir) / "step_fit", text)


# ---------------------------------------------------------------------------------------------- by size
@styled
def by_size(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy against the problem's size (its number of instance parameters): one panel per checkpoint, one
    line per non-reask evaluation set, Wilson 95% intervals; counts pooled over seeds from ``accuracy_by_ip``
    (rows of ``probekit eval`` since it records them)."""
    rows = rows_of(results, "accuracy", ("checkpoint", "set"))
    if column(rows, "accuracy_by_ip").isna().all():
        raise NoData(
            "the 'accuracy' rows have no accuracy_by_ip counts (rows written before probekit eval counted problems "
            "by size: delete their job files under the results store's jobs/ and run the sweep again)"
        )
    keys = ["checkpoint", "preset", "format", "set"]
    rows = rows.assign(**{c: column(rows, c).fillna("-") for c in ("preset", "format")})
    pooled = pooled_counts(rows, "accuracy_by_ip", keys)
    rows = rows[[key in pooled for key in zip(*(rows[c] for c in keys))]]
    ckpts = checkpoint_order(rows)
    families = sorted({key[1:3] for key in pooled})
    lines = [(family, name) for family in families for name in sorted_sets(rows["set"])]
    colors = dict(zip(lines, CYCLE * (len(lines) // len(CYCLE) + 1)))
    fig, axes = grid(len(ckpts), ncols=min(3, len(ckpts)), width=4.2, height=3.2)
    notes = []
    for ax, ckpt in zip(axes, ckpts):
        for family, name in lines:
            if (ckpt, *family, name) not in pooled:
                continue
            ips, n, k = pooled[(ckpt, *family, name)]
            label = name if len(families) == 1 else f"{name} ({' '.join(family)})"
            wilson_points(ax, ips, n, k, colors[(family, name)], label, fmt="o-")
            cells = ", ".join(f"{ip}: {ki}/{ni}" for ip, ni, ki in zip(ips, n, k))
            notes.append(f"{ckpt}, {label}: correct/n by instance parameters {cells}.")
        ax.set(xlabel="instance parameters in the problem", ylabel=ACCURACY_AXIS, ylim=(0, 1.05), title=ckpt)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_below(fig, axes)
    text = caption(
        "Accuracy by problem size: full-solution accuracy against the problem's number of instance parameters.",
        "points = accuracy of the problems with that many instance parameters, Wilson 95% intervals, one line per "
        "non-reask evaluation set (an op=K set holds the op fixed; per preset and format when there are several), one "
        "panel per checkpoint; counts pooled over evaluation seeds (accuracy_by_ip of probekit eval's rows).",
        ACCURACY_LABEL + "; x: instance parameters of the problem",
        count_range(np.concatenate([n for _, n, _ in pooled.values()]), "problems per point"),
        rows,
        notes,
    )
    return save_figure(fig, Path(out_dir) / "by_size", text)
