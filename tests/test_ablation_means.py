"""Mean ablation is computed once per model and reused (circuits/masks.py `ablation_means`), never served stale."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from minisparse.circuits.masks import mean_ablation
from minisparse.config import ModelConfig
from minisparse.numpy import GPT

prune_module = importlib.import_module("minisparse.circuits.masks")   # the module, not what the package exports
CFG = ModelConfig(vocab_size=256, n_ctx=16, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=32)


@pytest.fixture
def counted(monkeypatch):
    """How many times the model was actually run to compute means."""
    calls = []

    def counting(model, **kwargs):
        calls.append(kwargs)
        return mean_ablation(model, **kwargs)

    monkeypatch.setattr(prune_module, "mean_ablation", counting)
    monkeypatch.setattr(prune_module, "_MEANS", {})
    return calls


def test_means_are_computed_once_per_model_and_seed(counted):
    model = GPT(CFG, seed=0)
    first = prune_module.ablation_means(model, "mean", 0)
    again = prune_module.ablation_means(GPT(CFG, params={n: w.copy() for n, w in model.params.items()}), "mean", 0)
    assert len(counted) == 1                                   # the same weights in another model: reused
    for site in first:
        np.testing.assert_array_equal(again[site], first[site])
    again[site][:] = 123.0                                     # a caller writing into its means cannot poison the cache
    assert not np.any(prune_module.ablation_means(model, "mean", 0)[site] == 123.0)
    prune_module.ablation_means(model, "mean", 1)
    assert len(counted) == 2                                   # another seed: other windows


def test_changed_weights_get_fresh_means(counted):
    model = GPT(CFG, seed=0)
    before = prune_module.ablation_means(model, "mean", 0)
    model.params["blocks.0.norm1.weight"][0] += 1.0           # one weight, in place
    after = prune_module.ablation_means(model, "mean", 0)
    assert len(counted) == 2
    assert any(not np.array_equal(before[s], after[s]) for s in before)


def test_zero_ablation_needs_no_model_run(counted):
    means = prune_module.ablation_means(GPT(CFG, seed=0), "zero")
    assert not counted and all(not mu.any() for mu in means.values())
    with pytest.raises(ValueError, match="mean"):
        prune_module.ablation_means(GPT(CFG, seed=0), "median")
