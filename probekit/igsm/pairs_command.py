"""``probekit pairs``: minimal pairs (:mod:`probekit.igsm.pairs`) for every problem of a JSONL file.

``probekit pairs --input PROBLEMS.jsonl --kind value|dependency|query|all --seed S --out PAIRS.jsonl [--json]``
reads generate-style records (``problem``, optional ``solution`` and ``categories``) and writes, per input
line and per kind (value, dependency, query in that order for ``all``), one line: the pair record, or
``{"kind", "index", "error"}`` when that change is impossible for the problem or the line is not a problem.
Progress goes to stderr; the summary (per kind: pairs, errors, same-length share) to stdout with ``--json``
when ``--out`` is given, else to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``pairs`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "pairs",
        help="derive minimal pairs (value / dependency / query counterfactuals) from problems",
        description="For every problem of --input, a counterfactual twin that differs in one controlled way, with "
        "token-aligned texts and the ground-truth consequences recorded (one line per input line and kind).",
    )
    p.add_argument(
        "--input", required=True, help="JSONL of generate-style records ('problem', 'solution', 'categories')"
    )
    p.add_argument("--kind", choices=["value", "dependency", "query", "all"], default="all", help="kind of change")
    p.add_argument("--seed", type=int, default=0, help="seed of the changes (with the line's position)")
    p.add_argument("--out", help="pairs JSONL (default: stdout); written atomically")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=pairs_command)
    return p


def pairs_command(args) -> int:
    from tqdm import tqdm

    from probekit.igsm.pairs import PairSpec, PairSummary, make_pairs
    from probekit.records import atomic_output, dumps, read_jsonl

    spec = PairSpec(args.kind, args.seed)
    out_path = None if args.out in (None, "-") else args.out
    try:
        lines = list(read_jsonl(args.input))
    except OSError as err:
        print(f"probekit: cannot read {args.input}: {err.strerror or err}", file=sys.stderr)
        return 2
    summary = PairSummary()
    bar = tqdm(total=len(lines), desc="pairs", unit="rec", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)
    with atomic_output(out_path) as out, bar:
        for index, line in enumerate(lines):
            if line.record is None:
                results = [
                    {"kind": k, "index": index, "error": f"line {line.number}: {line.error}"} for k in spec.kinds
                ]
            else:
                results = make_pairs(spec, line.record, index)
            for result in results:
                if "error" in result and not str(result["error"]).startswith("line "):
                    result["error"] = f"line {line.number}: {result['error']}"
                summary.add(result)
                out.write(dumps(result) + "\n")
            bar.update()
    rows = summary.to_dict()
    if args.json:
        print(json.dumps(rows), file=sys.stdout if out_path is not None else sys.stderr)
    else:
        print("\npairs", file=sys.stderr)
        for kind, c in rows.items():
            share = "-" if c["same_length_share"] is None else f"{c['same_length_share']:.4f}"
            print(f"  {kind:<10}  pairs={c['pairs']} errors={c['errors']} same_length={share}", file=sys.stderr)
    return 0
