"""The MLX Jacobian SAE pair (autograd) against the NumPy one (hand-written backward), on one small batch.

MLX runs in float32; the NumPy reference runs on the same float32 numbers in float64, so the tolerances bound MLX's
own error. The batch is fixed and its TopK selections are checked to agree first: a near tie at a TopK boundary would
let the two backends keep different latents, a true discontinuity rather than an error.
"""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

from agreement import as64, rel_err  # noqa: E402
from minisparse.config import ModelConfig  # noqa: E402
from minisparse.numpy import GPT  # noqa: E402
from minisparse.sae import MLP, init_pair, mlp_activations, mlp_forward, pair_loss_and_grads, sae_forward  # noqa: E402
from minisparse.sae import mlx as sae_mlx  # noqa: E402

LOSS_TOL, GRAD_TOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def batch():
    cfg = ModelConfig(vocab_size=256, n_ctx=8, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=64)
    model = GPT(cfg, seed=0)
    for name in ("up_proj", "down_proj"):
        model.params[f"blocks.0.mlp.{name}.weight"] *= 40.0   # GELU far from linear
    x, y = mlp_activations(model, np.random.default_rng(1).integers(0, 256, size=(2, 8)), 0)
    params = init_pair(16, 32, seed=2)
    rng = np.random.default_rng(3)
    for name in params:   # move off the init, where encoder = decoderᵀ and the biases are 0
        params[name] += (0.1 * rng.standard_normal(params[name].shape)).astype(np.float32)
    return MLP.of(model, 0), x, y, params


def test_mlx_slope_by_autograd_matches_the_formula(batch):
    mlp, x, _, _ = batch
    expected = mlp_forward(x.astype(np.float64), MLP(*(w.astype(np.float64) for w in mlp[:4]), mlp.k_neuron))[1]
    got = sae_mlx.mlp_slope(mx.array(x), mx.array(mlp.up), mx.array(mlp.b_up), mlp.k_neuron)
    assert np.array_equal(np.array(got) != 0, expected != 0)
    np.testing.assert_allclose(np.array(got), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_mlx_pair_loss_and_grads_match_numpy(batch, lam):
    mlp, x, y, params = batch
    k = 4
    p64 = as64(params)
    mlp64 = MLP(*(w.astype(np.float64) for w in mlp[:4]), mlp.k_neuron)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    out, grads = pair_loss_and_grads(p64, x64, y64, mlp64, k, lam)

    pm = {n: mx.array(w) for n, w in params.items()}
    xm, ym = mx.array(x), mx.array(y)
    for side, data in (("in.", xm), ("out.", ym)):
        got = np.sort(np.array(sae_mlx.sae_forward(data, pm, k, side)[2]), axis=1)
        expect = np.sort(sae_forward(x64 if side == "in." else y64, p64, k, side)[2], axis=1)
        assert np.array_equal(got, expect), f"the {side[:-1]}put SAE's selections differ: a near tie, pick a new seed"
    slope = sae_mlx.mlp_slope(xm, mx.array(mlp.up), mx.array(mlp.b_up), mlp.k_neuron)
    (loss, (mse_in, mse_out, jac)), g = sae_mlx.pair_loss_and_grads(pm, xm, ym, slope, mx.array(mlp.up),
                                                                     mx.array(mlp.down), k, lam)
    assert abs(loss.item() - out.loss) <= LOSS_TOL * abs(out.loss)
    assert abs(mse_in.item() - out.mse_in) <= LOSS_TOL * out.mse_in
    assert abs(mse_out.item() - out.mse_out) <= LOSS_TOL * out.mse_out
    # J's slots are ordered by each backend's selection; compare them as sets of (input, output) latent pairs
    assert np.abs(np.array(jac)).sum() == pytest.approx(np.abs(out.jacobian).sum(), rel=LOSS_TOL)
    assert set(g) == set(grads)
    scale = sum(float(np.linalg.norm(grad)) for grad in grads.values())   # the whole gradient's size
    for name in grads:
        err = rel_err(np.array(g[name]), grads[name], scale)
        assert err <= GRAD_TOL, f"{name}: relative error {err:.2e}"
