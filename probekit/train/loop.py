"""The pretraining loop: one code path from a 2-core CPU to several nodes of GPUs.

Per optimizer step: one rank batch of ``batch_size / world_size`` windows (from :mod:`probekit.train.data`'s
background loader, pinned and copied with ``non_blocking=True``), split into micro-batches of
``micro_batch_size``; forward under bf16 autocast (CUDA), next-token cross-entropy in fp32 over the
``context - 1`` predictions of each window, backward (DDP gradient all-reduce only on the last micro-batch:
``no_sync`` on the others), global-norm clipping, AdamW (fused on CUDA) with the LR of the schedule.

No host synchronisation inside a step: the loss is summed on the device and read (``.item()``) every
``run.log_every`` steps only, together with the data-wait time, tokens/s and MFU (:mod:`probekit.train.flops`).

Weight decay: on every parameter with two or more dimensions (the attention and MLP matrices, and by default
the embedding and output matrices, as Hugging Face's Trainer does), never on biases and norm weights
(``optim.decay_embeddings: false`` also exempts the embedding and output matrices).

LR schedule: linear warm-up ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``, then cosine
(or linear) decay reaching ``min_lr_ratio * lr`` at the last step (``schedule.steps - 1``); ``wsd`` keeps the
peak until the last ``decay_fraction`` of the steps and decays linearly over those.

Checkpoints (rank 0; every ``run.checkpoint_every`` steps and at the end): ``OUT/checkpoints/step_NNNNNN/`` is
an HF folder (:func:`probekit.modeling.save_checkpoint`: model, tokenizer, ``probekit.json`` provenance) plus
``trainer_state.pt`` (optimizer, step, schedule position, RNG states, the data position of every batch lane,
config). It is written under a temporary name and renamed into place when complete; ``OUT/checkpoints/latest``
(a text file naming the folder) is then replaced atomically. ``--resume`` restores all of it, so a killed and
resumed run logs the same losses as an uninterrupted one, even with another number of processes (up to the
order of floating-point reductions).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probekit.modeling import (
    ModelConfig,
    build_model,
    git_revision,
    load_model_config,
    save_checkpoint,
)
from probekit.records import write_atomic
from probekit.tokenizer import IGSMTokenizer, default_tokenizer
from probekit.train import flops as flops_mod
from probekit.train.config import (
    ConfigError,
    Layout,
    ModelSection,
    ScheduleSection,
    TrainConfig,
    resolve,
    resume_differences,
    smaller_micro_batch,
)
from probekit.train.data import (
    GeneratedStream,
    Loader,
    ShardStream,
    auto_workers,
    check_context,
    ensure_preset,
    merge_states,
    stream_totals,
)
from probekit.train.objective import CausalLMLoss

STATE_FILE = "trainer_state.pt"
STATE_FORMAT = "probekit-trainer-state-v1"
LATEST = "latest"
LOG_FILE = "log.jsonl"


class OutOfMemory(RuntimeError):
    """CUDA ran out of memory; the message suggests a smaller ``data.micro_batch_size``."""


# ---------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistEnv:
        def get(name, default):
            raw = os.environ.get(name)
            try:
                return int(raw) if raw not in (None, "") else default
            except ValueError:
                raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None

        env = cls(get("RANK", 0), get("WORLD_SIZE", 1), get("LOCAL_RANK", 0))
        if not 0 <= env.rank < env.world_size:
            raise ConfigError(f"RANK={env.rank} is outside WORLD_SIZE={env.world_size}")
        return env

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


# ---------------------------------------------------------------------------- schedule
def lr_at(step: int, peak: float, schedule: ScheduleSection) -> float:
    """The learning rate of optimizer step ``step`` (0-based)."""
    warmup, total = schedule.warmup_steps, schedule.steps
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule.decay == "constant":
        return peak
    low = schedule.min_lr_ratio * peak
    if schedule.decay == "wsd":
        decay_steps = max(1, round(schedule.decay_fraction * (total - warmup)))
        progress = min(1.0, max(0, step - (total - decay_steps) + 1) / decay_steps)
        return peak - (peak - low) * progress
    progress = min(1.0, (step - warmup + 1) / max(1, total - warmup))
    if schedule.decay == "linear":
        return peak - (peak - low) * progress
    return low + (peak - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------- model and optimizer
def model_config(section: ModelSection) -> ModelConfig:
    """The named shape with the section's overrides (``model.n_layer=8`` ...)."""
    try:
        base = load_model_config(section.name)
    except ValueError as err:
        raise ConfigError(f"model.name: {err}") from None
    changes = {k: getattr(section, k) for k in ("arch", "n_layer", "n_head", "head_dim", "rope_theta", "tie_embeddings")}
    changes = {k: v for k, v in changes.items() if v is not None and v != getattr(base, k)}
    if not changes:
        return base
    values = {**base.__dict__, **changes}
    values["name"] = f"{values['arch']}-{values['n_layer']}-{values['n_head']}"
    if values["head_dim"] != 64:
        values["name"] += f"-hd{values['head_dim']}"
    if values["tie_embeddings"]:
        values["name"] += "-tied"
    try:
        return ModelConfig(**values)
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None


