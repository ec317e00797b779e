"""Evaluation metrics as pure functions of plain arrays and verdicts (numpy only: no torch, no scipy).

Everything here takes lists / arrays (of booleans, counts, verdict dicts or :class:`~probekit.igsm.check.Verdict`
objects) and returns floats, tuples or small dataclasses, so the probe and figure code can reuse it.

Definitions
-----------
- **Accuracy** with a 95% **Wilson score interval** (:func:`wilson_interval`): well behaved at 0/n and n/n,
  where the normal interval collapses to a point.
- **Pass@N** = mean over problems of ``min(c, 1)`` and **PassRatio@N** = mean over problems of ``c / N``, with
  ``c`` the number of correct solutions among the ``N`` samples of a problem (Xwin-Math section 2,
  ``paper-facts.md`` 2.1). Pass@N gets a Wilson interval (it is a proportion of independent problems);
  PassRatio@N gets a percentile bootstrap over problems (the ``N`` samples of one problem are not
  independent, so a Wilson interval on all ``P * N`` samples would be too narrow). :func:`pass_at_k` is the
  unbiased estimator of pass@k from ``N >= k`` samples (Chen et al. 2021), for ``k < N``.
- **Single-step model** (Xwin-Math eq. 3, ``paper-facts.md`` 2.7): a problem that needs ``s`` steps is solved
  with probability ``step_accuracy ** s``. :func:`fit_step_accuracy` fits ``step_accuracy`` to per-bin counts
  ``(s_i, n_i, k_i)`` weighted by bin counts (``weighting="counts"``, the default: binomial maximum likelihood by
  bisection on the sign of the score, which is monotone because the log-likelihood is concave in ``log p``, with a
  95% profile-likelihood interval) or unweighted over the bin means (``weighting="bins"``: least squares, every
  bin counts once, as a curve drawn through the points of Xwin-Math Fig. 4; no interval), optionally over the
  first ``first_bins`` bins only (Fig. 4's dashed curve fits the first four of seven bins; the other bins keep
  their predictions and residuals). The fit's quality: per-bin observed and predicted accuracy with raw and
  standardised (Pearson) residuals (:meth:`StepFit.bin_table`), Pearson chi-square with its p-value
  (``bins - 1`` degrees of freedom) and an R^2 of the per-bin accuracies. For iGSM the number of steps is the op
  count of the reference solution.
- **First-error position** (Xwin-Math Table 4): the **1-based** position of the first wrong sentence divided by
  the number of sentences the model wrote (the paper's "position of the first error / total steps"): a wrong
  first sentence of four gives 0.25, a wrong last sentence 1.0. An error that only shows at the end (every
  sentence right, but the last one is not the query or the answer is wrong) is placed on the last sentence,
  position 1.0; an empty solution has position 0.0 (it fails before any step). Its mean comes with a percentile
  bootstrap interval over solutions (:func:`first_error_position_interval`).
- **Paired comparison** of two models on the same problems (:func:`mcnemar_exact`): only the discordant problems
  (solved by one model and not the other) carry information; the exact two-sided McNemar test asks how likely
  so lopsided a split of them is when either model is equally likely to win each one (a binomial with p = 1/2).
- **Unnecessary parameters per correct solution** (paper 2.1, Fig. 4): mean of ``len(verdict.unnecessary)``
  over the correct solutions (NaN when none is correct).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
CHI2_1_95 = Z95**2  # 95% quantile of chi-square with one degree of freedom (profile-likelihood interval)


# ---------------------------------------------------------------------------------------------- proportions
def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials; ``(nan, nan)`` when ``n == 0``.

    ``wilson_interval(0, n)[0] == 0`` and ``wilson_interval(n, n)[1] == 1`` exactly.
    """
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return (low, high)


