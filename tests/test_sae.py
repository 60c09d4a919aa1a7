"""The TopK SAE and the Jacobian SAE pair (minisparse.sae) against independent computations, in float64.

- forward values against a token-by-token loop written from the definitions;
- every hand-written gradient against central differences of the loss (relative error ≤ 1e-6, as for the model);
- the per-token Jacobian over active latents against a finite-difference Jacobian of the real MLP of a GPT block (the
  model's own layers, AbsTopK at mlp_neuron included), read in the two SAEs' bases;
- the sparsity measures on Jacobians whose answers are known by hand.
"""

import numpy as np
import pytest

from agreement import rel_err  # tests/agreement.py
from finite_differences import central_differences, gradient_errors  # tests/finite_differences.py
from minisparse.config import ModelConfig
from minisparse.numpy import GPT
from minisparse.numpy.layers import abstopk_forward, gelu_forward, linear_forward
from minisparse.sae import (
    MLP,
    active_latents,
    fvu,
    init_pair,
    init_sae,
    jacobian_factors,
    jacobian_forward,
    jacobian_sparsity,
    mlp_activations,
    mlp_forward,
    mse_backward,
    mse_forward,
    pair_loss_and_grads,
    sae_backward,
    sae_forward,
)
from minisparse.sparsity import abstopk

TOL = 1e-6


def random_sae(rng, d, s):
    """An SAE with random (not unit-norm, nonzero-bias) weights, so that every term of the backward is exercised."""
    return {"W_enc": rng.standard_normal((s, d)), "b_enc": 0.3 * rng.standard_normal(s),
            "W_dec": rng.standard_normal((d, s)), "b_dec": 0.3 * rng.standard_normal(d)}


def block_model(seed=0, d_model=16, d_mlp=64, mlp_scale=40.0):
    """A one-block float64 GPT whose MLP weights are scaled up from the 0.02 init, so GELU is far from linear."""
    cfg = ModelConfig(vocab_size=256, n_ctx=8, d_model=d_model, n_layer=1, n_head=2, d_head=8, d_mlp=d_mlp)
    model = GPT(cfg, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 100)
    for name in ("up_proj", "down_proj"):
        model.params[f"blocks.0.mlp.{name}.weight"] *= mlp_scale
        bias = model.params[f"blocks.0.mlp.{name}.bias"]
        bias[:] = rng.standard_normal(bias.shape)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# one TopK SAE


def test_sae_forward_matches_a_loop_over_tokens():
    rng = np.random.default_rng(0)
    p, k = random_sae(rng, 5, 12), 3
    x = rng.standard_normal((7, 5))
    x_hat, s, _, _ = sae_forward(x, p, k)
    for n in range(x.shape[0]):
        pre = p["W_enc"] @ (x[n] - p["b_dec"]) + p["b_enc"]
        top = np.argsort(-pre)[:k]                        # the k largest pre-activations, not the k largest |pre|
        expect = np.zeros(12)
        expect[top] = np.maximum(pre[top], 0.0)
        np.testing.assert_allclose(s[n], expect, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x_hat[n], p["W_dec"] @ expect + p["b_dec"], rtol=1e-12, atol=1e-12)
    assert (np.count_nonzero(s, axis=1) <= k).all()
    assert (s < 0).sum() == 0


def test_sae_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    p, k = random_sae(rng, 6, 15), 4
    p["b_enc"] -= 2.0                               # so that ReLU cuts some of the selected latents
    x = rng.standard_normal((9, 6))
    x_hat, s, _, cache = sae_forward(x, p, k)
    assert 0 < (s > 0).sum() < 9 * k, "some selected latents should be cut by the ReLU, to test that path too"
    _, mse_cache = mse_forward(x_hat, x)
    grads = sae_backward(mse_backward(1.0, mse_cache), cache)

    def loss():
        return mse_forward(sae_forward(x, p, k)[0], x)[0]

    numeric = {name: central_differences(loss, p[name]).reshape(p[name].shape)
               for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    for name, err in gradient_errors(grads, numeric).items():
        assert grads[name].shape == p[name].shape
        assert err <= TOL, f"{name}: relative error {err:.2e}"


def test_fvu():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 4)) + 3.0
    assert fvu(x, x) == 0.0
    assert fvu(x, np.broadcast_to(x.mean(axis=0), x.shape)) == pytest.approx(1.0)
    assert fvu(x, x + 0.1 * rng.standard_normal(x.shape)) == pytest.approx(0.01 / x.var(axis=0).mean(), rel=0.3)


# ----------------------------------------------------------------------------------------------------------------------
# the MLP as the Jacobian sees it


