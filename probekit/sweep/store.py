"""The results store: one parquet file per finished job, merged into ``DIR/results.parquet``.

Layout of a results directory::

    DIR/results.parquet        every row of every finished job of the sweep (merged; rewritten atomically)
    DIR/jobs/<job_id>.parquet  the rows of one finished job (written atomically when the job succeeds)
    DIR/jobs.json              the expanded job list of the last ``probekit run``
    DIR/failed/<job_id>.txt    why a job failed (removed when it later succeeds)
    DIR/work/<job_id>/         what the job wrote (records, probes, tables) and its log
    DIR/train/<job_id>/        training runs (resumable: a killed run continues from its last checkpoint)

A job is finished exactly when its ``jobs/<job_id>.parquet`` exists, so a sweep killed at any moment and
started again skips what is finished, redoes what is not, and never holds a job's rows twice.

Every row carries: ``job_id``, ``kind``, ``sweep``, ``checkpoint`` (label), ``checkpoint_path``,
``checkpoint_sha256`` (of ``model.safetensors``), ``revision`` (package version + git revision),
``job_config`` (the job's settings as JSON), ``model`` (pretrained | random-init), the checkpoint's shape
(``arch``, ``n_layer``, ``d_model``, ``n_params``) and training data (``train_preset``, ``train_max_op``,
``train_n_problems``, ``train_resample``, ``train_init_from``, ``train_tokens``), then the columns of the job's
own result (see :mod:`probekit.sweep.runners`). Nested values are stored as JSON strings.
"""

from __future__ import annotations

import json
from pathlib import Path

from probekit.records import atomic_output, write_atomic

RESULTS_FILE = "results.parquet"


class ResultsStore:
    """A results directory (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.failed_dir = self.root / "failed"

    @property
    def results_path(self) -> Path:
        return self.root / RESULTS_FILE

    def work_dir(self, job_id: str) -> Path:
        return self.root / "work" / job_id

    def train_dir(self, job_id: str) -> Path:
        return self.root / "train" / job_id

    def finished(self) -> set[str]:
        """The ids of the finished jobs."""
        return {p.stem for p in self.jobs_dir.glob("*.parquet")} if self.jobs_dir.exists() else set()

    def write_job(self, job_id: str, rows: list[dict]) -> Path:
        """Store a finished job's rows (atomically: the job counts as finished once this returns)."""
        path = self.jobs_dir / f"{job_id}.parquet"
        _write_parquet(table(rows), path)
        (self.failed_dir / f"{job_id}.txt").unlink(missing_ok=True)
        return path

    def write_failure(self, job_id: str, message: str) -> Path:
        path = self.failed_dir / f"{job_id}.txt"
        write_atomic(path, message.rstrip() + "\n")
        return path

    def failures(self) -> dict[str, str]:
        if not self.failed_dir.exists():
            return {}
        return {p.stem: p.read_text() for p in sorted(self.failed_dir.glob("*.txt"))}

    def write_jobs(self, jobs: list[dict]) -> None:
        write_atomic(self.root / "jobs.json", json.dumps(jobs, indent=1) + "\n")

    def missing_jobs(self) -> list[dict]:
        """The jobs of the last ``probekit run`` (``jobs.json``) that have no rows: ``job_id``, ``kind``,
        ``checkpoint``, ``reason`` (the first line of its failure, else "not run yet") and ``log`` (its log file)."""
        path = self.root / "jobs.json"
        if not path.exists():
            return []
        finished, failures = self.finished(), self.failures()
        missing = []
        for job in json.loads(path.read_text()):
            job_id = job["job_id"]
            if job_id in finished:
                continue
            folder = self.train_dir(job_id) if job["kind"] == "train" else self.work_dir(job_id)
            failure = failures.get(job_id, "").strip()
            missing.append(
                {
                    "job_id": job_id,
                    "kind": job["kind"],
                    "checkpoint": job.get("checkpoint"),
                    "reason": failure.splitlines()[0] if failure else "not run yet (or still running)",
                    "log": str(folder / "log.txt"),
                }
            )
        return missing

    def job_rows(self, job_id: str):
        import pandas as pd

        return pd.read_parquet(self.jobs_dir / f"{job_id}.parquet")

    def merge(self, job_ids=None) -> Path:
        """Rewrite ``results.parquet`` from the finished jobs' files (in job-id order): those of ``job_ids`` (the
        jobs of the sweep; files of jobs a changed config no longer has stay in ``jobs/`` but are left out), or
        every file when None."""
        import pandas as pd

        files = sorted(self.jobs_dir.glob("*.parquet")) if self.jobs_dir.exists() else []
        if job_ids is not None:
            keep = set(job_ids)
            files = [f for f in files if f.stem in keep]
        frames = [pd.read_parquet(f) for f in files]
        frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if frames else pd.DataFrame()
        _write_parquet(_uniform(frame), self.results_path)
        return self.results_path

    def read(self):
        """The merged table (a DataFrame); raises FileNotFoundError when nothing was merged yet."""
        import pandas as pd

        if not self.results_path.exists():
            raise FileNotFoundError(f"no results store at {self.root} (no {RESULTS_FILE})")
        return pd.read_parquet(self.results_path)


def table(rows: list[dict]):
    """A DataFrame of result rows; dict and list values become JSON strings."""
    import pandas as pd

    flat = [
        {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v for k, v in r.items()}
        for r in rows
    ]
    return _uniform(pd.DataFrame(flat))


def _uniform(frame):
    """Object columns holding values of several types (e.g. int and str layers) become strings, so parquet can
    store them."""
    for column in frame.columns:
        if frame[column].dtype == object:
            types = {type(v) for v in frame[column] if v is not None and v == v}
            if len(types) > 1:
                frame[column] = frame[column].map(lambda v: v if v is None or v != v else str(v))
    return frame


def _write_parquet(frame, path: Path) -> None:
    with atomic_output(path, binary=True) as fh:
        frame.to_parquet(fh, index=False)
