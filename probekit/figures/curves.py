"""Learning curves of training runs from ``kind == "train"`` rows: ``learning_curves``.

Each training job of a sweep stores its whole curve (column ``curve``, :func:`probekit.train.curve.learning_curve`):
the loss records of its ``log.jsonl`` and the periodic full-solution evaluations (``run.eval_every``). The figure
has four panels, one line per run: loss on the solution tokens (``solution_loss``; ``loss`` for logs written
before it existed) and full-solution accuracy (test-split problems of op 2..max_op of the run's family, pooled,
with the Wilson 95% interval as a band), each against training tokens and against training minutes
(evaluation time excluded).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from probekit.figures.registry import NoData, caption, rows_of
from probekit.figures.style import CYCLE, new_figure, save_figure, styled


def curves(results: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``{run label: (loss points, evaluation points)}`` of every train row that stored a curve."""
    rows = rows_of(results, "train", ("checkpoint", "curve"))
    out = {}
    for row in rows.itertuples():
        if not isinstance(row.curve, str):
            continue
        points = json.loads(row.curve)
        loss = pd.DataFrame([p for p in points if p.get("event") != "eval"])
        evals = pd.DataFrame([p for p in points if p.get("event") == "eval"])
        if not loss.empty and "solution_loss" in loss and loss["solution_loss"].notna().any():
            loss = loss.assign(y=loss["solution_loss"])
        elif not loss.empty:
            loss = loss.assign(y=loss["loss"])
        out[str(row.checkpoint)] = (loss, evals)
    if not out:
        raise NoData("no train rows with a learning curve (column 'curve')")
    return out


def _final(evals: pd.DataFrame) -> str:
    if evals.empty:
        return "no evaluation"
    last = evals.iloc[-1]
    by_op = ", ".join(f"op {op} {acc:.2f}" for op, acc in (last["accuracy_by_op"] or {}).items())
    return (
        f"{last['accuracy']:.3f} [{last['ci_low']:.3f}, {last['ci_high']:.3f}] at step {int(last['step'])} "
        f"({last['tokens'] / 1e6:.1f}M tokens, {last['train_seconds'] / 60:.0f} min; {by_op}; n = {int(last['n'])})"
    )


@styled
def learning_curves(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Solution-token loss and full-solution accuracy of each training run, against tokens and minutes."""
    runs = curves(results)
    fig, axes = new_figure(2, 2, width=4.2, height=3.0)
    for i, (label, (loss, evals)) in enumerate(sorted(runs.items())):
        color = CYCLE[i % len(CYCLE)]
        for col, (x, scale) in enumerate((("tokens", 1e6), ("train_seconds", 60.0))):
            if not loss.empty:
                axes[0, col].plot(loss[x] / scale, loss["y"], color=color, lw=1, label=label)
            if not evals.empty:
                xs = evals[x].to_numpy(dtype=float) / scale
                axes[1, col].plot(xs, evals["accuracy"], color=color, lw=1.2, marker="o", ms=2.5, label=label)
                axes[1, col].fill_between(xs, evals["ci_low"], evals["ci_high"], color=color, alpha=0.15, lw=0)
    for col, xlabel in enumerate(("training tokens (millions)", "training time (minutes, evaluations excluded)")):
        axes[0, col].set(xlabel=xlabel, ylabel="loss on solution tokens (nats, log scale)", yscale="log")
        axes[1, col].set(xlabel=xlabel, ylabel="full-solution accuracy", ylim=(-0.02, 1.02))
    axes[0, 0].legend(loc="upper right", fontsize=7)
    rows = rows_of(results, "train", ("checkpoint", "curve"))
    text = caption(
        "Learning curves: what it takes to learn the iGSM family of each run.",
        "per training run, the mean next-token loss on solution tokens over each logging window (top) and the "
        "share of greedy solutions the checker accepts with the right answer, on the same test-split problems "
        "at every evaluation, pooled over op 2..max_op of the run's family, with its Wilson 95% band (bottom); "
        "against training tokens (left) and training minutes without evaluation time (right).",
        "loss in nats per token; accuracy as a fraction",
        ", ".join(sorted({f"{int(e['n'].iloc[-1])} problems" for _, e in runs.values() if not e.empty})) or "-",
        rows,
        [f"Final evaluation of {label}: {_final(evals)}." for label, (_, evals) in sorted(runs.items())],
    )
    return save_figure(fig, Path(out_dir) / "learning_curves", text)
