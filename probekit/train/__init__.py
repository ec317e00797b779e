"""Pretraining: ``probekit train CONFIG.yaml [key=value ...] [--resume] [--init-from DIR]``.

- :mod:`probekit.train.config`: the typed :class:`TrainConfig` (sections ``model``, ``data``, ``optim``,
  ``schedule``, ``run``), YAML loading with dotted ``key=value`` overrides, validation and preset defaults;
- :mod:`probekit.train.data`: the training stream (fresh problems from worker processes, packed per batch
  lane, or packed shards) and the pinned-memory background loader;
- :mod:`probekit.train.plan`: every check before a run starts, giving its typed :class:`RunPlan`;
- :mod:`probekit.train.loop`: :func:`train` and the train step (bf16 autocast, ``torch.compile``, gradient
  accumulation, DDP), built from :mod:`~probekit.train.distributed` (ranks, devices, process group),
  :mod:`~probekit.train.model` (fresh, ``--init-from`` or checkpoint model), :mod:`~probekit.train.optim`
  (fused AdamW, parameter groups), :mod:`~probekit.train.schedule` (the LR of a step),
  :mod:`~probekit.train.checkpointing` (atomic, exactly resumable checkpoints) and
  :mod:`~probekit.train.metrics` (``log.jsonl``, tokens/s, MFU);
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
