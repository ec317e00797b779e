"""What the probe analyses (:mod:`.mistakes`, :mod:`.depth`) share: collecting examples with analysis columns,
rates with their Wilson 95% interval, and writing a table as CSV and parquet."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probekit.evaluate.metrics import wilson_interval
from probekit.probe.data import META_COLUMNS, ProbeBuilder, ProbeData

SINGLE_PARAMETER_DROP = ("b", "b_necessary")
"""ProbeData meta columns of the two-parameter task (dep) that the analyses' single-parameter tasks leave out."""


class ExampleCollector:
    """Accumulates probe examples (ids, label, ProbeData meta plus the analysis columns ``extra``) into a
    :class:`~probekit.probe.data.ProbeData`; examples longer than ``max_len`` tokens are left out and counted."""

    def __init__(self, extra: Sequence[str], max_len: int | None):
        self.columns = [c for c in META_COLUMNS if c not in SINGLE_PARAMETER_DROP] + list(extra)
        self.ids: list[np.ndarray] = []
        self.labels: list[int] = []
        self.meta: dict[str, list] = {c: [] for c in self.columns}
        self.too_long: Counter = Counter()
        self.max_len = max_len

    def add(self, builder: ProbeBuilder, task: str, a: str, t: int | None = None, **extra) -> bool:
        """Add the ``task`` example of parameter ``a`` (at step ``t``) with the analysis columns ``extra``;
        False when it is too long."""
        x, y, m = builder.example(task, a, t=t)
        if self.max_len is not None and len(x) > self.max_len:
            self.too_long[task] += 1
            return False
        self.ids.append(np.asarray(x, dtype=np.int32))
        self.labels.append(y)
        m.update(extra)
        for c in self.columns:
            self.meta[c].append(m.get(c))
        return True

    def data(self, tasks: Sequence[str]) -> ProbeData:
        """The collected examples (warns once when some were too long)."""
        too_long = {t: int(self.too_long.get(t, 0)) for t in tasks}
        if sum(too_long.values()):
            warnings.warn(
                f"{sum(too_long.values())} analysis examples longer than max_len={self.max_len} tokens "
                "were left out: " + ", ".join(f"{k}={v}" for k, v in too_long.items() if v),
                stacklevel=3,
            )
        return ProbeData(self.ids, np.asarray(self.labels, dtype=np.int64), self.meta, too_long, self.max_len)


def wilson_rate(k: int, n: int) -> tuple[float, float, float]:
    """``(k / n, low, high)``: a proportion (NaN when ``n`` is 0) with its Wilson 95% interval."""
    low, high = wilson_interval(k, n)
    return (k / n if n else math.nan), low, high


def save_table(frame, stem: str | Path) -> list[Path]:
    """Write ``stem.csv`` and, when pyarrow is installed, ``stem.parquet`` (both atomic); returns the paths."""
    from probekit.records import atomic_output, write_atomic

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".csv")]
    write_atomic(paths[0], frame.to_csv(index=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return paths
    path = stem.with_suffix(".parquet")
    with atomic_output(path, binary=True) as fh:
        frame.to_parquet(fh, index=False)
    return paths + [path]
