"""Solution parser and full-solution checker for iGSM chains of thought (detail level 0).

A solution is correct iff every sentence parses, every step's arithmetic is right mod 23, every referenced
symbol carries the value it was given, no symbol is used before its definition, no symbol or parameter is
defined twice, every defined name is a parameter of the problem, every defined parameter depends (through
its temporaries) on exactly its direct predecessors, every defined parameter has its true value, the last
defined parameter is the query and the last step's result is the answer. Correct parameters that the query
does not need are allowed and reported in ``Verdict.unnecessary``.

The parse follows the authors' ``true_correct`` (``official-samples.md`` section 5): strip one trailing
``"."``, split sentences on ``". "``, skip sentences that contain ``" BACK"``, split a sentence on ``"; "``.
Sentences with ``" BACK"`` are dropped before anything else and never appear in ``parse_solution``'s list.

Where probekit is stricter than the authors' checker:

| case                                                   | authors                          | probekit              |
|--------------------------------------------------------|----------------------------------|-----------------------|
| name is an instance pair that is not a structure edge  | accepted (no dependencies)       | `unknown_parameter`   |
| a parameter's value is not the problem's (wrong        | caught only if it reaches the    | `wrong_value`         |
| constant or operation, steps consistent)               | final answer                     |                       |
| `Define N as S` ended by `so T = ...`, `T != S`        | accepted (merge cuts 4 chars)    | `unparseable`         |
| text after a step's result, calculation without hint,  | parsed loosely, extra parts      | `unparseable`         |
| temporary that is a constant or a copy                 | ignored                          |                       |
| hint constant written as another value (`20 + u =      | not specified                    | `wrong_value_carried` |
| 21 + 5 = 3`)                                           |                                  |                       |

A sentence that does not parse makes the authors' whole parse fail; probekit marks that sentence
`unparseable` (it defines nothing) and keeps checking the others, so more mistakes are reported, with
the same verdict.

Reporting: mistakes are listed sentence by sentence, then ``not_query_at_end`` and ``wrong_answer``.
``wrong_value`` is reported only for a sentence with no other mistake (a parameter that uses a wrong value
consistently gets its own ``wrong_value``); ``wrong_dependency_set`` is skipped when a reference could not
be resolved. A parameter's dependency set is read through temporaries, including earlier sentences' ones.

Accepted step forms: temporaries ``"T = X op Y = n op m = r"``; the last part ``"so S = n"`` (constant),
``"so S = T = n"`` (copy) or ``"so S = X op Y = n op m = r"``; ``op`` is ``+``, ``-`` or ``*`` with one
space each side, ``X``/``Y`` are one ASCII letter or a number, numbers are ``0``..``22`` written plainly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from string import ascii_letters

from probekit.igsm.problem import MOD, Param, Problem

MISTAKE_KINDS = (
    "unparseable",
    "arithmetic_error",
    "wrong_value_carried",
    "unknown_parameter",
    "used_before_defined",
    "wrong_dependency_set",
    "wrong_value",
    "redefined",
    "not_query_at_end",
    "wrong_answer",
)

Operand = str | int  # a symbol (one ASCII letter) or a number literal 0..22

_NUMBERS = {str(n): n for n in range(MOD)}
_SYMBOLS = frozenset(ascii_letters)
_OPS = (" + ", " - ", " * ")


@dataclass(frozen=True)
class Step:
    """One computation ``target = ...``.

    ``op`` is ``"+"``, ``"-"``, ``"*"`` for a binary step and ``None`` for a constant (no operands) or a copy
    (one symbol operand). ``values`` are the numbers written for the operands; ``result`` the number written
    last.
    """

    target: str
    op: str | None
    operands: tuple[Operand, ...]
    values: tuple[int, ...]
    result: int


@dataclass(frozen=True)
class SolutionSentence:
    """One ``". "``-separated sentence: ``"Define NAME as S; (temporaries; )* so S = ..."``.

    ``name`` and ``symbol`` are filled whenever the ``Define`` part could be read, even if the rest could
    not; ``error`` is ``None`` exactly when the whole sentence parsed (then ``steps`` ends with the step
    that defines ``symbol``).
    """

    text: str
    name: str | None
    symbol: str | None
    steps: tuple[Step, ...]
    error: str | None


@dataclass(frozen=True)
class Mistake:
    """One thing wrong with a solution; ``param`` is the sentence's parameter name when one applies."""

    param: str | None
    kind: str
    detail: str


