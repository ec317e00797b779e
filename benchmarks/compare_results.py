"""Compare two results stores column by column (e.g. a sweep before and after a refactor).

    python benchmarks/compare_results.py A.parquet B.parquet [--ignore col,...] [--ignore-keys key,...] [--rtol R]

A and B are ``results.parquet`` files (or the results folders holding them). Rows are matched by ``job_id``
(the n-th row of a job in A with the n-th row of that job in B); a cell is equal when both are missing
(None / NaN / NA), or equal (within ``--rtol`` for floats; default 0: exactly). Prints the columns only one
side has, the jobs only one side has or with a different number of rows, and, per differing column, its dtypes,
the number of differing rows and the first difference. ``--ignore`` leaves out columns that legitimately vary
between runs (timings, revision, absolute paths); ``--ignore-keys`` leaves such keys out of JSON cells (e.g. the
``train_seconds`` of each point of a training row's ``curve``), which are then compared as parsed JSON.
Exit status: 0 when nothing differs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def read(path: str):
    import pandas as pd

    path = Path(path)
    frame = pd.read_parquet(path / "results.parquet" if path.is_dir() else path)
    frame = frame.assign(_row=frame.groupby("job_id").cumcount())
    return frame.set_index(["job_id", "_row"]).sort_index()


def missing(value) -> bool:
    if value is None:
        return True
    if type(value).__name__ == "NAType":
        return True
    return isinstance(value, float) and math.isnan(value)


def without_keys(value, keys: set[str]):
    """A JSON text with ``keys`` left out of every object in it (other values unchanged)."""
    if not keys or not isinstance(value, str) or value[:1] not in "[{":
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return value

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in keys}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(parsed)


def same(a, b, rtol: float) -> bool:
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return bool(a == b)


def compare(a, b, ignore: set[str], rtol: float = 0.0, ignore_keys: set[str] = frozenset()) -> list[str]:
    """Lines describing every difference between the stores ``a`` and ``b`` (read with :func:`read`)."""
    lines = []
    only_a = [c for c in a.columns if c not in b.columns and c not in ignore]
    only_b = [c for c in b.columns if c not in a.columns and c not in ignore]
    if only_a:
        lines.append(f"columns only in A: {', '.join(only_a)}")
    if only_b:
        lines.append(f"columns only in B: {', '.join(only_b)}")
    rows_a, rows_b = set(a.index), set(b.index)
    for label, rows in (("A", rows_a - rows_b), ("B", rows_b - rows_a)):
        if rows:
            jobs = sorted({job for job, _ in rows})
            lines.append(
                f"rows only in {label}: {len(rows)} (jobs {', '.join(jobs[:5])}{' ...' if len(jobs) > 5 else ''})"
            )
    common = sorted(rows_a & rows_b)
    for column in [c for c in a.columns if c in b.columns and c not in ignore]:
        x, y = a.loc[common, column], b.loc[common, column]
        bad = [
            key
            for key, u, v in zip(common, x.tolist(), y.tolist())
            if not same(without_keys(u, ignore_keys), without_keys(v, ignore_keys), rtol)
        ]
        if bad or x.dtype != y.dtype:
            where = f"; first at {bad[0]}: A={x[bad[0]]!r} B={y[bad[0]]!r}" if bad else ""
            lines.append(
                f"column {column}: {len(bad)} of {len(common)} rows differ (dtype A {x.dtype}, B {y.dtype}){where}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", metavar="A.parquet")
    parser.add_argument("b", metavar="B.parquet")
    parser.add_argument("--ignore", default="", help="comma list of columns left out of the comparison")
    parser.add_argument("--ignore-keys", default="", help="comma list of keys left out of JSON cells")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for floats (default 0: exact)")
    args = parser.parse_args(argv)
    ignore = {c.strip() for c in args.ignore.split(",") if c.strip()}
    ignore_keys = {k.strip() for k in args.ignore_keys.split(",") if k.strip()}
    a, b = read(args.a), read(args.b)
    lines = compare(a, b, ignore, args.rtol, ignore_keys)
    for line in lines:
        print(line)
    compared = len([c for c in a.columns if c in b.columns and c not in ignore])
    print(
        f"{'DIFFERENT' if lines else 'same'}: {len(a)} vs {len(b)} rows, {compared} columns compared"
        + (f", ignored: {', '.join(sorted(ignore))}" if ignore else "")
        + (f", JSON keys ignored: {', '.join(sorted(ignore_keys))}" if ignore_keys else ""),
        file=sys.stderr,
    )
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
