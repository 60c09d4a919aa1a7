"""Every forward/backward pair of minisparse/numpy/layers.py against central finite differences, in float64.

Each check builds a scalar L = Σ out·R for a random R, takes the analytic gradients from `<op>_backward(R, cache)` and
compares them with central differences (L(x+h) − L(x−h)) / 2h, h = 1e-6, over every entry of every input.
The error is norm-based, ||a − b||₂ / max(||a||₂ + ||b||₂, scale) ≤ 1e-6, with scale the norm of the op's whole
numeric gradient (`finite_differences.gradient_errors`), so a gradient that is 0 in exact arithmetic may be rounding.
Forward values are checked against naive, loop-by-loop formulas of DESIGN §1.
"""

import math

import numpy as np
import pytest

from agreement import rel_err  # tests/agreement.py
from finite_differences import central_differences, gradient_errors  # tests/finite_differences.py
from minisparse.numpy import layers as L

H_STEP = 1e-6
TOL = 1e-6


def numerical_grad(f, x, h=H_STEP):
    """Central differences of the scalar f() w.r.t. every entry of x (perturbed in place, then restored)."""
    return central_differences(f, x, h=h).reshape(x.shape)


def assert_close(actual, expected, tol=1e-12):
    """Entrywise within `tol` of the larger of the entry and the array's largest entry: a sum that cancels to near 0
    keeps the rounding of its terms, which differs between BLAS kernels."""
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * float(np.abs(expected).max()))


def check_op(forward, backward, args, wrt, rng):
    """FD-check `backward` for the inputs args[i], i in wrt; `forward(*args) -> (out, cache)`."""
    out, cache = forward(*args)
    R = rng.standard_normal(np.shape(out))
    grads = backward(R, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    loss = lambda: float(np.sum(forward(*args)[0] * R))  # noqa: E731
    # wrt: argument index -> position of its gradient in backward's output
    numeric = {i: numerical_grad(loss, args[i]) for i in wrt}
    analytic = {i: grads[gi] for i, gi in wrt.items()}
    for i, err in gradient_errors(analytic, numeric).items():
        assert err <= TOL, f"argument {i}: relative error {err:.2e}"
        assert analytic[i].shape == args[i].shape


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_embedding(rng):
    table = rng.standard_normal((7, 5))
    idx = np.array([[0, 3, 3], [6, 0, 2]])
    out, _ = L.embedding_forward(idx, table)
    np.testing.assert_array_equal(out, table[idx])
    check_op(L.embedding_forward, lambda d, c: L.embedding_backward(d, c), (idx, table), {1: 0}, rng)


def test_rmsnorm(rng):
    x, g = rng.standard_normal((6, 5)), rng.standard_normal(5)
    out, _ = L.rmsnorm_forward(x, g)
    assert_close(out, x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5) * g)
    check_op(L.rmsnorm_forward, L.rmsnorm_backward, (x, g), {0: 0, 1: 1}, rng)


def test_rmsnorm_tiny_input_uses_eps(rng):
    x, g = 1e-4 * rng.standard_normal((3, 4)), rng.standard_normal(4)
    check_op(L.rmsnorm_forward, L.rmsnorm_backward, (x, g), {0: 0, 1: 1}, rng)


