"""probekit: iGSM problems, models, V-probes and analyses for "Physics of Language Models, Part 2.1".

The package is split by job:

- :mod:`probekit.igsm` -- the iGSM world, generator, renderer, parser, checker and probe labels
  (pure Python, never imports torch);
- :mod:`probekit.tokenizer` -- the closed word-level tokenizer;
- :mod:`probekit.shards` -- packed uint16 token shards for training;
- :mod:`probekit.cli` -- the ``probekit`` command.
"""

__version__ = "0.1.0"
