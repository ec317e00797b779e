"""``Problem`` -> English: problem sentences, the question, the prompt (pq / qp) and the solution.

The grammar is the original authors' (``../shared/spec/official-samples.md`` sections 2 and 3):

- statement: ``The number of each X's Y equals <rhs>``, where ``<rhs>`` is a constant, a reference list
  (one reference; "the sum of A and B"; "the difference of A and B"; "the sum of A, B and C"), or
  "c more than <list>" / "c times as much as <list>";
- solution sentence: ``Define X's Y as s; <temporaries>; so s = ...``, one binary operation per step, sums
  folded left, temporaries in post-order, each step ``sym = x op y = vx op vy = result``.

The same renderer writes the solution *template* (names replaced by their type, numbers by 0, symbols by
a, b, c... in order of first appearance) whose hash splits train from test templates.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterator
from dataclasses import dataclass

from probekit.igsm.problem import ABSTRACT, INSTANCE, MOD, Param, Problem

SYMBOLS = string.ascii_lowercase + string.ascii_uppercase
HASH_BINS = 23
TRAIN_BINS = frozenset(range(0, 16))  # the released code's split: train bins 0..15, test bins 16..22
TEST_BINS = frozenset(range(16, 23))
SPLIT_BINS = {"train": TRAIN_BINS, "test": TEST_BINS, "all": frozenset(range(HASH_BINS))}
_OP_SIGN = {"add": " + ", "diff": " - ", "mul": " * "}


# ------------------------------------------------------------------------ problem text
def reference_phrase(problem: Problem, param: Param) -> str:
    return "each " + problem.name(param)


def _reference_list(problem: Problem, refs: tuple[Param, ...], inner: str) -> str:
    names = [reference_phrase(problem, r) for r in refs]
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        word = "difference" if inner == "diff" else "sum"
        return f"the {word} of {names[0]} and {names[1]}"
    return "the sum of " + ", ".join(names[:-1]) + " and " + names[-1]


def statement_text(problem: Problem, param: Param) -> str:
    """One problem sentence (without the final period)."""
    st = problem.statements[param]
    head = f"The number of {reference_phrase(problem, param)} equals "
    if not st.refs:
        return head + str(st.constant)
    body = _reference_list(problem, st.refs, st.inner)
    if st.outer == "add":
        return head + f"{st.constant} more than {body}"
    if st.outer == "mul":
        return head + f"{st.constant} times as much as {body}"
    return head + body


def statements_text(problem: Problem) -> str:
    """The problem statements in text order: ``"S1. S2. ... Sn."``."""
    return ". ".join(statement_text(problem, p) for p in problem.statement_order) + "."


def prompt_text(problem: Problem, fmt: str = "pq") -> str:
    """What the model sees before the solution: statements then question (pq) or the reverse (qp)."""
    if fmt == "pq":
        return statements_text(problem) + " " + problem.question()
    if fmt == "qp":
        return problem.question() + " " + statements_text(problem)
    raise ValueError(f"format must be 'pq' or 'qp', not {fmt!r}")


# ------------------------------------------------------------------------ solution text
@dataclass(frozen=True)
class _Ref:
    param: Param


@dataclass(frozen=True)
class _Const:
    value: int


@dataclass(frozen=True)
class _Op:
    op: str  # add | diff | mul
    left: object
    right: object


def _fold_sum(nodes: list) -> object:
    node = nodes[0]
    for nxt in nodes[1:]:
        node = _Op("add", node, nxt)
    return node


def definition_tree(problem: Problem, param: Param):
    """The binary expression that defines ``param`` (the shape the reference solution writes)."""
    if param[0] == INSTANCE:
        st = problem.statements[param]
        if not st.refs:
            return _Const(st.require_constant())
        refs = [_Ref(r) for r in st.refs]
        inner = _Op("diff", *refs) if st.inner == "diff" and len(refs) == 2 else _fold_sum(refs)
        return _Op(st.outer, _Const(st.require_constant()), inner) if st.outer else inner
    _, i, j, k = param
    kids = problem.children[(i, j)]
    if not kids:
        return _Const(0)
    if k == i + 1:
        return _fold_sum([_Ref((INSTANCE, i, j, x)) for x in kids])
    return _fold_sum([_Op("mul", _Ref((INSTANCE, i, j, x)), _Ref((ABSTRACT, i + 1, x, k))) for x in kids])


class _SolutionWriter:
    """Writes solution sentences; ``sketch=True`` writes the template used by the train/test hash."""

    def __init__(self, problem: Problem, symbols: Iterator[str], sketch: bool = False):
        self.problem, self.symbols, self.sketch = problem, symbols, sketch
        self.symbol_of: dict[Param, str] = {}
        self.value_of = problem.values

    def _num(self, v: int) -> str:
        return "0" if self.sketch else str(v)

    def _operand(self, node, steps: list[str]) -> tuple[str, int]:
        """Symbol or number text and value of a node, emitting temporaries for inner operations."""
        if isinstance(node, _Ref):
            return self.symbol_of[node.param], self.value_of[node.param]
        if isinstance(node, _Const):
            return self._num(node.value), node.value
        text, value = self._operation(node, steps)
        sym = next(self.symbols)
        steps.append(f"{sym} = {text}")
        return sym, value

    def _operation(self, node: _Op, steps: list[str]) -> tuple[str, int]:
        lt, lv = self._operand(node.left, steps)
        rt, rv = self._operand(node.right, steps)
        value = (lv - rv if node.op == "diff" else lv * rv if node.op == "mul" else lv + rv) % MOD
        sign = _OP_SIGN[node.op]
        return f"{lt}{sign}{rt} = {self._num(lv)}{sign}{self._num(rv)} = {self._num(value)}", value

    def sentence(self, param: Param) -> str:
        sym = next(self.symbols)
        kind = "Inst" if param[0] == INSTANCE else "Inter"
        name = kind if self.sketch else self.problem.name(param)
        tree = definition_tree(self.problem, param)
        steps: list[str] = []
        if isinstance(tree, _Op):
            final, _ = self._operation(tree, steps)
        else:
            final, value = self._operand(tree, steps)
            if isinstance(tree, _Ref):
                final = f"{final} = {self._num(value)}"
        self.symbol_of[param] = sym
        return "; ".join([f"Define {name} as {sym}", *steps, f"so {sym} = {final}"])


def solution_text(problem: Problem, order: list[Param], symbols: Iterator[str]) -> str:
    """The chain of thought defining ``order`` (query last); ``symbols`` yields fresh letters."""
    writer = _SolutionWriter(problem, symbols)
    return ". ".join(writer.sentence(p) for p in order) + "."


def template_bin(problem: Problem, order: list[Param]) -> int:
    """Hash bin (0..22) of the solution template: SHA-256 of the sketch, mod 23 (paper fn. 11).

    The sketch is byte for byte the authors' (``to_sketch``): the solution with its leading space and
    final period, names replaced by ``Inst`` / ``Inter``, numbers by ``0``, ``;`` by ``.`` and symbols
    renamed a, b, c... by first appearance; so a template falls in the same bin as in their generator.
    """
    return int(template_key(problem, order), 16) % HASH_BINS


def template_key(problem: Problem, order: list[Param]) -> str:
    """SHA-256 (hex) of the solution template (the sketch of :func:`template_bin`): equal for two problems iff
    their solutions share a template; :func:`template_bin` is this number mod 23."""
    writer = _SolutionWriter(problem, iter(SYMBOLS), sketch=True)
    sketch = " " + ". ".join(writer.sentence(p) for p in order).replace(";", ".") + "."
    return hashlib.sha256(sketch.encode()).hexdigest()
