"""Running jobs: one job in this process (:func:`run_job`), many on local workers or a cluster (:func:`run_jobs`).

A job calls the library function of its kind (:mod:`probekit.sweep.runners`: the same code path as the command
line) in-process, with its files in ``DIR/work/<job_id>/`` (training runs: ``DIR/train/<job_id>/``) and its
stdout/stderr in ``log.txt`` there, headed by the equivalent ``probekit`` command; the rows the function returns
are stored with the job and checkpoint columns (:mod:`probekit.sweep.store`).

Executors: ``local`` runs one worker per GPU (``CUDA_VISIBLE_DEVICES`` pinned per worker) or, on CPU, the given
number of worker processes (1 = this process); ``submitit`` submits every job to Slurm (or submitit's
``local`` / ``debug`` clusters). Training jobs finish before the jobs on their checkpoints start; a job whose
training failed is skipped. A failed job is recorded in ``DIR/failed/`` and retried by the next run.

Whether a job is finished is decided when its inputs are ready (a job on a checkpoint that a training job of
the sweep writes: once that job is finished), from the content of what it reads
(:func:`probekit.sweep.inputs.job_inputs`, :meth:`ResultsStore.state <probekit.sweep.store.ResultsStore.state>`):
a job whose rows came from other inputs (a checkpoint retrained or overwritten) runs again, its old rows set
aside (:meth:`ResultsStore.retire <probekit.sweep.store.ResultsStore.retire>`) and listed in
:attr:`RunSummary.replaced`. A training run whose inputs changed starts afresh instead of resuming.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from probekit.records import write_atomic
from probekit.sweep.inputs import Inputs, file_sha256, job_inputs
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


def inputs_of(job: Job, store: ResultsStore) -> Inputs:
    """The :class:`~probekit.sweep.inputs.Inputs` of ``job`` as they are now (raises :class:`JobFailed` when
    something it reads is missing)."""
    try:
        return job_inputs(job, checkpoint_folder(job, store))
    except (OSError, ValueError) as err:
        raise JobFailed(f"{job.job_id}: cannot read its inputs: {err}") from None


TRAIN_INPUTS = "inputs.json"
"""The file in a training run's folder naming the inputs it started from."""


def run_job(
    job: Job, results_dir: str | Path, device: str | None = None, sweep: str = "", inputs: Inputs | None = None
) -> int:
    """Run one job and store its rows with the record of its ``inputs`` (None: fingerprinted here); returns
    the number of rows. Raises :class:`JobFailed`."""
    import shutil

    store = ResultsStore(results_dir)
    if inputs is None:
        inputs = inputs_of(job, store)
    inputs.remember()
    out = job_output(job, store)
    marker = out / TRAIN_INPUTS
    if job.kind != "train" and out.exists():
        shutil.rmtree(out)  # leftovers of a killed run; training resumes instead
    elif out.exists() and marker.exists() and json.loads(marker.read_text()).get("digest") != inputs.digest:
        shutil.rmtree(out)  # a run from other inputs (e.g. the checkpoint it fine-tunes was retrained)
    out.mkdir(parents=True, exist_ok=True)
    if job.kind == "train":
        write_atomic(marker, json.dumps(inputs.to_dict(), indent=1) + "\n")
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
    replaced = store.replacement_of(job.job_id, inputs.digest)
    info = {
        "job_id": job.job_id,
        "kind": job.kind,
        "sweep": sweep,
        "checkpoint": job.checkpoint,
        **checkpoint_info(str(checkpoint)),
        "inputs_sha256": inputs.digest,
        "replaces": None if replaced is None else json.dumps(_replaces(replaced), sort_keys=True),
        "revision": revision(),
        "job_config": json.dumps(job.to_dict(), sort_keys=True),
        "model": job.params.get("model", "pretrained"),
    }
    # the job's columns win over the function's own (e.g. its ``checkpoint`` path becomes the sweep label)
    rows = [{**info, **{k: v for k, v in row.items() if k not in info}} for row in rows]
    store.write_job(job.job_id, rows, inputs.to_dict())
    return len(rows)


def _replaces(record: dict) -> dict:
    """The ``replaces`` column of rows that replaced others: what :meth:`ResultsStore.retire` recorded."""
    keys = ("old_inputs_sha256", "old_checkpoint_sha256", "changed", "at", "old_rows")
    return {k: record.get(k) for k in keys}


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


