"""Tables shared by the data-scaling figures (:mod:`.scaling`) and ``REPORT.md`` (:mod:`.report`).

:func:`markdown_table` renders rows as a GitHub markdown table. The rest builds the pandas tables of the
data-scaling study from ``kind == "accuracy"`` rows. The size of a checkpoint's training data is the number of
distinct training problems (column ``train_n_problems``; null = unlimited fresh data, ``inf`` here). Rows are
grouped into **cells** = (run, data size): the run says how the checkpoint was trained, "from scratch"
(``train_init_from`` null) or "fine-tuned" (otherwise; "fine-tuned from X" when several starting points occur),
with the model shape added when several shapes occur and ", resampled by length" when ``train_resample`` is
"length". Within a cell, rows are pooled over checkpoints (training seeds) and evaluation seeds by the helpers of
:mod:`.accuracy`, with the cell standing in for the checkpoint: counts are summed and Wilson 95% intervals
recomputed; PassRatio@N is n-weighted as in ``stability``; the single-step model is refitted on the pooled
``accuracy_by_op`` counts of the non-reask sets, as in ``step_fit``.

Only ``train_n_problems`` is required of the training metadata; without ``train_init_from`` every run counts as
from scratch, without ``train_resample`` as not resampled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from probekit.figures.accuracy import (
    ACCURACY_COLUMNS,
    decoding_rows,
    pooled_accuracy,
    pooled_stability,
    step_fits,
)
from probekit.figures.registry import (
    NoData,
    checkpoint_order,
    column,
    floats,
    integer,
    pooled_rate,
    proportion,
    rows_of,
    set_label,
    sorted_sets,
    weighted_mean,
)

SIZE = "train_n_problems"
ERROR_COLUMNS = ("errors_calculation", "errors_reasoning")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table.

    Parameters
    ----------
    headers : sequence of str
        The column titles.
    rows : sequence of sequences
        One sequence of cells per row (written with ``str``).

    Returns
    -------
    str
        The table, one line per row, without a trailing newline.
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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


def _is_init(value) -> bool:
    return isinstance(value, str) and bool(value)


def scaling_rows(results: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The greedy accuracy rows (having ``columns``) with the cell columns added; NoData without
    ``train_n_problems``. The data-scaling figures and tables (Xwin-Math Figs. 1, 3-5, Table 4) are greedy, so rows
    of other decodings (beam-sample) are left out rather than pooled with them.

    Added: ``data_size`` (float, ``inf`` = unlimited), ``init`` ("from scratch" / "fine-tuned" ...), ``resample``
    ("none", "length", ...), ``run`` (init + shape + resampling: one line), ``cell`` (run and data size: the
    label that stands in for the checkpoint when pooling).
    """
    rows = decoding_rows(rows_of(results, "accuracy", ("checkpoint", *columns)))
    if SIZE not in rows.columns:
        raise NoData(
            f"the 'accuracy' rows have no column {SIZE} (distinct training problems): evaluate checkpoints "
            "whose training data size is recorded"
        )
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
        out.append(
            {
                "cell": cell,
                "run": first["run"],
                "init": first["init"],
                "resample": first["resample"],
                "data_size": float(first["data_size"]),
                "checkpoints": checkpoint_order(g),
                "init_from": sorted({v for v in column(g, "train_init_from") if _is_init(v)}),
            }
        )
    out.sort(
        key=lambda r: (
            not r["init"].startswith("from scratch"),
            r["init"],
            r["resample"] != "none",
            r["resample"],
            r["data_size"],
        )
    )
    return pd.DataFrame(out, columns=["cell", "run", "init", "resample", "data_size", "checkpoints", "init_from"])


def as_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``checkpoint`` replaced by the cell label, for the per-checkpoint pooling helpers."""
    return rows.assign(checkpoint=rows["cell"])


def scaling_table(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(rows, cells, table)``: table = one row per (cell, preset, format, set) with pooled accuracy (Wilson CI)
    and, where sampled, Pass@N (Wilson CI on pooled counts) and PassRatio@N; column ``checkpoint`` = the cell."""
    rows = scaling_rows(results, ACCURACY_COLUMNS)
    cells = cells_of(rows)
    table = pooled_accuracy(as_cells(rows))
    sampled = rows[~np.isnan(floats(column(rows, "pass_at_n")))]
    keys = ["checkpoint", "preset", "format", "set"]
    if sampled.empty or "samples" not in sampled.columns:
        extra = pd.DataFrame(columns=[*keys, "pass_at_n", "pass_at_n_ci_low", "pass_at_n_ci_high", "pass_ratio_at_n"])
    else:
        stab = pooled_stability(as_cells(sampled))
        extra = stab[[*keys, "pass_at_n", "pass_at_n_ci_low", "pass_at_n_ci_high", "pass_ratio_at_n"]]
    return rows, cells, table.merge(extra, on=keys, how="left")


