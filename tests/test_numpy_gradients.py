"""Whole-model gradients of minisparse.numpy.GPT against central finite differences (float64), plus its input
validation, dtypes and the circuit-pruning gates.

Gradient check: loss = mean next-token cross-entropy. For every parameter tensor a random subset of entries is
perturbed by ±h (h = 1e-5) and (L(θ+h) − L(θ−h)) / 2h is compared with the analytic gradient on that subset.
Relative error is norm-based per tensor: ||a − b||₂ / max(||a||₂ + ||b||₂, 1e-4) ≤ 1e-6. The floor matters only for
gradients that are truly ~0 (dL/dbk without a sink, since softmax ignores a per-row shift; dL/dq when a repeated token
without positions makes k rows equal): analytic gives ~1e-17 round-off, FD gives 0 or a few ulps of L / 2h ≈ 1e-11,
and the floor turns the check there into |a − b| ≤ 1e-10, just above FD's own round-off.

Kinks: AbsTopK is piecewise linear; its kept set changes where the k-th and (k+1)-th largest |x| of a row swap, and an
FD step that straddles such a point measures nonsense. We avoid kinks rather than skip entries: while running the
unperturbed forward we record, at every AbsTopK call, the gap between the k-th and (k+1)-th largest |x| of every row.
If the smallest gap is below 1e-3 (a ±1e-5 parameter step moves activations by ~1e-5·O(10), below that), we redraw
the parameters (next seed) until it is not. Every sampled entry is then checked.

Parameters are drawn at unit scale (not the 0.02 init) so that every gradient is O(0.01–1) and FD round-off (~1e-10)
stays far below the tolerance.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agreement import min_topk_gap, rel_err  # tests/agreement.py
from facts import facts  # tests/facts.py
from finite_differences import central_differences  # tests/finite_differences.py
from minisparse.config import ModelConfig
from minisparse.numpy import GPT
from minisparse.numpy.layers import cross_entropy_backward, cross_entropy_forward
from minisparse.params import SITES, param_shapes, site_sizes
from strategies import examples  # tests/strategies.py: a fraction of the active hypothesis profile's examples

H_STEP = 1e-5
TOL = 1e-6
MIN_GAP = 1e-3
REL_FLOOR = 1e-4
ENTRIES_PER_TENSOR = 4


def unit_scale_params(cfg, rng):
    """float64 parameters at a scale where every path through the model carries gradient."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm_f.weight":
            params[name] = 1.0 + 0.3 * rng.standard_normal(shape)
        elif len(shape) == 2 and name not in ("wte.weight", "wpe.weight", "bigram.weight"):
            params[name] = rng.standard_normal(shape) / np.sqrt(shape[1])
        else:  # embeddings, biases, sinks, bigram
            params[name] = 0.5 * rng.standard_normal(shape)
    return params


def loss_of(model, idx, targets, gates=None):
    logits, _ = model.forward_cached(idx, gates)
    B, T, V = logits.shape
    return cross_entropy_forward(logits.reshape(B * T, V), targets.reshape(-1))[0]


def analytic(model, idx, targets, gates=None):
    logits, cache = model.forward_cached(idx, gates)
    B, T, V = logits.shape
    _, ce = cross_entropy_forward(logits.reshape(B * T, V), targets.reshape(-1))
    return model.backward(cross_entropy_backward(1.0, ce).reshape(B, T, V), cache)


def kink_free_model(cfg, B, T, seed, gates_for=None):
    """A float64 GPT with unit-scale params and a batch whose AbsTopK margins are all >= MIN_GAP (redrawing seeds)."""
    for attempt in range(50):
        rng = np.random.default_rng([seed, attempt])
        model = GPT(cfg, params=unit_scale_params(cfg, rng))
        idx = rng.integers(0, cfg.vocab_size, (B, T))
        targets = rng.integers(0, cfg.vocab_size, (B, T))
        gates = gates_for(rng) if gates_for else None
        if cfg.afrac == 1.0 or min_topk_gap(model.params, cfg, idx, gates, relative=False) >= MIN_GAP:
            return model, idx, targets, gates, rng
    raise AssertionError("could not draw a batch away from AbsTopK kinks in 50 tries")


