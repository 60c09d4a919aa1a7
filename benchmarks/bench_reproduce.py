"""How long `minisparse reproduce` takes, stage by stage, beside the machine's measured matmul peak.

    python benchmarks/bench_reproduce.py                      # a tiny experiment from scratch (about a minute)
    python benchmarks/bench_reproduce.py --results runs/reproduce/results.json   # the stages of a real run

The tiny experiment is the test suite's: preset `tiny`, densities 1 and 1/4, one seed, two tasks, 4 pruning steps
(every task counted as solved, so every scorecard runs). A real run's stage times are those its last invocation
recorded (a resumed run counts only what it did itself).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile

from minisparse.backend import matmul_gflops
from minisparse.reproduce import Experiment, Reproduction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", help="a results.json written by `minisparse reproduce`")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores; float32 matmul peak "
          f"{matmul_gflops('numpy', n=1024, seconds=1.0):.1f} GFLOP/s")
    if args.results:
        results = json.loads(open(args.results).read())
        n_prunes = sum(len(by_task) for by_task in results["circuits"].values())
        where = args.results
    else:
        experiment = Experiment(preset="tiny", densities=(1.0, 0.25), seeds=(0,), headline_density=0.25,
                                tasks=("single_double_quote", "while_return_true"), prune_seeds=2, prune_steps=4,
                                solved=10.0)
        with tempfile.TemporaryDirectory() as out:
            results = Reproduction(experiment, out, jobs=args.jobs, progress=False, log=lambda *a: None).run()
        n_prunes = sum(len(by_task) for by_task in results["circuits"].values())
        where = "tiny experiment"
    print(f"{where}: {len(results['evaluations'])} checkpoints evaluated, {n_prunes} scorecards\n")
    print("| stage | seconds |\n|---|---|")
    for stage, sec in results.get("seconds", {}).items():
        print(f"| {stage} | {sec:.1f} |")


if __name__ == "__main__":
    main()
