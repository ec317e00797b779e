"""Activation patching over minimal pairs (issue 17) from ``kind == "patch"`` rows (``probekit patch --out``).

One heat map per (checkpoint, pair kind, component, direction): y = the hook point (``embed`` at the bottom,
then the blocks, ``ln_final`` on top), x = the position role patched (changed statement, other statements,
question, solution so far, all positions), colour and cell text = the mean ``restored`` over pairs (the share
of the clean-vs-counterfactual logit difference the patch restores, :mod:`probekit.causal.patching`; colours
are clipped to [0, 1], the text is the mean itself). Only role rows are drawn (rows of ``--positions`` runs,
skipped pairs and undefined values are left out). The caption (``.txt``) lists every cell with its 95%
bootstrap interval over pairs and its number of pairs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from probekit.causal.roles import ROLE_CHOICES
from probekit.figures.registry import NoData, caption, count_range, floats, grid
from probekit.figures.style import save_figure, styled

PATCH_COLUMNS = ("pair_kind", "point", "role", "restored")
PANEL_KEYS = ["checkpoint", "pair_kind", "component", "direction"]
_KIND_ORDER = {"value": 0, "dependency": 1, "query": 2}
_COMPONENT_ORDER = {"resid_post": 0, "attn_out": 1, "mlp_out": 2}


def _patch_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The usable patch rows: ``kind == "patch"`` (all rows when there is no ``kind`` column), role mode,
    not skipped, with a defined ``restored``."""
    rows = results if "kind" not in results.columns else results[results["kind"] == "patch"]
    if rows.empty:
        raise NoData("no 'patch' rows in the results store")
    missing = [c for c in PATCH_COLUMNS if c not in rows.columns or rows[c].isna().all()]
    if missing:
        raise NoData(f"the 'patch' rows have no values in column(s) {', '.join(missing)}")
    if "skipped" in rows:
        rows = rows[~rows["skipped"].fillna(False).astype(bool)]
    if "position" in rows:
        rows = rows[rows["position"].isna()]
    rows = rows.assign(restored=floats(rows["restored"]))
    rows = rows[~np.isnan(rows["restored"].to_numpy())]
    if rows.empty:
        raise NoData("the 'patch' rows have no defined restored values (role mode)")
    defaults = {"checkpoint": "model", "component": "resid_post", "direction": "denoise"}
    for col, default in defaults.items():
        rows = rows.assign(**{col: rows[col].fillna(default) if col in rows else default})
    if "depth" not in rows:
        rows = rows.assign(depth=rows["point"].map(_depth))
    return rows


def _depth(point: str) -> float:
    if point == "embed.hook_out":
        return -1.0
    if point == "ln_final.hook_out":
        return math.inf
    try:
        return float(str(point).split(".")[1])
    except (IndexError, ValueError):
        return math.nan


def _label(point: str) -> str:
    if point == "embed.hook_out":
        return "embed"
    if point == "ln_final.hook_out":
        return "ln_final"
    parts = str(point).split(".")
    return parts[1] if len(parts) == 3 else str(point)


