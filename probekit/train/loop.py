"""The pretraining loop: :func:`train`, one code path from a 2-core CPU to several nodes of GPUs.

Per optimizer step (:meth:`Trainer.train_step`): one rank batch of ``batch_size / world_size`` windows (from
:mod:`probekit.train.data`'s background loader, pinned and copied with ``non_blocking=True``), split into
micro-batches of ``micro_batch_size``; forward under bf16 autocast (CUDA), next-token cross-entropy in fp32
over the ``context - 1`` predictions of each window, backward (DDP gradient all-reduce only on the last
micro-batch: ``no_sync`` on the others), global-norm clipping, AdamW (fused on CUDA) with the LR of the
schedule. Every ``run.log_every`` steps a log record, every ``run.eval_every`` a learning-curve point, every
``run.checkpoint_every`` (and at the end) a checkpoint.

The pieces, one job each:

- :mod:`~probekit.train.plan`: every check before the start, giving the typed :class:`RunPlan`;
- :mod:`~probekit.train.distributed`: ranks, devices, the process group, collectives, CPU threads;
- :mod:`~probekit.train.model`: the model a run starts from (fresh, ``--init-from`` or a checkpoint's);
- :mod:`~probekit.train.optim` and :mod:`~probekit.train.schedule`: AdamW's parameter groups, the LR of a step;
- :mod:`~probekit.train.checkpointing`: trainer and RNG state, atomic checkpoints and exact resume;
- :mod:`~probekit.train.metrics`: ``log.jsonl``, loss windows, tokens/s and MFU.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from probekit.checkpoint import fastest_attention
from probekit.modeling import git_revision
from probekit.train.checkpointing import Checkpointer, restore_rng_state, seed_rngs
from probekit.train.config import TrainConfig, required, smaller_micro_batch
from probekit.train.data import (
    GeneratedStream,
    Loader,
    ShardStream,
    auto_workers,
    stream_totals,
)
from probekit.train.distributed import (
    DistEnv,
    check_same_start,
    process_group,
    setup_device,
    share_cpu,
)
from probekit.train.flops import FORMULA
from probekit.train.metrics import Metrics, ModelFlops, RunLog, TrainClock
from probekit.train.model import run_model
from probekit.train.objective import CausalLMLoss
from probekit.train.optim import build_optimizer, set_lr, use_fused
from probekit.train.plan import RunPlan, plan_run
from probekit.train.rows import bucket_rows, problem_rows
from probekit.train.schedule import lr_at


class OutOfMemory(RuntimeError):
    """CUDA ran out of memory; the message suggests a smaller ``data.micro_batch_size``."""


@dataclass
class TrainResult:
    """The end of a run on this rank."""

    step: int
    tokens: int
    out: Path
    losses: dict[int, float] = field(default_factory=dict)
    """The logged loss by step."""
    checkpoint: Path | None = None
    """The last checkpoint written (rank 0)."""
    model: Any = None
    """The trained HF model (unwrapped), on the training device."""
    last_log: dict | None = None


def train(cfg: TrainConfig, resume: bool = False, resume_from: str | os.PathLike | None = None) -> TrainResult:
    """Train as ``cfg`` says (see the module doc); returns the final step, losses and the model.

    ``resume``: continue from ``OUT/checkpoints/latest``. ``resume_from``: continue from that checkpoint folder
    (its ``trainer_state.pt``; e.g. a shipped checkpoint) while ``run.out`` holds no checkpoint yet, and from
    ``run.out``'s own checkpoints after that, so the same command also continues an interrupted continuation.
    """
    env = DistEnv.from_env()
    plan = plan_run(cfg, env, resume, resume_from)
    threads = torch.get_num_threads()
    # generator workers are forked before CUDA and the process group start (they never use either)
    stream = make_stream(plan, env)
    try:
        setup_device(plan.device, plan.dtype, plan.cfg.run.tf32)
        with process_group(env, plan.device), contextlib.ExitStack() as resources:
            return Trainer(plan, env, stream, resources).fit()
    except torch.cuda.OutOfMemoryError as err:
        raise _out_of_memory(plan) from err
    finally:
        stream.close()
        torch.set_num_threads(threads)


def make_stream(plan: RunPlan, env: DistEnv):
    """This rank's data stream (its lanes of the global batch), at the checkpoint's position when resuming;
    sets torch's CPU threads to leave the data workers their cores (:func:`share_cpu`)."""
    cfg, layout, device = plan.cfg, plan.layout, plan.device
    data_state = plan.saved.data if plan.saved is not None else None
    lanes = range(env.rank * layout.per_rank, (env.rank + 1) * layout.per_rank)
    context = required(cfg.data.context, "data.context")
    if cfg.data.source == "generate":
        workers = cfg.data.workers if cfg.data.workers is not None else auto_workers(device.type)
        share_cpu(device, max(workers, 1), cfg.run.threads)  # workers 0: the loader thread generates
        return GeneratedStream(cfg.data, context, layout.batch_size, lanes, workers, state=data_state)
    share_cpu(device, 0, cfg.run.threads)
    return ShardStream(cfg.data, context, layout.batch_size, lanes, plan.tokenizer, state=data_state)