def test_linear(rng):
    x, w, b = rng.standard_normal((6, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    out, _ = L.linear_forward(x, w, b)
    assert_close(out, x @ w.T + b)
    check_op(L.linear_forward, L.linear_backward, (x, w, b), {0: 0, 1: 1, 2: 2}, rng)


def test_linear_without_bias(rng):
    x, w = rng.standard_normal((6, 4)), rng.standard_normal((3, 4))
    check_op(lambda x, w: L.linear_forward(x, w), L.linear_backward, (x, w), {0: 0, 1: 1}, rng)
    assert L.linear_backward(np.ones((6, 3)), L.linear_forward(x, w)[1])[2] is None


def well_separated(rng, shape, spacing=0.1):
    """Rows whose |x| values are all at least `spacing` apart (and from 0), so an h = 1e-6 step can never change the
    AbsTopK kept set: the FD check never straddles a kink."""
    n = shape[-1]
    mags = (np.arange(1, n + 1) * spacing)[None, :] + 0.01 * rng.random((int(np.prod(shape[:-1])), n))
    mags = np.take_along_axis(mags, rng.permuted(np.tile(np.arange(n), (mags.shape[0], 1)), axis=1), axis=1)
    return (mags * rng.choice([-1.0, 1.0], size=mags.shape)).reshape(shape)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_abstopk(rng, k):
    x = well_separated(rng, (2, 3, 8))
    out, _ = L.abstopk_forward(x, k)
    # exactly the k largest |x| survive, with their sign
    thresh = -np.sort(-np.abs(x), axis=-1)[..., k - 1:k]
    np.testing.assert_array_equal(out, np.where(np.abs(x) >= thresh, x, 0.0))
    check_op(lambda x: L.abstopk_forward(x, k), L.abstopk_backward, (x,), {0: 0}, rng)


def test_abstopk_off_is_identity(rng):
    x = rng.standard_normal((4, 5))
    out, cache = L.abstopk_forward(x, 5)
    assert out is x and cache is None  # afrac = 1 costs nothing
    d = rng.standard_normal((4, 5))
    assert L.abstopk_backward(d, cache) is d


def attention_reference(q, k, v, sink, n_head):
    """DESIGN §1 attention written loop by loop."""
    B, T, A = q.shape
    dh = A // n_head
    y = np.zeros_like(q)
    for b in range(B):
        for h in range(n_head):
            sl = slice(h * dh, (h + 1) * dh)
            for i in range(T):
                s = np.array([q[b, i, sl] @ k[b, j, sl] / math.sqrt(dh) for j in range(i + 1)])
                denom = np.exp(s).sum() + (np.exp(sink[h]) if sink is not None else 0.0)
                y[b, i, sl] = (np.exp(s) / denom) @ v[b, : i + 1, sl]
    return y


@pytest.mark.parametrize("with_sink", [True, False])
@pytest.mark.parametrize("T", [1, 4])
def test_attention(rng, with_sink, T):
    B, H, Dh = 2, 2, 3
    q, k, v = (rng.standard_normal((B, T, H * Dh)) for _ in range(3))
    sink = rng.standard_normal(H) if with_sink else None
    out, _ = L.attention_forward(q, k, v, sink, H)
    assert_close(out, attention_reference(q, k, v, sink, H), 1e-10)
    args = (q, k, v, sink)
    wrt = {0: 0, 1: 1, 2: 2, 3: 3} if with_sink else {0: 0, 1: 1, 2: 2}
    check_op(lambda q, k, v, s: L.attention_forward(q, k, v, s, H), L.attention_backward, args, wrt, rng)


def test_gradient_check_tolerates_rounding_at_exact_zeros_and_catches_real_errors(rng):
    # one key per query and no sink: every softmax row is a single 1, so dq is 0 in exact arithmetic; some BLAS kernels
    # return it as 1e-16 rounding. The check must pass that on every CPU and still fail a gradient that is wrong.
    q, k, v = (rng.standard_normal((2, 1, 6)) for _ in range(3))
    fwd = lambda q, k, v: L.attention_forward(q, k, v, None, 2)  # noqa: E731
    out, cache = fwd(q, k, v)
    R = rng.standard_normal(out.shape)
    analytic = dict(enumerate(L.attention_backward(R, cache)[:3]))
    numeric = {i: numerical_grad(lambda: float(np.sum(fwd(q, k, v)[0] * R)), x) for i, x in enumerate((q, k, v))}
    assert np.abs(numeric[0]).max() < 1e-9 < np.abs(numeric[2]).max()
    scale = np.abs(analytic[2]).max()
    rounded = {**analytic, 0: 1e-16 * scale * rng.standard_normal(q.shape)}
    assert max(gradient_errors(rounded, numeric).values()) <= TOL
    assert rel_err(rounded[0], numeric[0], 1e-300) > 0.5     # judged against its own size alone, it would fail
    for i, x in enumerate((q, k, v)):                           # a real error, in any argument, fails
        wrong = {**rounded, i: rounded[i] + 1e-4 * scale * rng.standard_normal(x.shape)}
        assert gradient_errors(wrong, numeric)[i] > TOL


def test_attention_is_stable_for_large_logits(rng):
    # scores and sink of ~1e3 would overflow exp() without subtracting the max over scores ∪ sink
    q, k, v = 10 * rng.standard_normal((1, 3, 4)), 10 * rng.standard_normal((1, 3, 4)), rng.standard_normal((1, 3, 4))
    out, _ = L.attention_forward(q, k, v, np.array([1000.0, -1000.0]), 2)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, :, :2], 0.0, atol=1e-100)  # head 0 puts all its mass on the huge sink
    no_sink, _ = L.attention_forward(q, k, v, None, 2)
    assert_close(out[:, :, 2:], no_sink[:, :, 2:])  # head 1's sink weighs exp(-1000) = 0


