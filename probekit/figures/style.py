"""One look for every probekit figure: matplotlib settings, colours, and the writer of PNG + PDF + caption.

Every figure function is decorated with :func:`styled` (it draws under :data:`RC`), builds a
``matplotlib.figure.Figure`` with :func:`new_figure` and hands it to :func:`save_figure`, which writes
``STEM.png``, ``STEM.pdf`` and ``STEM.txt`` (the caption: what is plotted and which runs produced it). The Agg
back-end is used, so figures render without a display (CI, notebooks, servers).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.rcsetup import cycler  # noqa: E402  (the object matplotlib.cycler names)

from probekit.records import atomic_output, write_atomic  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

P = ParamSpec("P")
R = TypeVar("R")

#: colours by role, used by every figure (colour-blind safe, Okabe-Ito)
COLORS = {
    "pretrained": "#0072B2",
    "random-init": "#999999",
    "majority": "#000000",
    "control": "#E69F00",
    "positive": "#009E73",
    "negative": "#D55E00",
    "fit": "#CC79A7",
}
#: a cycle for series without a role
CYCLE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

RC: dict[RcKeyType, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": cycler(color=list(CYCLE)),
}


def styled(draw: Callable[P, R]) -> Callable[P, R]:
    """A figure function drawn entirely under :data:`RC`: text is sized when it is created (axis labels, titles,
    legends), so the style must hold while the function draws, not only while the axes are made and saved."""

    @functools.wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> R:
        with plt.rc_context(RC):
            return draw(*args, **kwargs)

    return drawn


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 3.6, height: float = 2.8, **kwargs):
    """``(fig, axes)`` with the probekit style; ``width`` / ``height`` are per panel, in inches."""
    with plt.rc_context(RC):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained", **kwargs
        )
    return fig, axes


def save_figure(fig, stem: str | Path, caption: str) -> list[Path]:
    """Write ``stem.png``, ``stem.pdf`` and ``stem.txt`` (the caption) atomically; closes the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with plt.rc_context(RC):
        for ext in ("png", "pdf"):
            path = stem.with_suffix(f".{ext}")
            with atomic_output(path, binary=True) as fh:
                fig.savefig(fh, format=ext)
            paths.append(path)
    caption_path = stem.with_suffix(".txt")
    write_atomic(caption_path, caption.rstrip() + "\n")
    paths.append(caption_path)
    plt.close(fig)
    return paths
