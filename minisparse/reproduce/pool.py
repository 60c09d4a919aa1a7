"""Running the experiment's jobs: in this process, or in worker processes with one BLAS thread each (on a 2-core
laptop, two single-threaded processes beat one with two threads), with a progress bar."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

from ..numpy.threads import THREAD_VARIABLES
from ..rundir import METRICS_FILE


def run_jobs(jobs: list, workers: int, desc: str, progress: bool = True, total: int | None = None, done=None) -> list:
    """Run (function, args) jobs, in this process or in `workers` processes; return their results in order. The bar
    counts finished jobs, or `done()` out of `total` when given (training: steps logged so far)."""
    from tqdm.auto import tqdm

    if not jobs:
        return []
    bar = tqdm(total=total or len(jobs), desc=desc, unit="step" if total else "job", disable=not progress,
               dynamic_ncols=True, initial=done() if done else 0)
    update = (lambda: setattr(bar, "n", done()) or bar.refresh()) if done else (lambda: bar.update())
    try:
        if workers == 1:
            results = []
            for fn, args in jobs:
                results.append(fn(*args))
                update()
            return results
        with worker_pool(workers) as pool:
            futures = [pool.submit(fn, *args) for fn, args in jobs]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=5.0, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()      # a failed job stops the experiment here, with its own error
                if finished or done:
                    update() if done else bar.update(len(finished))
            return [f.result() for f in futures]
    finally:
        bar.close()


@contextmanager
def worker_pool(n: int):
    """`n` worker processes with one thread each (BLAS's and a training step's). The variables that say so stay set
    while the pool lives: it starts workers on demand, and each must see them before it imports NumPy."""
    import multiprocessing

    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: "1" for k in saved})
    try:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            yield pool
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _end_with_parent(parent: int) -> None:
    """In a worker: exit as soon as the `reproduce` that started it is gone (killed, say), rather than train or prune
    on for nobody; what it was doing is redone, from its last checkpoint, by the next run."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def logged_steps(run_dir: Path) -> int:
    """Steps a run has logged: the last whole line of its metrics.jsonl (0 before it starts)."""
    path = Path(run_dir) / METRICS_FILE
    lines = path.read_bytes().rstrip().splitlines() if path.exists() else []
    for line in reversed(lines):        # the last line may be half written
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0