def fix_rotary(model) -> list[str]:
    """Recompute the non-persistent rotary buffers (``inv_freq`` ...) of ``model`` from its config and repair
    any that differ; returns the repaired names. A reproduction lost weeks to garbage ``inv_freq`` after
    ``from_pretrained``; the buffers are never stored in a checkpoint, so they must come from the config."""
    fixed = []
    for name, module in model.named_modules():
        if not hasattr(module, "inv_freq") or not hasattr(module, "config"):
            continue
        try:
            fresh = type(module)(module.config)
        except Exception:  # an unfamiliar rotary class: leave it
            continue
        for key, buf in fresh.named_buffers(recurse=False):
            current = module._buffers.get(key)
            if current is None or current.shape != buf.shape or not torch.equal(current.detach().float().cpu(), buf.float()):
                module._buffers[key] = buf.to(current.device if current is not None else "cpu")
                fixed.append(f"{name}.{key}")
    return fixed


def model_from_folder(folder: str | os.PathLike):
    """An HF folder's causal LM in fp32 with SDPA; every weight must be in the folder (tied copies excepted),
    and the rotary buffers are checked against the config (:func:`fix_rotary`)."""
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ConfigError(f"{folder} is not a Hugging Face checkpoint folder (no config.json)")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True
        )
    except (ValueError, KeyError, OSError) as err:
        raise ConfigError(f"{folder}: cannot load a causal language model: {err}") from None
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or mismatched:
        raise ConfigError(
            f"{folder}: the weights do not match the model of its config.json: missing {missing[:5]}, "
            f"mismatched {[m[0] if isinstance(m, (tuple, list)) else m for m in mismatched[:5]]}"
        )
    fixed = fix_rotary(model)
    if fixed:
        print(f"probekit train: repaired rotary buffers {fixed} after loading {folder}", file=sys.stderr)
    return model


def tokenizer_of(folder: Path) -> tuple[IGSMTokenizer, bool]:
    """The folder's probekit tokenizer, or the default one (``False``) when it has none."""
    try:
        return IGSMTokenizer.load(folder), True
    except Exception:  # noqa: BLE001  (missing, or a foreign tokenizer.json: not ours)
        return default_tokenizer(), False


