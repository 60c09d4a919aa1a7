"""Pruning a model to a task circuit (DESIGN §5).

1. Every node (channel of every site) gets a score τ, init N(0.1, 0.01). A node is kept while τ ≥ 0, otherwise its
   activation is replaced by its mean over pretraining text (or by 0), see `masks.py`.
2. Adam lowers   task loss + k_coef · Σ H(τ)   over τ (the model's weights never change). The penalty pushes every τ
   down; only nodes whose ablation hurts the task loss push back. Gradients are straight-through (`masks.py`).
3. The scores rank the nodes. Bisection on k finds the smallest k for which keeping the k top-ranked nodes (and
   ablating all others) gives task loss ≤ target: that set is the circuit. The search runs below the optimiser's
   own circuit (the nodes with τ ≥ 0) first, and over all nodes only if that circuit misses the target.

Task loss is the mean binary cross-entropy between the two answer tokens' logits at the last position:
with z = logit[answers[1]] − logit[answers[0]] and label y ∈ {0, 1},  loss = softplus((1 − 2y)·z) = −log σ(±z),
so only the difference of the two logits matters (log 2 ≈ 0.693 is chance).

Both backends work: a NumPy GPT gives dL/dg from its hand-written backward, an MLX GPT from autograd, through the
surface they share (`loss_and_gate_grads`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from minisparse import data as corpus_data
from minisparse.params import site_sizes, weights_digest

from .circuit import Circuit
from .edges import circuit_edges
from .masks import (
    SURROGATE_TEMPERATURE,
    ablation_means,
    gates_from_mask,
    heaviside,
    init_tau,
    keep_top,
    node_names,
    surrogate_grad,
    tau_grads,
)

# ----------------------------------------------------------------------------------------------------------------------
# Task data and task loss

@dataclass(frozen=True)
class TaskData:
    """A task's prompts as model input: idx [B, T] (prompts end at the last position), labels [B] in {0, 1},
    answer_ids [2] (the two answer tokens), tokens (the distinct token ids that appear in the prompts, padding
    excluded)."""

    idx: np.ndarray
    labels: np.ndarray
    answer_ids: np.ndarray
    tokens: np.ndarray

    @classmethod
    def from_task(cls, task, n: int, n_ctx: int, split: str = "train", seed: int = 0) -> TaskData:
        idx, labels = task.batch(n, n_ctx, split, seed)
        prompts = [corpus_data.encode(ex.prompt)[-n_ctx:] for ex in task.examples(n, split, seed)]
        tokens = np.unique(np.concatenate(prompts)).astype(np.int64)
        return cls(idx, labels, task.answer_ids, tokens)

    def with_labels(self, labels: np.ndarray) -> TaskData:
        return TaskData(self.idx, np.asarray(labels, dtype=np.int64), self.answer_ids, self.tokens)


def _signed_margins(last_logits: np.ndarray, labels: np.ndarray, answer_ids) -> tuple[np.ndarray, np.ndarray]:
    """([B] sign, [B] s = sign·z) with z = logit[a1] − logit[a0]: each prompt's loss is softplus(s)."""
    a0, a1 = (int(a) for a in answer_ids)
    z = last_logits[:, a1].astype(np.float64) - last_logits[:, a0]
    sign = 1.0 - 2.0 * np.asarray(labels, dtype=np.float64)        # +1 for answers[0], −1 for answers[1]
    return sign, sign * z


def binary_task_loss(last_logits: np.ndarray, labels: np.ndarray, answer_ids) -> tuple[float, np.ndarray]:
    """[B, V] logits at the last position, [B] labels -> (mean loss, [B] dL/dz) with z = logit[a1] − logit[a0]."""
    sign, s = _signed_margins(last_logits, labels, answer_ids)
    loss = float(np.logaddexp(0.0, s).mean())                       # softplus, overflow-free
    dz = sign * 0.5 * (1.0 + np.tanh(0.5 * s)) / len(s)             # d softplus(s)/ds = σ(s)
    return loss, dz


def task_losses(model, data: TaskData, gates: dict | None = None) -> np.ndarray:
    """[B] the task loss of each prompt of `data`, for `model` (NumPy or MLX) with the given gates {site: (g, μ)}
    (None: the full model): softplus of the signed logit difference of the two answers."""
    last = np.asarray(model.forward(data.idx, gates))[:, -1, :]
    return np.logaddexp(0.0, _signed_margins(last, data.labels, data.answer_ids)[1])


