"""Lesson 06's prune-and-fine-tune (`minisparse.lessons.pretraining`): one-shot magnitude pruning is the training
projection, and the fine-tuning is minisparse's own training step held at a fixed density, on the batches it says."""

import math

import numpy as np
import pytest

from minisparse.config import PRESETS
from minisparse.data import get_batch, load_corpus
from minisparse.lessons.pretraining import fixed_density, prune_and_finetune, pruned
from minisparse.numpy import GPT
from minisparse.optim import lr_at
from minisparse.sparsity import is_sparsified, k_at, min_axis
from minisparse.train import make_trainer

MODEL_CFG, TRAIN_CFG = PRESETS["tiny"]


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def _copy(params):
    return {n: w.copy() for n, w in params.items()}


def _nonzeros_at(params, density, min_per_neuron):
    """{name: (nonzeros, what the projection keeps)} for every sparsified matrix."""
    return {n: (np.count_nonzero(w), k_at(w.shape, min_axis(n), density, min_per_neuron))
            for n, w in params.items() if is_sparsified(n)}


def test_pruned_keeps_each_matrix_top_k_and_leaves_the_rest_and_the_model_alone():
    model = GPT(MODEL_CFG, seed=0)
    before = _copy(model.params)
    out = pruned(model, 1 / 4, 3)
    for name, (got, want) in _nonzeros_at(out.params, 1 / 4, 3).items():
        assert got == want, name
    for name, w in out.params.items():
        if is_sparsified(name):
            kept = w != 0
            np.testing.assert_array_equal(w[kept], before[name][kept])          # kept entries are unchanged...
            assert np.abs(before[name][~kept]).max() <= np.abs(w[kept]).max()  # ...and the dropped ones are smaller
            per_neuron = np.count_nonzero(w, axis=1 - min_axis(name))
            assert per_neuron.min() >= 3, name
        else:
            np.testing.assert_array_equal(w, before[name])
    for name, w in model.params.items():
        np.testing.assert_array_equal(w, before[name])


def test_fixed_density_holds_the_target_from_the_first_step_and_decays_the_lr_to_zero():
    cfg = fixed_density(TRAIN_CFG, 1 / 8, steps=10, lr=3e-3)
    assert [cfg.density_after(s) for s in range(10)] == [1 / 8] * 10
    assert lr_at(0, cfg) == pytest.approx(3e-3)
    assert lr_at(9, cfg) == pytest.approx(3e-4)
    assert (cfg.batch_size, cfg.seed, cfg.eps, cfg.weight_decay) == \
        (TRAIN_CFG.batch_size, TRAIN_CFG.seed, TRAIN_CFG.eps, TRAIN_CFG.weight_decay)


def test_prune_and_finetune_trains_at_the_density_and_leaves_its_input_alone(corpus):
    model = GPT(MODEL_CFG, seed=0)
    before = _copy(model.params)
    tuned, losses = prune_and_finetune(model, TRAIN_CFG, 8, 1 / 4, corpus, lr=1e-2, first_step=5)
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    for name, (got, want) in _nonzeros_at(tuned.params, 1 / 4, TRAIN_CFG.min_per_neuron).items():
        assert got == want, name
    for name, w in model.params.items():
        np.testing.assert_array_equal(w, before[name])
    x, y = get_batch(corpus.val, 16, MODEL_CFG.n_ctx, 0, 0)
    assert tuned.loss(x, y) < pruned(model, 1 / 4, TRAIN_CFG.min_per_neuron).loss(x, y)


def test_prune_and_finetune_is_the_training_step_on_the_batches_it_names(corpus):
    model = GPT(MODEL_CFG, seed=1)
    tuned, losses = prune_and_finetune(model, TRAIN_CFG, 3, 1 / 8, corpus, lr=5e-3, first_step=7)
    cfg = fixed_density(TRAIN_CFG, 1 / 8, 3, 5e-3)
    trainer = make_trainer("numpy", MODEL_CFG, cfg, params=pruned(model, 1 / 8, cfg.min_per_neuron).params)
    by_hand = [trainer.step(*get_batch(corpus.train, cfg.batch_size, MODEL_CFG.n_ctx, cfg.seed, 7 + s), s)
               for s in range(3)]
    assert losses == pytest.approx(by_hand, rel=0, abs=0)
    for name, w in trainer.numpy_params().items():
        np.testing.assert_array_equal(tuned.params[name], w)
