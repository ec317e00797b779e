"""Minimal pairs: a problem and a counterfactual twin that differs from it in one controlled way.

Three kinds of change (issue 17, "causal tests of what the probes read"):

- ``value``: one statement's random constant is replaced by another number (every number 0..22 is one
  token, so the texts always have the same length). Consequences: the parameters whose values change (old
  and new value) and the old / new answer; when no replacement changes the answer (the constant is
  unnecessary, or the change is absorbed mod 23) ``answer_changed`` is false and ``reason`` says why.
- ``dependency``: one reference of one statement is rewired to another parameter that does not depend on the
  statement's parameter (the graph stays acyclic). Consequences: the statement (old and new references),
  the ``dep`` pairs and ``nece`` parameters that flip (from :func:`~probekit.igsm.labels.compute_labels` of both
  members) and the op of both members. A rewiring that flips at least one ``dep`` label is preferred.
- ``query``: a different question over the same statements. Consequences: old / new query parameter, the
  parameters that become / stop being necessary, old / new answer and op.

Both members are ordinary problems: the twin's values, reference solution (same symbols as the clean
solution where they can be recovered; the solution order is the clean order kept where the graph allows)
and answer are recomputed with the generator's machinery, so ``probekit check`` accepts its solution and
``probekit labels`` labels it. Each member is a generate-style record (``problem``, ``question``,
``solution``, ``answer``, ``op``, ``ip``, ``categories``, ``structure``, ``question_param``; the clean record's
other fields are copied).

Token alignment uses :func:`probekit.tokenizer.default_tokenizer` on the ``problem`` text: the replacement
is drawn among the ones of the same token length (a parameter name or question with as many tokens) and,
only where none exists, among the others. ``same_length`` says whether the two problem texts have the same
number of tokens; ``diff_spans`` gives, per member, the ``[start, end)`` token span outside which the two
token sequences are identical (common prefix and suffix removed). ``solution_same_length`` does the same
comparison for the reference solutions (value pairs can change the number of steps' digits only, which are
single tokens, so they keep the length; the other kinds generally change the solution).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from dataclasses import dataclass, field
from functools import cache

from probekit.igsm.check import defined_names
from probekit.igsm.generate import MAX_SOLUTION_SYMBOLS, problem_fields, record_seed
from probekit.igsm.labels import compute_labels
from probekit.igsm.parse import parse_problem
from probekit.igsm.problem import MOD, Param, Problem
from probekit.igsm.render import SYMBOLS, solution_text
from probekit.records import require

KINDS = ("value", "dependency", "query")


class PairError(ValueError):
    """The change of this kind is impossible for this problem (the message says why)."""


@dataclass(frozen=True)
class PairSpec:
    """What pairs to make: ``kind`` (``value``, ``dependency``, ``query`` or ``all``) and the ``seed`` that,
    with the record's position, draws the change."""

    kind: str = "all"
    seed: int = 0

    def __post_init__(self):
        if self.kind not in (*KINDS, "all"):
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or all, not {self.kind!r}")

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS if self.kind == "all" else (self.kind,)


@dataclass
class PairRecord:
    """One minimal pair; :meth:`to_dict` is the JSONL line of ``probekit pairs``."""

    kind: str
    clean: dict
    counterfactual: dict
    consequences: dict
    same_length: bool
    diff_spans: dict[str, list[list[int]]]
    solution_same_length: bool
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "clean": self.clean,
            "counterfactual": self.counterfactual,
            "consequences": self.consequences,
            "same_length": self.same_length,
            "diff_spans": self.diff_spans,
            "solution_same_length": self.solution_same_length,
            **self.extra,
        }


