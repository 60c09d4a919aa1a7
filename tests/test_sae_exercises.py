"""The exercise checks of lessons 5 and 9 accept minisparse's own answer and reject each typical wrong one, naming
the entry and giving the hint for that mistake."""

import numpy as np
import pytest

from minisparse.lessons import toy
from minisparse.lessons.exercises import ExerciseError, check_jsae_jacobian, check_sae_forward, check_toy_grads
from minisparse.sae import jacobian_forward, sae_forward


def test_checks_accept_the_reference(capsys):
    check_toy_grads(toy.toy_loss_and_grads)
    check_sae_forward(lambda x, p, k: sae_forward(x, p, k)[:2])
    check_jsae_jacobian(lambda *args: jacobian_forward(*args)[0])
    assert capsys.readouterr().out.count("✓") == 3


def test_a_stub_is_told_to_write_code():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(ExerciseError, match="not written yet"):
        check_sae_forward(stub)


# ----------------------------------------------------------------------------------------------------------------------
# the toy model's gradient


def toy_parts(w, b, x, importance):
    h = x @ w.T
    z = h @ w + b
    dz = (2.0 / x.shape[0]) * importance * (np.maximum(z, 0) - x) * (z > 0)
    return h, dz


def read_term_only(w, b, x, importance):
    loss, _, db = toy.toy_loss_and_grads(w, b, x, importance)
    h, dz = toy_parts(w, b, x, importance)
    return loss, h.T @ dz, db


def write_term_only(w, b, x, importance):
    loss, _, db = toy.toy_loss_and_grads(w, b, x, importance)
    h, dz = toy_parts(w, b, x, importance)
    return loss, (dz @ w.T).T @ x, db


def no_relu_gate(w, b, x, importance):
    loss, _, _ = toy.toy_loss_and_grads(w, b, x, importance)
    h = x @ w.T
    dz = (2.0 / x.shape[0]) * importance * (np.maximum(h @ w + b, 0) - x)
    return loss, h.T @ dz + (dz @ w.T).T @ x, dz.sum(axis=0)


def summed_loss(w, b, x, importance):
    loss, dw, db = toy.toy_loss_and_grads(w, b, x, importance)
    return loss * x.shape[0], dw, db


@pytest.mark.parametrize("wrong, message", [
    (read_term_only, "(?s)dL/dW .* entry .* hint: you have the read term"),
    (write_term_only, "(?s)dL/dW .* entry .* hint: you have the write term"),
    (no_relu_gate, r"(?s)dL/dW .* entry \[\d+, \d+\] is .*, expected"),
    (summed_loss, "(?s)loss on .* hint: mean over the batch"),
])
def test_toy_check_rejects(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        check_toy_grads(wrong)


# ----------------------------------------------------------------------------------------------------------------------
# a TopK SAE's forward


def sae_with(select_by_abs=False, relu=True, center=True):
    def forward(x, p, k):
        pre = ((x - p["b_dec"]) if center else x) @ p["W_enc"].T + p["b_enc"]
        idx = np.argsort(-(np.abs(pre) if select_by_abs else pre), axis=1)[:, :k]
        vals = np.take_along_axis(pre, idx, axis=1)
        s = np.zeros_like(pre)
        np.put_along_axis(s, idx, np.maximum(vals, 0) if relu else vals, axis=1)
        return s @ p["W_dec"].T + p["b_dec"], s
    return forward


def too_many_latents(x, p, k):
    pre = (x - p["b_dec"]) @ p["W_enc"].T + p["b_enc"]
    s = np.maximum(pre, 0)
    return s @ p["W_dec"].T + p["b_dec"], s


def decoder_without_bias(x, p, k):
    x_hat, s, _, _ = sae_forward(x, p, k)
    return x_hat - p["b_dec"], s


@pytest.mark.parametrize("wrong, message", [
    (sae_with(select_by_abs=True), "(?s)latents s .* entry .* hint: keep the k largest pre-activations by value"),
    (sae_with(relu=False), "(?s)hint: ReLU the kept pre-activations"),
    (sae_with(center=False), "(?s)latents s .* hint: pre = \\(x − b_dec\\)"),
    (too_many_latents, "(?s)row 0 has .* nonzero latents, at most k = 4"),
    (decoder_without_bias, "(?s)reconstruction x̂ .* entry \\[0, 0\\]"),
])
def test_sae_forward_check_rejects(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        check_sae_forward(wrong)


# ----------------------------------------------------------------------------------------------------------------------
# the JSAE Jacobian over active latents


def jacobian_ignoring_activity(p, q, slope, idx_in, act_in, idx_out, act_out):
    return np.einsum("nam,nm,nbm->nab", p[idx_in], slope, q.T[idx_out])


def jacobian_without_slope(p, q, slope, idx_in, act_in, idx_out, act_out):
    return jacobian_forward(p, q, np.ones_like(slope), idx_in, act_in, idx_out, act_out)[0]


def jacobian_transposed(p, q, slope, idx_in, act_in, idx_out, act_out):
    return jacobian_forward(p, q, slope, idx_in, act_in, idx_out, act_out)[0].transpose(0, 2, 1)


@pytest.mark.parametrize("wrong, message", [
    (jacobian_ignoring_activity, r"(?s)J on .* entry \[0, 2, 0\] is .*, expected 0 .* hint: zero the rows of inactive"),
    (jacobian_without_slope, "(?s)J on .* entry .* hint: J\\[n\\] = p\\[idx_in\\[n\\]\\]"),
    (jacobian_transposed, r"(?s)J on .* hint: your J is transposed"),
])
def test_jsae_jacobian_check_rejects(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        check_jsae_jacobian(wrong)
