"""probekit: iGSM problems, models, V-probes and analyses for "Physics of Language Models, Part 2.1".

The public API, in one import (loaded lazily, so ``import probekit`` and ``probekit --help`` stay fast)::

    from probekit import (draw_problem, GenerationConfig, check_solution, compute_labels,
                          load_checkpoint, VProbe, probe_layers, evaluate_checkpoint)

(The evaluation function is ``evaluate_checkpoint``: ``probekit.evaluate`` is the evaluation subpackage, and once
it is imported Python binds that name to the module, so a function called ``evaluate`` here could not survive.)

The package is split by job:

- :mod:`probekit.igsm` -- the iGSM world, generator, renderer, parser, checker and probe labels
  (pure Python, never imports torch);
- :mod:`probekit.tokenizer` -- the closed word-level tokenizer; :mod:`probekit.shards` -- packed token shards;
- :mod:`probekit.modeling` -- model shapes and builders; :mod:`probekit.checkpoint` -- the checkpoint folder,
  its one loader and its provenance;
- :mod:`probekit.train` -- the pretraining loop; :mod:`probekit.evaluate` -- greedy / sampled evaluation with
  the checker; :mod:`probekit.probe` -- V-probes, their data and the analyses on them;
- :mod:`probekit.sweep` -- ``probekit run``; :mod:`probekit.figures` -- the papers' figures;
- :mod:`probekit.cli` -- the ``probekit`` command, a thin caller of the functions above.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "GenerationConfig": "probekit.igsm.generate",
    "draw_problem": "probekit.igsm.generate",
    "generate_record": "probekit.igsm.generate",
    "Problem": "probekit.igsm.problem",
    "parse_problem": "probekit.igsm.parse",
    "check_solution": "probekit.igsm.check",
    "compute_labels": "probekit.igsm.labels",
    "default_tokenizer": "probekit.tokenizer",
    "Checkpoint": "probekit.checkpoint",
    "load_checkpoint": "probekit.checkpoint",
    "select_device": "probekit.checkpoint",
    "read_provenance": "probekit.checkpoint",
    "training_family": "probekit.checkpoint",
    "evaluate_checkpoint": "probekit.evaluate.run",
    "ProbeData": "probekit.probe.data",
    "train_test_data": "probekit.probe.data",
    "VProbe": "probekit.probe.vprobe",
    "probe_layers": "probekit.probe.layers",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'probekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
