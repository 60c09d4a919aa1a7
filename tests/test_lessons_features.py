"""minisparse.lessons.features: how concentrated each channel's top-activating contexts are, on activations built so
that the answer is known, against a per-channel loop, and on a model's sites."""

from collections import Counter

import numpy as np
import pytest

from minisparse.config import ModelConfig
from minisparse.lessons.features import neuron_concentration, top_context_concentration
from minisparse.numpy import GPT


def test_constructed_channels_get_the_share_and_entropy_they_were_built_with():
    rng = np.random.default_rng(0)
    n, k = 200, 10
    labels = np.arange(n) % 20                               # context i ends on byte i mod 20
    acts = rng.uniform(0.01, 0.1, size=(n, 5))               # weak everywhere...
    acts[np.flatnonzero(labels == 3)[:k], 0] = 5.0           # ...0: strongest on ten contexts, all ending on byte 3
    acts[np.arange(k), 1] = 5.0                              # 1: on ten contexts ending on ten different bytes
    six_and_four = np.r_[np.flatnonzero(labels == 1)[:6], np.flatnonzero(labels == 2)[:4]]
    acts[six_and_four, 2] = 5.0                              # 2: six on byte 1, four on byte 2
    acts[np.flatnonzero(labels == 7)[:k], 3] = 5.0           # 3: like 0, on byte 7, and far more negative on ten
    acts[np.arange(n - k, n), 3] = -50.0                     #    contexts of ten bytes: negative is off, not strong
    acts[:, 4] = -1.0
    acts[:k - 1, 4] = 1.0                                    # 4: positive on nine contexts only: not measured
    share, entropy = top_context_concentration(acts, labels, k)
    np.testing.assert_allclose(share[:4], [1.0, 0.1, 0.6, 1.0])
    np.testing.assert_allclose(entropy[:4], [0.0, np.log(10), -(0.6 * np.log(0.6) + 0.4 * np.log(0.4)), 0.0],
                               atol=1e-12)
    assert np.isnan(share[4]) and np.isnan(entropy[4])


def test_it_agrees_with_a_loop_over_channels():
    rng = np.random.default_rng(1)
    n, c, k = 300, 40, 15
    acts = rng.normal(size=(n, c)) * (rng.random((n, c)) < 0.3)   # mostly zeros, like activations after AbsTopK
    acts[:, 0] = 0.0
    acts[:3, 0] = 1.0                                              # a channel silent almost everywhere
    labels = rng.integers(0, 6, size=n)
    share, entropy = top_context_concentration(acts, labels, k)
    for j in range(c):
        if np.sum(acts[:, j] > 0) < k:
            assert np.isnan(share[j]) and np.isnan(entropy[j])
            continue
        top = np.argsort(-acts[:, j], kind="stable")[:k]
        p = np.array(list(Counter(labels[top].tolist()).values())) / k
        assert share[j] == pytest.approx(p.max())
        assert entropy[j] == pytest.approx(-(p * np.log(p)).sum())
    assert np.isnan(share[0])


def test_neuron_concentration_is_the_per_layer_measure_of_the_sites_labelled_by_the_last_byte():
    cfg = ModelConfig(vocab_size=256, n_ctx=16, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32)
    model = GPT(cfg, seed=0)
    idx = np.random.default_rng(2).integers(0, 8, size=(6, 16))
    sites = model.site_activations(idx)
    share, entropy = neuron_concentration(sites, idx, k=5)
    assert share.shape == entropy.shape == (2, 32)
    for layer in range(2):
        s, e = top_context_concentration(sites[f"L{layer}.mlp_neuron"].reshape(96, 32), idx.reshape(-1), 5)
        np.testing.assert_array_equal(share[layer], s)
        np.testing.assert_array_equal(entropy[layer], e)
    share_in, _ = neuron_concentration(sites, idx, k=5, point="mlp_in")
    assert share_in.shape == (2, 16)
    only_neurons = {key: a for key, a in sites.items() if key.endswith(".mlp_neuron")}
    np.testing.assert_array_equal(neuron_concentration(only_neurons, idx, k=5)[0], share)
    with pytest.raises(ValueError, match="no 'L\\{layer\\}.mlp_in'"):
        neuron_concentration(only_neurons, idx, k=5, point="mlp_in")


def test_bad_shapes_and_k_are_refused():
    with pytest.raises(ValueError, match="labels"):
        top_context_concentration(np.zeros((4, 2)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="k must be"):
        top_context_concentration(np.ones((4, 2)), np.zeros(4, dtype=int), k=5)
