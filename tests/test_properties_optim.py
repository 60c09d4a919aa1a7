"""The optimizer-step rules (DESIGN §3), stated as properties of minisparse.optim.

    gradients → rescale so their global RMS is 1 → Adam (bias-corrected) → top-k projection → decoupled weight decay

The sparsity rules are checked for any gradients (ordinary, tiny, huge, all zero, one-hot, mixed), any step and any
density schedule; the arithmetic is checked against a textbook transcription of the DESIGN §3 step written below in
float64; and whole short training runs of the NumPy GPT are checked step by step.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from facts import facts  # tests/facts.py
from minisparse.config import TrainConfig
from minisparse.numpy import GPT
from minisparse.optim import densities_at, grad_rms, init_state, lr_at, optimizer_step
from minisparse.params import param_shapes
from minisparse.sparsity import ANNEAL_SHAPES, density_at, is_sparsified, k_at, min_axis, project_mask
from strategies import bad_values, examples, gradients, model_configs, tiny_params, train_configs

steps = st.integers(0, 250)


@st.composite
def setups(draw, dtype=np.float32):
    """A tiny model's parameters, a training config, gradients for them and a step index."""
    model_cfg = draw(model_configs())
    shapes = param_shapes(model_cfg)
    cfg = draw(train_configs(names=[n for n in shapes if is_sparsified(n)]))
    params = tiny_params(model_cfg, seed=draw(st.integers(0, 1000)), dtype=dtype)
    grads = draw(gradients(shapes, dtype=dtype))
    return params, grads, draw(steps), cfg


def allowed_nonzeros(name, shape, step, cfg):
    """What the schedule allows a sparsified matrix after step `step`: k_at at density_at(step)."""
    density = density_at(step, cfg.steps, cfg.density_for(name), cfg.anneal_start, cfg.anneal_end, cfg.anneal_shape)
    return k_at(shape, min_axis(name), density, cfg.min_per_neuron)


def copy(tree):
    if isinstance(tree, dict):
        return {k: copy(v) for k, v in tree.items()}
    return tree.copy()


def assert_bitwise_equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_bitwise_equal(a[k], b[k])
    else:
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------------------------------------------------
# one step: what the projection guarantees

@given(setups())
def test_step_never_exceeds_the_scheduled_nonzeros(setup):
    """After any step, every sparsified matrix holds at most k_at(density_at(step)) nonzeros, and its mask exactly
    that."""
    params, grads, step, cfg = setup
    masks = optimizer_step(params, grads, init_state(params), step, cfg)
    for name, w in params.items():
        if is_sparsified(name):
            allowed = allowed_nonzeros(name, w.shape, step, cfg)
            assert int(masks[name].sum()) == allowed
            assert np.count_nonzero(w) <= allowed
            assert not w[~masks[name]].any()


@given(setups())
def test_step_masks_are_the_top_k_of_the_updated_weights(setup):
    """The masks a step returns are the projection masks of the weights it leaves (decay keeps the order of |w|)."""
    params, grads, step, cfg = setup
    assume(cfg.weight_decay * lr_at(step, cfg) < 1)
    masks = optimizer_step(params, grads, init_state(params), step, cfg)
    for name, mask in masks.items():
        w = params[name]
        density = densities_at(step, [name], cfg)[name]
        again = project_mask(name, w, density, cfg.min_per_neuron)
        assert not w[~mask].any(), name               # the step zeroed everything off its mask
        np.testing.assert_array_equal(w * again, w)  # the step's result is already a fixed point of the projection


@given(setups())
def test_step_returns_a_mask_for_every_sparsified_matrix_and_nothing_else(setup):
    """The step returns one mask per sparsified matrix, shaped like it, and none for norms, biases, sinks or bigram."""
    params, grads, step, cfg = setup
    masks = optimizer_step(params, grads, init_state(params), step, cfg)
    assert set(masks) == {n for n in params if is_sparsified(n)}
    for name, mask in masks.items():
        assert mask.shape == params[name].shape and mask.dtype == np.bool_


@given(setups())
def test_density_only_changes_the_sparsified_matrices(setup):
    """Norms, biases, sinks and bigram come out of a step identically whatever the density: they are never masked."""
    params, grads, step, cfg = setup
    dense_cfg = TrainConfig(**{**cfg.to_dict(), "weight_density": 1.0, "density_overrides": {}, "sharkfin": False})
    sparse_cfg = TrainConfig(**{**cfg.to_dict(), "sharkfin": False})
    dense, sparse = copy(params), copy(params)
    optimizer_step(dense, grads, init_state(dense), step, dense_cfg)
    optimizer_step(sparse, grads, init_state(sparse), step, sparse_cfg)
    for name in params:
        if not is_sparsified(name):
            assert_bitwise_equal(sparse[name], dense[name])


