"""V-probing (paper §4): probe data, residual-stream hooks, the ``VProbe`` estimator, per-layer probing.

Submodules: :mod:`~probekit.probe.data` (examples and labels; no torch), :mod:`~probekit.probe.hooks`
(TransformerLens-named hidden states, HF and bridge back-ends), :mod:`~probekit.probe.vprobe` (``VProbe``),
:mod:`~probekit.probe.estimator` (the scikit-learn contract: ``get_params`` / ``set_params``, ``NotFittedError``),
:mod:`~probekit.probe.layers` (``probe_layers``, ``random_init_like``, the control task and MDL),
:mod:`~probekit.probe.packing` (a problem's probe examples in one forward row, for frozen features),
:mod:`~probekit.probe.stats` (bootstrap over problems, control labels, online-code bookkeeping; numpy only),
:mod:`~probekit.probe.runs` (what the probe jobs share: base specs, loading a checkpoint for probing),
:mod:`~probekit.probe.experiment` (the probe, mistakes and depth jobs: spec -> rows),
:mod:`~probekit.probe.collect` (examples and tables both analyses use), :mod:`~probekit.probe.command`
(``probekit probe``, a thin adapter),
:mod:`~probekit.probe.mistakes` (mistakes against probes), :mod:`~probekit.probe.depth` (nece by layer and depth).
Importing this package does not import torch; the names below load on first use.
"""

from __future__ import annotations

_LAZY = {
    "TASKS": "data",
    "ProbeData": "data",
    "ProblemText": "data",
    "ProbeBuilder": "data",
    "build_examples": "data",
    "examples_from_config": "data",
    "examples_from_records": "data",
    "train_test_data": "data",
    "probe_pool": "data",
    "VProbe": "vprobe",
    "probe_layers": "layers",
    "random_init_like": "layers",
    "collect_features": "layers",
    "mistake_analysis": "mistakes",
    "depth_analysis": "depth",
}

__all__ = [
    "ProbeBuilder",
    "ProbeData",
    "ProblemText",
    "TASKS",
    "VProbe",
    "build_examples",
    "collect_features",
    "depth_analysis",
    "examples_from_config",
    "examples_from_records",
    "mistake_analysis",
    "probe_layers",
    "probe_pool",
    "random_init_like",
    "train_test_data",
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"probekit.probe.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'probekit.probe' has no attribute {name!r}")
