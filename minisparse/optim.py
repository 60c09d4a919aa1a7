"""One optimizer step, in the exact order of DESIGN §3 (the NumPy reference; the MLX twin mirrors it).

    gradients → rescale so their global RMS is 1 → Adam (bias-corrected) → top-k projection → decoupled weight decay

Weights and Adam moments stay dense: a weight zeroed by the projection keeps receiving updates and grows back if they
lift it into the top-k (the paper's choice).
"""

from __future__ import annotations

import math

import numpy as np

from .config import TrainConfig
from .sparsity import in_turn, is_sparsified, project_topk


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup over `warmup`·steps, then linear decay to 0.

    With `sharkfin`, multiplied by sqrt(target / density(t)): small while the model is dense, rising as it sparsifies.
    """
    warm = cfg.warmup * cfg.steps
    if step < warm:
        lr = cfg.lr * min(1.0, (step + 1) / warm)
    else:
        lr = cfg.lr * max(0.0, (cfg.steps - step) / max(cfg.steps - warm, 1.0))
    if cfg.sharkfin:
        lr *= math.sqrt(cfg.weight_density / cfg.density_after(step))
    return lr


def densities_at(step: int, names, cfg: TrainConfig) -> dict[str, float]:
    """The density each sparsified parameter is projected to after step `step`."""
    return {name: cfg.density_after(step, name) for name in names if is_sparsified(name)}


def init_state(params: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Adam's first and second moments, zero, one per parameter."""
    return {"m": {n: np.zeros_like(p) for n, p in params.items()},
            "v": {n: np.zeros_like(p) for n, p in params.items()}}


def grad_rms(grads: dict[str, np.ndarray]) -> float:
    """Root-mean-square over every entry of every gradient, accumulated in float64; inf only if a gradient is."""
    count = sum(g.size for g in grads.values())
    with np.errstate(over="ignore"):
        total = sum(float(g64 @ g64) for g64 in (g.ravel().astype(np.float64, copy=False) for g in grads.values()))
    if not 1e-200 < total < math.inf and all(np.isfinite(g).all() for g in grads.values()):
        # Finite float64 gradients above ~1e154 overflow when squared, and below ~1e-154 underflow: rescale by the
        # largest entry first (rare, so kept off the fast path).
        peak = max(float(np.abs(g).max(initial=0.0)) for g in grads.values())
        if peak == 0.0:
            return 0.0
        total = sum(float(np.sum(np.square(g / peak))) for g in grads.values())
        return peak * math.sqrt(total / count)
    return math.sqrt(total / count)


def optimizer_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], state: dict, step: int,
                   cfg: TrainConfig, each=None) -> dict[str, np.ndarray]:
    """Apply optimizer step `step` (0-based) in place to `params` and `state`; return the top-k masks.

    `each(fn, names)`, if given, calls fn(name) for every parameter name, in any order or concurrently, and returns
    once all are done (the NumPy trainer's threads): every parameter's update and projection is independent.

    A gradient holding NaN or inf is refused with a FloatingPointError before anything is changed. An update that
    overflows a weight to inf raises FloatingPointError too, but after the step was partly applied: the training loop
    then stops without saving, so the last checkpoint stays good.
    """
    if set(grads) != set(params):
        raise ValueError(f"gradients and parameters differ: missing {sorted(set(params) - set(grads))}, "
                         f"extra {sorted(set(grads) - set(params))}")
    bad_shapes = [n for n, g in grads.items() if g.shape != params[n].shape]
    if bad_shapes:
        raise ValueError(f"gradient shapes differ from their parameters for {bad_shapes}")
    rms = grad_rms(grads)
    if not math.isfinite(rms):
        bad = sorted(n for n, g in grads.items() if not np.isfinite(g).all())
        raise FloatingPointError(f"non-finite gradient in {bad} at step {step}; parameters left unchanged")
    # Normalising the global gradient RMS to 1 makes Adam's large eps (0.1) a fixed fraction of a typical gradient.
    scale = 1.0 / rms if rms > 0 else 1.0
    lr = lr_at(step, cfg)
    b1, b2, t = cfg.beta1, cfg.beta2, step + 1
    bias1, bias2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    m_all, v_all = state["m"], state["v"]

    def adam(name):
        w, g, m, v = params[name], grads[name] * scale, m_all[name], v_all[name]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        w -= lr * (m / bias1) / (np.sqrt(v / bias2) + cfg.eps)

    (each or in_turn)(adam, list(params))
    try:
        masks = project_topk(params, densities_at(step, params, cfg), cfg.min_per_neuron, each)
    except ValueError as e:  # an update overflowed a weight to inf: the run diverged (the step is half applied)
        raise FloatingPointError(f"step {step} overflowed the weights ({e})") from None
    decay = 1.0 - cfg.weight_decay * lr
    for name in masks:
        params[name] *= decay
    return masks