def checkpoint_info(folder: str) -> dict:
    """``checkpoint_path``, ``checkpoint_sha256`` (of model.safetensors), ``arch``, ``n_layer``, ``d_model``,
    ``n_params`` (from the safetensors header) and what it was trained on (``train_preset``: the family as
    training names it, e.g. ``med-op4-ip12``, None when its provenance names none; ``train_max_op``,
    ``train_n_problems`` (None: unlimited fresh problems), ``train_resample``, ``train_init_from``,
    ``train_tokens``), read from its ``probekit.json``; read again when one of those files changed."""
    path = Path(folder)
    stamp = tuple(
        (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        for st in (
            (path / name).stat() if (path / name).exists() else os.stat_result((0,) * 10)
            for name in ("model.safetensors", "config.json", "probekit.json")
        )
    )
    return dict(_checkpoint_info(folder, stamp))


@lru_cache(maxsize=256)
def _checkpoint_info(folder: str, stamp: tuple) -> dict:
    from probekit.checkpoint import provenance_value, read_provenance, training_family
    from probekit.igsm.presets import PRESETS, resolve_preset

    path = Path(folder)
    weights = path / "model.safetensors"
    config = json.loads((path / "config.json").read_text())
    provenance = read_provenance(path)
    data = (provenance.get("training_config") or {}).get("data") or {}
    family = (
        resolve_preset(training_family(provenance)[0])
        if provenance_value(provenance, "preset", tuple(PRESETS))
        else None
    )
    return {
        "checkpoint_path": str(path),
        "checkpoint_sha256": file_sha256(weights),
        "arch": {"gpt_neox": "gpt2"}.get(config.get("model_type"), config.get("model_type")),
        "n_layer": config.get("num_hidden_layers"),
        "d_model": config.get("hidden_size"),
        "n_params": _n_params(weights),
        "train_preset": family.name if family else None,
        "train_max_op": family.max_op if family else None,
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
    already_done: int = 0
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    replaced: list[dict] = field(default_factory=list)
    """The records of :meth:`ResultsStore.retire <probekit.sweep.store.ResultsStore.retire>`: jobs whose rows
    were set aside because their inputs changed (``rerun``: whether this run redoes them)."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "jobs": self.total,
            "already_done": self.already_done,
            "finished": len(self.finished),
            "failed": self.failed,
            "skipped": self.skipped,
            "replaced": self.replaced,
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
    sweep_jobs: list[Job] | None = None,
) -> RunSummary:
    """Run the unfinished ``jobs`` (see the module docstring); merges ``results.parquet`` as they finish, from
    the finished jobs among ``sweep_jobs`` (the whole sweep; default: ``jobs``). A job of ``sweep_jobs`` not
    among ``jobs`` whose inputs changed has its rows set aside too (without running it), so that
    ``results.parquet`` never mixes in rows of inputs that are gone."""
    from tqdm import tqdm

    store = ResultsStore(results_dir)
    everyone = sweep_jobs if sweep_jobs is not None else jobs
    members = [j.job_id for j in everyone]
    ids = {j.job_id for j in jobs}
    stored = store.finished()
    summary = RunSummary(total=len(jobs))
    start = time.perf_counter()
    submit, shutdown, capacity = _executor(executor, results_dir, device, sweep, workers, cluster or {})
    waiting = {j.job_id: j for j in jobs}
    ready: dict[str, Inputs] = {}  # checked and not finished: the inputs it runs on
    settled: set[str] = set()  # finished before (inputs unchanged) or now: their checkpoints are final
    running: dict[str, _Pending] = {}
    last_merge = time.perf_counter()
    bar = tqdm(total=len(jobs), unit="job", desc="sweep", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def fail(job_id: str, err: BaseException) -> None:
        message = str(err) if isinstance(err, JobFailed) else "".join(traceback.format_exception(err))
        summary.failed[job_id] = message.splitlines()[0] if message else type(err).__name__
        store.write_failure(job_id, message)
        bar.write(f"probekit run: job {job_id} failed: {summary.failed[job_id]}", file=sys.stderr)
        bar.update()

    try:
        while waiting or running:
            for job_id, job in list(waiting.items()):
                dep = job.depends_on
                if dep in summary.failed or dep in summary.skipped or (dep and dep not in ids and dep not in stored):
                    summary.skipped[job_id] = f"training job {dep} did not finish"
                    del waiting[job_id]
                    bar.update()
                    continue
                if dep is not None and dep in ids and dep not in settled:
                    continue  # its checkpoint is not final yet: its inputs are known once the training job is
                if job_id not in ready:
                    try:
                        inputs, state = _settle(job, store, summary)
                    except JobFailed as err:
                        del waiting[job_id]
                        fail(job_id, err)
                        continue
                    if state == "done":
                        summary.already_done += 1
                        settled.add(job_id)
                        del waiting[job_id]
                        bar.total -= 1  # the bar counts the jobs that run
                        bar.refresh()
                        continue
                    ready[job_id] = inputs
                if len(running) < capacity:
                    bar.set_postfix_str(job_id, refresh=True)
                    running[job_id] = submit(job, ready.pop(job_id))
                    del waiting[job_id]
            finished = [job_id for job_id, fut in running.items() if fut.done()]
            if not finished:
                if running:
                    time.sleep(0.2)
                continue
            for job_id in finished:
                try:
                    running.pop(job_id).result()
                except Exception as err:  # noqa: BLE001 - recorded, the sweep goes on
                    fail(job_id, err)
                else:
                    summary.finished.append(job_id)
                    settled.add(job_id)
                    bar.update()
            if time.perf_counter() - last_merge > MERGE_EVERY_S:
                store.merge(members)
                last_merge = time.perf_counter()
        for job in everyone:  # the sweep's other jobs: set aside rows of inputs that changed
            dep = job.depends_on
            if job.job_id in ids or job.job_id not in stored or dep in summary.failed or dep in summary.skipped:
                continue
            with contextlib.suppress(JobFailed):
                _settle(job, store, summary, rerun=False)
    finally:
        bar.close()
        shutdown()
        store.merge(members)
    summary.seconds = time.perf_counter() - start
    return summary


def _settle(job: Job, store: ResultsStore, summary: RunSummary, rerun: bool = True) -> tuple[Inputs, str]:
    """Fingerprint ``job``'s inputs and compare them with its stored rows': ``(inputs, "done")`` when they are
    the same (rows stored before inputs were fingerprinted that fit them get the fingerprint), else
    ``(inputs, "todo")``, after setting aside rows of other inputs (recorded in ``summary.replaced``)."""
    inputs = inputs_of(job, store)
    record = inputs.to_dict()
    state = store.state(job.job_id, job.kind, record)
    if state == "legacy":
        store.adopt(job.job_id, record)
        folder = job_output(job, store)
        if job.kind == "train" and folder.is_dir() and not (folder / TRAIN_INPUTS).exists():
            write_atomic(folder / TRAIN_INPUTS, json.dumps(record, indent=1) + "\n")
        return inputs, "done"
    if state == "changed":
        stored = store.stored_inputs(job.job_id)
        changed = inputs.changed(stored) if stored else ["checkpoint/model.safetensors"]
        summary.replaced.append(store.retire(job.job_id, job.kind, job.checkpoint, record, changed, rerun))
        return inputs, "todo"
    return inputs, state


def job_state(job: Job, store: ResultsStore) -> str:
    """Whether ``job`` is finished, changing nothing: ``done``, ``changed`` (rows of other inputs, which a run
    sets aside) or ``todo`` (no rows, or its inputs are not there yet)."""
    try:
        inputs = inputs_of(job, store)
    except JobFailed:
        return "todo"
    state = store.state(job.job_id, job.kind, inputs.to_dict())
    return "done" if state == "legacy" else state


def _executor(kind: str, results_dir, device, sweep, workers, cluster):
    """``(submit(job, inputs) -> future, shutdown(), capacity)`` for an executor kind; ``capacity`` is the number of
    jobs in flight at once."""
    args = (str(results_dir), device, sweep)
    if kind == "submitit":
        return _submitit(args, cluster)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}: use local or submitit")
    gpus = _gpu_count() if device in (None, "cuda") else 0
    workers = workers or max(gpus, 1)
    if workers == 1:
        return (lambda job, inputs: _run_now(run_job, job, *args, inputs)), (lambda: None), 1
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for i in range(workers):
        slots.put(str(i % gpus) if gpus else None)
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(slots, threads))
    return (
        (lambda job, inputs: pool.submit(run_job, job, *args, inputs)),
        (lambda: pool.shutdown(cancel_futures=True)),
        workers,
    )


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
    return (lambda job, inputs: executor.submit(run_job, job, *args, inputs)), (lambda: None), float("inf")
