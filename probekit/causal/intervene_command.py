"""``probekit intervene CKPT``: ablate or steer along a probe's direction, beside random directions.

``register(subparsers)`` adds the subcommand (argparse only; torch is imported when it runs). The command builds
an :class:`~probekit.causal.interventions.InterveneSpec` and calls
:func:`~probekit.causal.interventions.run_intervention` (the method is in :mod:`probekit.causal.directions`
and :mod:`probekit.causal.interventions`). Progress and the summary table (probe direction vs the random
directions, per metric, with the probe's rank and empirical p-value) go to stderr; ``--json`` prints the rows
(one per direction plus the ``none`` baseline) as a JSON list on stdout; ``--out ROWS.jsonl`` writes them,
atomically.

Example: ``probekit intervene CKPT --task nece --layer 5 --mode ablate --n-random 10 --sets 2,3,4 --n 50``.
"""

from __future__ import annotations

import argparse
import json
import sys

from probekit.causal.choices import ABLATE_VALUES, MIN_RANDOM, MODES, POSITIONS


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "intervene",
        help="ablate or steer along a probe's direction, beside random directions",
        description="Take a binary probe at one residual point (trained here, or --probe DIR), ablate or steer "
        "along its direction at every position while the model generates, and measure the probe's own accuracy "
        "and the model's full-solution accuracy, unnecessary parameters and first-error position, beside the "
        "same intervention along random directions.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint folder")
    p.add_argument(
        "--task", default="nece", help="binary probe task: nece, dep, known, can_next, nece_next (default nece)"
    )
    p.add_argument(
        "--layer",
        default=None,
        help="residual point probed and edited: a block index (negative from the end) or hook name "
        "(default ln_final.hook_out, or the saved probe's)",
    )
    p.add_argument("--rank", type=int, default=0, help="0: linear probe (default); > 0: V-probe of that rank")
    p.add_argument("--mode", choices=MODES, default="ablate", help="ablate (default) or steer")
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="steer: alpha, in std units of the probe direction's projection on its training states; negative "
        "pushes toward label 0 (default 1)",
    )
    p.add_argument(
        "--ablate-value",
        choices=ABLATE_VALUES,
        default="mean",
        help="ablate: put the training states' mean projection (default) or zero along the direction",
    )
    p.add_argument(
        "--n-random",
        type=int,
        default=MIN_RANDOM,
        help=f"random directions beside the probe's (default {MIN_RANDOM}, the issue's minimum)",
    )
    p.add_argument(
        "--positions",
        choices=POSITIONS,
        default="all",
        help="edit every position (default) or the prompt's only (the generated solution left alone)",
    )
    p.add_argument("--probe", default=None, metavar="DIR", help="a saved probe folder instead of training one")
    p.add_argument("--n-train", type=int, default=300, help="train-split problems of the probe data (default 300)")
    p.add_argument("--n-test", type=int, default=200, help="test-split problems for the probe accuracy (default 200)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps of the probe trained here (default 1000)")
    p.add_argument("--sets", default="2,3,4", help="evaluation sets, probekit eval --sets syntax (default 2,3,4)")
    p.add_argument(
        "--n", type=int, default=50, dest="n_eval", metavar="N", help="problems per evaluation set (default 50)"
    )
    p.add_argument("--max-new-tokens", type=int, default=None, help="fixed generation budget (default: eval's)")
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals (0 = none; default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="data, probe, random-direction and problem seed (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=None, help="generation batch (default 256 on CUDA, 32 on CPU)")
    p.add_argument("--skip-checks", action="store_true", help="skip the fast load-time model checks")
    p.add_argument("--out", default=None, metavar="ROWS.jsonl", help="write the rows here (atomically)")
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=intervene_command)
    return p


def build_spec(args):
    """The :class:`~probekit.causal.interventions.InterveneSpec` of parsed arguments."""
    from probekit.causal.interventions import InterveneSpec

    names = (
        "task rank mode strength ablate_value n_random positions probe n_train n_test steps sets n_eval "
        "max_new_tokens bootstrap seed device batch_size skip_checks"
    ).split()
    return InterveneSpec(
        checkpoint=args.checkpoint,
        layer=args.layer,
        progress=not args.quiet,
        **{name: getattr(args, name) for name in names},
    )


def intervene_command(args) -> int:
    """Run ``probekit intervene`` from parsed arguments."""
    from probekit.causal.interventions import format_summary, run_intervention, summarize_interventions
    from probekit.records import atomic_output, dumps

    spec = build_spec(args)
    spec.check()  # before loading anything
    rows = run_intervention(spec)
    summary = summarize_interventions(rows)
    first = rows[0]
    what = (
        f"{spec.mode} ({first['ablate_value']} ablation)" if spec.mode == "ablate" else f"steer, alpha {spec.strength}"
    )
    print(
        f"\n{spec.task} probe (rank {first['rank']}) at {first['hook']}: {what} at {spec.positions} positions; "
        f"{first['n']} problems ({spec.sets}), {spec.n_random} random directions",
        file=sys.stderr,
    )
    print(format_summary(summary), file=sys.stderr)
    if args.out:
        with atomic_output(args.out) as fh:
            for row in rows:
                fh.write(dumps(row) + "\n")
        print(f"rows in {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
    return 0
