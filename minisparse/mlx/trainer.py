"""The MLX backend's training step: forward, autograd backward, optional gradient all-reduce and the DESIGN §3
optimizer step (`SparseAdam`), compiled into one function over explicit state `[model.state, optimizer.state]`.

`minisparse.train` drives it; `minisparse.numpy.trainer.NumpyTrainer` is its NumPy twin, with the same methods.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..config import TrainConfig
from ..params import check_shapes, param_shapes
from .model import GPT
from .ops import as_mx
from .optim import SparseAdam


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
        self._loss_and_grad = nn.value_and_grad(model, lambda mdl, x, y: mdl.loss_unchecked(x, y))
        compiled_state = [model.state, self.optimizer.state]
        self._step = mx.compile(self._train_step, inputs=compiled_state, outputs=compiled_state)
        self._eval = mx.compile(lambda x, y: model.loss_unchecked(x, y), inputs=[model.state])

    def _train_step(self, x, y, inputs):
        loss, grads = self._loss_and_grad(self.model, x, y)
        if self.group is not None:
            grads = nn.average_gradients(grads, group=self.group)
            loss = mx.distributed.all_sum(loss, group=self.group) / self.group.size()
        finite = self.optimizer.update(self.model, grads, inputs, valid=mx.isfinite(loss))
        return loss, finite, finite.all()

    def step(self, x, y, step: int) -> float:
        """One optimizer step (`step` 0-based, as in `minisparse.optim.optimizer_step`) on tokens `x`, targets `y`
        [B, T]; returns the loss before the step. Raises FloatingPointError, leaving everything unchanged, if a
        gradient is not finite.

        One round trip to the device a step: a single `mx.eval` of everything the host then reads (on a GPU, every
        extra evaluation is a wait for the device; tests/test_mlx_host_sync.py checks this)."""
        x, y = self._check_batch(x, y)
        loss, finite, all_finite = self._step(x, y, self.optimizer.schedule(step))
        mx.eval(loss, finite, all_finite, self.model.state, self.optimizer.state)
        if not all_finite.item():
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
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"optimizer state must be a dict with keys 'm' and 'v', got {got}")
        for k in ("m", "v"):
            check_shapes({n: a.shape for n, a in state[k].items()}, shapes, f"optimizer state {k!r}")
        # Replace the arrays inside the existing dicts: the compiled step holds on to these containers.
        for k in ("m", "v"):
            for n in shapes:
                self.optimizer.state[k][n] = as_mx(state[k][n], self.model.dtype)
        mx.eval(self.optimizer.state)