def patch_table(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (checkpoint, pair kind, component, direction, point, role): ``restored`` (mean over pairs),
    ``ci_low`` / ``ci_high`` (95% bootstrap over pairs), ``n_pairs``, ``depth`` (for ordering): the cells of
    :func:`probekit.causal.patching.summarize` on the usable rows."""
    from probekit.causal.patching import summarize

    rows = _patch_rows(results)
    if "pair" not in rows:
        rows = rows.assign(pair=range(len(rows)))
    table = pd.DataFrame(summarize(rows.to_dict("records"), n_boot=n_boot, seed=seed))
    table = table.assign(component=table["component"].fillna("resid_post"), depth=floats(table["depth"]))
    missing = table["depth"].isna()
    return table.assign(depth=table["depth"].where(~missing, table["point"].map(_depth)))


def _matrix(panel: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """Restored matrix (points bottom-up x roles) of one panel, with the role labels and the point labels."""
    roles = [r for r in ROLE_CHOICES if r in set(panel["role"])] + sorted(set(panel["role"]) - set(ROLE_CHOICES))
    points = panel.drop_duplicates("point").sort_values("depth")["point"].tolist()
    pivot = panel.pivot(index="point", columns="role", values="restored").reindex(index=points, columns=roles)
    return pivot.to_numpy(dtype=float), roles, [_label(p) for p in points]


def _draw(ax, matrix: np.ndarray, xlabels, ylabels):
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(xlabels)), [str(x).replace("_", " ") for x in xlabels], rotation=30, ha="right")
    ax.set_yticks(range(len(ylabels)), [str(y) for y in ylabels])
    ax.grid(False)
    size = 7 if matrix.size <= 60 else 6
    for (i, j), value in np.ndenumerate(matrix):
        if not math.isnan(value):
            text = f"{value:.2f}".replace("-0.00", "0.00")
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color="black" if value > 0.6 else "white")
    return image


def _interval_lines(table: pd.DataFrame) -> list[str]:
    lines = ["Cells (mean restored [95% bootstrap interval over pairs], n pairs):"]
    for key, panel in _panels(table):
        lines.append(f"  {key.replace(chr(10), ' / ')}:")
        order = panel.assign(_role=panel["role"].map(lambda r: ROLE_CHOICES.index(r) if r in ROLE_CHOICES else 99))
        for r in order.sort_values(["depth", "_role"]).itertuples():
            interval = f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
            lines.append(f"    {_label(r.point):>8} {r.role:<16} {r.restored:+.3f} {interval} n={r.n_pairs}")
    return lines


def _panels(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    groups = sorted(
        table.groupby(PANEL_KEYS, sort=False),
        key=lambda kv: (
            str(kv[0][0]),
            _KIND_ORDER.get(kv[0][1], 9),
            str(kv[0][1]),
            _COMPONENT_ORDER.get(kv[0][2], 9),
            str(kv[0][3]),
        ),
    )
    return [(f"{kind} pairs, {comp}, {direction}\n{ck}", g) for (ck, kind, comp, direction), g in groups]


@styled
def patch_heatmap(results: pd.DataFrame, out_dir: Path, *, n_boot: int = 1000) -> list[Path]:
    """Activation patching: mean restored fraction by hook point (y) and position role (x), one panel per
    checkpoint, pair kind, component and direction; the 95% intervals over pairs are in the caption file."""
    table = patch_table(results, n_boot=n_boot)
    rows = _patch_rows(results)
    panels = _panels(table)
    n_points = max(int(g["point"].nunique()) for _, g in panels)
    fig, axes = grid(len(panels), ncols=3, width=3.8, height=1.0 + 0.32 * n_points)
    image = None
    for ax, (title, panel) in zip(axes, panels):
        matrix, roles, points = _matrix(panel)
        image = _draw(ax, matrix, roles, points)
        n = panel["n_pairs"]
        n_text = f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())}-{int(n.max())}"
        ax.set_title(f"{title}\n{n_text} pairs", fontsize=8)
        ax.set(xlabel="positions patched (role)", ylabel="hook point")
    if image is not None:
        fig.colorbar(image, ax=axes, label="restored (colour clipped to [0, 1])")
    directions = sorted(set(table["direction"]))
    text = caption(
        "Activation patching over minimal pairs (issue 17).",
        "mean over pairs of restored = (LD_patched - LD_counterfactual) / (LD_clean - LD_counterfactual), LD the "
        "logit difference (clean token - counterfactual token) at the first solution token where the clean and "
        "counterfactual reference solutions differ, teacher-forced on the shared solution prefix; the activation "
        "at the hook point (y) is copied at every position of the role (x) "
        + (
            "from the clean run into the counterfactual run (denoise: 1 = clean behaviour restored, 0 = no effect)"
            if directions == ["denoise"]
            else "(denoise: clean into counterfactual, 1 = restored; noise: counterfactual into clean, 1 = no effect)"
        )
        + "; one panel per checkpoint, pair kind, component and direction. Roles: changed = the statement or "
        "question holding the change; other_statements; question; solution = the solution prefix and separators; "
        "all = every position. Pairs whose inputs differ in length and undefined values (|LD_clean - "
        "LD_counterfactual| < 1e-4) are left out.",
        "fraction of the logit difference restored (cell text; colours clipped to [0, 1])",
        count_range(table["n_pairs"], "pairs"),
        rows,
        _interval_lines(table),
    )
    return save_figure(fig, Path(out_dir) / "patch_heatmap", text)
