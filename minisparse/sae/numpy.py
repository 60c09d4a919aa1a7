"""TopK sparse autoencoders and the Jacobian SAE pair in NumPy, with hand-written backprop.

A TopK SAE (Gao et al. 2024) rewrites an activation x as a few of many learned directions:

    pre   = (x − b_dec) W_encᵀ + b_enc          the S latents' pre-activations
    s     = ReLU(TopK_k(pre))                    at most k latents nonzero per token
    x̂     = s W_decᵀ + b_dec                     W_dec's S columns (unit norm) are the latents' directions

A Jacobian SAE pair (Farnik et al. 2025) puts one TopK SAE on an MLP's input and one on its output, and asks that each
output latent depend on few input latents. With the MLP y = W_down φ(W_up x + b_up) + b_down, the Jacobian of the
output latents with respect to the input latents is, per token,

    J = P[active_in] · diag(φ′(u)) · Q[:, active_out]        with P = W_dec_inᵀ W_upᵀ [S_in, M]
                                                               and  Q = W_downᵀ W_enc_outᵀ [M, S_out]

a [k_in, k_out] matrix: J[a, b] = ∂ s_out[active_out[b]] / ∂ s_in[active_in[a]]. Only active latents are used; the
[S_in, S_out] Jacobian is never formed. Loss = MSE_in + MSE_out + λ·mean|J|.

The MLP here is block `layer` of a minisparse GPT (DESIGN §1), from its input to its output:

    x = the mlp_in site (after RMSNorm and AbsTopK)
    y = W_down · AbsTopK(GELU(W_up x + b_up)) + b_down       the mlp_out site *before* its AbsTopK

so φ = AbsTopK ∘ GELU, and φ′(u) = keep ⊙ GELU′(u): AbsTopK is locally a fixed mask (which neurons are kept changes
only where two |GELU(u)| tie at the k-th place, a set of measure zero), so its derivative is 1 on the kept neurons and
0 on the dropped ones. y is read before mlp_out's AbsTopK: the output SAE sees everything the MLP computes, and Q stays
one matrix for all tokens (after the AbsTopK it would carry a per-token mask between W_down and W_enc_out).

Exactly which function J is the derivative of: s ↦ s_out(f(s W_dec_inᵀ + b_dec_in + ε)) at s = s_in(x), where f is
the MLP above, s_out the output SAE's latents (their values on the active set) and ε = x − x̂_in is the input SAE's
reconstruction error, held fixed. So J is evaluated where the MLP sees its real input x, as in Farnik et al.
Active latents are the nonzero ones: TopK's selected latents whose pre-activation is positive.

Shapes: N tokens, D width of the SAE's input, S latents, k latents kept per token, M MLP neurons.
Parameters are flat dicts: an SAE has W_enc [S, D], b_enc [S], W_dec [D, S], b_dec [D] (weights stored (out, in),
as in the model); a pair prefixes them with "in." and "out.".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minisparse.numpy.layers import gelu_backward, gelu_forward, scatter_rows
from minisparse.sparsity import abstopk_mask

SAE_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


# ----------------------------------------------------------------------------------------------------------------------
# one TopK SAE


def init_sae(d_in: int, n_latents: int, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Random unit-norm decoder directions, the encoder their transpose (Gao et al. 2024's init), zero biases."""
    rng = np.random.default_rng(seed)
    w_dec = rng.standard_normal((d_in, n_latents))
    w_dec /= np.linalg.norm(w_dec, axis=0, keepdims=True)
    return {"W_enc": w_dec.T.astype(dtype), "b_enc": np.zeros(n_latents, dtype), "W_dec": w_dec.astype(dtype),
            "b_dec": np.zeros(d_in, dtype)}


def normalize_decoder(params: dict[str, np.ndarray], prefix: str = "") -> None:
    """Rescale the decoder's columns to unit norm, in place. Without this a Jacobian penalty is cheated by scale:
    shrinking a latent's decoder column and growing its activation leaves x̂ unchanged but shrinks J."""
    w = params[prefix + "W_dec"]
    w /= np.maximum(np.linalg.norm(w, axis=0, keepdims=True), 1e-12)


