"""Position roles of a patching input (no torch): which tokens are the changed statement, the other statements,
the question, and the solution so far.

A patching input is ``[EOS] [PROBLEM] problem [SOLUTION] solution-prefix`` (:meth:`IGSMTokenizer.prompt_ids`
followed by the reference solution's first tokens). The problem text (statements and question, pq or qp order)
is cut into *sentences* at its ``.`` and ``?`` tokens (each sentence keeps its final punctuation; names never
hold punctuation); the sentence ending in ``?`` is the question. Roles (:data:`ROLES`) partition the positions:

- ``changed``: every token of the sentence(s) (statement or question) that overlap the pair's diff span (the
  token span outside which the clean and counterfactual problem texts are identical);
- ``other_statements``: the tokens of the other statements;
- ``question``: the question's tokens (empty when the question is the changed sentence: query pairs);
- ``solution``: the solution prefix so far, with the separators ``[EOS] [PROBLEM]`` (positions 0, 1) and
  ``[SOLUTION]``. Activations at positions before the diff span are the same in both runs (the model is causal),
  so patching the leading separators never changes anything.

``all`` (:data:`ALL`) is every position. Problem token ``j`` sits at input position ``j + PROBLEM_OFFSET``.
"""

from __future__ import annotations

from collections.abc import Sequence

ROLES: tuple[str, ...] = ("changed", "other_statements", "question", "solution")
"""The roles that partition the positions of a patching input."""
ALL = "all"
"""The pseudo-role of every position."""
ROLE_CHOICES: tuple[str, ...] = (*ROLES, ALL)
PROBLEM_OFFSET = 2
"""Input position of the problem's first token (after ``[EOS] [PROBLEM]``)."""
_ENDS = {".": "statement", "?": "question"}


def sentences(pieces: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` token spans ``[start, end)`` of the sentences of a problem's token pieces (as
    :func:`probekit.igsm.pairs.tokens` gives them), ``kind`` ``statement`` or ``question``. A trailing
    stretch without final punctuation counts as a statement."""
    out, start = [], 0
    for i, piece in enumerate(pieces):
        kind = _ENDS.get(piece)
        if kind is not None:
            out.append((start, i + 1, kind))
            start = i + 1
    if start < len(pieces):
        out.append((start, len(pieces), "statement"))
    return out


def problem_roles(pieces: Sequence[str], diff_span: Sequence[int] | None) -> list[str]:
    """The role of every problem token: ``changed`` for the sentences overlapping ``diff_span`` (``[start,
    end)``; an empty span ``[p, p]`` marks the sentence holding token ``p``, an insertion point), else
    ``question`` / ``other_statements``."""
    roles = [""] * len(pieces)
    lo, hi = (int(diff_span[0]), int(diff_span[1])) if diff_span is not None else (-1, -1)
    for start, end, kind in sentences(pieces):
        if diff_span is not None and (start < hi and lo < end or (lo == hi and start <= lo < end)):
            role = "changed"
        else:
            role = "question" if kind == "question" else "other_statements"
        roles[start:end] = [role] * (end - start)
    return roles


def input_roles(pieces: Sequence[str], diff_span: Sequence[int] | None, length: int) -> list[str]:
    """The role of every position of a patching input of ``length`` tokens whose problem has token ``pieces``:
    ``solution`` for the separators and the solution prefix, :func:`problem_roles` for the problem's tokens."""
    n = len(pieces)
    if length < n + PROBLEM_OFFSET + 1:
        raise ValueError(f"an input of {length} tokens cannot hold a problem of {n} tokens and its separators")
    roles = ["solution"] * length
    roles[PROBLEM_OFFSET : PROBLEM_OFFSET + n] = problem_roles(pieces, diff_span)
    return roles


def role_mask(roles: Sequence[str], role: str) -> list[bool]:
    """Which positions have ``role`` (``all``: every one)."""
    if role not in ROLE_CHOICES:
        raise ValueError(f"role must be one of {', '.join(ROLE_CHOICES)}, not {role!r}")
    return [True] * len(roles) if role == ALL else [r == role for r in roles]
