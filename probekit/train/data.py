"""The training stream: fresh iGSM problems packed per batch lane, or packed shards; a pinned-memory loader.

Fresh problems (``data.source: generate``, the paper's setting: unlimited data, no epochs)
-----------------------------------------------------------------------------------------
The global batch of ``B`` sequences has ``B`` *lanes*. Lane ``j`` (0 <= j < B) owns the stream positions
``j, j + B, j + 2B, ...``; by default position ``g`` is problem index ``g`` of
``GenerationConfig(preset, format=..., split="train", seed=data.seed)`` (op drawn per problem by the
generator, train-split templates only; ``data.n_problems`` and ``data.resample`` change the map, below). Each problem becomes
``[PROBLEM] prompt [SOLUTION] solution [ANSWER] answer [EOS]``; with ``data.packing: stream`` a lane
concatenates its problems in order and cuts the stream into windows of ``context`` tokens (a problem may
straddle two windows; a problem longer than the context is dropped and counted), exactly the packing of
:mod:`probekit.shards`. Row ``j`` of step ``s`` is window ``s`` of lane ``j``. With ``data.packing: whole`` (the
default) a window starts at a problem boundary and holds only whole problems: a problem that does not fit in the
rest of the window starts the lane's next window and the rest is ``[PAD]`` (no problem is read without its
beginning; :mod:`probekit.train.objective` never trains on a ``[PAD]`` target).

So the stream is a pure function of (data seed, batch size, lane, position), and the global batch of a step
does not depend on the number of processes: rank ``r`` of ``W`` reads lanes ``r*B/W .. (r+1)*B/W - 1``. A
lane's position is ``(k, offset, used, dropped)``: the ordinal ``k`` of the problem the next window starts
in (global index ``j + k*B``), the tokens of it already consumed, and the counters. Checkpoints store the
position of every lane; a resumed run regenerates problem ``k`` and skips ``offset`` tokens, so it sees
exactly the tokens an uninterrupted run would (with any number of processes). Problems are iid, so windows
are not shuffled.

Which problem a lane position holds is decided in two pure steps, so every property above (exact resume,
any number of processes) holds for every setting:

1. **Data size** (``data.n_problems``). None (default): stream position ``g = j + k*B`` is problem ``g``
   (unlimited fresh problems, no epochs). ``N``: the stream draws only from problems ``0 .. N-1``; position
   ``g`` falls in epoch ``e = g // N`` and is problem ``perm_e[g % N]``, ``perm_e`` a permutation of
   ``range(N)`` seeded by SHA-256 of ``"{data.seed}:{N}:{e}:epoch"`` (:class:`ProblemOrder`). Every epoch
   visits each of the ``N`` problems exactly once, in a fresh order ("trained on N distinct problems");
   packing per lane is unchanged (an epoch boundary does not start a new window). The lane position needs
   nothing new: ``(k, offset)`` still fixes ``g`` and so the problem.
2. **Resampling** (``data.resample``, paper 2.1 Fig. 4 right). ``none`` (default): problem ``p`` is
   generator index ``p`` (bit-identical to the stream before these keys existed). ``length``: problem ``p``
   has op ``t`` drawn (RNG seeded by SHA-256 of ``"{seed}:{p}:length"``) from ``P'(t) ~ P(t) * t **
   data.resample_power``, where ``P(t) ~ 2 (max_op - t) + 1`` is the generator's own op distribution (the
   min of two uniform draws), and is the first generator index ``c`` in the block ``p * 2**16 ..`` whose
   op is ``t`` (a record's op is its first two RNG draws, :func:`drawn_op`, so this costs no generation).
   The problems of one op are thus distributed exactly as in the plain stream; only the op mix is
   re-weighted, by the op count ``t`` (the number of operations, i.e. of ``;``-separated steps of the
   reference solution) to the power. This is not the number of solution sentences (necessary parameters,
   at most ``t``) nor the token length: two problems of the same op weigh the same however long their
   solutions are. Xwin-Math resamples by the number of CoT sentences; the op is iGSM's nearest
   equivalent, known before generation. :func:`stream_op_probabilities` gives ``P'``.

Worker processes (``fork`` on Linux, else ``spawn``; they never use torch) produce the
token arrays; the order in which they finish does not matter.

Shards (``data.source: shards``)
--------------------------------
Windows of a ``probekit generate --tokens DIR`` directory (memory-mapped). Global window position
``p = step * B + j`` maps to epoch ``p // N`` and, with ``data.shuffle``, to window ``perm_epoch[p % N]`` of
a permutation seeded by (data seed, epoch). The position is the step.

Loader
------
:class:`Loader` runs a background thread that builds each rank batch (``(B/W, context)``), converts it to an
int32 tensor, pins it (CUDA) and queues it; the training loop copies it with ``non_blocking=True`` and
measures the time it waits for the queue (``data_wait_fraction`` in the log).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import multiprocessing
import os
import queue
import random
import statistics
import threading
import time
from collections import deque
from dataclasses import asdict
from functools import lru_cache
from typing import Any

import numpy as np

from probekit.igsm.generate import (
    FastRandom,
    GenerationConfig,
    generate_record,
    record_seed,
)
from probekit.igsm.presets import Preset, resolve_preset, restricted_preset
from probekit.pools import start_pool
from probekit.tokenizer import IGSMTokenizer, default_tokenizer
from probekit.train.config import ConfigError, DataSection, required

TOKEN_DTYPE = np.uint16


# ---------------------------------------------------------------------------- presets
def training_preset(data: DataSection) -> Preset:
    """The family of the training problems: ``data.preset`` restricted by ``data.max_op`` / ``data.max_edge``
    (``med-op4-ip12``: :func:`probekit.igsm.presets.restricted_preset`)."""
    try:
        return restricted_preset(data.preset, data.max_op, data.max_edge)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None


def generation_config(data: DataSection) -> GenerationConfig:
    """The generator config of the training stream (train split, op drawn per problem)."""
    name = training_preset(data).name
    return GenerationConfig(name, op=None, format=data.format, reask=False, split="train", seed=data.seed)


def problem_tokens(config: GenerationConfig, index: int, tokenizer: IGSMTokenizer | None = None) -> np.ndarray:
    """Token ids of problem ``index``: ``[PROBLEM] prompt [SOLUTION] solution [ANSWER] answer [EOS]``."""
    tokenizer = tokenizer or default_tokenizer()
    record = generate_record(config, index)
    ids = tokenizer.encode_example(record["problem"], record["solution"], record["answer"])
    return np.asarray(ids, dtype=TOKEN_DTYPE)


# worker-process state
_WORKER: dict[str, Any] = {}


def _worker_init(config_fields: dict, resample: str = "none", power: float = 1.0) -> None:
    _WORKER["config"] = GenerationConfig(**config_fields)
    _WORKER["tokenizer"] = default_tokenizer()
    _WORKER["resample"] = (resample, power)


def _worker_tokens(index: int) -> np.ndarray:
    resample, power = _WORKER["resample"]
    return stream_problem_tokens(_WORKER["config"], index, resample, power, _WORKER["tokenizer"])


def _mp_context():
    """``fork`` where available (Linux; as torch's DataLoader: nothing is re-imported, a script without a
    ``__main__`` guard works, and the workers never touch torch or CUDA), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def auto_workers(device_type: str) -> int:
    """Generator processes per rank: on CUDA this process's share of the node's cores minus two (the training
    loop and the loader thread); 1 on CPU (see probekit.train.distributed.share_cpu)."""
    if device_type != "cuda":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 2
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(32, cores // max(local, 1) - 2))


# ---------------------------------------------------------------------------- which problem: size and resampling
RESAMPLE_BLOCK = 1 << 16
"""Generator indices ``p * RESAMPLE_BLOCK ..`` are the candidates of resampled problem ``p`` (disjoint blocks)."""


def drawn_op(config: GenerationConfig, index: int) -> int:
    """The op of generator index ``index`` of an op-free ``config``, without generating the problem.

    The generator's first two draws from the record's RNG fix the target op (min of two uniform draws in
    1..max_op) and a record is kept only with that op, so this is ``generate_record(config, index)["op"]``;
    :func:`stream_problem_tokens` checks it on every resampled problem.
    """
    max_op = resolve_preset(config.preset).max_op
    rng = FastRandom(record_seed(config.seed, index))
    return min(rng.randint(1, max_op), rng.randint(1, max_op))


def stream_op_probabilities(max_op: int, resample: str = "none", power: float = 1.0) -> np.ndarray:
    """``P(op = t)`` for ``t = 1..max_op`` (index ``t - 1``) of the training stream.

    ``none``: the generator's ``(2 (max_op - t) + 1) / max_op**2``; ``length``: that times ``t ** power``,
    normalised.
    """
    weights = _op_weights(max_op, resample, float(power))
    return np.asarray(weights) / math.fsum(weights)


@lru_cache(maxsize=64)
def _op_weights(max_op: int, resample: str, power: float) -> tuple[float, ...]:
    base = [float(2 * (max_op - t) + 1) for t in range(1, max_op + 1)]
    if resample == "none":
        return tuple(base)
    if resample != "length":
        raise ConfigError(f"data.resample must be none or length, not {resample!r}")
    return tuple(b * t**power for t, b in zip(range(1, max_op + 1), base))


@lru_cache(maxsize=64)
def _op_cum_weights(max_op: int, power: float) -> tuple[float, ...]:
    return tuple(itertools.accumulate(_op_weights(max_op, "length", power)))


def resampled_op(seed: int, index: int, max_op: int, power: float) -> int:
    """The op of resampled problem ``index``: a draw from :func:`stream_op_probabilities` (``length``)."""
    digest = hashlib.sha256(f"{seed}:{index}:length".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    return rng.choices(range(1, max_op + 1), cum_weights=_op_cum_weights(max_op, float(power)))[0]


def generator_index(
    config: GenerationConfig, index: int, resample: str = "none", power: float = 1.0
) -> tuple[int, int | None]:
    """``(generator index, op or None)`` of stream problem ``index`` (see the module doc, step 2).

    ``none``: ``(index, None)``. ``length``: the first index of ``index * RESAMPLE_BLOCK ..`` whose
    :func:`drawn_op` is :func:`resampled_op`, and that op.
    """
    if resample == "none":
        return index, None
    max_op = resolve_preset(config.preset).max_op
    op = resampled_op(config.seed, index, max_op, power)
    start = index * RESAMPLE_BLOCK
    for candidate in range(start, start + RESAMPLE_BLOCK):
        if drawn_op(config, candidate) == op:
            return candidate, op
    raise RuntimeError(f"no problem with op {op} among generator indices {start}..{start + RESAMPLE_BLOCK - 1}")


def stream_record(config: GenerationConfig, index: int, resample: str = "none", power: float = 1.0) -> dict:
    """The ``generate_record`` of stream problem ``index`` (``resample`` maps it to a generator index)."""
    g, op = generator_index(config, index, resample, power)
    record = generate_record(config, g)
    if op is not None and record["op"] != op:
        raise RuntimeError(
            f"generator index {g} has op {record['op']}, but its first two draws say {op}: "
            "probekit.train.data.drawn_op no longer matches probekit.igsm.generate.draw_problem"
        )
    return record


def stream_problem_tokens(
    config: GenerationConfig,
    index: int,
    resample: str = "none",
    power: float = 1.0,
    tokenizer: IGSMTokenizer | None = None,
) -> np.ndarray:
    """Token ids of stream problem ``index`` (:func:`problem_tokens` of its generator index)."""
    if resample == "none":
        return problem_tokens(config, index, tokenizer)
    tokenizer = tokenizer or default_tokenizer()
    record = stream_record(config, index, resample, power)
    ids = tokenizer.encode_example(record["problem"], record["solution"], record["answer"])
    return np.asarray(ids, dtype=TOKEN_DTYPE)


class ProblemOrder:
    """Stream position -> problem index (module doc, step 1): identity, or ``N`` problems in shuffled epochs."""

    CACHE_ELEMENTS = 1 << 24  # permutations kept: at most this many entries in all (64 MiB), and at least 2

    def __init__(self, n_problems: int | None, seed: int):
        if n_problems is not None and n_problems < 1:
            raise ConfigError(f"data.n_problems must be >= 1 or null, got {n_problems}")
        self.n, self.seed = n_problems, seed
        # lanes advance at different rates, so with a small N they sit in different epochs (about
        # sqrt(problems per lane) * B / N apart): keep many small permutations, or two large ones
        self.cache = max(2, self.CACHE_ELEMENTS // n_problems) if n_problems else 0
        self._perm: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """The problem order of ``epoch`` (a permutation of ``range(n_problems)``)."""
        if self.n is None:
            raise ValueError("an unlimited stream (data.n_problems null) has no epochs to permute")
        perm = self._perm.get(epoch)
        if perm is None:
            if len(self._perm) >= self.cache:
                self._perm.pop(next(iter(self._perm)))  # the first computed
            digest = hashlib.sha256(f"{self.seed}:{self.n}:{epoch}:epoch".encode()).digest()
            perm = np.random.default_rng(int.from_bytes(digest[:8], "big")).permutation(self.n)
            self._perm[epoch] = perm.astype(np.int32) if self.n < 2**31 else perm
        return self._perm[epoch]

    def __call__(self, position: int) -> int:
        if self.n is None:
            return position
        epoch, pos = divmod(position, self.n)
        return int(self.permutation(epoch)[pos])

    def epoch(self, position: int) -> int:
        """The epoch of a stream position (0 for the unlimited stream)."""
        return 0 if self.n is None else position // self.n


# ---------------------------------------------------------------------------- context check
@lru_cache(maxsize=16)
def _max_op_lengths(name: str, max_op: int, fmt: str, seed: int, n: int) -> tuple[int, ...]:
    config = GenerationConfig(name, op=max_op, format=fmt, split="train", seed=seed)
    tok = default_tokenizer()
    lengths = []
    for i in range(n):  # one by one: batch encoding would start the tokenizers thread pool before a fork
        r = generate_record(config, i)
        lengths.append(len(tok.encode_example(r["problem"], r["solution"], r["answer"])))
    return tuple(sorted(lengths))


def check_context(data: DataSection, context: int) -> dict:
    """Draw ``data.length_check_samples`` problems at the preset's max op and compare their length to ``context``.

    Raises :class:`ConfigError` when more than ``data.max_drop_fraction`` of them would not fit (they would be
    dropped). The paper's own recipe drops a few: about 1% of med problems at op = 15 are longer than 768
    tokens (0.03% of the training distribution, where long problems are rare), hence a fraction, not "the
    longest must fit". Returns the statistics (``longest``, ``median``, ``too_long_fraction``, ...).
    """
    n = data.length_check_samples
    if n == 0 or data.source != "generate":
        return {}
    preset = training_preset(data)
    name, max_op = preset.name, preset.max_op
    lengths = _max_op_lengths(name, max_op, data.format, data.seed, n)
    too_long = sum(1 for x in lengths if x > context)
    stats = {
        "preset": name,
        "op": max_op,
        "samples": n,
        "longest": lengths[-1],
        "median": int(statistics.median(lengths)),
        "too_long_fraction": too_long / n,
    }
    if too_long / n > data.max_drop_fraction:
        raise ConfigError(
            f"data.context={context} is too short for {name} problems: of {n} problems drawn at the max op "
            f"({max_op}), the longest has {lengths[-1]} tokens (median {stats['median']}) and "
            f"{100 * too_long / n:.1f}% are longer than {context} tokens, so they would be dropped "
            f"(limit data.max_drop_fraction={data.max_drop_fraction}). Use data.context >= {lengths[-1]}, "
            "or a smaller data.max_op / data.max_edge"
        )
    return stats


# ---------------------------------------------------------------------------- fresh problems, per lane
class _Lane:
    __slots__ = ("dropped", "k", "lane", "offset", "queue", "ready", "requested", "used")

    def __init__(self, lane: int, k: int = 0, offset: int = 0, used: int = 0, dropped: int = 0):
        self.lane, self.k, self.offset, self.used, self.dropped = lane, k, offset, used, dropped
        self.requested = k  # next ordinal to ask the generator for
        self.queue: deque = deque()  # (ordinal, tokens or None when too long), ordinals k, k+1, ...
        self.ready = 0  # tokens available for windows (queue minus offset, dropped excluded)

    def state(self) -> list[int]:
        return [self.k, self.offset, self.used, self.dropped]


class GeneratedStream:
    """Windows of fresh problems for the lanes ``lanes`` of a global batch of ``n_lanes`` (see module doc)."""

    kind = "generate"

    def __init__(
        self,
        data: DataSection,
        context: int,
        n_lanes: int,
        lanes: range,
        workers: int,
        state: dict | None = None,
        lookahead: float = 2.0,
    ):
        self.config = generation_config(data)
        self.order = ProblemOrder(data.n_problems, data.seed)
        self.resample, self.power = data.resample, float(data.resample_power)
        if self.resample not in ("none", "length"):
            raise ConfigError(f"data.resample must be none or length, not {self.resample!r}")
        self.context, self.n_lanes, self.lanes = context, n_lanes, lanes
        self.whole = data.packing != "stream"  # None (unresolved) is the default, whole
        self.target = int(lookahead * context)
        self._est = max(1.0, context / 3)  # running mean problem length, for request sizes only
        self._n_seen = 0
        self._tokenizer = default_tokenizer()
        positions = self._positions(state)
        self._lanes = [_Lane(j, *positions.get(j, (0, 0, 0, 0))) for j in lanes]
        self._pool = None
        self.workers = workers
        if workers > 0:
            self._pool = start_pool(
                workers, _mp_context(), _worker_init, (asdict(self.config), self.resample, self.power)
            )

    def _positions(self, state: dict | None) -> dict[int, tuple]:
        if not state:
            return {}
        if state.get("kind") != self.kind:
            raise ConfigError(f"the checkpoint's data position is of kind {state.get('kind')!r}, not {self.kind!r}")
        if state.get("n_lanes") != self.n_lanes:
            raise ConfigError(
                f"the checkpoint was trained with data.batch_size={state.get('n_lanes')}, not {self.n_lanes}: "
                "the fresh-problem stream is laid out per batch lane and cannot be resumed with another batch size"
            )
        lanes = state["lanes"]
        return {j: tuple(lanes[j]) for j in self.lanes}

    # -- generation
    def problem_index(self, lane: int, ordinal: int) -> int:
        """The problem (index of the data seed's stream, before resampling) at ordinal ``ordinal`` of ``lane``."""
        return self.order(lane + ordinal * self.n_lanes)

    def _generate(self, indices: list[int]) -> list[np.ndarray]:
        """Token arrays of stream problems ``indices`` (resampling, if any, is resolved in the workers)."""
        if self._pool is None:
            return [stream_problem_tokens(self.config, i, self.resample, self.power, self._tokenizer) for i in indices]
        chunk = max(1, min(64, len(indices) // (4 * self.workers)))
        return self._pool.map(_worker_tokens, indices, chunksize=chunk)

    def _fill(self) -> None:
        """Generate until every lane holds a full window (aiming for ``lookahead`` windows)."""
        rounds = 0
        while any(lane.ready < self.context for lane in self._lanes):
            rounds += 1
            if rounds > 1000:
                raise RuntimeError(
                    f"1000 rounds of problems did not fill a window of {self.context} tokens: are nearly all "
                    f"{self.config.preset} problems longer than the context?"
                )
            wanted: list[tuple[_Lane, int]] = []
            for lane in self._lanes:
                deficit = self.target - lane.ready
                if deficit <= 0:
                    continue
                for _ in range(max(1, math.ceil(deficit / self._est))):
                    wanted.append((lane, lane.requested))
                    lane.requested += 1
            arrays = self._generate([self.problem_index(lane.lane, ordinal) for lane, ordinal in wanted])
            for (lane, ordinal), ids in zip(wanted, arrays):
                self._n_seen += 1
                self._est += (len(ids) - self._est) / min(self._n_seen, 1000)
                if len(ids) > self.context:
                    lane.queue.append((ordinal, None))
                    continue
                if ordinal == lane.k and lane.offset:  # resumed inside this problem
                    lane.ready -= lane.offset
                lane.queue.append((ordinal, ids))
                lane.ready += len(ids)

    def _window(self, lane: _Lane, out: np.ndarray) -> tuple[int, int]:
        filled = used = dropped = 0
        ctx = self.context
        while filled < ctx:
            ordinal, ids = lane.queue[0]
            assert ordinal == lane.k, (ordinal, lane.k)
            if ids is None:
                lane.queue.popleft()
                lane.k += 1
                lane.dropped += 1
                dropped += 1
                continue
            if self.whole and filled and len(ids) > ctx - filled:  # starts the next window
                out[filled:] = self._tokenizer.pad_id
                break
            take = min(len(ids) - lane.offset, ctx - filled)
            out[filled : filled + take] = ids[lane.offset : lane.offset + take]
            filled += take
            lane.offset += take
            lane.ready -= take
            if lane.offset == len(ids):
                lane.queue.popleft()
                lane.k += 1
                lane.offset = 0
                lane.used += 1
                used += 1
        return used, dropped

    def next_batch(self) -> tuple[np.ndarray, dict, dict]:
        """The next ``(len(lanes), context)`` uint16 batch, the position after it and its counters."""
        self._fill()
        batch = np.empty((len(self._lanes), self.context), dtype=TOKEN_DTYPE)
        used = dropped = 0
        for row, lane in enumerate(self._lanes):
            u, d = self._window(lane, batch[row])
            used += u
            dropped += d
        return batch, self.state(), {"problems": used, "dropped": dropped}

    def state(self) -> dict:
        """This rank's lanes: ``{"kind", "n_lanes", "lanes": {lane: [k, offset, used, dropped]}}``."""
        return {"kind": self.kind, "n_lanes": self.n_lanes, "lanes": {lane.lane: lane.state() for lane in self._lanes}}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


def merge_states(states: list[dict]) -> dict:
    """Merge the per-rank positions into the global one stored in checkpoints."""
    first = states[0]
    if first["kind"] == "shards":
        return dict(first)
    lanes: dict[int, list[int]] = {}
    for s in states:
        lanes.update({int(j): v for j, v in s["lanes"].items()})
    n = first["n_lanes"]
    if sorted(lanes) != list(range(n)):
        raise RuntimeError(f"data positions of {len(lanes)} lanes gathered, expected {n}")
    return {"kind": "generate", "n_lanes": n, "lanes": [lanes[j] for j in range(n)]}


def stream_totals(state: dict) -> dict:
    """Problems used / dropped so far, from a global position."""
    if state.get("kind") != "generate":
        return {}
    lanes = state["lanes"]
    return {"problems": sum(v[2] for v in lanes), "dropped": sum(v[3] for v in lanes)}


# ---------------------------------------------------------------------------- shards
class ShardStream:
    """Windows of a shard directory, permuted per epoch (see module doc)."""

    kind = "shards"

    def __init__(
        self,
        data: DataSection,
        context: int,
        n_lanes: int,
        lanes: range,
        tokenizer: IGSMTokenizer,
        state: dict | None = None,
    ):
        from probekit.shards import ShardError, load_meta, read_shards

        shards = required(data.shards, "data.shards")
        try:  # a damaged shard or meta.json is a ShardError naming the file
            meta = load_meta(shards)
            if meta["context"] != context:
                raise ConfigError(
                    f"data.context={context} but the shards in {data.shards} have windows of {meta['context']}"
                )
            self.arrays = read_shards(shards, tokenizer)
        except (FileNotFoundError, ShardError) as err:
            raise ConfigError(f"data.shards: {err}") from None
        counts = np.array([a.shape[0] for a in self.arrays], dtype=np.int64)
        self.n_windows = int(counts.sum())
        if self.n_windows == 0:
            raise ConfigError(f"{data.shards} holds no windows")
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.context, self.n_lanes, self.lanes = context, n_lanes, np.asarray(lanes, dtype=np.int64)
        self.seed, self.shuffle = data.seed, data.shuffle
        self.step = 0
        if state:
            if state.get("kind") != self.kind:
                raise ConfigError(f"the checkpoint's data position is of kind {state.get('kind')!r}, not 'shards'")
            self.step = int(state["next_step"])
        self._perm: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray | None:
        if not self.shuffle:
            return None
        if epoch not in self._perm:
            if len(self._perm) > 2:
                self._perm.pop(min(self._perm))
            self._perm[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
        return self._perm[epoch]

    def next_batch(self) -> tuple[np.ndarray, dict, dict]:
        positions = self.step * self.n_lanes + self.lanes
        batch = np.empty((len(self.lanes), self.context), dtype=TOKEN_DTYPE)
        for row, p in enumerate(positions):
            epoch, pos = divmod(int(p), self.n_windows)
            perm = self._permutation(epoch)
            w = int(perm[pos]) if perm is not None else pos
            shard = int(np.searchsorted(self.starts, w, side="right") - 1)
            batch[row] = self.arrays[shard][w - self.starts[shard]]
        self.step += 1
        return batch, self.state(), {"epoch": int(positions[-1]) // self.n_windows}

    def state(self) -> dict:
        return {"kind": self.kind, "next_step": self.step}

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- loader
class Loader:
    """A background thread that prepares batches (int32, pinned on CUDA) ``prefetch`` steps ahead.

    :meth:`next` returns ``(tokens on device, position after the batch, counters)`` and adds the seconds it
    waited to :attr:`wait_seconds`.
    """

    def __init__(self, stream, device, prefetch: int = 4):
        import torch

        self.stream = stream
        self.device = device
        self.pin = getattr(device, "type", str(device)) == "cuda"
        self.wait_seconds = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._torch = torch
        self._thread = threading.Thread(target=self._produce, name="probekit-train-data", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        torch = self._torch
        try:
            if self.pin:  # as torch's DataLoader pin-memory thread
                torch.cuda.set_device(self.device)
            while not self._stop.is_set():
                batch, state, stats = self.stream.next_batch()
                tensor = torch.from_numpy(batch.astype(np.int32))
                if self.pin:
                    tensor = tensor.pin_memory()
                item = (tensor, state, stats)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # handed to the training loop
            self._put_error(err)

    def _put_error(self, err: BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(err, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        start = time.perf_counter()
        while True:
            try:
                item = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the data loader thread stopped") from None
        self.wait_seconds += time.perf_counter() - start
        if isinstance(item, BaseException):
            raise RuntimeError(f"data loader failed: {item!r}") from item
        tensor, state, stats = item
        return tensor.to(self.device, non_blocking=True), state, stats

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock the producer
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)
        self.stream.close()
