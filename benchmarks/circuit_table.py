"""Prune several tasks on trained checkpoints and print the README's circuit table (with both controls).

    python benchmarks/circuit_table.py runs/small-dense runs/small-sparse [--tasks a,b,c,d]

Each run directory must hold a `model.safetensors` (from `minisparse train`). Circuits are saved beside it as
`circuit-<task>.json`, and the sparse model's `single_double_quote` circuit is drawn to
`circuit-single_double_quote.png`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from minisparse.circuits import prune_report, results_table
from minisparse.viz import draw_circuit

PAPER_TASKS = "single_double_quote,bracket_counting,set_or_string_fixedvarname,while_return_true"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories holding model.safetensors")
    parser.add_argument("--tasks", default=PAPER_TASKS)
    args = parser.parse_args()
    rows = []
    for run in map(Path, args.runs):
        for task in args.tasks.split(","):
            t = time.perf_counter()
            circuit = prune_report(run / "model.safetensors", task, json_path=run / f"circuit-{task}.json", log=None)
            print(f"{run.name} {task}: {circuit.n_nodes} nodes, {circuit.n_edges} edges, "
                  f"{time.perf_counter() - t:.0f} s with both controls", flush=True)
            rows.append((run.name, circuit))
            if task == "single_double_quote":
                draw_circuit(circuit, run / f"circuit-{task}.png")
    print(results_table(rows))


if __name__ == "__main__":
    main()
