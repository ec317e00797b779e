"""Helpers for tests that run the ``probekit`` command: a fresh-interpreter run, what a clean failure looks like,
JSONL files in and out (importable from any test module: setup.cfg puts tests/ on the path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_cli(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    """``python -m probekit ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "probekit", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, rc: int) -> None:
    """The command failed with exit status ``rc``, said why on stderr and printed no traceback."""
    assert proc.returncode == rc, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip(), "a failure must say why on stderr"


def lines_of(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in lines_of(path)]


def write_jsonl(path: Path, lines: list) -> Path:
    """Write raw lines: ``str`` as is, anything else JSON-encoded."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
