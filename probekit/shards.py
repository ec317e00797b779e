"""Packed uint16 training shards (the paper's packing, App. F.1).

Each record ``{"problem": prompt text, "solution": text, "answer": int}`` becomes the token sequence
``[PROBLEM] problem [SOLUTION] solution [ANSWER] answer [EOS]`` (:meth:`IGSMTokenizer.encode_example`). The
sequences are concatenated in record order into one stream, which is cut into consecutive windows of
``context`` tokens; an example may straddle two windows, exactly as when the paper concatenates problems and
cuts the stream at the window's right end.

Decisions (all counted, never silent):

- an example longer than ``context`` tokens is dropped (``n_dropped_too_long``); one of exactly ``context``
  tokens is kept;
- the trailing partial window (fewer than ``context`` tokens left at the end of the stream) is dropped, not
  padded (``n_tail_tokens_dropped``); windows never hold ``[PAD]``.

Counters: ``n_records`` = records read; ``n_examples`` = records that entered the stream;
``n_tokens`` = tokens of the stream (all entered examples) = ``n_windows * context + n_tail_tokens_dropped``.

On disk (:func:`write_shards`): ``shard_00000.npy``, ``shard_00001.npy``, ... (``np.save`` of a 2-D
``uint16`` array ``(n_windows, context)``, readable with ``np.load(path, mmap_mode="r")``), ``meta.json`` and
the tokenizer (``tokenizer.json`` + the transformers configs). Every file is written to a temporary name in
the same directory and moved into place with ``os.replace``; ``meta.json`` is written last, so a directory
without it is an interrupted write and :func:`read_shards` refuses it. The temporary names name their writer
(:func:`probekit.records.temp_prefix`): a later write into the directory deletes those a killed writer left
(:func:`probekit.records.remove_stale_temporaries`). A damaged file (a shard or ``meta.json`` cut short by a
full disk or an interrupted copy) is a :class:`ShardError` naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from probekit.records import atomic_output, remove_stale_temporaries, write_atomic
from probekit.tokenizer import IGSMTokenizer, UnknownWordError

DTYPE = np.uint16
META_FILE = "meta.json"
SHARD_FORMAT = "probekit-shards-v1"
DEFAULT_SHARD_WINDOWS = 8192
_ENCODE_BATCH = 1024


class ShardError(ValueError):
    """A damaged shard directory: a truncated or corrupt ``meta.json`` or shard file (the message names it)."""


def shard_name(i: int) -> str:
    """File name of shard ``i``: ``shard_00000.npy``."""
    return f"shard_{i:05d}.npy"


@dataclass
class PackResult:
    """Windows packed from a list of records, and what was counted on the way (see the module doc)."""

    windows: np.ndarray  # uint16, (n_windows, context)
    context: int
    n_records: int
    n_examples: int
    n_dropped_too_long: int
    n_tokens: int
    n_tail_tokens_dropped: int

    @property
    def n_windows(self) -> int:
        return int(self.windows.shape[0])


def _check_context(context: int) -> int:
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)):
        raise TypeError(f"context must be an int, got {type(context).__name__}")
    if context < 2:
        raise ValueError(f"context must be at least 2 tokens, got {context}")
    return int(context)


def _check_tokenizer(tokenizer: IGSMTokenizer) -> None:
    if tokenizer.vocab_size > np.iinfo(DTYPE).max + 1:
        raise ValueError(f"vocabulary of {tokenizer.vocab_size} ids does not fit {np.dtype(DTYPE).name}")


def _triple(index: int, record: Mapping) -> tuple[str, str, int | str]:
    try:
        return record["problem"], record["solution"], record["answer"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"record {index} needs keys 'problem', 'solution' and 'answer': {err!r}") from None


def encode_records(
    records: Iterable[Mapping], tokenizer: IGSMTokenizer, batch: int = _ENCODE_BATCH
) -> Iterator[list[int]]:
    """Token sequences of ``records`` in order (batched); an unknown word raises with the record's index."""
    it = iter(records)
    start = 0
    while True:
        chunk = list(islice(it, batch))
        if not chunk:
            return
        triples = [_triple(start + k, r) for k, r in enumerate(chunk)]
        try:
            seqs = tokenizer.encode_examples(triples)
        except (UnknownWordError, ValueError):
            for k, triple in enumerate(triples):  # find the first failing record, re-raise with its index
                try:
                    tokenizer.encode_example(*triple)
                except UnknownWordError as err:
                    raise UnknownWordError(err.words, err.text, record_index=start + k) from err
                except ValueError as err:
                    raise ValueError(f"record {start + k}: {err}") from err
            raise
        yield from seqs
        start += len(chunk)


