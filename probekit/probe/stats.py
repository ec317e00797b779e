"""Controls and statistics for probe results (numpy only, no torch).

**Bootstrap over problems.** The examples of one problem share its text (up to ``per_problem`` queries on the
same prefix), so they are correlated: resampling examples would make intervals too narrow. The intervals here
resample *problems* (clusters) with replacement, ``n_boot`` times (default :data:`N_BOOT` = 1000), recompute each
statistic as a ratio of sums over the resampled problems' examples (an accuracy on ``k`` copies of a problem
counts its examples ``k`` times) and report the percentile interval (default 95%: the 2.5th and 97.5th
percentiles). Every statistic of one row is computed on the *same* resamples (seeded by ``seed``), so
differences such as the selectivity get paired intervals. :func:`problem_groups` reads the problem of each
example from ``ProbeData.meta`` (``seed``, ``split``, ``problem``); without a ``problem`` column every example
is its own group (the plain example bootstrap). A constant statistic (e.g. a constant predictor on a constant
label set) has a degenerate interval: low = high = the value. A statistic undefined on a resample (a mask with
no example in it) is left out of its percentiles; NaN when it is undefined on every resample.

**Control task** (Hewitt and Liang 2019, "Designing and Interpreting Probes with Control Tasks"): every
control *key* gets one label drawn at random from the empirical class frequencies of the real task's training
labels, through a fixed hash of (``seed``, task, key): the map is consistent over the whole data set (train and
test, every problem, every position t) and has the real task's label distribution in expectation. Hewitt and
Liang key on word types, which recur between train and test; a full iGSM parameter name ("X's Y") almost never
does (about 7-16% of nece test names, 0% of dep pairs, are seen in training), so a name-keyed control cannot be
memorised and its accuracy falls to the prior whatever the probe can do. The key is therefore the unit that
recurs (:func:`control_keys`): the counted item or category word Y of A's name (``dep``: Y of A with the
category of B's Y, an ordered pair). The control probe is scored only on test examples whose key occurs in the
training data (:func:`seen_keys`; the share is reported as ``control_seen``), where memorising is possible; a
probe that scores well on it memorises keys rather than reading the model; ``selectivity`` = accuracy -
control accuracy on those same examples.

**Minimum description length** (Voita and Titov 2020, "Information-Theoretic Probing with Minimum Description
Length"), online code: the training examples, in an order that keeps each problem's examples together, are
cut at the fractions :data:`MDL_FRACTIONS` of their number; the first block is sent with the uniform code
(log2 K bits per label, K classes); each later block is sent with the probe trained on all examples before it
(-log2 p(y | x) bits per label). ``mdl_bits`` is the total, ``uniform_bits`` = n log2 K, ``compression`` =
uniform / mdl (> 1: the representation makes the labels cheaper to send than no representation). The
bookkeeping is here (:func:`mdl_blocks`, :func:`group_order`, :func:`code_length_bits`); the probe training is
:func:`probekit.probe.layers.online_code_length`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

N_BOOT = 1000
LEVEL = 0.95
#: Voita and Titov's block boundaries, as fractions of the training examples (the last block ends at 100%).
MDL_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
_CHUNK_CELLS = 1 << 22  # resample-weight matrix cells per chunk (bounds memory for large test sets)
GROUP_KEYS = ("source", "seed", "split", "format", "reask", "problem")


# ---------------------------------------------------------------------------- problems (clusters)
def problem_groups(meta: dict | None, n: int | None = None) -> np.ndarray:
    """Integer group codes ``(n,)``, one group per problem: examples sharing the ``GROUP_KEYS`` values of
    ``meta`` (a ``ProbeData.meta`` dict of lists) that it has. Without a ``problem`` column (or ``meta`` None)
    every example is its own group; ``n`` is then the number of examples."""
    if meta is not None and meta.get("problem") is not None:
        columns = [meta[k] for k in GROUP_KEYS if meta.get(k) is not None]
        return codes(list(zip(*columns)))
    if n is None:
        raise ValueError("problem_groups needs n when meta has no 'problem' column")
    return np.arange(int(n), dtype=np.int64)


def codes(values: Sequence) -> np.ndarray:
    """Integer codes 0..G-1 of hashable ``values``, in order of first appearance."""
    seen: dict = {}
    return np.fromiter((seen.setdefault(v, len(seen)) for v in values), dtype=np.int64, count=len(values))


# ---------------------------------------------------------------------------- cluster bootstrap
def resample_weights(groups: np.ndarray, n_boot: int = N_BOOT, seed: int = 0):
    """Yield ``(chunk, G)`` float arrays of resample counts: row b says how many times each of the G groups is
    drawn in resample b (G draws with replacement; rows sum to G). Seeded: the same ``(G, n_boot, seed)``
    always gives the same resamples. Chunks bound memory; their rows together are ``n_boot`` resamples."""
    n_groups = int(np.max(groups)) + 1 if len(groups) else 0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xB007]))
    step = max(1, _CHUNK_CELLS // max(n_groups, 1))
    done = 0
    while done < n_boot:
        size = min(step, n_boot - done)
        draws = rng.integers(0, n_groups, size=(size, n_groups))
        offsets = (np.arange(size) * n_groups)[:, None]
        counts = np.bincount((draws + offsets).ravel(), minlength=size * n_groups).reshape(size, n_groups)
        yield counts.astype(np.float64)
        done += size


def bootstrap_means(
    columns: dict[str, tuple[np.ndarray, np.ndarray | None]],
    groups: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Bootstrap distributions ``{name: (n_boot,)}`` of example means over resampled problems.

    ``columns``: ``{name: (values, mask)}``; the statistic is ``mean(values[mask])`` (``mask`` None: all
    examples), recomputed on each resample as ``sum(weight * values * mask) / sum(weight * mask)`` with each
    example weighted by its problem's resample count. All columns share the resamples (paired). NaN where a
    resample holds no masked example. ``groups``: integer codes (:func:`problem_groups`); None: one per example.
    """
    if not columns:
        return {}
    n = len(next(iter(columns.values()))[0])
    groups = np.arange(n, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    if len(groups) != n:
        raise ValueError(f"{n} values but {len(groups)} group codes")
    n_groups = int(groups.max()) + 1 if n else 0
    sums, counts = {}, {}
    for name, (values, mask) in columns.items():
        values = np.asarray(values, dtype=np.float64)
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} values, not {n}")
        m = np.ones(n, dtype=np.float64) if mask is None else np.asarray(mask, dtype=bool).astype(np.float64)
        sums[name] = np.bincount(groups, weights=values * m, minlength=n_groups)
        counts[name] = np.bincount(groups, weights=m, minlength=n_groups)
    out: dict[str, list] = {name: [] for name in columns}
    if n == 0 or n_boot <= 0:
        return {name: np.full(max(int(n_boot), 0), math.nan) for name in columns}
    for weights in resample_weights(groups, n_boot, seed):
        for name in columns:
            num, den = weights @ sums[name], weights @ counts[name]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name].append(np.where(den > 0, num / np.where(den > 0, den, 1.0), math.nan))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` percentile interval of bootstrap ``samples`` (NaNs ignored; ``(nan, nan)`` if all NaN).
    Identical samples give a point: ``(x, x)``."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return math.nan, math.nan
    lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    # a constant statistic must give exactly a point (percentile interpolation can round in the last bit)
    lo, hi = float(max(lo, samples.min())), float(min(hi, samples.max()))
    return lo, hi


def bootstrap_ci(
    values, groups=None, mask=None, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile interval of ``mean(values[mask])`` under the bootstrap over ``groups`` (module doc)."""
    samples = bootstrap_means({"x": (values, mask)}, groups, n_boot, seed)["x"]
    return percentile_interval(samples, level)


# ---------------------------------------------------------------------------- control task
def counted_word(name: str) -> str:
    """The counted item or category word Y of a parameter name ``"X's Y"`` (the whole name when it has no
    ``'s``)."""
    return str(name).rsplit("'s ", 1)[-1]


def category_of(word: str) -> str:
    """The category of an item word of the world vocabulary (a category name is its own; unknown words too)."""
    from probekit.igsm.world import load_world

    world = load_world()
    home = world.item_home.get(word)
    return world.chains[home[0]][home[1]].category if home else word


def control_keys(meta: dict, task: str) -> list[str]:
    """The control-task key of each example (module doc): the counted word Y of A's name; ``dep``: the ordered
    pair (Y of A, category of B's Y)."""
    a = meta.get("a")
    if a is None:
        raise ValueError("control labels need the parameter names (meta column 'a'); pass controls=False")
    if task == "dep":
        b = meta.get("b")
        if b is None:
            raise ValueError("dep control labels need the meta column 'b'")
        return [f"{counted_word(x)}\x1f{category_of(counted_word(y))}" for x, y in zip(a, b)]
    return [counted_word(x) for x in a]


def seen_keys(train_keys: Sequence[str], test_keys: Sequence[str]) -> np.ndarray:
    """``(len(test_keys),)`` bool: whether each test key occurs among the training keys."""
    seen = set(train_keys)
    return np.fromiter((k in seen for k in test_keys), dtype=bool, count=len(test_keys))


def label_prior(labels, n_classes: int) -> np.ndarray:
    """Empirical class frequencies ``(n_classes,)`` of ``labels``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    if counts.sum() == 0:
        raise ValueError("no labels to take the class frequencies from")
    return counts / counts.sum()


def control_labels(keys: Sequence[str], prior, seed: int = 0, task: str = "") -> np.ndarray:
    """One control label per example: the class of its key under the fixed random map key -> class.

    Key ``k`` maps to ``searchsorted(cumsum(prior), u(k))`` with ``u(k)`` uniform in [0, 1) from
    SHA-256(``control:{seed}:{task}:{k}``): the same key always gets the same label (whatever data set it
    appears in), distinct keys get independent labels distributed as ``prior``."""
    prior = np.asarray(prior, dtype=np.float64)
    edges = np.cumsum(prior / prior.sum())
    edges[-1] = np.inf  # u < 1 always lands in a class, rounding aside
    cache: dict[str, int] = {}
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        label = cache.get(key)
        if label is None:
            digest = hashlib.sha256(f"control:{int(seed)}:{task}:{key}".encode()).digest()
            u = int.from_bytes(digest[:8], "big") / 2.0**64
            label = cache[key] = int(np.searchsorted(edges, u, side="right"))
        out[i] = label
    return out


# ---------------------------------------------------------------------------- MDL (online code)
def mdl_blocks(n: int, fractions: Sequence[float] = MDL_FRACTIONS) -> list[int]:
    """Block ends ``[t_1, ..., t_S = n]`` (strictly increasing, t_1 >= 1) from the fractions of ``n``."""
    if n < 2:
        raise ValueError("the online code needs at least 2 examples")
    ends = sorted({min(n, max(1, round(f * n))) for f in fractions} | {n})
    if ends[0] >= n:  # every fraction rounds to n: one uniform block, then nothing to transmit
        ends = [1, n]
    return ends


def group_order(groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded order of the examples: the problems in random order, each problem's examples together (so a
    block boundary, not a problem, is what separates the examples a probe trains on from those it codes)."""
    groups = np.asarray(groups, dtype=np.int64)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    rank = np.empty(n_groups, dtype=np.int64)
    rank[np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x3D1])).permutation(n_groups)] = (
        np.arange(n_groups)
    )
    return np.lexsort((np.arange(len(groups)), rank[groups]))


def uniform_bits(n: int, n_classes: int) -> float:
    """Bits to send ``n`` labels of ``n_classes`` classes with the uniform code."""
    return float(n) * math.log2(n_classes)


def code_length_bits(log_probs: np.ndarray, labels) -> float:
    """``sum -log2 p(y)`` from natural-log class probabilities ``(N, K)`` and labels ``(N,)``."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    return float(-log_probs[np.arange(len(labels)), labels].sum() / math.log(2))
