"""Where `minisparse reproduce` keeps everything under its output folder: the one place that knows the file names.

    out/models/<run>/                      a training run (`minisparse.rundir`), its checkpoints kept along training
    out/evals/<point>.json                 a point's validation loss and held-out task losses
    out/circuits/<point>/<task>.json       a circuit's scorecard
    out/circuits/<point>/<task>.circuit.json   the circuit itself
    out/circuits/<point>/<task>.html           a real circuit in the browser (`minisparse view`)
    out/circuits/<point>/<task>.targets.json   the circuit's size at each pruning target (the headline pair)
    out/circuits/<point>/<task>.redundancy.json   the disjoint circuits (the headline pair's best task)
    out/results.json, results.md, *.png, explain.md   the summary and the report

A point is one kept checkpoint of one run, named "<run>@<step>" ("1in16-s0@3000").
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import read_configs
from ..rundir import MODEL_FILE, kept_checkpoint_file, kept_checkpoints
from .plan import Run


class Layout:
    def __init__(self, out, steps: int):
        self.out, self.steps = Path(out), steps

    def run_dir(self, run: Run | str) -> Path:
        return self.out / "models" / (run if isinstance(run, str) else run.name)

    def final_point(self, run: Run) -> str:
        return f"{run.name}@{self.steps}"

    def checkpoint(self, point: str) -> Path:
        run_name, step = point.split("@")
        return self.run_dir(run_name) / kept_checkpoint_file(int(step))

    def points(self, run: Run) -> dict[str, Path]:
        """{point: checkpoint file} of every checkpoint a run kept, by step."""
        return {f"{run.name}@{step}": path for step, path in kept_checkpoints(self.run_dir(run)).items()}

    def finished(self, run: Run) -> bool:
        path = self.run_dir(run) / MODEL_FILE
        return path.exists() and int(read_configs(path)[2]["step"]) == self.steps

    def eval_file(self, point: str) -> Path:
        return self.out / "evals" / f"{point}.json"

    def card_file(self, point: str, task_name: str) -> Path:
        return self.out / "circuits" / point / f"{task_name}.json"

    def circuit_file(self, point: str, task_name: str) -> Path:
        return self.out / "circuits" / point / f"{task_name}.circuit.json"

    def viewer_file(self, point: str, task_name: str) -> Path:
        return self.out / "circuits" / point / f"{task_name}.html"

    def targets_file(self, point: str, task_name: str) -> Path:
        return self.out / "circuits" / point / f"{task_name}.targets.json"

    def redundancy_file(self, point: str, task_name: str) -> Path:
        return self.out / "circuits" / point / f"{task_name}.redundancy.json"
