"""JSONL records in and out: tolerant reading (a bad line is reported, never dropped) and atomic writing."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterator
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


class ForeignFiles(ValueError):
    """An output folder that holds files the command did not write: replacing it would delete them."""


def check_replaceable(path: str | Path, names: Collection[str]) -> None:
    """Raise :class:`ForeignFiles` when the folder ``path`` holds anything but ``names`` (hidden temporaries of
    an earlier run excepted); a missing or empty folder is fine."""
    folder = Path(path)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ForeignFiles(f"{folder} is a file, not an output folder")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in names and not p.name.startswith("."))
    if foreign:
        raise ForeignFiles(
            f"{folder} holds files this command does not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}): it replaces its output folder as a whole, so choose a new or "
            "empty folder"
        )


@contextmanager
def atomic_folder(path: str | Path, names: Collection[str] | None = None) -> Iterator[Path]:
    """A temporary folder that replaces the folder ``path`` as a whole when the block finishes, so a killed or
    failing run never leaves new files beside old ones: readers see the previous set or the new one.

    ``names`` are the files the caller writes; a ``path`` holding anything else is refused up front
    (:func:`check_replaceable`), so a folder of the user's own files is never deleted (None: ``path`` is the
    caller's own, e.g. a checkpoint folder). The temporary ``.NAME.<pid>@<host>.XXXXXXXX.tmp`` and the replaced
    folder ``.NAME.<pid>@<host>.old`` name their writer: the next write of ``NAME`` deletes a killed run's
    (:func:`remove_stale_temporaries`).
    """
    final = Path(path)
    if names is not None:
        check_replaceable(final, names)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        if final.exists():
            old = final.with_name(temp_prefix(final) + "old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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

    A killed or failing run leaves no half-written file under the final name (temp file, fsync, rename). The
    temp file ``.NAME.<pid>@<host>.XXXXXXXX.tmp`` names its writer (:func:`temp_prefix`): a failing run deletes
    it, and the next write of ``NAME`` deletes those a killed run left (:func:`remove_stale_temporaries`).
    """
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
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


# ---------------------------------------------------------------------------- temporaries
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9-]+))?\.(?:[a-z0-9_]+\.tmp|old)")
"""A writer's temporary: ``.NAME.<pid>[@<host>].XXXXXXXX.tmp`` (file or folder) or ``.NAME.<pid>[@<host>].old``."""


def _host() -> str:
    """This machine's name as it appears in temporary names (letters, digits and ``-``; at most 24 characters)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", os.uname().nodename if hasattr(os, "uname") else "")[:24] or "host"


def temp_prefix(final: str | Path) -> str:
    """``.NAME.<pid>@<host>.``: the start of the name of a temporary that becomes ``final``; it names the
    writing process, so that a later run can tell a killed writer's leftovers (:func:`remove_stale_temporaries`)
    from those of a live one."""
    return f".{Path(final).name}.{os.getpid()}@{_host()}."


def _owner_alive(pid: int, host: str | None) -> bool:
    """Whether the process that made a temporary may still be writing it: True unless it is a process of this
    machine that no longer exists (another machine's, on a shared disk, cannot be checked: kept)."""
    if host is not None and host != _host():
        return True
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # a live process of another user; a pid no process can have
        return True
    return True


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete the temporaries that killed writers (``kill -9``, a crash, a power cut) left in ``folder``:
    those of the final name ``name`` (None: of every name) made by a process of this machine that no longer
    exists. Temporaries of live processes (a concurrent writer) and other machines' are kept. Returns what
    was deleted."""
    folder = Path(folder)
    pattern = f".{glob.escape(name)}.*" if name is not None else ".*"
    removed = []
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return []
    for entry in candidates:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if _owner_alive(int(match["pid"]), match["host"]):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # another run removed it first
            continue
        except OSError:
            continue  # not ours to delete after all (permissions): leave it
        removed.append(entry)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write a whole file atomically."""
    with atomic_output(path, binary=isinstance(data, bytes)) as fh:
        fh.write(data)


def dumps(obj) -> str:
    """One JSON line: non-ASCII text as is, unless the object holds text UTF-8 cannot carry (a lone surrogate
    read from a ``\\ud800`` escape), which is then escaped as JSON allows, so the line can always be written."""
    text = json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(", ", ": "))
    return text


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
