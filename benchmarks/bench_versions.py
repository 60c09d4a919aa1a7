"""A NumPy training step of two versions of minisparse, timed in turns: what a change to the step gained.

    python benchmarks/bench_versions.py c8de085 HEAD                 # two commits (the working tree: "worktree")
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_versions.py c8de085 HEAD               # one thread
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_versions.py c8de085 HEAD --processes 2 # as `reproduce --jobs 2`

Two versions cannot share a process, and in one process a variant that leaves OpenBLAS's threads spinning slows the
variant timed after it: so each version runs in its own process, `--steps` steps dense and sparse (the reference
config of bench_step.py), and the processes take turns, `--rounds` times. A round's ratio compares two processes run
back to back; the range over rounds says how much the machine moved meanwhile. The environment (thread settings) is
this process's, passed to both. `--processes N` runs N copies of a version at once (`reproduce --jobs N`'s workers)
and keeps their mean.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from bench_step import matmul_peak

ROOT = Path(__file__).resolve().parents[1]

# run inside each version's process, with that version's minisparse and this checkout's bench_step.py: the reference
# config's dense and sparse steps, interleaved, median seconds each
TIMER = """
import json, sys
sys.path.insert(0, {bench!r})
import numpy as np
from bench_step import RUNS, interleaved, trainer_stepper
times, _ = interleaved({{run: trainer_stepper("numpy", run) for run in RUNS}}, {steps})
print(json.dumps({{run: float(np.median(ts)) for run, ts in times.items()}}))
"""


def checkout(rev: str, into: Path) -> Path:
    """The package of `rev` ("worktree": this checkout as it is) under `into`."""
    if rev == "worktree":
        return ROOT
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "minisparse"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"cannot read revision {rev!r}: {archive.stderr.decode().strip()}")
    path = into / rev
    path.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(path, filter="data")
    return path


def time_version(tree: Path, steps: int, processes: int) -> dict[str, float]:
    """Median seconds per step of each run, averaged over `processes` copies of the version run at once."""
    code = TIMER.format(bench=str(ROOT / "benchmarks"), steps=steps)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=tree) for _ in range(processes)]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"timing {tree} failed:\n{err}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {run: float(np.mean([r[run] for r in results])) for run in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per process and run (median kept)")
    parser.add_argument("--processes", type=int, default=1, help="copies of each version run at once")
    args = parser.parse_args()
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINISPARSE_NUM_THREADS")
               if k in os.environ}
    print(f"{os.cpu_count()} cores, thread settings {threads or 'none (every core)'}, {args.processes} process(es) "
          f"at once, load {os.getloadavg()[0]:.1f}")
    print(f"float32 matmul peak (1024x1024): {matmul_peak():.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {rev: checkout(rev, Path(tmp)) for rev in (args.before, args.after)}
        rounds = []
        for r in range(args.rounds):
            order = (args.before, args.after) if r % 2 == 0 else (args.after, args.before)  # neither always first
            got = {rev: time_version(trees[rev], args.steps, args.processes) for rev in order}
            rounds.append(got)
            print(f"round {r + 1}: " + "; ".join(
                f"{rev} " + ", ".join(f"{run} {s * 1e3:.0f} ms" for run, s in t.items()) for rev, t in got.items()))
    print(f"\n| run | {args.before} ms | {args.after} ms | {args.after} / {args.before}, per round |")
    print("|---|---|---|---|")
    for run in rounds[0][args.before]:
        a = np.array([g[args.before][run] for g in rounds])
        b = np.array([g[args.after][run] for g in rounds])
        r = b / a
        print(f"| {run} | {np.median(a) * 1e3:.0f} | {np.median(b) * 1e3:.0f} | "
              f"median {np.median(r):.2f}, range {r.min():.2f}–{r.max():.2f} |")
    for rev in (args.before, args.after):
        r = np.array([g[rev]["sparse"] / g[rev]["dense"] for g in rounds])
        print(f"{rev}: sparse / dense step, median {np.median(r):.2f}, range {r.min():.2f}–{r.max():.2f}")
    print(f"float32 matmul peak (1024x1024), again: {matmul_peak():.1f} GFLOP/s; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
