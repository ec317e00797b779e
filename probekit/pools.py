"""Process pools that ``kill`` and ``probekit`` commands can stop, and that never hang when a job ends early.

``probekit.cli.main`` turns SIGTERM into a clean stop with a Python-level handler, and forked workers
inherit it. A SIGTERM that reaches a worker in the instant after ``fork`` (before the interpreter has reset
its pending signals) is then dropped, so ``Pool.terminate`` right after a pool starts (a job of five
records ends in milliseconds) could wait forever on a worker it never stopped; it did, about one run in
eighty. The pools made here start their workers with SIGTERM blocked, and each worker restores the default
action before unblocking, so a SIGTERM is either pending (and then kills) or arrives after the reset.
:func:`pool_scope` also ends a pool that finished its work with ``close`` and ``join`` (workers leave on
their own), and uses ``terminate`` only when the work stopped early.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from multiprocessing.pool import Pool


def _start_worker(initializer: Callable[..., object] | None, initargs: tuple) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if initializer is not None:
        initializer(*initargs)


def start_pool(
    workers: int,
    context: BaseContext | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: tuple = (),
) -> Pool:
    """A ``multiprocessing`` pool of ``workers`` processes (``context``: the start method, default the
    platform's) whose workers die at SIGTERM; ``initializer(*initargs)`` runs in each worker as in ``Pool``."""
    ctx = context or multiprocessing.get_context()
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return ctx.Pool(workers, initializer=initializer, initargs=initargs)
    # threads the pool starts (its worker handler forks replacements) inherit the block, as do the workers
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return ctx.Pool(workers, initializer=_start_worker, initargs=(initializer, initargs))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def pool_scope(workers: int, context: BaseContext | None = None) -> Iterator[Pool]:
    """:func:`start_pool` for a ``with`` block: at a normal exit the workers finish and leave (``close``,
    ``join``); at an exception, or when a generator using the pool is closed early, they are terminated."""
    pool = start_pool(workers, context)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
