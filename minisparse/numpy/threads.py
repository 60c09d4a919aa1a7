"""The threads a NumPy training step runs on: every core, not only BLAS's.

Half of a NumPy training step is BLAS, which runs on every core; the other half (softmax, GELU, AbsTopK, RMSNorm, the
projection) is NumPy's own loops, which run on one. Those loops release the GIL while they work, so Python threads
given separate arrays run on separate cores without leaving NumPy. The trainer (trainer.py) splits a step's batch
between them; `Threads` is the small pool that runs the shares, the calling thread doing the first itself.

While the pool works (`own_cores`), BLAS runs one thread per caller: after each call OpenBLAS's own threads spin for a
while, waiting for more, on the cores the pool's threads need (an op split across two threads ran no faster than on
one until BLAS stopped spinning; docs/speed.md).

How many threads: the trainer's `threads` argument, else the MINISPARSE_NUM_THREADS variable, else the BLAS's own
setting (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS), else every core this process may use. One thread runs everything in
the calling thread and leaves BLAS as it is: `reproduce`'s one-BLAS-thread workers stay one-thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import queue
import threading
import weakref

from threadpoolctl import ThreadpoolController

THREAD_VARIABLES = ("MINISPARSE_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def default_threads() -> int:
    """The thread count when none is given: the first of THREAD_VARIABLES that is set, else every core."""
    for var in THREAD_VARIABLES:
        value = os.environ.get(var, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{var}={value!r}: expected a whole number of threads >= 1")
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Threads:
    """`n` threads: the caller and n − 1 pool threads, started on first use, ended with this object. One caller at
    a time; the work handed out must not hand out work to the same pool."""

    def __init__(self, n: int | None = None):
        n = default_threads() if n is None else n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {n!r}")
        self.n = n
        self._inboxes: list[queue.SimpleQueue] = []
        self._done: queue.SimpleQueue = queue.SimpleQueue()

    def each(self, fn, items: list) -> None:
        """Call fn(item) for every item, spread over the threads in contiguous groups, and wait for all (raising the
        first error, once every share has finished)."""
        parts = min(self.n, len(items))
        if parts <= 1:
            _each(fn, items)
            return
        if not self._inboxes:
            self._start()
        bounds = [len(items) * i // parts for i in range(parts + 1)]
        groups = [items[a:b] for a, b in zip(bounds, bounds[1:])]
        for inbox, group in zip(self._inboxes, groups[1:]):
            inbox.put((contextvars.copy_context(), fn, group))   # the caller's context: np.errstate lives there
        error = None
        try:
            _each(fn, groups[0])
        except BaseException as e:      # noqa: BLE001 - raised below, once the pool's shares are done
            error = e
        for _ in groups[1:]:            # wait for every share before the caller reads what they wrote
            worker_error = self._done.get()
            error = error or worker_error
        if error is not None:
            raise error

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
            threading.Thread(target=_work, args=(inbox, self._done), daemon=True, name="minisparse").start()
        weakref.finalize(self, _stop, self._inboxes)

    def __repr__(self) -> str:
        return f"Threads({self.n})"


def _each(fn, items) -> None:
    for item in items:
        fn(item)


def _work(inbox: queue.SimpleQueue, done: queue.SimpleQueue) -> None:
    # a pool thread: run each share handed to it in the caller's context; put None (or the error) in `done`
    while (job := inbox.get()) is not None:
        context, fn, items = job
        try:
            context.run(_each, fn, items)
            done.put(None)
        except BaseException as e:      # noqa: BLE001 - handed to the caller, which raises it
            done.put(e)


def _stop(inboxes) -> None:
    for inbox in inboxes:
        inbox.put(None)


@functools.cache
def _blas() -> ThreadpoolController:
    # finds the BLAS libraries loaded in this process once (a few ms); limiting them afterwards costs microseconds
    return ThreadpoolController()
