"""Learning curves of training runs, from their folders: a table on stdout and the ``learning_curves`` figure.

    python benchmarks/learning_curves.py RUN_DIR[=LABEL][@PARENT[@GRANDPARENT...]] [...] [--out DIR] [--json]

Each RUN_DIR is a ``probekit train`` output folder (``log.jsonl``; runs with ``run.eval_every`` carry the
full-solution accuracy) or a shipped model folder under ``models/`` (its ``training_log.jsonl``: every leg of the
run that made it). The rows are those a sweep stores for its training jobs
(:func:`probekit.train.curve.run_summary`), so the figure is the one ``probekit figures`` draws for a sweep.
The table gives, per run and evaluation: step, tokens, training minutes, solution-token loss and the accuracy
by op with the pooled Wilson 95% interval. A leg trained with ``--init-from`` is drawn after its parent: its
steps, tokens and minutes continue those of the checkpoint it started from (recorded in its log's start record,
on the axis of the whole run that made that checkpoint). ``@PARENT`` names that checkpoint for a log written
before it was recorded, e.g. ``RUN@models/igsm-med-op4-ip12-gpt2-8-2-reasoner`` for the legs from step 39,500,
and ``@PARENT@GRANDPARENT`` places a parent that was itself an ``--init-from`` leg saved before its checkpoints
recorded their own start (``RUN@models/...-reasoner-op4w@models/...-reasoner`` for a leg from the op4w model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHIPPED_LOG = "training_log.jsonl"


def rows_of(runs: list[str]) -> list[dict]:
    from probekit.checkpoint import latest_checkpoint, read_provenance
    from probekit.train.curve import on_parent_axis, position_after, run_summary
    from probekit.train.metrics import read_log
    from probekit.train.plan import training_position

    rows = []
    for spec in runs:
        head, *ancestors = spec.split("@")
        parent = None
        for ancestor in reversed(ancestors):  # the farthest first: each leg's position past its own parent's
            own = training_position(ancestor)
            if own is None:
                raise SystemExit(f"{ancestor}: records no training position (not a probekit checkpoint)")
            parent = position_after(own, parent)
        folder, _, label = head.partition("=")
        folder = Path(folder)
        if (folder / "log.jsonl").exists():
            log, ckpt = read_log(folder), latest_checkpoint(folder)
        elif (folder / SHIPPED_LOG).exists():  # a shipped model folder: the log of every leg, the model itself
            log, ckpt = read_log(folder, SHIPPED_LOG), folder
        else:
            raise SystemExit(f"{folder}: no log.jsonl nor {SHIPPED_LOG} (not a probekit train or model folder)")
        log = on_parent_axis(log, parent)
        provenance = read_provenance(ckpt) if ckpt else {}
        rows.append(
            {
                "kind": "train",
                "checkpoint": label or folder.name,
                "job_id": folder.name,
                "sweep": "benchmarks",
                "revision": provenance.get("git_revision"),
                **run_summary(log),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| run | step | tokens (M) | minutes | solution loss | accuracy [95% CI] | by op |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        points = json.loads(row["curve"])
        losses = [p for p in points if p.get("event") != "eval"]
        for e in (p for p in points if p.get("event") == "eval"):
            loss = max((p for p in losses if p["step"] <= e["step"]), key=lambda p: p["step"], default={})
            by_op = ", ".join(f"{op}: {acc:.2f}" for op, acc in e["accuracy_by_op"].items())
            lines.append(
                f"| {row['checkpoint']} | {e['step']} | {e['tokens'] / 1e6:.0f} | {e['train_seconds'] / 60:.0f} | "
                f"{loss.get('solution_loss') or float('nan'):.3f} | {e['accuracy']:.3f} [{e['ci_low']:.3f}, "
                f"{e['ci_high']:.3f}] | {by_op} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR[=LABEL][@PARENT[@GRANDPARENT...]]")
    p.add_argument("--out", help="write learning_curves.png / .pdf / .txt to this folder")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout instead of the table")
    args = p.parse_args(argv)
    rows = rows_of(args.runs)
    print(json.dumps(rows) if args.json else table(rows))
    if args.out:
        import pandas as pd

        from probekit.figures.curves import learning_curves

        for path in learning_curves(pd.DataFrame(rows), Path(args.out)):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
