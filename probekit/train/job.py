"""A training run as a library call: :class:`TrainRun` (what ``probekit train`` takes) and :func:`run_training`,
which calls :func:`probekit.train.loop.train`; the result gives the run's row for a results store.

Importing this module does not import torch (the training loop loads when a run starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainRun:
    """One ``probekit train CONFIG.yaml [key=value ...]`` run."""

    config: str
    """The training config (YAML)."""
    overrides: list[str] = field(default_factory=list)
    """``section.key=value`` overrides, applied in order."""
    out: str | None = None
    """The run folder (``run.out``; None: the config's)."""
    init_from: str | None = None
    """Start from the weights of this HF checkpoint folder (``model.init_from``)."""
    resume: bool = False
    """Continue exactly from ``OUT/checkpoints/latest`` (fresh when there is none)."""
    resume_from: str | None = None
    """Continue exactly from this checkpoint folder (with its trainer state) while OUT holds no checkpoint."""
    progress: bool = True
    """The progress bar (``run.progress``)."""

    def all_overrides(self) -> list[str]:
        """``overrides`` plus the ones ``init_from``, ``out`` and ``progress`` stand for."""
        extra = [f"model.init_from={self.init_from}"] if self.init_from else []
        extra += [f"run.out={self.out}"] if self.out else []
        extra += [] if self.progress else ["run.progress=false"]
        return [*self.overrides, *extra]

    def load(self):
        """The resolved :class:`~probekit.train.config.TrainConfig` (raises ``ConfigError``)."""
        from probekit.train.config import load_config

        return load_config(self.config, self.all_overrides())


@dataclass
class TrainRunResult:
    """What :func:`run_training` returns: the training loop's result (final step, tokens, run folder, final
    checkpoint, last log record)."""

    result: Any

    def summary(self) -> dict:
        """``{step, tokens, out, checkpoint, last}`` (what ``probekit train --json`` prints)."""
        r = self.result
        return {
            "step": r.step,
            "tokens": r.tokens,
            "out": str(r.out),
            "checkpoint": str(r.checkpoint) if r.checkpoint else None,
            "last": r.last_log,
        }

    def rows(self) -> list[dict]:
        """The run's one row (:func:`probekit.train.curve.run_summary` of its ``log.jsonl``)."""
        from probekit.records import read_jsonl
        from probekit.train.curve import run_summary

        lines = read_jsonl(Path(self.result.out) / "log.jsonl")
        return [run_summary([line.record for line in lines if line.record is not None])]


def run_training(run: TrainRun) -> TrainRunResult:
    """Train as ``run`` says. Raises ``ConfigError`` for a bad config, ``OutOfMemory`` when CUDA runs out of
    memory (with the micro-batch to try), ``ImportError`` without torch / transformers."""
    cfg = run.load()
    from probekit.train.loop import train

    return TrainRunResult(train(cfg, resume=run.resume, resume_from=run.resume_from))