def init_model(folder: str | os.PathLike, context: int):
    """Model and tokenizer of ``--init-from DIR``, checked against the probekit tokenizer and the context."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--init-from {folder}: no such folder")
    model = model_from_folder(folder)
    tokenizer, own = tokenizer_of(folder)
    rows = model.get_input_embeddings().weight.shape[0]
    out = model.get_output_embeddings()
    out_rows = out.weight.shape[0] if out is not None else rows
    if min(rows, out_rows) < tokenizer.vocab_size:
        raise ConfigError(
            f"--init-from {folder}: its embedding has {rows} rows and its output layer {out_rows}, but the "
            f"{'folder' if own else 'probekit'} tokenizer has {tokenizer.vocab_size} ids; resize the embeddings "
            f"first (model.resize_token_embeddings({-(-tokenizer.vocab_size // 64) * 64}))"
        )
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and context > max_pos:
        raise ConfigError(f"--init-from {folder}: data.context={context} exceeds its max_position_embeddings={max_pos}")
    return model, tokenizer, own


def param_groups(model, weight_decay: float, decay_embeddings: bool) -> list[dict]:
    """AdamW groups: decay on matrices (see the module doc), none on vectors (biases, norm weights)."""
    skip = set()
    if not decay_embeddings:
        skip.add(id(model.get_input_embeddings().weight))
        if model.get_output_embeddings() is not None:
            skip.add(id(model.get_output_embeddings().weight))
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in skip else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------- checkpoints
def _rng_state(device) -> dict:
    np_state = list(np.random.get_state())
    np_state[1] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    state = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device) -> None:
    random.setstate(state["python"])
    np_state = list(state["numpy"])
    np_state[1] = np_state[1].numpy().astype(np.uint32)
    np.random.set_state(tuple(np_state))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def complete_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Finished checkpoint folders (model and trainer state present), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.glob("step_*") if p.is_dir() and (p / STATE_FILE).exists() and (p / "config.json").exists()
             and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(out: str | os.PathLike) -> Path | None:
    """The checkpoint ``OUT/checkpoints/latest`` names, else the newest complete one, else None."""
    ckpt_dir = Path(out) / "checkpoints"
    pointer = ckpt_dir / LATEST
    if pointer.exists():
        path = ckpt_dir / pointer.read_text().strip()
        if (path / STATE_FILE).exists():
            return path
    found = complete_checkpoints(ckpt_dir)
    return found[-1] if found else None


def _write_trainer_state(state: dict, path: Path) -> None:
    torch.save(state, path)  # inside save_checkpoint's temp folder: the folder rename makes it atomic


def write_checkpoint(out: Path, step: int, model, tokenizer, provenance: dict, trainer_state: dict,
                     keep: int | None = None) -> Path:
    """Write ``OUT/checkpoints/step_NNNNNN`` atomically, then point ``latest`` at it (see the module doc)."""
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = save_checkpoint(
        model, tokenizer, ckpt_dir / step_name(step), provenance,
        write_extra=lambda folder: _write_trainer_state(trainer_state, folder / STATE_FILE),
    )
    write_atomic(ckpt_dir / LATEST, final.name + "\n")
    if keep is not None:
        for old in complete_checkpoints(ckpt_dir)[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------- logging
class RunLog:
    """``OUT/log.jsonl`` (+ TensorBoard when available) on rank 0; a no-op elsewhere."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = out / LOG_FILE
        self.tb = None
        self._fh = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():  # drop what a killed run logged after its last checkpoint
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) <= resume_step:
                    kept.append(line)
            write_atomic(self.path, "".join(x + "\n" for x in kept))
        self._fh = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"))
            except Exception:  # tensorboard not installed
                self.tb = None

    def write(self, record: dict) -> None:
        if not self._fh:
            return
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()
        if self.tb is not None and "loss" in record:
            for key in ("loss", "lr", "tokens_per_s", "mfu", "data_wait_fraction", "grad_norm"):
                if record.get(key) is not None:
                    self.tb.add_scalar(f"train/{key}", record[key], record["step"])

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        if self.tb is not None:
            self.tb.close()


def read_log(out: str | os.PathLike) -> list[dict]:
    path = Path(out) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------- the run
