"""JSONL records in and out: tolerant reading (a bad line is reported, never dropped) and atomic writing."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Line:
    """One input line: its 1-based number and either the decoded object or why it could not be read."""

    number: int
    record: dict | None
    error: str | None = None


def read_jsonl(path: str | Path) -> Iterator[Line]:
    """Yield every line of a JSONL file; blank or malformed lines come back with ``error`` set. A UTF-8 byte-order
    mark at the start of the file (as some editors write) is skipped."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                yield Line(number, None, f"not UTF-8: byte {err.start}")
                continue
            if not text:
                yield Line(number, None, "empty line")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                yield Line(number, None, f"not JSON: {err.msg} at column {err.colno}")
                continue
            if not isinstance(obj, dict):
                yield Line(number, None, f"expected a JSON object, got {type(obj).__name__}")
            else:
                yield Line(number, obj)


class OutputOverInput(ValueError):
    """An output path that resolves to one of the command's inputs (or to another of its outputs)."""


def check_outputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse outputs that would replace an input or each other, compared by real path (links and relative
    spellings resolve to the same file). Keys name the options (``--out``) for the message; None and ``-``
    (stdout) are never in conflict.

    Raises
    ------
    OutputOverInput
        An output resolves to an input, or two outputs resolve to the same path.
    """

    def real(path: str | Path | None) -> Path | None:
        return None if path is None or str(path) == "-" else Path(path).expanduser().resolve()

    given = {**inputs, **outputs}
    taken = {name: real(path) for name, path in inputs.items()}
    for name, path in outputs.items():
        target = real(path)
        if target is None:
            continue
        clash = next((other for other, used in taken.items() if used == target), None)
        if clash is not None:
            role = "input" if clash in inputs else "output"
            raise OutputOverInput(
                f"{name} {path} is the same path as the {role} {clash} {given[clash]}: writing it would "
                f"{'destroy what the command reads' if role == 'input' else 'make one output replace the other'}; "
                "choose another path"
            )
        taken[name] = target


def require(record: dict, *fields: str) -> None:
    """Raise ``KeyError``-free, readable errors for missing or mistyped text fields."""
    for name in fields:
        if name not in record:
            raise ValueError(f"missing field {name!r}")
        if not isinstance(record[name], str):
            raise ValueError(f"field {name!r} must be a string, got {type(record[name]).__name__}")


@contextmanager
def atomic_output(path: str | Path | None, binary: bool = False) -> Iterator[IO]:
    """A stream that becomes ``path`` only when the block finishes; ``None`` means stdout (text only).

    A killed or failing run leaves no half-written file under the final name (temp file, fsync, rename).
    """
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write a whole file atomically."""
    with atomic_output(path, binary=isinstance(data, bytes)) as fh:
        fh.write(data)


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def json_value(value):
    """A table cell as a plain JSON value: numpy scalars unwrapped, NaN and pandas NA as None."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return None
    return value


def table_records(table, **extra) -> list[dict]:
    """A DataFrame as JSON-ready records (:func:`json_value` per cell), ``extra`` keys first."""
    return [{**extra, **{k: json_value(v) for k, v in r.items()}} for r in table.to_dict("records")]
