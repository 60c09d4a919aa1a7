"""Running the lessons: each solution notebook top to bottom in a fresh kernel, in default mode (the shipped models)
or fast mode (tiny models, for CI).

    python -m minisparse.lessons check            # every lesson in default mode, a line each with its time
    python -m minisparse.lessons check --fast 03  # fast mode, the lessons whose names contain "03"
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

KERNEL = "python3"          # ipykernel's built-in spec: the kernel runs in this environment, nothing to install
LESSONS = Path(__file__).resolve().parents[2] / "lessons"


def run_notebook(path, *, fast: bool, cache=None, timeout: int = 900) -> None:
    """Execute the notebook at `path` in a fresh kernel (in its own folder); raise CellExecutionError, naming the
    cell, on the first error. The kernel inherits this environment with the lesson mode set and one BLAS thread (the
    lessons' matrices are small; spinning BLAS threads only slow a shared CPU)."""
    import nbclient
    import nbformat

    env = {"MINISPARSE_LESSON_FAST": "1" if fast else "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if cache is not None:
        env["MINISPARSE_CACHE"] = str(cache)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nb = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=timeout,
                                extra_arguments=["--IPKernelApp.log_level=40"],      # its warnings are not the lesson's
                                resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minisparse.lessons", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="run the lessons top to bottom, a line each")
    check.add_argument("--fast", action="store_true", help="tiny models (the CI mode)")
    check.add_argument("names", nargs="*", help="run only the lessons whose file names contain one of these")
    args = ap.parse_args(argv)
    paths = [p for p in sorted((LESSONS / "solutions").glob("*.ipynb"))
             if not args.names or any(n in p.name for n in args.names)]
    if not paths:
        raise SystemExit(f"no lesson in {LESSONS / 'solutions'} matches {args.names}")
    failed, start = [], time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        try:
            run_notebook(path, fast=args.fast)
            status = "ok"
        except Exception as e:          # a failing lesson is reported, and the others still run
            status, failed = f"FAILED: {str(e).strip().splitlines()[-1][:200]}", failed + [path.name]
        print(f"{path.name:42s} {time.perf_counter() - t0:6.0f} s  {status}", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(paths)} lessons in {time.perf_counter() - start:.0f} s ({'fast' if args.fast else 'default'} mode; "
          f"load average {load:.1f}, {os.cpu_count()} CPUs)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