def proportion(correct: Iterable[bool], z: float = Z95) -> dict:
    """``{"n", "correct", "accuracy", "ci_low", "ci_high"}`` of a list of booleans (accuracy NaN when empty)."""
    arr = np.asarray(list(correct), dtype=bool)
    n, k = int(arr.size), int(arr.sum())
    low, high = wilson_interval(k, n, z)
    return {"n": n, "correct": k, "accuracy": k / n if n else math.nan, "ci_low": low, "ci_high": high}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value of ``only_a`` problems solved by model A alone against ``only_b`` solved
    by model B alone: ``min(1, 2 P(X <= min(only_a, only_b)))`` for ``X ~ Binomial(only_a + only_b, 1/2)``;
    1.0 when no problem is discordant."""
    only_a, only_b = int(only_a), int(only_b)
    if only_a < 0 or only_b < 0:
        raise ValueError(f"need non-negative counts, got {only_a} and {only_b}")
    n = only_a + only_b
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)


def bootstrap_mean_interval(
    values: Sequence[float] | np.ndarray, *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (deterministic for a seed); NaN when empty.

    Constant values give a zero-width interval at that value.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    if np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // arr.size)  # bounded memory: resample in chunks
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, arr.size, size=(stop - start, arr.size))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return (float(low), float(high))


def normal_mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """Mean +- z * standard error, clipped to [0, 1] (for ratios); NaN when empty."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    mean = float(arr.mean())
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else 0.0
    return (max(0.0, mean - z * se), min(1.0, mean + z * se))


# ---------------------------------------------------------------------------------------------- Pass@N
def _correct_matrix(correct) -> np.ndarray:
    """(problems, N) boolean matrix from a nested list / array; rows must all have the same N >= 1."""
    if isinstance(correct, np.ndarray):
        arr = correct.astype(bool)
    else:
        rows = [list(r) for r in correct]
        if rows and len({len(r) for r in rows}) != 1:
            raise ValueError("every problem needs the same number of samples")
        arr = np.asarray(rows, dtype=bool).reshape(len(rows), -1 if rows and rows[0] else 0)
    if arr.ndim != 2:
        raise ValueError(f"expected a (problems, samples) table, got shape {arr.shape}")
    if arr.shape[0] and arr.shape[1] == 0:
        raise ValueError("need at least one sample per problem")
    return arr


def pass_at_n(correct) -> float:
    """Pass@N: the share of problems with at least one correct sample (``correct``: problems x N booleans)."""
    arr = _correct_matrix(correct)
    return float(arr.any(axis=1).mean()) if arr.shape[0] else math.nan


def pass_ratio_at_n(correct) -> float:
    """PassRatio@N: the mean over problems of the share of correct samples."""
    arr = _correct_matrix(correct)
    return float(arr.mean(axis=1).mean()) if arr.shape[0] else math.nan


def pass_at_k(correct, k: int) -> float:
    """Unbiased pass@k from N >= k samples per problem: mean of ``1 - C(N - c, k) / C(N, k)``."""
    arr = _correct_matrix(correct)
    n = arr.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= N={n}, got k={k}")
    if arr.shape[0] == 0:
        return math.nan
    c = arr.sum(axis=1)
    # 1 - prod_{i = N-c+1}^{N} (1 - k / i), stable form; 1 when N - c < k
    out = np.ones(arr.shape[0])
    for row, ci in enumerate(c):
        if n - ci >= k:
            i = np.arange(n - ci + 1, n + 1)
            out[row] = 1.0 - float(np.prod(1.0 - k / i))
    return float(out.mean())


def stability_metrics(correct, greedy_correct: Sequence[bool] | None = None, *, seed: int = 0) -> dict:
    """Pass@N, PassRatio@N (and Pass@1 from greedy decoding when given), each with a 95% interval.

    Keys: ``samples``, ``pass_at_n``, ``pass_at_n_ci_low/high`` (Wilson), ``pass_ratio_at_n``,
    ``pass_ratio_ci_low/high`` (bootstrap over problems), and with ``greedy_correct``: ``pass_at_1``,
    ``pass_at_1_ci_low/high`` (Wilson).
    """
    arr = _correct_matrix(correct)
    problems = arr.shape[0]
    solved = int(arr.any(axis=1).sum()) if problems else 0
    ratios = arr.mean(axis=1) if problems else np.zeros(0)
    out: dict[str, float] = {"samples": int(arr.shape[1])}
    if greedy_correct is not None:
        g = proportion(greedy_correct)
        if g["n"] != problems:
            raise ValueError(f"{g['n']} greedy results for {problems} sampled problems")
        out.update(pass_at_1=g["accuracy"], pass_at_1_ci_low=g["ci_low"], pass_at_1_ci_high=g["ci_high"])
    low, high = wilson_interval(solved, problems)
    out.update(pass_at_n=solved / problems if problems else math.nan, pass_at_n_ci_low=low, pass_at_n_ci_high=high)
    low, high = bootstrap_mean_interval(ratios, seed=seed)
    out.update(
        pass_ratio_at_n=float(ratios.mean()) if problems else math.nan, pass_ratio_ci_low=low, pass_ratio_ci_high=high
    )
    return out


