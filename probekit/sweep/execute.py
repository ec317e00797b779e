"""Running jobs: one job in this process (:func:`run_job`), many on local workers or a cluster (:func:`run_jobs`).

A job calls the library function of its kind (:mod:`probekit.sweep.runners`: the same code path as the command
line) in-process, with its files in ``DIR/work/<job_id>/`` (training runs: ``DIR/train/<job_id>/``) and its
stdout/stderr in ``log.txt`` there, headed by the equivalent ``probekit`` command; the rows the function returns
are stored with the job and checkpoint columns (:mod:`probekit.sweep.store`).

Executors: ``local`` runs one worker per GPU (``CUDA_VISIBLE_DEVICES`` pinned per worker) or, on CPU, the given
number of worker processes (1 = this process); ``submitit`` submits every job to Slurm (or submitit's
``local`` / ``debug`` clusters). Training jobs finish before the jobs on their checkpoints start; a job whose
training failed is skipped. A failed job is recorded in ``DIR/failed/`` and retried by the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol

from probekit.sweep.jobs import Job
from probekit.sweep.runners import job_rows, job_spec
from probekit.sweep.store import ResultsStore

MERGE_EVERY_S = 30.0


class JobFailed(RuntimeError):
    """A job did not succeed; the message says why and where its log is."""


# ---------------------------------------------------------------------------- one job
def checkpoint_folder(job: Job, store: ResultsStore, written: bool = False) -> Path | None:
    """The checkpoint a job reads (a folder of the sweep, or the final checkpoint of the training run it
    depends on; None for a training run from scratch) or, with ``written``, the one a train job wrote."""
    if "path" in job.source:
        return Path(job.source["path"])
    train_id = job.job_id if written else job.depends_on
    if train_id is None:
        return None
    from probekit.checkpoint import latest_checkpoint

    folder = latest_checkpoint(store.train_dir(train_id))
    if folder is None:
        raise JobFailed(f"training job {train_id} left no checkpoint in {store.train_dir(train_id)}")
    return folder


def job_output(job: Job, store: ResultsStore) -> Path:
    return store.train_dir(job.job_id) if job.kind == "train" else store.work_dir(job.job_id)


def run_job(job: Job, results_dir: str | Path, device: str | None = None, sweep: str = "") -> int:
    """Run one job and store its rows; returns the number of rows. Raises :class:`JobFailed`."""
    import shutil

    store = ResultsStore(results_dir)
    out = job_output(job, store)
    if job.kind != "train" and out.exists():
        shutil.rmtree(out)  # leftovers of a killed run; training resumes instead
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = checkpoint_folder(job, store)
    log_path = out / "log.txt"
    with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"$ {job.command(checkpoint, out, device)}", flush=True)
        failure: str | None
        try:
            rows = job_rows(job, job_spec(job, checkpoint, out, device))
        except Exception as err:  # noqa: BLE001 - the job fails with the traceback in its log
            traceback.print_exc()
            failure = f"{type(err).__name__}: {err}".splitlines()[0]
        else:
            failure = None
            _log_rows(rows)
    if failure is not None:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-20:])
        raise JobFailed(f"{job.job_id}: {job.kind} job failed ({failure}); log {log_path}:\n{tail}")
    if job.kind == "train":
        checkpoint = checkpoint_folder(job, store, written=True)
    info = {
        "job_id": job.job_id,
        "kind": job.kind,
        "sweep": sweep,
        "checkpoint": job.checkpoint,
        **checkpoint_info(str(checkpoint)),
        "revision": revision(),
        "job_config": json.dumps(job.to_dict(), sort_keys=True),
        "model": job.params.get("model", "pretrained"),
    }
    # the job's columns win over the function's own (e.g. its ``checkpoint`` path becomes the sweep label)
    store.write_job(job.job_id, [{**info, **{k: v for k, v in row.items() if k not in info}} for row in rows])
    return len(rows)


LOG_COLUMNS = (
    "model",
    "set",
    "task",
    "analysis",
    "group",
    "true_label",
    "layer",
    "distance",
    "step",
    "loss",
    "n",
    "accuracy",
    "ci_low",
    "ci_high",
)
"""The columns of a job's rows shown in its log (those it has)."""


