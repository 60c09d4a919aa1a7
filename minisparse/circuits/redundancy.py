"""Two questions about one task's circuits beyond the first one pruning finds.

- **The frontier over targets** (the paper's Figure 2, per task): circuit size against the task loss pruning must reach.
  A stricter target needs more of the model; how fast the edge count grows says how concentrated the mechanism is.
- **Redundancy** (Drori 2026; Hao & Goldstein 2026): a circuit is one node set that does the task, perhaps of several.
  Prune, then prune again with the first circuit's nodes forbidden (held at their ablated value), and repeat until the
  task can no longer be done: the number of disjoint circuits a model holds, and the size of each. Does weight sparsity
  give one small circuit, or many?
"""

from __future__ import annotations

import numpy as np

from minisparse.params import site_sizes

from .circuit import Circuit
from .edges import circuit_edges
from .masks import ablation_means, mask_from_nodes, node_names
from .prune import N_EVAL, N_EXAMPLES, TaskData, prune, prune_to_targets, task_loss
from .scorecard import SOLVED

TARGETS = (SOLVED, 0.2, 0.15, 0.1, 0.05)   # the task losses the frontier prunes to, SOLVED down (the paper's Figure 2)


def frontier_over_targets(model, task, targets=TARGETS, **prune_kwargs) -> list[dict]:
    """[{target, n_nodes, n_edges, reached, sufficiency}] of the circuit pruned at each target task loss."""
    return [{"target": c.target_loss, "n_nodes": c.n_nodes, "n_edges": c.n_edges, "reached": c.reached_target,
             "sufficiency": c.sufficiency} for c in prune_to_targets(model, task, targets, **prune_kwargs)]


class WithoutNodes:
    """`model` with `forbidden` nodes held at their ablated values (`means`) in every forward pass: what pruning sees
    when those nodes may not be used. Answers the model surface pruning calls."""

    def __init__(self, model, forbidden, means: dict[str, np.ndarray]):
        self.model, self.means = model, means
        self.keep = {k: 1.0 - m for k, m in mask_from_nodes(forbidden, site_sizes(model.config)).items()}
        self.config, self.backend, self.dtype = model.config, model.backend, model.dtype

    def _merged(self, gates):
        # a gate g on the allowed nodes becomes g·keep: forbidden nodes output their mean whatever g says
        gates = gates or {key: (np.ones_like(keep), self.means[key]) for key, keep in self.keep.items()}
        return {key: (np.asarray(g) * self.keep[key], mu) for key, (g, mu) in gates.items()}

    def forward(self, idx, gates=None):
        return self.model.forward(idx, self._merged(gates))

    def loss_and_gate_grads(self, idx, gates, loss_fn):
        loss, grads = self.model.loss_and_gate_grads(idx, self._merged(gates), loss_fn)
        return loss, {key: g * self.keep[key] for key, g in grads.items()}       # d/dg of g·keep

    def site_activations(self, idx, gates=None):
        return self.model.site_activations(idx, self._merged(gates))

    def numpy_params(self):
        return self.model.numpy_params()


def disjoint_circuits(model, task, *, max_circuits: int = 5, solved: float = SOLVED, seed: int = 0,
                      **prune_kwargs) -> list[Circuit]:
    """Circuits pruned one after another, each with every earlier circuit's nodes forbidden, until the model (with those
    nodes ablated) no longer solves the task on held-out prompts, pruning misses its target, or `max_circuits`."""
    means = ablation_means(model, prune_kwargs.get("ablation", "mean"), seed)
    n_ctx = model.config.n_ctx
    data = TaskData.from_task(task, prune_kwargs.pop("n_examples", N_EXAMPLES), n_ctx, "train", seed)
    eval_data = TaskData.from_task(task, prune_kwargs.pop("n_eval", N_EVAL), n_ctx, "test", seed)
    circuits, forbidden = [], []
    while len(circuits) < max_circuits:
        allowed = WithoutNodes(model, forbidden, means)
        if task_loss(allowed, eval_data) > solved:        # what is left cannot do the task
            break
        c = prune(allowed, task, means=means, seed=seed, data=data, eval_data=eval_data, **prune_kwargs)
        kept = [n for n in c.nodes if n not in set(forbidden)]    # a forbidden node is ablated whatever its gate
        mask = mask_from_nodes(kept, site_sizes(model.config))
        c.nodes = node_names(mask)
        c.edges = circuit_edges(model.numpy_params(), model.config, mask, data.tokens, data.answer_ids)
        c.settings["forbidden"] = len(forbidden)
        circuits.append(c)
        if not (c.reached_target and c.nodes):       # no circuit found, or none needed: nothing more to forbid
            break
        forbidden += c.nodes
    return circuits