def test_mlp_forward_is_the_models_mlp():
    model = block_model()
    idx = np.random.default_rng(3).integers(0, 256, size=(2, 8))
    x, y = mlp_activations(model, idx, 0)
    _, cache = model.forward_cached(idx)
    y_again, slope = mlp_forward(x, MLP.of(model, 0))
    np.testing.assert_allclose(y_again, y, rtol=1e-12, atol=1e-12)
    # y is the MLP's output before mlp_out's AbsTopK: that AbsTopK of it is the model's mlp_out site
    k_out = model.config.topk(model.config.d_model)
    np.testing.assert_allclose(abstopk(y, k_out), cache["sites"]["L0.mlp_out"].reshape(y.shape), rtol=1e-12, atol=0)
    # φ′ is zero exactly on the neurons AbsTopK drops, and those are 3/4 of them
    dropped = cache["sites"]["L0.mlp_neuron"].reshape(slope.shape) == 0
    assert np.all(slope[dropped] == 0) and dropped.mean() == pytest.approx(0.75)


def test_mlp_of_refuses_a_missing_layer():
    with pytest.raises(ValueError, match="layer 1 does not exist"):
        MLP.of(block_model(), 1)


def real_mlp(x, mlp):
    """Block 0's MLP up to mlp_out's AbsTopK, written with the model's layers (not with minisparse.sae)."""
    u, _ = linear_forward(x, mlp.up, mlp.b_up)
    n, _ = abstopk_forward(gelu_forward(u)[0], mlp.k_neuron)
    return linear_forward(n, mlp.down, mlp.b_down)[0]


def test_jacobian_matches_finite_differences_of_the_real_mlp():
    """J[n, a, b] = ∂ s_out[idx_out[b]] / ∂ s_in[idx_in[a]] for s ↦ s_out(f(s W_dec_inᵀ + b_dec_in + ε)), ε the input
    SAE's error held fixed: moving input latent a by h moves the MLP's input by h·W_dec_in[:, a], from x itself."""
    model = block_model()
    mlp = MLP.of(model, 0)
    x, y = mlp_activations(model, np.random.default_rng(4).integers(0, 256, size=(2, 8)), 0)
    params = init_pair(16, 24, seed=5, dtype=np.float64)
    k, h = 4, 1e-6
    _, s_in, idx_in, _ = sae_forward(x, params, k, "in.")
    _, s_out, idx_out, _ = sae_forward(y, params, k, "out.")
    act_in, act_out = active_latents(s_in, idx_in), active_latents(s_out, idx_out)
    slope = mlp_forward(x, mlp)[1]
    jac, _ = jacobian_forward(*jacobian_factors(params, mlp), slope, idx_in, act_in, idx_out, act_out)
    assert act_in.mean() > 0.5 and act_out.mean() > 0.5

    def out_latents(x_new, n):
        # the output SAE's latents at token n's active slots (zero where a slot is inactive, as J is)
        s = sae_forward(real_mlp(x_new, mlp), params, k, "out.")[1]
        return s[0, idx_out[n]] * act_out[n]

    compared = 0
    for n in range(x.shape[0]):
        for a in range(k):
            if not act_in[n, a]:
                assert np.all(jac[n, a] == 0)
                continue
            step = h * params["in.W_dec"][:, idx_in[n, a]]
            lo, hi = x[n:n + 1] - step, x[n:n + 1] + step
            # the same neurons are kept on both sides of the step: the difference does not straddle a kink
            assert np.array_equal(mlp_forward(lo, mlp)[1] != 0, mlp_forward(hi, mlp)[1] != 0)
            num = (out_latents(hi, n) - out_latents(lo, n)) / (2 * h)
            # judged at the scale of the whole Jacobian: an entry may be 0 in exact arithmetic
            assert rel_err(jac[n, a], num, np.abs(jac).max()) <= TOL, f"token {n}, input slot {a}: {jac[n, a]} vs {num}"
            compared += 1
    assert compared >= 12
    # the AbsTopK at mlp_neuron matters: the same formula with GELU′ alone (dropped neurons too) disagrees
    gelu_slope = mlp_forward(x, mlp._replace(k_neuron=mlp.up.shape[0]))[1]
    wrong, _ = jacobian_forward(*jacobian_factors(params, mlp), gelu_slope, idx_in, act_in, idx_out, act_out)
    assert rel_err(wrong, jac, np.abs(jac).max()) > 0.05


