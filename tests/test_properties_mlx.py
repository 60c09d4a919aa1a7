"""The MLX twin obeys the same sparsity rules as the NumPy reference (DESIGN §2, §3).

MLX on Linux runs on a slow reference BLAS and compiles every new shape, so these properties draw few, tiny examples.
Ties: where several entries share the k-th largest |w| the two backends may keep different ones, so positions are
compared on matrices with distinct |w| and multisets of kept |w| otherwise.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import (
    bad_values,
    densities,
    distinct_matrices,
    examples,
    matrices,
    model_configs,
    nonempty_shapes_2d,
    problems,
    tiny_params,
    train_configs,
)

mx = pytest.importorskip("mlx.core")
from mlx.utils import tree_unflatten  # noqa: E402

from minisparse import checkpoint  # noqa: E402
from minisparse.config import TrainConfig  # noqa: E402
from minisparse.mlx import GPT as MLXGPT  # noqa: E402
from minisparse.mlx import MLXTrainer, SparseAdam, project_matrix  # noqa: E402
from minisparse.mlx import abstopk as mlx_abstopk  # noqa: E402
from minisparse.numpy import GPT  # noqa: E402
from minisparse.optim import init_state, optimizer_step  # noqa: E402
from minisparse.params import param_shapes  # noqa: E402
from minisparse.sparsity import (  # noqa: E402
    abstopk,
    density_at,
    is_sparsified,
    k_at,
    min_axis,
    project_topk,
    topk_mask,  # noqa: E402
)


def mlx_project(w: np.ndarray, k: int, j: int) -> np.ndarray:
    """The MLX projection of a matrix whose neurons are its rows, asked for the same k and j as `topk_mask`."""
    jj = min(j, w.shape[1])
    return np.array(project_matrix(mx.array(w), mx.array(min(k, w.size) - w.shape[0] * jj), jj))


# ----------------------------------------------------------------------------------------------------------------------
# the projection

@examples(0.2)
@given(problems(distinct_matrices(nonempty_shapes_2d)))
def test_mlx_projection_equals_numpy_projection(problem):
    """With distinct |w|, the MLX projection keeps exactly the entries NumPy's topk_mask keeps, with their values."""
    w, k, j = problem
    np.testing.assert_array_equal(mlx_project(w, k, j), np.where(topk_mask(w, k, j), w, 0))


@examples(0.2)
@given(problems(matrices(nonempty_shapes_2d)))
def test_mlx_projection_keeps_the_same_magnitudes_as_numpy_even_with_ties(problem):
    """With ties, MLX may keep other tied entries than NumPy, but the multiset of kept |w| is the same, and so is
    what each row keeps of its own top j."""
    w, k, j = problem
    got = mlx_project(w, k, j)
    want = np.where(topk_mask(w, k, j), w, 0)
    np.testing.assert_array_equal(np.sort(np.abs(got), axis=None), np.sort(np.abs(want), axis=None))
    assert np.isin(got[got != 0], w).all()  # kept values are the weights themselves, never altered
    jj = min(j, w.shape[1])
    for row_got, row_w in zip(np.abs(got), np.abs(w)):
        np.testing.assert_array_equal(np.sort(row_got)[::-1][:jj], np.sort(row_w)[::-1][:jj])


@examples(0.1)
@given(st.integers(1, 3), st.integers(1, 9), st.sampled_from([1, 2, 3, 9]), st.integers(0, 2 ** 32 - 1))
def test_mlx_abstopk_equals_numpy_abstopk(rows, n, k, seed):
    """AbsTopK gives the same activations in both backends (distinct |x|, any k)."""
    x = np.random.default_rng(seed).normal(size=(rows, n)).astype(np.float32)
    np.testing.assert_array_equal(np.array(mlx_abstopk(mx.array(x), k)), abstopk(x, k))


# ----------------------------------------------------------------------------------------------------------------------
# the optimizer step

def as_tree(flat: dict) -> dict:
    return tree_unflatten([(n, mx.array(a)) for n, a in flat.items()])


