"""Judging one generated solution with the full-solution checker (no answer matching alone).

A generated solution is **correct** iff ``check_solution(problem, solution).correct`` (every sentence parses,
every step's arithmetic and dependency set is right, the last defined parameter is the query and its value is
the answer) **and** the answer the model emitted after ``[ANSWER]`` equals the true answer (as text, after
stripping spaces). Both halves are needed: the checker judges the chain of thought, the ``[ANSWER]`` part is
what an answer-matching evaluation would read.

The first wrong sentence is the checker's own ``Verdict.first_error_sentence``.
"""

from __future__ import annotations

from probekit.igsm.check import check_solution
from probekit.igsm.problem import Problem


def judge(problem: Problem, solution: str, emitted_answer: str | None) -> dict:
    """The verdict on one generated solution, as plain data.

    Keys: ``correct`` (checker correct and emitted answer right), ``verdict`` (``Verdict.to_dict()``),
    ``answer_ok`` (the ``[ANSWER]`` text equals the true answer), ``first_error_index`` (None when correct),
    ``n_sentences`` and ``reference_sentences`` (the reference solution's: one per necessary parameter).
    """
    verdict = check_solution(problem, solution)
    answer_ok = emitted_answer is not None and emitted_answer.strip() == str(problem.answer)
    correct = verdict.correct and answer_ok
    if correct:
        first = None
    elif verdict.first_error_sentence is None:  # the chain is right, only the emitted answer is wrong
        first = verdict.n_sentences
    else:
        first = verdict.first_error_sentence
    return {
        "correct": correct,
        "answer_ok": answer_ok,
        "verdict": verdict.to_dict(),
        "first_error_index": first,
        "n_sentences": verdict.n_sentences,
        "reference_sentences": len(problem.necessary),
    }
