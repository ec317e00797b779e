"""The ``Problem`` record: structure graph, dependency graph, values and the query of one iGSM problem.

Parameters are 4-tuples ``(kind, i, j, k)``, as in the paper's appendix D:

- instance ``(0, i, j, k)``: the number of item ``k`` of layer ``i+1`` inside each item ``j`` of layer ``i``;
  it exists when the structure graph has that edge, and one problem sentence states its value;
- abstract ``(1, i, j, k)`` with ``k > i``: the number of items of the *category* of layer ``k`` inside item
  ``j`` of layer ``i``; never stated, implied by the structure graph;
- ``RNG = (-1, 0, 0, 0)``: the source of the random constants.

All arithmetic is mod 23. The "whole template" (the graph the probe labels and the checker use) is the
problem's dependency graph plus, for every abstract parameter, the edges its definition implies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

Param = tuple[int, int, int, int]
INSTANCE, ABSTRACT = 0, 1
RNG: Param = (-1, 0, 0, 0)
MOD = 23


@dataclass(frozen=True)
class Statement:
    """The right-hand side of one problem sentence, ``The number of each X's Y equals ...``.

    ``refs`` are the referenced parameters in the order the sentence lists them. ``constant`` is the random
    constant when the RNG feeds the parameter; ``outer`` says how it combines with the references
    (``"add"``: "c more than E", ``"mul"``: "c times as much as E", ``None``: no references or no constant).
    ``inner`` combines the references: ``"diff"`` only for exactly two ("the difference of A and B"), else
    ``"sum"``.
    """

    refs: tuple[Param, ...]
    constant: int | None = None
    outer: str | None = None
    inner: str = "sum"

    def evaluate(self, values: dict[Param, int]) -> int:
        """The statement's value given the values of its references (mod 23)."""
        operands = [values[r] for r in self.refs]
        if not operands:
            return self.require_constant() % MOD
        inner = operands[0] - operands[1] if self.inner == "diff" else sum(operands)
        if self.outer == "add":
            inner += self.require_constant()
        elif self.outer == "mul":
            inner *= self.require_constant()
        return inner % MOD

    def require_constant(self) -> int:
        """``constant``, which a statement without references or with an ``outer`` operation must have."""
        if self.constant is None:
            raise ValueError(f"statement {self!r} needs a random constant but has none")
        return self.constant