@given(setups())
def test_zero_gradient_only_projects_and_decays(setup):
    """With an all-zero gradient, a step leaves norms, biases, sinks and bigram unchanged and only projects and decays
    the sparsified matrices."""
    params, _, step, cfg = setup
    zero = {n: np.zeros_like(p) for n, p in params.items()}
    before = copy(params)
    optimizer_step(params, zero, init_state(params), step, cfg)
    decay = 1.0 - cfg.weight_decay * lr_at(step, cfg)
    for name, w in params.items():
        if is_sparsified(name):
            density = densities_at(step, [name], cfg)[name]
            mask = project_mask(name, before[name], density, cfg.min_per_neuron)
            np.testing.assert_allclose(w, before[name] * mask * decay, rtol=1e-6, atol=0)
        else:
            assert_bitwise_equal(w, before[name])


@given(setups())
def test_adam_moments_are_never_masked(setup):
    """The projection zeroes weights only: Adam's moments stay dense, so a zeroed weight can grow back."""
    params, grads, step, cfg = setup
    state = init_state(params)
    optimizer_step(params, grads, state, step, cfg)
    rms = grad_rms(grads)
    for name, g in grads.items():
        # every entry whose normalised gradient is representable once squared (|g/rms| > 1e-15 in float32)
        moving = np.abs(g.astype(np.float64) / (rms if rms > 0 else 1.0)) > 1e-15
        assert (state["m"][name][moving] != 0).all(), name
        assert (state["v"][name][moving] != 0).all(), name


@given(setups())
def test_step_leaves_the_gradients_alone(setup):
    """A step reads the gradients and never modifies them."""
    params, grads, step, cfg = setup
    before = copy(grads)
    optimizer_step(params, grads, init_state(params), step, cfg)
    assert_bitwise_equal(grads, before)


# ----------------------------------------------------------------------------------------------------------------------
# one step: refusals

@given(setups(), st.data(), bad_values)
def test_step_refuses_a_non_finite_gradient_and_changes_nothing(setup, data, bad):
    """A gradient holding NaN or ±inf anywhere is refused with FloatingPointError, and the parameters and the optimizer
    state stay bitwise as they were."""
    params, grads, step, cfg = setup
    state = init_state(params)
    optimizer_step(params, {n: np.ones_like(p) for n, p in params.items()}, state, 0, cfg)  # a non-trivial state
    name = data.draw(st.sampled_from(sorted(grads)))
    grads[name].flat[data.draw(st.integers(0, grads[name].size - 1))] = bad
    params_before, state_before = copy(params), copy(state)
    with pytest.raises(FloatingPointError, match=re.escape(name)):
        optimizer_step(params, grads, state, step, cfg)
    assert_bitwise_equal(params, params_before)
    assert_bitwise_equal(state, state_before)


@given(setups(), st.data())
def test_step_refuses_gradients_that_do_not_match_the_parameters(setup, data):
    """A gradient dict missing a parameter, or naming one that does not exist, is refused with a ValueError."""
    params, grads, step, cfg = setup
    name = data.draw(st.sampled_from(sorted(grads)))
    missing = {n: g for n, g in grads.items() if n != name}
    with pytest.raises(ValueError, match="missing"):
        optimizer_step(params, missing, init_state(params), step, cfg)
    with pytest.raises(ValueError, match="extra"):
        optimizer_step(params, {**grads, "nonexistent.weight": grads[name]}, init_state(params), step, cfg)
    # a gradient that would broadcast onto its parameter is still the wrong gradient
    with pytest.raises(ValueError, match=facts("shape", f"'{name}'")):
        optimizer_step(params, {**grads, name: grads[name][None]}, init_state(params), step, cfg)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@given(setups())
