"""Layer-wise nece probing from ``kind == "depth"`` rows: fig10 (Physics of LMs 2.1, Figs. 10 / 14).

Necessary parameters (nece = true) binned by their graph distance t to the query; the nece probe's accuracy
at every layer. One heat map per (checkpoint, model, test set): x = distance, y = layer (0 at the bottom),
colour = accuracy; when the rows carry it, a last column ``false`` shows each layer's accuracy on nece = false
parameters, so a probe that calls everything necessary shows up (the caption adds the training prior, the
share of nece = true among the training labels). Per (checkpoint, model) the rank is the option ``rank`` or the
largest present; the caption names the probe (``v-probe`` for rank > 0, the paper's; ``linear`` for rank 0) and
the hooks read. Rows left per cell (probe seeds) are averaged (:func:`~.registry.seed_mean`): the mean accuracy
and the mean of the rows' 95% intervals (the bootstrap over test problems of each job, Wilson for rows without).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from probekit.figures.registry import (
    caption,
    checkpoint_order,
    column,
    count_range,
    grid,
    heatmap,
    integer,
    last_per_group,
    rows_of,
    seed_mean,
    set_label,
    set_sort_key,
)
from probekit.figures.style import save_figure, styled
from probekit.probe.readout import readout_text

DEPTH_COLUMNS = ("checkpoint", "layer", "distance", "n", "n_correct")
PANEL_KEYS = ["checkpoint", "model", "test_set"]
NEGATIVE = "false"
"""The x label of the column of accuracies on nece = false parameters."""


def _with_defaults(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``model`` / ``test_set`` / ``accuracy`` / ``probe`` filled where older stores lack them."""
    for col, default in (("model", "pretrained"), ("test_set", "id")):
        rows = rows.assign(**{col: rows[col].fillna(default) if col in rows else default})
    accuracy = column(rows, "accuracy").fillna(rows["n_correct"] / rows["n"].where(rows["n"] > 0))
    kind = column(rows, "rank").map(lambda r: np.nan if pd.isna(r) else ("v-probe" if r > 0 else "linear"))
    probe = rows["probe"].fillna(kind) if "probe" in rows else kind
    return rows.assign(accuracy=accuracy, probe=probe)


def _cell(g: pd.DataFrame, prefix: str = "", suffix: str = "") -> dict:
    """Mean over the rows (seeds) of one cell of an accuracy and its interval (:func:`seed_mean`)."""
    n, acc, low, high = seed_mean(
        column(g, f"accuracy{suffix}"),
        column(g, f"ci_low{suffix}"),
        column(g, f"ci_high{suffix}"),
        column(g, f"n{suffix}"),
    )
    return {f"{prefix}n": n, f"{prefix}accuracy": acc, f"{prefix}ci_low": low, f"{prefix}ci_high": high}


