"""``probekit eval``: the command-line front end of :mod:`probekit.evaluate` (argparse only at import time).

Wire it in ``probekit/cli.py`` with ``from probekit.evaluate.command import register; register(sub)``;
``register`` adds the subcommand and sets ``func=eval_command``, which parses the options into an
:class:`~probekit.evaluate.job.EvalSpec`, runs :func:`~probekit.evaluate.job.run_eval` (torch and the model code
load then) and returns the exit status (0 ok, 2 bad options; library errors propagate to ``cli.main``, which
prints them and returns 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from probekit.igsm.presets import FAMILY_HELP

SET_HELP = (
    "evaluation sets, a comma list: 'default' (the paper's suite: op<=max unforced, op=max, the OOD ops "
    "med 20..23 / hard 28..32, and reask versions of the OOD ops), 'id', 'ood', 'reask', 'unforced', "
    "K (op=K), rK (reask op=K), hK (held-out op=K: all template bins, a generation seed disjoint from "
    "training's; for small op, whose test bins hold few or degenerate templates). Overrides --op/--reask"
)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="generate solutions with a checkpoint and judge them with the full-solution checker",
        description="Greedy (and sampled) generation on test-split iGSM problems; every solution is judged by the "
        "full-solution checker and counts as correct only if the checker accepts it AND the emitted "
        "[ANSWER] equals the true answer.",
    )
    p.add_argument(
        "checkpoint",
        metavar="CKPT",
        help="checkpoint folder (config.json, model.safetensors, tokenizer, probekit.json)",
    )
    p.add_argument(
        "--preset",
        help=f"{FAMILY_HELP} (default: the checkpoint's, else med)",
    )
    p.add_argument("--format", choices=["pq", "qp"], help="problem/question order (default: the checkpoint's, else pq)")
    p.add_argument("--op", type=int, help="force op=K (default: unforced, op <= the preset's max)")
    p.add_argument("--reask", action="store_true", help="re-ask a new query of each op=K problem (needs --op)")
    p.add_argument("--sets", help=SET_HELP)
    p.add_argument("--n", type=int, default=4096, help="problems per set (paper: 4096)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="problem seed (problem i of a set is a function of seed and i); also seeds sampling",
    )
    p.add_argument("--samples", type=int, default=0, help="also draw N samples per problem for Pass@N / PassRatio@N")
    p.add_argument(
        "--temperature", type=float, default=0.7, help="sampling temperature (with --samples; Xwin-Math: 0.7)"
    )
    p.add_argument(
        "--decoding",
        choices=["greedy", "beam-sample"],
        default="greedy",
        help="how the judged solution is generated: greedy (default) or beam-sample (beam 4 with sampling, the "
        "paper's second mode)",
    )
    p.add_argument("--batch-size", type=int, help="rows per generation batch (default: 256 on cuda, 32 on cpu)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument(
        "--max-new-tokens", type=int, help="fixed generation budget (default: 40 per op + 64, capped by the context)"
    )
    p.add_argument("--tokens-per-op", type=int, default=40, help="budget per op when --max-new-tokens is not given")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes drawing the problems")
    p.add_argument(
        "--out", metavar="DIR", help="write records.jsonl, summary.parquet/csv, step_fit.json, eval.json here"
    )
    p.add_argument(
        "--skip-checks",
        action="store_true",
        help="do not run the fast load-time model checks (probekit inspect --fast) first; recorded in "
        "the results as checks_skipped",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list (one object per set) on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    p.set_defaults(func=eval_command)
    return p


def _error(msg: str) -> int:
    print(f"probekit eval: error: {msg}", file=sys.stderr)
    return 2


def build_spec(args):
    """The :class:`~probekit.evaluate.job.EvalSpec` of parsed ``probekit eval`` arguments."""
    from probekit.evaluate.job import EvalSpec

    return EvalSpec(
        checkpoint=args.checkpoint,
        sets=args.sets,
        op=args.op,
        reask=args.reask,
        preset=args.preset,
        format=args.format,
        n=args.n,
        seed=args.seed,
        samples=args.samples,
        temperature=args.temperature,
        decoding=args.decoding,
        batch_size=args.batch_size,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        tokens_per_op=args.tokens_per_op,
        workers=args.workers,
        out=args.out,
        checks=not args.skip_checks,
        progress=not args.quiet,
    )


def eval_command(args) -> int:
    """Run ``probekit eval`` from parsed arguments; returns the exit status."""
    from probekit.checkpoint import NotACheckpointError
    from probekit.evaluate.job import run_eval
    from probekit.evaluate.run import format_table

    spec = build_spec(args)
    try:
        spec.check()
    except (ValueError, NotACheckpointError) as err:  # bad input: this function returns 2 itself
        return _error(getattr(err, "flag_message", str(err)))
    report = run_eval(spec)
    print("\n" + format_table(report.rows, report.step_fit), file=sys.stderr)
    if args.out and not args.quiet:
        print(f"probekit eval: results in {args.out}/", file=sys.stderr)
    if args.json:
        print(json.dumps(report.json_rows()))
    return 0
