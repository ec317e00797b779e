"""``probekit compare``: two ``probekit eval --out`` folders, problem by problem (:mod:`probekit.evaluate.paired`).

Prints, per set both evaluations hold and pooled over the in-distribution sets (or ``--pool``), each model's
accuracy with its Wilson 95% interval, the difference, the problems only one model solves and the exact McNemar
p-value: a table on stdout, or with ``--json`` a JSON list of those rows on stdout and the table on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from probekit.texttable import fixed_width


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "compare",
        help="compare two evaluations of the same problems (paired: exact McNemar test)",
        description="Compare the records of two `probekit eval --out` runs with the same --sets, --n and --seed "
        "(two checkpoints on the same problems): per set and pooled, both accuracies, the problems only one "
        "model solves and the exact two-sided McNemar p-value of that split.",
    )
    p.add_argument("a", metavar="A", help="`probekit eval --out` folder (or its records.jsonl) of the baseline")
    p.add_argument("b", metavar="B", help="the same for the model compared with it")
    p.add_argument(
        "--pool",
        help="sets pooled into the last row, written as `probekit eval --sets` writes them (e.g. 2,3,4); "
        "default: every test-split op=K set with K <= the family's max_op",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list (one object per row) on stdout")
    p.set_defaults(func=compare_command)
    return p


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of comparison rows."""

    def pct(v: float) -> str:
        return "-" if math.isnan(v) else f"{100 * v:.1f}"

    header = ["set", "n", "A %", "A 95% CI", "B %", "B 95% CI", "B - A", "only A", "only B", "McNemar p"]
    lines = [
        [
            r["set"],
            str(r["n"]),
            pct(r["accuracy_a"]),
            f"[{pct(r['ci_low_a'])}, {pct(r['ci_high_a'])}]",
            pct(r["accuracy_b"]),
            f"[{pct(r['ci_low_b'])}, {pct(r['ci_high_b'])}]",
            "-" if math.isnan(r["difference"]) else f"{100 * r['difference']:+.1f}",
            str(r["only_a"]),
            str(r["only_b"]),
            f"{r['p_value']:.3g}",
        ]
        for r in rows
    ]
    return fixed_width(header, lines)


def compare_command(args) -> int:
    """Run ``probekit compare`` from parsed arguments; returns the exit status (2: unreadable or unmatched input)."""
    from probekit.evaluate.paired import compare_records, pool_names, read_records

    try:
        a, b = read_records(args.a), read_records(args.b)
        pool = pool_names(args.pool, a) if args.pool else None
        comparison = compare_records(a, b, pool)
    except ValueError as err:
        print(f"probekit compare: error: {err}", file=sys.stderr)
        return 2
    if comparison.unmatched:
        print(
            f"probekit compare: left out (in one evaluation only): {', '.join(comparison.unmatched)}", file=sys.stderr
        )
    rows = comparison.rows()
    table = format_table(rows)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(rows))
    else:
        print(table)
    return 0