def task_loss(model, data: TaskData, gates: dict | None = None) -> float:
    """Task loss of `model` (NumPy or MLX) on `data` with the given gates {site: (g, μ)} (None: the full model)."""
    return float(task_losses(model, data, gates).mean())


def task_loss_and_gate_grads(model, data: TaskData, gates: dict) -> tuple[float, dict[str, np.ndarray]]:
    """(task loss, {site: [n] dL/dg}) at the given gates, from the NumPy backward or MLX autograd."""
    a0, a1 = (int(a) for a in data.answer_ids)

    def loss_fn(logits):
        loss, dz = binary_task_loss(logits[:, -1, :], data.labels, data.answer_ids)
        dlogits = np.zeros_like(logits)
        dlogits[:, -1, a1] = dz
        dlogits[:, -1, a0] = -dz
        return loss, dlogits

    loss, gate_grads = model.loss_and_gate_grads(data.idx, gates, loss_fn)
    return loss, {key: g.astype(np.float64) for key, g in gate_grads.items()}


# ----------------------------------------------------------------------------------------------------------------------
# Bisection

def bisect_min_k(loss_of_k: Callable[[int], float], lo: int, hi: int, target: float) -> int | None:
    """The smallest k in [lo, hi] with loss_of_k(k) ≤ target, assuming loss_of_k falls as k grows (more nodes kept,
    lower loss); None if even loss_of_k(hi) > target. Calls loss_of_k about log2(hi − lo) + 1 times."""
    if lo > hi:
        raise ValueError(f"bisect_min_k needs lo <= hi, got lo={lo}, hi={hi}")
    if loss_of_k(hi) > target:
        return None
    # invariant: loss_of_k(hi) <= target, and every k < lo is known (or assumed) > target
    while lo < hi:
        mid = (lo + hi) // 2
        if loss_of_k(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    return hi


# ----------------------------------------------------------------------------------------------------------------------
# Pruning

# Defaults sized so that pruning one task of the `small` preset takes under two minutes on a 2-core CPU (NumPy):
# each Adam step is one forward and one backward pass over N_EXAMPLES prompts.
N_EXAMPLES, N_EVAL = 32, 64

def optimise_tau(model, data: TaskData, means: dict[str, np.ndarray], *, k_coef: float, steps: int, lr: float,
                 seed: int = 0, temperature: float = SURROGATE_TEMPERATURE, betas=(0.9, 0.999), eps: float = 1e-8,
                 log: Callable[[str], None] | None = None) -> tuple[dict, dict, list[dict]]:
    """Adam on τ for `steps` full-batch steps of  task loss + k_coef·Σ H(τ).
    Returns (τ, Adam's first moment of dL/dτ (the tie-break of the ranking), history)."""
    tau = init_tau(site_sizes(model.config), seed)
    m = {key: np.zeros_like(t) for key, t in tau.items()}
    v = {key: np.zeros_like(t) for key, t in tau.items()}
    history = []
    for t in range(1, steps + 1):
        mask = {key: heaviside(x) for key, x in tau.items()}
        loss, gate_grads = task_loss_and_gate_grads(model, data, gates_from_mask(mask, means))
        grads = tau_grads(gate_grads, tau, temperature)
        for key in tau:
            g = grads[key] + k_coef * surrogate_grad(tau[key], temperature)   # d/dτ of k_coef·H(τ), surrogate again
            m[key] = betas[0] * m[key] + (1 - betas[0]) * g
            v[key] = betas[1] * v[key] + (1 - betas[1]) * g * g
            m_hat, v_hat = m[key] / (1 - betas[0] ** t), v[key] / (1 - betas[1] ** t)
            tau[key] = np.clip(tau[key] - lr * m_hat / (np.sqrt(v_hat) + eps), -1.0, 1.0)
        n_kept = int(sum(x.sum() for x in mask.values()))
        history.append({"step": t, "task_loss": loss, "n_kept": n_kept})
        if log and (t == 1 or t % max(1, steps // 10) == 0 or t == steps):
            log(f"step {t:4d}/{steps}: task loss {loss:.4f}, {n_kept} nodes kept")
    return tau, m, history


def prune(model, task, *, target_loss: float = 0.15, **kwargs) -> Circuit:
    """Prune `model` (a NumPy or MLX GPT, the backend follows the model's type) to a circuit for `task`.

    k_coef: weight of the node-count penalty; steps, lr: Adam on τ; target_loss: the task loss the circuit must reach;
    ablation: "mean" (pruned nodes output their mean over pretraining text) or "zero"; seed: τ init and mean
    windows; n_examples: prompts from the task's train templates that τ is fitted and the bisection run on;
    n_eval: prompts from its test templates that sufficiency and necessity are measured on.
    `means`, `data`, `eval_data` override the computed ones (the controls use this).
    """
    return prune_to_targets(model, task, (target_loss,), **kwargs)[0]


def prune_to_targets(model, task, targets, *, k_coef: float = 1e-3, steps: int = 100, lr: float = 0.01,
                     ablation: str = "mean", seed: int = 0, n_examples: int = N_EXAMPLES, n_eval: int = N_EVAL,
                     means: dict[str, np.ndarray] | None = None, data: TaskData | None = None,
                     eval_data: TaskData | None = None, nonzero_only: bool = True,
                     log: Callable[[str], None] | None = None) -> list[Circuit]:
    """`prune` at each of the task losses `targets`: one circuit each. τ does not depend on the target, so it is
    fitted once, and the bisections share their evaluations."""
    t0 = time.perf_counter()
    n_ctx = model.config.n_ctx
    data = data if data is not None else TaskData.from_task(task, n_examples, n_ctx, "train", seed)
    eval_data = eval_data if eval_data is not None else TaskData.from_task(task, n_eval, n_ctx, "test", seed)
    means = means if means is not None else ablation_means(model, ablation, seed)

    tau, momentum, history = optimise_tau(model, data, means, k_coef=k_coef, steps=steps, lr=lr, seed=seed, log=log)

    losses: dict[int, float] = {}

    def loss_of_k(k: int) -> float:
        if k not in losses:
            losses[k] = task_loss(model, data, gates_from_mask(keep_top(tau, k, momentum), means))
        return losses[k]

    n_total = sum(t.size for t in tau.values())
    n_chosen = int(sum(heaviside(t).sum() for t in tau.values()))      # the optimiser's own circuit: τ ≥ 0
    full_loss = task_loss(model, eval_data)
    circuits = []
    for target_loss in targets:
        # Bisect below the optimiser's circuit first: it was fitted to the task and may beat the whole model (whose
        # loss need not be ≤ target); only if it misses the target, widen to every node.
        k = bisect_min_k(loss_of_k, 0, n_chosen, target_loss)
        if k is None and n_chosen < n_total:
            k = bisect_min_k(loss_of_k, n_chosen, n_total, target_loss)
        reached = k is not None
        if not reached:     # no prefix of the ranking reaches the target: report the optimiser's own choice, flagged
            k = n_chosen
        mask = keep_top(tau, k, momentum)
        inverse = {key: 1.0 - m for key, m in mask.items()}
        edges = circuit_edges(model.numpy_params(), model.config, mask, data.tokens, data.answer_ids,
                              nonzero_only=nonzero_only)
        if log:
            log(f"bisection ({len(losses)} evaluations): {k} nodes give task loss {loss_of_k(k):.4f}; target "
                f"{target_loss} " + ("reached" if reached
                                     else "NOT reached by any prefix of the ranking: keeping the nodes with τ ≥ 0"))
        circuits.append(Circuit(
            task=getattr(task, "name", str(task)),
            nodes=node_names(mask),
            edges=edges,
            task_loss=loss_of_k(k),
            sufficiency=task_loss(model, eval_data, gates_from_mask(mask, means)),
            necessity=task_loss(model, eval_data, gates_from_mask(inverse, means)),
            full_loss=full_loss,
            target_loss=target_loss,
            reached_target=reached,
            n_total_nodes=n_total,
            answers=tuple(getattr(task, "answers", ("", ""))),
            settings={"k_coef": k_coef, "steps": steps, "lr": lr, "ablation": ablation, "seed": seed,
                      "n_examples": len(data.labels), "n_eval": len(eval_data.labels), "nonzero_only": nonzero_only,
                      "surrogate_temperature": SURROGATE_TEMPERATURE, "backend": model.backend,
                      "model_digest": weights_digest(model.numpy_params()),
                      "final_opt_loss": history[-1]["task_loss"] if history else math.nan,
                      "final_opt_nodes": history[-1]["n_kept"] if history else n_total,
                      "seconds": round(time.perf_counter() - t0, 2)},
        ))
    return circuits