def test_gelu(rng):
    x = 2 * rng.standard_normal((5, 6))
    out, _ = L.gelu_forward(x)
    ref = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert_close(out, ref)
    check_op(L.gelu_forward, L.gelu_backward, (x,), {0: 0}, rng)


def test_cross_entropy(rng):
    logits, targets = 3 * rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    loss, _ = L.cross_entropy_forward(logits, targets)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert isinstance(loss, float)
    assert abs(loss + logp[np.arange(6), targets].mean()) < 1e-12
    check_op(lambda z: L.cross_entropy_forward(z, targets), L.cross_entropy_backward, (logits,), {0: 0}, rng)


def test_cross_entropy_extreme_logits_stay_finite():
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype=np.float32)
    loss, _ = L.cross_entropy_forward(logits, np.array([1, 1]))
    assert np.isfinite(loss) and abs(loss - 1000.0) < 1e-3


def test_gate(rng):
    x, g, mu = rng.standard_normal((2, 3, 4)), rng.random(4), rng.standard_normal(4)
    out, _ = L.gate_forward(x, g, mu)
    assert_close(out, x * g + mu * (1 - g))
    check_op(L.gate_forward, L.gate_backward, (x, g, mu), {0: 0, 1: 1}, rng)
    # g in {0, 1}: a closed gate outputs exactly mu, an open one exactly x
    out, _ = L.gate_forward(x, np.array([1.0, 0.0, 1.0, 0.0]), mu)
    np.testing.assert_array_equal(out[..., 0], x[..., 0])
    np.testing.assert_array_equal(out[..., 1], np.broadcast_to(mu[1], x.shape[:-1]))


def test_float32_stays_float32(rng):
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x, g, w, b = f(6, 4), f(4), f(3, 4), f(3)
    checks = [
        (L.rmsnorm_forward, L.rmsnorm_backward, (x, g)),
        (L.linear_forward, L.linear_backward, (x, w, b)),
        (lambda x: L.abstopk_forward(x, 2), L.abstopk_backward, (x,)),
        (L.gelu_forward, L.gelu_backward, (x,)),
        (L.gate_forward, L.gate_backward, (x, g, g)),
        (lambda q, k, v, s: L.attention_forward(q, k, v, s, 2), L.attention_backward,
         (f(2, 3, 4), f(2, 3, 4), f(2, 3, 4), f(2))),
    ]
    for fwd, bwd, args in checks:
        out, cache = fwd(*args)
        assert out.dtype == np.float32
        grads = bwd(np.ones_like(out), cache)
        for gr in grads if isinstance(grads, tuple) else (grads,):
            assert gr is None or gr.dtype == np.float32
    _, cache = L.cross_entropy_forward(f(5, 7), np.arange(5))
    assert L.cross_entropy_backward(1.0, cache).dtype == np.float32
    assert L.embedding_backward(f(2, 3, 4), L.embedding_forward(np.zeros((2, 3), int), f(5, 4))[1]).dtype == np.float32
