"""The threads a NumPy training step runs on: every core, not only BLAS's.

Half of a NumPy training step is BLAS, which runs on every core; the other half (softmax, GELU, AbsTopK, RMSNorm, the
projection) is NumPy's own loops, which run on one. Those loops release the GIL while they work, so Python threads
given separate arrays run on separate cores without leaving NumPy. The trainer (trainer.py) splits a step's batch
between them; `Threads` is the small pool that runs the shares, the calling thread doing the first itself.

While the pool works (`own_cores`), BLAS runs one thread per caller: after each call OpenBLAS's own threads spin for a
while, waiting for more, on the cores the pool's threads need (with them spinning, an op split across two threads ran
no faster than on one; docs/speed.md).

How many threads: the trainer's `threads` argument, else MINISPARSE_NUM_THREADS, else the BLAS's own setting
(OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS), else every core this process may use. One thread runs
everything in the calling thread and leaves BLAS as it is: `reproduce`'s one-thread workers stay one-thread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import weakref

import numpy as np
from threadpoolctl import ThreadpoolController

OWN_VARIABLE = "MINISPARSE_NUM_THREADS"
THREAD_VARIABLES = (OWN_VARIABLE, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads() -> int:
    """The thread count when none is given: the first of THREAD_VARIABLES that is set, else every core."""
    for var in THREAD_VARIABLES:
        value = os.environ.get(var, "").strip()
        if var == OWN_VARIABLE and value and (not value.isdigit() or int(value) < 1):
            raise ValueError(f"{var}={value!r}: expected a whole number of threads >= 1")
        first = value.split(",")[0].strip()        # OMP_NUM_THREADS may list one count per nesting level
        if first.isdigit() and int(first) >= 1:
            return int(first)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Threads:
    """`n` threads: the caller and n − 1 pool threads, started on first use, ended with this object. One call at a
    time: work handed out may not hand out work to the same pool (refused)."""

    def __init__(self, n: int | None = None):
        n = default_threads() if n is None else n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {n!r}")
        self.n = n
        self._inboxes: list[queue.SimpleQueue] = []
        self._busy = threading.Lock()
        _POOLS.add(self)

    def each(self, fn, items: list) -> None:
        """Call fn(item) for every item, spread over the threads in contiguous groups, and wait for all; an error in
        any share is raised once every share has finished."""
        parts = min(self.n, len(items))
        if parts <= 1:
            for item in items:
                fn(item)
            return
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("Threads.each was called again before its last call finished (one call at a time)")
        try:
            if not self._inboxes:
                self._start()
            bounds = [len(items) * i // parts for i in range(parts + 1)]
            groups = [items[a:b] for a, b in zip(bounds, bounds[1:])]
            done: queue.SimpleQueue = queue.SimpleQueue()  # this call's: a share still running when an interrupt
            errors = np.geterr()                           # ends the call reports to no later call
            for inbox, group in zip(self._inboxes, groups[1:]):
                inbox.put((fn, group, errors, done))
            first_error = None
            try:
                for item in groups[0]:
                    fn(item)
            except Exception as e:      # raised below, once the pool's shares are done (an interrupt is raised at once)
                first_error = e
            for _ in groups[1:]:        # every share finishes before the caller reads what they wrote
                error = done.get()
                first_error = first_error or error
            if first_error is not None:
                raise first_error
        finally:
            self._busy.release()

    @contextlib.contextmanager
    def own_cores(self):
        """While inside: BLAS runs one thread per caller (process-wide; nothing changes on one thread)."""
        if self.n == 1:
            yield
            return
        with _blas().limit(limits=1, user_api="blas"):
            yield

    def _start(self) -> None:
        self._inboxes = [queue.SimpleQueue() for _ in range(self.n - 1)]
        for inbox in self._inboxes:
            threading.Thread(target=_work, args=(inbox,), daemon=True, name="minisparse").start()
        weakref.finalize(self, _stop, self._inboxes)

    def __repr__(self) -> str:
        return f"Threads({self.n})"


def _work(inbox: queue.SimpleQueue) -> None:
    # a pool thread: run each share handed to it under the caller's NumPy error settings (they are per thread in
    # NumPy 1.x); report None or the error to the call's own queue
    while (job := inbox.get()) is not None:
        _run(*job)
        job = None                      # hold nothing of the last call while idle


def _run(fn, items, errors, done) -> None:
    try:
        with np.errstate(**errors):
            for item in items:
                fn(item)
        done.put(None)
    except BaseException as e:          # whatever ends a share is the caller's to raise: the thread lives on
        done.put(e)


def _stop(inboxes) -> None:
    for inbox in inboxes:
        inbox.put(None)


_POOLS: weakref.WeakSet[Threads] = weakref.WeakSet()


def _forget_threads_after_fork() -> None:
    # a forked child has none of its parent's pool threads: each pool starts its own on first use
    for pool in _POOLS:
        pool._inboxes = []
        pool._busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


@functools.cache
def _blas() -> ThreadpoolController:
    # finds the BLAS libraries loaded in this process once (a few ms); limiting them afterwards costs microseconds
    return ThreadpoolController()