def _out_of_memory(plan: RunPlan) -> OutOfMemory:
    layout = plan.layout
    smaller = smaller_micro_batch(layout.per_rank, layout.micro_batch_size)
    hint = (
        f"try data.micro_batch_size={smaller} (gradient accumulation keeps the batch of {layout.batch_size})"
        if smaller
        else "the smallest micro-batch already failed: use a smaller model or data.context"
    )
    return OutOfMemory(
        f"CUDA out of memory with data.micro_batch_size={layout.micro_batch_size} at context "
        f"{plan.cfg.data.context}: {hint}"
    )


class Trainer:
    """One rank's run: set up from a :class:`RunPlan` inside the process group (model, optimizer and the state
    it resumes, the wrapped loss, data loader, log, checkpointer), then :meth:`fit`.

    Whatever needs closing (loader, log, progress bar) is entered into ``resources``.
    """

    def __init__(self, plan: RunPlan, env: DistEnv, stream, resources: contextlib.ExitStack):
        cfg = plan.cfg
        self.plan, self.env, self.cfg, self.device, self.resources = plan, env, cfg, plan.device, resources
        seed_rngs(cfg.run.seed)
        self.model = self._build_model()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        context = required(cfg.data.context, "data.context")
        self.flops = ModelFlops.measure(self.model, context, self.device, plan.dtype, cfg.run.peak_tflops)
        self.fused = use_fused(cfg.optim, self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.fused)
        self.data_state = self._restore()  # the data position after the last batch taken
        self.loss_module = CausalLMLoss(self.model, plan.tokenizer, cfg.optim.loss)
        self.problem_id = plan.tokenizer.special("[PROBLEM]")
        self.ddp, self.runner = self._wrap()
        self.autocast = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if plan.dtype == "bf16"
            else contextlib.nullcontext()
        )
        self.grad_norm: torch.Tensor | None = None
        check_same_start(plan.start_step, env)
        self.workers = getattr(stream, "workers", 0)
        self.loader = resources.enter_context(contextlib.closing(Loader(stream, self.device, cfg.data.prefetch)))
        log = RunLog(plan.out, env.main, cfg.run.tensorboard, plan.start_step if plan.resume is not None else None)
        self.log = resources.enter_context(contextlib.closing(log))
        self.revision = git_revision()  # of the code that runs: checkpoints record it, not the tree at save time
        self.checkpointer = Checkpointer(
            cfg, plan.layout, env, plan.tokenizer, self.device, self.revision, plan.initial_position
        )

    def _build_model(self):
        """The model the run starts from (:func:`~probekit.train.model.run_model`) on the device, in training mode,
        with ``run.attention`` (None: :func:`~probekit.checkpoint.fastest_attention` for the device)."""
        model = run_model(self.cfg.model, self.plan.tokenizer, self.plan.checkpoint, self.plan.initial_model)
        model.set_attn_implementation(self.cfg.run.attention or fastest_attention(self.device))
        model.to(self.device)
        model.train()
        return model

    def _restore(self) -> dict | None:
        """When resuming, load the checkpoint's optimizer and RNG states; returns its data position (None: fresh)."""
        saved = self.plan.saved
        if saved is None:
            return None
        self.optimizer.load_state_dict(saved.optimizer)
        restore_rng_state(saved.rng, self.device)
        return saved.data

    def _wrap(self):
        """``(DDP module or None, the module a micro-batch runs)``: the loss module, under DDP with several
        processes, compiled with ``run.compile``."""
        ddp = None
        runner = self.loss_module
        if self.env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(self.loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            runner = ddp
        if self.plan.compile:
            runner = torch.compile(runner)
        return ddp, runner

    # ------------------------------------------------------------------ one step
    def _micro_batches(self, batch: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None, int]:
        """``(micro-batches, loss denominator, loss divisor)`` of this rank's windows: ``data.micro_batch_size``
        windows each, a micro-batch's loss its own token mean, divided by the accumulation; with ``data.unpack``,
        one row per problem bucketed into as many token slots as those windows (:mod:`probekit.train.rows`),
        each micro-batch's loss divided by the trained targets of all of them (a token mean over the rank)."""
        layout, pad_id = self.plan.layout, self.plan.tokenizer.pad_id
        micro = layout.micro_batch_size
        if not self.cfg.data.unpack:
            windows = [batch[i * micro : (i + 1) * micro] for i in range(layout.accumulation)]
            return windows, None, layout.accumulation
        budget = micro * required(self.cfg.data.context, "data.context")
        rows = bucket_rows(problem_rows(batch, self.problem_id, pad_id), budget, pad_id)
        return rows, torch.stack([self.loss_module.trained_count(ids) for ids in rows]).sum(), 1

    def train_step(self, step: int, metrics: Metrics) -> float:
        """Optimizer step ``step`` (0-based) on the next batch; returns its learning rate."""
        lr = lr_at(step, self.cfg.optim.lr, self.cfg.schedule)
        set_lr(self.optimizer, lr)
        batch, self.data_state, batch_stats = self.loader.next()
        micro_batches, denominator, divisor = self._micro_batches(batch.long())
        step_loss = torch.zeros((), device=self.device)
        for i, ids in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = self.ddp.no_sync() if (self.ddp is not None and not last) else contextlib.nullcontext()
            with sync:
                with self.autocast:
                    parts = self.runner(ids, denominator)
                (parts.loss / divisor).backward()
            step_loss += parts.loss.detach()
            metrics.add_micro_batch(parts)
        if self.cfg.optim.grad_clip is not None:
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        metrics.add_step(step_loss / divisor, batch_stats)
        return lr

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train from the plan's start step to its end step; log, evaluate and checkpoint on the way."""
        plan, env, cfg = self.plan, self.env, self.cfg
        start, end = plan.start_step, plan.end_step
        self._log_start()
        result = TrainResult(step=start, tokens=start * plan.tokens_per_step, out=plan.out, model=self.model)
        if start >= end:
            env.say(f"nothing to do: the checkpoint is at step {start}, the run ends at {end}")
            return result
        bar = self.resources.enter_context(
            tqdm(
                total=end,
                initial=start,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                disable=not (env.main and cfg.run.progress),
                desc="train",
            )
        )
        clock = TrainClock(plan.saved.train_seconds if plan.saved is not None else 0.0)
        totals = stream_totals(self.data_state) if self.data_state and env.main else {}
        metrics = Metrics(
            env,
            self.device,
            self.flops,
            plan.tokens_per_step,
            clock,
            self.loader.wait_seconds,
            totals,
            count_problems=cfg.data.source == "generate",
        )
        curve = self._curve()
        step = start
        while step < end:
            lr = self.train_step(step, metrics)
            step += 1
            bar.update(1)
            if step % cfg.run.log_every == 0 or step == end:
                result.last_log = self._log_window(step, lr, metrics, bar)
                result.losses[step] = result.last_log["loss"]
            if curve is not None and (step % cfg.run.eval_every == 0 or step == end):
                self._evaluate(curve, step, metrics, clock, bar)
            periodic = cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0
            if periodic or (step == end and cfg.run.save_final):
                result.checkpoint = self._checkpoint(step, clock, bar)
        result.step = step
        result.tokens = step * plan.tokens_per_step
        self.log.write({"event": "end", "step": step, "tokens": result.tokens, "elapsed_s": clock.elapsed()})
        return result

    def _log_start(self) -> None:
        """The ``start`` record of the log and the one-line summary on stderr."""
        plan, env, cfg, flops = self.plan, self.env, self.cfg, self.flops
        layout, context, stats = plan.layout, cfg.data.context, plan.context_stats
        self.log.write(
            {
                "event": "start",
                "step": plan.start_step,
                "time": time.time(),
                "resumed_from": str(plan.checkpoint) if plan.checkpoint else None,
                "init_from": cfg.model.init_from,
                "init_from_position": plan.initial_position,
                "world_size": env.world_size,
                "device": str(self.device),
                "device_name": flops.device_name,
                "dtype": plan.dtype,
                "compile": plan.compile,
                "fused_adamw": self.fused,
                "data_workers": self.workers,
                "torch_threads": torch.get_num_threads(),
                "layout": layout.__dict__,
                "tokens_per_step": plan.tokens_per_step,
                "n_params": flops.n_params,
                "n_params_matmul": flops.n_matmul,
                "n_layer": flops.n_layer,
                "d_model": flops.d_model,
                "flops_per_token": flops.per_token,
                "flops_formula": FORMULA,
                "peak_tflops": flops.peak_tflops,
                "data_preset": asdict(plan.preset) if cfg.data.source == "generate" else None,
                "context_check": stats,
                "git_revision": self.revision,
                "config": cfg.to_dict(),
            }
        )
        env.say(
            f"probekit train: {flops.n_params / 1e6:.2f}M parameters on {env.world_size} x {self.device.type} "
            f"({plan.dtype}{', compiled' if plan.compile else ''}); batch {layout.batch_size} x {context} tokens "
            f"= {layout.world_size} process(es) x {layout.accumulation} micro-batch(es) x {layout.micro_batch_size}"
            f"{' windows, run unpacked: one row per problem' if cfg.data.unpack else ''}; "
            f"steps {plan.start_step} -> {plan.end_step} of {cfg.schedule.steps}; out {plan.out}"
        )
        if stats and stats["too_long_fraction"] > 0:
            env.say(
                f"note: {100 * stats['too_long_fraction']:.1f}% of {stats['samples']} {stats['preset']} problems "
                f"at op {stats['op']} (longest {stats['longest']} tokens) exceed the context {context}; such "
                "problems are dropped and counted"
            )

    def _log_window(self, step: int, lr: float, metrics: Metrics, bar) -> dict:
        """Write the record of the logging window ending at ``step`` and show it on the progress bar."""
        record = metrics.record(step, lr, self.grad_norm, self.loader.wait_seconds)
        self.log.write(record)
        postfix = {"loss": f"{record['loss']:.4f}", "tok/s": f"{record['tokens_per_s']:,.0f}"}
        if record["mfu"] is not None:
            postfix["mfu"] = f"{record['mfu']:.1%}"
        bar.set_postfix(postfix, refresh=False)
        return record

    def _curve(self):
        """The learning-curve evaluator (rank 0, with ``run.eval_every``), else None."""
        if not (self.cfg.run.eval_every and self.env.main):
            return None
        from probekit.train.curve import CurveEval

        return CurveEval(self.plan.preset.name, self.cfg.data.format, self.cfg.run.eval_problems, self.plan.tokenizer)

    def _evaluate(self, curve, step: int, metrics: Metrics, clock: TrainClock, bar) -> None:
        """A learning-curve point: full-solution accuracy by op, logged; its time is left out of training time."""
        measured = curve.record(self.model)
        clock.eval_seconds += measured["eval_seconds"]
        problems = int(metrics.problems) if self.cfg.data.source == "generate" else None
        self.log.write(
            {
                "event": "eval",
                "step": step,
                "tokens": step * self.plan.tokens_per_step,
                "problems": problems,
                "train_seconds": clock.train_seconds(),
                **measured,
            }
        )
        self.env.say(
            f"step {step}: full-solution accuracy {measured['accuracy']:.3f} by op "
            + ", ".join(f"{op}: {acc:.2f}" for op, acc in measured["accuracy_by_op"].items()),
            bar,
        )
        metrics.pause(measured["eval_seconds"])  # tokens/s counts training time only

    def _checkpoint(self, step: int, clock: TrainClock, bar) -> Path | None:
        """Write the checkpoint of ``step`` (every rank takes part, rank 0 writes and logs it)."""
        if self.data_state is None:  # set by every train_step, and checkpoints follow a step
            raise RuntimeError(f"no data position at step {step}: a checkpoint is written only after a training step")
        path = self.checkpointer.save(step, self.model, self.optimizer, self.data_state, clock.train_seconds())
        if self.env.main:
            self.log.write({"event": "checkpoint", "step": step, "path": str(path)})
            self.env.say(f"checkpoint: {path}", bar)
        return path
