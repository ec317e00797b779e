"""The figure names and where each figure function lives: importable without numpy, pandas or matplotlib
(``probekit --help`` and sweep-config checks use it)."""

from __future__ import annotations

from typing import NamedTuple


class Source(NamedTuple):
    """Where a figure function lives (``probekit.figures.<module>.<figure name>``) and the row kind it reads."""

    module: str
    kind: str | None


#: figure name -> source, in render order
SOURCES: dict[str, Source] = {
    "fig1": Source("registry", None),
    "fig3": Source("accuracy", "accuracy"),
    "fig4": Source("accuracy", "accuracy"),
    "fig7a": Source("probing", "probe"),
    "fig7b": Source("probing", "probe"),
    "fig8a": Source("mistakes", "mistakes"),
    "fig8b": Source("mistakes", "mistakes"),
    "fig9": Source("accuracy", "accuracy"),
    "fig10": Source("depth", "depth"),
    "fig12": Source("probing", "probe"),
    "stability": Source("accuracy", "accuracy"),
    "step_fit": Source("accuracy", "accuracy"),
    "by_size": Source("accuracy", "accuracy"),
    "scaling_accuracy": Source("scaling", "accuracy"),
    "scaling_stability": Source("scaling", "accuracy"),
    "scaling_steps": Source("scaling", "accuracy"),
    "scaling_errors": Source("scaling", "accuracy"),
    "learning_curves": Source("curves", "train"),
    "patch_heatmap": Source("patching", "patch"),
    "intervention_effects": Source("interventions", "intervene"),
}
FIGURE_NAMES: tuple[str, ...] = tuple(SOURCES)