def samples_text(rows: pd.DataFrame) -> str:
    """The numbers of samples N of ``rows`` for Pass@N labels: ``"8"``, ``"4/8"`` when they differ, ``"N"`` if none."""
    samples = sorted({int(s) for s in floats(column(rows, "samples")) if not np.isnan(s)})
    return "/".join(map(str, samples)) if samples else "N"


def _by_op_from_bins(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``accuracy_by_op`` rebuilt from ``step_fit_bins`` where it is missing (same counts)."""
    if "step_fit_bins" not in rows.columns:
        return rows
    raw = column(rows, "accuracy_by_op").astype(object)
    missing = [not isinstance(v, str) for v in raw]
    rebuilt = [
        json.dumps({str(int(b.get("op", b.get("steps")))): [int(b["n"]), int(b["correct"])] for b in json.loads(bins)})
        if gap and isinstance(bins, str)
        else value
        for value, bins, gap in zip(raw, rows["step_fit_bins"], missing)
    ]
    return rows.assign(accuracy_by_op=rebuilt)


def first_error(rows: pd.DataFrame) -> tuple[float, float, float]:
    """Mean normalised first-error position over the non-reask ``rows``, weighted by their wrong solutions.

    Returns ``(mean, low, high)``; the bounds are the n-weighted means of the rows' interval bounds (conservative)
    and NaN without ``first_error_position_ci_low/high``.
    """
    rows = rows[floats(column(rows, "reask")) != 1]
    wrong = floats(column(rows, "n")) - floats(column(rows, "correct"))
    mean, low, high = (
        weighted_mean(column(rows, c), wrong)
        for c in ("first_error_position", "first_error_position_ci_low", "first_error_position_ci_high")
    )
    return mean, low, high


def step_table(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(rows, cells, fits)``: fits = cell -> ((ops, n, correct), StepFit) on the pooled non-reask op counts;
    ``cells`` gains ``first_error``, ``first_error_low``, ``first_error_high``."""
    rows = rows_of(results, "accuracy", ("checkpoint",))
    have = [c for c in ("accuracy_by_op", "step_fit_bins") if c in rows.columns and rows[c].notna().any()]
    if not have:
        raise NoData("the 'accuracy' rows have no values in column(s) accuracy_by_op (or step_fit_bins)")
    rows = scaling_rows(_by_op_from_bins(rows))
    fits = step_fits(as_cells(rows))
    rows = rows[rows["cell"].isin(list(fits))]
    cells = cells_of(rows)
    spots = [first_error(rows[rows["cell"] == c]) for c in cells["cell"]]
    cells = cells.assign(
        first_error=[s[0] for s in spots], first_error_low=[s[1] for s in spots], first_error_high=[s[2] for s in spots]
    )
    return rows, cells, fits


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
        picked = (
            rows[[set_label(s) == set_label(set) for s in rows["set"]]] if "set" in rows.columns else rows.iloc[0:0]
        )
        if picked.empty:
            present = sorted_sets(rows["set"].dropna()) if "set" in rows.columns else []
            raise NoData(f"no accuracy rows with set = {set!r} (present: {present})")
        rows = picked
    cells = cells_of(rows)
    out = []
    for cell in cells["cell"]:
        g = rows[rows["cell"] == cell]
        calc, reason, fmt = (
            int(np.nansum(floats(column(g, c)))) for c in ("errors_calculation", "errors_reasoning", "errors_format")
        )
        wrong = int(np.nansum(floats(column(g, "n")) - floats(column(g, "correct"))))
        share, low, high = proportion(calc, calc + reason)
        out.append(
            {
                "calculation": calc,
                "reasoning": reason,
                "format": fmt,
                "wrong": wrong,
                "share": share,
                "share_low": low,
                "share_high": high,
            }
        )
    return rows, pd.concat([cells, pd.DataFrame(out)], axis=1)


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
        out.append(
            {
                **c,
                "n": int(g["n"].sum()),
                "accuracy": acc,
                "ci_low": low,
                "ci_high": high,
                "pass_at_n": pooled_rate(column(g, "pass_at_n"), g["n"])[1],
                "pass_ratio_at_n": weighted_mean(column(g, "pass_ratio_at_n"), g["n"]),
                "samples": samples_text(g[~np.isnan(floats(column(g, "pass_at_n")))]),
                "step_accuracy": math.nan if fit is None else fit.step_accuracy,
                "step_ci_low": math.nan if fit is None else fit.ci_low,
                "step_ci_high": math.nan if fit is None else fit.ci_high,
                "first_error": step.get("first_error", math.nan),
                "calculation_share": err.get("share", math.nan),
                "share_low": err.get("share_low", math.nan),
                "share_high": err.get("share_high", math.nan),
            }
        )
    return pd.DataFrame(out)