# ---------------------------------------------------------------------------------------------- single-step model
def counts_by_steps(
    steps: Sequence[int] | np.ndarray,
    correct: Sequence[bool] | Sequence[int] | np.ndarray,
    trials: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group per-problem results into bins: ``(steps, n, k)`` arrays sorted by steps.

    ``correct`` holds booleans (one trial per problem) or, with ``trials``, counts of correct samples out of
    ``trials[i]`` (e.g. N samples per problem).
    """
    steps = np.asarray(steps, dtype=int)
    k = np.asarray(correct, dtype=int)
    t = np.ones_like(k) if trials is None else np.asarray(trials, dtype=int)
    if not steps.shape == k.shape == t.shape:
        raise ValueError("steps, correct and trials must have the same length")
    uniq = np.unique(steps)
    n_bin = np.array([t[steps == s].sum() for s in uniq], dtype=int)
    k_bin = np.array([k[steps == s].sum() for s in uniq], dtype=int)
    return uniq, n_bin, k_bin


def _log_likelihood(p: float, s: np.ndarray, n: np.ndarray, k: np.ndarray) -> float:
    """Binomial log-likelihood (without the constant) of per-bin counts under accuracy ``p ** s``."""
    if p <= 0.0:
        return 0.0 if not k.any() else -math.inf
    if p >= 1.0:
        return 0.0 if not (n - k).any() else -math.inf
    log_q = s * math.log(p)  # log of p ** s, exact for p near 1
    with np.errstate(divide="ignore"):
        fail = np.log(-np.expm1(log_q))  # log(1 - p ** s)
    return float(np.sum(k * log_q) + np.sum(np.where(n - k > 0, (n - k) * fail, 0.0)))


def _score(p: float, s: np.ndarray, n: np.ndarray, k: np.ndarray) -> float:
    """d log L / d log p = sum k s - sum (n - k) s p^s / (1 - p^s): strictly decreasing in p on (0, 1)."""
    log_q = s * math.log(p)
    odds = np.exp(log_q) / -np.expm1(log_q)
    return float(np.sum(k * s) - np.sum((n - k) * s * odds))


def _argmax_likelihood(s: np.ndarray, n: np.ndarray, k: np.ndarray) -> float:
    """The interior maximum: bisection on the sign of the (monotone) score, to machine precision."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if _score(mid, s, n, k) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _bisect_level(f, target: float, inside: float, outside: float, iters: int = 80) -> float:
    """The point between ``inside`` (f >= target) and ``outside`` (f < target) where f crosses target."""
    for _ in range(iters):
        mid = (inside + outside) / 2
        if f(mid) >= target:
            inside = mid
        else:
            outside = mid
    return (inside + outside) / 2


def _chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution (regularised upper incomplete gamma Q(dof/2, x/2))."""
    if dof <= 0 or math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    a, y = dof / 2.0, x / 2.0
    gln = math.lgamma(a)
    if y < a + 1:  # series for P(a, y)
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= y / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-y + a * math.log(y) - gln))
    # continued fraction for Q(a, y) (modified Lentz)
    tiny = 1e-300
    b = y + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-y + a * math.log(y) - gln) * h)


FIRST_BINS = 4
"""Xwin-Math Fig. 4's dashed curve fits the first four of its seven step bins."""

FIT_WEIGHTINGS = ("counts", "bins")
"""How :func:`fit_step_accuracy` weighs the op bins: ``counts`` = binomial maximum likelihood on the pooled counts
(every problem weighs the same, so crowded bins dominate); ``bins`` = unweighted least squares over the bin means
(every bin weighs the same, as a curve fitted to the points of Xwin-Math Fig. 4)."""


@dataclass
class StepFit:
    """The single-step model ``accuracy = step_accuracy ** steps`` fitted to per-bin counts.

    ``bins`` holds one dict per bin with ``n > 0`` (sorted by steps): ``steps``, ``n``, ``correct``, ``accuracy``
    (observed), ``predicted`` (``step_accuracy ** steps``), ``residual`` (accuracy - predicted), ``pearson`` (the
    standardised residual ``(correct - n predicted) / sqrt(n predicted (1 - predicted))``, NaN where the prediction
    is 0 or 1) and ``fitted`` (whether the bin took part in the fit: all bins, or the first ``first_bins``);
    :meth:`bin_table` is the same as JSON-able rows keyed by ``op``. ``weighting`` is one of
    :data:`FIT_WEIGHTINGS`. Over the fitted bins: ``chi2`` is Pearson's statistic over the bins whose prediction
    lies strictly inside (0, 1), ``dof`` = those bins - 1, ``p_value`` its chi-square tail probability (both NaN when
    ``dof`` = 0), ``r2`` the R^2 of the per-bin accuracies, weighted by ``n`` (``counts``) or not (``bins``; NaN with
    one bin or constant accuracies); ``n`` and ``correct`` count the fitted bins' problems. The interval is the 95%
    profile-likelihood interval for ``counts`` and NaN for ``bins`` (least squares has no likelihood).
    """

    step_accuracy: float
    ci_low: float
    ci_high: float
    log_likelihood: float
    chi2: float
    dof: int
    p_value: float
    r2: float
    n: int
    correct: int
    bins: list[dict] = field(default_factory=list)
    weighting: str = "counts"
    first_bins: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def bin_table(self) -> list[dict]:
        """The per-bin fit as JSON-able rows ``{op, n, correct, accuracy, predicted, residual}``.

        ``op`` is the bin's number of steps, ``accuracy`` the observed ``correct / n``, ``predicted`` the fitted
        ``step_accuracy ** op`` and ``residual`` the **standardised** (Pearson) residual
        ``(correct - n * predicted) / sqrt(n * predicted * (1 - predicted))`` (``bins[i]["pearson"]``; None
        where the prediction is 0 or 1, so the list holds no NaN).
        """

        def finite(x):
            return None if x is None or math.isnan(x) else float(x)

        return [
            {
                "op": b["steps"],
                "n": b["n"],
                "correct": b["correct"],
                "accuracy": finite(b["accuracy"]),
                "predicted": finite(b["predicted"]),
                "residual": finite(b["pearson"]),
            }
            for b in self.bins
        ]


def _least_squares(s: np.ndarray, acc: np.ndarray) -> float:
    """The ``p`` in [0, 1] that minimises ``sum (acc_i - p ** s_i) ** 2``: a grid, then golden section around it."""

    def loss(p: float) -> float:
        return float(np.sum((acc - p**s) ** 2))

    grid = np.linspace(0.0, 1.0, 2001)
    losses = ((acc[None, :] - grid[:, None] ** s[None, :]) ** 2).sum(axis=1)
    j = int(np.argmin(losses))
    lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(100):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if loss(a) <= loss(b):
            hi = b
        else:
            lo = a
    best = (lo + hi) / 2
    return best if loss(best) <= losses[j] else float(grid[j])


def _likelihood_fit(s: np.ndarray, n: np.ndarray, k: np.ndarray) -> tuple[float, float, float]:
    """``(p_hat, ci_low, ci_high)``: binomial maximum likelihood with its 95% profile interval."""

    def ll(p):
        return _log_likelihood(p, s, n, k)

    total_n, total_k = n.sum(), k.sum()
    p_hat = 0.0 if total_k == 0 else 1.0 if total_k == total_n else _argmax_likelihood(s, n, k)
    target = ll(p_hat) - CHI2_1_95 / 2
    low = 0.0 if p_hat == 0.0 or ll(0.0) >= target else _bisect_level(ll, target, p_hat, 0.0)
    high = 1.0 if p_hat == 1.0 or ll(1.0) >= target else _bisect_level(ll, target, p_hat, 1.0)
    return float(p_hat), float(low), float(high)


def _fit_quality(p_hat: float, s, n, k, weights) -> tuple[float, int, float, float]:
    """``(chi2, dof, p_value, r2)`` of the fitted bins; ``weights`` weigh the R^2 (``n`` or ones)."""
    pred = p_hat**s
    acc = k / n
    var = n * pred * (1 - pred)
    inside = var > 0
    pearson = np.full_like(acc, math.nan)
    pearson[inside] = (k[inside] - n[inside] * pred[inside]) / np.sqrt(var[inside])
    dof = int(inside.sum()) - 1
    chi2 = float(np.sum(pearson[inside] ** 2)) if dof > 0 else math.nan
    p_value = _chi2_sf(chi2, dof) if dof > 0 else math.nan
    mean_acc = float(np.sum(weights * acc) / np.sum(weights)) if len(s) else math.nan
    ss_tot = float(np.sum(weights * (acc - mean_acc) ** 2))
    ss_res = float(np.sum(weights * (acc - pred) ** 2))
    r2 = 1 - ss_res / ss_tot if len(s) > 1 and ss_tot > 0 else math.nan
    return chi2, max(dof, 0), p_value, r2


def fit_step_accuracy(
    steps: Sequence[int] | np.ndarray,
    n: Sequence[int] | np.ndarray,
    k: Sequence[int] | np.ndarray,
    *,
    weighting: str = "counts",
    first_bins: int | None = None,
) -> StepFit:
    """Fit ``accuracy(s) = p ** s`` over bins ``(steps[i], n[i], k[i])``, weighted as ``weighting`` says.

    ``counts`` (default): binomial maximum likelihood with a profile interval; ``bins``: unweighted least squares
    over the bin means (:data:`FIT_WEIGHTINGS`). With ``first_bins = K`` only the K bins with the fewest steps are
    fitted (Xwin-Math Fig. 4's dashed curve fits the first four of seven bins); the others still get predictions
    and residuals in ``bins`` (``fitted`` false), so the shortfall of the long bins shows. Bins with ``n = 0`` are
    ignored; ``steps`` must be >= 1. All-correct data gives ``p = 1`` and all-wrong data ``p = 0``.
    """
    if weighting not in FIT_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(FIT_WEIGHTINGS)}, not {weighting!r}")
    if first_bins is not None and first_bins < 1:
        raise ValueError(f"first_bins must be >= 1, not {first_bins}")
    s = np.asarray(steps, dtype=float)
    n = np.asarray(n, dtype=float)
    k = np.asarray(k, dtype=float)
    if not s.shape == n.shape == k.shape:
        raise ValueError("steps, n and k must have the same length")
    keep = n > 0
    order = np.argsort(s[keep], kind="stable")
    s, n, k = s[keep][order], n[keep][order], k[keep][order]
    if np.any(s < 1):
        raise ValueError("steps must be >= 1")
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= k <= n in every bin")
    fitted = np.arange(s.size) < (s.size if first_bins is None else first_bins)
    fs, fn, fk = s[fitted], n[fitted], k[fitted]
    total_n, total_k = int(fn.sum()), int(fk.sum())
    if total_n == 0:
        nan = math.nan
        return StepFit(nan, nan, nan, nan, nan, 0, nan, nan, 0, 0, [], weighting, first_bins)
    if weighting == "counts":
        p_hat, low, high = _likelihood_fit(fs, fn, fk)
    else:
        p_hat, low, high = _least_squares(fs, fk / fn), math.nan, math.nan
    weights = fn if weighting == "counts" else np.ones_like(fn)
    chi2, dof, p_value, r2 = _fit_quality(p_hat, fs, fn, fk, weights)
    pred = p_hat**s
    var = n * pred * (1 - pred)
    pearson = np.where(var > 0, (k - n * pred) / np.sqrt(np.where(var > 0, var, 1.0)), math.nan)
    bins = [
        {
            "steps": int(si),
            "n": int(ni),
            "correct": int(ki),
            "accuracy": float(ki / ni),
            "predicted": float(pi),
            "residual": float(ki / ni - pi),
            "pearson": float(ri),
            "fitted": bool(fi),
        }
        for si, ni, ki, pi, ri, fi in zip(s, n, k, pred, pearson, fitted)
    ]
    best = _log_likelihood(p_hat, fs, fn, fk)
    return StepFit(p_hat, low, high, best, chi2, dof, p_value, r2, total_n, total_k, bins, weighting, first_bins)


