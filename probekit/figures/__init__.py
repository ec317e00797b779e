"""Figures of the papers, regenerated from a results store (one pandas table, ``RESULTS/results.parquet``).

Every figure reads only that table (column ``kind`` says what a row is) and writes ``NAME.png``, ``NAME.pdf``
and ``NAME.txt`` (the caption: what is plotted, units, n per cell, which runs produced it):

Physics of Language Models, Part 2.1 (iGSM)

- ``fig1``  -- structure and dependency graph of one generated problem (no results needed);
- ``fig3``  -- generation accuracy by evaluation set, per checkpoint, with the always-0 baseline;
- ``fig4``  -- unnecessary parameters per fully-correct solution, by evaluation set;
- ``fig7a`` -- V-probe accuracy per task, pretrained vs random-init, with the majority guess;
- ``fig7b`` -- the same on unnecessary parameters only;
- ``fig8a`` -- nece probe on unnecessary parameters the model wrote vs did not write (reask data);
- ``fig8b`` -- can_next / nece_next probe on the first wrong parameter vs background and correct steps;
- ``fig9``  -- depth vs width: accuracy table, checkpoints by (layers, width) x evaluation sets;
- ``fig10`` -- nece probe accuracy by layer and distance to the query (heat map per checkpoint);
- ``fig12`` -- dep and nece_next probe accuracy on positive and negative labels;
- ``by_size`` -- accuracy against the problem's number of instance parameters, per evaluation set (not in the
  paper: at a fixed op, how accuracy falls with the problem's size);

Xwin-Math (arXiv 2403.04706)

- ``stability`` -- Pass@1, Pass@N and PassRatio@N per evaluation set (sampled evaluations only);
- ``step_fit``  -- accuracy against op with the single-step model ``step_accuracy ** op``;
- ``scaling_accuracy``  -- accuracy (Pass@1, with Pass@N stars) against the number of distinct training problems,
  from scratch vs fine-tuned (Fig. 1);
- ``scaling_stability`` -- Pass@1, Pass@N and PassRatio@N against data size (Fig. 3);
- ``scaling_steps``     -- accuracy by op per data size with the single-step fits, length resampling (Fig. 4,
  Table 4 in the caption);
- ``scaling_errors``    -- share of calculation vs reasoning errors against data size (Fig. 5).

Training

- ``learning_curves`` -- solution-token loss and full-solution accuracy of each training run against tokens and
  training minutes (runs with ``run.eval_every``).

Modules: :mod:`.registry` (``FIGURES``, ``render``, ``NoData``), :mod:`.accuracy`, :mod:`.probing`,
:mod:`.mistakes`, :mod:`.depth`, :mod:`.scaling`, :mod:`.curves`, :mod:`.tables` (the data-scaling tables and
markdown tables the figures and the report share), :mod:`.report` (``REPORT.md``), :mod:`.command` (``probekit figures``),
:mod:`.style` (the shared look), :mod:`.graphs` (the problem graphs of fig1). Importing the package loads
neither matplotlib nor pandas; the names below are imported on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "FIGURES": "registry",
    "FIGURE_NAMES": "names",
    "FigureResult": "registry",
    "NoData": "registry",
    "render": "registry",
    "write_report": "report",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    """Import ``FIGURES``, ``render``, ``NoData``, ``FigureResult``, ``FIGURE_NAMES``, ``write_report`` on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
