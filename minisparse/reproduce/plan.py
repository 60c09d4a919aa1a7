"""What `minisparse reproduce` runs: the training runs (a density and a seed each) and the experiment's settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..circuits.scorecard import SOLVED
from ..config import PRESETS
from ..tasks import get_task, list_tasks, load_task_file


@dataclass(frozen=True)
class Run:
    """One training run: a density and a seed. Its name is its directory under out/models."""

    density: float
    seed: int

    @property
    def label(self) -> str:
        return "dense" if self.density == 1 else f"1/{round(1 / self.density)}"

    @property
    def name(self) -> str:
        return ("dense" if self.density == 1 else f"1in{round(1 / self.density)}") + f"-s{self.seed}"


@dataclass(frozen=True)
class Experiment:
    """Which models to train, which tasks to prune, and how.

    densities: target weight densities, each trained with the first seed; must include 1 (the dense reference).
    seeds: training seeds; the seeds after the first train only dense and `headline_density` (the headline's spread).
    tasks: task names (built-in, or registered by `task_files`); empty means every registered task.
    task_files: Python files that register user-defined tasks (`minisparse.tasks.load_task_file`), loaded in every
        process that prunes.
    prune_seeds: pruning seeds per scorecard (stability is the node Jaccard between their circuits).
    prune_steps: Adam steps on the node masks per prune.
    solved: held-out full-model task loss at or below which a model counts as solving a task.
    """

    preset: str = "reproduce"
    densities: tuple[float, ...] = (1.0, 1 / 4, 1 / 16, 1 / 64)
    seeds: tuple[int, ...] = (0, 1, 2)
    headline_density: float = 1 / 16
    tasks: tuple[str, ...] = ()
    task_files: tuple[str, ...] = ()
    prune_seeds: int = 3
    prune_steps: int = 100
    solved: float = SOLVED
    backend: str = "numpy"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known presets are {sorted(PRESETS)}")
        if 1.0 not in self.densities or not all(0 < d <= 1 for d in self.densities):
            raise ValueError(f"densities must lie in (0, 1] and include 1 (the dense reference), got {self.densities}")
        if not self.seeds or self.prune_seeds < 1 or self.prune_steps < 1:
            raise ValueError("reproduce needs at least one training seed, one pruning seed and one pruning step")
        self.load_tasks()
        for name in self.tasks:
            get_task(name)      # an unknown name is refused now, with the known ones listed, not after training

    def load_tasks(self) -> None:
        """Register the user's tasks in this process (a worker starts without them); a file is run once."""
        for path in self.task_files:
            load_task_file(path)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.tasks or tuple(list_tasks())

    def runs(self) -> list[Run]:
        # dense and the headline density first (the headline needs them), then the other densities, then more seeds
        first, rest = self.seeds[0], self.seeds[1:]
        spread = [d for d in (1.0, self.headline_density) if d in self.densities]
        others = [d for d in sorted(self.densities, reverse=True) if d not in spread]
        return [Run(d, first) for d in spread + others] + [Run(d, s) for s in rest for d in spread]