# ---------------------------------------------------------------------------------------------- verdicts
def _get(verdict, key: str):
    return verdict[key] if isinstance(verdict, Mapping) else getattr(verdict, key)


def verdict_kinds(verdict) -> set[str]:
    """The set of mistake kinds of one verdict (a ``Verdict`` or its ``to_dict()``)."""
    return {m["kind"] if isinstance(m, Mapping) else m.kind for m in _get(verdict, "mistakes")}


def mistake_kind_counts(verdicts: Iterable, kinds: Sequence[str] | None = None) -> dict[str, int]:
    """Number of solutions showing each mistake kind (a solution counts once per kind).

    With ``kinds`` (e.g. ``MISTAKE_KINDS``) every listed kind gets a key, zeros included, in that order.
    """
    counts: Counter = Counter()
    for v in verdicts:
        counts.update(verdict_kinds(v))
    if kinds is None:
        return dict(sorted(counts.items()))
    return {kind: int(counts.get(kind, 0)) for kind in kinds} | {k: int(c) for k, c in counts.items() if k not in kinds}


def first_mistake_kind_counts(verdicts: Iterable) -> dict[str, int]:
    """Number of wrong solutions whose first listed mistake is of each kind."""
    counts: Counter = Counter()
    for v in verdicts:
        mistakes = _get(v, "mistakes")
        if mistakes:
            first = mistakes[0]
            counts[first["kind"] if isinstance(first, Mapping) else first.kind] += 1
    return dict(sorted(counts.items()))


