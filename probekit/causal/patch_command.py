"""``probekit patch CKPT``: activation patching over minimal pairs (:mod:`probekit.causal.patching`).

``probekit patch CKPT --pairs PAIRS.jsonl [--kind value|dependency|query|all] [--points resid_post,attn_out,mlp_out]
[--roles changed,...] [--direction denoise|noise] [--no-generate] [--positions] [--n N] [--batch-size B]
[--max-new-tokens T] [--device D] [--seed S] [--out ROWS.jsonl] [--json] [--quiet]``

Pairs come from ``--pairs`` (``probekit pairs`` output) or are made on the fly from ``--problems
PROBLEMS.jsonl`` (generate-style records) with ``--kind`` (default value there) and ``--seed``. Every pair
line gives one row per (hook point, role), or per (hook point, position) with ``--positions``; a pair that
cannot be patched (inputs of unequal token length, an error line of ``probekit pairs``, too long for the
context) gives one row with ``skipped: true`` and its ``reason``. ``--out`` writes the rows as JSONL
(atomically; NaN as null). The summary per (pair kind, point, role): mean ``restored`` with its 95% bootstrap
interval over pairs, pairs counted, and with decoding the share of pairs whose clean answer came back, goes to
stderr as a table; ``--json`` prints ``{"summary", "counts", "rows_written", "out"}`` on stdout instead
(``rows`` too when there is no ``--out``). Progress bars and logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``patch`` subcommand to an ``argparse`` subparsers object."""
    from probekit.causal.patching import COMPONENT_CHOICES, DIRECTIONS
    from probekit.causal.roles import ROLE_CHOICES
    from probekit.configs import comma_choices

    p = subparsers.add_parser(
        "patch",
        help="activation patching over minimal pairs (which layers and positions carry the change)",
        description="Run the clean and the counterfactual member of each minimal pair, copy activations of one "
        "run into the other at each hook point and position role, and measure the logit difference of the first "
        "differing solution token (restored fraction) and the greedy answer under the patch.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help="pairs JSONL (probekit pairs)")
    src.add_argument("--problems", help="problems JSONL (generate-style records): make pairs of --kind on the fly")
    src.add_argument(
        "--op",
        type=int,
        help="generate test-split problems with OP operations (--preset, --format, --seed) and make --n pairs "
        "of --kind from them (default 40)",
    )
    p.add_argument(
        "--preset",
        choices=("med", "hard"),
        default=None,
        help="preset of generated problems (--op; default: the checkpoint's training family)",
    )
    p.add_argument("--format", choices=("pq", "qp"), default="pq", help="format of generated problems (--op)")
    p.add_argument(
        "--kind",
        "--pair-kind",
        dest="kind",
        choices=["value", "dependency", "query", "all"],
        default=None,
        help="pair kind to patch (default: all with --pairs, value with --problems and --op)",
    )
    p.add_argument(
        "--points",
        type=comma_choices(COMPONENT_CHOICES),
        default=("resid_post",),
        help="components patched, comma list of resid_post (embed, every block, ln_final), attn_out, mlp_out "
        "(default resid_post)",
    )
    p.add_argument(
        "--roles",
        type=comma_choices(ROLE_CHOICES),
        default=ROLE_CHOICES,
        help=f"position roles patched (default all of {','.join(ROLE_CHOICES)})",
    )
    p.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default="denoise",
        help="denoise: run the counterfactual, patch in clean activations (default); noise: the reverse",
    )
    p.add_argument("--no-generate", dest="generate", action="store_false", help="no greedy decoding under the patch")
    p.add_argument("--positions", action="store_true", help="patch single positions instead of roles (no decoding)")
    p.add_argument("--n", type=int, default=None, help="at most this many pair lines")
    p.add_argument("--batch-size", type=int, default=64, help="patched runs per forward (default 64)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="decoding budget (default: 2x reference + 16)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of pairs made on the fly and of the bootstrap (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--out", help="rows JSONL, written atomically")
    p.add_argument("--json", action="store_true", help="print the summary (and where the rows went) as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=patch_command)
    return p


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def summary_table(summary: list[dict], counts: dict) -> str:
    """The summary as a text table (stderr)."""
    lines = [
        f"patch: {counts['patched']} of {counts['pairs']} pairs patched"
        + (f"; skipped: {', '.join(f'{k}={v}' for k, v in counts['skipped'].items())}" if counts["skipped"] else ""),
        f"  {'kind':<10} {'point':<26} {'role':<16} {'n':>4} {'restored':>8} {'95% CI':>17} {'clean ans':>9}",
    ]
    for c in summary:
        ci = f"[{_fmt(c['ci_low'], 2)}, {_fmt(c['ci_high'], 2)}]"
        lines.append(
            f"  {c['pair_kind']!s:<10} {c['point']:<26} {c['role']:<16} {c['n_pairs']:>4} {_fmt(c['restored']):>8} "
            f"{ci:>17} {_fmt(c.get('clean_answer_rate'), 2):>9}"
        )
    return "\n".join(lines)


def build_spec(args):
    """The :class:`~probekit.causal.patching.PatchSpec` of parsed ``probekit patch`` arguments."""
    from probekit.causal.patching import PatchSpec

    kind = args.kind or ("all" if args.pairs else "value")
    return PatchSpec(
        checkpoint=args.checkpoint,
        pairs=args.pairs,
        problems=args.problems,
        op=args.op,
        preset=args.preset,
        format=args.format,
        pair_kind=kind,
        components=args.points,
        roles=args.roles,
        direction=args.direction,
        generate=args.generate,
        positions=args.positions,
        n=args.n,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        progress=not args.quiet,
    )


def patch_command(args) -> int:
    from pathlib import Path

    from probekit.causal.patching import json_rows, run_patch, skipped_counts, summarize
    from probekit.checkpoint import checkpoint_folder
    from probekit.records import atomic_output, dumps

    checkpoint_folder(args.checkpoint)
    for path in (args.pairs, args.problems):
        if path is not None and not Path(path).exists():
            raise ValueError(f"{path}: no such file or folder")
    if args.n is not None and args.n < 1:
        raise ValueError("--n must be >= 1")
    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be >= 0")
    rows = json_rows(run_patch(build_spec(args)))
    if args.out:
        with atomic_output(args.out) as fh:
            for row in rows:
                fh.write(dumps(row) + "\n")
    summary = json_rows(summarize(rows, n_boot=args.bootstrap, seed=args.seed))
    counts = skipped_counts(rows)
    if args.json:
        result = {"summary": summary, "counts": counts, "rows_written": len(rows) if args.out else 0, "out": args.out}
        if not args.out:
            result["rows"] = rows
        print(json.dumps(result))
    else:
        print(summary_table(summary, counts), file=sys.stderr)
        if args.out:
            print(f"patch: {len(rows)} rows -> {args.out}", file=sys.stderr)
    return 0
