"""Pretraining: ``probekit train CONFIG.yaml [key=value ...] [--resume] [--init-from DIR]``.

- :mod:`probekit.train.config`: the typed :class:`TrainConfig` (sections ``model``, ``data``, ``optim``,
  ``schedule``, ``run``), YAML loading with dotted ``key=value`` overrides, validation and preset defaults;
- :mod:`probekit.train.data`: the training stream (fresh problems from worker processes, packed per batch
  lane, or packed shards) and the pinned-memory background loader;
- :mod:`probekit.train.loop`: the training loop (bf16 autocast, ``torch.compile``, fused AdamW, gradient
  accumulation, DDP), logging and atomic, exactly resumable checkpoints;
- :mod:`probekit.train.flops`: FLOPs per token and MFU;
- :mod:`probekit.train.command`: the ``probekit train`` sub-command.

Importing this package (or ``config``, ``data`` and ``command``) does not import torch.
"""

from __future__ import annotations

__all__ = ["ConfigError", "TrainConfig", "load_config", "train"]


def __getattr__(name):  # lazy: keep ``import probekit.train`` free of torch
    if name in ("TrainConfig", "ConfigError", "load_config"):
        from probekit.train import config

        return getattr(config, name)
    if name == "train":
        from probekit.train.loop import train

        return train
    raise AttributeError(f"module 'probekit.train' has no attribute {name!r}")
