"""Checks for the exercises of lessons 02 (superposition) and 08 (Jacobian SAEs): features packed into fewer dimensions
than there are features, and the sparse autoencoders that pull them back apart.

    check_toy_grads(fn)         fn(w, b, x, importance) -> (loss, dW, db) of the toy model of superposition
    check_sae_forward(fn)       fn(x, params, k) -> (x̂, s) of a TopK SAE
    check_jsae_jacobian(fn)     fn(p, q, slope, idx_in, act_in, idx_out, act_out) -> J over active latents
"""

from __future__ import annotations

import numpy as np

from minisparse.sae.numpy import active_latents, init_sae, jacobian_forward, sae_forward

from . import toy
from .check import ExerciseError, _call, _pair, _passed, compare

__all__ = ["check_toy_grads", "check_sae_forward", "check_jsae_jacobian"]


# ----------------------------------------------------------------------------------------------------------------------
# lesson 02: the toy model of superposition


def check_toy_grads(fn) -> None:
    """`fn(w, b, x, importance)` -> (loss, dL/dw, dL/db) for L = mean over the batch of Σ_i I_i (ReLU(x Wᵀ W + b)_i −
    x_i)²."""
    rng = np.random.default_rng(0)
    cases = []
    for label, m, n, batch, sparsity in (("5 dims, 20 features, dense features", 5, 20, 16, 0.0),
                                         ("5 dims, 20 features, S = 0.9", 5, 20, 64, 0.9),
                                         ("3 dims, 7 features, S = 0.5", 3, 7, 9, 0.5)):
        w = rng.normal(size=(m, n))
        b = rng.normal(-0.2, 0.3, size=n)     # some readouts below 0: the ReLU cuts them
        cases.append((label, w, b, toy.sample_features(rng, batch, n, sparsity), 0.9 ** np.arange(n)))
    for label, w, b, x, importance in cases:
        loss, dw, db = toy.toy_loss_and_grads(w, b, x, importance)
        got = _pair("toy_loss_and_grads", _call("toy_loss_and_grads", fn, w.copy(), b.copy(), x.copy(), importance), 3)
        compare(f"loss on {label}", got[0], loss, rtol=1e-9,
                hint="mean over the batch (axis 0) of the importance-weighted sum over features (axis 1)")
        h = x @ w.T
        dz = (2.0 / x.shape[0]) * importance * (np.maximum(h @ w + b, 0) - x) * (h @ w + b > 0)
        if np.allclose(got[1], h.T @ dz, rtol=1e-9):
            hint = "you have the read term hᵀ·dz only: W also writes h = x Wᵀ, add (dz Wᵀ)ᵀ x"
        elif np.allclose(got[1], (dz @ w.T).T @ x, rtol=1e-9):
            hint = "you have the write term only: W also reads x̂ = ReLU(h W + b), add hᵀ·dz"
        else:
            hint = "dz = 2/B · I · (x̂ − x) where h W + b > 0, else 0; dW = hᵀ dz + (dz Wᵀ)ᵀ x"
        compare(f"dL/dW on {label}", got[1], dw, rtol=1e-7, atol=1e-12, hint=hint)
        compare(f"dL/db on {label}", got[2], db, rtol=1e-7, atol=1e-12, hint="dL/db = Σ over the batch of dz")
    _passed("toy_loss_and_grads", len(cases))


# ----------------------------------------------------------------------------------------------------------------------
# lesson 08: a TopK SAE and the Jacobian SAE pair


def _sae_cases():
    rng = np.random.default_rng(1)
    cases = []
    for label, d, s, k, n in (("D = 8, S = 32 latents, k = 4", 8, 32, 4, 10), ("k = 1", 6, 20, 1, 7),
                              ("k = S: every latent selected", 5, 6, 6, 4)):
        p = init_sae(d, s, seed=int(rng.integers(1000)), dtype=np.float64)
        p["W_enc"] = p["W_enc"] + 0.3 * rng.normal(size=p["W_enc"].shape)   # not the transpose of the decoder
        p["b_enc"] = rng.normal(-0.5, 0.5, size=s)                          # some selected pre-activations < 0
        p["b_dec"] = rng.normal(size=d)
        cases.append((label, rng.normal(size=(n, d)), p, k))
    return cases


