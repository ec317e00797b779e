"""Temporaries of the atomic writers (issue 16): each names its writer (``.NAME.<pid>@<host>.XXXXXXXX.tmp``), a
failing or terminated (SIGTERM, like Ctrl-C) writer deletes its own, and the next write of the same name deletes
those a killed (``kill -9``) writer left, never those of a live process or of another machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probekit.records import atomic_output, remove_stale_temporaries, temp_prefix, write_atomic


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def host() -> str:
    return temp_prefix("x").split("@", 1)[1].rstrip(".")


def plant(folder: Path, name: str, pid: int, host_name: str | None = None, kind: str = "abcd1234.tmp") -> Path:
    """A temporary as a writer of ``name`` with ``pid`` (on ``host_name``) leaves it."""
    owner = f"{pid}@{host_name}" if host_name else str(pid)
    path = folder / f".{name}.{owner}.{kind}"
    path.write_text("half a file")
    return path


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_temporary_names_its_writer_and_a_failure_removes_it(tmp_path):
    seen = []
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_output(tmp_path / "out.jsonl") as fh:
            fh.write("x")
            seen = names(tmp_path)
            raise RuntimeError("disk full")
    assert len(seen) == 1 and seen[0].startswith(f".out.jsonl.{os.getpid()}@{host()}.") and seen[0].endswith(".tmp")
    assert names(tmp_path) == []


def test_the_next_write_removes_a_killed_writers_temporaries(tmp_path, dead_pid):
    here = host()
    stale = [
        plant(tmp_path, "out.jsonl", dead_pid, here),
        plant(tmp_path, "out.jsonl", dead_pid),  # pid only: records.atomic_folder's names
        plant(tmp_path, "out.jsonl", dead_pid, here, kind="old"),
    ]
    kept = [
        plant(tmp_path, "out.jsonl", os.getppid(), here),  # a live process: a concurrent writer
        plant(tmp_path, "out.jsonl", dead_pid, "another-machine"),  # on a shared disk: cannot tell
        plant(tmp_path, "out.jsonl.5", dead_pid, here),  # another name (out.jsonl.5)
        plant(tmp_path, "other.jsonl", dead_pid, here),
    ]
    (tmp_path / ".out.jsonl.notes").write_text("not a temporary")
    write_atomic(tmp_path / "out.jsonl", "new\n")
    assert (tmp_path / "out.jsonl").read_text() == "new\n"
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    assert (tmp_path / ".out.jsonl.notes").exists()


def test_a_folder_sweep_removes_every_dead_writers_temporaries(tmp_path, dead_pid):
    a = plant(tmp_path, "a.npy", dead_pid, host())
    folder = tmp_path / f".step_000004.{dead_pid}@{host()}.qwerty12.tmp"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 10)
    live = plant(tmp_path, "b.npy", os.getpid(), host())
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([a, folder])
    assert names(tmp_path) == [live.name]


def test_a_pid_that_no_process_can_have_is_not_a_live_writer(tmp_path):
    stale = plant(tmp_path, "x", 2**22 + 12345, host())  # above Linux's pid_max limit
    assert remove_stale_temporaries(tmp_path, "x") == [stale]


def test_save_checkpoint_removes_a_killed_saves_folders(tmp_path, dead_pid, tok):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from probekit.checkpoint import load_checkpoint, save_checkpoint
    from probekit.modeling import build_model, load_model_config

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for kind in ("x1y2z3a4.tmp", "old"):
        leftover = ckpts / f".step_000002.{dead_pid}@{host()}.{kind}"
        leftover.mkdir()
        (leftover / "config.json").write_text("{}")
    model = build_model(load_model_config("gpt2-tiny"), tok, seed=0)
    save_checkpoint(model, tok, ckpts / "step_000002", {"step": 1})
    save_checkpoint(model, tok, ckpts / "step_000002", {"step": 2})  # replaces: the .old folder goes too
    assert names(ckpts) == ["step_000002"]
    assert load_checkpoint(ckpts / "step_000002").provenance["step"] == 2


def test_write_shards_removes_a_killed_writers_shards_in_progress(tmp_path, dead_pid, tok):
    from probekit.shards import read_shards, write_shards

    stale = [plant(tmp_path, "shard_00001.npy", dead_pid, host()), plant(tmp_path, "meta.json", dead_pid, host())]
    write_shards(iter([]), tok, tmp_path, 64)  # no --overwrite needed: nothing but a dead run's temporaries
    assert not any(p.exists() for p in stale)
    assert read_shards(tmp_path) == []


# ---------------------------------------------------------------------------------------------- real kills
def _start_generate(out: Path, *extra: str, env=None) -> subprocess.Popen:
    """``probekit generate`` of a million problems into ``out``, once its temporary holds records."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "probekit", "generate", "--n", "1000000", "--out", str(out), "--quiet", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
        if temps and temps[0].stat().st_size > 0:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"generate ended before it could be stopped: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no temporary output appeared")


def _stop(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_is_handled_like_ctrl_c(tmp_path, workers):
    """SIGTERM ends the command as Ctrl-C does: its temporary is deleted, exit 143, one line; forked generator
    workers (``--workers 2``) die quietly."""
    out = tmp_path / "big.jsonl"
    proc = _start_generate(out, "--workers", workers)
    temp = next(p for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert temp.name.startswith(f".big.jsonl.{proc.pid}@")
    rc, err = _stop(proc, signal.SIGTERM)
    assert rc == 143, err
    assert err.strip() == "probekit: terminated"
    assert names(tmp_path) == []


def test_sigterm_in_a_torchrun_worker_of_rank_above_0_kills_at_once(tmp_path):
    out = tmp_path / "big.jsonl"
    proc = _start_generate(out, env={**os.environ, "RANK": "1", "WORLD_SIZE": "2"})
    rc, _ = _stop(proc, signal.SIGTERM)
    assert rc == -signal.SIGTERM


def test_kill_9_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    out = tmp_path / "big.jsonl"
    rc, _ = _stop(_start_generate(out), signal.SIGKILL)
    assert rc == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".big.jsonl.") and left[0].endswith(".tmp")
    done = subprocess.run(
        [sys.executable, "-m", "probekit", "generate", "--n", "2", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert names(tmp_path) == ["big.jsonl"]
    assert len([json.loads(line) for line in out.read_text().splitlines()]) == 2


def test_main_restores_the_sigterm_handler(tmp_path):
    from probekit.cli import main

    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert main(["generate", "--n", "1", "--out", str(tmp_path / "g.jsonl"), "--quiet"]) == 0
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