def unnecessary_per_correct(unnecessary: Sequence[int], correct: Sequence[bool]) -> float:
    """Mean number of unnecessary parameters over the correct solutions (NaN when none is correct).

    ``unnecessary[i]`` is a count, or a verdict-like list of names (its length is used).
    """
    counts = np.asarray([u if isinstance(u, (int, np.integer)) else len(u) for u in unnecessary], dtype=float)
    mask = np.asarray(correct, dtype=bool)
    if counts.shape != mask.shape:
        raise ValueError("unnecessary and correct must have the same length")
    return float(counts[mask].mean()) if mask.any() else math.nan


def length_against_reference(
    n_sentences: Sequence[int], reference_sentences: Sequence[int], correct: Sequence[bool]
) -> dict[str, int]:
    """The wrong solutions by length: ``{"shorter", "same", "longer"}`` counts of those with fewer, as many or
    more sentences than the reference solution (one per necessary parameter). A model that plans from the
    dependency graph errs at every length; one that writes solutions of the length it saw most often in training
    writes short problems too long and long ones too short."""
    if not len(n_sentences) == len(reference_sentences) == len(correct):
        raise ValueError("n_sentences, reference_sentences and correct must have the same length")
    counts = {"shorter": 0, "same": 0, "longer": 0}
    for got, want, ok in zip(n_sentences, reference_sentences, correct):
        if not ok:
            counts["shorter" if got < want else "longer" if got > want else "same"] += 1
    return counts