def topk_latents(pre: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    # [N, S], int -> ([N, k] int indices of the k largest pre-activations, [N, k] their ReLU'd values)
    idx = np.argpartition(pre, pre.shape[1] - k, axis=1)[:, pre.shape[1] - k:]
    return idx, np.maximum(np.take_along_axis(pre, idx, axis=1), 0.0)


def sae_forward(x: np.ndarray, params: dict[str, np.ndarray], k: int, prefix: str = ""):
    # [N, D] -> ([N, D] reconstruction x̂, [N, S] latents s (k or fewer nonzero), [N, k] TopK's selection, cache)
    w_enc, b_enc, w_dec, b_dec = (params[prefix + n] for n in SAE_PARAMS)
    xc = x - b_dec                                           # [N, D]
    pre = xc @ w_enc.T
    pre += b_enc                                             # [N, S]
    idx, val = topk_latents(pre, k)                          # [N, k], [N, k]
    s = np.zeros_like(pre)
    np.put_along_axis(s, idx, val, axis=1)                   # [N, S]
    x_hat = s @ w_dec.T
    x_hat += b_dec                                           # [N, D]
    return x_hat, s, idx, (xc, s, w_enc, w_dec)


def sae_backward(dx_hat: np.ndarray, cache) -> dict[str, np.ndarray]:
    # [N, D] dL/dx̂ -> {W_enc, b_enc, W_dec, b_dec: gradient}. The selection is piecewise constant: no gradient.
    xc, s, w_enc, w_dec = cache
    ds = dx_hat @ w_dec                                      # [N, S]
    ds *= s > 0                                              # through ReLU ∘ TopK: active latents only
    dxc = ds @ w_enc                                         # [N, D]
    return {"W_enc": ds.T @ xc, "b_enc": ds.sum(axis=0), "W_dec": dx_hat.T @ s,
            "b_dec": dx_hat.sum(axis=0) - dxc.sum(axis=0)}   # b_dec is both subtracted (encoder) and added (decoder)


def mse_forward(x_hat: np.ndarray, x: np.ndarray):
    # [N, D], [N, D] -> (mean squared error over every entry, cache)
    err = x_hat - x
    return float(np.mean(err * err)), err


def mse_backward(dloss: float, cache) -> np.ndarray:
    err = cache
    return err * (2.0 * dloss / err.size)


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Fraction of variance unexplained: Σ‖x̂ − x‖² / Σ‖x − mean(x)‖² (0 = perfect, 1 = no better than the mean)."""
    x64 = x.astype(np.float64)
    return float(np.sum((x_hat - x64) ** 2) / np.sum((x64 - x64.mean(axis=0)) ** 2))


# ----------------------------------------------------------------------------------------------------------------------
# the MLP of one block, as the Jacobian sees it


class MLP(NamedTuple):
    """Block `layer`'s MLP weights, from a minisparse GPT's params (DESIGN §2 names)."""
    up: np.ndarray          # [M, D]
    b_up: np.ndarray        # [M]
    down: np.ndarray        # [D, M]
    b_down: np.ndarray      # [D]
    k_neuron: int           # neurons kept by AbsTopK at mlp_neuron

    @classmethod
    def of(cls, model, layer: int) -> MLP:
        if not 0 <= layer < model.config.n_layer:
            raise ValueError(f"layer {layer} does not exist; the model has layers 0..{model.config.n_layer - 1}")
        p, cfg = f"blocks.{layer}.mlp.", model.config
        return cls(model.params[p + "up_proj.weight"], model.params[p + "up_proj.bias"],
                   model.params[p + "down_proj.weight"], model.params[p + "down_proj.bias"], cfg.topk(cfg.d_mlp))

    def rescaled(self, in_scale: float, out_scale: float) -> MLP:
        """The same MLP acting on x / in_scale and giving y / out_scale (for SAEs trained on normalised
        activations): the neurons' pre-activations, and so AbsTopK's choices, are unchanged."""
        return self._replace(up=self.up * in_scale, down=self.down / out_scale, b_down=self.b_down / out_scale)


def mlp_forward(x: np.ndarray, mlp: MLP) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] MLP input -> ([N, D] output before mlp_out's AbsTopK, [N, M] φ′ = keep ⊙ GELU′(u), the slope of
    AbsTopK ∘ GELU at u = x W_upᵀ + b_up)."""
    u = x @ mlp.up.T
    u += mlp.b_up                                            # [N, M]
    g, gelu_cache = gelu_forward(u)
    keep = abstopk_mask(g, mlp.k_neuron)                     # [N, M] bool
    y = (g * keep) @ mlp.down.T
    y += mlp.b_down                                          # [N, D]
    return y, gelu_backward(keep.astype(g.dtype), gelu_cache)


def mlp_activations(model, idx: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, T] tokens -> ([N, D] the MLP's input: site L{layer}.mlp_in, [N, D] its output before mlp_out's AbsTopK)."""
    _, cache = model.forward_cached(idx)
    mlp, sites = MLP.of(model, layer), cache["sites"]
    x = sites[f"L{layer}.mlp_in"].reshape(-1, mlp.up.shape[1])
    neurons = sites[f"L{layer}.mlp_neuron"].reshape(-1, mlp.up.shape[0])
    return x, neurons @ mlp.down.T + mlp.b_down


# ----------------------------------------------------------------------------------------------------------------------
# the Jacobian between active input and output latents


def jacobian_factors(params: dict[str, np.ndarray], mlp: MLP) -> tuple[np.ndarray, np.ndarray]:
    """(P [S_in, M], Q [M, S_out]): an input latent's direction read by the neurons, a neuron's write read by the
    output latents. They hold for every token; only φ′ and the active sets change."""
    return (mlp.up @ params["in.W_dec"]).T, (params["out.W_enc"] @ mlp.down).T


def active_latents(s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # [N, S] latents, [N, k] TopK's selection -> [N, k] bool: the selected latent is active (nonzero after ReLU)
    return np.take_along_axis(s, idx, axis=1) > 0


def jacobian_forward(p: np.ndarray, q: np.ndarray, slope: np.ndarray, idx_in: np.ndarray, act_in: np.ndarray,
                     idx_out: np.ndarray, act_out: np.ndarray):
    # [S_in, M], [M, S_out], [N, M], [N, k_in] int, [N, k_in] bool, [N, k_out] int, [N, k_out] bool
    #   -> ([N, k_in, k_out] J, cache)
    # J[n, a, b] = ∂ s_out[n, idx_out[n, b]] / ∂ s_in[n, idx_in[n, a]]; rows/columns of inactive latents are 0.
    # In-place products with one broadcast operand: `a * b[:, None, :]` into a new array is far slower.
    left = np.take(p, idx_in, axis=0)                               # [N, k_in, M]  P[active_in] · diag(φ′)
    left *= slope[:, None, :]
    left *= act_in[..., None]
    right = np.take(q.T, idx_out, axis=0)                           # [N, k_out, M]  Q[:, active_out]ᵀ
    right *= act_out[..., None]
    cache = (left, right, slope, act_in, act_out)
    return left @ right.transpose(0, 2, 1), cache


def jacobian_backward(dj: np.ndarray, cache) -> tuple[np.ndarray, np.ndarray]:
    # [N, k_in, k_out] -> ([N, k_in, M] dL/d P[idx_in], [N, k_out, M] dL/d Qᵀ[idx_out]): the gradients of the rows
    # the forward gathered. The caller scatters them into its weights (`pair_loss_and_grads`), after taking them
    # down to D wide: a scatter of D-wide rows costs D/M of one of M-wide rows.
    left, right, slope, act_in, act_out = cache
    dleft = dj @ right                                              # [N, k_in, M]
    dleft *= slope[:, None, :]
    dleft *= act_in[..., None]
    dright = dj.transpose(0, 2, 1) @ left                           # [N, k_out, M]
    dright *= act_out[..., None]
    return dleft, dright


# ----------------------------------------------------------------------------------------------------------------------
# the pair


def init_pair(d_model: int, n_latents: int, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """An input SAE and an output SAE for a D-wide MLP, each with `n_latents` latents."""
    sae_in, sae_out = init_sae(d_model, n_latents, seed, dtype), init_sae(d_model, n_latents, seed + 1, dtype)
    return {**{"in." + n: w for n, w in sae_in.items()}, **{"out." + n: w for n, w in sae_out.items()}}


class PairOutput(NamedTuple):
    loss: float
    mse_in: float
    mse_out: float
    jacobian_l1: float     # mean |J| over every (token, active-in slot, active-out slot)
    x_hat: np.ndarray      # [N, D] input reconstruction
    y_hat: np.ndarray      # [N, D] output reconstruction
    jacobian: np.ndarray | None   # [N, k_in, k_out]
    active: np.ndarray | None     # [N, k_in, k_out] bool: both latents of the entry active


def pair_loss_and_grads(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, mlp: MLP, k: int,
                        lam: float, with_jacobian: bool = True) -> tuple[PairOutput, dict[str, np.ndarray]]:
    """MSE_in + MSE_out + λ·mean|J| on one batch, and its gradient for every parameter of the pair.

    x [N, D]: the MLP's inputs; y [N, D]: its outputs (`mlp_activations`). λ = 0 trains two independent TopK SAEs;
    J is still computed and returned unless `with_jacobian` is False (then jacobian_l1 is NaN and jacobian and
    active are None; λ must be 0).
    """
    if lam and not with_jacobian:
        raise ValueError("a Jacobian penalty (lam > 0) needs the Jacobian: with_jacobian must be True")
    x_hat, s_in, idx_in, c_in = sae_forward(x, params, k, "in.")
    y_hat, s_out, idx_out, c_out = sae_forward(y, params, k, "out.")
    mse_in, c_mse_in = mse_forward(x_hat, x)
    mse_out, c_mse_out = mse_forward(y_hat, y)
    jac, active, l1 = None, None, float("nan")
    if with_jacobian:
        act_in, act_out = active_latents(s_in, idx_in), active_latents(s_out, idx_out)
        jac, c_jac = jacobian_forward(*jacobian_factors(params, mlp), mlp_forward(x, mlp)[1], idx_in, act_in,
                                      idx_out, act_out)
        active, l1 = act_in[:, :, None] & act_out[:, None, :], float(np.abs(jac).mean())
    out = PairOutput(mse_in + mse_out + (lam * l1 if lam else 0.0), mse_in, mse_out, l1, x_hat, y_hat, jac, active)

    grads = {"in." + n: g for n, g in sae_backward(mse_backward(1.0, c_mse_in), c_in).items()}
    grads.update({"out." + n: g for n, g in sae_backward(mse_backward(1.0, c_mse_out), c_out).items()})
    if lam:
        # d mean|J| = sign(J) / size. Row s of P = (W_up W_dec_in)ᵀ is W_up·W_dec_in[:, s], so a gradient g on it
        # is gᵀ·W_up on column s of W_dec_in; row s of Qᵀ = W_enc_out W_down gives g·W_downᵀ on row s of W_enc_out.
        dleft, dright = jacobian_backward(np.sign(jac) * (lam / jac.size), c_jac)
        n_in, n_out = params["in.W_dec"].shape[1], params["out.W_enc"].shape[0]
        grads["in.W_dec"] += scatter_rows(idx_in.reshape(-1), dleft.reshape(-1, dleft.shape[-1]) @ mlp.up, n_in).T
        grads["out.W_enc"] += scatter_rows(idx_out.reshape(-1), dright.reshape(-1, dright.shape[-1]) @ mlp.down.T,
                                           n_out)
    return out, grads


def jacobian_sparsity(jac: np.ndarray, active: np.ndarray, threshold: float = 0.01, mass: float = 0.9) -> dict:
    """How sparse per-token Jacobians [N, k_in, k_out] are, over the entries whose two latents are both active
    (`active`, [N, k_in, k_out] bool; an inactive latent's zeros say nothing about connections).

    exact_zero: fraction of active entries exactly 0. above_threshold: fraction with |J| > threshold, a count that
    moves with J's overall scale as well as with its sparsity. mass_fraction: per token, the smallest fraction of its
    active entries that holds `mass` of its Σ|J| (scale-free: 1/n if one entry carries everything, about `mass` if all
    are equal; 0 if J is all zero), averaged over tokens. mean_abs: mean |J| over active entries.
    """
    a = np.where(active, np.abs(jac), 0.0).reshape(jac.shape[0], -1).astype(np.float64)   # [N, k_in·k_out]
    n_active = active.reshape(a.shape).sum(axis=1)
    a, n_active = a[n_active > 0], n_active[n_active > 0]
    if a.size == 0:
        raise ValueError("no token has an active input and an active output latent: nothing to measure")
    srt = -np.sort(-a, axis=1)                                        # inactive zeros sort last
    total = srt.sum(axis=1, keepdims=True)
    cum = np.cumsum(srt, axis=1) / np.where(total > 0, total, 1.0)
    needed = np.where(total[:, 0] > 0, (cum < mass).sum(axis=1) + 1, 0)
    count = n_active.sum()
    return {"exact_zero": float((count - np.count_nonzero(a)) / count),
            "above_threshold": float(np.sum(a > threshold) / count),
            "mass_fraction": float(np.mean(needed / n_active)), "mean_abs": float(a.sum() / count)}


__all__ = ["MLP", "PairOutput", "SAE_PARAMS", "active_latents", "fvu", "init_pair", "init_sae", "jacobian_backward",
           "jacobian_factors", "jacobian_forward", "jacobian_sparsity", "mlp_activations", "mlp_forward",
           "mse_backward", "mse_forward", "normalize_decoder", "pair_loss_and_grads", "sae_backward", "sae_forward",
           "topk_latents"]