def _log_rows(rows: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    shown = frame[[c for c in LOG_COLUMNS if c in frame]]
    table = shown.to_string(index=False, float_format=lambda x: f"{x:.4f}") if len(shown.columns) else ""
    print(f"\n{len(rows)} rows" + (f":\n{table}" if table else ""))


@cache
def checkpoint_info(folder: str) -> dict:
    """``checkpoint_path``, ``checkpoint_sha256`` (of model.safetensors), ``arch``, ``n_layer``, ``d_model``,
    ``n_params`` (from the safetensors header) and what it was trained on (``train_preset``, ``train_max_op``,
    ``train_n_problems`` (None: unlimited fresh problems), ``train_resample``, ``train_init_from``,
    ``train_tokens``), read from its ``probekit.json``."""
    from probekit.checkpoint import provenance_value, read_provenance
    from probekit.igsm.presets import PRESETS

    path = Path(folder)
    weights = path / "model.safetensors"
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    config = json.loads((path / "config.json").read_text())
    provenance = read_provenance(path)
    data = (provenance.get("training_config") or {}).get("data") or {}
    return {
        "checkpoint_path": str(path),
        "checkpoint_sha256": digest.hexdigest(),
        "arch": {"gpt_neox": "gpt2"}.get(config.get("model_type"), config.get("model_type")),
        "n_layer": config.get("num_hidden_layers"),
        "d_model": config.get("hidden_size"),
        "n_params": _n_params(weights),
        "train_preset": provenance_value(provenance, "preset", tuple(PRESETS)),
        "train_max_op": (provenance.get("data_preset") or {}).get("max_op"),
        "train_n_problems": data.get("n_problems"),
        "train_resample": data.get("resample", "none"),
        "train_init_from": provenance.get("init_from"),
        "train_tokens": provenance.get("tokens_seen"),
    }


def _n_params(weights: Path) -> int:
    import math

    with open(weights, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


@lru_cache(maxsize=1)
def revision() -> str:
    """``<package version>+<git revision>`` (``+unknown`` outside a git checkout)."""
    from probekit import __version__
    from probekit.modeling import git_revision

    return f"{__version__}+{git_revision() or 'unknown'}"


# ---------------------------------------------------------------------------- many jobs
@dataclass
class RunSummary:
    """What a :func:`run_jobs` call did."""

    total: int
    already_done: int
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "jobs": self.total,
            "already_done": self.already_done,
            "finished": len(self.finished),
            "failed": self.failed,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
        }


class _Pending(Protocol):
    """A submitted job: a ``concurrent.futures.Future`` (local executors) or a ``submitit.Job``."""

    def done(self) -> bool: ...

    def result(self) -> Any: ...


def _run_now(fn, *args) -> Future[Any]:
    """Run ``fn(*args)`` in this process; the outcome (result or exception) comes back as a finished future."""
    future: Future[Any] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as err:  # noqa: BLE001 - delivered through result()
        future.set_exception(err)
    return future


def run_jobs(
    jobs: list[Job],
    results_dir: str | Path,
    *,
    device: str | None = None,
    sweep: str = "",
    executor: str = "local",
    workers: int | None = None,
    cluster: dict | None = None,
    progress: bool = True,
    sweep_jobs: list[str] | None = None,
) -> RunSummary:
    """Run the unfinished ``jobs`` (see the module docstring); merges ``results.parquet`` as they finish, from
    the finished jobs among ``sweep_jobs`` (the ids of the whole sweep; default: ``jobs``)."""
    from tqdm import tqdm

    store = ResultsStore(results_dir)
    members = sweep_jobs if sweep_jobs is not None else [j.job_id for j in jobs]
    done = store.finished()
    pending = [j for j in jobs if j.job_id not in done]
    summary = RunSummary(total=len(jobs), already_done=len(jobs) - len(pending))
    start = time.perf_counter()
    submit, shutdown, capacity = _executor(executor, results_dir, device, sweep, workers, cluster or {})
    waiting = {j.job_id: j for j in pending}
    running: dict[str, _Pending] = {}
    last_merge = time.perf_counter()
    bar = tqdm(total=len(pending), unit="job", desc="sweep", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        while waiting or running:
            for job_id, job in list(waiting.items()):
                dep = job.depends_on
                if dep in summary.failed or dep in summary.skipped:
                    summary.skipped[job_id] = f"training job {dep} did not finish"
                    del waiting[job_id]
                    bar.update()
                elif len(running) < capacity and (dep is None or dep in done or dep in summary.finished):
                    bar.set_postfix_str(job_id, refresh=True)
                    running[job_id] = submit(job)
                    del waiting[job_id]
            finished = [job_id for job_id, fut in running.items() if fut.done()]
            if not finished:
                time.sleep(0.2)
                continue
            for job_id in finished:
                try:
                    running.pop(job_id).result()
                    summary.finished.append(job_id)
                except Exception as err:  # noqa: BLE001 - recorded, the sweep goes on
                    message = str(err) if isinstance(err, JobFailed) else "".join(traceback.format_exception(err))
                    summary.failed[job_id] = message.splitlines()[0] if message else type(err).__name__
                    store.write_failure(job_id, message)
                    bar.write(f"probekit run: job {job_id} failed: {summary.failed[job_id]}", file=sys.stderr)
                bar.update()
            if time.perf_counter() - last_merge > MERGE_EVERY_S:
                store.merge(members)
                last_merge = time.perf_counter()
    finally:
        bar.close()
        shutdown()
        store.merge(members)
    summary.seconds = time.perf_counter() - start
    return summary


def _executor(kind: str, results_dir, device, sweep, workers, cluster):
    """``(submit(job) -> future, shutdown(), capacity)`` for an executor kind; ``capacity`` is the number of
    jobs in flight at once."""
    args = (str(results_dir), device, sweep)
    if kind == "submitit":
        return _submitit(args, cluster)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}: use local or submitit")
    gpus = _gpu_count() if device in (None, "cuda") else 0
    workers = workers or max(gpus, 1)
    if workers == 1:
        return (lambda job: _run_now(run_job, job, *args)), (lambda: None), 1
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for i in range(workers):
        slots.put(str(i % gpus) if gpus else None)
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(slots, threads))
    return (lambda job: pool.submit(run_job, job, *args)), (lambda: pool.shutdown(cancel_futures=True)), workers


def _gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _init_worker(slots, threads: int) -> None:
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _submitit(args, cluster: dict):
    try:
        import submitit
    except ImportError:
        raise ValueError("--executor submitit needs submitit: pip install 'probekit-igsm[cluster]'") from None
    folder = Path(args[0]) / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster.pop("cluster", None))
    executor.update_parameters(**{k: v for k, v in cluster.items() if v is not None})
    return (lambda job: executor.submit(run_job, job, *args)), (lambda: None), float("inf")
