"""Evaluation sets: which problems a model is judged on (paper 1.10 / 1.13), drawn from the TEST split.

The paper's suite for a preset (``default_suite``), ``max`` = 15 (med) or 21 (hard):

| set name         | GenerationConfig                                | meaning                                    |
|------------------|-------------------------------------------------|--------------------------------------------|
| ``op<=max``      | ``op=None`` (unforced: the training op draw)    | in distribution                            |
| ``op=max``       | ``op=max``                                      | in distribution, hardest op                |
| ``op=K``         | ``op=K``, K in OOD_OPS (med 20..23, hard 28..32;| out of distribution: longer than training  |
|                  | a restricted family: max_op + 1, max_op + 2)    |                                            |
| ``reask op=K``   | ``op=K, reask=True`` for the same K             | OOD: a new query on an op=K problem        |

Every set uses ``split="test"`` (template hash bins 16..22, never seen in training), the checkpoint's format
(pq / qp) and the same ``seed``: problem ``i`` of a set is ``draw_problem(config, i)``, so a run is a pure
function of (sets, n, seed). With one seed, ``op=K`` and ``reask op=K`` start from the same random stream,
so problem ``i`` of the reask set is usually problem ``i`` of the op=K set re-asked (paired sets; the
reask's own rejections can make them drift apart). A reask problem's op is recounted (it is not K); the
single-step fit bins it by its own op.

``parse_sets`` reads the ``--sets`` option: a comma list of ``default`` (the suite above), ``id``
(``op<=max`` and ``op=max``), ``ood`` (the OOD ops), ``reask`` (their reask versions), ``unforced``
(``op<=max``), ``K`` (``op=K``), ``rK`` (``reask op=K``) and ``hK`` (``held-out op=K``, below).

Degenerate sets and held-out-by-seed evaluation
-----------------------------------------------
A small op has few solution templates, and the hash split can leave the test bins almost empty of ordinary
ones: every ordinary op = 1 template hashes into a train bin, so every op = 1 test problem is **degenerate**
(the query is an abstract parameter of an item that holds nothing: an empty sum, so no sentence states
what it asks about and the answer is 0). Each row therefore carries ``n_templates`` (distinct solution templates,
:func:`probekit.igsm.render.template_key`) and ``n_degenerate`` (problems whose query is such an empty sum),
and :func:`set_warnings` names a set where at least half the problems are degenerate or where fewer than
:data:`FEW_TEMPLATES` templates stand for more problems; :func:`~.run.evaluate_sets` prints those on stderr.

``split="heldout"`` (spelled ``hK``, named ``held-out op=K``) is the way to evaluate such ops: problems from
**all** 23 template bins, drawn with generation seed ``HELDOUT_SEED_BASE + seed``
(:data:`probekit.igsm.generate.HELDOUT_SEED_BASE` = 10**12; training refuses ``data.seed`` at or above it).
The problems are held out by their random draws, not by template: a model has seen their templates in
training (these are in-template, not OOD, numbers). Record RNG seeds are SHA-256 of ``"{seed}:{index}"`` mod
2**32, so a held-out problem can repeat a training problem only through a 32-bit seed collision (about
``trained problems x n / 2**32`` of them, and only when the draw also lands in a train bin).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from probekit.igsm.generate import HELDOUT_SEED_BASE, GenerationConfig, draw_problem
from probekit.igsm.presets import resolve_preset
from probekit.igsm.problem import ABSTRACT, Problem
from probekit.igsm.render import template_key
from probekit.pools import pool_scope

OOD_OPS = {"med": (20, 21, 22, 23), "hard": (28, 29, 30, 31, 32)}
"""The paper's out-of-distribution ops; a restricted family (``med-op4-ip12``, named as training names it) uses
max_op + 1 and max_op + 2 (:func:`ood_ops`)."""


def ood_ops(preset: str) -> tuple[int, ...]:
    """The out-of-distribution ops of ``preset`` (see :data:`OOD_OPS`)."""
    if preset in OOD_OPS:
        return OOD_OPS[preset]
    max_op = resolve_preset(preset).max_op
    return (max_op + 1, max_op + 2)


DEFAULT_N = 4096  # problems per evaluation cell (paper F.1)


SPLITS = ("test", "heldout")
"""``test``: the test template bins, generation seed ``seed``; ``heldout``: all bins, seed ``HELDOUT_SEED_BASE +
seed`` (module doc)."""


@dataclass(frozen=True)
class EvalSet:
    """One evaluation cell: ``n`` problems of ``preset`` at ``op`` (None: unforced), maybe re-asked, from the test
    split or held out by seed (``split``, :data:`SPLITS`)."""

    preset: str = "med"
    op: int | None = None
    reask: bool = False
    format: str = "pq"
    seed: int = 0
    n: int = DEFAULT_N
    split: str = "test"

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if not 0 <= self.seed < HELDOUT_SEED_BASE:
            raise ValueError(f"seed must be in 0..{HELDOUT_SEED_BASE - 1}, not {self.seed}")
        self.config()  # validates preset, op, format
        if self.n < 0:
            raise ValueError(f"n must be >= 0, not {self.n}")
        if self.reask and self.op is None:
            raise ValueError("a reask set needs a forced op (the paper re-asks op=K problems)")

    @property
    def name(self) -> str:
        if self.op is None:
            base = f"op<={resolve_preset(self.preset).max_op}"
        else:
            base = f"reask op={self.op}" if self.reask else f"op={self.op}"
        return f"held-out {base}" if self.split == "heldout" else base

    @property
    def nominal_op(self) -> int:
        """The op that sizes the generation budget: the forced op, or the preset's maximum when unforced."""
        return self.op if self.op is not None else resolve_preset(self.preset).max_op

    @property
    def in_distribution(self) -> bool:
        return not self.reask and self.nominal_op <= resolve_preset(self.preset).max_op

    def config(self) -> GenerationConfig:
        """The generator's config: the test bins and ``seed``, or (held out) all bins and a reserved seed."""
        if self.split == "heldout":
            return GenerationConfig(self.preset, self.op, self.format, self.reask, "all", HELDOUT_SEED_BASE + self.seed)
        return GenerationConfig(self.preset, self.op, self.format, self.reask, self.split, self.seed)

    def to_dict(self) -> dict:
        return {
            "set": self.name,
            "preset": self.preset,
            "op": self.op,
            "reask": self.reask,
            "format": self.format,
            "split": self.split,
            "seed": self.seed,
        }


