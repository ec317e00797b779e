"""Every check that can fail before training starts, and its outcome: the typed :class:`RunPlan` of a run.

:func:`plan_run` resolves the config (preset defaults, batch layout), picks the device, dtype and compilation,
reads the shards' metadata, finds the checkpoint to resume from, checks that the context holds the problems
and loads the tokenizer (and the ``--init-from`` model). Nothing is started yet: no process group, no data
workers, no CUDA context beyond the device count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from probekit.checkpoint import read_provenance, resolve_checkpoint
from probekit.igsm.presets import Preset
from probekit.tokenizer import IGSMTokenizer, default_tokenizer
from probekit.train.checkpointing import ResumePoint, TrainerState, resume_point
from probekit.train.config import RESUME_KEPT, ConfigError, Layout, TrainConfig, required, resolve
from probekit.train.curve import position_after
from probekit.train.data import check_context, training_preset
from probekit.train.distributed import DistEnv, training_device
from probekit.train.model import grow_depth, init_model, model_config, tokenizer_of


@dataclass
class RunPlan:
    """What one run trains, on what, from where (:func:`plan_run`)."""

    cfg: TrainConfig
    """The resolved config: preset defaults filled in, ``data.context`` known (from the shards' metadata)."""
    layout: Layout
    device: torch.device
    dtype: str
    """``bf16`` (autocast) or ``fp32``."""
    compile: bool
    preset: Preset
    """The family of the problems (``data.preset`` restricted by ``data.max_op`` / ``data.max_edge``)."""
    tokenizer: IGSMTokenizer
    resume: ResumePoint | None = None
    """The checkpoint the run continues from; None: it starts at step 0."""
    initial_model: Any = None
    """The ``--init-from`` model (loaded by the checks), None otherwise."""
    initial_position: dict | None = None
    """Where the ``--init-from`` model's training ended (:func:`training_position`; None for a folder without
    one, and for a run without ``--init-from``); a resumed leg keeps the one its checkpoint records. The log's
    start record and every checkpoint's ``probekit.json`` carry it, so that the curve of a leg trained from a
    checkpoint can be drawn after its parent's (:func:`probekit.train.curve.on_parent_axis`), and a leg started
    from that leg after both."""
    context_stats: dict = field(default_factory=dict)
    """:func:`probekit.train.data.check_context`'s statistics ({} for shards)."""

    @property
    def out(self) -> Path:
        """The run folder (``run.out``)."""
        return Path(self.cfg.run.out)

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint folder the run resumes from (None: a fresh start)."""
        return self.resume.checkpoint if self.resume is not None else None

    @property
    def saved(self) -> TrainerState | None:
        """The trainer state the run resumes from (None: a fresh start)."""
        return self.resume.state if self.resume is not None else None

    @property
    def start_step(self) -> int:
        return self.resume.state.step if self.resume is not None else 0

    @property
    def end_step(self) -> int:
        """Where this process stops: ``run.stop_at_step`` or the schedule's last step."""
        return self.cfg.run.stop_at_step or required(self.cfg.schedule.steps, "schedule.steps")

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one global batch."""
        return self.layout.batch_size * required(self.cfg.data.context, "data.context")


def plan_run(
    cfg: TrainConfig, env: DistEnv, resume: bool = False, resume_from: str | os.PathLike | None = None
) -> RunPlan:
    """Check everything that can be checked before training (see the module doc); raises :class:`ConfigError`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if cfg.model.init_from is not None:
        cfg.model.init_from = str(cfg.model.init_from)
    cfg, layout = resolve(cfg, env.world_size)
    device = training_device(cfg.run.device, env)
    dtype = cfg.run.dtype if cfg.run.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    compile_on = (device.type == "cuda") if cfg.run.compile == "auto" else bool(cfg.run.compile)
    meta = _shard_meta(cfg)

    point = resume_point(cfg, Path(cfg.run.out), resume, resume_from)
    if point is not None:
        for key in RESUME_KEPT:  # the saved value, whatever this config says
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, point.state.config[section].get(name))
        env.say(
            f"probekit train: resuming from {point.checkpoint}"
            + (f" with changed settings: {'; '.join(point.changed)}" if point.changed else "")
        )
    elif resume or resume_from is not None:
        env.say(f"probekit train: --resume: no checkpoint in {Path(cfg.run.out) / 'checkpoints'}, starting at step 0")

    context = required(cfg.data.context, "data.context")  # resolve() or the shards' meta set it
    context_stats = check_context(cfg.data, context)  # does the context hold the problems?
    preset = training_preset(cfg.data)

    initial, initial_position = None, None
    if point is not None:
        tokenizer, _ = tokenizer_of(point.checkpoint)
        initial_position = read_provenance(point.checkpoint).get("init_from_position")  # a resumed leg keeps it
    elif cfg.model.init_from:
        initial, tokenizer, _ = init_model(cfg.model.init_from, context)
        initial_position = training_position(cfg.model.init_from)
        if cfg.model.grow_after:
            initial = grow_depth(initial, cfg.model.grow_after)
    else:
        shape = model_config(cfg.model)
        if context > shape.context:
            raise ConfigError(f"data.context={context} exceeds the model's context {shape.context} ({shape.name})")
        tokenizer = default_tokenizer()
    if meta is not None and tokenizer.fingerprint != meta["tokenizer_fingerprint"]:
        raise ConfigError(f"data.shards {cfg.data.shards} was written with another tokenizer than the model's")
    return RunPlan(
        cfg=cfg,
        layout=layout,
        device=device,
        dtype=dtype,
        compile=compile_on,
        preset=preset,
        tokenizer=tokenizer,
        resume=point,
        initial_model=initial,
        initial_position=initial_position,
        context_stats=context_stats,
    )


def training_position(folder: str | os.PathLike) -> dict | None:
    """``{"step", "tokens", "train_seconds"}`` at which the checkpoint ``folder`` was saved, on the axis of the
    whole run that made it: its leg's own position (``probekit.json``) past the position it records for the
    checkpoint an ``--init-from`` leg started from (``init_from_position``; a checkpoint saved before that was
    recorded gives its leg's own position). None when it records no step (a model not trained by probekit)."""
    provenance = read_provenance(resolve_checkpoint(folder))
    if not isinstance(provenance.get("step"), int):
        return None
    own = {
        "step": provenance["step"],
        "tokens": provenance.get("tokens_seen"),
        "train_seconds": provenance.get("train_seconds"),
    }
    return position_after(own, provenance.get("init_from_position"))


def _shard_meta(cfg: TrainConfig) -> dict | None:
    """The shards' ``meta.json`` (``data.source: shards``; it sets ``data.context`` when unset), else None."""
    if cfg.data.source != "shards":
        return None
    from probekit.shards import load_meta

    shards = required(cfg.data.shards, "data.shards")  # resolve() refuses source shards without it
    try:
        meta = load_meta(shards)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.shards: {err}") from None
    if cfg.data.context is None:
        cfg.data.context = int(meta["context"])
    return meta