def first_error_positions(first_index: Sequence[int | None], n_sentences: Sequence[int]) -> np.ndarray:
    """Normalised 1-based first-error positions ``min(index + 1, sentences) / sentences`` in [0, 1].

    ``first_index`` is the checker's 0-based index of the first wrong sentence (``= n_sentences`` when only the
    ending is wrong, which counts as the last sentence; None for a correct solution, giving NaN); an empty solution
    (0 sentences) has position 0.
    """
    idx = list(first_index)
    total = list(n_sentences)
    if len(idx) != len(total):
        raise ValueError("first_index and n_sentences must have the same length")
    out = np.full(len(idx), math.nan)
    for i, (f, t) in enumerate(zip(idx, total)):
        if f is None:
            continue
        if f < 0 or f > t:
            raise ValueError(f"first error index {f} outside 0..{t}")
        out[i] = min(f + 1, t) / t if t else 0.0
    return out


def mean_first_error_position(first_index: Sequence[int | None], n_sentences: Sequence[int]) -> float:
    """Mean of :func:`first_error_positions` over the solutions that have one (NaN when none)."""
    pos = first_error_positions(first_index, n_sentences)
    pos = pos[~np.isnan(pos)]
    return float(pos.mean()) if pos.size else math.nan


def first_error_position_interval(
    first_index: Sequence[int | None], n_sentences: Sequence[int], *, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, ci_low, ci_high)`` of :func:`first_error_positions`: the mean with a 95% percentile bootstrap
    interval over solutions (:func:`bootstrap_mean_interval`); all NaN when no solution has a first error."""
    pos = first_error_positions(first_index, n_sentences)
    pos = pos[~np.isnan(pos)]
    if not pos.size:
        return (math.nan, math.nan, math.nan)
    low, high = bootstrap_mean_interval(pos, seed=seed)
    return (float(pos.mean()), low, high)