def check_model_gradients(cfg, B, T, seed):
    model, idx, targets, _, rng = kink_free_model(cfg, B, T, seed)
    grads, gate_grads = analytic(model, idx, targets)
    assert list(grads) == list(model.params) and gate_grads == {}
    f = lambda: loss_of(model, idx, targets)  # noqa: E731
    for name, w in model.params.items():
        assert grads[name].shape == w.shape and grads[name].dtype == np.float64, name
        sel = rng.choice(w.size, size=min(ENTRIES_PER_TENSOR, w.size), replace=False)
        num = central_differences(f, w, sel, H_STEP)
        err = rel_err(grads[name].reshape(-1)[sel], num, REL_FLOOR)
        assert err <= TOL, f"{name}: relative error {err:.2e} (analytic {grads[name].reshape(-1)[sel]}, fd {num})"


configs = st.builds(
    lambda n_layer, n_head, d_head, d_model, d_mlp, vocab, n_ctx, pos_emb, sink, bigram, afrac: ModelConfig(
        vocab_size=vocab, n_ctx=n_ctx, d_model=d_model, n_layer=n_layer, n_head=n_head, d_head=d_head, d_mlp=d_mlp,
        pos_emb=pos_emb, attn_sink=sink, bigram=bigram, afrac=afrac),
    n_layer=st.integers(1, 3), n_head=st.integers(1, 3), d_head=st.integers(2, 5), d_model=st.integers(4, 10),
    d_mlp=st.integers(4, 16), vocab=st.integers(3, 12), n_ctx=st.integers(1, 6),
    pos_emb=st.sampled_from(["none", "learned"]), sink=st.booleans(), bigram=st.booleans(),
    afrac=st.sampled_from([1.0, 0.5, 0.25, 0.75]),
)


@examples(0.5)  # ~0.15 s per example
@given(cfg=configs, B=st.integers(1, 2), data=st.data(), seed=st.integers(0, 2**16))
def test_model_gradients_match_finite_differences(cfg, B, data, seed):
    T = data.draw(st.integers(1, cfg.n_ctx), label="T")
    check_model_gradients(cfg, B, T, seed)


@pytest.mark.parametrize("afrac", [1.0, 0.5])
def test_model_gradients_everything_on(afrac):
    # always covered whatever the hypothesis profile: d_head ≠ d_model / n_head, sink, bigram, learned positions
    cfg = ModelConfig(vocab_size=9, n_ctx=5, d_model=8, n_layer=2, n_head=3, d_head=3, d_mlp=12, pos_emb="learned",
                      attn_sink=True, bigram=True, afrac=afrac)
    check_model_gradients(cfg, B=2, T=5, seed=7)


@examples(0.25)
@given(afrac=st.sampled_from([1.0, 0.5]), seed=st.integers(0, 2**16))
def test_gate_gradients_match_finite_differences(afrac, seed):
    # g is a step H(τ) ∈ {0, 1} in pruning, but the gate is linear in g, so FD at fractional g checks dL/dg exactly
    cfg = ModelConfig(vocab_size=7, n_ctx=4, d_model=6, n_layer=2, n_head=2, d_head=3, d_mlp=8, afrac=afrac)
    sizes = site_sizes(cfg)
    keys = ["L0.attn_in", "L0.q", "L0.v", "L0.attn_out", "L1.k", "L1.mlp_in", "L1.mlp_neuron", "L1.mlp_out"]

    def gates_for(rng):
        return {k: (rng.random(sizes[k]), rng.standard_normal(sizes[k])) for k in keys}

    model, idx, targets, gates, rng = kink_free_model(cfg, 2, 4, seed, gates_for)
    grads, gate_grads = analytic(model, idx, targets, gates)
    assert sorted(gate_grads) == sorted(keys)
    f = lambda: loss_of(model, idx, targets, gates)  # noqa: E731
    for key, (g, _) in gates.items():
        num = central_differences(f, g, range(g.size), H_STEP)
        assert rel_err(gate_grads[key], num, REL_FLOOR) <= TOL, key
    for name in ("blocks.0.attn.q_proj.weight", "blocks.1.mlp.up_proj.weight", "wte.weight"):
        w = model.params[name]
        sel = rng.choice(w.size, size=6, replace=False)
        assert rel_err(grads[name].reshape(-1)[sel], central_differences(f, w, sel, H_STEP), REL_FLOOR) <= TOL, name


# ----------------------------------------------------------------------------------------------------------------------
# gates and sites: behaviour, not just gradients

