"""The layers of the NumPy GPT as stateless forward/backward pairs, in forward order (DESIGN §1).

Every op is a pair
    <op>_forward(x, ...)   -> (out, cache)      cache: exactly what the backward needs
    <op>_backward(dout, cache) -> (dx, d...)    gradients of the same shapes as the inputs
No function modifies its arguments; in-place ops touch only arrays the function itself allocated. Constants are Python
floats, so a float32 input stays float32 and a float64 gradient check is not capped by a float32 constant (NEP 50).

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
    # A one-hot matmul: for the vocabularies used here it runs at BLAS speed, ~3x faster than np.add.at.
    onehot = np.zeros((idx.shape[0], n_rows), dtype=rows.dtype)
    onehot[np.arange(idx.shape[0]), idx] = 1.0
    return onehot.T @ rows


# ----------------------------------------------------------------------------------------------------------------------
# RMSNorm: x / sqrt(mean(x²) + eps) * g over the last axis


def rmsnorm_forward(x, g):
    # [N, C], [C] -> [N, C]
    ms = np.einsum("nc,nc->n", x, x)[:, None]        # [N, 1] sum of squares without an [N, C] temporary
    ms *= 1.0 / x.shape[-1]
    ms += RMS_EPS
    rstd = np.sqrt(ms, out=ms)
    np.divide(1.0, rstd, out=rstd)                   # [N, 1]
    xhat = x * rstd                                  # [N, C]
    return xhat * g, (xhat, rstd, g)


def rmsnorm_backward(dout, cache):
    # [N, C] -> [N, C], [C]
    xhat, rstd, g = cache
    dg = np.einsum("nc,nc->c", dout, xhat)
    dxhat = dout * g                                                 # [N, C]
    proj = np.einsum("nc,nc->n", dxhat, xhat)[:, None]               # [N, 1]
    proj *= 1.0 / xhat.shape[-1]
    # d/dx of x·rstd(x): rstd·(dxhat − xhat·mean(dxhat·xhat))
    dxhat -= xhat * proj
    dxhat *= rstd
    return dxhat, dg


# ----------------------------------------------------------------------------------------------------------------------
# linear: y = x W^T + b, W stored (out, in) as in MLX and PyTorch; activations are 2-D so each is one BLAS call


def linear_forward(x, w, b=None):
    # [N, in], [out, in], [out] or None -> [N, out]
    y = x @ w.T
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_backward(dout, cache):
    # [N, out] -> [N, in], [out, in], [out] or None
    x, w, has_bias = cache
    dx = dout @ w
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
#   s_ij = q_i·k_j / sqrt(Dh) (j <= i),  p_ij = exp(s_ij) / (exp(sink_h) + Σ_j' exp(s_ij'))
# The sink is one extra softmax column whose value vector is zero: it lets a head attend to "nothing".

_causal_bias_cache: dict = {}


def _causal_bias(T, dtype):
    # -> [T, T]: 0 on and below the diagonal, -inf above, so exp() zeroes the future
    key = (T, np.dtype(dtype))
    if key not in _causal_bias_cache:
        _causal_bias_cache[key] = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)
    return _causal_bias_cache[key]


def _heads(x, n_head):
    # [B, T, H·Dh] -> [B, H, T, Dh], a view (strided matrices are still BLAS-able)
    B, T, A = x.shape
    return x.reshape(B, T, n_head, A // n_head).transpose(0, 2, 1, 3)


def attention_forward(q, k, v, sink, n_head):
    # [B, T, A], [B, T, A], [B, T, A], [H] or None -> [B, T, A]
    B, T, A = q.shape
    scale = 1.0 / math.sqrt(A // n_head)
    qs = _heads(q * scale, n_head)                   # [B, H, T, Dh] scale the small q, not the [T, T] scores
    kh, vh = _heads(k, n_head), _heads(v, n_head)
    p = qs @ kh.transpose(0, 1, 3, 2)                # [B, H, T, T] scores, then (in place) probabilities
    p += _causal_bias(T, p.dtype)
    m = p.max(axis=-1, keepdims=True)                # [B, H, T, 1]
    if sink is not None:
        sink4 = sink[None, :, None, None]            # [1, H, 1, 1]
        np.maximum(m, sink4, out=m)                  # subtract the max over scores ∪ sink: no overflow
    p -= m
    np.exp(p, out=p)
    denom = p.sum(axis=-1, keepdims=True)            # [B, H, T, 1]
    if sink is not None:
        p_sink = np.exp(sink4 - m)                   # [B, H, T, 1] unnormalised sink weight
        denom += p_sink
    np.divide(1.0, denom, out=denom)
    p *= denom
    y = np.empty_like(q)                             # [B, T, A], written head by head through a view
    np.matmul(p, vh, out=_heads(y, n_head))
    p_sink = p_sink * denom if sink is not None else None
    return y, (qs, kh, vh, p, p_sink, y, scale, n_head)


def attention_backward(dy, cache):
    # [B, T, A] -> [B, T, A], [B, T, A], [B, T, A], [H] or None
    qs, kh, vh, p, p_sink, y, scale, n_head = cache
    dyh = _heads(dy, n_head)                         # [B, H, T, Dh]
    dq, dk, dv = np.empty_like(dy), np.empty_like(dy), np.empty_like(dy)
    np.matmul(p.transpose(0, 1, 3, 2), dyh, out=_heads(dv, n_head))
    dp = dyh @ vh.transpose(0, 1, 3, 2)              # [B, H, T, T]
    # softmax backward: ds_ij = p_ij (dp_ij − Σ_j' p_ij' dp_ij'), and Σ_j' p_ij' dp_ij' = dy_i·y_i (flash-attention
    # trick: a [.., Dh] dot instead of a pass over [.., T]); the sink's value is zero, so it adds nothing to that sum.
    B, T, A = dy.shape
    rowdot = np.einsum("bthd,bthd->bht", dy.reshape(B, T, n_head, -1), y.reshape(B, T, n_head, -1))[..., None]
    dp -= rowdot
    dp *= p                                          # ds; masked entries have p = 0, so they get no gradient
    np.matmul(dp, kh, out=_heads(dq, n_head))
    dq *= scale
    np.matmul(dp.transpose(0, 1, 3, 2), qs, out=_heads(dk, n_head))  # qs already carries the scale
    # d/dsink_h = Σ_{b,i} p_sink (0 − rowdot): the sink is a softmax column with a zero value vector
    dsink = None if p_sink is None else -np.einsum("bhtx,bhtx->h", p_sink, rowdot)
    return dq, dk, dv, dsink


# ----------------------------------------------------------------------------------------------------------------------
# GELU, tanh form: 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))


def gelu_forward(x):
    # [N, M] -> [N, M]
    t = x * x
    t *= GELU_A * GELU_C
    t += GELU_C
    t *= x                                           # sqrt(2/π)·(x + 0.044715·x³)
    np.tanh(t, out=t)
    out = t + 1.0
    out *= x
    out *= 0.5
    return out, (x, t)


def gelu_backward(dout, cache):
    # [N, M] -> [N, M]
    # d/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·sqrt(2/π)·(1 + 3·0.044715·x²)
    x, t = cache
    inner = x * x
    inner *= 3.0 * GELU_A * GELU_C
    inner += GELU_C
    inner *= x
    sech2 = t * t
    np.subtract(1.0, sech2, out=sech2)
    inner *= sech2
    inner += t
    inner += 1.0
    inner *= 0.5
    inner *= dout
    return inner


# ----------------------------------------------------------------------------------------------------------------------
# cross-entropy: mean over rows of −log softmax(logits)[target]


def cross_entropy_forward(logits, targets):
    # [N, V], [N] int -> float
    N = logits.shape[0]
    mx = logits.max(axis=-1, keepdims=True)          # [N, 1]
    z = logits - mx                                  # [N, V]
    np.exp(z, out=z)
    sums = z.sum(axis=-1, keepdims=True)             # [N, 1]
    z /= sums                                        # softmax, kept for the backward
    rows = np.arange(N)
    # −log p_target = log Σ exp(l − max) − (l_target − max), written so that a tiny p_target cannot underflow to log(0)
    logp = logits[rows, targets] - mx[:, 0] - np.log(sums[:, 0])
    return float(-logp.mean()), (z, targets)


def cross_entropy_backward(dloss, cache):
    # float -> [N, V]
    probs, targets = cache
    N = probs.shape[0]
    dlogits = probs.copy()
    dlogits[np.arange(N), targets] -= 1.0
    dlogits *= dloss / N
    return dlogits


# ----------------------------------------------------------------------------------------------------------------------
# gate: circuit pruning's node mask (DESIGN §5), right after a site's AbsTopK. g ∈ {0, 1} from the caller keeps a
# channel (g = 1) or replaces it by its mean activation mu (g = 0); dL/dg feeds the straight-through estimator.


def gate_forward(x, g, mu):
    # [..., n], [n], [n] -> [..., n]
    # written as x·g + mu·(1 − g), not (x − mu)·g + mu, so that g = 1 gives exactly x and g = 0 exactly mu
    out = x * g
    out += mu * (1.0 - g)
    return out, (x, g, mu)


def gate_backward(dout, cache):
    # [..., n] -> [..., n], [n]: dx = dout·g, dg = Σ over all but the last axis of dout·(x − mu)
    x, g, mu = cache
    n = x.shape[-1]
    dg = np.einsum("nc,nc->c", dout.reshape(-1, n), (x - mu).reshape(-1, n))
    return dout * g, dg