def check_sae_forward(fn) -> None:
    """`fn(x, params, k)` -> (x̂ [N, D], s [N, S]): pre = (x − b_dec) W_encᵀ + b_enc; keep each row's k largest pre
    (by value), ReLU them, zero the rest; x̂ = s W_decᵀ + b_dec."""
    cases = _sae_cases()
    for label, x, p, k in cases:
        x_hat, s, _, _ = sae_forward(x, p, k)
        got = _pair("sae_forward", _call("sae_forward", fn, x.copy(), {n: w.copy() for n, w in p.items()}, k), 2)
        got_s, hint = np.asarray(got[1], dtype=np.float64), ""
        if got_s.shape == s.shape:
            too_many = np.count_nonzero(got_s, axis=1) > k
            if too_many.any():
                row = int(np.argmax(too_many))
                raise ExerciseError(f"latents on {label}: row {row} has {np.count_nonzero(got_s[row])} nonzero "
                                    f"latents, at most k = {k} allowed")
            pre = (x - p["b_dec"]) @ p["W_enc"].T + p["b_enc"]
            by_abs = np.argsort(-np.abs(pre), axis=1)[:, :k]
            if (got_s < 0).any():
                hint = "ReLU the kept pre-activations: latents are never negative"
            elif np.array_equal(got_s != 0, _support(by_abs, s.shape) & (pre > 0)):
                hint = "keep the k largest pre-activations by value (not by |pre|), then ReLU"
            else:
                hint = ("pre = (x − b_dec) W_encᵀ + b_enc (subtract b_dec before encoding, add b_enc after), then keep "
                        "the k largest by value and ReLU them")
        compare(f"latents s on {label}", got_s, s, rtol=1e-9, atol=1e-12, hint=hint)
        compare(f"reconstruction x̂ on {label}", got[0], x_hat, rtol=1e-9, atol=1e-12,
                hint="x̂ = s W_decᵀ + b_dec: W_dec is stored (D, S), one column per latent")
    _passed("sae_forward", len(cases))


def check_jsae_jacobian(fn) -> None:
    """`fn(p, q, slope, idx_in, act_in, idx_out, act_out)` -> J [N, k_in, k_out] with
    J[n, a, b] = Σ_j p[idx_in[n, a], j] · slope[n, j] · q[j, idx_out[n, b]] where both latents are active, else 0."""
    rng = np.random.default_rng(2)
    cases = []
    for label, n, s_in, s_out, m, k_in, k_out in (("N = 5 tokens, 12 → 16 latents, 10 neurons, k = 3", 5, 12, 16, 10,
                                                   3, 3), ("k_in = 2, k_out = 4 (not square)", 4, 9, 11, 7, 2, 4)):
        p, q = rng.normal(size=(s_in, m)), rng.normal(size=(m, s_out))
        slope = rng.normal(size=(n, m)) * (rng.random((n, m)) < 0.5)       # half the neurons dropped: φ′ = 0
        s1, s2 = rng.normal(0.5, 1.0, size=(n, s_in)), rng.normal(0.5, 1.0, size=(n, s_out))
        idx_in = np.argsort(-s1, axis=1)[:, :k_in]
        idx_out = np.argsort(-s2, axis=1)[:, :k_out]
        s1, s2 = np.maximum(s1, 0), np.maximum(s2, 0)
        s1[0, idx_in[0, -1]] = 0.0                                          # a selected but inactive input latent
        s2[-1, idx_out[-1, 0]] = 0.0                                        # and output latent
        cases.append((label, p, q, slope, idx_in, active_latents(s1, idx_in), idx_out, active_latents(s2, idx_out)))
    for label, p, q, slope, idx_in, act_in, idx_out, act_out in cases:
        expected, _ = jacobian_forward(p, q, slope, idx_in, act_in, idx_out, act_out)
        got = np.asarray(_call("jsae_jacobian", fn, p, q, slope, idx_in, act_in, idx_out, act_out), dtype=np.float64)
        transposed = expected.transpose(0, 2, 1)
        if (got.shape == transposed.shape and np.allclose(got, transposed)
                and (got.shape != expected.shape or not np.allclose(got, expected))):
            hint = "your J is transposed: J[n, a, b] is input slot a (rows), output slot b (columns)"
        elif got.shape == expected.shape and not np.allclose(got[~_active(act_in, act_out)], 0):
            hint = "zero the rows of inactive input latents and the columns of inactive output latents"
        elif got.shape == expected.shape:
            hint = ("J[n] = p[idx_in[n]] · diag(slope[n]) · q[:, idx_out[n]]: gather rows of p by the input latents, "
                    "columns of q by the output latents, and scale each neuron by its slope")
        else:
            hint = ""
        compare(f"J on {label}", got, expected, rtol=1e-9, atol=1e-12, hint=hint)
    _passed("jsae_jacobian", len(cases))


def _support(idx, shape):
    mask = np.zeros(shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def _active(act_in, act_out):
    return act_in[:, :, None] & act_out[:, None, :]