def two_layer_model(afrac, batch):
    """A small float32 model at `afrac` and a batch of `batch` random sequences for it."""
    cfg = ModelConfig(vocab_size=11, n_ctx=6, d_model=8, n_layer=2, n_head=2, d_head=4, d_mlp=16, afrac=afrac)
    return cfg, GPT(cfg, seed=3), np.random.default_rng(0).integers(0, 11, (batch, 6))


def test_sites_are_recorded_after_abstopk():
    cfg, model, idx = two_layer_model(afrac=0.25, batch=3)
    _, cache = model.forward_cached(idx)
    sizes = site_sizes(cfg)
    assert list(cache["sites"]) == list(sizes)
    for key, n in sizes.items():
        act = cache["sites"][key]
        assert act.shape == (3, 6, n)
        assert (np.count_nonzero(act, axis=-1) <= cfg.topk(n)).all(), key


def test_open_gates_change_nothing_and_closed_gates_write_mu():
    cfg, model, idx = two_layer_model(afrac=0.5, batch=2)
    plain, _ = model.forward_cached(idx)
    sizes = site_sizes(cfg)
    ones = {k: (np.ones(n), np.full(n, 5.0)) for k, n in sizes.items()}
    gated, _ = model.forward_cached(idx, ones)
    np.testing.assert_array_equal(gated, plain)  # bit for bit
    assert gated.dtype == np.float32  # float64 gates were cast to the model's dtype, not the other way round
    # close every channel of L1.mlp_out to mu = 0 and L1's MLP is switched off: same as zeroing its down_proj
    closed = {"L1.mlp_out": (np.zeros(8), np.zeros(8))}
    zeroed = GPT(cfg, params={k: (np.zeros_like(v) if k.startswith("blocks.1.mlp.down_proj") else v.copy())
                              for k, v in model.params.items()})
    np.testing.assert_allclose(model.forward_cached(idx, closed)[0], zeroed.forward(idx), rtol=1e-6, atol=1e-6)


def test_bad_gates_are_refused():
    cfg = ModelConfig(vocab_size=11, n_ctx=6, d_model=8, n_layer=1, n_head=2, d_head=4, d_mlp=16)
    model, idx = GPT(cfg), np.zeros((1, 3), dtype=int)
    with pytest.raises(ValueError, match="unknown gate site"):
        model.forward_cached(idx, {"L1.q": (np.ones(8), np.zeros(8))})
    with pytest.raises(ValueError, match=r"must be \(8,\)"):
        model.forward_cached(idx, {"L0.q": (np.ones(7), np.zeros(7))})
    with pytest.raises(ValueError, match="pair"):
        model.forward_cached(idx, {"L0.q": np.ones(8)})



def test_the_sites_are_the_eight_of_design_1_in_forward_order_with_their_widths():
    # written out from DESIGN §1, not derived from SITES (the check used to compare SITES with itself)
    cfg = ModelConfig(vocab_size=11, n_ctx=6, d_model=8, n_layer=1, n_head=3, d_head=2, d_mlp=16)
    assert site_sizes(cfg) == {"L0.attn_in": 8, "L0.q": 6, "L0.k": 6, "L0.v": 6, "L0.attn_out": 8, "L0.mlp_in": 8,
                               "L0.mlp_neuron": 16, "L0.mlp_out": 8}
    assert SITES == tuple(key.split(".")[1] for key in site_sizes(cfg))


# ----------------------------------------------------------------------------------------------------------------------
# dtypes: float32 stays float32 end to end, float64 works end to end


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("afrac", [1.0, 0.25])
def test_dtypes_are_kept(dtype, afrac):
    cfg = ModelConfig(vocab_size=13, n_ctx=8, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32, pos_emb="learned",
                      attn_sink=True, bigram=True, afrac=afrac)
    model = GPT(cfg, seed=1, dtype=dtype)
    assert model.dtype == dtype and all(w.dtype == dtype for w in model.params.values())
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 13, (2, 8)), rng.integers(0, 13, (2, 8))
    logits, cache = model.forward_cached(idx)
    assert logits.dtype == dtype and logits.shape == (2, 8, 13)
    assert all(a.dtype == dtype for a in cache["sites"].values())
    loss, grads = model.loss_and_grads(idx, targets)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert all(g.dtype == dtype for g in grads.values())
    assert all(g.flags.c_contiguous for g in grads.values())
    grads, _ = model.backward(np.ones(logits.shape, dtype=np.float64), cache)  # a float64 dlogits is cast, not upcast
    assert all(g.dtype == dtype for g in grads.values())


