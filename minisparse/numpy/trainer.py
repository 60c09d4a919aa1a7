"""The NumPy backend's training step: the hand-written backward, then the DESIGN §3 optimizer step in place.

`minisparse.train` drives it; `minisparse.mlx.trainer.MLXTrainer` is its MLX twin, with the same methods.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import TrainConfig
from ..optim import init_state, optimizer_step
from .model import GPT


class NumpyTrainer:
    """Trains a NumPy `GPT`: `model.params` and the Adam moments `state` are updated in place, step by step.

    `opt_state` (optional) is Adam's moments as {"m": {...}, "v": {...}}, e.g. from a checkpoint of either backend.
    """

    def __init__(self, model: GPT, train_cfg: TrainConfig, opt_state: dict | None = None):
        self.model, self.cfg = model, train_cfg
        self.state = opt_state if opt_state is not None else init_state(model.params)

    def step(self, x: np.ndarray, y: np.ndarray, step: int) -> float:
        """One optimizer step (`step` 0-based) on tokens `x`, targets `y` [B, T]; returns the loss before the step."""
        with np.errstate(all="ignore"):     # a diverging step overflows on its way; the check below reports it once
            loss, grads = self.model.loss_and_grads(x, y)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {step}")
        optimizer_step(self.model.params, grads, self.state, step, self.cfg)
        return loss

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.model.loss(x, y)

    def numpy_params(self) -> dict[str, np.ndarray]:
        return self.model.params

    def numpy_opt_state(self) -> dict:
        return self.state