@dataclass(frozen=True)
class Verdict:
    """The checker's judgement of one solution.

    ``answer`` is the last sentence's result (``None`` when there is none or it did not parse).
    ``first_error`` is the ``param`` of the first mistake in solution order (sentence mistakes in sentence
    order, then ``not_query_at_end``, then ``wrong_answer``); it is ``None`` when the solution is correct or
    that first mistake names no parameter.
    """

    correct: bool
    answer: int | None
    expected_answer: int
    first_error: str | None
    mistakes: tuple[Mistake, ...]
    unnecessary: tuple[str, ...]
    first_error_sentence: int | None = None  # 0-based; = n_sentences when only the ending is wrong
    n_sentences: int = 0

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "correct": self.correct,
            "answer": self.answer,
            "expected_answer": self.expected_answer,
            "first_error": self.first_error,
            "mistakes": [{"param": m.param, "kind": m.kind, "detail": m.detail} for m in self.mistakes],
            "unnecessary": list(self.unnecessary),
            "first_error_sentence": self.first_error_sentence,
            "n_sentences": self.n_sentences,
        }


# ---------------------------------------------------------------------------------------------- parsing
class _ParseError(Exception):
    pass


def parse_solution(text: str) -> list[SolutionSentence]:
    """Split a solution into sentences and parse each one; never raises (bad sentences carry ``error``)."""
    body = text.strip()
    if body.endswith("."):
        body = body[:-1]
    if not body:
        return []
    return [_parse_sentence(s) for s in body.split(". ") if " BACK" not in s]


def defined_names(text: str) -> list[str | None]:
    """Per sentence of ``text``, the parameter name it defines (``None`` when the sentence is unparseable)."""
    return [s.name if s.error is None else None for s in parse_solution(text)]


def _parse_sentence(text: str) -> SolutionSentence:
    parts = text.split("; ")
    name = symbol = None
    try:
        name, symbol = _parse_define(parts[0])
        if len(parts) < 2:
            raise _ParseError("no 'so' part")
        steps = [_parse_temporary(p) for p in parts[1:-1]]
        steps.append(_parse_final(parts[-1], symbol))
    except _ParseError as err:
        return SolutionSentence(text, name, symbol, (), str(err))
    return SolutionSentence(text, name, symbol, tuple(steps), None)


def _parse_define(part: str) -> tuple[str, str]:
    if not part.startswith("Define "):
        raise _ParseError(f"expected 'Define NAME as S', got {part!r}")
    name, sep, symbol = part[7:].rpartition(" as ")
    if not sep or not name:
        raise _ParseError(f"expected 'Define NAME as S', got {part!r}")
    return name, _symbol(symbol)


def _parse_temporary(part: str) -> Step:
    target, sep, rhs = part.partition(" = ")
    if not sep:
        raise _ParseError(f"expected 'T = X op Y = n op m = r', got {part!r}")
    step = _parse_rhs(_symbol(target), rhs)
    if step.op is None:
        raise _ParseError(f"a temporary must be a binary step, got {part!r}")
    return step


def _parse_final(part: str, symbol: str) -> Step:
    if not part.startswith("so "):
        raise _ParseError(f"expected 'so {symbol} = ...', got {part!r}")
    target, sep, rhs = part[3:].partition(" = ")
    if not sep:
        raise _ParseError(f"expected 'so {symbol} = ...', got {part!r}")
    if target != symbol:
        raise _ParseError(f"'so {target}' does not match the defined symbol {symbol!r}")
    return _parse_rhs(symbol, rhs)


