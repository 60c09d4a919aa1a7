"""The fast paths (minisparse/numpy/fast.py) compute what the formulas of layers.py compute, forward and backward.

layers.py is checked against finite differences (test_numpy_layers.py); here each fast op is checked against its
namesake there on hypothesis-drawn shapes and inputs: to 1e-12 relative in float64, where only the order of the
arithmetic differs, and to 1e-4 in float32. Neither may change its inputs.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agreement import rel_err  # tests/agreement.py
from minisparse.numpy import fast, layers
from strategies import examples  # tests/strategies.py

TOL = {np.float64: 1e-12, np.float32: 1e-4}


def floor(args, dout=1.0):
    """Norms below which differences are measured absolutely: a gradient that is exactly 0 in one order of arithmetic
    is ~1e-16 of its ingredients in another (e.g. dq when a query sees one key), and neither is wrong."""
    big = 1.0 + max(float(np.abs(a).max()) for a in args if isinstance(a, np.ndarray))
    return 1e-2 * big ** 3 * float(np.abs(dout).max())


def check_same(op, args, dtype, rng):
    """fast.<op> and layers.<op> give the same output and the same gradients of every input for one random dout."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    out_fast, cache_fast = getattr(fast, op + "_forward")(*args)
    out_ref, cache_ref = getattr(layers, op + "_forward")(*args)
    assert out_fast.dtype == out_ref.dtype == dtype
    assert rel_err(out_fast, out_ref, floor(args)) <= TOL[dtype], f"{op} forward"
    dout = rng.standard_normal(out_ref.shape).astype(dtype)
    grads_fast = getattr(fast, op + "_backward")(dout, cache_fast)
    grads_ref = getattr(layers, op + "_backward")(dout, cache_ref)
    grads_fast = grads_fast if isinstance(grads_fast, tuple) else (grads_fast,)
    grads_ref = grads_ref if isinstance(grads_ref, tuple) else (grads_ref,)
    for i, (gf, gr) in enumerate(zip(grads_fast, grads_ref, strict=True)):
        assert (gf is None) == (gr is None)
        if gr is not None:
            assert gf.shape == gr.shape and gf.dtype == gr.dtype == dtype
            assert rel_err(gf, gr, floor(args, dout)) <= TOL[dtype], f"{op} backward, gradient {i}"
    for a, c in zip(args, copies):
        assert not isinstance(a, np.ndarray) or np.array_equal(a, c), f"{op} changed an input"


dtypes = st.sampled_from([np.float64, np.float32])


@given(B=st.integers(1, 5), T=st.integers(1, 9), H=st.integers(1, 3), Dh=st.integers(1, 5), sink=st.booleans(),
       scale=st.sampled_from([0.1, 1.0, 10.0]), dtype=dtypes, block_bytes=st.sampled_from([1, 600, 2 ** 19]),
       seed=st.integers(0, 2 ** 32 - 1))
@examples(0.5)
def test_attention(B, T, H, Dh, sink, scale, dtype, block_bytes, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (scale * rng.standard_normal((B, T, H * Dh)) for _ in range(3))
    s = scale * rng.standard_normal(H) if sink else None
    args = [a if a is None else a.astype(dtype) for a in (q, k, v, s)]
    with pytest.MonkeyPatch.context() as mp:   # blocks of one sequence, of a few, of the whole batch
        mp.setattr(fast, "SCORES_BLOCK_BYTES", block_bytes)
        check_same("attention", (*args, H), dtype, rng)


def test_attention_on_strided_views():
    # the model hands attention q, k, v as column blocks of one [N, 3A] array
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((2 * 5, 3 * 6))
    q, k, v = (qkv[:, i * 6:(i + 1) * 6].reshape(2, 5, 6) for i in range(3))
    check_same("attention", (q, k, v, rng.standard_normal(3), 3), np.float64, rng)


@given(N=st.integers(1, 20), M=st.integers(1, 20), scale=st.sampled_from([0.1, 1.0, 5.0]), dtype=dtypes,
       seed=st.integers(0, 2 ** 32 - 1))
@examples(0.5)
def test_gelu(N, M, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    check_same("gelu", ((scale * rng.standard_normal((N, M))).astype(dtype),), dtype, rng)


def test_fast_covers_only_ops_that_layers_defines():
    ops = {name for name in vars(fast) if name.endswith(("_forward", "_backward"))}
    assert ops == {"attention_forward", "attention_backward", "gelu_forward", "gelu_backward"}
    assert all(hasattr(layers, name) for name in ops)
