"""The DESIGN §3 optimizer step in MLX, mirroring `minisparse.optim.optimizer_step` exactly.

    gradients → rescale so their global RMS is 1 → Adam (bias-corrected) → top-k projection → decoupled weight decay

`mlx.optimizers.AdamW` is not used: it has no bias correction by default and knows nothing of the global RMS or the
projection. The update is pure MLX, so the trainer (`trainer.py`) compiles it together with the forward and backward
passes into one function. Everything that changes from step to step (learning rate, bias corrections, decay factor,
the k of every matrix) is computed on the host with the NumPy reference's own functions and passed in as arrays, so the
compiled graph is traced once, not once per step.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..config import TrainConfig
from ..optim import densities_at, lr_at
from ..sparsity import forced_count, k_at, min_axis


def project_matrix(w: mx.array, need: mx.array, j: int) -> mx.array:
    """The top-k projection of one matrix: zero all but the kept entries of `w`, whose units (neurons, tokens) are rows.

    Each row keeps its top `j` |w| (the minimum per neuron); then the `need` largest |w| among the other entries
    are kept too: `rows·j + max(need, 0)` entries in all, as in `minisparse.sparsity.topk_mask`. `need` is an array so
    that a changing k does not retrace a compiled step; hence a full sort and a rank test rather than a static top-k.
    """
    # [U, F], int, int -> [U, F]
    U, F = w.shape
    if j >= F:                                     # every entry is forced
        return w
    a = mx.abs(w)
    forced = mx.zeros(w.shape, dtype=mx.bool_)
    if j > 0:
        top = mx.argpartition(-a, kth=j - 1, axis=1)[:, :j]                                 # [U, j]
        forced = mx.put_along_axis(forced, top, mx.array(True), axis=1)
    key = mx.where(forced, -1.0, a).reshape(-1)    # forced entries rank last among the free ones (|w| >= 0 > -1)
    order = mx.argsort(-key)                       # [U·F] positions, largest free |w| first
    rank = mx.put_along_axis(mx.zeros(order.shape, dtype=mx.int32), order, mx.arange(U * F, dtype=mx.int32), axis=0)
    keep = forced | (rank < need).reshape(U, F)
    return mx.where(keep, w, 0.0)


class SparseAdam:
    """Adam with global gradient-RMS normalisation, top-k weight projection and decoupled weight decay (DESIGN §3).

    `state` is {"m": {name: array}, "v": {name: array}}, the layout of `minisparse.optim.init_state`. `update` is pure
    MLX (no host syncs), so it can run inside `mx.compile`; `schedule(step)` gives its per-step host inputs.
    """

    def __init__(self, cfg: TrainConfig, shapes: dict[str, tuple[int, ...]], dtype: mx.Dtype = mx.float32):
        self.cfg, self.shapes, self.dtype = cfg, dict(shapes), dtype
        self.state = {"m": {n: mx.zeros(s, dtype=dtype) for n, s in shapes.items()},
                      "v": {n: mx.zeros(s, dtype=dtype) for n, s in shapes.items()}}
        # Sparsified matrices in a fixed order: (name, min-j axis, entries forced by the minimum per neuron).
        self.sparse = [(n, min_axis(n), forced_count(s, min_axis(n), cfg.min_per_neuron))
                       for n, s in shapes.items() if min_axis(n) is not None]

    def schedule(self, step: int) -> dict[str, mx.array]:
        """Host-side inputs of optimizer step `step` (0-based), by name: the learning rate `lr`, Adam's bias
        corrections `bias1` = 1 − β1^t and `bias2` = 1 − β2^t, the weight-decay factor `decay` = 1 − wd·lr, and
        `needs`: per sparsified matrix, how many entries the global top-k adds beyond the forced ones (k − forced)."""
        cfg, t = self.cfg, step + 1
        lr = lr_at(step, cfg)
        dens = densities_at(step, self.shapes, cfg)
        needs = [k_at(self.shapes[n], axis, dens[n], cfg.min_per_neuron) - forced for n, axis, forced in self.sparse]
        scalars = {"lr": lr, "bias1": 1.0 - cfg.beta1 ** t, "bias2": 1.0 - cfg.beta2 ** t,
                   "decay": 1.0 - cfg.weight_decay * lr}
        return {**{k: mx.array(v, dtype=self.dtype) for k, v in scalars.items()},
                "needs": mx.array(needs, dtype=mx.int32)}

    def update(self, model: nn.Module, grads, inputs: dict[str, mx.array], valid: mx.array | None = None) -> mx.array:
        """Apply one step to `model` and `self.state`, with the `inputs` of `schedule`; return per-parameter "gradient
        is finite" flags.

        If any gradient holds NaN or inf (or `valid`, e.g. "the loss is finite", is false), parameters and moments are
        left exactly as they were (selected with `mx.where`, since a compiled graph cannot raise); the caller reads the
        flags and raises.
        """
        cfg = self.cfg
        lr, bias1, bias2, decay, needs = (inputs[k] for k in ("lr", "bias1", "bias2", "decay", "needs"))
        g_flat = dict(tree_flatten(grads))
        w_flat = dict(tree_flatten(model.parameters()))
        finite = mx.stack([mx.isfinite(g_flat[n]).all() for n in self.shapes])
        ok = finite.all() if valid is None else finite.all() & valid
        # Normalising the global gradient RMS to 1 makes Adam's large eps (0.1) a fixed fraction of a typical gradient.
        # The NumPy reference sums squares in float64; here (float32 on a GPU) dividing by the largest |g| first keeps
        # g² from overflowing (|g| ~ 1e20) or underflowing (|g| ~ 1e-25).
        count = sum(g.size for g in g_flat.values())
        gmax = mx.max(mx.stack([mx.abs(g).max() for g in g_flat.values()]))
        gmax = mx.where(gmax > 0, gmax, 1.0)
        rms = gmax * mx.sqrt(sum(mx.sum(mx.square(g / gmax)) for g in g_flat.values()) / count)
        scale = mx.where(rms > 0, 1.0 / rms, 1.0)
        m_all, v_all = self.state["m"], self.state["v"]
        new_w = {}
        for name in self.shapes:
            g = g_flat[name] * scale
            m = cfg.beta1 * m_all[name] + (1.0 - cfg.beta1) * g
            v = cfg.beta2 * v_all[name] + (1.0 - cfg.beta2) * (g * g)
            new_w[name] = w_flat[name] - lr * (m / bias1) / (mx.sqrt(v / bias2) + cfg.eps)
            m_all[name] = mx.where(ok, m, m_all[name])
            v_all[name] = mx.where(ok, v, v_all[name])
        for i, (name, axis, _) in enumerate(self.sparse):
            w = new_w[name] if axis == 0 else new_w[name].T        # units as rows
            w = project_matrix(w, needs[i], min(cfg.min_per_neuron, w.shape[1])) * decay
            new_w[name] = w if axis == 0 else w.T
        model.update(tree_unflatten([(n, mx.where(ok, new_w[n], w_flat[n])) for n in self.shapes]))
        return finite