@dataclass
class Problem:
    """One iGSM problem, independent of its English rendering.

    ``items[i]`` lists layer ``i``'s item names in generator order (abstract sums are written in this
    order); ``categories[i]`` is layer ``i``'s category name. ``edges`` is the structure graph as
    ``(i, j, k)`` triples (item ``j`` of layer ``i`` holds item ``k`` of layer ``i+1``). ``statements`` has one
    entry per edge, ``statement_order`` the order of the sentences in the text, and ``solution_order`` the
    necessary parameters in the order the reference solution defines them (query last).
    """

    categories: list[str]
    items: list[list[str]]
    edges: list[tuple[int, int, int]]
    statements: dict[Param, Statement]
    statement_order: list[Param]
    query: Param
    solution_order: list[Param] = field(default_factory=list)

    # ---------------------------------------------------------------- names
    @property
    def depth(self) -> int:
        return len(self.items)

    def name(self, param: Param) -> str:
        """The parameter as the solution writes it: ``"X's Y"`` (the problem text prefixes ``"each "``)."""
        kind, i, j, k = param
        tail = self.items[i + 1][k] if kind == INSTANCE else self.categories[k]
        return f"{self.items[i][j]}'s {tail}"

    def question(self) -> str:
        kind, i, j, k = self.query
        what = self.items[i + 1][k] if kind == INSTANCE else self.categories[k]
        return f"How many {what} does {self.items[i][j]} have?"

    # ---------------------------------------------------------------- graphs
    @cached_property
    def edge_set(self) -> frozenset[tuple[int, int, int]]:
        return frozenset(self.edges)

    @cached_property
    def children(self) -> dict[tuple[int, int], list[int]]:
        """(layer, item) -> child item indices in the next layer, in generator order."""
        kids: dict[tuple[int, int], list[int]] = {
            (i, j): [] for i in range(self.depth - 1) for j in range(len(self.items[i]))
        }
        for i, j, k in sorted(self.edges):
            kids[(i, j)].append(k)
        return kids

    @cached_property
    def params(self) -> list[Param]:
        """The problem's parameters: every stated instance parameter, then every abstract parameter.

        Instance pairs that are not structure edges are left out (they do not exist in the problem).
        """
        instance = [(INSTANCE, i, j, k) for i, j, k in sorted(self.edges)]
        abstract = [
            (ABSTRACT, i, j, k)
            for i in range(self.depth - 1)
            for j in range(len(self.items[i]))
            for k in range(i + 1, self.depth)
        ]
        return instance + abstract

    def structural_parents(self, param: Param) -> list[Param]:
        """The direct inputs of an abstract parameter, in the order its definition sums them."""
        _, i, j, k = param
        out: list[Param] = []
        for x in self.children[(i, j)]:
            out.append((INSTANCE, i, j, x))
            if k > i + 1:
                out.append((ABSTRACT, i + 1, x, k))
        return out

    @cached_property
    def parents(self) -> dict[Param, list[Param]]:
        """Direct predecessors of every parameter in the whole template, RNG excluded."""
        preds = {p: list(self.statements[p].refs) for p in self.params if p[0] == INSTANCE}
        for p in self.params:
            if p[0] == ABSTRACT:
                preds[p] = self.structural_parents(p)
        return preds

    @cached_property
    def values(self) -> dict[Param, int]:
        """The value (mod 23) of every parameter, in dependency order."""
        values: dict[Param, int] = {}
        for p in self.topological_params:
            if p[0] == INSTANCE:
                values[p] = self.statements[p].evaluate(values)
            else:
                _, i, j, k = p
                total = 0
                for x in self.children[(i, j)]:
                    inst = values[(INSTANCE, i, j, x)]
                    total += inst if k == i + 1 else inst * values[(ABSTRACT, i + 1, x, k)]
                values[p] = total % MOD
        return values

    @cached_property
    def topological_params(self) -> list[Param]:
        """All parameters in a deterministic dependency order (raises on a cycle)."""
        order: list[Param] = []
        state: dict[Param, int] = {}
        for root in self.params:
            if root in state:
                continue
            stack = [(root, iter(self.parents[root]))]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    state[node] = 2
                    order.append(node)
                elif state.get(nxt) == 1:
                    raise ValueError(f"dependency cycle through {self.name(nxt)!r}")
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(self.parents[nxt])))
        return order

    @cached_property
    def ancestors(self) -> dict[Param, frozenset[Param]]:
        """Proper ancestors of every parameter in the whole template (RNG excluded)."""
        anc: dict[Param, frozenset[Param]] = {}
        for p in self.topological_params:
            acc: set[Param] = set()
            for q in self.parents[p]:
                acc.add(q)
                acc |= anc[q]
            anc[p] = frozenset(acc)
        return anc

    @cached_property
    def necessary(self) -> frozenset[Param]:
        """The query and its ancestors: the parameters of the shortest solution."""
        return self.ancestors[self.query] | {self.query}

    @property
    def reference_order(self) -> list[Param]:
        """The order the reference solution defines the necessary parameters in: ``solution_order`` where the
        problem carries it (generated ones do; problems parsed from text or rebuilt from records do not), else
        the necessary parameters in ``topological_params`` order."""
        return list(self.solution_order) or [p for p in self.topological_params if p in self.necessary]

    def distance_to_query(self) -> dict[Param, int]:
        """Shortest number of dependency edges from each necessary parameter to the query (query: 0)."""
        dist = {self.query: 0}
        frontier = [self.query]
        while frontier:
            nxt = []
            for p in frontier:
                for q in self.parents[p]:
                    if q not in dist:
                        dist[q] = dist[p] + 1
                        nxt.append(q)
            frontier = nxt
        return dist

    def has_constant(self, param: Param) -> bool:
        return param[0] == INSTANCE and self.statements[param].constant is not None

    def op_cost(self, param: Param) -> int:
        """op(a) = max(1, in-degree - 1), the RNG edge counted (paper Definition D.1)."""
        indegree = len(self.parents[param]) + self.has_constant(param)
        return max(1, indegree - 1)

    def op_count(self, params=None) -> int:
        """Number of operations of the given parameters (default: the necessary ones)."""
        return sum(self.op_cost(p) for p in (self.necessary if params is None else params))

    @property
    def answer(self) -> int:
        return self.values[self.query]