def _parse_rhs(target: str, rhs: str) -> Step:
    pieces = rhs.split(" = ")
    if len(pieces) == 1:
        return Step(target, None, (), (), _number(pieces[0]))
    if len(pieces) == 2:
        value = _number(pieces[1])
        return Step(target, None, (_symbol(pieces[0]),), (value,), value)
    if len(pieces) == 3:
        op, x, y = _split_binary(pieces[0])
        value_op, n, m = _split_binary(pieces[1])
        if value_op != op:
            raise _ParseError(f"operator of {pieces[0]!r} and {pieces[1]!r} differ")
        return Step(target, op, (_operand(x), _operand(y)), (_number(n), _number(m)), _number(pieces[2]))
    raise _ParseError(f"cannot read step {target} = {rhs!r}")


def _split_binary(text: str) -> tuple[str, str, str]:
    for op in _OPS:
        left, sep, right = text.partition(op)
        if sep:
            return op[1], left, right
    raise _ParseError(f"expected 'a op b', got {text!r}")


def _symbol(text: str) -> str:
    if text not in _SYMBOLS:
        raise _ParseError(f"{text!r} is not a one-letter symbol")
    return text


def _number(text: str) -> int:
    value = _NUMBERS.get(text)
    if value is None:
        raise _ParseError(f"{text!r} is not a number 0..22")
    return value


def _operand(text: str) -> Operand:
    value = _NUMBERS.get(text)
    return value if value is not None else _symbol(text)


# --------------------------------------------------------------------------------------------- checking
@dataclass(frozen=True)
class _Context:
    """What the checker needs from a problem, keyed by parameter name."""

    params: dict[str, Param]
    parents: dict[str, frozenset[str]]
    values: dict[str, int]
    necessary: frozenset[str]
    query: str
    answer: int


_CONTEXTS: dict[int, _Context] = {}


def _context(problem: Problem) -> _Context:
    """The problem's ``_Context``, built once per live ``Problem`` object."""
    key = id(problem)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        name = problem.name
        ctx = _Context(
            params={name(p): p for p in problem.params},
            parents={name(p): frozenset(name(q) for q in problem.parents[p]) for p in problem.params},
            values={name(p): v for p, v in problem.values.items()},
            necessary=frozenset(name(p) for p in problem.necessary),
            query=name(problem.query),
            answer=problem.answer,
        )
        _CONTEXTS[key] = ctx
        weakref.finalize(problem, _CONTEXTS.pop, key, None)
    return ctx


# symbol -> (written value, names of the parameters it stands on; None when that is unknown)
_Symbols = dict[str, tuple[int, frozenset[str] | None]]


def check_solution(problem: Problem, solution: str) -> Verdict:
    """Judge a whole solution against ``problem``; see the module docstring for the rules."""
    ctx = _context(problem)
    sentences = parse_solution(solution)
    symbols: _Symbols = {}
    defined: set[str] = set()
    mistakes: list[Mistake] = []
    unnecessary: list[str] = []
    last_name = None
    first_bad: int | None = None
    if not sentences:
        mistakes.append(Mistake(None, "unparseable", "no sentence"))
    for i, sentence in enumerate(sentences):
        if sentence.error is not None:
            mistakes.append(Mistake(sentence.name, "unparseable", sentence.error))
            first_bad = i if first_bad is None else first_bad
            continue
        name = _defined_name(sentence)
        found = _check_sentence(ctx, sentence, symbols, defined)
        if found and first_bad is None:
            first_bad = i
        mistakes.extend(Mistake(name, kind, detail) for kind, detail in found)
        last_name = name
        if not found and name not in ctx.necessary:
            unnecessary.append(name)
    last = sentences[-1] if sentences else None
    answer = last.steps[-1].result if last is not None and last.error is None else None
    if last_name != ctx.query:
        mistakes.append(Mistake(last_name, "not_query_at_end", f"last defined {last_name!r}, query is {ctx.query!r}"))
    if answer != ctx.answer:
        mistakes.append(Mistake(None, "wrong_answer", f"answer {answer}, expected {ctx.answer}"))
    if mistakes and first_bad is None:
        first_bad = len(sentences)  # every sentence is right; the solution stops early or ends wrongly
    return Verdict(
        correct=not mistakes,
        answer=answer,
        expected_answer=ctx.answer,
        first_error=mistakes[0].param if mistakes else None,
        mistakes=tuple(mistakes),
        unnecessary=tuple(unnecessary),
        first_error_sentence=first_bad,
        n_sentences=len(sentences),
    )


