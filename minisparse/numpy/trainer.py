"""The NumPy backend's training step: the hand-written backward, then the DESIGN §3 optimizer step in place.

`minisparse.train` drives it; `minisparse.mlx.trainer.MLXTrainer` is its MLX twin, with the same methods.

On several threads (threads.py) a step splits its batch: each thread runs the forward and backward of a share of the
sequences, and the gradients, each a mean over its share's tokens, are summed weighted by each share's fraction of the
tokens, in a fixed order, so a run gives the same bits every time on the same thread count (and agrees to float
rounding across counts: tests/test_numpy_threads.py). The optimizer's update and projection are then split by
parameter.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import TrainConfig
from ..optim import init_state, optimizer_step
from .model import GPT
from .threads import Threads


class NumpyTrainer:
    """Trains a NumPy `GPT`: `model.params` and the Adam moments `state` are updated in place, step by step.

    `opt_state` (optional) is Adam's moments as {"m": {...}, "v": {...}}, e.g. from a checkpoint of either backend.
    `threads`: how many threads a step runs on (threads.py; None: MINISPARSE_NUM_THREADS, else the BLAS's setting,
    else every core).
    """

    def __init__(self, model: GPT, train_cfg: TrainConfig, opt_state: dict | None = None, threads: int | None = None):
        self.model, self.cfg = model, train_cfg
        self.state = opt_state if opt_state is not None else init_state(model.params)
        self.threads = Threads(threads)

    def step(self, x: np.ndarray, y: np.ndarray, step: int) -> float:
        """One optimizer step (`step` 0-based) on tokens `x`, targets `y` [B, T]; returns the loss before the step."""
        with self.threads.own_cores():      # BLAS one thread per share (threads.py)
            with np.errstate(all="ignore"):  # a diverging step overflows on its way; the check below reports it once
                loss, grads = self._loss_and_grads(x, y)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}")
            optimizer_step(self.model.params, grads, self.state, step, self.cfg, self.threads.each)
        return loss

    def _loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        # the model's loss_and_grads, the batch's sequences shared between the threads
        x, y = np.asarray(x), np.asarray(y)
        parts = min(self.threads.n, x.shape[0]) if x.ndim == 2 and x.shape == y.shape else 1
        if parts == 1:                                  # (a malformed batch is refused here, by the model)
            return self.model.loss_and_grads(x, y)
        bounds = [x.shape[0] * i // parts for i in range(parts + 1)]
        shares = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
        results = [None] * parts

        def run(i):
            results[i] = self.model.loss_and_grads(x[shares[i]], y[shares[i]])

        self.threads.each(run, list(range(parts)))
        weights = [(s.stop - s.start) / x.shape[0] for s in shares]   # each share's fraction of the tokens
        grads = results[0][1]

        def average(name):                              # in place, share by share in order: the same bits every run
            g = grads[name]
            g *= weights[0]
            for w, (_, share_grads) in zip(weights[1:], results[1:]):
                g += w * share_grads[name]

        self.threads.each(average, list(grads))
        return sum(w * loss for w, (loss, _) in zip(weights, results)), grads

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.model.loss(x, y)

    def numpy_params(self) -> dict[str, np.ndarray]:
        return self.model.params

    def numpy_opt_state(self) -> dict:
        return self.state
