"""Draw iGSM problems: the paper's structure graph, dependency graph steps A to E, values and text.

The procedure follows the paper's appendix D as the authors' released generator implements it, so that
the distributions of op, ip and of the graphs match theirs (``../shared/spec/official-opip.json``):

1. difficulty knobs (the "light" style used for pretraining data): target op ``s`` = min of two uniform
   draws in 1..max_op (or forced), ``n`` = max of two draws in 1..s, ``m`` uniform in n..s, depth and widths
   from a softmax that favours larger graphs for larger ``s``, edge count ``e`` = min of two draws;
2. structure graph G_s (layer sizes, one parent per lower item, then random extra edges);
3. step A: abstract parameters chosen from the highest level that still fits the budget ``n``;
   step B: ``m - n`` extra necessary instance parameters;
4. step C: the topological order Topo built backwards from the query, adding edges so that every
   parameter is necessary; step D: in-degrees raised so that op(G_nece) = s; step E: every remaining
   instance parameter added with random parents (G_d);
5. values mod 23 and sentence shapes drawn per statement; sentences fully shuffled.

A problem is kept only when its op equals the target and its solution template hashes into the split's
bins (train 0..15, test 16..22). Rejection on the target op is done without waste: draws of ``s`` below
the target can never reach it (op <= s), so ``s`` is drawn from its distribution conditioned on
``s >= target``, which leaves the distribution of accepted problems unchanged.

Every record is a pure function of (config, seed, index): ``random.Random`` is seeded from
SHA-256(f"{seed}:{index}") exactly as the official samples' ``rng_seed``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from probekit.igsm.presets import Preset, resolve_preset
from probekit.igsm.problem import ABSTRACT, INSTANCE, RNG, Param, Problem, Statement
from probekit.igsm.render import (
    SPLIT_BINS,
    SYMBOLS,
    prompt_text,
    solution_text,
    template_bin,
)
from probekit.igsm.world import World, load_world

MAX_PARAMS_PER_SENTENCE = 4
TRIES_PER_DRAW = 1000  # the authors' try_num: structure re-draws with the same knobs
MAX_SOLUTION_SYMBOLS = len(SYMBOLS)  # one fresh letter per step, so op <= 52
MAX_DRAWS = 200_000


@dataclass(frozen=True)
class GenerationConfig:
    """What to generate. ``preset`` names the family (``med``, ``hard`` or a restriction such as ``med-op4-ip12``,
    :func:`probekit.igsm.presets.resolve_preset`); ``op`` forces the op count (eval sets "op = K"); ``reask``
    re-asks a new query."""

    preset: str = "med"
    op: int | None = None
    format: str = "pq"
    reask: bool = False
    split: str = "train"
    seed: int = 0

    def __post_init__(self):
        resolve_preset(self.preset)  # a base or a restricted family (raises ValueError)
        if self.format not in ("pq", "qp"):
            raise ValueError(f"format must be 'pq' or 'qp', not {self.format!r}")
        if self.split not in SPLIT_BINS:
            raise ValueError(f"split must be one of {sorted(SPLIT_BINS)}, not {self.split!r}")
        if self.op is not None and not 1 <= self.op <= MAX_SOLUTION_SYMBOLS:
            raise ValueError(f"op must be between 1 and {MAX_SOLUTION_SYMBOLS}, not {self.op}")


class FastRandom(random.Random):
    """``random.Random`` whose integer draws use one float draw (``int(random() * n)``).

    Uniform up to the 2**-53 float granularity and about 3x cheaper than rejection sampling on bits;
    ``choice``, ``sample``, ``shuffle``, ``randrange`` and ``randint`` all go through it.
    """

    def _randbelow(self, n: int) -> int:
        return int(self.random() * n)


HELDOUT_SEED_BASE = 10**12
"""Generation seeds from here on are reserved for held-out-by-seed evaluation sets (``probekit.evaluate.sets``):
training data seeds (``data.seed``) must stay below it, so the two never share a seed string."""


def record_seed(seed: int, index: int) -> int:
    """The per-record RNG seed, as the official samples' ``rng_seed``."""
    return int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest(), 16) % 2**32


# ---------------------------------------------------------------------------- knobs
@dataclass
class _Knobs:
    s: int
    n: int
    m: int
    d: int
    w0: int
    w1: int
    p: float
    e: int


