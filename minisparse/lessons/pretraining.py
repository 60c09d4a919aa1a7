"""Prune a trained dense model and fine-tune it at a fixed weight density: the alternative to "interpretable
pretraining" (training weight-sparse from the start) that lesson 06 measures.

    model = prune_and_finetune(lesson_model("dense-matched"), train_cfg, steps=40, density=1 / 16,
                               corpus=lesson_corpus(), lr=5e-3, first_step=1500)

The fine-tuning is minisparse's own training step (`minisparse.train.make_trainer`, `minisparse.optim`): gradients,
RMS normalisation, Adam with dense moments, the top-k projection, weight decay. Only the schedule differs from a run
from scratch: the density is the target from the first step (no anneal), the learning rate falls linearly from `lr`
to 0 over `steps`, and Adam's moments start at zero (a checkpoint keeps no optimizer state). As in training, a weight
the projection zeroed keeps its gradient and its moments, and grows back if they lift it into the top-k.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from minisparse.config import TrainConfig
from minisparse.data import Corpus, get_batch
from minisparse.numpy import GPT
from minisparse.sparsity import is_sparsified, project_topk
from minisparse.train import make_trainer


def pruned(model: GPT, density: float, min_per_neuron: int) -> GPT:
    """A copy of `model` with every sparsified matrix cut to its top-k |w| at `density` (at least `min_per_neuron` per
    neuron), by the projection training uses; norms, biases and sinks unchanged. One-shot magnitude pruning."""
    params = {n: w.copy() for n, w in model.params.items()}
    project_topk(params, {n: density for n in params if is_sparsified(n)}, min_per_neuron)
    return GPT(model.config, params=params)


def fixed_density(train_cfg: TrainConfig, density: float, steps: int, lr: float) -> TrainConfig:
    """`train_cfg` for a fine-tuning of `steps` steps at `density` from the first step: no anneal, no per-parameter
    overrides, no warmup (the learning rate falls linearly from `lr` to 0)."""
    return dataclasses.replace(train_cfg, steps=steps, weight_density=density, density_overrides={}, lr=lr,
                               anneal_start=0.0, anneal_end=0.0, warmup=0.0, sharkfin=False)


def prune_and_finetune(model: GPT, train_cfg: TrainConfig, steps: int, density: float, corpus: Corpus, lr: float,
                       first_step: int = 0) -> tuple[GPT, list[float]]:
    """(the fine-tuned model, its training loss at each step): `model` magnitude-pruned to `density` (`pruned`), then
    trained `steps` steps at that density with `train_cfg`'s batch size, seed and optimizer settings (`fixed_density`).
    Batch i is `get_batch(corpus.train, ..., train_cfg.seed, first_step + i)`: with `first_step` the step `model` was
    saved at, the batches its own run would have seen next. `model` is left unchanged."""
    cfg = fixed_density(train_cfg, density, steps, lr)
    start = pruned(model, density, cfg.min_per_neuron)
    trainer = make_trainer("numpy", model.config, cfg, params=start.params)
    losses = []
    for step in range(steps):
        x, y = get_batch(corpus.train, cfg.batch_size, model.config.n_ctx, cfg.seed, first_step + step)
        losses.append(trainer.step(x, y, step))
    return GPT(model.config, params=trainer.numpy_params()), [float(v) for v in np.asarray(losses)]
