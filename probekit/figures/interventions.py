"""Intervention figure from ``kind == "intervene"`` rows (``probekit intervene``, :mod:`probekit.causal.interventions`).

:func:`intervention_effects`: one panel per metric (the probe's own accuracy after the intervention, full-solution
accuracy, unnecessary parameters written per solution, first-error position of the wrong solutions, and the
paired changes of accuracy and unnecessary parameters from the baseline on the same problems, whose intervals are
the bootstrap over problems of the per-problem differences). Along x, one
group per intervention setting (checkpoint, task, read point, mode, strength / ablation constant, positions): the
probe direction as a point with its 95% interval, the random directions of the same setting as a strip of points
with a box (quartiles, whiskers to min / max), and the no-intervention baseline as a dashed line across the group
(with its interval as a grey band). The probe direction matters more than any direction only where its point lies
outside the random strip, on the far side from the baseline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from probekit.figures.registry import NoData, caption, column, count_range, floats, grid, legend_below, rows_of
from probekit.figures.style import COLORS, save_figure, styled
from probekit.probe.readout import readout_text

#: metric -> (its interval columns, axis label)
PANELS = {
    "probe_accuracy": (("probe_ci_low", "probe_ci_high"), "probe accuracy (fraction)"),
    "accuracy": (("ci_low", "ci_high"), "full-solution accuracy (fraction)"),
    "unnecessary_per_solution": (("unnecessary_ci_low", "unnecessary_ci_high"), "unnecessary params / solution"),
    "first_error_position": (
        ("first_error_position_ci_low", "first_error_position_ci_high"),
        "first-error position (fraction)",
    ),
    "delta_accuracy": (("delta_accuracy_ci_low", "delta_accuracy_ci_high"), "change in accuracy (paired)"),
    "delta_unnecessary": (
        ("delta_unnecessary_ci_low", "delta_unnecessary_ci_high"),
        "change in unnecessary / solution (paired)",
    ),
}
SETTING = ("checkpoint", "task", "hook", "mode", "strength", "ablate_value", "positions")
"""The columns that make one intervention setting (one x group)."""


def _settings(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(label, rows)`` per intervention setting, in first-appearance order (the checkpoint is named only when
    the rows hold several)."""
    rows = rows.reset_index(drop=True)
    keys = [k for k in SETTING if k in rows.columns]
    filled = rows.assign(**{k: rows[k].astype(object).where(rows[k].notna(), "-") for k in keys})
    several = "checkpoint" in rows and rows["checkpoint"].nunique() > 1
    out = []
    for values, group in filled.groupby(keys, sort=False):
        setting = dict(zip(keys, values))
        what = (
            f"ablate ({setting.get('ablate_value', '-')})"
            if setting.get("mode") == "ablate"
            else f"steer {setting.get('strength', '-')}"
        )
        if setting.get("positions", "all") not in ("all", "-"):
            what += f", {setting['positions']} only"
        hook = str(setting.get("hook", "-")).replace(".hook_resid_post", "").replace(".hook_out", "")
        label = f"{setting.get('task', '-')} @ {hook}\n{what}"
        if several:
            label = f"{Path(str(setting.get('checkpoint', '-'))).name}\n{label}"
        out.append((label, rows.loc[group.index]))
    return out


