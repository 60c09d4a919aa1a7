"""Checks for the circuit exercises: counting a circuit's edges (lesson 03) and the task loss pruning minimizes
(lesson 04)."""

from __future__ import annotations

import numpy as np

from minisparse.circuits.edges import circuit_edges
from minisparse.circuits.prune import binary_task_loss
from minisparse.config import ModelConfig
from minisparse.params import init_params, site_sizes
from minisparse.sparsity import is_sparsified

from .check import ExerciseError, _call, _passed, compare

__all__ = ["check_count_edges", "check_task_loss"]


# ----------------------------------------------------------------------------------------------------------------------
# Circuits (lessons 03, 04)

def _edge_case_model(seed: int):
    cfg = ModelConfig(vocab_size=16, n_ctx=8, d_model=8, n_layer=2, n_head=2, d_head=3, d_mlp=12)   # nothing square
    rng = np.random.default_rng(seed)
    params = init_params(cfg, seed, np.float64)
    for name, w in params.items():
        if is_sparsified(name):
            w *= rng.random(w.shape) < 0.3                                     # 30% of the entries nonzero
    mask = {key: (rng.random(n) < 0.5).astype(np.float64) for key, n in site_sizes(cfg).items()}
    return cfg, params, mask


def check_count_edges(fn) -> None:
    """`fn(params, config, mask)`: the number of edges between kept nodes inside the blocks: nonzero entries of
    Wq, Wk, Wv (attn_in → q, k, v), Wo (v → attn_out), Wup (mlp_in → mlp_neuron), Wdown (mlp_neuron → mlp_out)
    whose two end nodes are both kept. `mask` is {"L{l}.{site}": [n] 0/1}."""
    cases = []
    for seed in range(3):
        cfg, params, mask = _edge_case_model(seed)
        cases.append((f"a random sparse 2-layer model (seed {seed})", cfg, params, mask))
    cfg, params, mask = _edge_case_model(3)
    cases.append(("the same with every node kept", cfg, params, {k: np.ones_like(m) for k, m in mask.items()}))
    cases.append(("the same with nothing kept in layer 1", cfg, params,
                  {k: (m if k.startswith("L0") else np.zeros_like(m)) for k, m in mask.items()}))
    for label, cfg, params, mask in cases:
        expected = len(circuit_edges(params, cfg, mask))
        got = _call("count_edges", fn, params, cfg, mask)
        if got != expected:
            per = {}
            for src, dst, _ in circuit_edges(params, cfg, mask):
                key = f"{src.split('[')[0]} -> {dst.split('[')[0]}"
                per[key] = per.get(key, 0) + 1
            raise ExerciseError(f"count_edges on {label}: {got!r} edges, expected {expected}; per matrix, expected "
                                f"{per}\n  hint: weights are stored (out, in): W[dst, src] connects src → dst, so "
                                "index rows by the kept destination channels and columns by the kept sources, "
                                "and count only nonzero entries")
    _passed("count_edges", len(cases))


def check_task_loss(fn) -> None:
    """`fn(last_logits, labels, answer_ids)`: mean binary cross-entropy between the two answer tokens' logits at the
    last position, label 0 meaning answer_ids[0] is right; in nats (chance is ln 2)."""
    rng = np.random.default_rng(5)
    cases = [("random logits over 16 tokens", rng.normal(size=(8, 16)), rng.integers(0, 2, 8), np.array([3, 11])),
             ("confident right answers (logit gap 40)", None, np.array([0, 1, 1, 0]), np.array([5, 2])),
             ("confidently wrong answers (logit gap 800: exp overflows)", None, np.array([1, 0, 0]), np.array([4, 7])),
             ("answers whose ids are in decreasing order", rng.normal(size=(6, 16)), rng.integers(0, 2, 6),
              np.array([9, 1]))]
    for label, logits, labels, answers in cases:
        if logits is None:   # every prompt's right answer 40 above the other, or its wrong answer 800 above
            n, right = len(labels), "right" in label
            logits = np.zeros((n, 16))
            logits[np.arange(n), answers[labels if right else 1 - labels]] = 40.0 if right else 800.0
        expected = binary_task_loss(logits, labels, answers)[0]
        got = _call("task_loss", fn, logits.copy(), labels.copy(), answers.copy())
        compare(f"task_loss on {label}", got, expected, rtol=1e-9, atol=1e-12,
                hint="only the two answer logits count: with z = logit[a1] − logit[a0], the loss is softplus(−z) "
                     "when label 1 is right and softplus(z) when label 0 is; average over prompts, in nats, and "
                     "compute it so that a large |z| does not overflow (np.logaddexp)")
    _passed("task_loss", len(cases))
