"""The training configuration: typed sections, YAML loading, ``key=value`` overrides, checks and defaults.

A config file is YAML with up to five sections; every key is optional and has the default below (the paper's
recipe, App. F.1). ``None`` on a "by preset" key means: take the value of ``data.preset``::

    model:    name (models/<name>.yaml or a YAML path), arch / n_layer / n_head / head_dim / rope_theta /
              tie_embeddings (override the named shape), init_from (HF folder to fine-tune from), grow_after
              (deepen the init_from model by identity blocks), seed (init)
    data:     source (generate | shards), preset (med | hard), max_op / max_edge (a smaller problem
              family), format (pq | qp), seed, n_problems (data size: None = unlimited fresh problems,
              N = epochs over N distinct problems), resample (none | length: op-weighted draws, paper
              Fig. 4 right) and resample_power, packing (whole | stream; default whole), unpack (one row per
              problem of a whole window), shards (dir, source=shards),
              shuffle (shards), context, batch_size (global sequences per step), micro_batch_size (per rank
              and forward pass),
              workers (generator processes per rank; 0 = in the loader thread), prefetch (batches queued),
              length_check_samples, max_drop_fraction
    optim:    lr, betas, eps, weight_decay, decay_embeddings, grad_clip, fused, loss (all | solution)
    schedule: steps, warmup_steps, min_lr_ratio, decay (cosine | linear | constant | wsd), decay_fraction, rewarm_at
    run:      out, device, threads, dtype, compile, attention (sdpa | eager), tf32, seed, log_every,
              checkpoint_every, save_final, keep_checkpoints, eval_every, eval_problems, stop_at_step, peak_tflops,
              tensorboard, progress

Preset defaults (``None`` keys): med: context 768, batch 512, 100k steps, weight decay 0.05; hard: context
1024, batch 256, 200k steps, weight decay 0.03.

Overrides are ``section.key=value`` with ``value`` read as YAML (``optim.lr=3e-3``, ``data.max_op=4``,
``optim.betas=[0.9,0.95]``, ``data.max_op=null``). Unknown keys and wrong types raise :class:`ConfigError`
naming the key, the allowed keys or the expected type, and the value given.

This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import yaml

from probekit.configs import (
    ConfigError,
    read_yaml,
    set_coerced,
    suggest,
    type_fields,
)
from probekit.igsm.generate import HELDOUT_SEED_BASE
from probekit.igsm.presets import MIN_MAX_EDGE, preset_name

PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "med": {"context": 768, "batch_size": 512, "steps": 100_000, "weight_decay": 0.05},
    "hard": {"context": 1024, "batch_size": 256, "steps": 200_000, "weight_decay": 0.03},
}

_T = TypeVar("_T")


@dataclass
class ModelSection:
    name: str = "gpt2-12-12"
    """A shape in ``models/<name>.yaml`` (or a YAML path)."""
    arch: Literal["gpt2", "llama"] | None = None
    n_layer: int | None = None
    n_head: int | None = None
    head_dim: int | None = None
    rope_theta: float | None = None
    """arch .. rope_theta: override the named shape (e.g. ``model.n_layer=8``)."""
    tie_embeddings: bool | None = None
    """Share the input embedding and the output layer. None: the paper's model for ``gpt2`` (tied: GPT-2 ties
    them, and the paper's GPT2 is GPT-2 with rotary embeddings), the shape's for ``llama`` (untied); see
    :func:`probekit.train.model.model_config`."""
    init_from: str | None = None
    """An HF checkpoint folder to start from (fine-tuning); the shape then comes from that folder."""
    grow_after: list[int] | None = None
    """Deepen the ``init_from`` model before training: after each listed block (0-based, of the folder's
    model) insert a copy of that block whose output projections are zero, so every inserted block starts as
    the identity and the grown model computes exactly what the folder's did (:func:`probekit.train.model.grow_depth`).
    ``[1, 3, 5, 7]`` turns 8 blocks into 12."""
    seed: int = 0
    """Initialisation seed of a fresh model."""


@dataclass
class DataSection:
    source: Literal["generate", "shards"] = "generate"
    preset: Literal["med", "hard"] = "med"
    max_op: int | None = None
    """Restrict the op range (a custom preset ``med-op4``); None: the preset's max op."""
    max_edge: int | None = None
    """Restrict the instance parameters (structure edges, >= 12); None: the preset's."""
    format: Literal["pq", "qp"] = "pq"
    seed: int = 0
    """Data seed: problem ``i`` of lane ``j`` is generated with this seed (see probekit.train.data)."""
    n_problems: int | None = None
    """Data size. None: unlimited fresh problems (no epochs). N: the stream draws only from the data seed's
    problems 0..N-1, every epoch a fresh seeded order of all N (a run "trained on N distinct problems");
    source: generate only."""
    resample: Literal["none", "length"] = "none"
    """none: the generator's op distribution. length: problems drawn with probability proportional to
    ``op ** resample_power`` times the generator's (op = the problem's number of operations, the semicolons of
    its reference solution, not its number of solution sentences or tokens; Xwin-Math Fig. 4 right resamples by
    the number of CoT sentences); the problems of one op are unchanged. source: generate only."""
    resample_power: float = 1.0
    """The exponent of ``resample: length`` (0: the plain op mix; < 0 favours short problems); ignored with
    ``resample: none``."""
    packing: Literal["stream", "whole"] | None = None
    """whole: a window starts at a problem boundary and holds only whole problems; a problem that does not fit
    in the rest of a window starts the next one, and the rest is ``[PAD]`` (never a target). The paper packs
    whole problems into a window and truncates at the right (App. F.1), so every window starts with a problem;
    probekit pads instead of truncating, so no problem is cut. stream: problems are concatenated and the
    stream is cut into windows, so a problem may straddle two windows and the second part is read without its
    beginning (probekit's default before; still an option). None: whole with ``source: generate``, stream with
    ``source: shards`` (shards are packed as a stream when written; whole is generate only)."""
    unpack: bool = False
    """With ``packing: whole``, run each problem of a window as its own row (:mod:`probekit.train.rows`): the
    same problems and targets (less the ``[PROBLEM]`` after an ``[EOS]``), but no problem attends to another and
    the attention span is a problem, not a window; the rows are sorted by length into micro-batches of
    ``micro_batch_size * context`` token slots. Measured on the 2-core CPU (``benchmarks/RESULTS.md``): the same
    tokens/s as windows, a slightly lower solution-token loss after 1,000-1,500 steps; off: the paper's windows."""
    shards: str | None = None
    """Directory written by ``probekit generate --tokens DIR`` (source: shards)."""
    shuffle: bool = True
    """Shards: visit windows in a fresh seeded permutation every epoch."""
    context: int | None = None
    """Window length in tokens; None: by preset (med 768, hard 1024) or the shards' context."""
    batch_size: int | None = None
    """Global batch in sequences per optimizer step (all ranks); None: by preset (512 / 256)."""
    micro_batch_size: int | None = None
    """Sequences per rank per forward pass; None: the whole per-rank batch (no accumulation)."""
    workers: int | None = None
    """Generator processes per rank; 0: generate in the loader thread; None: auto (CUDA: the cores, CPU: 1)."""
    prefetch: int = 4
    """Batches prepared ahead by the loader thread."""
    length_check_samples: int = 300
    """Problems drawn at the max op to check the context before training (0: skip the check)."""
    max_drop_fraction: float = 0.05
    """Refuse a context that would drop more than this fraction of max-op problems (too long)."""


