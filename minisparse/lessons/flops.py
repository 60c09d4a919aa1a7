"""Training compute, counted one way for every lesson (07, the cost of weight sparsity; 09, the capstone's table).

    training_flops_per_token(config, nnz=None)       -> TrainingFlops(stored, skipped): one token of one step
    cumulative_training_flops(model_cfg, train_cfg)  -> TrainingFlops of arrays [S + 1]: after 0, 1, ..., S steps,
                                                        the density the run's schedule had at each step
    steps_to_loss(curve, target)                     -> the step a validation curve first reaches a loss

Per token, each weight matrix used in a matrix product (`product_shapes`: every 2-D weight but the embeddings, which
are lookups) of `size` entries, `nnz` of them nonzero, costs

    stored densely ("stored"):  6·size                     2 forward, 2 for the input's gradient, 2 for the weight's
    zeros skipped ("skipped"):  2·nnz + 2·nnz + 2·size     an ideal kernel that skips every zero, an honest lower bound:
                                                           the weight's gradient stays dense, because training keeps
                                                           every entry's gradient so that a zero can grow back

and attention's two products that involve no weights, the scores q·k and the weighted sum of the values, cost
`attention_flops_per_token(config)` = 12·n_layer·n_head·d_head·n_ctx in both counts (4·d_head·n_ctx per head forward,
computed over the whole context as minisparse does, causal mask and all, and twice that backward). Multiply-adds
count 2. Norms, activations, softmax and the optimizer are left out: they are small beside the products.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minisparse.config import ModelConfig, TrainConfig
from minisparse.params import param_shapes
from minisparse.sparsity import is_sparsified, k_at, min_axis

__all__ = ["TrainingFlops", "attention_flops_per_token", "cumulative_training_flops", "product_nonzeros",
           "product_shapes", "scheduled_nonzeros", "steps_to_loss", "training_flops_per_token"]

LOOKUPS = ("wte.", "wpe.", "bigram.")      # embeddings: a row is read, nothing is multiplied


class TrainingFlops(NamedTuple):
    stored: float | np.ndarray       # every entry stored and multiplied, zeros included (what minisparse spends)
    skipped: float | np.ndarray      # an ideal kernel that skips the zeros wherever it can (a lower bound)


def product_shapes(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """{name: shape} of the weight matrices a model of this shape uses in matrix products (the embeddings are
    lookups)."""
    return {n: s for n, s in param_shapes(config).items() if len(s) == 2 and not n.startswith(LOOKUPS)}


def product_nonzeros(params: dict[str, np.ndarray]) -> int:
    """How many entries of a model's product matrices (`product_shapes`) are nonzero."""
    return sum(int(np.count_nonzero(w)) for n, w in params.items() if w.ndim == 2 and not n.startswith(LOOKUPS))


def attention_flops_per_token(config: ModelConfig) -> int:
    """Training FLOPs per token of attention's weight-free products (scores and value sums), forward and backward."""
    return 12 * config.n_layer * config.n_head * config.d_head * config.n_ctx


def _per_token(size, nnz, attention) -> TrainingFlops:
    """The one formula (module docstring), from the product matrices' entries and nonzeros and attention's FLOPs."""
    return TrainingFlops(6 * size + attention, 2 * nnz + 2 * nnz + 2 * size + attention)


def training_flops_per_token(config: ModelConfig, nnz: int | float | None = None) -> TrainingFlops:
    """Training FLOPs for one token of one step of a model of this shape whose product matrices hold `nnz` nonzeros
    in all (None: dense, every entry): (stored densely, zeros skipped), attention's products included."""
    size = sum(r * c for r, c in product_shapes(config).values())
    if nnz is None:
        nnz = size
    if not 0 <= nnz <= size:
        raise ValueError(f"nnz must be in 0..{size} (the product matrices' entries), got {nnz}")
    return _per_token(size, nnz, attention_flops_per_token(config))


def scheduled_nonzeros(model_cfg: ModelConfig, train_cfg: TrainConfig, step: int) -> int:
    """Nonzeros of the product matrices while training step `step` (0-based) runs: those the top-k projection kept
    after step `step` − 1 (`TrainConfig.density_after`, each matrix's own target, `k_at` with the minimum per neuron);
    the matrices that are never sparsified count in full."""
    return _scheduled(product_shapes(model_cfg), train_cfg, step)


def _scheduled(shapes: dict, train_cfg: TrainConfig, step: int) -> int:
    return sum(k_at(s, min_axis(n), train_cfg.density_after(step - 1, n), train_cfg.min_per_neuron)
               if is_sparsified(n) else s[0] * s[1] for n, s in shapes.items())


def cumulative_training_flops(model_cfg: ModelConfig, train_cfg: TrainConfig) -> TrainingFlops:
    """Training FLOPs after 0, 1, ..., S (the run's steps) steps of `train_cfg.batch_size` windows of `model_cfg.n_ctx`
    tokens, each step counted at the density the schedule had then (`scheduled_nonzeros`): two arrays of S + 1
    entries, starting at 0. A fractional step count reads off them with `np.interp`."""
    steps = train_cfg.steps
    tokens = train_cfg.batch_size * model_cfg.n_ctx
    shapes = product_shapes(model_cfg)
    nnz = np.array([_scheduled(shapes, train_cfg, s) for s in range(steps)], dtype=np.float64)
    per_token = _per_token(sum(r * c for r, c in shapes.values()), nnz, attention_flops_per_token(model_cfg))
    return TrainingFlops(*(np.concatenate([[0.0], np.cumsum(np.broadcast_to(f, nnz.shape) * tokens)])
                           for f in per_token))


def steps_to_loss(curve, target: float) -> float | None:
    """The training step at which a validation curve [(step, loss), ...] (in step order) first reaches `target`
    (loss ≤ target): interpolated linearly between the last validation above the target and the first at or below it;
    the first validation's step if that one is already there; None if the curve never gets there."""
    for i, (step, loss) in enumerate(curve):
        if loss <= target:
            if i == 0:
                return float(step)
            s0, l0 = curve[i - 1]
            return float(s0 + (l0 - target) / (l0 - loss) * (step - s0))
    return None
