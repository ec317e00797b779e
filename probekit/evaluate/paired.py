"""Two evaluations of the same problems, compared problem by problem (``probekit compare``).

``probekit eval --out DIR`` writes one record per judged problem (``records.jsonl``); two runs with the same
``--sets``, ``--n`` and ``--seed`` judge the same problems, so two checkpoints can be compared on each problem
rather than only by their accuracies. Per set and pooled over a group of sets, :func:`compare_records` counts
the problems each model solves, those only one of them solves, and the exact McNemar p-value of that split
(:func:`probekit.evaluate.metrics.mcnemar_exact`): with 600 problems two accuracies 3 points apart can be
chance, and the paired test says how likely.

Problems are matched by their set, split, seed and index, and must have the same text in both files; a set only
one file holds is left out of the comparison (and named in :attr:`Comparison.unmatched`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from probekit.evaluate.metrics import mcnemar_exact, wilson_interval
from probekit.evaluate.sets import parse_sets
from probekit.igsm.presets import resolve_preset
from probekit.records import read_jsonl

KEY_FIELDS = ("set", "preset", "format", "split", "seed", "index")
RECORDS = "records.jsonl"


@dataclass(frozen=True)
class PairedCounts:
    """Counts of one set (or a pool of sets) judged by models A and B on the same problems."""

    set: str
    n: int
    correct_a: int
    correct_b: int
    only_a: int
    only_b: int

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_a, self.only_b)

    def to_dict(self) -> dict:
        """The row ``probekit compare`` prints: counts, both accuracies with Wilson 95% intervals, the
        difference B - A and the exact McNemar p-value."""
        row: dict = {"set": self.set, "n": self.n}
        for side, k in (("a", self.correct_a), ("b", self.correct_b)):
            low, high = wilson_interval(k, self.n)
            row |= {f"correct_{side}": k, f"accuracy_{side}": k / self.n if self.n else math.nan}
            row |= {f"ci_low_{side}": low, f"ci_high_{side}": high}
        row["difference"] = row["accuracy_b"] - row["accuracy_a"]
        return row | {"only_a": self.only_a, "only_b": self.only_b, "p_value": self.p_value}


@dataclass
class Comparison:
    """Per-set counts in A's order, the pooled counts (None when the pool is empty) and the sets only one
    evaluation holds."""

    sets: list[PairedCounts]
    pooled: PairedCounts | None
    unmatched: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        return [c.to_dict() for c in self.sets] + ([self.pooled.to_dict()] if self.pooled else [])


def read_records(path: str | Path) -> list[dict]:
    """The judged problems of an evaluation: ``path`` is a ``probekit eval --out`` folder or its
    ``records.jsonl``. Raises ``ValueError`` naming the first unreadable line or a record without the
    fields a comparison needs."""
    path = Path(path)
    file = path / RECORDS if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{path}: no {RECORDS} (not a `probekit eval --out` folder)")
    records = []
    for line in read_jsonl(file):
        if line.record is None:
            raise ValueError(f"{file}, line {line.number}: {line.error}")
        missing = [k for k in (*KEY_FIELDS, "problem", "correct") if k not in line.record]
        if missing:
            raise ValueError(f"{file}, line {line.number}: no field {', '.join(map(repr, missing))}")
        records.append(line.record)
    return records


def in_distribution_sets(records: Iterable[dict]) -> list[str]:
    """Names of the test-split sets of a forced op within the training family's (``op=K``, K <= max_op): the
    default pool, which is how model cards pool op 2..max_op."""
    names: list[str] = []
    for r in records:
        name = r["set"]
        if name in names or r["split"] != "test" or not name.startswith("op="):
            continue
        if int(name[3:]) <= resolve_preset(r["preset"]).max_op:
            names.append(name)
    return names


def pool_names(spec: str, records: Sequence[dict]) -> list[str]:
    """Set names of a ``--pool`` spec written as ``probekit eval --sets`` writes sets (``2,3,4``, ``r5``, ``h3``),
    for the family of ``records`` (names do not depend on the seed or format)."""
    preset = records[0]["preset"] if records else "med"
    return [s.name for s in parse_sets(spec, preset)]


def _keyed(records: Iterable[dict]) -> dict[tuple, dict]:
    keyed: dict[tuple, dict] = {}
    for r in records:
        key = tuple(r[k] for k in KEY_FIELDS)
        if key in keyed:
            raise ValueError(f"problem {r['index']} of set {r['set']!r} is judged twice in one evaluation")
        keyed[key] = r
    return keyed


def _count(name: str, pairs: Sequence[tuple[dict, dict]]) -> PairedCounts:
    a = [bool(x["correct"]) for x, _ in pairs]
    b = [bool(y["correct"]) for _, y in pairs]
    return PairedCounts(
        set=name,
        n=len(pairs),
        correct_a=sum(a),
        correct_b=sum(b),
        only_a=sum(x and not y for x, y in zip(a, b)),
        only_b=sum(y and not x for x, y in zip(a, b)),
    )


def compare_records(a: Sequence[dict], b: Sequence[dict], pool: Sequence[str] | None = None) -> Comparison:
    """Compare two evaluations (records of ``probekit eval``) problem by problem.

    Sets both hold are compared; within such a set both must hold the same problems (same indexes and text),
    else ``ValueError``. ``pool`` names the sets pooled into the last row (default:
    :func:`in_distribution_sets`); a pooled set that is not in both evaluations is a ``ValueError``.
    """
    keyed_a, keyed_b = _keyed(a), _keyed(b)
    names_a = list(dict.fromkeys(r["set"] for r in a))
    names_b = list(dict.fromkeys(r["set"] for r in b))
    shared = [s for s in names_a if s in names_b]
    by_set: dict[str, list[tuple[dict, dict]]] = {s: [] for s in shared}
    for key, x in keyed_a.items():
        if x["set"] not in by_set:
            continue
        y = keyed_b.get(key)
        if y is None:
            raise ValueError(
                f"problem {x['index']} of set {x['set']!r} (seed {x['seed']}) is judged in A and not in B: "
                "compare evaluations run with the same --sets, --n and --seed"
            )
        if y["problem"] != x["problem"]:
            raise ValueError(f"problem {x['index']} of set {x['set']!r} differs between A and B (another generator?)")
        by_set[x["set"]].append((x, y))
    sizes_b = Counter(r["set"] for r in b)
    for s in shared:
        if sizes_b[s] != len(by_set[s]):
            raise ValueError(f"set {s!r} holds problems in B that A does not judge: compare runs with the same --n")
    pooled_names = list(pool) if pool is not None else in_distribution_sets(a)
    absent = [s for s in pooled_names if s not in by_set]
    if absent:
        raise ValueError(f"cannot pool {', '.join(map(repr, absent))}: not judged in both evaluations")
    pooled = None
    if pooled_names:
        label = f"pooled ({', '.join(pooled_names)})"
        pooled = _count(label, [pair for s in pooled_names for pair in by_set[s]])
    unmatched = [s for s in names_a + names_b if s not in shared]
    return Comparison([_count(s, by_set[s]) for s in shared], pooled, unmatched)
