"""The experiment's jobs: module-level functions of plain arguments, so worker processes can run them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..checkpoint import load
from ..circuits import TaskData, prune, run_controls, task_losses
from ..circuits.masks import ablation_means
from ..circuits.prune import N_EVAL
from ..circuits.redundancy import disjoint_circuits, frontier_over_targets
from ..circuits.scorecard import node_jaccard
from ..config import preset
from ..data import eval_batches, load_corpus
from ..rundir import MODEL_FILE, write_json_atomic
from ..tasks import get_task
from ..train import train
from .plan import Experiment, Run

EVAL_BATCHES = 32        # validation batches (of 16 windows) behind every reported validation loss


def train_job(experiment: Experiment, run: Run, run_dir: str, progress: bool = False) -> None:
    model_cfg, train_cfg = preset(experiment.preset)
    cfg = dataclasses.replace(train_cfg, weight_density=run.density, seed=run.seed)
    run_dir = Path(run_dir)
    train(model_cfg, cfg, run_dir, backend=experiment.backend, resume=(run_dir / MODEL_FILE).exists(),
          keep_checkpoints=True, progress=progress)


def evaluate_job(experiment: Experiment, checkpoint: str, path: str) -> dict:
    """Validation loss (nats/byte) and the full model's held-out loss on every task, with its standard error over the
    prompts (whether a loss near the SOLVED line is on it by luck), saved to `path`."""
    experiment.load_tasks()
    model = load(checkpoint, backend=experiment.backend)
    cfg = model.config
    batches = eval_batches(load_corpus().val, 16, cfg.n_ctx, EVAL_BATCHES)
    val = float(np.mean([model.loss(x, y) for x, y in batches]))
    losses = {name: task_losses(model, TaskData.from_task(get_task(name), N_EVAL, cfg.n_ctx, "test", 0))
              for name in experiment.task_names}
    result = {"val_loss": val, "task_loss": {t: float(x.mean()) for t, x in losses.items()},
              "task_loss_se": {t: float(x.std(ddof=1) / np.sqrt(x.size)) for t, x in losses.items()}}
    write_json_atomic(Path(path), result)
    return result


def prune_job(experiment: Experiment, checkpoint: str, task_name: str, scorecard: str, path: str,
              circuit_path: str) -> dict:
    """Prune one task on one checkpoint; save its scorecard to `path` and the whole circuit to `circuit_path`.
    `scorecard`: "circuit" (the circuit alone), "controls" (and both controls), "full" (and zero ablation, more pruning
    seeds)."""
    experiment.load_tasks()
    model, task = load(checkpoint, backend=experiment.backend), get_task(task_name)
    means = ablation_means(model, "mean", 0)
    settings = {"steps": experiment.prune_steps}
    main = prune(model, task, means=means, seed=0, **settings)
    if scorecard in ("controls", "full"):
        main.controls = run_controls(model, task, main, means=means, seed=0, **settings)
    main.to_json(circuit_path)
    card = {"full_loss": main.full_loss, "circuit": main.record()}
    if scorecard == "full":
        card["zero_ablation"] = prune(model, task, ablation="zero", seed=0, **settings).record()
        others = [prune(model, task, means=means, seed=s, **settings) for s in range(1, experiment.prune_seeds)]
        card["seeds"] = [c.record() for c in others]
        card["stability"] = node_jaccard([set(c.nodes) for c in [main] + others])
    write_json_atomic(Path(path), card)
    return card


def targets_job(experiment: Experiment, checkpoint: str, task_name: str, path: str) -> list[dict]:
    """The circuit's size at each pruning target (`frontier_over_targets`), saved to `path`."""
    experiment.load_tasks()
    model, task = load(checkpoint, backend=experiment.backend), get_task(task_name)
    points = frontier_over_targets(model, task, means=ablation_means(model, "mean", 0), seed=0,
                                   steps=experiment.prune_steps)
    write_json_atomic(Path(path), points)
    return points


def redundancy_job(experiment: Experiment, checkpoint: str, task_name: str, path: str) -> list[dict]:
    """Disjoint circuits for one task, each pruned with the earlier ones' nodes forbidden (`disjoint_circuits`):
    [{n_nodes, n_edges, reached_target, sufficiency}], saved to `path`."""
    experiment.load_tasks()
    model, task = load(checkpoint, backend=experiment.backend), get_task(task_name)
    circuits = disjoint_circuits(model, task, solved=experiment.solved, steps=experiment.prune_steps)
    found = [{"n_nodes": c.n_nodes, "n_edges": c.n_edges, "reached_target": c.reached_target,
              "sufficiency": c.sufficiency} for c in circuits]
    write_json_atomic(Path(path), found)
    return found