@examples(0.1)
def test_an_update_that_overflows_a_weight_is_reported_as_divergence(setup):
    """If the update pushes a weight past the largest float, the step is reported as diverged, not masked."""
    params, grads, step, cfg = setup
    cfg = TrainConfig(**{**cfg.to_dict(), "lr": 1e45, "weight_decay": 0.0, "warmup": 0.0})
    step = min(step, cfg.steps - 1)  # the LR has decayed to 0 after the last step
    name = next(n for n, p in params.items() if p.ndim == 2)
    params[name].flat[0] = np.finfo(params[name].dtype).max
    grads = {n: np.zeros_like(g) for n, g in grads.items()}
    grads[name].flat[0] = -1.0
    with pytest.raises(FloatingPointError, match=f"step {step} overflowed the weights"):
        optimizer_step(params, grads, init_state(params), step, cfg)


@given(setups(dtype=np.float64), st.sampled_from([1e160, 1e200, 1e300]), st.integers(0, 2 ** 32 - 1))
def test_step_accepts_finite_float64_gradients_of_any_size(setup, scale, seed):
    """Any finite gradient, however large, is accepted: only NaN and inf are refused."""
    params, _, step, cfg = setup
    rng = np.random.default_rng(seed)
    grads = {n: rng.uniform(-1, 1, size=p.shape) * scale for n, p in params.items()}
    optimizer_step(params, grads, init_state(params), step, cfg)
    assert all(np.isfinite(p).all() for p in params.values())


def rms_in_float64(grads, scale=1.0):
    """The RMS of every entry of `grads`·scale, summed at unit scale so nothing overflows or underflows."""
    total = sum(float(np.sum(np.square(g.astype(np.float64)))) for g in grads.values())
    return scale * math.sqrt(total / sum(g.size for g in grads.values()))


@given(st.lists(st.integers(0, 6), min_size=1, max_size=4).filter(any), st.integers(0, 2 ** 32 - 1),
       st.sampled_from([1.0, 1e-30, 1e30, 1e100, 1e200, 1e300]))
def test_grad_rms_is_the_root_mean_square_of_all_entries(sizes, seed, scale):
    """grad_rms is sqrt(mean of g² over every entry of every tensor), also for float64 gradients far above 1e154."""
    rng = np.random.default_rng(seed)
    grads = {f"g{i}": rng.uniform(-1, 1, size=n) for i, n in enumerate(sizes)}
    big = {n: g * scale for n, g in grads.items()}
    assert grad_rms(big) == pytest.approx(rms_in_float64(grads, scale), rel=1e-12, abs=0)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=4).filter(any), st.integers(0, 2 ** 32 - 1),
       st.sampled_from([1e-200, 1e-300, 1e-170]))
def test_grad_rms_is_exact_for_tiny_float64_gradients(sizes, seed, scale):
    """grad_rms stays exact for float64 gradients far below 1e-154, so even they are rescaled to RMS 1."""
    rng = np.random.default_rng(seed)
    grads = {f"g{i}": rng.uniform(0.5, 1, size=n) for i, n in enumerate(sizes)}
    tiny = {n: g * scale for n, g in grads.items()}
    assert grad_rms(tiny) == pytest.approx(rms_in_float64(grads, scale), rel=1e-12, abs=0)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=4).filter(any), st.sampled_from([np.float32, np.float64]))
def test_grad_rms_of_all_zero_gradients_is_zero(sizes, dtype):
    """All-zero gradients have RMS 0 (and the step then leaves them unscaled rather than dividing by zero)."""
    assert grad_rms({f"g{i}": np.zeros(n, dtype) for i, n in enumerate(sizes)}) == 0.0


# ----------------------------------------------------------------------------------------------------------------------
# one step: the arithmetic of DESIGN §3

def reference_step(params, grads, m, v, step, cfg):
    """DESIGN §3 transcribed, in float64: normalise the global gradient RMS to 1, bias-corrected Adam, top-k
    projection at density_at(step), decoupled weight decay on the projected matrices. Returns new arrays."""
    total = sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values())
    rms = math.sqrt(total / sum(g.size for g in grads.values()))
    lr, t = lr_at(step, cfg), step + 1
    new_p, new_m, new_v = {}, {}, {}
    for name, w in params.items():
        g = grads[name].astype(np.float64) / (rms if rms > 0 else 1.0)
        new_m[name] = cfg.beta1 * m[name] + (1 - cfg.beta1) * g
        new_v[name] = cfg.beta2 * v[name] + (1 - cfg.beta2) * g ** 2
        m_hat = new_m[name] / (1 - cfg.beta1 ** t)
        v_hat = new_v[name] / (1 - cfg.beta2 ** t)
        w = w.astype(np.float64) - lr * m_hat / (np.sqrt(v_hat) + cfg.eps)
        if is_sparsified(name):
            density = density_at(step, cfg.steps, cfg.density_for(name), cfg.anneal_start, cfg.anneal_end,
                                 cfg.anneal_shape)
            w = w * project_mask(name, w, density, cfg.min_per_neuron)
            w = w * (1 - cfg.weight_decay * lr)
        new_p[name] = w
    return new_p, new_m, new_v


