"""The layers of the NumPy GPT as stateless forward/backward pairs, in forward order (DESIGN §1).

Every op is a pair
    <op>_forward(x, ...)   -> (out, cache)      cache: exactly what the backward needs
    <op>_backward(dout, cache) -> (dx, d...)    gradients of the same shapes as the inputs
each written as its formula, named terms first, so that it can be checked against the math line by line; no function
modifies its arguments. Constants are Python floats, so a float32 input stays float32 and a float64 gradient check is
not capped by a float32 constant (NEP 50).

The model runs these, except attention and GELU: for those two, `fast.py` computes the same thing restructured (in
place, one sequence at a time), because there the plain form costs a measured share of every training step. The
formulas are here; what the restructuring buys is there.

Shape legend:
    B  batch                  T  tokens (<= n_ctx)         N  = B·T, rows of the 2-D activations
    D  d_model                H  n_head                    Dh d_head            A = H·Dh (width of q, k, v)
    M  d_mlp                  V  vocab_size                n  width of whichever site AbsTopK acts on
"""

from __future__ import annotations

import math

import numpy as np

from minisparse.params import GELU_A, GELU_C, RMS_EPS
from minisparse.sparsity import abstopk_mask

# ----------------------------------------------------------------------------------------------------------------------
# embedding: a row lookup; its backward scatters rows back


def embedding_forward(idx, table):
    # [...] int, [V, C] -> [..., C]
    return table[idx], (idx, table.shape)


def embedding_backward(dout, cache):
    # [..., C] -> [V, C]
    idx, shape = cache
    return scatter_rows(idx.reshape(-1), dout.reshape(-1, shape[1]), shape[0])


def scatter_rows(idx, rows, n_rows):
    # [N] int, [N, C] -> [n_rows, C]: out[i] = sum of rows whose idx is i
    # A one-hot matmul: for the vocabularies used here it runs at BLAS speed, faster than np.add.at.
    onehot = np.zeros((idx.shape[0], n_rows), dtype=rows.dtype)
    onehot[np.arange(idx.shape[0]), idx] = 1.0
    return onehot.T @ rows


# ----------------------------------------------------------------------------------------------------------------------
# RMSNorm: x / sqrt(mean(x²) + eps) * g over the last axis


def rmsnorm_forward(x, g):
    # [N, C], [C] -> [N, C]
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + RMS_EPS)   # [N, 1] the reciprocal RMS, r
    xhat = x * rstd                                                          # [N, C] x̂ = x·r, unit RMS
    return xhat * g, (xhat, rstd, g)


def rmsnorm_backward(dout, cache):
    # [N, C] -> [N, C], [C]
    xhat, rstd, g = cache
    dg = (dout * xhat).sum(axis=0)                                  # [C] g scales every row's x̂
    dxhat = dout * g                                                # [N, C]
    proj = (dxhat * xhat).mean(axis=-1, keepdims=True)              # [N, 1] mean(dx̂·x̂)
    # d/dx of x·r(x): r·(dx̂ − x̂·mean(dx̂·x̂)); the gradient loses its component along x̂ (scaling x leaves x̂ as is)
    dx = rstd * (dxhat - xhat * proj)
    return dx, dg


# ----------------------------------------------------------------------------------------------------------------------
# linear: y = x W^T + b, W stored (out, in) as in MLX and PyTorch; activations are 2-D so each is one BLAS call


def linear_forward(x, w, b=None):
    # [N, in], [out, in], [out] or None -> [N, out]
    y = x @ w.T if b is None else x @ w.T + b
    return y, (x, w, b is not None)


def linear_backward(dout, cache, weights=True):
    # [N, out] -> [N, in], [out, in], [out] or None; weights=False: dx only (circuit pruning needs no weight gradients)
    x, w, has_bias = cache
    dx = dout @ w
    if not weights:
        return dx, None, None
    dw = dout.T @ x
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------------------------------------
# AbsTopK: keep the k entries of largest |x| along the last axis, zero the rest; the gradient flows through the kept
# entries only. k >= n is the identity (afrac = 1) and costs nothing: no mask is built.


def abstopk_forward(x, k):
    # [..., n], int -> [..., n]
    if k >= x.shape[-1]:
        return x, None
    mask = abstopk_mask(x, k)                        # [..., n] bool
    return x * mask, mask


def abstopk_backward(dout, cache):
    # [..., n] -> [..., n]
    mask = cache
    return dout if mask is None else dout * mask


# ----------------------------------------------------------------------------------------------------------------------
# causal multi-head attention with an optional per-head sink logit
#   s_ij = q_i·k_j / sqrt(Dh) (j <= i),  p_ij = exp(s_ij) / (exp(sink_h) + Σ_j' exp(s_ij')),  y_i = Σ_j p_ij v_j
# The sink is one extra softmax column whose value vector is zero: it lets a head attend to "nothing".

_causal_bias_cache: dict = {}


def causal_bias(T, dtype):
    # -> [T, T]: 0 on and below the diagonal, -inf above, so exp() zeroes the future
    key = (T, np.dtype(dtype))
    if key not in _causal_bias_cache:
        _causal_bias_cache[key] = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)
    return _causal_bias_cache[key]


def split_heads(x, n_head):
    # [B, T, H·Dh] -> [B, H, T, Dh], a view (strided matrices are still BLAS-able)
    B, T, A = x.shape
    return x.reshape(B, T, n_head, A // n_head).transpose(0, 2, 1, 3)


def merge_heads(x):
    # [B, H, T, Dh] -> [B, T, H·Dh]
    B, H, T, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * Dh)


