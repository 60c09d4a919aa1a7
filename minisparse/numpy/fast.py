"""Fast paths: the two ops of `layers.py` whose plain form costs a measured share of a training step, restructured.

Each function computes what its namesake in layers.py computes, from the same formula (read it there), and takes and
returns the same arrays; only the order of work and where it is stored differ. tests/test_numpy_fast.py holds them
equal to float rounding, and the gradient tests check the whole model, which runs these, against finite differences.

Why they are faster (what each buys is measured by `benchmarks/profile_step.py --plain`, docs/speed.md):
- attention: the plain form writes the [B, H, T, T] scores and four temporaries as large to memory and reads them
  back; here a block of sequences is done at a time, in place, so its scores stay in the L2 cache through all of the
  softmax's passes.
- GELU: in place, the [N, M] temporaries of the named terms never exist.
"""

from __future__ import annotations

import math

import numpy as np

from minisparse.params import GELU_A, GELU_C

from .layers import causal_bias, split_heads

SCORES_BLOCK_BYTES = 2 ** 19   # scores handled at once: 0.5 MB stays in a 1 MB L2 cache through the softmax's passes


def _blocks(B, H, T, itemsize):
    # slices of the batch, each holding as many whole sequences as fit SCORES_BLOCK_BYTES of [H, T, T] scores (>= 1)
    n = max(1, SCORES_BLOCK_BYTES // (H * T * T * itemsize))
    return [slice(b, min(b + n, B)) for b in range(0, B, n)]


def attention_forward(q, k, v, sink, n_head):
    # [B, T, A], [B, T, A], [B, T, A], [H] or None -> [B, T, A]
    B, T, A = q.shape
    scale = 1.0 / math.sqrt(A // n_head)
    qs = split_heads(q * scale, n_head)              # [B, H, T, Dh] scale the small q, not the [T, T] scores
    kh, vh = split_heads(k, n_head), split_heads(v, n_head)
    bias = causal_bias(T, q.dtype)
    sink4 = None if sink is None else sink[:, None, None]                     # [H, 1, 1]
    p = np.empty((B, n_head, T, T), dtype=q.dtype)   # the attention weights, kept for the backward
    p_sink = None if sink is None else np.empty((B, n_head, T, 1), dtype=q.dtype)
    y = np.empty_like(q)
    yh = split_heads(y, n_head)                      # y written head by head through this view
    for b in _blocks(B, n_head, T, q.itemsize):      # a few sequences at a time: their scores stay in the L2 cache
        pb = p[b]                                                              # [b, H, T, T]
        np.matmul(qs[b], kh[b].transpose(0, 1, 3, 2), out=pb)                 # scores
        pb += bias
        m = pb.max(axis=-1, keepdims=True)                                     # [b, H, T, 1]
        if sink is not None:
            np.maximum(m, sink4, out=m)
        pb -= m
        np.exp(pb, out=pb)                                                     # unnormalised weights
        denom = pb.sum(axis=-1, keepdims=True)
        if sink is not None:
            e_sink = np.exp(sink4 - m)
            denom += e_sink
        np.divide(1.0, denom, out=denom)                                       # 1/denom: one divide per row
        pb *= denom                                                            # weights
        if sink is not None:
            np.multiply(e_sink, denom, out=p_sink[b])
        np.matmul(pb, vh[b], out=yh[b])
    return y, (qs, kh, vh, p, p_sink, y, scale)


def attention_backward(dy, cache):
    # [B, T, A] -> [B, T, A], [B, T, A], [B, T, A], [H] or None
    qs, kh, vh, p, p_sink, y, scale = cache
    B, H, T, _ = p.shape
    dyh = split_heads(dy, H)
    # Σ_j p_ij dp_ij = dy_i·y_i, for every row at once (see layers.attention_backward)
    rowdot = np.einsum("bthd,bthd->bht", dy.reshape(B, T, H, -1), y.reshape(B, T, H, -1))[..., None]
    dq, dk, dv = np.empty_like(dy), np.empty_like(dy), np.empty_like(dy)
    dqh, dkh, dvh = split_heads(dq, H), split_heads(dk, H), split_heads(dv, H)
    blocks = _blocks(B, H, T, dy.itemsize)
    scratch = np.empty((blocks[0].stop - blocks[0].start, H, T, T), dtype=dy.dtype)   # a block's dp, then ds
    for b in blocks:
        ds = scratch[:b.stop - b.start]
        np.matmul(p[b].transpose(0, 1, 3, 2), dyh[b], out=dvh[b])
        np.matmul(dyh[b], vh[b].transpose(0, 1, 3, 2), out=ds)                # dp
        ds -= rowdot[b]
        ds *= p[b]                                                             # ds = p·(dp − rowdot)
        np.matmul(ds, kh[b], out=dqh[b])
        np.matmul(ds.transpose(0, 1, 3, 2), qs[b], out=dkh[b])                # qs already carries the scale
    dq *= scale
    dsink = None if p_sink is None else -np.einsum("bhtx,bhtx->h", p_sink, rowdot)
    return dq, dk, dv, dsink


def gelu_forward(x):
    # [N, M] -> [N, M]
    t = x * x
    t *= GELU_A * GELU_C
    t += GELU_C
    t *= x                                           # inner = sqrt(2/π)·(x + 0.044715·x³)
    np.tanh(t, out=t)                                # t = tanh(inner)
    out = t + 1.0
    out *= x
    out *= 0.5                                       # 0.5·x·(1 + t)
    return out, (x, t)


def gelu_backward(dout, cache):
    # [N, M] -> [N, M]
    x, t = cache
    g = x * x
    g *= 3.0 * GELU_A * GELU_C
    g += GELU_C                                      # dinner = sqrt(2/π)·(1 + 3·0.044715·x²)
    g *= x                                           # x·dinner
    sech2 = t * t
    np.subtract(1.0, sech2, out=sech2)               # sech² = 1 − t²
    g *= sech2
    g += t
    g += 1.0
    g *= 0.5                                         # local_grad = 0.5·(1 + t) + 0.5·x·sech²·dinner
    g *= dout
    return g