@given(setups(dtype=np.float64), st.integers(1, 3), st.integers(0, 2 ** 32 - 1))
def test_steps_follow_the_design_formula(setup, n_steps, seed):
    """A few consecutive steps give the weights and moments of the DESIGN §3 formula (RMS-normalised bias-corrected
    Adam, then top-k, then decay), to float64 rounding."""
    params, _, step, cfg = setup
    rng = np.random.default_rng(seed)
    state = init_state(params)
    ref_p, ref_m, ref_v = copy(params), copy(state["m"]), copy(state["v"])
    for s in range(step, step + n_steps):
        grads = {n: rng.normal(size=p.shape) * rng.choice([1e-3, 1.0, 1e3]) for n, p in params.items()}
        optimizer_step(params, grads, state, s, cfg)
        ref_p, ref_m, ref_v = reference_step(ref_p, grads, ref_m, ref_v, s, cfg)
        for name in params:
            np.testing.assert_allclose(params[name], ref_p[name], rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(state["m"][name], ref_m[name], rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(state["v"][name], ref_v[name], rtol=1e-9, atol=1e-12, err_msg=name)


@given(setups(), st.integers(-40, 40))
def test_step_ignores_the_overall_scale_of_the_gradients(setup, e):
    """Multiplying every gradient by the same positive number changes nothing (the global RMS is normalised to 1)."""
    params, grads, step, cfg = setup
    assume(any(g.any() for g in grads.values()))
    with np.errstate(over="ignore", under="ignore"):
        scaled = {n: g * np.float32(2.0 ** e) for n, g in grads.items()}
    assume(all(np.isfinite(g).all() for g in scaled.values()))
    assume(all(np.array_equal(g * np.float32(2.0 ** -e), grads[n]) for n, g in scaled.items()))  # exact, no underflow
    a, b = copy(params), copy(params)
    optimizer_step(a, grads, init_state(a), step, cfg)
    optimizer_step(b, scaled, init_state(b), step, cfg)
    for name in params:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-7, err_msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# the learning-rate schedule

@st.composite
def lr_configs(draw):
    start = draw(st.floats(0.0, 1.0))
    return TrainConfig(steps=draw(st.integers(1, 3000)), lr=draw(st.floats(1e-5, 1.0)),
                       warmup=draw(st.floats(0.0, 0.5)), sharkfin=False,
                       anneal_start=start, anneal_end=draw(st.floats(start, 1.0)),
                       anneal_shape=draw(st.sampled_from(ANNEAL_SHAPES)))


@given(lr_configs(), st.integers(0, 3000))
def test_lr_stays_between_zero_and_the_peak(cfg, step):
    """During training the learning rate is positive and never above the peak `lr`."""
    assume(step < cfg.steps)
    assert 0 < lr_at(step, cfg) <= cfg.lr


@given(lr_configs(), st.integers(0, 100))
def test_lr_is_zero_from_the_end_of_training_on(cfg, extra):
    """The decay reaches 0 at step `steps` and stays there."""
    assert lr_at(cfg.steps + extra, cfg) == 0.0


@given(lr_configs())
def test_lr_warms_up_linearly_then_decays_linearly(cfg):
    """The LR rises in equal increments of peak/warmup-steps, starting one increment above 0 at step 0, to the peak,
    then falls in equal decrements to 0."""
    warm = cfg.warmup * cfg.steps
    lrs = np.array([lr_at(s, cfg) for s in range(cfg.steps + 1)])
    assert lrs[0] == pytest.approx(cfg.lr * min(1.0, 1.0 / warm) if warm > 0 else cfg.lr)
    top = int(np.argmax(lrs))
    assert lrs[top] == pytest.approx(cfg.lr)
    rise, fall = lrs[: top + 1], lrs[top:]
    assert np.all(np.diff(rise) >= 0) and np.all(np.diff(fall) <= 0)
    # straight lines: constant steps (away from the corner, where a partial step may fall)
    if rise.size >= 3:
        np.testing.assert_allclose(np.diff(rise[:-1]), cfg.lr / warm, rtol=1e-9)
    decay = lrs[int(np.ceil(warm)) + 1:]
    if decay.size >= 2:
        np.testing.assert_allclose(np.diff(decay), -cfg.lr / (cfg.steps - warm), rtol=1e-9)


@given(st.integers(1, 3000), st.floats(1e-5, 1.0))
def test_without_warmup_the_first_step_runs_at_the_peak(steps_, lr):
    """With warmup 0, step 0 uses the full learning rate, and the decay then ends at 0 at step `steps`."""
    cfg = TrainConfig(steps=steps_, lr=lr, warmup=0.0)
    assert lr_at(0, cfg) == cfg.lr
    if steps_ > 1:
        assert lr_at(1, cfg) == pytest.approx(cfg.lr * (steps_ - 1) / steps_)


@given(lr_configs(), st.floats(1e-3, 1.0), st.integers(0, 3000))
def test_sharkfin_multiplies_the_lr_by_sqrt_target_over_density(cfg, target, step):
    """The sharkfin LR is the plain LR times sqrt(target / density(t)): equal at the end, smaller while denser."""
    plain = TrainConfig(**{**cfg.to_dict(), "weight_density": target})
    fin = TrainConfig(**{**plain.to_dict(), "sharkfin": True})
    density = density_at(step, cfg.steps, target, cfg.anneal_start, cfg.anneal_end, cfg.anneal_shape)
    assert lr_at(step, fin) == pytest.approx(lr_at(step, plain) * math.sqrt(target / density), rel=1e-12, abs=0)
    assert lr_at(step, fin) <= lr_at(step, plain)


@given(lr_configs(), st.lists(st.sampled_from(["wte.weight", "blocks.0.norm1.weight", "blocks.0.mlp.up_proj.weight",
                                               "blocks.0.attn.o_proj.bias"]), unique=True), st.integers(0, 3000))
def test_densities_at_covers_exactly_the_sparsified_names(cfg, names, step):
    """densities_at gives each sparsified name its scheduled density, with its per-name override, and nothing else."""
    cfg = TrainConfig(**{**cfg.to_dict(), "weight_density": 0.25, "density_overrides": {"wte.weight": 0.5}})
    got = densities_at(step, names, cfg)
    assert set(got) == {n for n in names if is_sparsified(n)}
    for name, d in got.items():
        assert d == density_at(step, cfg.steps, cfg.density_for(name), cfg.anneal_start, cfg.anneal_end,
                               cfg.anneal_shape)


# ----------------------------------------------------------------------------------------------------------------------
# whole runs of the NumPy GPT

@examples(0.15)
@given(model_configs(max_vocab=8), st.data())
def test_every_step_of_a_training_run_obeys_the_schedule(model_cfg, data):
    """Along a short training run of the NumPy GPT, after every step each sparsified matrix holds no more nonzeros
    than k_at(density_at(step)), every neuron on its min-j axis keeps its forced entries in the mask, and the loss
    stays finite."""
    shapes = param_shapes(model_cfg)
    n_steps = data.draw(st.integers(1, 12), label="steps")
    cfg = data.draw(train_configs(names=[n for n in shapes if is_sparsified(n)], max_steps=n_steps), label="cfg")
    cfg = TrainConfig(**{**cfg.to_dict(), "steps": n_steps})
    model = GPT(model_cfg, seed=data.draw(st.integers(0, 1000), label="seed"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="data seed"))
    state = init_state(model.params)
    B, T = data.draw(st.integers(1, 3), label="B"), data.draw(st.integers(1, model_cfg.n_ctx), label="T")
    for step in range(n_steps):
        idx = rng.integers(0, model_cfg.vocab_size, size=(B, T + 1))
        loss, grads = model.loss_and_grads(idx[:, :-1], idx[:, 1:])
        assert math.isfinite(loss)
        masks = optimizer_step(model.params, grads, state, step, cfg)
        for name, w in model.params.items():
            if is_sparsified(name):
                allowed = allowed_nonzeros(name, w.shape, step, cfg)
                assert int(masks[name].sum()) == allowed
                assert np.count_nonzero(w) <= allowed, (name, step)
                assert not w[~masks[name]].any()
                per_unit = masks[name].sum(axis=1 - min_axis(name))
                fan = w.shape[1 - min_axis(name)]
                assert (per_unit >= min(cfg.min_per_neuron, fan)).all()