def _defined_name(sentence: SolutionSentence) -> str:
    """The parameter a fully parsed sentence defines (its ``Define`` part was read, so it has a name)."""
    if sentence.name is None:
        raise ValueError(f"sentence {sentence.text!r} has no parameter name; only parsed sentences are checked")
    return sentence.name


def _check_sentence(
    ctx: _Context, sentence: SolutionSentence, symbols: _Symbols, defined: set[str]
) -> list[tuple[str, str]]:
    """Check one parsed sentence, define its symbols, and return its (kind, detail) issues."""
    name = _defined_name(sentence)
    issues: list[tuple[str, str]] = []
    known = name in ctx.params
    if not known:
        issues.append(("unknown_parameter", f"{name!r} is not a parameter of the problem"))
    elif name in defined:
        issues.append(("redefined", f"parameter {name!r} defined twice"))
    defined.add(name)
    deps: frozenset[str] | None = frozenset()
    for step in sentence.steps:
        deps = _check_step(step, symbols, issues)
        symbols[step.target] = (step.result, deps)
    final = sentence.steps[-1]
    symbols[final.target] = (final.result, frozenset((name,)))
    if known and deps is not None and deps != ctx.parents[name]:
        missing = ", ".join(sorted(ctx.parents[name] - deps)) or "-"
        extra = ", ".join(sorted(deps - ctx.parents[name])) or "-"
        issues.append(("wrong_dependency_set", f"missing: {missing}; not required: {extra}"))
    if known and not issues and final.result != ctx.values[name]:
        issues.append(("wrong_value", f"{name!r} = {final.result}, true value {ctx.values[name]}"))
    return issues


def _check_step(step: Step, symbols: _Symbols, issues: list[tuple[str, str]]) -> frozenset[str] | None:
    """Check one step's references and arithmetic; return the parameters it stands on (None if unknown)."""
    deps: set[str] = set()
    resolved = True
    for operand, value in zip(step.operands, step.values):
        if isinstance(operand, int):
            if value != operand:
                issues.append(("wrong_value_carried", f"constant {operand} written as {value}"))
            continue
        entry = symbols.get(operand)
        if entry is None:
            issues.append(("used_before_defined", f"symbol {operand} used before its definition"))
            resolved = False
            continue
        given, operand_deps = entry
        if value != given:
            issues.append(("wrong_value_carried", f"{operand} carries {value}, but was given {given}"))
        if operand_deps is None:
            resolved = False
        else:
            deps |= operand_deps
    if step.op is not None:
        x, y = step.values
        true = _apply(step.op, x, y)
        if true != step.result:
            issues.append(("arithmetic_error", f"{x} {step.op} {y} = {step.result}, mod 23 it is {true}"))
    if step.target in symbols:
        issues.append(("redefined", f"symbol {step.target} defined twice"))
    return frozenset(deps) if resolved else None


def _apply(op: str, x: int, y: int) -> int:
    if op == "+":
        return (x + y) % MOD
    if op == "-":
        return (x - y) % MOD
    return (x * y) % MOD
