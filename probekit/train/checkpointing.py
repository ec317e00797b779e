"""Exactly resumable checkpoints of a training run: the trainer state, RNG states, writing and resuming.

Checkpoints (rank 0; every ``run.checkpoint_every`` steps and at the end): ``OUT/checkpoints/step_NNNNNN/`` is
an HF folder (:func:`probekit.checkpoint.save_checkpoint`: model, tokenizer, ``probekit.json`` provenance) plus
``trainer_state.pt`` (:class:`TrainerState`: optimizer, step, schedule position, RNG states, the data position
of every batch lane, config). It is written under a temporary name and renamed into place when complete;
``OUT/checkpoints/latest`` (a text file naming the folder) is then replaced atomically. ``--resume``
(:func:`resume_point`) restores all of it, so a killed and resumed run logs the same losses as an uninterrupted
one, even with another number of processes (up to the order of floating-point reductions). A damaged newest
checkpoint (a truncated file: a full disk, a copy cut short) is skipped with a message, and the run resumes from
the newest intact one (:func:`resume_point`).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probekit.checkpoint import (
    LATEST,
    STATE_FILE,
    CheckpointError,
    complete_checkpoints,
    latest_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    step_name,
    verify_files,
)
from probekit.records import remove_stale_temporaries, write_atomic
from probekit.tokenizer import IGSMTokenizer
from probekit.train.config import ConfigError, Layout, TrainConfig, required, resume_differences
from probekit.train.data import merge_states, stream_totals, training_preset
from probekit.train.distributed import DistEnv, gather
from probekit.train.schedule import lr_at

STATE_FORMAT = "probekit-trainer-state-v1"


# ---------------------------------------------------------------------------- RNG
def seed_rngs(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (the start of a run; a resume then restores them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict:
    """The global RNG states (Python, numpy, torch CPU and, on CUDA, every GPU), storable with
    ``torch.save(..., weights_only=True)``."""
    np_state: list[Any] = list(np.random.get_state())  # ("MT19937", key array, pos, has_gauss, cached)
    np_state[1] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    state = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    """Undo :func:`rng_state` (the GPU states only when the number of GPUs is the same)."""
    random.setstate(state["python"])
    np_state = list(state["numpy"])
    np_state[1] = np_state[1].numpy().astype(np.uint32)
    np.random.set_state(tuple(np_state))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------- trainer state
@dataclass
class TrainerState:
    """The content of ``trainer_state.pt``: everything besides the model that an exact resume needs."""

    step: int
    """Optimizer steps done."""
    optimizer: dict
    """``optimizer.state_dict()``."""
    rng: dict
    """:func:`rng_state`."""
    data: dict
    """The global data position (:func:`probekit.train.data.merge_states`)."""
    config: dict
    """``TrainConfig.to_dict()`` of the run."""
    tokens: int | None = None
    world_size: int | None = None
    layout: dict | None = None
    schedule: dict | None = None
    """``{"step", "next_lr"}``: the schedule position, for readers of the file."""
    train_seconds: float = 0.0
    """Training seconds so far (evaluations excluded), over every resume."""

    def to_dict(self) -> dict:
        """The stored dict (``format`` first)."""
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "tokens": self.tokens,
            "schedule": self.schedule,
            "optimizer": self.optimizer,
            "rng": self.rng,
            "data": self.data,
            "config": self.config,
            "world_size": self.world_size,
            "layout": self.layout,
            "train_seconds": self.train_seconds,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainerState:
        """Read a ``trainer_state.pt``; a truncated or corrupt file is a :class:`CheckpointError` naming it,
        another format a :class:`ConfigError`."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing") from None
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
            size = _size(path)
            raise CheckpointError(
                f"{path}: truncated or corrupt trainer state ({size} bytes; {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''})"
            ) from None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{path}: corrupt trainer state (holds a {type(saved).__name__}, not a dict)")
        if saved.get("format") != STATE_FORMAT:
            raise ConfigError(f"{path}: unknown trainer state format {saved.get('format')!r}")
        try:
            return cls(
                step=int(saved["step"]),
                tokens=saved.get("tokens"),
                optimizer=saved["optimizer"],
                rng=saved["rng"],
                data=saved["data"],
                config=saved["config"],
                world_size=saved.get("world_size"),
                layout=saved.get("layout"),
                schedule=saved.get("schedule"),
                train_seconds=float(saved.get("train_seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: corrupt trainer state (bad or missing entry {err})") from None


def _size(path: str | os.PathLike) -> str:
    try:
        return str(os.path.getsize(path))
    except OSError:
        return "?"


def write_trainer_state(state: dict, path: Path) -> None:
    """``torch.save`` inside :func:`probekit.checkpoint.save_checkpoint`'s temporary folder, whose rename makes
    it atomic."""
    torch.save(state, path)


def write_checkpoint(
    out: Path,
    step: int,
    model,
    tokenizer: IGSMTokenizer,
    provenance: dict,
    trainer_state: dict,
    keep: int | None = None,
) -> Path:
    """Write ``OUT/checkpoints/step_NNNNNN`` atomically, then point ``latest`` at it (see the module doc);
    ``keep``: delete all but the newest ``keep`` checkpoints. Temporaries that a killed run left in
    ``OUT/checkpoints`` are deleted first (:func:`probekit.records.remove_stale_temporaries`)."""
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(ckpt_dir)
    final = save_checkpoint(
        model,
        tokenizer,
        ckpt_dir / step_name(step),
        provenance,
        write_extra=lambda folder: write_trainer_state(trainer_state, folder / STATE_FILE),
    )
    write_atomic(ckpt_dir / LATEST, final.name + "\n")
    if keep is not None:
        for old in complete_checkpoints(ckpt_dir)[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------- resume
@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from, its trainer state and the settings that changed since (allowed:
    they change neither the data stream nor the model)."""

    checkpoint: Path
    state: TrainerState
    changed: list[str]


def load_intact(checkpoint: Path) -> TrainerState:
    """The trainer state of a training checkpoint whose files are intact (:func:`probekit.checkpoint.verify_files`
    and a readable ``trainer_state.pt``); a :class:`CheckpointError` names the damaged file."""
    verify_files(checkpoint)
    return TrainerState.load(checkpoint / STATE_FILE)


def _step_of(checkpoint: Path) -> int | None:
    digits = checkpoint.name[5:]
    return int(digits) if checkpoint.name.startswith("step_") and digits.isdigit() else None


def newest_intact(out: Path, say: Callable[[str], None]) -> tuple[Path, TrainerState] | None:
    """The checkpoint ``--resume`` continues from and its state: the one :func:`latest_checkpoint` picks when
    it is intact, else the newest older complete one that is, each damaged one skipped with a message (``say``).
    None when ``out`` has no checkpoint.

    Raises :class:`ConfigError` when every checkpoint is damaged.
    """
    first = latest_checkpoint(out)
    if first is None:
        return None
    newest = _step_of(first)
    older = [
        p
        for p in complete_checkpoints(out / "checkpoints")
        if p != first and (newest is None or (_step_of(p) or 0) < newest)
    ]
    damaged = []
    for candidate in [first, *reversed(older)]:
        try:
            state = load_intact(candidate)
        except CheckpointError as err:
            damaged.append(f"{candidate.name}: {err}")
            say(f"probekit train: --resume: skipping the damaged checkpoint {candidate}: {err}")
            continue
        return candidate, state
    raise ConfigError(
        f"--resume: every checkpoint in {out / 'checkpoints'} is damaged ({'; '.join(damaged)}); delete them to "
        "start again, or resume from a copy with --resume-from"
    )


def resume_point(
    cfg: TrainConfig,
    out: Path,
    resume: bool,
    resume_from: str | os.PathLike | None = None,
    say: Callable[[str], None] | None = None,
) -> ResumePoint | None:
    """Where a run into ``out`` continues from: ``OUT/checkpoints/latest`` with ``resume`` (when that one is
    damaged, the newest intact older one: :func:`newest_intact`); ``resume_from`` (a checkpoint folder or a
    ``latest`` pointer file, :func:`probekit.checkpoint.resolve_checkpoint`) while ``out`` holds no checkpoint
    yet, ``out``'s own afterwards; None to start at step 0. ``say`` reports skipped checkpoints (default: on
    stderr, from rank 0).

    Raises :class:`ConfigError` when ``resume_from`` is not an intact training checkpoint, when every checkpoint
    of ``out`` is damaged, when the saved config differs in a key that fixes the data stream or the model, or
    when ``out`` holds checkpoints and neither option is given.
    """
    if say is None:
        say = DistEnv.from_env().say
    checkpoint = None
    state = None
    if resume_from is not None:
        resume = True
        if latest_checkpoint(out) is None:  # the first start: from the given folder; later: OUT's own checkpoints
            try:
                checkpoint = resolve_checkpoint(resume_from)
            except CheckpointError as err:
                raise ConfigError(f"--resume-from {resume_from}: {err}") from None
            if not (checkpoint / STATE_FILE).exists() or not (checkpoint / "config.json").exists():
                raise ConfigError(
                    f"--resume-from {checkpoint}: needs a checkpoint folder with config.json and "
                    f"{STATE_FILE} (written by probekit train)"
                )
            try:
                state = load_intact(checkpoint)
            except CheckpointError as err:
                raise ConfigError(f"--resume-from {resume_from}: {err}") from None
    if not resume:
        if complete_checkpoints(out / "checkpoints"):
            raise ConfigError(
                f"{out} already holds checkpoints; pass --resume to continue that run, or set another run.out"
            )
        return None
    if checkpoint is None or state is None:
        found = newest_intact(out, say)
        if found is None:
            return None
        checkpoint, state = found
    blocking, changed = resume_differences(state.config, cfg)
    if blocking:
        raise ConfigError(f"cannot resume {checkpoint}: the data stream or model would change: " + "; ".join(blocking))
    return ResumePoint(checkpoint, state, changed)


# ---------------------------------------------------------------------------- write
class Checkpointer:
    """Writes a run's checkpoints: gathers the data positions of every rank, and rank 0 writes the folder
    with its provenance and :class:`TrainerState`. ``init_from_position``: where the ``--init-from`` checkpoint's
    training ended (:func:`probekit.train.plan.training_position`), recorded in every ``probekit.json``."""

    def __init__(
        self,
        cfg: TrainConfig,
        layout: Layout,
        env: DistEnv,
        tokenizer: IGSMTokenizer,
        device: torch.device,
        revision: str | None,
        init_from_position: dict | None = None,
    ):
        self.cfg, self.layout, self.env = cfg, layout, env
        self.tokenizer, self.device, self.revision = tokenizer, device, revision
        self.init_from_position = init_from_position
        self.out = Path(cfg.run.out)
        self.tokens_per_step = layout.batch_size * required(cfg.data.context, "data.context")
        generated = cfg.data.source == "generate"
        self.data_preset = asdict(training_preset(cfg.data)) if generated else {"shards": cfg.data.shards}

    def save(
        self, step: int, model, optimizer: torch.optim.Optimizer, data_state: dict, train_seconds: float
    ) -> Path | None:
        """Write the checkpoint of ``step`` (``data_state``: this rank's position after it); collective: every
        rank calls it, rank 0 returns the folder and the others None."""
        states = gather(data_state, self.env)
        if not self.env.main:
            return None
        cfg = self.cfg
        global_state = merge_states(states)
        tokens = step * self.tokens_per_step
        provenance = {
            "git_revision": self.revision,
            "training_config": cfg.to_dict(),
            "data_preset": self.data_preset,
            "step": step,
            "tokens_seen": tokens,
            "world_size": self.env.world_size,
            "init_from": cfg.model.init_from,
            "init_from_position": self.init_from_position,
            "data_position": stream_totals(global_state),
            "train_seconds": train_seconds,
        }
        next_lr = (
            lr_at(step, cfg.optim.lr, cfg.schedule) if step < required(cfg.schedule.steps, "schedule.steps") else None
        )
        state = TrainerState(
            step=step,
            tokens=tokens,
            optimizer=optimizer.state_dict(),
            rng=rng_state(self.device),
            data=global_state,
            config=cfg.to_dict(),
            world_size=self.env.world_size,
            layout=self.layout.__dict__,
            schedule={"step": step, "next_lr": next_lr},
            train_seconds=train_seconds,
        )
        return write_checkpoint(
            self.out, step, model, self.tokenizer, provenance, state.to_dict(), keep=cfg.run.keep_checkpoints
        )