@dataclass
class OptimSection:
    lr: float = 0.002
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float | None = None
    """None: by preset (med 0.05, hard 0.03). Applied to matrices only (see decay_embeddings)."""
    decay_embeddings: bool = True
    """Decay the embedding and output matrices too (HF Trainer convention); norms and biases never."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm (HF Trainer default). A probekit choice: the paper states no clipping (README,
    "Where probekit differs from the paper"); None: no clipping."""
    fused: bool | None = None
    """Fused AdamW kernel; None: on for CUDA."""
    loss: Literal["all", "solution"] = "all"
    """Which next-token targets are trained: all (the paper's objective) or only the solution segments
    (solution, ``[ANSWER]``, answer, ``[EOS]``); see probekit.train.objective. The log always reports the
    solution targets' loss as ``solution_loss``."""


@dataclass
class ScheduleSection:
    steps: int | None = None
    """Optimizer steps; None: by preset (med 100k, hard 200k)."""
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.01
    """The LR decays to this fraction of the peak at the last step."""
    decay: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    """wsd (warmup-stable-decay): the peak LR until the last ``decay_fraction`` of the steps, then linear
    decay; a run still in its stable phase can be resumed with a larger ``schedule.steps`` and sees exactly
    the LRs it would have seen with that length from the start."""
    decay_fraction: float = 0.2
    """wsd: the fraction of ``steps`` (after warm-up) spent decaying."""
    rewarm_at: int | None = None
    """Continue a run whose LR has already decayed: from this optimizer step the LR climbs linearly from
    ``min_lr_ratio`` of the peak back to the peak over ``warmup_steps`` steps, then follows the schedule
    (``--resume-from CHECKPOINT schedule.steps=LONGER schedule.rewarm_at=CHECKPOINT_STEP``); None: no re-warm."""