# ---------------------------------------------------------------------------- tokens
@cache
def _tokenizer():
    from probekit.tokenizer import default_tokenizer

    return default_tokenizer()


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` as strings: the word-level tokenizer's pieces (one token each), so that names
    outside the vocabulary (official samples) are counted and compared too."""
    return [piece for piece, _ in _tokenizer().tokenizer.pre_tokenizer.pre_tokenize_str(text)]


def n_tokens(text: str) -> int:
    return len(tokens(text))


def diff_spans(a: str, b: str) -> tuple[list[int], list[int]]:
    """Token spans ``[start, end)`` of ``a`` and ``b`` outside which their token sequences are identical."""
    ta, tb = tokens(a), tokens(b)
    p = 0
    while p < min(len(ta), len(tb)) and ta[p] == tb[p]:
        p += 1
    s = 0
    while s < min(len(ta), len(tb)) - p and ta[len(ta) - 1 - s] == tb[len(tb) - 1 - s]:
        s += 1
    return [p, len(ta) - s], [p, len(tb) - s]


# ---------------------------------------------------------------------------- members
@dataclass
class _Member:
    problem: Problem
    solution: str
    record: dict


def _symbols_of(solution: str) -> list[str]:
    """The solution's symbols in the order the renderer drew them (define symbol, then temporaries)."""
    out: list[str] = []
    for sentence in solution.rstrip(".").split(". "):
        parts = sentence.split("; ")
        out.append(parts[0].rsplit(" as ", 1)[-1])
        out += [part.split(" = ", 1)[0] for part in parts[1:-1]]
    return out


def _symbol_stream(used: list[str], rng: random.Random) -> list[str]:
    """``used`` first (deduplicated), then the other symbols in a random order."""
    head = list(dict.fromkeys(s for s in used if s in SYMBOLS))
    rest = [s for s in SYMBOLS if s not in head]
    rng.shuffle(rest)
    return head + rest


def _base_record(problem: Problem, solution: str, base: dict) -> dict:
    """``base`` with the fields that follow from ``problem`` and ``solution`` replaced."""
    return {**base, **problem_fields(problem, solution, base.get("format", "pq"))}


def _clean_member(source: dict | Problem, rng: random.Random) -> tuple[_Member, list[str]]:
    """The clean member and the symbol order its solution uses.

    A record's solution is kept when it is the reference solution of its problem (its symbols are then
    reused by the twin); otherwise (no solution, a model's solution) the member carries a freshly rendered
    reference solution in the necessary parameters' topological order.
    """
    if isinstance(source, Problem):
        order = source.reference_order
        problem = _with(source, solution_order=order)
        symbols = _symbol_stream([], rng)
        solution = solution_text(problem, order, iter(symbols))
        return _Member(problem, solution, _base_record(problem, solution, {"format": "pq"})), symbols
    require(source, "problem")
    fmt = source.get("format", "pq")
    if fmt not in ("pq", "qp"):
        raise ValueError(f"field 'format' must be 'pq' or 'qp', not {fmt!r}")
    parsed = parse_problem(source["problem"], source.get("categories"))
    given = source.get("solution")
    order = _solution_order(parsed, given) if isinstance(given, str) else []
    used: list[str] = _symbols_of(given) if isinstance(given, str) and order else []
    if not order:
        order = [p for p in parsed.topological_params if p in parsed.necessary]
    problem = _with(parsed, solution_order=order)
    symbols = _symbol_stream(used, rng)
    solution = solution_text(problem, order, iter(symbols))
    record = dict(source)
    record.update(_base_record(problem, solution, {**source, "format": fmt}))
    return _Member(problem, solution, record), symbols


def _solution_order(problem: Problem, solution: str) -> list[Param]:
    """The parameters ``solution`` defines, if they are the necessary ones in a topological order, else []."""
    by_name = {problem.name(p): p for p in problem.params}
    order = list(dict.fromkeys(by_name[n] for n in defined_names(solution) if n in by_name))
    return order if set(order) == problem.necessary and _is_topological(problem, order) else []


def _is_topological(problem: Problem, order: list[Param]) -> bool:
    seen: set[Param] = set()
    for p in order:
        if any(q not in seen for q in problem.parents[p]):
            return False
        seen.add(p)
    return True


def _with(problem: Problem, **changes) -> Problem:
    """A new ``Problem`` (fresh cached graphs and values) with ``changes`` applied."""
    return dataclasses.replace(problem, **changes)


def _stable_order(problem: Problem, previous: list[Param]) -> list[Param]:
    """A topological order of ``problem.necessary`` that keeps ``previous``'s order where the graph allows."""
    nodes = problem.necessary
    rank = {p: i for i, p in enumerate(previous)}
    topo = {p: i for i, p in enumerate(problem.topological_params)}
    key = {p: (rank.get(p, len(rank)), topo[p]) for p in nodes}
    indegree = {p: sum(q in nodes for q in problem.parents[p]) for p in nodes}
    succs: dict[Param, list[Param]] = {p: [] for p in nodes}
    for p in nodes:
        for q in problem.parents[p]:
            succs[q].append(p)
    heap = [(key[p], p) for p in nodes if indegree[p] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, p = heapq.heappop(heap)
        order.append(p)
        for s in succs[p]:
            indegree[s] -= 1
            if indegree[s] == 0:
                heapq.heappush(heap, (key[s], s))
    return order


def _twin(clean: _Member, symbols: list[str], **changes) -> _Member:
    problem = _with(clean.problem, **changes)
    problem.topological_params  # noqa: B018 - raises on a cycle
    problem = _with(problem, solution_order=_stable_order(problem, clean.problem.solution_order))
    if problem.op_count() > MAX_SOLUTION_SYMBOLS:
        raise PairError(f"the twin's op {problem.op_count()} exceeds {MAX_SOLUTION_SYMBOLS}")
    solution = solution_text(problem, problem.solution_order, iter(symbols))
    return _Member(problem, solution, _base_record(problem, solution, clean.record))


# ---------------------------------------------------------------------------- the three changes
def _value_twin(clean: _Member, symbols: list[str], rng: random.Random) -> tuple[_Member, dict]:
    problem = clean.problem
    with_constant = [p for p in problem.statement_order if problem.has_constant(p)]
    if not with_constant:
        raise PairError("no statement has a random constant")
    necessary = [p for p in with_constant if p in problem.necessary]
    rng.shuffle(necessary)
    others = [p for p in with_constant if p not in problem.necessary]
    rng.shuffle(others)
    fallback = None
    for param in necessary + others:
        st = problem.statements[param]
        low = 1 if st.outer == "mul" else 0
        values = [v for v in range(low, MOD) if v != st.constant]
        rng.shuffle(values)
        for value in values:
            twin = _twin(
                clean, symbols, statements={**problem.statements, param: dataclasses.replace(st, constant=value)}
            )
            if twin.problem.answer != problem.answer:
                return twin, _value_consequences(clean, twin, param, value, None)
            if fallback is None:
                fallback = (twin, param, value)
    assert fallback is not None
    twin, param, value = fallback
    reason = (
        "no constant of the problem is necessary"
        if not necessary
        else "no replacement of a constant changes the answer (absorbed mod 23)"
    )
    return twin, _value_consequences(clean, twin, param, value, reason)


def _value_consequences(clean: _Member, twin: _Member, param: Param, value: int, reason: str | None) -> dict:
    a, b = clean.problem, twin.problem
    changed = [
        {"param": a.name(p), "old": a.values[p], "new": b.values[p]} for p in a.params if a.values[p] != b.values[p]
    ]
    out = {
        "param": a.name(param),
        "necessary": param in a.necessary,
        "old_constant": a.statements[param].constant,
        "new_constant": value,
        "changed_values": changed,
        "old_answer": a.answer,
        "new_answer": b.answer,
        "answer_changed": a.answer != b.answer,
    }
    if reason:
        out["reason"] = reason
    return out


def _dependency_twin(clean: _Member, symbols: list[str], rng: random.Random) -> tuple[_Member, dict]:
    problem = clean.problem
    name_len = {p: n_tokens(problem.name(p)) for p in problem.params}
    descendants = {p: {q for q in problem.params if p in problem.ancestors[q]} for p in problem.params}
    options: list[tuple[int, Param, int, Param]] = []  # (rank, param, ref position, new ref)
    for param in problem.statement_order:
        st = problem.statements[param]
        for pos, old in enumerate(st.refs):
            for new in problem.params:
                if new == param or new in st.refs or new in descendants[param]:
                    continue
                refs = st.refs[:pos] + (new,) + st.refs[pos + 1 :]
                flips = _ancestors_of(problem, refs) != problem.ancestors[param]
                rank = (not flips) * 2 + (name_len[new] != name_len[old])
                options.append((rank, param, pos, new))
    if not options:
        raise PairError("no statement has a reference that can be rewired without a cycle")
    rng.shuffle(options)
    options.sort(key=lambda o: o[0])
    for _, param, pos, new in options:
        st = problem.statements[param]
        refs = st.refs[:pos] + (new,) + st.refs[pos + 1 :]
        try:
            twin = _twin(clean, symbols, statements={**problem.statements, param: dataclasses.replace(st, refs=refs)})
        except PairError:
            continue
        la, lb = compute_labels(problem, clean.solution), compute_labels(twin.problem, twin.solution)
        dep_a, dep_b = set(la.dep), set(lb.dep)
        return twin, {
            "param": problem.name(param),
            "old_refs": [problem.name(r) for r in st.refs],
            "new_refs": [problem.name(r) for r in refs],
            "old_ref": problem.name(st.refs[pos]),
            "new_ref": problem.name(new),
            "dep_added": sorted(list(x) for x in dep_b - dep_a),
            "dep_removed": sorted(list(x) for x in dep_a - dep_b),
            "nece_added": [n for n in lb.nece if n not in la.nece],
            "nece_removed": [n for n in la.nece if n not in lb.nece],
            "old_op": problem.op_count(),
            "new_op": twin.problem.op_count(),
            "old_answer": problem.answer,
            "new_answer": twin.problem.answer,
        }
    raise PairError("every rewiring gives a twin whose op exceeds the symbol budget")


def _ancestors_of(problem: Problem, refs: tuple[Param, ...]) -> frozenset[Param]:
    """The proper ancestors a statement with references ``refs`` gives its parameter."""
    acc: set[Param] = set()
    for q in refs:
        acc |= problem.ancestors[q] | {q}
    return frozenset(acc)


def _query_twin(clean: _Member, symbols: list[str], rng: random.Random) -> tuple[_Member, dict]:
    problem = clean.problem
    length = n_tokens(problem.question())
    candidates = [p for p in problem.params if p != problem.query]
    if not candidates:
        raise PairError("the problem has a single parameter")
    rng.shuffle(candidates)
    probe = _with(problem)
    candidates.sort(key=lambda p: n_tokens(_with(probe, query=p).question()) != length)
    for query in candidates:
        try:
            twin = _twin(clean, symbols, query=query)
        except PairError:
            continue
        a, b = problem.necessary, twin.problem.necessary
        return twin, {
            "old_query": problem.name(problem.query),
            "new_query": problem.name(query),
            "became_necessary": [problem.name(p) for p in problem.params if p in b - a],
            "stopped_necessary": [problem.name(p) for p in problem.params if p in a - b],
            "old_op": problem.op_count(),
            "new_op": twin.problem.op_count(),
            "old_answer": problem.answer,
            "new_answer": twin.problem.answer,
        }
    raise PairError("every other query gives a twin whose op exceeds the symbol budget")


_MAKERS = {"value": _value_twin, "dependency": _dependency_twin, "query": _query_twin}


# ---------------------------------------------------------------------------- entry points
def make_pair(source: dict | Problem, kind: str, seed: int = 0, index: int = 0) -> dict:
    """The minimal pair of ``kind`` for a generate-style record (or a ``Problem``), as a JSON-ready dict.

    The change is drawn from ``random.Random`` seeded by (seed, index, kind); raises :class:`PairError`
    when the change is impossible for this problem, ``ValueError`` / ``ParseError`` on a bad record.
    """
    if kind not in _MAKERS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    rng = random.Random(record_seed(seed, index) * 7 + KINDS.index(kind))
    clean, symbols = _clean_member(source, rng)
    twin, consequences = _MAKERS[kind](clean, symbols, rng)
    span_a, span_b = diff_spans(clean.record["problem"], twin.record["problem"])
    return PairRecord(
        kind=kind,
        clean=clean.record,
        counterfactual=twin.record,
        consequences=consequences,
        same_length=n_tokens(clean.record["problem"]) == n_tokens(twin.record["problem"]),
        diff_spans={"clean": [span_a], "counterfactual": [span_b]},
        solution_same_length=n_tokens(clean.solution) == n_tokens(twin.solution),
    ).to_dict()


def make_pairs(spec: PairSpec, source: dict | Problem, index: int = 0) -> list[dict]:
    """One line per kind of ``spec``: the pair, or ``{"kind", "index", "error"}`` where it cannot be made."""
    out = []
    for kind in spec.kinds:
        try:
            out.append(make_pair(source, kind, spec.seed, index))
        except Exception as err:  # noqa: BLE001 - a per-record error line, whatever the cause
            out.append({"kind": kind, "index": index, "error": f"{type(err).__name__}: {err}"})
    return out


@dataclass
class PairSummary:
    """Counts per kind for the ``pairs`` command's summary."""

    counts: dict = field(default_factory=dict)

    def add(self, line: dict) -> None:
        c = self.counts.setdefault(line.get("kind", "?"), {"pairs": 0, "same_length": 0, "errors": 0})
        if "error" in line:
            c["errors"] += 1
        else:
            c["pairs"] += 1
            c["same_length"] += bool(line["same_length"])

    def to_dict(self) -> dict:
        out = {}
        for kind, c in self.counts.items():
            share = c["same_length"] / c["pairs"] if c["pairs"] else None
            out[kind] = {**c, "same_length_share": share}
        return out
