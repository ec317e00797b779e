"""The results store: one parquet file per finished job, merged into ``DIR/results.parquet``.

Layout of a results directory::

    DIR/results.parquet        every row of every finished job of the sweep (merged; rewritten atomically)
    DIR/jobs/<job_id>.parquet  the rows of one finished job, with the fingerprint of its inputs (written
                               atomically when the job succeeds)
    DIR/jobs.json              the expanded job list of the sweep at the last ``probekit run`` (``--only`` too)
    DIR/failed/<job_id>.txt    why a job failed (removed when it later succeeds)
    DIR/replaced.jsonl         one line per set of rows replaced because the job's inputs changed
    DIR/replaced/<job_id>.<digest>.<time>.parquet  those old rows, set aside (never merged)
    DIR/work/<job_id>/         what the job wrote (records, probes, tables) and its log
    DIR/train/<job_id>/        training runs (resumable: a killed run continues from its last checkpoint;
                               ``inputs.json`` there names the inputs it started from)

A job's identity is its ``job_id`` (a hash of its settings, :mod:`probekit.sweep.jobs`) together with the
content of the files it reads (:mod:`probekit.sweep.inputs`: the checkpoint's files, shards), fingerprinted when
it is about to run. Its rows are stored with that fingerprint (the parquet file's ``probekit.inputs`` metadata
and the rows' ``inputs_sha256``), and a job is finished exactly when ``jobs/<job_id>.parquet`` exists with the
fingerprint of its inputs as they are now (:meth:`ResultsStore.state`). So a sweep killed at any moment and
started again skips what is finished, redoes what is not, and never holds a job's rows twice; and when a
checkpoint was retrained or overwritten, the jobs reading it run again: their old rows are moved to
``replaced/`` (:meth:`ResultsStore.retire`, recorded in ``replaced.jsonl``) and the new rows carry a
``replaces`` column saying what they replaced, which ``REPORT.md`` lists. Rows stored before inputs were
fingerprinted are kept when their ``checkpoint_sha256`` is that of the checkpoint now (train rows: as they are),
and then get the fingerprint.

Every row carries: ``job_id``, ``kind``, ``sweep``, ``checkpoint`` (label), ``checkpoint_path``,
``checkpoint_sha256`` (of ``model.safetensors``), ``inputs_sha256`` (the fingerprint of the job's inputs),
``replaces`` (JSON, or None: the rows of earlier inputs these replaced), ``revision`` (package version + git
revision), ``job_config`` (the job's settings as JSON), ``model`` (pretrained | random-init), the checkpoint's shape
(``arch``, ``n_layer``, ``d_model``, ``n_params``) and training data (``train_preset``: the family, e.g.
``med-op4-ip12``; ``train_max_op``, ``train_n_problems``, ``train_resample``, ``train_init_from``,
``train_tokens``), then the columns of the job's own result (see :mod:`probekit.sweep.runners`). Nested values are
stored as JSON strings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from probekit.records import atomic_output, write_atomic

RESULTS_FILE = "results.parquet"
REPLACED_FILE = "replaced.jsonl"
INPUTS_KEY = b"probekit.inputs"
"""The parquet metadata key of a job file's inputs record (``{"digest", "files"}``, :mod:`probekit.sweep.inputs`)."""


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

    def job_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.parquet"

    def write_job(self, job_id: str, rows: list[dict], inputs: dict | None = None) -> Path:
        """Store a finished job's rows with the record of its ``inputs`` (:meth:`Inputs.to_dict
        <probekit.sweep.inputs.Inputs.to_dict>`), atomically: the job counts as finished once this returns."""
        path = self.job_path(job_id)
        _write_parquet(table(rows), path, inputs)
        (self.failed_dir / f"{job_id}.txt").unlink(missing_ok=True)
        return path

    def stored_inputs(self, job_id: str) -> dict | None:
        """The inputs record stored with a job's rows; None when the job has no rows, ``{}`` when they were
        stored before inputs were fingerprinted."""
        import pyarrow.parquet as pq

        path = self.job_path(job_id)
        if not path.exists():
            return None
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[INPUTS_KEY]) if INPUTS_KEY in metadata else {}

    def state(self, job_id: str, kind: str, inputs: dict) -> str:
        """Whether a job whose inputs are now ``inputs`` (a record) is finished: ``todo`` (no rows), ``done``
        (rows of these inputs), ``changed`` (rows of other inputs) or ``legacy`` (rows stored before inputs
        were fingerprinted that fit them: their ``checkpoint_sha256`` is the checkpoint's ``model.safetensors``
        now, or a train job's; :meth:`adopt` records the inputs with them)."""
        stored = self.stored_inputs(job_id)
        if stored is None:
            return "todo"
        if stored:
            return "done" if stored.get("digest") == inputs["digest"] else "changed"
        if kind == "train":
            return "legacy"
        rows = self.job_rows(job_id)
        weights = inputs["files"].get("checkpoint", {}).get("model.safetensors")
        if not len(rows) or "checkpoint_sha256" not in rows:
            return "legacy"
        return "legacy" if weights is not None and set(rows["checkpoint_sha256"]) == {weights} else "changed"

    def adopt(self, job_id: str, inputs: dict) -> None:
        """Record ``inputs`` with rows stored before inputs were fingerprinted (``state`` ``legacy``)."""
        frame = self.job_rows(job_id)
        if len(frame):
            frame["inputs_sha256"] = inputs["digest"]
        _write_parquet(frame, self.job_path(job_id), inputs)

    def retire(
        self, job_id: str, kind: str, checkpoint: str | None, inputs: dict, changed: list[str], rerun: bool = True
    ) -> dict:
        """Set aside the rows of a job whose inputs changed (``state`` ``changed``): move them to
        ``replaced/<job_id>.<old digest>.<time>.parquet`` (out of ``results.parquet``) and append what was replaced
        to ``replaced.jsonl``; returns that record (``job_id``, ``kind``, ``checkpoint``, ``old_inputs_sha256``
        (None: not recorded), ``new_inputs_sha256``, ``old_checkpoint_sha256``, ``changed`` (``input/file``
        names), ``at`` (UTC time), ``old_rows`` (where they are now), ``rerun`` (whether this run redoes it))."""
        old = self.stored_inputs(job_id) or {}
        rows = self.job_rows(job_id)
        old_sha = sorted(set(rows["checkpoint_sha256"].dropna())) if "checkpoint_sha256" in rows else []
        digest, now = old.get("digest"), time.gmtime()
        name = f"{job_id}.{(digest or 'unrecorded')[:12]}.{time.strftime('%Y%m%dT%H%M%SZ', now)}.parquet"
        target = self.root / "replaced" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        self.job_path(job_id).replace(target)
        record = {
            "job_id": job_id,
            "kind": kind,
            "checkpoint": checkpoint,
            "old_inputs_sha256": digest,
            "new_inputs_sha256": inputs["digest"],
            "old_checkpoint_sha256": old_sha[0] if len(old_sha) == 1 else (old_sha or None),
            "changed": changed,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
            "old_rows": str(target),
            "rerun": rerun,
        }
        with open(self.root / REPLACED_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        return record

    def replacements(self) -> list[dict]:
        """Every record of ``replaced.jsonl`` (:meth:`retire`), oldest first."""
        path = self.root / REPLACED_FILE
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def replacement_of(self, job_id: str, digest: str) -> dict | None:
        """The last record of rows of ``job_id`` replaced by rows of inputs ``digest`` (None: none)."""
        found = [r for r in self.replacements() if r["job_id"] == job_id and r["new_inputs_sha256"] == digest]
        return found[-1] if found else None

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
        """The jobs of the sweep at the last ``probekit run`` (``jobs.json``) that have no rows: ``job_id``,
        ``kind``, ``checkpoint``, ``reason`` (the first line of its failure, else "not run yet"; and when its rows of
        earlier inputs were set aside, :meth:`retire`) and ``log`` (its log file)."""
        path = self.root / "jobs.json"
        if not path.exists():
            return []
        finished, failures = self.finished(), self.failures()
        replaced = {r["job_id"]: r for r in self.replacements()}
        missing = []
        for job in json.loads(path.read_text()):
            job_id = job["job_id"]
            if job_id in finished:
                continue
            folder = self.train_dir(job_id) if job["kind"] == "train" else self.work_dir(job_id)
            failure = failures.get(job_id, "").strip()
            reason = failure.splitlines()[0] if failure else "not run yet (or still running)"
            if job_id in replaced:
                reason += (
                    f"; its rows of earlier inputs were set aside ({', '.join(replaced[job_id]['changed'])} changed)"
                )
            missing.append(
                {
                    "job_id": job_id,
                    "kind": job["kind"],
                    "checkpoint": job.get("checkpoint"),
                    "reason": reason,
                    "log": str(folder / "log.txt"),
                }
            )
        return missing

    def job_rows(self, job_id: str):
        import pandas as pd

        return pd.read_parquet(self.job_path(job_id))

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


def _write_parquet(frame, path: Path, inputs: dict | None = None) -> None:
    """Write ``frame`` atomically, with ``inputs`` (when given) in the file's metadata (:data:`INPUTS_KEY`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = pa.Table.from_pandas(frame, preserve_index=False)
    if inputs is not None:
        data = data.replace_schema_metadata({**(data.schema.metadata or {}), INPUTS_KEY: json.dumps(inputs).encode()})
    with atomic_output(path, binary=True) as fh:
        pq.write_table(data, fh)