@cache
def _size_weights(s: int, max_edge: int) -> tuple[float, ...]:
    """Cumulative softmax weights over sizes (2, 3, 4): larger graphs for larger op."""
    rel = (s - 1) / (max_edge - 1)
    weights = [math.exp(-((rel - pos) ** 2)) for pos in (0.2, 0.5, 0.8)]
    return tuple(itertools.accumulate(weights))


@cache
def _min_of_two_table(high: int, low: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    values = tuple(range(low, high + 1))
    return values, tuple(itertools.accumulate(2 * (high - v) + 1 for v in values))


def _min_of_two_at_least(rng: random.Random, high: int, low: int) -> int:
    """min(U{1..high}, U{1..high}) conditioned on being >= low: P(v) ~ 2(high - v) + 1."""
    values, cum = _min_of_two_table(high, low)
    return rng.choices(values, cum_weights=cum)[0]


def _draw_knobs(rng: random.Random, preset: Preset, target_op: int, forced: bool) -> _Knobs:
    s = target_op if forced else _min_of_two_at_least(rng, preset.max_op, target_op)
    n = max(rng.randint(1, s), rng.randint(1, s))
    m = rng.randint(n, s)
    cum = _size_weights(s, preset.max_edge)
    d, t0, t1 = rng.choices((2, 3, 4), cum_weights=cum, k=3)
    w0, w1 = min(t0, t1), max(t0, t1)
    p = rng.random()
    min_e = (d - 1) * w0
    e = min(rng.randint(min_e, preset.max_edge), rng.randint(min_e, preset.max_edge))
    return _Knobs(s, n, m, d, w0, w1, p, e)


# ---------------------------------------------------------------------------- graph state
class _Draft:
    """One attempt at a problem graph: structure graph, parameter records and the dependency graph."""

    def __init__(self, rng: random.Random, k: _Knobs):
        self.rng, self.d, self.w0, self.w1, self.p = rng, k.d, k.w0, k.w1, k.p
        self.e = min(max(k.e, (k.d - 1) * k.w0), (k.d - 1) * k.w1**2)
        self._draw_structure()
        # parameter records, as lists (their order shapes later draws, as in the authors' code)
        self.inter = [(i, j, kk) for i in range(self.d - 1) for j in range(self.l[i]) for kk in range(i + 1, self.d)]
        self.chosen: list[Param] = []
        # dependency graph: predecessor lists in edge-insertion order; nodes in insertion order
        self.preds: dict[Param, list[Param]] = {}
        self.succs: dict[Param, list[Param]] = {}
        self.marked: set[tuple[int, int, int]] = set()  # structure edges whose parameter is placed

    # -- structure graph G_s
    def _draw_structure(self):
        rng, d, e = self.rng, self.d, self.e
        sizes = self.l = [self.w0] * d
        while True:
            max_v = sum(a * b for a, b in zip(sizes, sizes[1:]))
            if max_v < e:
                self._add_vertex()
            elif sum(sizes) - sizes[0] == e:
                break
            elif rng.random() >= self.p or self._add_vertex():
                break
        # one random parent for every item below the top layer, then e - (l_2 + ... + l_d) more edges
        remain = [(i, int(rng.random() * sizes[i]), k) for i in range(d - 1) for k in range(sizes[i + 1])]
        taken = set(remain)
        free = [(i, j, k) for i in range(d - 1) for j in range(sizes[i]) for k in range(sizes[i + 1])]
        remain += rng.sample([t for t in free if t not in taken], e - len(remain))
        self.remain = remain
        self.edges = sorted(remain)
        self.kids = kids = {(i, j): [] for i in range(d - 1) for j in range(sizes[i])}
        for i, j, k in self.edges:
            kids[(i, j)].append(k)
        total = len(remain)
        for (i, _), ks in kids.items():
            c = len(ks)
            total += max(2 * c - 1, 0) * (d - i - 2) + (c - 1 if c > 1 else c)
        self.total = total

    def _add_vertex(self) -> bool:
        pool = [i for i, x in enumerate(self.l) if x < self.w1]
        if not pool:
            return True
        self.l[self.rng.choice(pool)] += 1
        return False

    # -- step A and B: choose the necessary parameters
    def _try_abstract(self, rec, triple) -> int:
        """Add abstract (i, j, k) and everything it needs to ``rec``; return its op cost (authors' count)."""
        remain, inter, chosen = rec
        i, j, k = triple
        inter.remove(triple)
        chosen.append((ABSTRACT, i, j, k))
        count, n_kids = 0, 0
        for x in self.kids[(i, j)]:
            n_kids += 1
            if k > i + 1 and (i + 1, x, k) in inter:
                count += self._try_abstract(rec, (i + 1, x, k))
            if (i, j, x) in remain:
                count += 1
                remain.remove((i, j, x))
                chosen.append((INSTANCE, i, j, x))
        if k == i + 1:
            return count + (n_kids - 1 if n_kids > 1 else 1)
        return count + max(2 * n_kids - 1, 1)

    def choose_params(self, n: int, m: int):
        rng = self.rng
        n = min(n, self.total)
        n_fix = m - n
        record = (self.remain, self.inter, self.chosen)
        previous, previous_count = record, 0
        lowest, highest = 1, self.d - 1
        guard = 0
        while n > 0:
            guard += 1
            if guard > 10_000:
                raise _Infeasible
            for diff in range(1, self.d):
                try_set = [t for t in record[1] if t[2] - t[0] == diff]
                if not try_set:
                    if diff == lowest:
                        lowest += 1
                    elif diff == highest:
                        highest -= 1
                    continue
                triple = rng.choice(try_set)
                trial = (list(record[0]), list(record[1]), list(record[2]))
                count = self._try_abstract(trial, triple)
                if diff == lowest and count > n:
                    self._fix_instances(record, min(n + n_fix, len(record[0])))
                    self.remain, self.inter, self.chosen = record
                    return
                if count <= n:
                    if diff < highest:
                        previous, previous_count = trial, count
                    else:
                        record = trial
                        n -= count
                        break
                else:
                    record = previous
                    n -= previous_count
                    break
        self._fix_instances(record, min(n_fix, len(record[0])))
        self.remain, self.inter, self.chosen = record

    def _fix_instances(self, record, how_many: int):
        remain, _, chosen = record
        for t in self.rng.sample(remain, how_many):
            chosen.append((INSTANCE, *t))
            remain.remove(t)

    # -- dependency graph helpers
    def add_node(self, p: Param):
        if p not in self.preds:
            self.preds[p] = []
            self.succs[p] = []

    def add_edge(self, a: Param, b: Param):
        self.add_node(a)
        self.add_node(b)
        if a not in self.preds[b]:
            self.preds[b].append(a)
            self.succs[a].append(b)

    def structural_inputs(self, p: Param) -> list[Param]:
        _, i, j, k = p
        out = []
        for x in self.kids[(i, j)]:
            out.append((INSTANCE, i, j, x))
        if k > i + 1:
            out += [(ABSTRACT, i + 1, x, k) for x in self.kids[(i, j)]]
        return out

    def setup_template(self):
        """G_nece before step C: the chosen parameters and the structural inputs of the abstract ones."""
        preds = self.preds = {p: [] for p in self.chosen}
        succs = self.succs = {p: [] for p in self.chosen}
        for p in self.chosen:
            if p[0] == ABSTRACT:
                for q in self.structural_inputs(p):  # each input is chosen, and listed once
                    preds[p].append(q)
                    succs[q].append(p)

    # -- step C: Topo, built backwards from the query
    def reasonable_sort(self) -> bool:
        """Place parameters right to left from the query; False when the process gets stuck.

        Only parameters already needed by placed ones (the stack) and with nothing unplaced depending on
        them can be placed next. Placing an instance parameter adds, with probability p0 (always when
        nothing else could be placed), an edge from a remaining parameter drawn with weight
        exp(bias * [abstract] + bias * [not yet needed]).
        """
        rng = self.rng
        p0 = rng.random()
        bias = abs(rng.gauss(0.0, 1.0))
        weight_of = (1.0, math.exp(bias), math.exp(2 * bias))  # by [abstract] + [not on the stack]
        out_degree = {v: len(s) for v, s in self.succs.items()}
        zero_out = [v for v, c in out_degree.items() if c == 0]
        stack: list[Param] = []
        on_stack: set[Param] = set()
        remain = dict.fromkeys(self.preds)  # ordered set
        order: list[Param] = []
        pool = zero_out
        while remain:
            if not pool:
                return False
            param = rng.choice(pool)
            order.append(param)
            del remain[param]
            zero_out.remove(param)
            for v in self.preds[param]:
                out_degree[v] -= 1
                if out_degree[v] == 0:
                    zero_out.append(v)
            if param in on_stack:
                stack.remove(param)
                on_stack.discard(param)
            if param[0] == INSTANCE:
                need_to_pick = not any(v in on_stack for v in zero_out)
                if (rng.random() < p0 or need_to_pick) and remain:
                    candidates = zero_out if need_to_pick else list(remain)
                    weights = [weight_of[(c[0] == ABSTRACT) + (c not in on_stack)] for c in candidates]
                    pick = rng.choices(candidates, weights)[0]
                    self.add_edge(pick, param)  # into a placed parameter: pick stays placeable
                    if pick not in on_stack:
                        stack.append(pick)
                        on_stack.add(pick)
            else:
                for v in self.preds[param]:
                    if v not in on_stack:
                        stack.append(v)
                        on_stack.add(v)
            pool = [v for v in zero_out if v in on_stack]
        order.reverse()
        self.topo = order
        return True

    # -- step D: raise in-degrees so that op(G_nece) = s
    def max_extra(self) -> list[int]:
        """Extra ops each Topo position can absorb: an instance parameter at position i takes up to
        min(i + 1, 4) inputs (RNG and earlier parameters only), i.e. min(i + 1, 4) - 2 extra ops."""
        return [
            max(min(i + 1, MAX_PARAMS_PER_SENTENCE) - 2, 0) if p[0] == INSTANCE else 0 for i, p in enumerate(self.topo)
        ]

    def design(self, s: int, op_min: int):
        rng = self.rng
        max_extra = self.max_extra()
        addable = [i for i, x in enumerate(max_extra) if x > 0]
        extra = [0] * len(self.topo)
        for _ in range(min(max(s, op_min) - op_min, sum(max_extra))):
            i = rng.choice(addable)
            extra[i] += 1
            if extra[i] == max_extra[i]:
                addable.remove(i)
        self.add_node(RNG)
        for i, p in enumerate(self.topo):
            if p[0] != INSTANCE:
                continue
            self.marked.add(p[1:])
            pool = [RNG] + self.topo[:i]
            n_sample = (1 if rng.random() < 0.5 else 2) if extra[i] == 0 else extra[i] + 2
            n_sample = min(n_sample, i + 1, MAX_PARAMS_PER_SENTENCE)
            if n_sample != len(pool):
                for v in self.preds[p]:
                    pool.remove(v)
                    n_sample -= 1
                if rng.random() < 0.5 and n_sample > 0:
                    n_sample -= 1
                    self.add_edge(RNG, p)
                    pool.remove(RNG)
                pool = rng.sample(pool, n_sample)
            for v in pool:
                self.add_edge(v, p)

    # -- abstract parameters that become computable ("chosen") once their inputs are placed
    def _all_kids_marked(self, i: int, j: int) -> bool:
        return all((i, j, x) in self.marked for x in self.kids[(i, j)])

    def _choose_abstract(self, triple):
        if triple in self.inter:
            self.inter.remove(triple)
            self.chosen.append((ABSTRACT, *triple))

    def _any_kid_open(self, i: int, j: int, lower: int) -> bool:
        return any((i + 1, x, lower) in self.inter for x in self.kids[(i, j)])

    def _fill_deeper(self, uppers, lowers_of):
        """Abstract params two or more layers down whose inputs are all chosen (authors' stamp logic)."""
        for upper in uppers:
            stamp = False
            for lower in lowers_of(upper):
                for j in range(self.l[upper]):
                    if (upper, j, upper + 1) in self.inter:
                        continue
                    stamp = stamp or self._any_kid_open(upper, j, lower)
                    if stamp:
                        break
                    self._choose_abstract((upper, j, lower))

    def fill_all(self):
        for upper in range(self.d - 1):
            for j in range(self.l[upper]):
                if self._all_kids_marked(upper, j):
                    self._choose_abstract((upper, j, upper + 1))
        self._fill_deeper(range(self.d - 1), lambda upper: range(upper + 2, self.d))

    def fill_chosen(self, triple):
        i, j, _ = triple
        self.marked.add(triple)
        if not self._all_kids_marked(i, j):
            return
        self._choose_abstract((i, j, i + 1))
        for lower in range(i + 2, self.d):
            if self._any_kid_open(i, j, lower):
                break
            self._choose_abstract((i, j, lower))
        self._fill_deeper(range(i - 1, -1, -1), lambda upper: range(i + 1, self.d))

    def add_abstract(self, p: Param, placed: set[Param]):
        """Reference to an abstract parameter not yet in G_d: add it with its structural inputs."""
        if p[0] != ABSTRACT or p in placed:
            return
        _, i, j, k = p
        for x in self.kids[(i, j)]:
            self.add_edge((INSTANCE, i, j, x), p)
            if k > i + 1:
                child = (ABSTRACT, i + 1, x, k)
                self.add_edge(child, p)
                self.add_abstract(child, placed)
        placed.add(p)

    # -- step E: every remaining instance parameter, with random parents
    def design_unused(self):
        rng = self.rng
        placed = set(self.topo)
        independent: list[Param] = []
        while self.remain:
            triple = rng.choice(self.remain)
            param = (INSTANCE, *triple)
            self.add_node(param)
            is_independent = rng.random() < 0.5
            pool = independent if is_independent else self.chosen
            n_sample, cap = 1, len(pool) + 1
            while n_sample < min(cap, MAX_PARAMS_PER_SENTENCE) and rng.random() > 0.5:
                n_sample += 1
            if n_sample == cap:
                self.add_edge(RNG, param)
                parents = list(pool)
            else:
                if rng.random() < 0.5:
                    self.add_edge(RNG, param)
                    n_sample -= 1
                parents = rng.sample(pool, n_sample)
            for v in parents:
                self.add_edge(v, param)
                self.add_abstract(v, placed)
            self.remain.remove(triple)
            self.chosen.append(param)
            placed.add(param)
            self.fill_chosen(triple)
            if is_independent:
                independent.append(param)


class _Infeasible(Exception):
    """The knobs admit no problem; draw new ones."""


def _random_topological_order(rng: random.Random, nodes: Iterable[Param], preds: dict[Param, list[Param]]):
    nodes = list(nodes)
    members = set(nodes)
    indegree = {v: sum(1 for u in preds[v] if u in members) for v in nodes}
    succs: dict[Param, list[Param]] = {v: [] for v in nodes}
    for v in nodes:
        for u in preds[v]:
            if u in members:
                succs[u].append(v)
    ready = [v for v in nodes if indegree[v] == 0]
    order = []
    while ready:
        v = ready.pop(rng.randrange(len(ready)))
        order.append(v)
        for w in succs[v]:
            indegree[w] -= 1
            if indegree[w] == 0:
                ready.append(w)
    return order


# ---------------------------------------------------------------------------- problem assembly
def _draw_statement(rng: random.Random, refs: list[Param], has_rng: bool) -> Statement:
    if has_rng and not refs:
        return Statement((), rng.randint(0, 22))
    if has_rng:
        if rng.random() < 0.5:
            outer, constant = "add", rng.randint(0, 22)
        else:
            outer, constant = "mul", rng.randint(1, 22)
    else:
        outer, constant = None, None
    inner = "sum"
    if len(refs) == 2 and rng.random() >= 0.5:
        inner = "diff"
    return Statement(tuple(refs), constant, outer, inner)


def _draw_names(rng: random.Random, world: World, sizes: list[int]) -> tuple[list[str], list[list[str]]]:
    chain = rng.choice(world.chains)
    start = rng.randrange(len(chain) - len(sizes) + 1)
    categories, items = [], []
    for layer, size in zip(chain[start : start + len(sizes)], sizes):
        group = rng.choice(list(layer.subcategories.values()))
        categories.append(layer.category)
        items.append(rng.sample(group, size))
    return categories, items


def _draw_problem(rng: random.Random, preset: Preset, target_op: int, forced: bool, world: World):
    """One draw of knobs and up to TRIES_PER_DRAW structures; returns (problem, G_d nodes) or None."""
    knobs = _draw_knobs(rng, preset, target_op, forced)
    edges = min(max(knobs.e, (knobs.d - 1) * knobs.w0), (knobs.d - 1) * knobs.w1**2)
    if knobs.s > target_op and min(knobs.n, edges) > target_op:
        # Steps A and B always spend at least min(n, e) ops, and s > target leaves op = target only
        # when step D runs out of room: no structure drawn with these knobs can be kept.
        return None
    for _ in range(TRIES_PER_DRAW):
        draft = _Draft(rng, knobs)
        try:
            draft.choose_params(knobs.n, knobs.m)
        except _Infeasible:
            return None
        draft.setup_template()
        op_min = sum(_authors_cost(draft, p) for p in draft.chosen)
        if draft.reasonable_sort():
            if op_min + min(max(knobs.s - op_min, 0), sum(draft.max_extra())) != target_op:
                return None  # would be rejected on op anyway: skip the rest of the work
            draft.design(knobs.s, op_min)
            draft.fill_all()
            draft.design_unused()
            categories, items = _draw_names(rng, world, draft.l)  # names never shape the graph
            return _assemble(rng, draft, categories, items), frozenset(p for p in draft.preds if p != RNG)
    return None


def _authors_cost(draft: _Draft, p: Param) -> int:
    """op cost of a necessary parameter before step D: 1 per instance, the fold cost per abstract."""
    if p[0] == INSTANCE:
        return 1
    _, i, j, k = p
    c = len(draft.kids[(i, j)])
    return max(c - 1, 1) if k == i + 1 else max(2 * c - 1, 1)


def _assemble(rng: random.Random, draft: _Draft, categories, items) -> Problem:
    statements: dict[Param, Statement] = {}
    for p in _random_topological_order(rng, draft.preds, draft.preds):
        if p[0] == INSTANCE:
            refs = [q for q in draft.preds[p] if q != RNG]
            statements[p] = _draw_statement(rng, refs, RNG in draft.preds[p])
    order = list(statements)
    rng.shuffle(order)
    return Problem(categories, items, draft.edges, statements, order, draft.topo[-1], list(draft.topo))


def _reask(rng: random.Random, problem: Problem, graph_nodes: frozenset[Param]) -> Problem | None:
    """Ask for a parameter drawn uniformly from all (i, j, k) slots; solve it in a random topological order."""
    d, sizes = problem.depth, [len(x) for x in problem.items]
    slots = [(INSTANCE, i, j, k) for i in range(d - 1) for j in range(sizes[i]) for k in range(sizes[i + 1])]
    slots += [(ABSTRACT, i, j, k) for i in range(d - 1) for j in range(sizes[i]) for k in range(i + 1, d)]
    query = rng.choice(slots)
    if query[0] == INSTANCE and query[1:] not in problem.edge_set:
        return None
    needed = problem.ancestors[query] | {query}
    if not needed <= graph_nodes:  # the authors' re_ask needs every input to be in G_d
        return None
    order = _random_topological_order(rng, [p for p in problem.params if p in needed], problem.parents)
    return Problem(
        problem.categories, problem.items, problem.edges, problem.statements, problem.statement_order, query, order
    )


def draw_problem(config: GenerationConfig, index: int, world: World | None = None) -> tuple[Problem, str]:
    """Draw problem ``index`` of ``config``; returns it with its reference solution text."""
    world = world or load_world()
    preset = resolve_preset(config.preset)
    rng = FastRandom(record_seed(config.seed, index))
    forced = config.op is not None
    target = config.op if config.op is not None else min(rng.randint(1, preset.max_op), rng.randint(1, preset.max_op))
    bins = SPLIT_BINS[config.split]
    for _ in range(MAX_DRAWS):
        drawn = _draw_problem(rng, preset, target, forced, world)
        if drawn is None or drawn[0].op_count() != target:
            continue
        problem = _reask(rng, *drawn) if config.reask else drawn[0]
        if problem is None or problem.op_count() > MAX_SOLUTION_SYMBOLS:
            continue
        if template_bin(problem, problem.solution_order) not in bins:
            continue
        return problem, solution_text(problem, problem.solution_order, iter(rng.sample(SYMBOLS, len(SYMBOLS))))
    raise RuntimeError(
        f"no problem with op={target} found in {MAX_DRAWS} draws of preset {config.preset!r} "
        f"(ip <= {preset.max_edge}); ask for a smaller --op or the 'hard' preset"
    )


def problem_fields(problem: Problem, solution: str, format: str = "pq") -> dict:
    """The fields of a record that follow from the problem and its solution text (prompt in ``format``,
    question, solution, answer, op, ip, categories, structure, question parameter)."""
    return {
        "problem": prompt_text(problem, format),
        "question": problem.question(),
        "solution": solution,
        "answer": problem.answer,
        "op": problem.op_count(),
        "ip": len(problem.edges),
        "categories": {c: list(names) for c, names in zip(problem.categories, problem.items)},
        "structure": [[problem.items[i][j], problem.items[i + 1][k]] for i, j, k in problem.edges],
        "question_param": problem.name(problem.query),
    }


def to_record(problem: Problem, solution: str, config: GenerationConfig, index: int) -> dict:
    """The JSONL record of ``probekit generate`` (same shape as the official samples' core fields)."""
    return {
        "preset": config.preset,
        "format": config.format,
        "reask": config.reask,
        "split": config.split,
        "seed": config.seed,
        "index": index,
        **problem_fields(problem, solution, config.format),
    }


def generate_record(config: GenerationConfig, index: int, world: World | None = None) -> dict:
    """One record; a pure function of (config, index)."""
    problem, solution = draw_problem(config, index, world)
    return to_record(problem, solution, config, index)
