"""Evaluation: generate solutions with a model, judge each with the full-solution checker, summarise.

- :mod:`.sets` -- evaluation sets (test split; the paper's suite per preset) and drawing their problems;
- :mod:`.generation` -- batched KV-cache generation (torch; imported lazily): ``ModelGenerator``;
- :mod:`.judge` -- one solution's verdict (checker correct AND emitted answer right) and first wrong sentence;
- :mod:`.metrics` -- pure numpy metrics: Wilson intervals, Pass@N, PassRatio@N, single-step fit, ...;
- :mod:`.run` -- judge and aggregate over sets, tables, output files, ``evaluate_checkpoint``;
- :mod:`.job` -- the evaluation job: ``EvalSpec`` -> ``run_eval`` (what ``probekit eval`` and the sweep call);
- :mod:`.command` -- ``probekit eval``, a thin adapter over ``run_eval``.

Import the submodules directly (``from probekit.evaluate.run import evaluate_checkpoint``): the package
itself imports nothing, so ``probekit --help`` stays fast.
"""