# ----------------------------------------------------------------------------------------------------------------------
# the pair's loss and its gradient


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_pair_gradients_match_finite_differences(lam):
    model = block_model(seed=6, d_model=8, d_mlp=32)
    mlp = MLP.of(model, 0)
    x, y = mlp_activations(model, np.random.default_rng(7).integers(0, 256, size=(1, 6)), 0)
    rng = np.random.default_rng(8)
    params = {f"{side}.{n}": w for side in ("in", "out") for n, w in random_sae(rng, 8, 11).items()}
    k = 3
    out, grads = pair_loss_and_grads(params, x, y, mlp, k, lam)
    assert out.loss == pytest.approx(out.mse_in + out.mse_out + lam * np.abs(out.jacobian).mean(), rel=1e-12)
    assert np.abs(out.jacobian[out.active]).min() > 1e-4, "an entry near 0 would put |J|'s kink inside the FD step"

    def loss():
        return pair_loss_and_grads(params, x, y, mlp, k, lam)[0].loss

    numeric = {name: central_differences(loss, w).reshape(w.shape) for name, w in params.items()}
    for name, err in gradient_errors(grads, numeric).items():
        assert err <= TOL, f"{name}: relative error {err:.2e}"
    if lam == 0:   # two independent SAEs: the input SAE's gradient does not see the output at all
        _, grads_other_y = pair_loss_and_grads(params, x, 2 * y, mlp, k, lam)
        for name in ("in.W_enc", "in.b_enc", "in.W_dec", "in.b_dec"):
            np.testing.assert_array_equal(grads[name], grads_other_y[name])
        # and the Jacobian can be skipped: same loss and gradients, no J
        out_skipped, grads_skipped = pair_loss_and_grads(params, x, y, mlp, k, lam, with_jacobian=False)
        assert out_skipped.loss == out.loss and out_skipped.jacobian is None and np.isnan(out_skipped.jacobian_l1)
        for name in grads:
            np.testing.assert_array_equal(grads_skipped[name], grads[name])
    else:
        with pytest.raises(ValueError, match="needs the Jacobian"):
            pair_loss_and_grads(params, x, y, mlp, k, lam, with_jacobian=False)


def test_init_sae_has_unit_norm_decoder_and_tied_encoder():
    p = init_sae(8, 20, seed=0)
    np.testing.assert_allclose(np.linalg.norm(p["W_dec"], axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(p["W_enc"], p["W_dec"].T)
    assert p["W_dec"].dtype == np.float32


# ----------------------------------------------------------------------------------------------------------------------
# measuring Jacobian sparsity


def test_jacobian_sparsity_on_known_jacobians():
    jac = np.zeros((2, 2, 2))
    jac[0] = [[1.0, 0.0], [0.0, 0.0]]          # one entry carries everything
    jac[1] = [[0.5, 0.5], [0.5, 0.5]]          # all four equal
    active = np.ones_like(jac, dtype=bool)
    m = jacobian_sparsity(jac, active, threshold=0.6, mass=0.9)
    assert m["exact_zero"] == pytest.approx(3 / 8)
    assert m["above_threshold"] == pytest.approx(1 / 8)
    assert m["mass_fraction"] == pytest.approx((1 / 4 + 4 / 4) / 2)
    assert m["mean_abs"] == pytest.approx(3 / 8)
    # inactive entries are left out: token 0 with only its top-left entry active is one nonzero of one
    active[0] = [[True, False], [False, False]]
    m = jacobian_sparsity(jac, active, threshold=0.6, mass=0.9)
    assert m["exact_zero"] == 0.0 and m["mass_fraction"] == pytest.approx(1.0)
    assert m["above_threshold"] == pytest.approx(1 / 5)


def test_jacobian_sparsity_refuses_when_nothing_is_active():
    with pytest.raises(ValueError, match="no token has an active"):
        jacobian_sparsity(np.ones((3, 2, 2)), np.zeros((3, 2, 2), dtype=bool))


# ----------------------------------------------------------------------------------------------------------------------
# the toy model of superposition (lesson 5)


def test_toy_gradients_match_finite_differences():
    from minisparse.lessons import toy
    rng = np.random.default_rng(9)
    w, b = rng.standard_normal((3, 7)), rng.normal(-0.2, 0.3, size=7)
    x, importance = toy.sample_features(rng, 11, 7, 0.5), 0.9 ** np.arange(7)
    loss, dw, db = toy.toy_loss_and_grads(w, b, x, importance)
    assert loss == pytest.approx(np.mean(np.sum(importance * (toy.toy_forward(w, b, x) - x) ** 2, axis=1)))
    numeric = {name: central_differences(lambda: toy.toy_loss_and_grads(w, b, x, importance)[0], p).reshape(p.shape)
               for name, p in (("w", w), ("b", b))}
    for name, err in gradient_errors({"w": dw, "b": db}, numeric).items():
        assert err <= TOL, f"{name}: relative error {err:.2e}"


def test_toy_one_direction_per_feature_and_sampling():
    from minisparse.lessons import toy
    rng = np.random.default_rng(10)
    w = rng.standard_normal((5, 20))
    projected = toy.one_direction_per_feature(w)
    assert np.array_equal(np.count_nonzero(projected, axis=0), np.ones(20))
    np.testing.assert_array_equal(np.abs(projected).max(axis=0), np.abs(w).max(axis=0))   # the largest |w| stays
    x = toy.sample_features(rng, 20_000, 4, 0.9)
    assert np.mean(x == 0) == pytest.approx(0.9, abs=0.01) and x.min() >= 0 and x.max() < 1
    # a model trained on sparse features represents more features than it has dimensions; on dense ones it cannot
    w_sparse, _, _ = toy.train_toy(8, 2, 0.95, steps=1500, batch=256, seed=1)
    w_dense, _, _ = toy.train_toy(8, 2, 0.0, steps=1500, batch=256, seed=1)
    assert np.sum(np.linalg.norm(w_sparse, axis=0) > 0.5) > 2 >= np.sum(np.linalg.norm(w_dense, axis=0) > 0.5)
