"""Processes and devices of a run: one code path from a 2-core CPU to several nodes of GPUs.

``torchrun`` (or any launcher) sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (:class:`DistEnv`; a single process
without them). Rank ``r`` trains on ``cuda:LOCAL_RANK`` (:func:`training_device`); with several processes,
:func:`process_group` starts NCCL (CUDA) or gloo (CPU). Collectives go through :func:`gather` and
:func:`reduce_sum`, which are no-ops for a single process. On CPU, :func:`share_cpu` sets torch's threads.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from probekit.checkpoint import select_device
from probekit.train.config import ConfigError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: its rank among ``world_size`` processes and its GPU on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistEnv:
        """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the environment (0 / 1 / 0 when unset)."""

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
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def say(self, message: str, bar=None) -> None:
        """Print ``message`` on stderr from rank 0 (through the progress bar ``bar`` when there is one)."""
        if not self.main:
            return
        if bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)


def training_device(run_device: str, env: DistEnv) -> torch.device:
    """The device of this rank for ``run.device`` (``cuda``: ``cuda:LOCAL_RANK``); a bad value is a ConfigError."""
    try:
        run_device = select_device(run_device)
    except ValueError as err:
        raise ConfigError(f"run.device: {err}") from None
    if run_device.startswith("cuda"):
        index = env.local_rank if run_device == "cuda" else int(run_device.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK / cuda index {index} but only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    return torch.device("cpu")


def setup_device(device: torch.device, dtype: str, tf32: bool) -> None:
    """Make ``device`` current and check that it runs ``dtype``; ``tf32``: TF32 matmuls in fp32 (CUDA only)."""
    if device.type != "cuda":
        return
    torch.cuda.set_device(device)
    if dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("run.dtype bf16 is not supported by this GPU; use run.dtype=fp32")
    if tf32:
        torch.set_float32_matmul_precision("high")


@contextlib.contextmanager
def process_group(env: DistEnv, device: torch.device) -> Iterator[None]:
    """The default process group for the duration of the block (NCCL on CUDA, gloo on CPU) when the run has
    several processes and none is started yet; it is destroyed on the way out.

    ``torch.distributed.nn.functional`` is imported before the group starts: DDP imports it, and its functions'
    default arguments capture ``group.WORLD`` at import, which would keep the group alive after it is destroyed.
    A gloo group left alive that way could abort a rank at interpreter exit ("terminate called without an
    active exception", seen in about 1 of 5 two-rank runs when the other rank was still busy)."""
    import torch.distributed as dist
    import torch.distributed.nn.functional  # noqa: F401  (before init_process_group, see above)

    started = False
    if env.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        started = True
    try:
        yield
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()


def gather(obj, env: DistEnv) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` for a single process)."""
    if not env.distributed:
        return [obj]
    import torch.distributed as dist

    objects: list = [None] * env.world_size
    dist.all_gather_object(objects, obj)
    return objects


def reduce_sum(tensor: torch.Tensor, env: DistEnv) -> None:
    """Sum ``tensor`` over the ranks, in place (nothing to do for a single process)."""
    if env.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor)


def check_same_start(step: int, env: DistEnv) -> None:
    """Every rank must continue from the same step (with several nodes: ``run.out`` on a shared disk)."""
    starts = gather(step, env)
    if len(set(starts)) > 1:
        raise RuntimeError(
            f"the ranks start from different steps {starts}: with several nodes, run.out must be on a "
            "filesystem every node sees"
        )


def share_cpu(device: torch.device, workers: int, threads: int | None = None) -> None:
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