def _panel(ax, settings, metric: str) -> None:
    (low_col, high_col), ylabel = PANELS[metric]
    rng = np.random.default_rng(0)
    for x, (_, rows) in enumerate(settings):
        none = rows[rows["direction"] == "none"]
        probe = rows[rows["direction"] == "probe"]
        random = rows[rows["direction"] == "random"]
        if len(none):
            base = float(floats(none[metric])[0])
            lo, hi = float(floats(column(none, low_col))[0]), float(floats(column(none, high_col))[0])
            if not np.isnan(lo) and not np.isnan(hi):
                ax.fill_between([x - 0.42, x + 0.42], lo, hi, color=COLORS["random-init"], alpha=0.2, linewidth=0)
            if not np.isnan(base):
                ax.hlines(
                    base,
                    x - 0.42,
                    x + 0.42,
                    colors=COLORS["majority"],
                    linestyles="--",
                    linewidth=1.2,
                    label="no intervention",
                    zorder=4,
                )
        values = floats(random[metric])
        values = values[~np.isnan(values)]
        if len(values):
            ax.boxplot(
                values,
                positions=[x + 0.18],
                widths=0.22,
                whis=(0, 100),
                showfliers=False,
                medianprops={"color": COLORS["random-init"]},
                manage_ticks=False,
            )
            jitter = rng.uniform(-0.07, 0.07, len(values))
            ax.scatter(
                x + 0.18 + jitter,
                values,
                s=10,
                color=COLORS["random-init"],
                zorder=3,
                label="random directions",
            )
        if len(probe):
            value = float(floats(probe[metric])[0])
            lo, hi = float(floats(column(probe, low_col))[0]), float(floats(column(probe, high_col))[0])
            if not np.isnan(value):
                yerr = None if np.isnan(lo) or np.isnan(hi) else [[max(value - lo, 0)], [max(hi - value, 0)]]
                ax.errorbar(
                    [x - 0.18],
                    [value],
                    yerr=yerr,
                    fmt="o",
                    color=COLORS["pretrained"],
                    capsize=3,
                    markersize=5,
                    zorder=5,
                    label="probe direction (95% CI)",
                )
    ax.set_xticks(range(len(settings)), [label for label, _ in settings], fontsize=7)
    ax.set_xlim(-0.6, len(settings) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(metric.replace("_", " "))


@styled
def intervention_effects(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    checkpoint: str | None = None,
    task: str | None = None,
    mode: str | None = None,
) -> list[Path]:
    """The probe direction vs random directions vs no intervention, per metric (module doc); writes
    ``out_dir/intervention_effects.{png,pdf,txt}``. ``checkpoint``, ``task`` and ``mode`` keep only the rows
    with that value. Raises :class:`~probekit.figures.registry.NoData` without ``intervene`` rows."""
    rows = rows_of(results, "intervene", ("direction", "accuracy"))
    for name, value in (("checkpoint", checkpoint), ("task", task), ("mode", mode)):
        if value is not None:
            rows = rows[rows[name] == value]
            if rows.empty:
                raise NoData(f"no intervene rows with {name} = {value!r}")
    rows = rows[rows["direction"].isin(["none", "probe", "random"])]
    if rows.empty or not (rows["direction"] == "probe").any():
        raise NoData("no intervene rows for a probe direction")
    settings = _settings(rows)
    metrics = [m for m in PANELS if m in rows.columns and rows[m].notna().any()]
    fig, axes = grid(len(metrics), ncols=2, width=max(3.6, 1.6 * len(settings) + 1.0), height=3.0)
    for ax, metric in zip(axes, metrics):
        _panel(ax, settings, metric)
    legend_below(fig, axes)
    hooks = "; ".join(readout_text(h) for h in sorted(set(rows["hook"].dropna()))) if "hook" in rows else "unknown"
    n_random = int((rows["direction"] == "random").sum())
    checkpoints = (
        ", ".join(sorted({Path(str(c)).name for c in rows["checkpoint"].dropna()})) if "checkpoint" in rows else "-"
    )
    text = caption(
        "Interventions along probe directions (probekit intervene, issue 17).",
        "per metric, the probe direction (point, 95% interval: bootstrap over test problems for the probe accuracy, "
        "Wilson for full-solution accuracy, bootstrap over solutions otherwise; the change panels: paired bootstrap over "
        "problems of the per-problem difference from the baseline) beside random unit directions "
        "under the same intervention (points and box: quartiles, whiskers min-max) and the no-intervention "
        "baseline (dashed line, its interval as a grey band); x = intervention setting.",
        "fractions; unnecessary parameters per generated solution",
        count_range(column(rows, "n"), "problems"),
        rows,
        [
            f"Checkpoint(s): {checkpoints}. Read / edited point(s): {hooks}.",
            f"{n_random} random-direction rows in all; their count per setting is the number of points.",
        ],
    )
    return save_figure(fig, Path(out_dir) / "intervention_effects", text)