@dataclass
class RunSection:
    out: str = "out/train"
    """Run folder: log.jsonl, tb/, checkpoints/step_NNNNNN/, checkpoints/latest."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda."""
    threads: int | None = None
    """CPU: torch threads of this process; None: OMP_NUM_THREADS when set, else the cores minus one per data
    worker (see probekit.train.distributed.share_cpu)."""
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """Autocast dtype; auto: bf16 on CUDA, fp32 on CPU. Weights and optimizer state stay fp32."""
    compile: bool | Literal["auto"] = "auto"
    """torch.compile; auto: on for CUDA, off for CPU."""
    attention: Literal["sdpa", "eager"] | None = None
    """The attention implementation the run trains with; None: eager on a CPU (1.2x the tokens/s of torch's CPU
    flash-attention kernel for gpt2-8-2 at context 512, benchmarks/RESULTS.md), sdpa elsewhere. Checkpoints do
    not record it: they load with sdpa."""
    tf32: bool = True
    """Allow TF32 matmuls on CUDA (fp32 parts outside autocast)."""
    seed: int = 0
    """Seed of the torch / python / numpy RNGs (the data stream has its own seed)."""
    log_every: int = 10
    checkpoint_every: int = 1000
    """Steps between checkpoints; 0: only at the end."""
    save_final: bool = True
    keep_checkpoints: int | None = None
    """Keep only the newest N checkpoints; None: keep all."""
    eval_every: int = 0
    """Every N steps (and at the last step), judge greedy solutions of fresh test-split problems at each op
    2..max_op (op 1 when max_op is 1) with the checker and log the accuracy by op (a learning curve);
    0: never."""
    eval_problems: int = 64
    """Problems per op of that evaluation (the same problems every time)."""
    stop_at_step: int | None = None
    """Stop (and checkpoint) at this step; the LR schedule still runs over schedule.steps."""
    peak_tflops: float | None = None
    """Peak FLOP/s per device for MFU; None: auto (H100/H200 bf16: 989, A100 bf16: 312; else no MFU)."""
    tensorboard: bool = True
    """Also log to OUT/tb when torch.utils.tensorboard imports."""
    progress: bool = True
    """A tqdm progress bar on stderr (rank 0)."""


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "data": DataSection,
    "optim": OptimSection,
    "schedule": ScheduleSection,
    "run": RunSection,
}


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["optim"]["betas"] = list(self.optim.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "config") -> TrainConfig:
        cfg = cls()
        apply(cfg, data or {}, where)
        return cfg

    def replace(self, **sections) -> TrainConfig:
        return dataclasses.replace(self, **sections)

    # ------------------------------------------------------------------ derived values
    @property
    def preset_name(self) -> str:
        """``med``, or ``med-op4`` / ``med-op4-ip12`` when max_op / max_edge restrict the preset."""
        return preset_name(self.data.preset, self.data.max_op, self.data.max_edge)


