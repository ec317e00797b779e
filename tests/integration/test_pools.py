"""Worker pools (probekit.pools): a pool stopped right after it starts never hangs, even under probekit's
SIGTERM handler; finished work ends with workers that left on their own, early stops terminate them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from probekit.pools import pool_scope, start_pool

# The handler probekit.cli.main installs, in short: the main process stops cleanly, a forked worker dies.
RACE = textwrap.dedent(
    """
    import os, signal
    from probekit.pools import start_pool

    main = os.getpid()

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.getpid() != main:
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    for _ in range(300):
        pool = start_pool(3)
        pool.terminate()
        pool.join()
    """
)


def test_terminating_a_pool_as_it_starts_never_hangs(tmp_path):
    # with multiprocessing.Pool this loop hung within 5 to 90 rounds (a SIGTERM lost in the instant after fork);
    # the process group is killed on timeout, since a hung worker would outlive its parent
    proc = subprocess.Popen(
        [sys.executable, "-c", RACE], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("terminating a freshly started pool hung")
    assert proc.returncode == 0, err.decode()


def _sigterm_state(_: int) -> tuple[bool, bool]:
    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, signal.SIGTERM in signal.pthread_sigmask(
        signal.SIG_BLOCK, set()
    )


def test_workers_take_sigterm_by_default_and_the_parent_keeps_its_handler():
    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        pool = start_pool(2)
        try:
            states = pool.map(_sigterm_state, range(8))
        finally:
            pool.terminate()
            pool.join()
        assert states == [(True, False)] * 8  # default action, not blocked
        assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.signal(signal.SIGTERM, previous)


def _initialized(_: int) -> str:
    return os.environ.get("PROBEKIT_POOL_TEST", "")


def _set_marker(value: str) -> None:
    os.environ["PROBEKIT_POOL_TEST"] = value


def test_start_pool_runs_the_initializer_in_each_worker():
    pool = start_pool(2, initializer=_set_marker, initargs=("ready",))
    try:
        assert pool.map(_initialized, range(6)) == ["ready"] * 6
    finally:
        pool.terminate()
        pool.join()


def test_pool_scope_closes_after_finished_work_and_terminates_after_an_early_stop():
    with pool_scope(2) as pool:
        assert pool.map(abs, [-1, -2, 3]) == [1, 2, 3]
        workers = list(pool._pool)
    assert [p.exitcode for p in workers] == [0, 0]  # they left on their own

    start = time.monotonic()
    with pytest.raises(KeyError), pool_scope(2) as pool:
        pool.apply_async(time.sleep, (60,))  # close() and join() would wait for it
        raise KeyError("stop")
    assert time.monotonic() - start < 30
