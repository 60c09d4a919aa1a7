"""The DESIGN §3 optimizer step in MLX, mirroring `minisparse.optim.optimizer_step` exactly, and a small trainer.

    gradients → rescale so their global RMS is 1 → Adam (bias-corrected) → top-k projection → decoupled weight decay

`mlx.optimizers.AdamW` is not used: it has no bias correction by default and knows nothing of the global RMS or the
projection. The whole step (forward, backward, optional gradient all-reduce, update) is one `mx.compile`d function over
explicit state `[model.state, optimizer.state]`. Everything that changes from step to step (learning rate, bias
corrections, decay factor, the k of every matrix) is computed on the host with the NumPy reference's own functions and
passed in as arrays, so the compiled graph is traced once, not once per step.
"""

from __future__ import annotations


import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..config import TrainConfig
from ..optim import densities_at, lr_at
from ..params import param_shapes
from ..sparsity import forced_count, k_at, min_axis
from .model import GPT, as_mx


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

    def schedule(self, step: int) -> tuple[mx.array, mx.array]:
        """Host-side inputs of optimizer step `step` (0-based): [lr, 1 − β1^t, 1 − β2^t, 1 − wd·lr] and, per
        sparsified matrix, how many entries the global top-k adds beyond the forced ones (k − forced)."""
        cfg, t = self.cfg, step + 1
        lr = lr_at(step, cfg)
        hyper = mx.array([lr, 1.0 - cfg.beta1 ** t, 1.0 - cfg.beta2 ** t, 1.0 - cfg.weight_decay * lr], dtype=self.dtype)
        dens = densities_at(step, self.shapes, cfg)
        needs = [k_at(self.shapes[n], axis, dens[n], cfg.min_per_neuron) - forced for n, axis, forced in self.sparse]
        return hyper, mx.array(needs, dtype=mx.int32)

    def update(self, model: nn.Module, grads, hyper: mx.array, needs: mx.array, valid: mx.array | None = None
               ) -> mx.array:
        """Apply one step to `model` and `self.state`; return per-parameter "gradient is finite" flags.

        If any gradient holds NaN or inf (or `valid`, e.g. "the loss is finite", is false), parameters and moments are
        left exactly as they were (selected with `mx.where`, since a compiled graph cannot raise); the caller reads the
        flags and raises.
        """
        cfg = self.cfg
        lr, bias1, bias2, decay = hyper[0], hyper[1], hyper[2], hyper[3]
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


class MLXTrainer:
    """Trains an MLX `GPT` with the DESIGN §3 step, one compiled function per step.

    `state` (optional) is Adam's moments as {"m": {...}, "v": {...}} of NumPy arrays, e.g. from a checkpoint of either
    backend. With `group` (an `mx.distributed` group of more than one process) gradients and losses are averaged over
    the processes: each passes its own shard of the batch (see `minisparse.mlx.distributed`).
    """

    def __init__(self, model: GPT, train_cfg: TrainConfig, state: dict | None = None, group=None):
        self.model, self.cfg = model, train_cfg
        self.optimizer = SparseAdam(train_cfg, param_shapes(model.config), dtype=model.dtype)
        if state is not None:
            self.load_opt_state(state)
        self.group = group if group is not None and group.size() > 1 else None
        self._loss_and_grad = nn.value_and_grad(model, lambda mdl, x, y: mdl.loss(x, y))
        compiled_state = [model.state, self.optimizer.state]
        self._step = mx.compile(self._train_step, inputs=compiled_state, outputs=compiled_state)
        self._eval = mx.compile(lambda x, y: model.loss(x, y), inputs=[model.state])

    def _train_step(self, x, y, hyper, needs):
        loss, grads = self._loss_and_grad(self.model, x, y)
        if self.group is not None:
            grads = nn.average_gradients(grads, group=self.group)
            loss = mx.distributed.all_sum(loss, group=self.group) / self.group.size()
        finite = self.optimizer.update(self.model, grads, hyper, needs, valid=mx.isfinite(loss))
        return loss, finite

    def step(self, x, y, step: int) -> float:
        """One optimizer step (`step` 0-based, as in `minisparse.optim.optimizer_step`) on tokens `x`, targets `y`
        [B, T]; returns the loss before the step. Raises FloatingPointError, leaving everything unchanged, if a
        gradient is not finite."""
        x, y = self._check_batch(x, y)
        hyper, needs = self.optimizer.schedule(step)
        loss, finite = self._step(x, y, hyper, needs)
        mx.eval(loss, finite, self.model.state, self.optimizer.state)
        if not finite.all().item():
            bad = [n for n, f in zip(self.optimizer.shapes, np.array(finite)) if not f]
            raise FloatingPointError(f"non-finite gradient in {bad} at step {step}; parameters left unchanged")
        if not np.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; parameters left unchanged")
        return loss.item()

    def eval_loss(self, x, y) -> float:
        x, y = self._check_batch(x, y)
        return self._eval(x, y).item()

    def _check_batch(self, x, y) -> tuple[mx.array, mx.array]:
        x, y = self.model.check_tokens(x), self.model.check_tokens(y, what="targets")
        if x.shape != y.shape:
            raise ValueError(f"tokens and targets must both have shape (batch, tokens); got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        return x, y

    # --- state in and out, for checkpoints and for resuming in either backend ------------------------------------

    def numpy_params(self) -> dict[str, np.ndarray]:
        return self.model.numpy_params()

    def numpy_opt_state(self) -> dict[str, dict[str, np.ndarray]]:
        """Adam's moments as NumPy arrays, {"m": {name: ...}, "v": {name: ...}} (as `minisparse.optim.init_state`)."""
        return {k: {n: np.array(a) for n, a in self.optimizer.state[k].items()} for k in ("m", "v")}

    def load_opt_state(self, state: dict) -> None:
        """Set Adam's moments from {"m": {...}, "v": {...}} (NumPy or MLX arrays); names and shapes must match."""
        shapes = self.optimizer.shapes
        if not isinstance(state, dict) or set(state) != {"m", "v"}:
            raise ValueError(f"optimizer state must be a dict with keys 'm' and 'v', got {sorted(state) if isinstance(state, dict) else type(state).__name__}")
        for k in ("m", "v"):
            missing, extra = sorted(set(shapes) - set(state[k])), sorted(set(state[k]) - set(shapes))
            if missing or extra:
                raise ValueError(f"optimizer state {k!r} does not match the model: missing {missing}, unexpected {extra}")
            for n, s in shapes.items():
                if tuple(state[k][n].shape) != s:
                    raise ValueError(f"optimizer state {k}[{n!r}] has shape {tuple(state[k][n].shape)}, expected {s}")
        # Replace the arrays inside the existing dicts: the compiled step holds on to these containers.
        for k in ("m", "v"):
            for n in shapes:
                self.optimizer.state[k][n] = as_mx(state[k][n], self.model.dtype)
        mx.eval(self.optimizer.state)