@st.composite
def mlx_setups(draw):
    """A tiny model (as NumPy parameters), a training config, ordinary gradients and a step index."""
    model_cfg = draw(model_configs(max_vocab=6))
    shapes = param_shapes(model_cfg)
    cfg = draw(train_configs(names=[n for n in shapes if is_sparsified(n)], max_steps=50))
    params = tiny_params(model_cfg, seed=draw(st.integers(0, 1000)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    grads = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
    return model_cfg, params, grads, draw(st.integers(0, 60)), cfg


def allowed_nonzeros(name, shape, step, cfg):
    density = density_at(step, cfg.steps, cfg.density_for(name), cfg.anneal_start, cfg.anneal_end, cfg.anneal_shape)
    return k_at(shape, min_axis(name), density, cfg.min_per_neuron)


@examples(0.05)
@given(mlx_setups())
def test_mlx_step_matches_the_numpy_step_and_the_schedule(setup):
    """One MLX SparseAdam step leaves each sparsified matrix with at most k_at(density_at(step)) nonzeros, never masks
    the other tensors, and gives the NumPy step's weights and moments to float32 rounding."""
    model_cfg, params, grads, step, cfg = setup
    model = MLXGPT(model_cfg, params=params)
    opt = SparseAdam(cfg, param_shapes(model_cfg))
    opt.update(model, as_tree(grads), opt.schedule(step))
    mx.eval(model.parameters(), opt.state)
    got = model.numpy_params()

    want = {n: p.copy() for n, p in params.items()}
    state = init_state(want)
    optimizer_step(want, grads, state, step, cfg)
    for name, w in got.items():
        if is_sparsified(name):
            assert np.count_nonzero(w) <= allowed_nonzeros(name, w.shape, step, cfg), name
        np.testing.assert_allclose(w, want[name], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.array(opt.state["m"][name]), state["m"][name], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(np.array(opt.state["v"][name]), state["v"][name], rtol=1e-4, atol=1e-7)


@examples(0.05)
@given(mlx_setups(), st.data(), bad_values)
def test_mlx_step_with_a_non_finite_gradient_changes_nothing(setup, data, bad):
    """A NaN or ±inf in any gradient leaves the MLX model's weights and Adam's moments bitwise as they were, and the
    step reports which gradient was not finite."""
    model_cfg, params, grads, step, cfg = setup
    model = MLXGPT(model_cfg, params=params)
    opt = SparseAdam(cfg, param_shapes(model_cfg))
    opt.update(model, as_tree(grads), opt.schedule(0))  # a non-trivial state first
    mx.eval(model.parameters(), opt.state)
    name = data.draw(st.sampled_from(sorted(grads)))
    grads[name].flat[data.draw(st.integers(0, grads[name].size - 1))] = bad
    before_w = model.numpy_params()
    before_s = {k: {n: np.array(a) for n, a in opt.state[k].items()} for k in ("m", "v")}
    finite = opt.update(model, as_tree(grads), opt.schedule(step))
    mx.eval(finite, model.parameters(), opt.state)
    assert [n for n, f in zip(opt.shapes, np.array(finite)) if not f] == [name]
    for n, w in model.numpy_params().items():
        assert w.tobytes() == before_w[n].tobytes(), n
    for k in ("m", "v"):
        for n, a in opt.state[k].items():
            assert np.array(a).tobytes() == before_s[k][n].tobytes(), (k, n)


# ----------------------------------------------------------------------------------------------------------------------
# whole runs

@examples(0.01)
@given(model_configs(max_vocab=6), st.data())
def test_every_step_of_an_mlx_training_run_obeys_the_schedule(model_cfg, data):
    """Along a short MLX training run, after every step each sparsified matrix holds no more nonzeros than
    k_at(density_at(step)), and the loss stays finite."""
    shapes = param_shapes(model_cfg)
    n_steps = data.draw(st.integers(1, 3), label="steps")
    cfg = data.draw(train_configs(names=[n for n in shapes if is_sparsified(n)], max_steps=n_steps), label="cfg")
    cfg = TrainConfig(**{**cfg.to_dict(), "steps": n_steps})
    trainer = MLXTrainer(MLXGPT(model_cfg, seed=data.draw(st.integers(0, 1000), label="seed")), cfg)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="data seed"))
    B, T = 2, model_cfg.n_ctx
    for step in range(n_steps):
        idx = rng.integers(0, model_cfg.vocab_size, size=(B, T + 1))
        assert math.isfinite(trainer.step(idx[:, :-1], idx[:, 1:], step))
        for name, w in trainer.numpy_params().items():
            if is_sparsified(name):
                assert np.count_nonzero(w) <= allowed_nonzeros(name, w.shape, step, cfg), (name, step)


# ----------------------------------------------------------------------------------------------------------------------
# checkpoints across backends

@examples(0.03)
@given(model_configs(max_vocab=6), densities, st.integers(0, 4), st.integers(0, 1000))
def test_checkpoint_keeps_the_zero_pattern_across_backends(model_cfg, density, j, seed):
    """A projected model saved by either backend loads in either backend with every weight bitwise, zeros included."""
    numpy_model = GPT(model_cfg, seed=seed)
    project_topk(numpy_model.params, {n: density for n in numpy_model.params if is_sparsified(n)}, j)
    want = numpy_model.params
    mlx_model = MLXGPT(model_cfg, params=want)
    with tempfile.TemporaryDirectory() as tmp:
        for writer in (numpy_model, mlx_model):
            path = Path(tmp) / "model.safetensors"
            checkpoint.save(writer, path)
            from_numpy = checkpoint.load(path, backend="numpy").params
            from_mlx = checkpoint.load(path, backend="mlx").numpy_params()
            for name, w in want.items():
                assert from_numpy[name].tobytes() == w.tobytes(), (type(writer).__module__, name)
                assert from_mlx[name].tobytes() == w.tobytes(), (type(writer).__module__, name)
