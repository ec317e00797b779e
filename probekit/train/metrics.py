"""What a run reports: ``OUT/log.jsonl`` (and TensorBoard), the loss and throughput of each logging window.

No host synchronisation inside a step: :class:`Metrics` sums the loss on the device and reads it (``.item()``)
every ``run.log_every`` steps only, together with the data-wait time, tokens/s and MFU (:class:`ModelFlops`,
:mod:`probekit.train.flops`). Time spent in learning-curve evaluations is left out of tokens/s and of the
run's ``train_seconds`` (:class:`TrainClock`). :func:`read_log` reads a run's records back,
:func:`throughput` the tokens/s of its later windows.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from probekit.records import write_atomic
from probekit.train import flops as flops_mod
from probekit.train.distributed import DistEnv, reduce_sum

LOG_FILE = "log.jsonl"
TENSORBOARD_KEYS = ("loss", "lr", "tokens_per_s", "mfu", "data_wait_fraction", "grad_norm")


class RunLog:
    """``OUT/log.jsonl`` (+ TensorBoard when available) on rank 0; a no-op elsewhere.

    A fresh run (``resume_step`` None) starts an empty log; a resumed one keeps the records up to its
    checkpoint's step and drops what a killed run logged after it.
    """

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
        """Append one record (and its scalars to TensorBoard)."""
        if not self._fh:
            return
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()
        if self.tb is not None and "loss" in record:
            for key in TENSORBOARD_KEYS:
                if record.get(key) is not None:
                    self.tb.add_scalar(f"train/{key}", record[key], record["step"])

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        if self.tb is not None:
            self.tb.close()


def read_log(out: str | os.PathLike, name: str = LOG_FILE) -> list[dict]:
    """The records of ``OUT/log.jsonl`` (or ``OUT/name``: a shipped model's ``training_log.jsonl``), in order
    (start, loss windows, evaluations, checkpoints, end)."""
    path = Path(out) / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_windows(records: list[dict], after_step: int = 0) -> list[dict]:
    """The loss windows of a run's records (:func:`read_log`) that end after step ``after_step``: leave out the
    first steps to time a run without its compile and warm-up."""
    return [r for r in records if "loss" in r and r["step"] > after_step]


def throughput(windows: list[dict], tokens_per_step: int) -> float:
    """Tokens per second over ``windows`` (:func:`loss_windows`) of a run with ``tokens_per_step``."""
    return sum(r["window_steps"] for r in windows) * tokens_per_step / sum(r["window_seconds"] for r in windows)


@dataclass(frozen=True)
class ModelFlops:
    """The model's size and training cost per token, and the peak that MFU divides by (None: no MFU)."""

    n_params: int
    n_matmul: int
    """``N`` of :data:`probekit.train.flops.FORMULA`."""
    n_layer: int
    d_model: int
    per_token: int
    device_name: str | None
    peak_tflops: float | None

    @classmethod
    def measure(
        cls, model, context: int, device: torch.device, dtype: str, peak_tflops: float | None = None
    ) -> ModelFlops:
        """Count ``model``'s parameters for windows of ``context`` tokens; the peak is ``peak_tflops`` or the
        known bf16 peak of the GPU (:func:`probekit.train.flops.default_peak_tflops`)."""
        n_matmul = flops_mod.matmul_params(model)
        n_layer, d_model = flops_mod.model_shape(model)
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        return cls(
            n_params=sum(t.numel() for t in model.parameters()),
            n_matmul=n_matmul,
            n_layer=n_layer,
            d_model=d_model,
            per_token=flops_mod.flops_per_token(n_matmul, n_layer, d_model, context),
            device_name=device_name,
            peak_tflops=peak_tflops or flops_mod.default_peak_tflops(device.type, device_name, dtype),
        )

    def mfu(self, tokens_per_s: float, world_size: int) -> float | None:
        return flops_mod.mfu(self.per_token, tokens_per_s, self.peak_tflops, world_size)


class TrainClock:
    """The seconds of a run: ``elapsed`` in this process, and ``train_seconds`` over every resume with the
    learning-curve evaluations left out."""

    def __init__(self, before: float = 0.0):
        self.before = before  # training seconds of the processes before this one (from the checkpoint)
        self.start = time.perf_counter()
        self.eval_seconds = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def train_seconds(self) -> float:
        return self.before + time.perf_counter() - self.start - self.eval_seconds


class Metrics:
    """The sums of the current logging window on this rank, and the run's problem counters.

    Per micro-batch :meth:`add_micro_batch`, per step :meth:`add_step` (device tensors, no sync);
    :meth:`record` sums the window over the ranks, reads it once and returns the log record of the window.
    """

    def __init__(
        self,
        env: DistEnv,
        device: torch.device,
        flops: ModelFlops,
        tokens_per_step: int,
        clock: TrainClock,
        wait_seconds: float,
        totals: dict,
        count_problems: bool,
    ):
        self.env, self.device, self.flops, self.clock = env, device, flops, clock
        self.tokens_per_step = tokens_per_step
        self.count_problems = count_problems  # fresh problems: log the problems used and dropped so far
        self.problems = float(totals.get("problems", 0))
        self.dropped = float(totals.get("dropped", 0))
        self.loss = torch.zeros((), device=device)
        self.solution = torch.zeros(2, device=device)  # summed loss and count of the solution targets
        self._reset(wait_seconds)

    def _reset(self, wait_seconds: float) -> None:
        self.loss.zero_()
        self.solution.zero_()
        self.counts = [0, 0]  # problems used, dropped (host ints from the loader)
        self.steps = 0
        self.start = time.perf_counter()
        self.wait_start = wait_seconds

    def add_micro_batch(self, parts) -> None:
        """Add a micro-batch's solution-target loss (a :class:`probekit.train.objective.LossParts`)."""
        self.solution += torch.stack([parts.solution_sum, parts.solution_count.to(parts.solution_sum.dtype)])

    def add_step(self, loss: torch.Tensor, batch_stats: dict) -> None:
        """Add a step's mean loss (device scalar) and the loader's counters of its batch."""
        self.loss += loss
        if "problems" in batch_stats:
            self.counts[0] += batch_stats["problems"]
            self.counts[1] += batch_stats["dropped"]
        self.steps += 1

    def pause(self, seconds: float) -> None:
        """Leave ``seconds`` (an evaluation) out of the window's time: tokens/s counts training time only."""
        self.start += seconds

    def record(self, step: int, lr: float, grad_norm, wait_seconds: float) -> dict:
        """The log record of the window ending at ``step`` (the one host sync of the window), then a new window.

        ``wait_seconds``: the loader's total wait so far (``data_wait_fraction`` is the window's share).
        """
        counts = torch.tensor(self.counts, dtype=torch.float64).to(self.device)
        packed = torch.cat([self.loss.double().reshape(1), counts, self.solution.double()])
        reduce_sum(packed, self.env)
        packed[0] /= self.env.world_size  # the mean loss of the ranks (exact for one)
        values = packed.tolist()
        now = time.perf_counter()
        seconds = now - self.start
        loss = values[0] / self.steps
        self.problems += values[1]
        self.dropped += values[2]
        tokens_per_s = self.steps * self.tokens_per_step / seconds if seconds > 0 else 0.0
        record = {
            "step": step,
            "loss": loss,
            "solution_loss": values[3] / values[4] if values[4] else None,
            "lr": lr,
            "tokens": step * self.tokens_per_step,
            "tokens_per_s": tokens_per_s,
            "mfu": self.flops.mfu(tokens_per_s, self.env.world_size),
            "data_wait_fraction": (wait_seconds - self.wait_start) / seconds if seconds > 0 else 0.0,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "step_time_s": seconds / self.steps,
            "window_steps": self.steps,
            "window_seconds": seconds,
            "elapsed_s": now - self.clock.start,
            "train_seconds": self.clock.train_seconds(),
        }
        if self.count_problems:
            record["problems"] = int(self.problems)
            record["dropped_too_long"] = int(self.dropped)
        self._reset(wait_seconds)
        return record
