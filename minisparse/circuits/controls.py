"""Controls: is a circuit the model's mechanism, or something pruning can always find?

Pruning optimises thousands of binary choices against a few dozen prompts, so it can reach a low task loss with no
real mechanism behind it (Drori 2026): the ablation values and the leftover nodes can be arranged to push two logits
apart on the prompts it sees. Two controls measure how much of a circuit is explained by that alone:

- random_model: the same pruning on a randomly initialised model of the same shape, with each sparsified matrix cut
  to the trained model's number of nonzeros (largest |w| kept), so edge counts compare like with like. A random model
  has no mechanism for any task; whatever circuit it yields is what pruning can fabricate.
- shuffled_labels: the same pruning on the real model, for a nonsense version of the task whose labels are shuffled
  across prompts (pruning and held-out sets shuffled independently). A circuit for it can only memorise the prompts
  it was pruned on, so its held-out loss should sit at chance (log 2 ≈ 0.693) or worse.

A real circuit stands apart when both controls need many more nodes and edges to reach the target (or never reach
it) and do no better than chance on held-out prompts, while the real circuit generalises (`sufficiency` ≤ target).
"""

from __future__ import annotations

import numpy as np

from minisparse.params import init_params
from minisparse.sparsity import is_sparsified, topk_mask

from .circuit import Circuit
from .masks import ablation_means
from .prune import N_EVAL, N_EXAMPLES, TaskData, prune

CONTROLS = ("random_model", "shuffled_labels")


def random_model_like(model, seed: int = 1):
    """A freshly initialised model of `model`'s backend, config and dtype, each sparsified matrix keeping only as many
    nonzeros (its largest |w|) as the same matrix of `model`."""
    source = model.numpy_params()
    params = init_params(model.config, seed, next(iter(source.values())).dtype)
    for name, w in params.items():
        nnz = int(np.count_nonzero(source[name]))
        if is_sparsified(name) and nnz < w.size:
            w *= topk_mask(w, nnz)
    return type(model)(model.config, dtype=model.dtype, params=params)


def shuffled(data: TaskData, seed: int) -> TaskData:
    """The same prompts with their labels permuted: a task with no rule behind it (classes stay balanced)."""
    return data.with_labels(np.random.default_rng(seed).permutation(data.labels))


def _summary(control: Circuit, real: Circuit | None) -> dict:
    out = {"n_nodes": control.n_nodes, "n_edges": control.n_edges, "task_loss": control.task_loss,
           "sufficiency": control.sufficiency, "necessity": control.necessity, "full_loss": control.full_loss,
           "reached_target": control.reached_target}
    if real is not None:
        # how far the real circuit stands from the control: >1 means the control needed a bigger circuit
        out["nodes_vs_real"] = control.n_nodes / max(1, real.n_nodes)
        out["edges_vs_real"] = control.n_edges / max(1, real.n_edges)
        out["heldout_gap"] = control.sufficiency - real.sufficiency
    return out


def run_controls(model, task, circuit: Circuit | None = None, *, which=CONTROLS, seed: int = 0,
                 **prune_kwargs) -> dict[str, dict]:
    """Prune the controls with the same settings; {control name: its numbers, and how they compare to `circuit`}.

    prune_kwargs are those of `prune` (k_coef, steps, lr, target_loss, ablation, n_examples, n_eval, log, ...).
    """
    unknown = set(which) - set(CONTROLS)
    if unknown:
        raise ValueError(f"unknown control(s) {sorted(unknown)}; controls are {list(CONTROLS)}")
    means = prune_kwargs.pop("means", None)     # the real model's ablation means; the random model needs its own
    out = {}
    if "random_model" in which:
        c = prune(random_model_like(model, seed + 1), task, seed=seed, **prune_kwargs)
        out["random_model"] = _summary(c, circuit)
    if "shuffled_labels" in which:
        n_ctx = model.config.n_ctx
        n_examples, n_eval = prune_kwargs.pop("n_examples", N_EXAMPLES), prune_kwargs.pop("n_eval", N_EVAL)
        data = shuffled(TaskData.from_task(task, n_examples, n_ctx, "train", seed), seed + 1)
        eval_data = shuffled(TaskData.from_task(task, n_eval, n_ctx, "test", seed), seed + 2)
        c = prune(model, task, seed=seed, data=data, eval_data=eval_data, means=means, **prune_kwargs)
        out["shuffled_labels"] = _summary(c, circuit)
    return out


def prune_with_controls(model, task, *, controls=CONTROLS, **prune_kwargs) -> Circuit:
    """`prune`, then `run_controls` with the same settings; the controls' numbers go in `circuit.controls`."""
    if prune_kwargs.get("means") is None:   # computed once, shared by the real circuit and the shuffled-labels control
        prune_kwargs["means"] = ablation_means(model, prune_kwargs.get("ablation", "mean"), prune_kwargs.get("seed", 0))
    circuit = prune(model, task, **prune_kwargs)
    circuit.controls = run_controls(model, task, circuit, which=controls, **prune_kwargs)
    return circuit