class _Packer:
    """Concatenate sequences and hand out full windows; keeps the counters."""

    def __init__(self, context: int):
        self.context = context
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self.n_records = self.n_examples = self.n_dropped_too_long = self.n_tokens = 0

    def add(self, ids: list[int]) -> None:
        self.n_records += 1
        if len(ids) > self.context:
            self.n_dropped_too_long += 1
            return
        self.n_examples += 1
        self.n_tokens += len(ids)
        self._pending.append(np.asarray(ids, dtype=DTYPE))
        self._pending_len += len(ids)

    def counts(self) -> dict[str, int]:
        """The counters so far: records entered, examples kept, examples dropped as too long, their tokens."""
        return {
            "n_records": self.n_records,
            "n_examples": self.n_examples,
            "n_dropped_too_long": self.n_dropped_too_long,
            "n_tokens": self.n_tokens,
        }

    @property
    def full_windows(self) -> int:
        return self._pending_len // self.context

    def take(self, max_windows: int | None = None) -> np.ndarray:
        """Remove and return up to ``max_windows`` full windows (all of them when None)."""
        n = self.full_windows if max_windows is None else min(max_windows, self.full_windows)
        if n == 0:
            return np.empty((0, self.context), dtype=DTYPE)
        stream = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        cut = n * self.context
        rest = stream[cut:]
        self._pending = [rest] if rest.size else []
        self._pending_len = int(rest.size)
        return stream[:cut].reshape(n, self.context).copy()

    @property
    def tail(self) -> int:
        return self._pending_len


def pack_records(records: Iterable[Mapping], tokenizer: IGSMTokenizer, context: int) -> PackResult:
    """Pack ``records`` into ``(n, context)`` uint16 windows in memory (see the module doc for the rules)."""
    context = _check_context(context)
    _check_tokenizer(tokenizer)
    packer = _Packer(context)
    for ids in encode_records(records, tokenizer):
        packer.add(ids)
    windows = packer.take()
    return PackResult(
        windows=windows,
        context=context,
        **packer.counts(),
        n_tail_tokens_dropped=packer.tail,
    )


def _previous_outputs(out_dir: Path) -> list[Path]:
    return sorted(
        [
            *out_dir.glob("shard_*.npy"),
            *out_dir.glob(".shard_*.tmp"),
            *out_dir.glob(META_FILE),
            *out_dir.glob(f".{META_FILE}.*.tmp"),
        ]
    )


