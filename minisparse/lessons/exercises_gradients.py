"""Checks for the derivative exercises: RMSNorm's backward by hand (deep dive 1) and a central-difference
Jacobian (lesson 01)."""

from __future__ import annotations

import numpy as np

from minisparse.numpy import layers

from .check import ExerciseError, _call, _passed, compare

__all__ = ["check_rmsnorm_backward", "check_jacobian"]


# ----------------------------------------------------------------------------------------------------------------------
# Derivatives: backprop by hand (deep dive 1), a central-difference Jacobian (lesson 01)

def check_rmsnorm_backward(fn) -> None:
    """`fn(dout, x, g)` -> (dx, dg) for y = x / sqrt(mean(x²) + 1e-5) · g over the last axis of a 2-D x."""
    rng = np.random.default_rng(3)
    cases = [("x of unit scale, (4, 8)", rng.normal(size=(4, 8)), ""),
             ("x of scale 1e-3, where the 1e-5 inside the square root matters", 1e-3 * rng.normal(size=(3, 16)),
              "r = 1/sqrt(mean(x²) + 1e-5): keep the 1e-5"),
             ("x of scale 30, (2, 5)", 30 * rng.normal(size=(2, 5)), "")]
    for label, x, hint in cases:
        g = rng.normal(size=x.shape[1])
        dout = rng.normal(size=x.shape)
        _, cache = layers.rmsnorm_forward(x, g)
        dx, dg = layers.rmsnorm_backward(dout, cache)
        got = _call("rmsnorm_backward", fn, dout, x.copy(), g.copy())
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseError(f"rmsnorm_backward must return a pair (dx, dg), got {type(got).__name__}")
        compare(f"rmsnorm_backward dg on {label}", got[1], dg, rtol=1e-7, atol=1e-12,
                hint=hint or "g multiplies x̂ = x·r, r = 1/sqrt(mean(x²) + 1e-5), and is shared by every row: "
                             "dg = Σ_rows dout·x̂")
        compare(f"rmsnorm_backward dx on {label}", got[0], dx, rtol=1e-7, atol=1e-9 * np.abs(dx).max(),
                hint=hint or "dx = r·(dx̂ − x̂·mean(dx̂·x̂)) with dx̂ = dout·g: x̂ does not change when x is scaled, "
                             "so dx has no component along x")
    _passed("rmsnorm backward", len(cases))


def _gelu(z):
    return layers.gelu_forward(np.asarray(z, dtype=np.float64))[0]


def check_jacobian(fn) -> None:
    """`fn(f, x, eps)`: the central-difference Jacobian J[i, j] = (f(x + eps·e_j) − f(x − eps·e_j))_i / (2·eps) of a
    function f from [n] to [m], as an [m, n] array."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, 3))
    w[1, 2] = w[3, 0] = 0.0
    x = rng.normal(size=3)
    u = rng.normal(size=(5, 3))
    cases = [
        ("a linear map x -> W x, W of shape (5, 3)", lambda v: w @ v, w,
         "J[i, j] = ∂f_i/∂x_j: rows are outputs, columns are inputs; its shape is (outputs, inputs)"),
        ("x -> GELU(W x)", lambda v: _gelu(w @ v), _gelu_prime(w @ x)[:, None] * w,
         "use central differences, (f(x + ε) − f(x − ε)) / 2ε: a one-sided difference is off by O(ε)"),
        ("x -> tanh(U x) · sum(x)", lambda v: np.tanh(u @ v) * v.sum(),
         (1 - np.tanh(u @ x) ** 2)[:, None] * u * x.sum() + np.tanh(u @ x)[:, None], ""),
    ]
    for label, f, exact, hint in cases:
        x_in = x.copy()
        got = _call("jacobian", fn, f, x_in, 1e-4)
        compare(f"jacobian of {label} at x = {np.round(x, 3).tolist()}, eps = 1e-4", got, exact, rtol=1e-6,
                atol=1e-6 * np.abs(exact).max(), hint=hint)
        compare(f"jacobian of {label}: your function left x changed", x_in, x,
                hint="perturb a copy of x, or put each entry back after evaluating f")
    _passed("jacobian", len(cases))


def _gelu_prime(z):
    return layers.gelu_backward(np.ones_like(z), layers.gelu_forward(z)[1])

