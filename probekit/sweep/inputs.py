"""What a sweep job reads, by content: the fingerprint that joins ``job_id`` in a job's identity.

A job's ``job_id`` (:mod:`probekit.sweep.jobs`) hashes its settings, so it names the checkpoint by its label and
path only. The content of the files the job reads is fingerprinted when the job is about to run
(:func:`job_inputs`), and its rows are stored with that fingerprint (:mod:`probekit.sweep.store`): a job is done
only when its rows were computed from inputs of the same content. The inputs are

- an analysis job (``accuracy``, ``probe``, ``mistakes``, ``depth``): the checkpoint folder it reads (a folder
  of the sweep, or the final checkpoint of the training run of the sweep it depends on, as that run left it);
- a ``train`` job: the checkpoint it fine-tunes (``model.init_from``: a folder, or the final checkpoint of the
  run of the sweep it fine-tunes), else its model shape (``models/<name>.yaml``); with ``data.source=shards``,
  every file of the shard directory. (The training config file itself is resolved into ``job_id``.)

A checkpoint's fingerprint is the SHA-256 of each file that loading it reads (:data:`CHECKPOINT_FILES` and the
weight files of :data:`WEIGHT_PATTERNS`), not of its trainer state, logs or model card. A file is hashed once
per process while its size, times and inode stay the same (:func:`file_sha256`), so a ``probekit run`` hashes
each checkpoint once however many jobs read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "probekit.json",
)
"""The files of a checkpoint folder besides its weights that a job reads (those present are fingerprinted)."""
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model*.bin.index.json")
"""The weight files of a checkpoint folder (glob patterns)."""

Stamp = tuple[str, int, int, int, int]
"""``(resolved path, size, mtime_ns, ctime_ns, inode)``: a file's hash stays valid while its stamp does."""
_HASHES: dict[Stamp, str] = {}


def _stamp(path: Path) -> Stamp:
    path = path.resolve()
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike, stamps: dict[str, list] | None = None) -> str:
    """The SHA-256 of a file's content, hashed once per process while its :data:`Stamp` stays the same;
    ``stamps`` (when given) gets the file's stamp and hash (see :meth:`Inputs.remember`)."""
    stamp = _stamp(Path(path))
    digest = _HASHES.get(stamp)
    if digest is None:
        digest = _HASHES[stamp] = _hash_file(stamp[0])
    if stamps is not None:
        stamps[stamp[0]] = [*stamp[1:], digest]
    return digest


def checkpoint_files(folder: str | os.PathLike, stamps: dict[str, list] | None = None) -> dict[str, str]:
    """``{file name: SHA-256}`` of the files of a checkpoint folder that loading it reads."""
    from probekit.checkpoint import NotACheckpointError

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise NotACheckpointError(f"{folder} is not a checkpoint folder (no config.json)")
    names = {n for n in CHECKPOINT_FILES if (folder / n).is_file()}
    names |= {p.name for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return {n: file_sha256(folder / n, stamps) for n in sorted(names)}


def directory_files(folder: str | os.PathLike, stamps: dict[str, list] | None = None) -> dict[str, str]:
    """``{relative path: SHA-256}`` of every file under ``folder`` (hidden ones excepted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no directory {folder}")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return {p.relative_to(folder).as_posix(): file_sha256(p, stamps) for p in files}


@dataclass
class Inputs:
    """The content of what a job reads: ``files`` is ``{input: {file: SHA-256}}`` (inputs ``checkpoint``,
    ``init_from``, ``model_config``, ``shards``); :attr:`digest` hashes it."""

    files: dict[str, dict[str, str]]
    stamps: dict[str, list] = field(default_factory=dict, compare=False, repr=False)
    """The stamps of the hashed files (``{path: [size, mtime_ns, ctime_ns, inode, sha256]}``), so that a worker
    process does not hash them again (:meth:`remember`)."""

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        """What the store keeps with the job's rows: ``digest`` and ``files``."""
        return {"digest": self.digest, "files": self.files}

    def remember(self) -> None:
        """Add the hashes of :attr:`stamps` to this process's cache (a file whose stamp changed is hashed again)."""
        for path, (size, mtime, ctime, inode, digest) in self.stamps.items():
            _HASHES[(path, size, mtime, ctime, inode)] = digest

    def changed(self, old: dict | None) -> list[str]:
        """The ``input/file`` names whose content differs from ``old`` (a stored :meth:`to_dict`; added and
        removed files count, so every file when ``old`` recorded none)."""
        before = (old or {}).get("files") or {}
        flat_old = {f"{k}/{n}": d for k, files in before.items() for n, d in files.items()}
        flat_new = {f"{k}/{n}": d for k, files in self.files.items() for n, d in files.items()}
        return sorted(k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k))


def job_inputs(job, checkpoint: str | os.PathLike | None) -> Inputs:
    """The :class:`Inputs` of ``job`` (a :class:`~probekit.sweep.jobs.Job`) reading ``checkpoint`` (the folder
    :func:`probekit.sweep.execute.checkpoint_folder` gives: for a train job, the run it fine-tunes, else None).

    Raises ``FileNotFoundError`` when a checkpoint or shard directory it reads is missing.
    """
    stamps: dict[str, list] = {}
    files: dict[str, dict[str, str]] = {}
    if job.kind != "train":
        if checkpoint is None:
            raise FileNotFoundError(f"{job.job_id}: no checkpoint to read")
        files["checkpoint"] = checkpoint_files(checkpoint, stamps)
        return Inputs(files, stamps)
    resolved = job.params.get("resolved") or {}
    model, data = resolved.get("model") or {}, resolved.get("data") or {}
    init_from = checkpoint if checkpoint is not None else model.get("init_from")
    if init_from:
        files["init_from"] = checkpoint_files(init_from, stamps)
    elif model.get("name"):
        from probekit.modeling import MODELS_DIR

        shape = Path(model["name"])
        shape = shape if shape.suffix else MODELS_DIR / f"{model['name']}.yaml"
        files["model_config"] = {shape.name: file_sha256(shape, stamps)} if shape.is_file() else {}
    if data.get("source") == "shards" and data.get("shards"):
        files["shards"] = directory_files(data["shards"], stamps)
    return Inputs(files, stamps)