def write_shards(
    records_iter: Iterable[Mapping],
    tokenizer: IGSMTokenizer,
    out_dir: str | os.PathLike,
    context: int,
    shard_windows: int = DEFAULT_SHARD_WINDOWS,
    overwrite: bool = False,
) -> dict:
    """Pack ``records_iter`` (streamed; any iterable) into shard files of ``shard_windows`` windows each.

    Writes ``shard_NNNNN.npy`` files (the last may hold fewer windows), the tokenizer and finally
    ``meta.json``; returns the meta dict. ``out_dir`` must not already hold shards or a ``meta.json`` unless
    ``overwrite`` is set, which deletes them first. If encoding fails midway (for instance
    :class:`UnknownWordError`, carrying ``record_index``) no ``meta.json`` is written; neither when every problem
    is longer than ``context`` (a ``ValueError``: an empty training set is no result).
    """
    context = _check_context(context)
    _check_tokenizer(tokenizer)
    if shard_windows < 1:
        raise ValueError(f"shard_windows must be at least 1, got {shard_windows}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # a killed writer's: they are no output to refuse or keep
    old = _previous_outputs(out)
    if old:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds shard output ({old[0].name}, ...); pass overwrite=True (CLI: --overwrite)"
            )
        for path in old:
            path.unlink()
    tokenizer.save(out)

    packer = _Packer(context)
    shards: list[dict] = []

    def flush(windows: np.ndarray) -> None:
        name = shard_name(len(shards))
        with atomic_output(out / name, binary=True) as fh:
            np.save(fh, windows, allow_pickle=False)
        shards.append({"file": name, "n_windows": int(windows.shape[0])})

    for ids in encode_records(records_iter, tokenizer):
        packer.add(ids)
        while packer.full_windows >= shard_windows:
            flush(packer.take(shard_windows))
    last = packer.take()
    if last.shape[0]:
        flush(last)

    n_windows = sum(s["n_windows"] for s in shards)
    if n_windows == 0 and packer.n_dropped_too_long:
        raise ValueError(
            f"every one of the {packer.n_records} problems is longer than the context of {context} tokens: no "
            "training window written (raise --context; iGSM problems of op 15 take about 600 tokens)"
        )
    meta = {
        "format": SHARD_FORMAT,
        "dtype": np.dtype(DTYPE).name,
        "context": context,
        "vocab_size": tokenizer.vocab_size,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "layout": "[PROBLEM] problem [SOLUTION] solution [ANSWER] answer [EOS], concatenated, cut into windows",
        "shard_windows": shard_windows,
        "n_shards": len(shards),
        "n_windows": n_windows,
        **packer.counts(),
        "n_window_tokens": n_windows * context,
        "n_tail_tokens_dropped": packer.tail,
        "shards": shards,
    }
    write_atomic(out / META_FILE, json.dumps(meta, indent=2) + "\n")
    return meta


def load_meta(shard_dir: str | os.PathLike) -> dict:
    """The ``meta.json`` of a shard directory; a missing one means the write never completed, a damaged one is a
    :class:`ShardError`."""
    path = Path(shard_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: not a shard directory, or its write did not complete")
    data = path.read_bytes()
    try:
        meta = json.loads(data)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ShardError(f"{path}: truncated or corrupt shard metadata ({len(data)} bytes; {err})") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{path}: corrupt shard metadata (a JSON {type(meta).__name__}, not an object)")
    if meta.get("format") != SHARD_FORMAT:
        raise ValueError(f"{path}: unknown shard format {meta.get('format')!r}")
    missing = [k for k in ("dtype", "context", "tokenizer_fingerprint", "shards") if k not in meta]
    if missing:
        raise ShardError(f"{path}: corrupt shard metadata (no {', '.join(missing)})")
    return meta


def read_shards(shard_dir: str | os.PathLike, tokenizer: IGSMTokenizer | None = None) -> list[np.ndarray]:
    """Memory-mapped ``(n_windows, context)`` uint16 arrays of every shard, in order, checked against meta.

    With ``tokenizer``, also checks that it is the tokenizer the shards were written with (fingerprint).
    """
    shard_dir = Path(shard_dir)
    meta = load_meta(shard_dir)
    if tokenizer is not None and tokenizer.fingerprint != meta["tokenizer_fingerprint"]:
        raise ValueError(
            f"{shard_dir} was written with tokenizer {meta['tokenizer_fingerprint'][:12]}, "
            f"not {tokenizer.fingerprint[:12]}"
        )
    arrays = []
    for entry in meta["shards"]:
        path = shard_dir / entry["file"]
        arr = _load_shard(path)
        expected = (entry["n_windows"], meta["context"])
        if arr.dtype != np.dtype(meta["dtype"]) or arr.shape != expected:
            raise ShardError(f"{path}: {arr.dtype} {arr.shape}, but {META_FILE} says {meta['dtype']} {expected}")
        arrays.append(arr)
    return arrays


def _load_shard(path: Path) -> np.ndarray:
    """One shard, memory-mapped; a missing, truncated or corrupt file is a :class:`ShardError` naming it."""
    if not path.exists():
        raise ShardError(f"{path}: missing (named in {META_FILE})")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:  # numpy: "mmap length is greater than file size", "EOF: ..."
        raise ShardError(f"{path}: truncated or corrupt shard file ({path.stat().st_size} bytes; {err})") from None


def iter_windows(shard_dir: str | os.PathLike) -> Iterator[np.ndarray]:
    """Every window of a shard directory in order (each a memory-mapped ``(context,)`` uint16 row)."""
    for arr in read_shards(shard_dir):
        yield from arr