def depth_table(results: pd.DataFrame, rank: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The selected depth rows and one row per (checkpoint, model, test_set, layer, distance): the accuracy on
    the necessary parameters at that distance and, per layer, on nece = false parameters (``neg_`` columns) and
    the training prior, each averaged over seeds."""
    rows = _with_defaults(rows_of(results, "depth", DEPTH_COLUMNS))
    if "rank" in rows and rows["rank"].notna().any():
        rows = last_per_group(rows, ["checkpoint", "model"], "rank", rank)
    cells = []
    for key, g in rows.groupby([*PANEL_KEYS, "layer", "distance"], sort=True):
        cell = dict(zip([*PANEL_KEYS, "layer", "distance"], key))
        cell.update(_cell(g), **_cell(g, "neg_", "_neg"))
        cell["train_prior"] = float(column(g, "train_prior").mean())
        cells.append(cell)
    pooled = pd.DataFrame(cells)
    shapes = rows.drop_duplicates("checkpoint")[["checkpoint", *(c for c in ("n_layer", "d_model") if c in rows)]]
    return rows, pooled.merge(shapes, on="checkpoint", how="left")


def _matrix(panel: pd.DataFrame) -> tuple[np.ndarray, list, list[int]]:
    """Accuracy matrix (layers x distances, then the nece = false column when present) of one panel, with its
    x labels and layer labels."""
    pivot = panel.pivot(index="layer", columns="distance", values="accuracy").sort_index().sort_index(axis=1)
    xlabels: list = [int(v) for v in pivot.columns]
    if panel["neg_accuracy"].notna().any():
        pivot[NEGATIVE] = panel.groupby("layer")["neg_accuracy"].mean().reindex(pivot.index)
        xlabels.append(NEGATIVE)
    return pivot.to_numpy(dtype=float), xlabels, [int(v) for v in pivot.index]


def _title(checkpoint: str, model: str, test_set: str, several_sets: bool) -> str:
    """The checkpoint, then (on a second line) the model when random-init and the test set when there are several."""
    extra = [model] if model != "pretrained" else []
    extra += [set_label(test_set)] if several_sets else []
    return "\n".join([checkpoint, ", ".join(extra)]) if extra else checkpoint


def _panels(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(title, rows)`` per (checkpoint, model, test set): checkpoints in shape order, pretrained first."""
    order = {c: i for i, c in enumerate(checkpoint_order(table))}
    groups = sorted(
        table.groupby(PANEL_KEYS), key=lambda kv: (order[kv[0][0]], kv[0][1] != "pretrained", set_sort_key(kv[0][2]))
    )
    several_sets = table["test_set"].nunique() > 1
    return [(_title(checkpoint, model, test_set, several_sets), g) for (checkpoint, model, test_set), g in groups]


def _hooks_text(rows: pd.DataFrame) -> str:
    """The hooks read, in words: the first and the last (by layer) when there are several."""
    if "hook" not in rows or rows["hook"].isna().all():
        return "not recorded"
    hooks = rows.drop_duplicates("hook").sort_values("layer", key=lambda s: pd.to_numeric(s, errors="coerce"))
    names = [readout_text(h) for h in hooks["hook"]]
    return names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]}"


def _notes(rows: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Caption lines: the probe (kind and rank) per checkpoint and model, the hooks, the training prior."""
    picks = rows.drop_duplicates(["checkpoint", "model"])
    probes = "; ".join(
        f"{r.checkpoint} {r.model}: {r.probe} rank {integer(getattr(r, 'rank', None))}"
        + (" (a linear probe on frozen features, not the paper's rank-8 V-probe)" if r.probe == "linear" else "")
        for r in picks.itertuples()
    )
    prior = table.drop_duplicates([*PANEL_KEYS])["train_prior"].dropna()
    lines = [f"Probe: {probes}.", f"Read-out per layer: {_hooks_text(rows)}."]
    if len(prior):
        lines.append(
            f"Training prior P(nece = true): {prior.min():.2f}-{prior.max():.2f} (an all-true guess scores 1 on "
            f"every distance and 0 in the '{NEGATIVE}' column)."
        )
    return lines


@styled
def fig10(results: pd.DataFrame, out_dir: Path, *, rank: int | None = None) -> list[Path]:
    """Paper Fig. 10: nece probe accuracy on necessary parameters by layer (y) and distance to the query (x), beside
    the accuracy on nece = false parameters."""
    rows, table = depth_table(results, rank)
    panels = _panels(table)
    fig, axes = grid(
        len(panels),
        ncols=4,
        width=max(2.8, 1.4 + 0.4 * (table["distance"].nunique() + 1)),
        height=1.2 + 0.3 * table["layer"].nunique(),
    )
    for ax, (title, panel) in zip(axes, panels):
        matrix, xlabels, layers = _matrix(panel)
        image = heatmap(ax, matrix, xlabels, layers, lower_origin=True)
        ax.set(title=title, xlabel=f"distance to the query (edges)\n{NEGATIVE}: nece = false", ylabel="layer")
    fig.colorbar(image, ax=axes, label="accuracy (fraction)")
    text = caption(
        "Figure 10 (Physics of LMs 2.1, Figs. 10 / 14): layer-by-layer backward planning.",
        "accuracy of the nece probe on necessary parameters (true label: necessary), binned by the parameter's "
        "distance t to the query in the dependency graph (x) and the layer probed (y), and in the last column "
        f"('{NEGATIVE}') its accuracy on unnecessary parameters (true label: not necessary), one panel per "
        "checkpoint, model and test set; cell text in percent; mean over probe seeds (the rows also carry 95% "
        "intervals of the bootstrap over test problems).",
        "nece probe accuracy (fraction of parameters); cell text in percent",
        count_range(table["n"], "parameters"),
        rows,
        _notes(rows, table),
    )
    return save_figure(fig, Path(out_dir) / "fig10", text)