def attention_forward(q, k, v, sink, n_head):
    # [B, T, A], [B, T, A], [B, T, A], [H] or None -> [B, T, A]
    B, T, A = q.shape
    scale = 1.0 / math.sqrt(A // n_head)
    qh, kh, vh = split_heads(q, n_head), split_heads(k, n_head), split_heads(v, n_head)   # [B, H, T, Dh]
    s = (qh @ kh.transpose(0, 1, 3, 2)) * scale + causal_bias(T, q.dtype)   # [B, H, T, T] scores, −inf in the future
    sink4 = sink[None, :, None, None] if sink is not None else None          # [1, H, 1, 1]
    m = s.max(axis=-1, keepdims=True)                                        # [B, H, T, 1]
    if sink is not None:
        m = np.maximum(m, sink4)                     # the max over scores ∪ sink, subtracted below: exp cannot overflow
    e = np.exp(s - m)                                                        # [B, H, T, T] unnormalised weights
    e_sink = np.exp(sink4 - m) if sink is not None else 0.0                  # [B, H, T, 1] the sink's
    denom = e.sum(axis=-1, keepdims=True) + e_sink                           # [B, H, T, 1]
    p = e / denom                                                            # [B, H, T, T] attention weights
    p_sink = e_sink / denom if sink is not None else None                    # [B, H, T, 1] weight on the sink
    y = merge_heads(p @ vh)                                                  # [B, T, A]
    return y, (qh, kh, vh, p, p_sink, y, scale)


def attention_backward(dy, cache):
    # [B, T, A] -> [B, T, A], [B, T, A], [B, T, A], [H] or None
    qh, kh, vh, p, p_sink, y, scale = cache
    dyh, yh = split_heads(dy, qh.shape[1]), split_heads(y, qh.shape[1])       # [B, H, T, Dh]
    dv = p.transpose(0, 1, 3, 2) @ dyh                                       # y = p v
    dp = dyh @ vh.transpose(0, 1, 3, 2)                                      # [B, H, T, T]
    # softmax backward: ds_ij = p_ij·(dp_ij − Σ_j' p_ij' dp_ij'), and Σ_j' p_ij' dp_ij' = dy_i·y_i (a [.., Dh] dot
    # instead of a pass over [.., T]; the sink's value vector is zero, so it adds nothing to that sum)
    rowdot = (dyh * yh).sum(axis=-1, keepdims=True)                          # [B, H, T, 1]
    ds = p * (dp - rowdot)                          # masked entries have p = 0, so they get no gradient
    dq = (ds @ kh) * scale
    dk = (ds.transpose(0, 1, 3, 2) @ qh) * scale
    # d/dsink_h = Σ_{b,i} p_sink·(0 − rowdot): the sink is a softmax column with a zero value vector
    dsink = None if p_sink is None else -(p_sink * rowdot).sum(axis=(0, 2, 3))
    return merge_heads(dq), merge_heads(dk), merge_heads(dv), dsink


# ----------------------------------------------------------------------------------------------------------------------
# GELU, tanh form: 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))


def gelu_forward(x):
    # [N, M] -> [N, M]
    inner = GELU_C * (x + GELU_A * x * x * x)        # sqrt(2/π)·(x + 0.044715·x³)
    t = np.tanh(inner)
    return 0.5 * x * (1.0 + t), (x, t)


def gelu_backward(dout, cache):
    # [N, M] -> [N, M]
    x, t = cache
    sech2 = 1.0 - t * t                              # tanh' = sech² = 1 − tanh²
    dinner = GELU_C * (1.0 + 3.0 * GELU_A * x * x)   # d(inner)/dx
    local_grad = 0.5 * (1.0 + t) + 0.5 * x * sech2 * dinner
    return local_grad * dout


# ----------------------------------------------------------------------------------------------------------------------
# cross-entropy: mean over rows of −log softmax(logits)[target]


def cross_entropy_forward(logits, targets):
    # [N, V], [N] int -> float
    N = logits.shape[0]
    z = logits - logits.max(axis=-1, keepdims=True)  # [N, V] shifted so that exp cannot overflow
    e = np.exp(z)
    sums = e.sum(axis=-1, keepdims=True)             # [N, 1]
    probs = e / sums                                 # [N, V] softmax, kept for the backward
    # −log p_target = log Σ exp(z) − z_target: exact even where p_target would underflow to 0 (no log(0))
    nll = np.log(sums[:, 0]) - z[np.arange(N), targets]
    return float(nll.mean()), (probs, targets)


def cross_entropy_backward(dloss, cache):
    # float -> [N, V]: (softmax − onehot(target)) / N
    probs, targets = cache
    N = probs.shape[0]
    dlogits = probs.copy()
    dlogits[np.arange(N), targets] -= 1.0
    return dlogits * (dloss / N)


# ----------------------------------------------------------------------------------------------------------------------
# gate: circuit pruning's node mask (DESIGN §5), right after a site's AbsTopK. g ∈ {0, 1} from the caller keeps a
# channel (g = 1) or replaces it by its mean activation mu (g = 0); dL/dg feeds the straight-through estimator.


def gate_forward(x, g, mu):
    # [..., n], [n], [n] -> [..., n]
    # written as x·g + mu·(1 − g), not (x − mu)·g + mu, so that g = 1 gives exactly x and g = 0 exactly mu
    return x * g + mu * (1.0 - g), (x, g, mu)


def gate_backward(dout, cache):
    # [..., n] -> [..., n], [n]: dx = dout·g, dg = Σ over all but the last axis of dout·(x − mu)
    x, g, mu = cache
    n = x.shape[-1]
    dg = np.einsum("nc,nc->c", dout.reshape(-1, n), (x - mu).reshape(-1, n))
    return dout * g, dg
