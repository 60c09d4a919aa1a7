"""The TopK SAE and the Jacobian SAE pair in MLX: the loss of `minisparse.sae.numpy`, its gradient by autograd.

Everything the NumPy twin derives by hand comes from autograd here: the gradient of the pair's loss, and φ′ itself,
which is the gradient of Σ AbsTopK(GELU(u)) with respect to u (AbsTopK ∘ GELU acts entry by entry once the kept set is
fixed, so the gradient of the sum is the diagonal of its Jacobian). Parameters are the same flat dict of names
("in.W_enc", ..., "out.b_dec") holding `mx.array`s. Shapes as in `minisparse.sae.numpy`.
"""

from __future__ import annotations

import mlx.core as mx

from minisparse.mlx.ops import abstopk, gelu


def sae_forward(x: mx.array, params: dict, k: int, prefix: str = "") -> tuple[mx.array, mx.array, mx.array]:
    # [N, D] -> ([N, D] reconstruction, [N, S] latents, [N, k] TopK's selection)
    pre = (x - params[prefix + "b_dec"]) @ params[prefix + "W_enc"].T + params[prefix + "b_enc"]     # [N, S]
    idx = mx.stop_gradient(mx.argpartition(-pre, k - 1, axis=-1)[:, :k])                           # the k largest
    s = mx.put_along_axis(mx.zeros_like(pre), idx, mx.maximum(mx.take_along_axis(pre, idx, axis=-1), 0.0), axis=-1)
    return s @ params[prefix + "W_dec"].T + params[prefix + "b_dec"], s, idx


def mlp_slope(x: mx.array, up: mx.array, b_up: mx.array, k_neuron: int) -> mx.array:
    """[N, D] MLP input -> [N, M] φ′(u) = d AbsTopK(GELU(u)) / du, u = x W_upᵀ + b_up, by autograd."""
    return mx.grad(lambda u: abstopk(gelu(u), k_neuron).sum())(x @ up.T + b_up)


def jacobian(params: dict, up: mx.array, down: mx.array, slope: mx.array, idx_in: mx.array, act_in: mx.array,
             idx_out: mx.array, act_out: mx.array) -> mx.array:
    # -> [N, k_in, k_out]: J = P[active_in] · diag(φ′) · Q[:, active_out], P = W_dec_inᵀ W_upᵀ, Q = W_downᵀ W_enc_outᵀ
    p = (up @ params["in.W_dec"]).T                                   # [S_in, M]
    qt = params["out.W_enc"] @ down                                   # [S_out, M]
    left = p[idx_in] * slope[:, None, :] * act_in[..., None]          # [N, k_in, M]
    right = qt[idx_out] * act_out[..., None]                          # [N, k_out, M]
    return left @ right.transpose(0, 2, 1)


def pair_loss(params: dict, x: mx.array, y: mx.array, slope: mx.array, up: mx.array, down: mx.array, k: int,
              lam: float) -> tuple[mx.array, tuple[mx.array, mx.array, mx.array]]:
    """(MSE_in + MSE_out + λ·mean|J|, (MSE_in, MSE_out, J)). Differentiate with `mx.value_and_grad` on params."""
    x_hat, s_in, idx_in = sae_forward(x, params, k, "in.")
    y_hat, s_out, idx_out = sae_forward(y, params, k, "out.")
    act_in = mx.stop_gradient(mx.take_along_axis(s_in, idx_in, axis=-1) > 0)
    act_out = mx.stop_gradient(mx.take_along_axis(s_out, idx_out, axis=-1) > 0)
    mse_in, mse_out = mx.mean((x_hat - x) ** 2), mx.mean((y_hat - y) ** 2)
    jac = jacobian(params, up, down, slope, idx_in, act_in, idx_out, act_out)
    return mse_in + mse_out + lam * mx.mean(mx.abs(jac)), (mse_in, mse_out, jac)


def pair_loss_and_grads(params: dict, x: mx.array, y: mx.array, slope: mx.array, up: mx.array, down: mx.array,
                        k: int, lam: float):
    """((loss, (MSE_in, MSE_out, J)), grads keyed like params)."""
    return mx.value_and_grad(pair_loss)(params, x, y, slope, up, down, k, lam)
