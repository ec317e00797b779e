"""Layer-wise nece probing from ``kind == "depth"`` rows: fig10 (Physics of LMs 2.1, Figs. 10 / 14).

Necessary parameters (nece = true) binned by their graph distance t to the query; the nece probe's accuracy
at every layer. One heat map per (checkpoint, model, test set): x = distance, y = layer (0 at the bottom),
colour = accuracy. Per (checkpoint, model) the rank is the option ``rank`` or the largest present; rows left
per cell (seeds) are pooled by summing counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from probekit.figures.registry import (
    caption,
    checkpoint_order,
    count_range,
    grid,
    heatmap,
    integer,
    last_per_group,
    proportion,
    rows_of,
    set_label,
    set_sort_key,
)
from probekit.figures.style import save_figure

DEPTH_COLUMNS = ("checkpoint", "layer", "distance", "n", "n_correct")
PANEL_KEYS = ["checkpoint", "model", "test_set"]


def depth_table(results: pd.DataFrame, rank: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The selected depth rows and one pooled row per (checkpoint, model, test_set, layer, distance)."""
    rows = rows_of(results, "depth", DEPTH_COLUMNS)
    for col, default in (("model", "pretrained"), ("test_set", "id")):
        rows = rows.assign(**{col: rows[col].fillna(default) if col in rows else default})
    if "rank" in rows and rows["rank"].notna().any():
        rows = last_per_group(rows, ["checkpoint", "model"], "rank", rank)
    pooled = rows.groupby([*PANEL_KEYS, "layer", "distance"], sort=True)[["n", "n_correct"]].sum().reset_index()
    cells = [proportion(k, n) for k, n in zip(pooled["n_correct"], pooled["n"])]
    pooled["accuracy"], pooled["ci_low"], pooled["ci_high"] = (list(v) for v in zip(*cells))
    shapes = rows.drop_duplicates("checkpoint")[["checkpoint", *(c for c in ("n_layer", "d_model") if c in rows)]]
    return rows, pooled.merge(shapes, on="checkpoint", how="left")


def _matrix(panel: pd.DataFrame) -> tuple[np.ndarray, list[int], list[int]]:
    """Accuracy matrix (layers x distances) of one panel, with its layer and distance labels."""
    pivot = panel.pivot(index="layer", columns="distance", values="accuracy").sort_index().sort_index(axis=1)
    return pivot.to_numpy(dtype=float), [int(v) for v in pivot.index], [int(v) for v in pivot.columns]


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


def fig10(results: pd.DataFrame, out_dir: Path, *, rank: int | None = None) -> list[Path]:
    """Paper Fig. 10: nece probe accuracy on necessary parameters by layer (y) and distance to the query (x)."""
    rows, table = depth_table(results, rank)
    panels = _panels(table)
    fig, axes = grid(
        len(panels),
        ncols=4,
        width=max(2.8, 1.4 + 0.4 * table["distance"].nunique()),
        height=1.2 + 0.3 * table["layer"].nunique(),
    )
    for ax, (title, panel) in zip(axes, panels):
        matrix, layers, distances = _matrix(panel)
        image = heatmap(ax, matrix, distances, layers, lower_origin=True)
        ax.set(title=title, xlabel="distance t to the query (edges)", ylabel="layer (block index)")
    fig.colorbar(image, ax=axes, label="accuracy (fraction)")
    picks = rows.drop_duplicates(["checkpoint", "model"])
    text = caption(
        "Figure 10 (Physics of LMs 2.1, Figs. 10 / 14): layer-by-layer backward planning.",
        "accuracy of the nece probe on necessary parameters (true label: necessary), binned by the parameter's "
        "distance t to the query in the dependency graph (x) and the layer probed (y), one panel per checkpoint, "
        "model and test set; cell text in percent; counts pooled over seeds.",
        "nece probe accuracy (fraction of necessary parameters); cell text in percent",
        count_range(table["n"], "parameters"),
        rows,
        [
            "Probe rank: "
            + "; ".join(f"{r.checkpoint} {r.model}: {integer(getattr(r, 'rank', None))}" for r in picks.itertuples())
            + "."
        ],
    )
    return save_figure(fig, Path(out_dir) / "fig10", text)
