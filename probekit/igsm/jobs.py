"""Record-level jobs behind ``probekit generate``, ``check`` and ``labels``: JSON records in, JSON out.

Each function takes plain dicts (one JSONL record) and returns plain dicts, so a notebook can call them
directly; a record that cannot be judged gets an explicit error result, never an exception.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from probekit.igsm.check import MISTAKE_KINDS, check_solution
from probekit.igsm.generate import GenerationConfig, generate_record
from probekit.igsm.labels import compute_labels
from probekit.igsm.parse import ParseError, parse_problem
from probekit.igsm.problem import Problem
from probekit.pools import pool_scope
from probekit.records import require


# ---------------------------------------------------------------------------- generate
def _record_for(args: tuple[GenerationConfig, int]) -> dict:
    return generate_record(*args)


def generate_records(config: GenerationConfig, n: int, workers: int = 1, start: int = 0) -> Iterator[dict]:
    """Records ``start .. start+n-1`` of ``config``, in index order, whatever the number of workers."""
    jobs = ((config, i) for i in range(start, start + n))
    if workers <= 1:
        yield from map(_record_for, jobs)
        return
    with pool_scope(workers) as pool:
        yield from pool.imap(_record_for, jobs, chunksize=max(1, min(64, n // (workers * 8) or 1)))


# ---------------------------------------------------------------------------- check
def problem_of(record: dict) -> Problem:
    """Parse a record's ``problem`` text, using its optional ``categories``."""
    require(record, "problem")
    categories = record.get("categories")
    if categories is not None and not (
        isinstance(categories, dict)
        and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in categories.values())
    ):
        raise ValueError("field 'categories' must be an object {category: [item, ...]} of strings")
    return parse_problem(record["problem"], categories)


def unparseable(reason: str) -> dict:
    """The verdict of a record that could not be judged at all."""
    return {
        "correct": False,
        "answer": None,
        "expected_answer": None,
        "first_error": None,
        "mistakes": [{"param": None, "kind": "unparseable", "detail": reason}],
        "unnecessary": [],
    }


def check_record(record: dict) -> dict:
    """The checker's verdict on ``record["solution"]`` for ``record["problem"]`` (see ``Verdict.to_dict``)."""
    try:
        require(record, "problem", "solution")
        problem = problem_of(record)
    except (ValueError, ParseError) as err:
        return unparseable(f"record: {err}")
    return check_solution(problem, record["solution"]).to_dict()


@dataclass
class CheckSummary:
    """Running totals over verdicts, for the table the ``check`` command prints."""

    n: int = 0
    correct: int = 0
    unjudged: int = 0  # records whose problem could not be read
    kinds: Counter = field(default_factory=Counter)

    def add(self, verdict: dict) -> None:
        self.n += 1
        self.correct += bool(verdict["correct"])
        self.unjudged += verdict["expected_answer"] is None
        self.kinds.update({m["kind"] for m in verdict["mistakes"]})

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.correct / self.n if self.n else None,
            "unjudged_records": self.unjudged,
            "solutions_with_mistake_kind": {k: self.kinds[k] for k in MISTAKE_KINDS if self.kinds[k]},
        }


# ---------------------------------------------------------------------------- labels
@dataclass
class LabelsSummary:
    """Running totals over label records, for the summary the ``labels`` command prints."""

    n: int = 0
    errors: int = 0
    positions: int = 0  # solution positions t = 0..T over the labelled records
    first_error: str | None = None

    def add(self, result: dict) -> None:
        self.n += 1
        if "error" in result:
            self.errors += 1
            self.first_error = self.first_error or result["error"]
        else:
            self.positions += len(result["steps"])

    def to_dict(self) -> dict:
        summary: dict = {
            "n": self.n,
            "labelled": self.n - self.errors,
            "errors": self.errors,
            "solution_positions": self.positions,
        }
        if self.first_error:
            summary["first_error"] = self.first_error
        return summary


def labels_record(record: dict) -> dict:
    """The six probe labels along ``record["solution"]`` (the reference order when it has none)."""
    try:
        problem = problem_of(record)
        solution = record.get("solution")
        if solution is not None and not isinstance(solution, str):
            raise ValueError("field 'solution' must be a string")
    except (ValueError, ParseError) as err:
        return {"error": f"record: {err}"}
    return compute_labels(problem, solution).to_dict()