def test_float32_and_float64_agree():
    cfg = ModelConfig(vocab_size=13, n_ctx=8, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32, afrac=1.0)
    idx = np.random.default_rng(0).integers(0, 13, (2, 8))
    np.testing.assert_allclose(GPT(cfg, dtype=np.float32).forward(idx), GPT(cfg, dtype=np.float64).forward(idx),
                               rtol=1e-4, atol=1e-5)


def test_loss_at_init_is_log_vocab():
    cfg = ModelConfig(vocab_size=64, n_ctx=16, d_model=32, n_layer=2, n_head=2, d_head=16)
    rng = np.random.default_rng(0)
    loss, _ = GPT(cfg).loss_and_grads(rng.integers(0, 64, (4, 16)), rng.integers(0, 64, (4, 16)))
    assert abs(loss - np.log(64)) < 0.05


# ----------------------------------------------------------------------------------------------------------------------
# input validation


@pytest.fixture(scope="module")
def small():
    cfg = ModelConfig(vocab_size=11, n_ctx=6, d_model=8, n_layer=1, n_head=2, d_head=4, d_mlp=16)
    return GPT(cfg)


def test_idx_must_be_integer(small):
    with pytest.raises(ValueError, match="integer array of token ids"):
        small.forward(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="integer array of token ids"):
        small.forward(np.zeros((1, 3), dtype=bool))


def test_idx_must_be_2d(small):
    with pytest.raises(ValueError, match=r"must be 2-D.*idx\[None, :\]"):
        small.forward(np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="must be 2-D"):
        small.forward(np.zeros((1, 1, 3), dtype=int))
    with pytest.raises(ValueError, match="at least one"):
        small.forward(np.zeros((1, 0), dtype=int))


def test_idx_must_be_in_vocab(small):
    with pytest.raises(ValueError, match=r"outside \[0, vocab_size=11\)"):
        small.forward(np.array([[0, 11]]))
    with pytest.raises(ValueError, match=r"outside \[0, vocab_size=11\)"):
        small.forward(np.array([[-1, 3]]))


def test_idx_longer_than_n_ctx(small):
    with pytest.raises(ValueError, match=facts("length 7", "n_ctx=6", "crop")):
        small.forward(np.zeros((2, 7), dtype=int))
    assert small.forward(np.zeros((2, 6), dtype=np.uint8)).shape == (2, 6, 11)  # any integer dtype, T = n_ctx is fine


def test_targets_are_checked(small):
    idx = np.zeros((2, 4), dtype=int)
    with pytest.raises(ValueError, match="targets have shape"):
        small.loss_and_grads(idx, np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="targets must be an integer"):
        small.loss_and_grads(idx, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="targets holds token ids"):
        small.loss_and_grads(idx, np.full((2, 4), 11))


def test_dlogits_shape_is_checked(small):
    _, cache = small.forward_cached(np.zeros((2, 4), dtype=int))
    with pytest.raises(ValueError, match="dlogits has shape"):
        small.backward(np.zeros((2, 3, 11), dtype=np.float32), cache)


def test_given_params_are_checked(small):
    cfg = small.config
    good = {k: v.copy() for k, v in small.params.items()}
    assert GPT(cfg, params=good).params is good  # used as given, not copied
    with pytest.raises(ValueError, match=r"missing \['lm_head.weight'\]"):
        GPT(cfg, params={k: v for k, v in good.items() if k != "lm_head.weight"})
    with pytest.raises(ValueError, match=r"unexpected \['bigram.weight'\]"):
        GPT(cfg, params={**good, "bigram.weight": np.zeros((11, 11), np.float32)})
    with pytest.raises(ValueError, match=r"'wte.weight' has shape \(11, 7\)"):
        GPT(cfg, params={**good, "wte.weight": np.zeros((11, 7), np.float32)})
    with pytest.raises(ValueError, match=facts("float32", "all float64", "got dtypes")):
        GPT(cfg, params={**good, "wte.weight": good["wte.weight"].astype(np.float64)})
    with pytest.raises(ValueError, match=facts("dtype=float64", "float32")):
        GPT(cfg, params=good, dtype=np.float64)
    as64 = {k: v.astype(np.float64) for k, v in good.items()}
    assert GPT(cfg, params=as64).dtype == np.float64
