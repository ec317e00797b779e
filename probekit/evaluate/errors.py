"""Error types of wrong solutions (paper 2.1, Fig. 5): calculation, reasoning or format, by the FIRST mistake.

The checker (:mod:`probekit.igsm.check`) names every mistake with a kind from ``MISTAKE_KINDS``;
:data:`ERROR_TYPES` maps each kind to one of three error types. It is the one table of this mapping (a test
fails when a checker kind has no entry):

========================  ===========  =================================================================
checker kind              error type   why
========================  ===========  =================================================================
``arithmetic_error``      calculation  ``x op y = r`` with ``r`` not the result mod 23
``wrong_value_carried``   calculation  a symbol or constant written with another value than it was given
``wrong_value``           calculation  the right dependencies, steps consistent, but the parameter's value
                                       is not the problem's (a wrong constant or operation)
``wrong_dependency_set``  reasoning    the parameter computed from the wrong set of parameters
``unknown_parameter``     reasoning    a name that is not a parameter of the problem
``used_before_defined``   reasoning    a symbol referenced before the sentence that defines it
``redefined``             reasoning    a parameter or symbol defined twice (a repeated, unnecessary step)
``not_query_at_end``      reasoning    the solution stops before the query (missing steps) or goes on
                                       after it (unnecessary steps)
``unparseable``           format       a sentence that does not read as a step (nothing to judge)
``wrong_answer``          format       the last result is not the answer (first only when no sentence is
                                       wrong: a malformed ending)
========================  ===========  =================================================================

The paper's split is calculation = arithmetic errors and wrong values carried, reasoning = wrong
dependencies, unknown parameters, use before definition and missing or unnecessary steps; ``wrong_value``
(a consistent chain with a wrong value) is a computation slip, hence calculation; ``redefined`` and
``not_query_at_end`` are the "unnecessary / missing steps" of a plan, hence reasoning. ``unparseable`` and
``wrong_answer`` say nothing about either skill and go to a third type, ``format``.

A solution is classified by its **first** mistake in solution order (the checker lists mistakes sentence by
sentence, then ``not_query_at_end``, then ``wrong_answer``: ``Verdict.mistakes[0]``), so each wrong solution
counts once. A solution judged wrong whose chain the checker accepts (only the text after ``[ANSWER]``
differs, or is missing) has no checker mistake; it is counted as ``format`` (pseudo-kind
:data:`ANSWER_MISMATCH`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from probekit.igsm.check import MISTAKE_KINDS

CALCULATION = "calculation"
REASONING = "reasoning"
FORMAT = "format"
TYPES = (CALCULATION, REASONING, FORMAT)
ANSWER_MISMATCH = "answer_mismatch"
"""Pseudo-kind of a wrong solution with no checker mistake (the emitted ``[ANSWER]`` is wrong or missing)."""

ERROR_TYPES: dict[str, str] = {
    "arithmetic_error": CALCULATION,
    "wrong_value_carried": CALCULATION,
    "wrong_value": CALCULATION,
    "wrong_dependency_set": REASONING,
    "unknown_parameter": REASONING,
    "used_before_defined": REASONING,
    "redefined": REASONING,
    "not_query_at_end": REASONING,
    "unparseable": FORMAT,
    "wrong_answer": FORMAT,
    ANSWER_MISMATCH: FORMAT,
}
"""Checker mistake kind -> error type (see the module docstring)."""


def error_type(kind: str) -> str:
    """The error type (``calculation``, ``reasoning`` or ``format``) of a checker mistake kind.

    Raises ``ValueError`` for a kind the table does not know (a new checker kind must be classified here).
    """
    try:
        return ERROR_TYPES[kind]
    except KeyError:
        raise ValueError(
            f"no error type for mistake kind {kind!r}; known kinds: {', '.join(ERROR_TYPES)} "
            "(add it to probekit.evaluate.errors.ERROR_TYPES)"
        ) from None


def _mistakes(verdict) -> Sequence:
    return verdict["mistakes"] if isinstance(verdict, Mapping) else verdict.mistakes


def _kind(mistake) -> str:
    return mistake["kind"] if isinstance(mistake, Mapping) else mistake.kind


def first_mistake_kind(verdict, correct: bool | None = None) -> str | None:
    """The kind of a verdict's first mistake; :data:`ANSWER_MISMATCH` for a wrong solution without one.

    ``verdict`` is a :class:`~probekit.igsm.check.Verdict` or its ``to_dict()``; ``correct`` is the judged
    correctness (checker **and** emitted answer, :func:`probekit.evaluate.judge.judge`), None to go by the
    verdict alone. Returns None for a correct solution.
    """
    mistakes = _mistakes(verdict)
    if mistakes:
        return _kind(mistakes[0])
    if correct is False:
        return ANSWER_MISMATCH
    return None


def error_type_counts(verdicts: Iterable, correct: Sequence[bool] | None = None) -> dict[str, int]:
    """``{"calculation": n, "reasoning": n, "format": n}``: wrong solutions by the type of their first mistake.

    ``correct`` (one per verdict) adds the wrong solutions whose chain the checker accepts as ``format``;
    without it only verdicts with mistakes count. Every type has a key (zeros included).
    """
    verdicts = list(verdicts)
    if correct is not None and len(correct) != len(verdicts):
        raise ValueError(f"{len(correct)} correctness flags for {len(verdicts)} verdicts")
    counts = dict.fromkeys(TYPES, 0)
    for i, verdict in enumerate(verdicts):
        kind = first_mistake_kind(verdict, None if correct is None else bool(correct[i]))
        if kind is not None and (correct is None or not correct[i]):
            counts[error_type(kind)] += 1
    return counts


def calculation_share(counts: Mapping[str, int]) -> float:
    """``calculation / (calculation + reasoning)`` of :func:`error_type_counts` (NaN when both are 0)."""
    total = counts.get(CALCULATION, 0) + counts.get(REASONING, 0)
    return counts.get(CALCULATION, 0) / total if total else float("nan")


def unmapped_kinds() -> list[str]:
    """Checker mistake kinds (``MISTAKE_KINDS``) without an error type: must be empty (a test checks it)."""
    return [kind for kind in MISTAKE_KINDS if kind not in ERROR_TYPES]
