"""The MLX model's elementwise pieces, each the MLX twin of a NumPy reference: the tanh GELU (DESIGN §1) and AbsTopK
(`minisparse.sparsity.abstopk`), and the one conversion every MLX entry point uses."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..params import GELU_A, GELU_C


def gelu(x: mx.array) -> mx.array:
    # [...] -> [...]  tanh GELU, the DESIGN §1 formula. Written out rather than `nn.gelu_approx`: recent MLX releases
    # use this same formula there, but it has changed between releases, and both backends must compute one function.
    return 0.5 * x * (1.0 + mx.tanh(GELU_C * (x + GELU_A * x * x * x)))


def abstopk(x: mx.array, k: int) -> mx.array:
    """Keep the `k` entries of largest |x| along the last axis (sign kept), zero the rest (DESIGN §1).

    The rule of `minisparse.sparsity.abstopk_mask`: an entry passes if its |x| is at least the row's k-th largest |x|.
    A row with fewer than k nonzeros has a k-th largest of 0, so all of it passes: the output is x, and so is the
    derivative (nudging a zero would make it one of the k kept), whichever zeros a backend would have picked. A row
    whose nonzero ties at the threshold would let more than k through keeps exactly k of them instead.
    Autograd sends the gradient through the passing entries only. k >= n is the identity (afrac = 1).
    """
    # [..., n] -> [..., n]
    n = x.shape[-1]
    if k >= n:
        return x
    a = mx.stop_gradient(mx.abs(x))                                     # the selection itself carries no gradient
    kth = mx.partition(a, n - k, axis=-1)[..., n - k:n - k + 1]        # [..., 1] the k-th largest |x|
    keep = a >= kth
    top = mx.argpartition(a, n - k, axis=-1)[..., n - k:]              # [..., k] exactly k, for tied rows
    exact = mx.put_along_axis(mx.zeros(x.shape, dtype=mx.bool_), top, mx.array(True), axis=-1)
    tied = (keep.sum(axis=-1, keepdims=True) > k) & (kth > 0)
    return mx.where(mx.where(tied, exact, keep), x, 0.0)


def as_mx(a, dtype: mx.Dtype) -> mx.array:
    """A NumPy or MLX array as an MLX array of `dtype`. (`mx.array` of a float64 NumPy array would give float32.)"""
    return a.astype(dtype) if isinstance(a, mx.array) else mx.array(np.asarray(a), dtype=dtype)