def set_key(cfg: TrainConfig, dotted: str, value, where: str = "override") -> None:
    """Set ``section.key`` (type-checked); raises :class:`ConfigError` naming the key and what was wrong."""
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{where}: key {dotted!r} must be 'section.key'; sections: {', '.join(SECTIONS)}")
    section, key = parts
    if section not in SECTIONS:
        raise ConfigError(
            f"{where}: unknown section {section!r}{suggest(section, SECTIONS)}; allowed: {', '.join(SECTIONS)}"
        )
    obj = getattr(cfg, section)
    hints = type_fields(type(obj))
    if key not in hints:
        raise ConfigError(
            f"{where}: unknown key {dotted!r}{suggest(key, hints)}; allowed keys in {section!r}: {', '.join(hints)}"
        )
    set_coerced(obj, key, value, hints[key], f"{where}: {dotted}", f" ({type(value).__name__})")


def apply(cfg: TrainConfig, data: dict, where: str = "config") -> TrainConfig:
    """Apply a nested ``{section: {key: value}}`` mapping onto ``cfg`` (checked)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown section {section!r}{suggest(str(section), SECTIONS)}; allowed: {', '.join(SECTIONS)}"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section {section!r} must be a mapping of keys, got {values!r}")
        for key, value in values.items():
            set_key(cfg, f"{section}.{key}", value, where)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=3e-3"`` -> ``("optim.lr", "3e-3")``; the value is read as YAML (``null``, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config (None: all defaults) and apply ``key=value`` overrides, checking every key.

    A config file must name its model (``model.name``, in the file or an override, or ``model.init_from``): the
    default shape is the paper's 86M-parameter model, which nobody should start by accident on a laptop.
    """
    cfg = TrainConfig()
    named = path is None
    if path is not None:
        data = read_yaml(path)
        if not data:
            raise ConfigError(f"{path} is empty: a training config names at least the model (model.name)")
        apply(cfg, data, str(path))
        named = "name" in (data.get("model") or {})
    for text in overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value, f"override {text!r}")
        named = named or key == "model.name"
    if not named and not cfg.model.init_from:
        raise ConfigError(
            f"{path} names no model: set model.name (a shape in models/, e.g. gpt2-4-2 for a CPU; the paper's "
            f"{TrainConfig().model.name} has 86M parameters) or model.init_from"
        )
    return cfg


# ---------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class Layout:
    """How the global batch is split: ``batch_size = world_size * accumulation * micro_batch_size``."""

    batch_size: int
    world_size: int
    per_rank: int
    micro_batch_size: int
    accumulation: int