@dataclass
class TrainResult:
    step: int
    tokens: int
    out: Path
    losses: dict[int, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    model: Any = None  # the trained HF model (unwrapped), on the training device
    last_log: dict | None = None


def _say(message: str, env: DistEnv, bar=None) -> None:
    if not env.main:
        return
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def _device(run_device: str, env: DistEnv) -> torch.device:
    if run_device == "auto":
        run_device = "cuda" if torch.cuda.is_available() else "cpu"
    if run_device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("run.device is cuda but no CUDA device is available")
        index = env.local_rank if run_device == "cuda" else int(run_device.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK / cuda index {index} but only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    return torch.device("cpu")


def prepare(cfg: TrainConfig, env: DistEnv, resume: bool, resume_from: str | os.PathLike | None = None):
    """Every check that can fail before training starts; returns what the run needs (no process group yet)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if cfg.model.init_from is not None:
        cfg.model.init_from = str(cfg.model.init_from)
    cfg, layout = resolve(cfg, env.world_size)
    device = _device(cfg.run.device, env)
    dtype = cfg.run.dtype if cfg.run.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    compile_on = (device.type == "cuda") if cfg.run.compile == "auto" else bool(cfg.run.compile)
    out = Path(cfg.run.out)

    meta = None
    if cfg.data.source == "shards":
        from probekit.shards import load_meta

        try:
            meta = load_meta(cfg.data.shards)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"data.shards: {err}") from None
        if cfg.data.context is None:
            cfg.data.context = int(meta["context"])

    checkpoint = None
    saved = None
    if resume_from is not None:
        resume = True
        if latest_checkpoint(out) is None:  # the first start: from the given folder; later: OUT's own checkpoints
            checkpoint = Path(resume_from)
            if not (checkpoint / STATE_FILE).exists() or not (checkpoint / "config.json").exists():
                raise ConfigError(f"--resume-from {checkpoint}: needs a checkpoint folder with config.json and "
                                  f"{STATE_FILE} (written by probekit train)")
    if resume:
        checkpoint = checkpoint or latest_checkpoint(out)
        if checkpoint is not None:
            saved = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
            if saved.get("format") != STATE_FORMAT:
                raise ConfigError(f"{checkpoint / STATE_FILE}: unknown trainer state format {saved.get('format')!r}")
            blocking, changed = resume_differences(saved["config"], cfg)
            if blocking:
                raise ConfigError(
                    f"cannot resume {checkpoint}: the data stream or model would change: " + "; ".join(blocking)
                )
            if env.main:
                print(f"probekit train: resuming from {checkpoint}"
                      + (f" with changed settings: {'; '.join(changed)}" if changed else ""), file=sys.stderr)
        elif env.main:
            print(f"probekit train: --resume: no checkpoint in {out / 'checkpoints'}, starting at step 0", file=sys.stderr)
    elif complete_checkpoints(out / "checkpoints"):
        raise ConfigError(
            f"{out} already holds checkpoints; pass --resume to continue that run, or set another run.out"
        )

    # data: does the context hold the problems?
    tokenizer = None
    context = cfg.data.context
    context_stats = check_context(cfg.data, context)
    ensure_preset(cfg.data.preset, cfg.data.max_op, cfg.data.max_edge)

    # model
    init = None
    if checkpoint is not None:
        tokenizer, _ = tokenizer_of(checkpoint)
    elif cfg.model.init_from:
        init = init_model(cfg.model.init_from, context)
        tokenizer = init[1]
    else:
        shape = model_config(cfg.model)
        if context > shape.context:
            raise ConfigError(f"data.context={context} exceeds the model's context {shape.context} ({shape.name})")
        tokenizer = default_tokenizer()
    if meta is not None and tokenizer.fingerprint != meta["tokenizer_fingerprint"]:
        raise ConfigError(f"data.shards {cfg.data.shards} was written with another tokenizer than the model's")
    return dict(cfg=cfg, layout=layout, device=device, dtype=dtype, compile=compile_on, out=out,
                checkpoint=checkpoint, saved=saved, tokenizer=tokenizer, init=init, context_stats=context_stats)


def make_stream(p: dict, env: DistEnv):
    """This rank's data stream (its lanes of the global batch), at the checkpoint's position when resuming."""
    cfg, layout, device = p["cfg"], p["layout"], p["device"]
    data_state = p["saved"]["data"] if p["saved"] is not None else None
    lanes = range(env.rank * layout.per_rank, (env.rank + 1) * layout.per_rank)
    if cfg.data.source == "generate":
        workers = cfg.data.workers if cfg.data.workers is not None else auto_workers(device.type)
        _share_cpu(device, max(workers, 1), cfg.run.threads)  # workers 0: the loader thread generates
        return GeneratedStream(cfg.data, cfg.data.context, layout.batch_size, lanes, workers, state=data_state)
    _share_cpu(device, 0, cfg.run.threads)
    return ShardStream(cfg.data, cfg.data.context, layout.batch_size, lanes, p["tokenizer"], state=data_state)


def train(cfg: TrainConfig, resume: bool = False, resume_from: str | os.PathLike | None = None) -> TrainResult:
    """Train as ``cfg`` says (see the module doc); returns the final step, losses and the model.

    ``resume``: continue from ``OUT/checkpoints/latest``. ``resume_from``: continue from that checkpoint folder
    (its ``trainer_state.pt``; e.g. a shipped checkpoint) while ``run.out`` holds no checkpoint yet, and from
    ``run.out``'s own checkpoints after that, so the same command also continues an interrupted continuation.
    """
    env = DistEnv.from_env()
    p = prepare(cfg, env, resume, resume_from)
    cfg, layout, device = p["cfg"], p["layout"], p["device"]
    threads = torch.get_num_threads()
    # generator workers are forked before CUDA and the process group start (they never use either)
    stream = make_stream(p, env)
    try:
        return _train(cfg, layout, device, env, p, stream)
    except torch.cuda.OutOfMemoryError as err:
        smaller = smaller_micro_batch(layout.per_rank, layout.micro_batch_size)
        hint = (
            f"try data.micro_batch_size={smaller} (gradient accumulation keeps the batch of {layout.batch_size})"
            if smaller else "the smallest micro-batch already failed: use a smaller model or data.context"
        )
        raise OutOfMemory(
            f"CUDA out of memory with data.micro_batch_size={layout.micro_batch_size} at context "
            f"{cfg.data.context}: {hint}"
        ) from err
    finally:
        stream.close()
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, layout: Layout, device: torch.device, env: DistEnv, p: dict, stream) -> TrainResult:
    import torch.distributed as dist
    from tqdm import tqdm

    out: Path = p["out"]
    saved = p["saved"]
    tokenizer = p["tokenizer"]
    dtype = p["dtype"]
    context = cfg.data.context

    if device.type == "cuda":
        torch.cuda.set_device(device)
        if dtype == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("run.dtype bf16 is not supported by this GPU; use run.dtype=fp32")
        if cfg.run.tf32:
            torch.set_float32_matmul_precision("high")
    pg_started = False
    if env.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        pg_started = True
    log = loader = bar = None
    try:
        random.seed(cfg.run.seed)
        np.random.seed(cfg.run.seed % 2**32)
        torch.manual_seed(cfg.run.seed)

        # ---- model
        if p["checkpoint"] is not None:
            model = model_from_folder(p["checkpoint"])
        elif p["init"] is not None:
            model = p["init"][0]
        else:
            model = build_model(model_config(cfg.model), tokenizer, seed=cfg.model.seed)
        model.to(device)
        model.train()
        n_params = sum(t.numel() for t in model.parameters())
        n_matmul = flops_mod.matmul_params(model)
        n_layer, d_model = flops_mod.model_shape(model)
        flops_token = flops_mod.flops_per_token(n_matmul, n_layer, d_model, context)
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        peak = cfg.run.peak_tflops or flops_mod.default_peak_tflops(device.type, device_name, dtype)

        # ---- optimizer
        fused = cfg.optim.fused if cfg.optim.fused is not None else device.type == "cuda"
        opt_kwargs = dict(lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
        if fused:
            opt_kwargs["fused"] = True
        optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay, cfg.optim.decay_embeddings), **opt_kwargs)
        start_step = 0
        data_state = None
        seconds_before = 0.0  # training seconds of the run before this process (evaluations excluded)
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
            _set_rng_state(saved["rng"], device)
            start_step = int(saved["step"])
            data_state = saved["data"]  # the position of the stream (built in train())
            seconds_before = float(saved.get("train_seconds", 0.0))

        # ---- wrap: loss module, DDP, compile
        loss_module = CausalLMLoss(model, tokenizer, cfg.optim.loss)
        ddp = None
        runner = loss_module
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(loss_module, device_ids=[device.index] if device.type == "cuda" else None)
            runner = ddp
        if p["compile"]:
            runner = torch.compile(runner)
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if dtype == "bf16" else contextlib.nullcontext()
        )

        # ---- data
        if env.distributed:  # every rank must continue from the same step (multi-node: OUT on a shared disk)
            starts: list = [None] * env.world_size
            dist.all_gather_object(starts, start_step)
            if len(set(starts)) > 1:
                raise RuntimeError(
                    f"the ranks start from different steps {starts}: with several nodes, run.out must be on a "
                    "filesystem every node sees"
                )
        workers = getattr(stream, "workers", 0)
        loader = Loader(stream, device, cfg.data.prefetch)

        end_step = cfg.run.stop_at_step or cfg.schedule.steps
        tokens_per_step = layout.batch_size * context
        log = RunLog(out, env.main, cfg.run.tensorboard, start_step if saved is not None else None)
        preset = ensure_preset(cfg.data.preset, cfg.data.max_op, cfg.data.max_edge)
        from probekit.igsm.generate import PRESETS

        revision = git_revision()  # of the code that runs: checkpoints record it, not the tree at save time
        start_record = {
            "event": "start", "step": start_step, "time": time.time(),
            "resumed_from": str(p["checkpoint"]) if p["checkpoint"] else None,
            "init_from": cfg.model.init_from,
            "world_size": env.world_size, "device": str(device), "device_name": device_name, "dtype": dtype,
            "compile": p["compile"], "fused_adamw": fused, "data_workers": workers,
            "torch_threads": torch.get_num_threads(),
            "layout": layout.__dict__, "tokens_per_step": tokens_per_step,
            "n_params": n_params, "n_params_matmul": n_matmul, "n_layer": n_layer, "d_model": d_model,
            "flops_per_token": flops_token, "flops_formula": flops_mod.FORMULA, "peak_tflops": peak,
            "data_preset": PRESETS[preset].__dict__ if cfg.data.source == "generate" else None,
            "context_check": p["context_stats"], "git_revision": revision, "config": cfg.to_dict(),
        }
        log.write(start_record)
        stats = p["context_stats"]
        _say(
            f"probekit train: {n_params / 1e6:.2f}M parameters on {env.world_size} x {device.type} ({dtype}"
            f"{', compiled' if p['compile'] else ''}); batch {layout.batch_size} x {context} tokens "
            f"= {layout.world_size} process(es) x {layout.accumulation} micro-batch(es) x {layout.micro_batch_size}; "
            f"steps {start_step} -> {end_step} of {cfg.schedule.steps}; out {out}", env)
        if stats and stats["too_long_fraction"] > 0:
            _say(f"note: {100 * stats['too_long_fraction']:.1f}% of {stats['samples']} {stats['preset']} problems at "
                 f"op {stats['op']} (longest {stats['longest']} tokens) exceed the context {context}; such problems "
                 "are dropped and counted", env)

        # ---- loop
        result = TrainResult(step=start_step, tokens=start_step * tokens_per_step, out=out, model=model)
        if start_step >= end_step:
            _say(f"nothing to do: the checkpoint is at step {start_step}, the run ends at {end_step}", env)
            return result
        bar = tqdm(total=end_step, initial=start_step, unit="step", file=sys.stderr, dynamic_ncols=True,
                   disable=not (env.main and cfg.run.progress), desc="train")
        params = [q for q in model.parameters() if q.requires_grad]
        window_loss = torch.zeros((), device=device)
        window_solution = torch.zeros(2, device=device)  # summed loss and count of the solution targets
        window_counts = [0, 0]  # problems used, dropped (host ints from the loader)
        window_steps = 0
        window_start = time.perf_counter()
        wait_start = loader.wait_seconds
        run_start = time.perf_counter()
        eval_seconds = 0.0
        curve = None
        if cfg.run.eval_every and env.main:
            from probekit.train.curve import CurveEval

            curve = CurveEval(preset, cfg.data.format, cfg.run.eval_problems, tokenizer)

        def train_seconds() -> float:
            return seconds_before + time.perf_counter() - run_start - eval_seconds
        grad_norm = None
        accum, micro = layout.accumulation, layout.micro_batch_size
        step = start_step
        last_state = data_state
        totals = stream_totals(data_state) if data_state and env.main else {}
        problems_total = float(totals.get("problems", 0))
        dropped_total = float(totals.get("dropped", 0))
        checkpoint_path = None
        while step < end_step:
            lr = lr_at(step, cfg.optim.lr, cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch, last_state, batch_stats = loader.next()
            batch = batch.long()
            step_loss = torch.zeros((), device=device)
            for i in range(accum):
                last = i == accum - 1
                sync = ddp.no_sync() if (ddp is not None and not last) else contextlib.nullcontext()
                with sync:
                    with autocast:
                        parts = runner(batch[i * micro : (i + 1) * micro])
                    (parts.loss / accum).backward()
                step_loss += parts.loss.detach()
                window_solution += torch.stack([parts.solution_sum, parts.solution_count.to(parts.solution_sum.dtype)])
            if cfg.optim.grad_clip is not None:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_loss += step_loss / accum
            if "problems" in batch_stats:
                window_counts[0] += batch_stats["problems"]
                window_counts[1] += batch_stats["dropped"]
            window_steps += 1
            bar.update(1)

            if step % cfg.run.log_every == 0 or step == end_step:
                counts = torch.tensor(window_counts, dtype=torch.float64).to(device)
                packed = torch.cat([window_loss.double().reshape(1), counts, window_solution.double()])
                if ddp is not None:
                    dist.all_reduce(packed)
                    packed[0] /= env.world_size
                values = packed.tolist()  # the one host sync of the window
                now = time.perf_counter()
                seconds = now - window_start
                loss_value = values[0] / window_steps
                problems_total += values[1]
                dropped_total += values[2]
                tokens_per_s = window_steps * tokens_per_step / seconds if seconds > 0 else 0.0
                record = {
                    "step": step,
                    "loss": loss_value,
                    "solution_loss": values[3] / values[4] if values[4] else None,
                    "lr": lr,
                    "tokens": step * tokens_per_step,
                    "tokens_per_s": tokens_per_s,
                    "mfu": flops_mod.mfu(flops_token, tokens_per_s, peak, env.world_size),
                    "data_wait_fraction": (loader.wait_seconds - wait_start) / seconds if seconds > 0 else 0.0,
                    "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "step_time_s": seconds / window_steps,
                    "window_steps": window_steps,
                    "window_seconds": seconds,
                    "elapsed_s": now - run_start,
                    "train_seconds": train_seconds(),
                }
                if cfg.data.source == "generate":
                    record["problems"] = int(problems_total)
                    record["dropped_too_long"] = int(dropped_total)
                log.write(record)
                result.losses[step] = loss_value
                result.last_log = record
                postfix = {"loss": f"{loss_value:.4f}", "tok/s": f"{tokens_per_s:,.0f}"}
                if record["mfu"] is not None:
                    postfix["mfu"] = f"{record['mfu']:.1%}"
                bar.set_postfix(postfix, refresh=False)
                window_loss.zero_()
                window_solution.zero_()
                window_counts = [0, 0]
                window_steps = 0
                window_start = time.perf_counter()
                wait_start = loader.wait_seconds

            if curve is not None and (step % cfg.run.eval_every == 0 or step == end_step):
                measured = curve.record(model)
                eval_seconds += measured["eval_seconds"]
                log.write({"event": "eval", "step": step, "tokens": step * tokens_per_step,
                           "problems": int(problems_total) if cfg.data.source == "generate" else None,
                           "train_seconds": train_seconds(), **measured})
                _say(f"step {step}: full-solution accuracy {measured['accuracy']:.3f} by op "
                     + ", ".join(f"{op}: {acc:.2f}" for op, acc in measured["accuracy_by_op"].items()), env, bar)
                window_start += measured["eval_seconds"]  # tokens/s counts training time only

            periodic = cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0
            final = step == end_step and cfg.run.save_final
            if periodic or final:
                checkpoint_path = _checkpoint(cfg, env, out, step, model, tokenizer, optimizer, last_state,
                                              tokens_per_step, device, layout, init_from=cfg.model.init_from,
                                              train_seconds=train_seconds(), revision=revision)
                if env.main:
                    log.write({"event": "checkpoint", "step": step, "path": str(checkpoint_path)})
                    _say(f"checkpoint: {checkpoint_path}", env, bar)
        result.step = step
        result.tokens = step * tokens_per_step
        result.checkpoint = checkpoint_path
        log.write({"event": "end", "step": step, "tokens": result.tokens, "elapsed_s": time.perf_counter() - run_start})
        return result
    finally:
        if bar is not None:
            bar.close()
        if loader is not None:
            loader.close()
        if log is not None:
            log.close()
        if pg_started and dist.is_initialized():
            dist.destroy_process_group()


def _share_cpu(device, workers: int, threads: int | None = None) -> None:
    """On CPU, set torch's threads: ``run.threads`` when given, else an explicit OMP_NUM_THREADS, else leave a
    core to each generator worker (or to the loader thread): torch's spinning OpenMP threads can slow down many
    times when a core they count on is busy (measured on a shared 2-core machine: 1 thread + 1 worker 13-21k
    tokens/s; 2 threads + 1 worker anywhere from 2k to 25k, depending on how busy the worker is).
    ``benchmarks/RESULTS.md`` has the measurements behind the CPU recipes' ``run.threads``."""
    if device.type != "cpu":
        return
    if threads is not None:
        torch.set_num_threads(threads)
        return
    if os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    torch.set_num_threads(max(1, cores // max(local, 1) - workers))


def _checkpoint(cfg: TrainConfig, env: DistEnv, out: Path, step: int, model, tokenizer, optimizer, data_state,
                tokens_per_step: int, device, layout: Layout, init_from: str | None,
                train_seconds: float = 0.0, revision: str | None = None) -> Path | None:
    """Gather the data positions of every rank; rank 0 writes the checkpoint."""
    import torch.distributed as dist

    if env.distributed:
        states: list = [None] * env.world_size
        dist.all_gather_object(states, data_state)
    else:
        states = [data_state]
    if not env.main:
        return None
    global_state = merge_states(states)
    preset = ensure_preset(cfg.data.preset, cfg.data.max_op, cfg.data.max_edge)
    from probekit.igsm.generate import PRESETS

    tokens = step * tokens_per_step
    provenance = {
        "git_revision": revision,
        "training_config": cfg.to_dict(),
        "data_preset": PRESETS[preset].__dict__ if cfg.data.source == "generate" else {"shards": cfg.data.shards},
        "step": step,
        "tokens_seen": tokens,
        "world_size": env.world_size,
        "init_from": init_from,
        "data_position": stream_totals(global_state),
        "train_seconds": train_seconds,
    }
    trainer_state = {
        "format": STATE_FORMAT,
        "step": step,
        "tokens": tokens,
        "schedule": {"step": step, "next_lr": lr_at(step, cfg.optim.lr, cfg.schedule) if step < cfg.schedule.steps else None},
        "optimizer": optimizer.state_dict(),
        "rng": _rng_state(device),
        "data": global_state,
        "config": cfg.to_dict(),
        "world_size": env.world_size,
        "layout": layout.__dict__,
        "train_seconds": train_seconds,
    }
    return write_checkpoint(out, step, model, tokenizer, provenance, trainer_state, keep=cfg.run.keep_checkpoints)