def default_suite(preset: str = "med", n: int = DEFAULT_N, seed: int = 0, format: str = "pq") -> list[EvalSet]:
    """The paper's evaluation suite for ``preset`` (see the module docstring)."""
    return parse_sets("default", preset, n, seed, format)


def parse_sets(spec: str, preset: str = "med", n: int = DEFAULT_N, seed: int = 0, format: str = "pq") -> list[EvalSet]:
    """Evaluation sets from a ``--sets`` spec (comma list; see the module docstring), duplicates dropped."""
    base = EvalSet(preset, None, False, format, seed, n)
    max_op, ood = resolve_preset(preset).max_op, ood_ops(preset)
    out: list[EvalSet] = []
    for raw in spec.split(","):
        token = raw.strip().lower()
        if not token:
            continue
        for op, reask, split in _token_sets(token, raw.strip(), max_op, ood):
            item = replace(base, op=op, reask=reask, split=split)
            if item not in out:
                out.append(item)
    if not out:
        raise ValueError("no evaluation set given")
    return out


def _token_sets(token: str, raw: str, max_op: int, ood: tuple[int, ...]) -> list[tuple[int | None, bool, str]]:
    """``(op, reask, split)`` of the sets one ``--sets`` token names (module doc)."""
    test: list[tuple[int | None, bool]]
    if token == "default":
        test = [(None, False), (max_op, False), *((k, False) for k in ood), *((k, True) for k in ood)]
    elif token == "id":
        test = [(None, False), (max_op, False)]
    elif token == "ood":
        test = [(k, False) for k in ood]
    elif token == "reask":
        test = [(k, True) for k in ood]
    elif token == "unforced":
        test = [(None, False)]
    elif token.isdigit():
        test = [(int(token), False)]
    elif token[0] == "r" and token[1:].isdigit():
        test = [(int(token[1:]), True)]
    elif token[0] == "h" and token[1:].isdigit():
        return [(int(token[1:]), False, "heldout")]
    else:
        raise ValueError(
            f"unknown evaluation set {raw!r}: use default, id, ood, reask, unforced, K (op=K), "
            "rK (reask op=K) or hK (held-out op=K)"
        )
    return [(op, reask, "test") for op, reask in test]


