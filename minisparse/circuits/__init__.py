"""Task circuits (DESIGN §5): prune a model to the few nodes a task needs, count its edges, check it with controls.

    from minisparse.circuits import prune_report
    circuit = prune_report("runs/small-sparse/model.safetensors", "single_double_quote")   # prints its summary
    minisparse.viz.draw_circuit(circuit, "circuit.png")

masks.py    node masks: τ, the Heaviside step forward, the sigmoid-derivative surrogate backward, mean/zero ablation
prune.py    task loss, Adam on τ, bisection on the number of kept nodes -> Circuit
edges.py    which weights connect the kept nodes
controls.py the same pruning on a random model and on shuffled labels (is the circuit more than pruning can fake?)
circuit.py  the Circuit dataclass, JSON in and out
__init__.py prune_report (what `minisparse prune` runs: load, prune, controls, summary, JSON); tables of many
            circuits are `minisparse reproduce`'s report (minisparse.reproduce.report)
"""

from __future__ import annotations

from .circuit import Circuit
from .controls import prune_with_controls, run_controls
from .edges import circuit_edges
from .masks import mean_ablation, zero_ablation
from .prune import TaskData, bisect_min_k, prune, task_loss, task_losses

__all__ = ["Circuit", "TaskData", "bisect_min_k", "circuit_edges", "mean_ablation", "prune", "prune_report",
           "prune_with_controls", "run_controls", "task_loss", "task_losses", "zero_ablation"]


def prune_report(checkpoint, task, *, backend: str = "numpy", json_path=None, controls: bool = True,
                 log=print, **prune_kwargs) -> Circuit:
    """What `minisparse prune` runs: load a checkpoint (or take a model), prune it for a task (a name or a Task),
    run the controls, print the summary, and optionally save the circuit as JSON (`json_path`).
    prune_kwargs go to `prune` (k_coef, steps, lr, target_loss, ablation, seed, ...). To draw it (data flows one way:
    viz imports circuits, never the reverse): `minisparse.viz.draw_circuit(circuit, "circuit.png")`."""
    from minisparse.checkpoint import load
    from minisparse.tasks import get_task

    is_path = isinstance(checkpoint, (str, bytes)) or hasattr(checkpoint, "__fspath__")
    model = load(checkpoint, backend=backend) if is_path else checkpoint
    task = get_task(task) if isinstance(task, str) else task
    prune_kwargs.setdefault("log", log)
    circuit = prune_with_controls(model, task, **prune_kwargs) if controls else prune(model, task, **prune_kwargs)
    if log:
        log(circuit.summary())
    if json_path is not None:
        circuit.to_json(json_path, indent=1)
    return circuit

