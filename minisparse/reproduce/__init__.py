"""`minisparse reproduce`: the paper's core experiment in miniature, in one resumable command.

Gao et al. (2025) train transformers with most weights held at zero, prune each to the circuit of a task, and find the
circuits many times smaller than a dense model's at the same pretraining loss. Here, on the stdlib corpus:

1. train     dense and weight-sparse models of one preset (densities 1, 1/4, 1/16, 1/64 with the first seed; dense
             and the headline density 1/16 with every seed). Every run keeps its checkpoints along training.
2. evaluate  every kept checkpoint: validation loss, and the full model's held-out loss on every task.
3. match     each sparse model with the dense checkpoint of the same seed whose validation loss is closest to its own.
4. prune     every task on every final model and on every matched dense checkpoint. The circuits of tasks a final
             model solves get the whole scorecard (`minisparse.circuits.scorecard`): both controls, zero instead of
             mean ablation, and more pruning seeds for stability.
5. report    results.json, results.md, frontier.png, per_task.png, and the best sparse circuit drawn (circuit.png) and
             read node by node (explain.md), see `minisparse.reproduce.report`.

Everything is cached under `out`: each run in its training directory (training resumes from its last checkpoint),
each evaluation and each scorecard in a JSON file of its own, written atomically. Killed at any point, the same command
continues where it stopped; nothing finished is redone. With `jobs` > 1 independent runs and prunes go to that many
worker processes, one BLAS thread each.

The rooms: `plan` (what to run), `layout` (where each file goes), `jobs` (training, evaluating, pruning one thing),
`pool` (running jobs in worker processes), `experiment` (the stages, in order), `summary` (matching, comparing, the
headline), `report` (results.md, the figures, the best circuit read).
"""

from .experiment import Reproduction
from .jobs import evaluate_job, prune_job, train_job
from .layout import Layout
from .plan import Experiment, Run
from .summary import closest_loss, compare, geomean, summarise

__all__ = ["Experiment", "Layout", "Reproduction", "Run", "closest_loss", "compare", "evaluate_job", "geomean",
           "prune_job", "summarise", "train_job"]