# ---------------------------------------------------------------------------------------------- set health
FEW_TEMPLATES = 10
"""A set whose problems share fewer distinct solution templates than this (and than its size) is flagged."""


def is_degenerate(problem: Problem) -> bool:
    """The query is an abstract parameter of an item that holds nothing: an empty sum, answer 0, and no sentence
    states what it asks about."""
    return problem.query[0] == ABSTRACT and not problem.parents[problem.query]


def set_health(drawn: Sequence[tuple[Problem, str]]) -> dict:
    """``{"n_templates", "n_degenerate"}`` of a drawn set (module doc)."""
    templates = {template_key(p, p.solution_order) for p, _ in drawn}
    return {"n_templates": len(templates), "n_degenerate": sum(is_degenerate(p) for p, _ in drawn)}


def set_warnings(row: dict) -> list[str]:
    """Warnings about a summary row with ``set``, ``n``, ``n_templates`` and ``n_degenerate`` (module doc)."""
    n, out = row["n"], []
    if n and row["n_degenerate"] * 2 >= n:
        out.append(
            f"set {row['set']}: {row['n_degenerate']} of {n} problems are degenerate (the query is an empty sum, "
            "answer 0); the test bins hold few ordinary templates at this op: evaluate a held-out set (hK) instead"
        )
    if row["n_templates"] < min(n, FEW_TEMPLATES):
        out.append(f"set {row['set']}: {n} problems share only {row['n_templates']} solution templates")
    return out


# ---------------------------------------------------------------------------------------------- budget
TOKENS_PER_OP = 40
EXTRA_TOKENS = 64
DECODINGS = ("greedy", "beam-sample")
"""How the judged solution is generated (``probekit eval --decoding``): greedy (beam 1, no sampling) or beam 4
with sampling (paper App. F.1; :class:`probekit.evaluate.generation.BeamSampler`)."""


def generation_budget(
    eval_set: EvalSet,
    drawn: Sequence[tuple[Problem, str]],
    tokens_per_op: int = TOKENS_PER_OP,
    extra_tokens: int = EXTRA_TOKENS,
) -> int:
    """``tokens_per_op * max(nominal op, largest reference op) + extra_tokens`` (reask ops are recounted)."""
    ops = [p.op_count() for p, _ in drawn]
    return tokens_per_op * max([eval_set.nominal_op, *ops]) + extra_tokens


# ---------------------------------------------------------------------------------------------- drawing
def _draw(args: tuple[GenerationConfig, int]) -> tuple[Problem, str]:
    return draw_problem(*args)


def draw_set(eval_set: EvalSet, workers: int = 1) -> list[tuple[Problem, str]]:
    """The set's problems with their reference solutions, ``draw_problem(config, i)`` for ``i < n``, in order.

    Call this before loading a model when ``workers > 1`` (worker processes are forked).
    """
    return list(iter_set(eval_set, workers))


def iter_set(eval_set: EvalSet, workers: int = 1) -> Iterator[tuple[Problem, str]]:
    config = eval_set.config()
    jobs = ((config, i) for i in range(eval_set.n))
    if workers <= 1 or eval_set.n < 64:
        yield from map(_draw, jobs)
        return
    with pool_scope(workers) as pool:
        yield from pool.imap(_draw, jobs, chunksize=max(1, min(64, eval_set.n // (workers * 8) or 1)))
