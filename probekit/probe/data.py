"""V-probe examples: token prefixes cut where the paper probes, ``[START] A [END]`` suffixes and labels.

Pure Python + numpy (no torch), so data can be built and inspected anywhere.

Probe positions (paper §4.1, fn 16, App. B, E; ``paper-facts.md`` 1.14). Every input starts like the evaluation
prompt, ``[EOS] [PROBLEM] ...``, the text is *truncated* at the probe position and encoded, then the probe
markers are appended (``IGSMTokenizer.probe_ids``):

| task | position | token prefix |
|---|---|---|
| ``dep`` (pq) | end of the problem statements, *before* the question | ``[EOS] [PROBLEM] statements`` |
| ``dep`` (qp) | end of the problem statements = end of the prompt | ``[EOS] [PROBLEM] question statements`` |
| ``nece`` | end of the question = end of the prompt (both formats) | ``[EOS] [PROBLEM] prompt`` |
| ``known``, ``value``, ``can_next``, ``nece_next`` | after solution sentence t, t = 0..T drawn uniformly | ``[EOS] [PROBLEM] prompt [SOLUTION] s_1 ... s_t`` |

then ``[START] A [END]`` (``dep``: ``[START] A [MID] B [END]``; A depends on B). The end-of-prompt positions stop
*before* ``[SOLUTION]`` (the question is the last thing read); t = 0 is right after ``[SOLUTION]``; position t
ends with the ``"."`` of sentence t. Sentences are the checker's (``check.parse_solution``: ``". "``-separated,
``" BACK"`` sentences skipped), so position t is exactly ``compute_labels(...).steps[t]``.

Parameter pool (what A and B are drawn from, uniformly): the problem's **dependency-graph parameters** =
every stated instance parameter ∪ every abstract parameter that a problem sentence references ∪ every
necessary parameter, closed under ancestors (an abstract parameter brings the abstract parameters its
definition sums, as the authors' generator adds them to G_d in ``add_abstract``). This is G_d minus RNG; it
leaves out the abstract parameters the problem never touches (``problem.params`` has all of them; the labels
are still computed on that whole template). It is computable from the problem text alone, so records, fresh
problems and a model's own solution give the same pool.

With ``pool="slots"`` (``probekit probe --pair-pool slots``) A and B are drawn instead as the authors' code
draws them (``lora_label`` over ``all_param``): every instance **slot** ``(i, j, k)`` of adjacent layers,
whether or not the structure graph has that edge, plus every abstract parameter (:func:`slot_pool`). A slot
that is not an edge exists in no sentence: it is never necessary, never known, depends on nothing and nothing
depends on it, its value is unknown (23), and it is ``can_next`` at every position (zero in-degree in the
authors' Kahn traversal), so never ``nece_next``. Those slots are why the paper's all-false baselines (App. B:
83% on dep, 92% on nece_next) are higher than probekit's default pool gives: the default draws A, B from the
problem's parameters (App. E: "A (and B) uniform over the parameters of the problem"), where more pairs are
dependent and more parameters are ready and needed. ``slots`` reproduces the quoted baselines' setting.

Sampling (paper App. E): per problem and task, up to ``per_problem`` (10) distinct choices without
replacement: nece draws A; dep draws ordered pairs (A, B), B != A; the step tasks draw (t, A) pairs, so t is
uniform over 0..T and A uniform over the pool. The draw is a pure function of (seed, problem index, task).

Labels come from :func:`probekit.igsm.labels.compute_labels` along the given solution: the reference solution
for generated problems and records, or a model's own text (``solution=`` / ``solution_key=``), for the mistake
analysis. value has 24 classes (0..22, ``UNKNOWN_VALUE`` = 23), the other tasks are binary.

Examples longer than ``max_len`` (the model's context) are not silently dropped: they are left out and counted
per task in ``ProbeData.n_too_long`` (and a warning names the count).
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from probekit.igsm.labels import UNKNOWN_VALUE, Labels, compute_labels
from probekit.igsm.problem import ABSTRACT, INSTANCE, Param, Problem

TASKS: tuple[str, ...] = ("nece", "dep", "known", "value", "can_next", "nece_next")
STEP_TASKS: tuple[str, ...] = ("known", "value", "can_next", "nece_next")
N_CLASSES = {task: (UNKNOWN_VALUE + 1 if task == "value" else 2) for task in TASKS}
PER_PROBLEM = 10


def n_classes(task: str) -> int:
    check_task(task)
    return N_CLASSES[task]


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown probe task {task!r}; tasks: {', '.join(TASKS)}")
    return task


def parse_tasks(tasks: str | Iterable[str]) -> tuple[str, ...]:
    """``"all"``, one task, a comma list or an iterable of tasks -> a tuple in ``TASKS`` order."""
    if isinstance(tasks, str):
        tasks = TASKS if tasks == "all" else [t.strip() for t in tasks.split(",") if t.strip()]
    chosen = {check_task(t) for t in tasks}
    return tuple(t for t in TASKS if t in chosen)


def probe_pool(problem: Problem) -> list[Param]:
    """The dependency-graph parameters A and B are drawn from (module doc), in ``problem.params`` order."""
    seeds = {r for st in problem.statements.values() for r in st.refs if r[0] == ABSTRACT}
    seeds |= {p for p in problem.necessary if p[0] == ABSTRACT}
    closure = set(seeds)
    for p in seeds:
        closure |= {q for q in problem.ancestors[p] if q[0] == ABSTRACT}
    return [p for p in problem.params if p[0] == INSTANCE or p in closure]


POOLS: tuple[str, ...] = ("problem", "slots")
"""Where A and B are drawn from: the problem's dependency-graph parameters (:func:`probe_pool`, the paper's text)
or every instance slot and abstract parameter (:func:`slot_pool`, the authors' code; module doc)."""


def slot_pool(problem: Problem) -> list[Param]:
    """Every instance slot ``(i, j, k)`` of adjacent layers (edge or not), then every abstract parameter."""
    slots = [
        (INSTANCE, i, j, k)
        for i in range(problem.depth - 1)
        for j in range(len(problem.items[i]))
        for k in range(len(problem.items[i + 1]))
    ]
    return slots + [p for p in problem.params if p[0] == ABSTRACT]


def pool_params(problem: Problem, pool: str = "problem") -> list[Param]:
    """The parameters of ``pool`` (one of :data:`POOLS`)."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")
    return probe_pool(problem) if pool == "problem" else slot_pool(problem)


def sentence_ends(solution: str) -> list[int]:
    """Character offsets just after each solution sentence (its ``"."`` included), as the checker splits them."""
    start = len(solution) - len(solution.lstrip())
    body_end = len(solution.rstrip())
    body = solution[start:body_end]
    if body.endswith("."):
        body = body[:-1]
    if not body:
        return []
    ends, pos = [], start
    for sentence in body.split(". "):
        end = pos + len(sentence)
        if " BACK" not in sentence:
            ends.append(min(end + 1, body_end))
        pos = end + 2
    return ends


# ---------------------------------------------------------------------------- problems with their text
@dataclass
class ProblemText:
    """A problem, its prompt text and the solution the labels follow (reference or a model's own)."""

    problem: Problem
    prompt: str
    solution: str
    format: str = "pq"
    index: int = 0
    seed: int | None = None
    split: str | None = None
    reask: bool = False
    source: str = "reference"

    @classmethod
    def from_record(cls, record: dict, solution: str | None = None, source: str | None = None) -> ProblemText:
        """From a ``probekit generate`` record (``problem``, ``solution``, optional ``categories``, ...)."""
        from probekit.igsm.jobs import problem_of

        problem = problem_of(record)
        prompt = record["problem"]
        fmt = record.get("format") or ("qp" if prompt.startswith("How many ") else "pq")
        sol = record["solution"] if solution is None else solution
        return cls(
            problem,
            prompt,
            sol,
            fmt,
            int(record.get("index", 0)),
            record.get("seed"),
            record.get("split"),
            bool(record.get("reask", False)),
            source or ("reference" if solution is None else "model"),
        )


def problems_from_config(config, n: int, start: int = 0) -> Iterator[ProblemText]:
    """Problems ``start .. start+n-1`` of a :class:`~probekit.igsm.generate.GenerationConfig`."""
    from probekit.igsm.generate import draw_problem
    from probekit.igsm.render import prompt_text
    from probekit.igsm.world import load_world

    world = load_world()
    for index in range(start, start + n):
        problem, solution = draw_problem(config, index, world)
        yield ProblemText(
            problem,
            prompt_text(problem, config.format),
            solution,
            config.format,
            index,
            config.seed,
            config.split,
            config.reask,
        )


def problems_from_records(records: Iterable[dict], solution_key: str = "solution") -> Iterator[ProblemText]:
    """Problems from JSONL records; ``solution_key`` picks the solution the labels follow (e.g. a model's)."""
    own = solution_key != "solution"
    for i, record in enumerate(records):
        item = ProblemText.from_record(record, record[solution_key] if own else None, "model" if own else None)
        if "index" not in record:
            item.index = i  # the draw is seeded by the index: keep it distinct per record
        yield item


# ---------------------------------------------------------------------------- one problem's probe inputs
class ProbeBuilder:
    """Probe inputs and labels of one problem: ``builder.example(task, a, b=None, t=None)``.

    ``a`` / ``b`` are parameter names as the solution writes them (``problem.name(p)``) or ``Param`` tuples.
    Token prefixes are encoded from the truncated text once per position and cached.
    """

    def __init__(self, item: ProblemText, tokenizer=None, labels: Labels | None = None, pool: str = "problem"):
        from probekit.tokenizer import default_tokenizer

        self.item = item
        self.problem = item.problem
        self.tokenizer = tokenizer or default_tokenizer()
        self.labels = labels or compute_labels(item.problem, item.solution)
        self.pool = pool_params(item.problem, pool)
        self.pool_names = [self.problem.name(p) for p in self.pool]
        stated = set(self.problem.params)
        self._slots = {self.problem.name(p) for p in self.pool if p not in stated}  # non-edge slots (``slots``)
        self.ends = sentence_ends(item.solution)
        if len(self.ends) + 1 != len(self.labels.steps):  # cannot happen: both split as the checker does
            raise AssertionError(f"{len(self.ends)} sentence ends but {len(self.labels.steps)} label steps")
        self.n_steps = len(self.ends)  # T: positions t = 0..T
        self.statement_end = _statement_end(item.prompt, self.problem.question(), item.format)
        self._nece = set(self.labels.nece)
        self._dep = set(self.labels.dep)
        self._steps = [{k: set(s[k]) for k in ("known", "can_next", "nece_next")} for s in self.labels.steps]
        self._prefix_cache: dict = {}
        self._name_cache: dict[str, list[int]] = {}
        self.op = self.problem.op_count()

    # -- token prefixes
    def position(self, task: str, t: int | None = None):
        """The probe position of ``task`` as a key: ``"statements"``, ``"prompt"`` or ``("solution", t)``."""
        check_task(task)
        if task == "dep":
            return "statements"
        if task == "nece":
            return "prompt"
        if t is None or not 0 <= t <= self.n_steps:
            raise ValueError(f"task {task!r} needs a position t in 0..{self.n_steps}, got {t!r}")
        return ("solution", t)

    def prefix(self, position) -> list[int]:
        """Token ids of the text truncated at ``position`` (see :meth:`position`), starting ``[EOS] [PROBLEM]``."""
        if position in self._prefix_cache:
            return self._prefix_cache[position]
        tok, prompt = self.tokenizer, self.item.prompt
        head = [tok.eos_id, tok.special("[PROBLEM]")]
        if position == "statements":
            ids = head + tok.encode(prompt[: self.statement_end])
        elif position == "prompt":
            ids = head + tok.encode(prompt)
        else:
            t = position[1]
            ids = self.prefix("prompt") + [tok.special("[SOLUTION]")]
            if t:
                ids = ids + tok.encode(self.item.solution[: self.ends[t - 1]])
        self._prefix_cache[position] = ids
        return ids

    def _name_ids(self, name: str) -> list[int]:
        ids = self._name_cache.get(name)
        if ids is None:
            ids = self._name_cache[name] = self.tokenizer.encode(name)
            if ids and min(ids) < self.tokenizer.n_special:
                raise ValueError(f"parameter name contains a special token: {name!r}")
        return ids

    def ids(self, task: str, a: str, b: str | None = None, t: int | None = None) -> list[int]:
        """``prefix + [START] a [END]`` (dep: ``[START] a [MID] b [END]``)."""
        tok = self.tokenizer
        ids = self.prefix(self.position(task, t)) + [tok.special("[START]")] + self._name_ids(a)
        if task == "dep":
            if b is None:
                raise ValueError("dep needs two parameters (a depends on b)")
            ids += [tok.special("[MID]")] + self._name_ids(b)
        elif b is not None:
            raise ValueError(f"task {task!r} takes one parameter, got b={b!r}")
        return ids + [tok.special("[END]")]

    # -- labels
    def label(self, task: str, a: str, b: str | None = None, t: int | None = None) -> int:
        if task == "nece":
            return int(a in self._nece)
        if task == "dep":
            return int((a, b) in self._dep)
        self.position(task, t)  # checks the task, and t for the step tasks
        if t is None:  # position() has raised already: every other task needs t
            raise ValueError(f"task {task!r} needs a position t")
        if task == "value":
            return self.labels.value_label(t, a)
        if task == "can_next" and a in self._slots:  # a non-edge slot: nothing to wait for (module doc)
            return 1
        return int(a in self._steps[t][task])

    def _name(self, p) -> str:
        return p if isinstance(p, str) else self.problem.name(p)

    def example(self, task: str, a, b=None, t: int | None = None) -> tuple[list[int], int, dict]:
        """``(ids, label, meta)`` for one probe query."""
        a = self._name(a)
        b = None if b is None else self._name(b)
        ids = self.ids(task, a, b, t)
        item = self.item
        meta = {
            "task": task,
            "problem": item.index,
            "seed": item.seed,
            "split": item.split,
            "format": item.format,
            "reask": item.reask,
            "source": item.source,
            "a": a,
            "b": b,
            "t": t if task in STEP_TASKS else None,
            "T": self.n_steps,
            "op": self.op,
            "necessary": a in self._nece,
            "distance": self.labels.distance.get(a),
            "b_necessary": None if b is None else b in self._nece,
            "a_kind": "abstract" if a not in self._instance_names else "instance",
        }
        return ids, self.label(task, a, b, t), meta

    @property
    def _instance_names(self) -> set[str]:
        names = self.__dict__.get("_inst")
        if names is None:
            names = self.__dict__["_inst"] = {self.problem.name(p) for p in self.pool if p[0] == INSTANCE}
        return names

    # -- sampling
    def sample(self, task: str, k: int, rng: random.Random) -> list[tuple[str, str | None, int | None]]:
        """Up to ``k`` distinct (a, b, t) queries, uniform without replacement (module doc)."""
        names, n = self.pool_names, len(self.pool_names)
        if task == "nece":
            return [(names[i], None, None) for i in rng.sample(range(n), min(k, n))]
        if task == "dep":
            total = n * (n - 1)
            out: list[tuple[str, str | None, int | None]] = []
            for x in rng.sample(range(total), min(k, total)):
                i, j = divmod(x, n - 1)
                out.append((names[i], names[j + (j >= i)], None))
            return out
        total = (self.n_steps + 1) * n
        return [(names[x % n], None, x // n) for x in rng.sample(range(total), min(k, total))]


def _statement_end(prompt: str, question: str, fmt: str) -> int:
    """Character offset of the end of the problem statements in the prompt."""
    if fmt == "pq" and prompt.endswith(" " + question):
        return len(prompt) - len(question) - 1
    if fmt == "qp" and prompt.startswith(question + " "):
        return len(prompt)
    raise ValueError(f"prompt does not have the {fmt} layout around the question {question!r}")


def _draw_rng(seed: int, index: int, task: str) -> random.Random:
    return random.Random(int(hashlib.sha256(f"probe:{seed}:{index}:{task}".encode()).hexdigest(), 16) % 2**32)


# ---------------------------------------------------------------------------- data sets
META_COLUMNS = (
    "task",
    "problem",
    "seed",
    "split",
    "format",
    "reask",
    "source",
    "a",
    "b",
    "t",
    "T",
    "op",
    "necessary",
    "distance",
    "b_necessary",
    "a_kind",
)


@dataclass
class ProbeData:
    """Probe examples: token ids (right-pad them yourself), integer labels and per-example metadata columns.

    ``n_too_long`` counts, per task, the examples left out because they were longer than ``max_len``.
    """

    ids: list[np.ndarray]
    labels: np.ndarray
    meta: dict[str, list] = field(default_factory=dict)
    n_too_long: dict[str, int] = field(default_factory=dict)
    max_len: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tasks(self) -> list[str]:
        present = set(self.meta.get("task", ()))
        return [t for t in TASKS if t in present]

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def select(self, index) -> ProbeData:
        """A subset by integer indices or a boolean mask (``n_too_long`` is kept)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return ProbeData(
            [self.ids[i] for i in index],
            self.labels[index],
            {k: [v[i] for i in index] for k, v in self.meta.items()},
            dict(self.n_too_long),
            self.max_len,
        )

    def task(self, name: str) -> ProbeData:
        """The examples of one task."""
        check_task(name)
        sub = self.select(np.array([t == name for t in self.meta["task"]], dtype=bool))
        sub.n_too_long = {name: self.n_too_long.get(name, 0)}
        return sub

    def frame(self):
        """A pandas DataFrame: one row per example (metadata, ``label``, ``length``)."""
        import pandas as pd

        df = pd.DataFrame(self.meta)
        for col in ("t", "distance"):
            if col in df:
                df[col] = pd.array(df[col].tolist(), dtype="Int64")
        df["label"] = self.labels
        df["length"] = self.lengths
        return df

    @classmethod
    def concat(cls, parts: Sequence[ProbeData]) -> ProbeData:
        parts = list(parts)
        if not parts:
            return cls([], np.zeros(0, dtype=np.int64), {k: [] for k in META_COLUMNS})
        too_long: dict[str, int] = {}
        for p in parts:
            for k, v in p.n_too_long.items():
                too_long[k] = too_long.get(k, 0) + v
        meta = {k: [x for p in parts for x in p.meta[k]] for k in parts[0].meta}
        return cls(
            [x for p in parts for x in p.ids],
            np.concatenate([p.labels for p in parts]),
            meta,
            too_long,
            parts[0].max_len,
        )

    def summary(self) -> dict:
        """Per task: examples, positive rate (binary tasks), longest input and the count left out as too long."""
        out = {}
        tasks = np.array(self.meta.get("task", []), dtype=object)
        lengths = self.lengths
        for task in sorted(set(self.tasks) | set(self.n_too_long), key=TASKS.index):
            mask = tasks == task
            y = self.labels[mask]
            out[task] = {
                "n": int(mask.sum()),
                "positive_rate": None if task == "value" or not len(y) else float(y.mean()),
                "max_length": int(lengths[mask].max()) if mask.any() else 0,
                "n_too_long": int(self.n_too_long.get(task, 0)),
            }
        return out


def build_examples(
    problems: Iterable[ProblemText],
    tasks="all",
    tokenizer=None,
    per_problem: int = PER_PROBLEM,
    seed: int = 0,
    max_len: int | None = None,
    progress=None,
    pool: str = "problem",
) -> ProbeData:
    """Sample up to ``per_problem`` queries per problem and task (module doc) and build their inputs.

    ``pool``: where A and B are drawn from (:data:`POOLS`: the problem's parameters, or the authors' slots).

    ``max_len``: examples with more tokens are left out and counted in ``n_too_long`` (with a warning).
    ``progress``: optional callable, called with 1 after each problem.
    """
    from probekit.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    tasks = parse_tasks(tasks)
    ids: list[np.ndarray] = []
    labels: list[int] = []
    meta: dict[str, list] = {k: [] for k in META_COLUMNS}
    too_long = {t: 0 for t in tasks}
    for item in problems:
        builder = ProbeBuilder(item, tokenizer, pool=pool)
        for task in tasks:
            for a, b, t in builder.sample(task, per_problem, _draw_rng(seed, item.index, task)):
                x, y, m = builder.example(task, a, b, t)
                if max_len is not None and len(x) > max_len:
                    too_long[task] += 1
                    continue
                ids.append(np.asarray(x, dtype=np.int32))
                labels.append(y)
                for k in META_COLUMNS:
                    meta[k].append(m[k])
        if progress is not None:
            progress(1)
    dropped = sum(too_long.values())
    if dropped:
        warnings.warn(
            f"{dropped} probe examples longer than max_len={max_len} tokens were left out: "
            + ", ".join(f"{k}={v}" for k, v in too_long.items() if v),
            stacklevel=2,
        )
    return ProbeData(ids, np.asarray(labels, dtype=np.int64), meta, too_long, max_len)


@dataclass
class FreshData:
    """Probe training data drawn anew every epoch: the paper's "fresh data on the fly" (App. E).

    Epoch 0 is ``first`` (the examples of problems ``0 .. n-1`` of ``config``); epoch ``k`` is built by
    :func:`build_examples` from problems ``k n .. (k+1) n - 1`` of the same generation config (so the same
    template split and seed), with the keyword arguments ``build``. A V-probe's fit
    (:meth:`~probekit.probe.vprobe.VProbe.fit`) reads one epoch at a time: memory holds one epoch whatever the
    number of steps, and no example is seen twice. Each fit builds its epochs again (a fit of every layer and the
    control task's fit cost one generation pass each).

    The attributes a fit reads before training (``labels``, ``meta``, ``ids``, ``lengths``, ``select``: the
    label prior, the input standardisation, control keys) are those of ``first``.
    """

    first: ProbeData
    config: Any
    """The :class:`~probekit.igsm.generate.GenerationConfig` of the problems."""
    n: int
    """Problems per epoch."""
    build: dict = field(default_factory=dict)
    """Keyword arguments of :func:`build_examples` (tasks, tokenizer, per_problem, seed, max_len, pool)."""
    task_name: str | None = None
    """Keep only this task's examples (:meth:`task`)."""
    labeller: Callable[[ProbeData], np.ndarray] | None = None
    """Replaces every epoch's labels (:meth:`relabel`: the control task)."""

    def epoch(self, k: int) -> ProbeData:
        """The examples of epoch ``k`` (0: ``first``)."""
        if k == 0:
            return self.first
        data = examples_from_config(self.config, self.n, start=k * self.n, **self.build)
        if self.task_name is not None:
            data = data.task(self.task_name)
        if self.labeller is not None:
            data = replace(data, labels=np.asarray(self.labeller(data), dtype=np.int64))
        return data

    def task(self, name: str) -> FreshData:
        """The examples of one task, in every epoch."""
        return replace(self, first=self.first.task(name), task_name=name)

    def relabel(self, labeller: Callable[[ProbeData], np.ndarray]) -> FreshData:
        """The same epochs with labels ``labeller(epoch data)`` (an array, one label per example)."""
        first = replace(self.first, labels=np.asarray(labeller(self.first), dtype=np.int64))
        return replace(self, first=first, labeller=labeller)

    def __len__(self) -> int:
        return len(self.first)

    def __getattr__(self, name: str):  # ids, labels, meta, lengths, tasks, n_too_long, max_len, select ...
        if name.startswith("__") or name == "first":
            raise AttributeError(name)
        return getattr(self.first, name)


def examples_from_config(config, n: int, start: int = 0, **kwargs) -> ProbeData:
    """:func:`build_examples` on problems ``start .. start+n-1`` of a ``GenerationConfig``."""
    return build_examples(problems_from_config(config, n, start), **kwargs)


def examples_from_records(records: Iterable[dict], solution_key: str = "solution", **kwargs) -> ProbeData:
    """:func:`build_examples` on JSONL records; ``solution_key`` names the solution the positions follow."""
    return build_examples(problems_from_records(records, solution_key), **kwargs)


def split_configs(preset: str, fmt: str, seed: int, op: int | None, test_op: int | None, reask: bool):
    """The generation configs of held-out probe data: train-split templates (seed ``seed``, op ``op``) and
    test-split templates (seed ``seed + 1``, op ``test_op`` unless None, re-asked with ``reask``)."""
    from probekit.igsm.generate import GenerationConfig

    train_cfg = GenerationConfig(preset, op, fmt, False, "train", seed)
    return train_cfg, GenerationConfig(preset, op if test_op is None else test_op, fmt, reask, "test", seed + 1)


def train_test_data(
    preset: str = "med",
    fmt: str = "pq",
    n_train: int = 1000,
    n_test: int = 400,
    seed: int = 0,
    op: int | None = None,
    test_op: int | None = None,
    reask: bool = False,
    tasks="all",
    fresh: bool = False,
    **kwargs,
) -> tuple[ProbeData | FreshData, ProbeData]:
    """Fresh probe data: train on train-split templates (seed ``seed``), test on test-split templates
    (seed ``seed + 1``); ``test_op`` / ``reask`` shape the test problems (default: like the train ones).

    ``fresh``: the training data is a :class:`FreshData` whose every epoch holds ``n_train`` new problems (the
    first epoch is built here, the others when a fit reaches them); else ``n_train`` problems, cycled."""
    train_cfg, test_cfg = split_configs(preset, fmt, seed, op, test_op, reask)
    first = examples_from_config(train_cfg, n_train, tasks=tasks, seed=seed, **kwargs)
    test = examples_from_config(test_cfg, n_test, tasks=tasks, seed=seed + 1, **kwargs)
    if not fresh:
        return first, test
    build = {k: v for k, v in kwargs.items() if k != "progress"}
    return FreshData(first, train_cfg, n_train, {"tasks": tasks, "seed": seed, **build}), test