def resolve(cfg: TrainConfig, world_size: int = 1) -> tuple[TrainConfig, Layout]:
    """Fill the by-preset defaults and check every value that does not need data or a model.

    Returns a new config (``None`` preset keys replaced) and the batch layout; raises :class:`ConfigError`.
    """
    cfg = TrainConfig.from_dict(cfg.to_dict())  # a deep copy
    d, o, s, r = cfg.data, cfg.optim, cfg.schedule, cfg.run
    defaults = PRESET_DEFAULTS[d.preset]

    if d.source == "shards":
        if not d.shards:
            raise ConfigError("data.source is 'shards' but data.shards (the directory) is not set")
    elif d.shards:
        raise ConfigError("data.shards is set but data.source is 'generate'; set data.source=shards to train on shards")
    if d.source == "shards":
        for key, value, default in (
            ("n_problems", d.n_problems, None),
            ("resample", d.resample, "none"),
            ("packing", "stream" if d.packing is None else d.packing, "stream"),
        ):
            if value != default:
                raise ConfigError(
                    f"data.{key}={value!r} needs data.source=generate: shards already hold a fixed set of "
                    f"problems (write the shards you want with probekit generate); unset data.{key}"
                )
    if d.context is None and d.source == "generate":
        d.context = defaults["context"]
    if d.batch_size is None:
        d.batch_size = defaults["batch_size"]
    if o.weight_decay is None:
        o.weight_decay = defaults["weight_decay"]
    if s.steps is None:
        s.steps = defaults["steps"]

    if d.packing is None:
        d.packing = "stream" if d.source == "shards" else "whole"
    if d.unpack and d.packing != "whole":
        raise ConfigError(
            f"data.unpack=true needs data.packing=whole (with {d.packing} packing a window can start inside a "
            "problem); set data.packing=whole or unset data.unpack"
        )
    if not str(r.out).strip():
        raise ConfigError("run.out is empty: name the run folder (run.out=DIR or --out DIR)")

    def positive(key, value, minimum=1):
        if value is not None and value < minimum:
            raise ConfigError(f"{key} must be >= {minimum}, got {value}")

    positive("data.context", d.context, 2)
    positive("data.batch_size", d.batch_size)
    positive("data.micro_batch_size", d.micro_batch_size)
    positive("data.max_op", d.max_op)
    positive("data.n_problems", d.n_problems)
    if not 0 <= d.seed < HELDOUT_SEED_BASE:
        raise ConfigError(
            f"data.seed must be in 0..{HELDOUT_SEED_BASE - 1} (larger seeds are held-out evaluation seeds), got {d.seed}"
        )
    if not math.isfinite(d.resample_power):
        raise ConfigError(f"data.resample_power must be a finite number, got {d.resample_power}")
    positive("data.workers", d.workers, 0)
    positive("data.prefetch", d.prefetch)
    positive("data.length_check_samples", d.length_check_samples, 0)
    positive("schedule.steps", s.steps)
    positive("schedule.warmup_steps", s.warmup_steps, 0)
    positive("run.log_every", r.log_every)
    positive("run.checkpoint_every", r.checkpoint_every, 0)
    positive("run.keep_checkpoints", r.keep_checkpoints)
    positive("run.eval_every", r.eval_every, 0)
    positive("run.eval_problems", r.eval_problems)
    positive("run.threads", r.threads)
    positive("run.stop_at_step", r.stop_at_step)
    for key in ("n_layer", "n_head", "head_dim"):
        positive(f"model.{key}", getattr(cfg.model, key))
    if cfg.model.grow_after is not None:
        grow = cfg.model.grow_after
        if not cfg.model.init_from:
            raise ConfigError("model.grow_after deepens the model of model.init_from (--init-from DIR); set it")
        if not grow or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in grow):
            raise ConfigError(f"model.grow_after must be a non-empty list of block indices >= 0, got {grow!r}")
        if len(set(grow)) != len(grow):
            raise ConfigError(f"model.grow_after lists a block twice: {grow!r}")
    if d.max_op is not None and d.max_op > 52:
        raise ConfigError(f"data.max_op must be <= 52 (one fresh letter per solution step), got {d.max_op}")
    if d.max_edge is not None and d.max_edge < MIN_MAX_EDGE:
        raise ConfigError(
            f"data.max_edge must be >= {MIN_MAX_EDGE} (the generator's smallest graphs need it), got {d.max_edge}"
        )
    if not 0 <= d.max_drop_fraction <= 1:
        raise ConfigError(f"data.max_drop_fraction must be in [0, 1], got {d.max_drop_fraction}")
    if o.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o.lr}")
    if not all(0 <= b < 1 for b in o.betas):
        raise ConfigError(f"optim.betas must be in [0, 1), got {list(o.betas)}")
    if o.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    if o.grad_clip is not None and o.grad_clip <= 0:
        raise ConfigError(f"optim.grad_clip must be > 0 or null, got {o.grad_clip}")
    if not 0 < s.decay_fraction <= 1:
        raise ConfigError(f"schedule.decay_fraction must be in (0, 1], got {s.decay_fraction}")
    if not 0 <= s.min_lr_ratio <= 1:
        raise ConfigError(f"schedule.min_lr_ratio must be in [0, 1], got {s.min_lr_ratio}")
    if s.rewarm_at is not None and not 0 <= s.rewarm_at < s.steps:
        raise ConfigError(f"schedule.rewarm_at must be in 0..{s.steps - 1} (a step of this run), got {s.rewarm_at}")
    if s.warmup_steps > s.steps:
        raise ConfigError(f"schedule.warmup_steps ({s.warmup_steps}) exceeds schedule.steps ({s.steps})")
    if r.stop_at_step is not None and r.stop_at_step > s.steps:
        raise ConfigError(f"run.stop_at_step ({r.stop_at_step}) exceeds schedule.steps ({s.steps})")
    if r.device not in ("auto", "cpu", "cuda") and not r.device.startswith("cuda:"):
        raise ConfigError(f"run.device must be auto, cpu or cuda, got {r.device!r}")
    if r.peak_tflops is not None and r.peak_tflops <= 0:
        raise ConfigError(f"run.peak_tflops must be > 0, got {r.peak_tflops}")

    if world_size < 1:
        raise ConfigError(f"world size must be >= 1, got {world_size}")
    if d.batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={d.batch_size} is not divisible by the {world_size} processes (WORLD_SIZE); "
            "the batch size is global"
        )
    per_rank = d.batch_size // world_size
    micro = d.micro_batch_size if d.micro_batch_size is not None else per_rank
    if per_rank % micro:
        divisors = [m for m in range(1, per_rank + 1) if per_rank % m == 0]
        raise ConfigError(
            f"data.micro_batch_size={micro} does not divide the per-process batch of {per_rank} sequences "
            f"(data.batch_size={d.batch_size} over {world_size} process(es)); "
            f"use one of {', '.join(map(str, divisors))}"
        )
    d.micro_batch_size = micro
    return cfg, Layout(d.batch_size, world_size, per_rank, micro, per_rank // micro)


def required(value: _T | None, key: str) -> _T:
    """``value`` of ``key`` in a resolved config, where it is set; raises :class:`ConfigError` when it is None.

    :func:`resolve` fills the by-preset keys (``data.batch_size``, ``schedule.steps``, ...) and the run plan
    sets ``data.context`` from the shards; code past those points calls this instead of assuming.
    """
    if value is None:
        raise ConfigError(f"{key} is not set: the config was used before probekit.train.config.resolve filled it")
    return value


def smaller_micro_batch(per_rank: int, micro: int) -> int | None:
    """The largest divisor of ``per_rank`` that is at most half of ``micro`` (OOM hint)."""
    for m in range(micro // 2, 0, -1):
        if per_rank % m == 0:
            return m
    return None


# keys whose change would make a resumed run follow a different data stream or model
RESUME_FIXED = (
    "model.name",
    "model.arch",
    "model.n_layer",
    "model.n_head",
    "model.head_dim",
    "model.rope_theta",
    "model.tie_embeddings",
    "model.grow_after",
    "data.source",
    "data.packing",
    "data.preset",
    "data.max_op",
    "data.max_edge",
    "data.format",
    "data.seed",
    "data.n_problems",
    "data.resample",
    "data.resample_power",
    "data.shards",
    "data.shuffle",
    "data.context",
    "data.batch_size",
)


def flat(cfg_dict: dict) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, values in cfg_dict.items() for k, v in values.items()}


RESUME_KEPT = ("model.init_from",)
"""Keys a resumed run takes from its checkpoint whatever the current config says: the folder the run started from
is a fact of the run (its weights are in the checkpoint now), and the same folder is spelled differently on another
machine or from another working directory."""

SAVED_DEFAULTS = {"data.packing": "stream"}
"""What a key meant in checkpoints written before it existed, where that differs from today's default."""


def resume_differences(saved: dict, current: TrainConfig) -> tuple[list[str], list[str]]:
    """(blocking, other) differences between a checkpoint's config and the current one.

    A key the saved config lacks (a checkpoint written before the key existed) counts as its default then
    (:data:`SAVED_DEFAULTS`, else today's); ``data.resample_power`` blocks only when ``data.resample`` is
    ``length`` (it is unused otherwise); a key of :data:`RESUME_KEPT` never blocks (the run keeps the saved value).
    """
    old, new = flat(TrainConfig().to_dict()) | SAVED_DEFAULTS | flat(saved), flat(current.to_dict())
    power_used = "length" in (old.get("data.resample"), new.get("data.resample"))
    blocking: list[str] = []
    other: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, (list, tuple)):
            a = list(a)
        if isinstance(b, (list, tuple)):
            b = list(b)
        if a != b and key in RESUME_KEPT:
            other.append(f"{key}: kept {a!r}, not {b!r} (a resumed run continues the checkpoint's weights)")
        elif a != b:
            fixed = key in RESUME_FIXED and (key != "data.resample_power" or power_used)
            (blocking if fixed else other).append(f"{key}: {a!r} -> {b!r}")
    return blocking, other


def field_names(section: str) -> list[str]:
    return [f.name for f in fields(SECTIONS[section])]
