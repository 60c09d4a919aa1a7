"""The MLX GPT against the NumPy GPT (two independent implementations of DESIGN §1), and its own contract.

The MLX model runs in float32, the dtype models are trained in; the NumPy reference runs on the same (float32) weights
in float64, so the tolerances bound MLX's own error rather than the sum of two float32 errors. (MLX's float64 would be
no stronger reference on the CPU: its exp and fast RMSNorm are only float32-accurate, ~2e-7 relative, measured.)

Ties in AbsTopK. Exact ties do not occur: activations are continuous functions of random float weights, except for
exact zeros, where the shared rule (`minisparse.sparsity.abstopk_mask`) makes the choice irrelevant: a row with fewer
than k nonzeros passes whole, so no backend has to pick which zeros to keep. Near ties do occur: where the k-th and
(k+1)-th largest |x| of a row are closer than the two backends' rounding difference (~1e-7 relative), each may keep a
different channel, and everything downstream differs at O(1e-3), a true discontinuity rather than an error. So the
NumPy reference is run once in float64 while recording, at every AbsTopK call, the gap between the k-th and (k+1)-th
largest |x| relative to the row's largest; a draw whose smallest gap is below 1e-5 is rejected (`assume`), which
hypothesis reports if it happens too often. Every accepted draw must then agree to the tolerances below with no
exceptions.
"""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
import mlx.nn as nn  # noqa: E402
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from agreement import as64, min_topk_gap, rel_max  # noqa: E402
from facts import facts  # noqa: E402  (tests/facts.py)
from minisparse.config import ModelConfig  # noqa: E402
from minisparse.mlx import GPT, abstopk, gelu  # noqa: E402
from minisparse.numpy import GPT as NumpyGPT  # noqa: E402
from minisparse.numpy import layers  # noqa: E402
from minisparse.params import SITES, param_shapes, site_sizes  # noqa: E402
from minisparse.sparsity import abstopk as np_abstopk  # noqa: E402
from strategies import examples, model_configs, tiny_params  # noqa: E402

LOGIT_TOL, LOSS_TOL, GRAD_TOL = 1e-5, 1e-5, 1e-4
MIN_REL_GAP = 1e-5

ALL_OPTIONS = [dict(pos_emb=p, attn_sink=s, bigram=b) for p in ("none", "learned") for s in (False, True)
               for b in (False, True)]


def small_config(**kw) -> ModelConfig:
    base = dict(vocab_size=40, n_ctx=12, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32)
    return ModelConfig(**{**base, **kw})


def mlx_grads(model, idx, targets, gates=None):
    """(loss, parameter grads, gate grads) by MLX autograd; gate grads are dL/dg for each gated site."""
    x, y = mx.array(idx), mx.array(targets)
    loss, grads = nn.value_and_grad(model, lambda m: m.loss_unchecked(x, y, gates))(model)
    gate_grads = {}
    if gates:
        g_only = {k: g for k, (g, _) in gates.items()}
        gate_grads = mx.grad(lambda gs: model.loss_unchecked(x, y, {k: (gs[k], gates[k][1]) for k in gs}))(g_only)
    return loss.item(), dict(tree_flatten(grads)), gate_grads


def numpy_grads(model, idx, targets, gates=None):
    logits, cache = model.forward_cached(idx, gates)
    B, T, V = logits.shape
    loss, ce = layers.cross_entropy_forward(logits.reshape(B * T, V), targets.reshape(B * T))
    grads, gate_grads = model.backward(layers.cross_entropy_backward(1.0, ce).reshape(B, T, V), cache)
    return loss, grads, gate_grads


def assert_grads_close(got: dict, want: dict, what: str, scale: float):
    # A tensor whose gradient is <1% of `scale`, the largest parameter gradient, is compared at the absolute floor
    # 1e-2·scale·GRAD_TOL instead: such a gradient is ~0 in exact math (dL/dbk without a sink) or a sum that cancels
    # (dL/dnorm_f with a 2-token vocabulary; a gate's dL/dg can be 1e-9 from terms of 1e-5), and there float32 round-off
    # alone reaches 1e-4 of it (measured over 1,200 draws: worst 6e-5 with this floor, 3e-4 with a 0.1% floor). After
    # the optimizer's global RMS normalisation such an error is below 1e-6 of the largest update.
    gmax = 1e-2 * scale
    for name, g in want.items():
        err = rel_max(np.array(got[name]), g, floor=gmax)
        assert err < GRAD_TOL, f"{what} {name}: relative error {err:.2e}"


# ----------------------------------------------------------------------------------------------------------------------
# the contract of DESIGN §2 and §6


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_parameter_names_are_the_design_names(options):
    cfg = small_config(**options)
    flat = tree_flatten(GPT(cfg).parameters())
    assert [(n, tuple(a.shape)) for n, a in flat] == list(param_shapes(cfg).items())
    assert all(a.dtype == mx.float32 for _, a in flat)


@pytest.mark.parametrize("options", ALL_OPTIONS[::3])
def test_same_seed_gives_the_numpy_models_weights(options):
    cfg = small_config(**options)
    ours, theirs = GPT(cfg, seed=7).numpy_params(), NumpyGPT(cfg, seed=7).params
    assert list(ours) == list(theirs)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert not np.array_equal(ours["wte.weight"], GPT(cfg, seed=8).numpy_params()["wte.weight"])


def test_load_params_and_numpy_params_round_trip():
    cfg = small_config(attn_sink=True, bigram=True, pos_emb="learned")
    params = tiny_params(cfg, seed=3)
    model = GPT(cfg, seed=0)
    model.load_params(params)
    out = model.numpy_params()
    for name in params:
        np.testing.assert_array_equal(out[name], params[name], err_msg=name)
    out["wte.weight"][0, 0] = 123.0                                   # numpy_params is a copy
    assert model.numpy_params()["wte.weight"][0, 0] != 123.0
    np.testing.assert_array_equal(GPT(cfg, params=params).numpy_params()["lm_head.weight"], params["lm_head.weight"])


@pytest.mark.parametrize("change, match", [
    (lambda p: p.pop("norm_f.weight"), r"missing \['norm_f.weight'\]"),
    (lambda p: p.update(extra=np.zeros(3, np.float32)), r"unexpected \['extra'\]"),
    (lambda p: p.update({"wte.weight": np.zeros((3, 3), np.float32)}), r"'wte.weight' has shape \(3, 3\)"),
])
def test_load_params_refuses_a_mismatch(change, match):
    cfg = small_config()
    model = GPT(cfg)
    params = model.numpy_params()
    before = model.numpy_params()["lm_head.weight"]
    change(params)
    with pytest.raises(ValueError, match=match):
        model.load_params(params)
    np.testing.assert_array_equal(model.numpy_params()["lm_head.weight"], before)   # nothing half-loaded


@pytest.mark.parametrize("idx, match", [
    (np.array([[1.0, 2.0]]), "must be an integer array"),
    (np.array([[True, False]]), "must be an integer array"),
    (np.array([[0, 40]]), r"token ids in \[0, 40\], outside \[0, vocab_size=40\)"),
    (np.array([[-1, 3]]), r"token ids in \[-1, 3\], outside"),
    (np.zeros((1, 13), np.int64), facts("length 13", "n_ctx=12")),
    (np.array([1, 2, 3]), "must be 2-D"),
    (np.zeros((0, 3), np.int64), "at least one"),
    (mx.array([[0.5]]), "must be an integer array"),
    (mx.array([[99]]), "outside"),
])
def test_bad_token_ids_are_refused_as_the_numpy_model_refuses_them(idx, match):
    model, twin = GPT(small_config()), NumpyGPT(small_config())
    for call in (model, model.forward, model.site_activations, twin.forward, twin.site_activations):
        with pytest.raises(ValueError, match=match):
            call(idx)


def test_bad_gates_are_refused():
    model, idx = GPT(small_config()), np.zeros((1, 4), np.int64)
    ok = (mx.ones((16,)), mx.zeros((16,)))
    with pytest.raises(ValueError, match="unknown gate site 'L2.q'"):
        model(idx, gates={"L2.q": ok})
    with pytest.raises(ValueError, match=facts("'L0.mlp_neuron'", "(16,)", "(32,)")):
        model(idx, gates={"L0.mlp_neuron": ok})


# ----------------------------------------------------------------------------------------------------------------------
# the pieces


def test_gelu_is_the_design_formula_not_a_sigmoid_fit():
    x = np.linspace(-6, 6, 1001)
    want = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(np.array(gelu(mx.array(x, dtype=mx.float32))), want, rtol=1e-5, atol=1e-6)


@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(1, 12), k=st.integers(1, 14), zeros=st.floats(0, 1))
@examples(0.5)
def test_abstopk_matches_the_reference(seed, n, k, zeros):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 5, n)).astype(np.float32)
    x[rng.random(x.shape) < zeros] = 0.0                    # exact zeros are never "kept", however many there are
    got = np.array(abstopk(mx.array(x), k))
    np.testing.assert_array_equal(got, np_abstopk(x, k))
    assert ((got != 0).sum(-1) <= min(k, n)).all()


def test_abstopk_gradient_flows_through_kept_entries_only():
    x = mx.array([[0.5, -3.0, 0.0, 2.0, -0.1],
                  [0.0, -3.0, 0.0, 0.0, 0.0]])      # fewer nonzeros than k: the identity, and its derivative
    g = mx.grad(lambda v: (abstopk(v, 2) * mx.arange(1, 6)).sum())(x)
    np.testing.assert_array_equal(np.array(g), [[0, 2, 0, 4, 0], [1, 2, 3, 4, 5]])


def test_abstopk_keeps_exactly_k_of_tied_nonzeros():
    x = mx.array([[1.0, -1.0, 1.0, 1.0, 0.5, 0.0]])
    out = np.array(abstopk(x, 2))
    assert (out != 0).sum() == 2 and set(np.abs(out[out != 0])) == {1.0}


def test_attention_sink_is_an_extra_softmax_logit():
    # one head, one layer: with a large sink a head attends to almost nothing, and its output shrinks accordingly
    cfg = small_config(n_layer=1, attn_sink=True, afrac=1.0)
    model = GPT(cfg, params=tiny_params(cfg, seed=0))
    idx = np.arange(6)[None]
    acts_lo = model.site_activations(idx)
    model.blocks[0].attn.sink = mx.full((2,), 30.0)
    acts_hi = model.site_activations(idx)
    assert np.abs(acts_hi["L0.attn_out"] - np.array(model.blocks[0].attn.o_proj.bias)).max() < 1e-6
    assert np.abs(acts_lo["L0.attn_out"] - np.array(model.blocks[0].attn.o_proj.bias)).max() > 1e-2


# ----------------------------------------------------------------------------------------------------------------------
# the whole model against the NumPy twin


def draw_gates(rng, cfg, share):
    sizes = site_sizes(cfg)
    keys = [k for k in sizes if rng.random() < share]
    return {k: (rng.uniform(0, 1, sizes[k]).astype(np.float32), rng.standard_normal(sizes[k]).astype(np.float32))
            for k in keys}


@given(cfg=model_configs(), seed=st.integers(0, 2 ** 32 - 1), batch=st.integers(1, 3),
       gate_share=st.sampled_from([0, 0.3]))
@examples(0.4)
def test_logits_loss_and_gradients_match_numpy(cfg, seed, batch, gate_share):
    rng = np.random.default_rng(seed)
    params = tiny_params(cfg, seed % 2 ** 31)
    T = int(rng.integers(1, cfg.n_ctx + 1))
    idx, targets = rng.integers(0, cfg.vocab_size, (2, batch, T))
    gates_np = draw_gates(rng, cfg, gate_share)
    assume(min_topk_gap(params, cfg, idx, gates_np) > MIN_REL_GAP)
    gates_mx = {k: (mx.array(g), mx.array(mu)) for k, (g, mu) in gates_np.items()}
    theirs, ours = NumpyGPT(cfg, params=as64(params)), GPT(cfg, params=params)
    gates_np = {k: (g.astype(np.float64), mu.astype(np.float64)) for k, (g, mu) in gates_np.items()}

    logits_np, cache = theirs.forward_cached(idx, gates_np)
    logits_mx = np.array(ours(idx, gates=gates_mx))
    assert rel_max(logits_mx, logits_np) < LOGIT_TOL
    acts = ours.site_activations(idx, gates_mx)
    assert list(acts) == list(cache["sites"])
    for key, a in cache["sites"].items():                   # the same channels kept at every site
        np.testing.assert_array_equal(acts[key] != 0, a != 0, err_msg=key)

    loss_np, grads_np, gate_grads_np = numpy_grads(theirs, idx, targets, gates_np)
    loss_mx, grads_mx, gate_grads_mx = mlx_grads(ours, idx, targets, gates_mx)
    assert abs(loss_mx - loss_np) <= LOSS_TOL * abs(loss_np)
    scale = max(float(np.abs(g).max()) for g in grads_np.values())
    assert_grads_close(grads_mx, grads_np, "parameter", scale)
    if gates_np:
        assert set(gate_grads_mx) == set(gate_grads_np)
        assert_grads_close(gate_grads_mx, gate_grads_np, "gate", scale)


@pytest.mark.parametrize("afrac", [1.0, 0.25])
def test_a_wider_model_matches_numpy(afrac):
    # A fixed, wider config than the hypothesis ones (every option on), at the paper's afrac and with AbsTopK off.
    cfg = ModelConfig(vocab_size=64, n_ctx=16, d_model=32, n_layer=2, n_head=4, d_head=8, d_mlp=64, pos_emb="learned",
                      attn_sink=True, bigram=True, afrac=afrac)
    params = tiny_params(cfg, seed=11)
    rng = np.random.default_rng(11)
    idx, targets = rng.integers(0, 64, (2, 4, 16))
    assert min_topk_gap(params, cfg, idx) > MIN_REL_GAP     # fixed data: checked once, holds
    theirs, ours = NumpyGPT(cfg, params=as64(params)), GPT(cfg, params=params)
    assert rel_max(np.array(ours(idx)), theirs.forward(idx)) < LOGIT_TOL
    loss_np, grads_np = theirs.loss_and_grads(idx, targets)
    loss_mx, grads_mx, _ = mlx_grads(ours, idx, targets)
    assert abs(loss_mx - loss_np) <= LOSS_TOL * loss_np
    assert_grads_close(grads_mx, grads_np, "parameter", max(float(np.abs(g).max()) for g in grads_np.values()))


def test_sites_are_the_design_sites():
    cfg = small_config()
    acts = GPT(cfg).site_activations(np.zeros((2, 5), np.int64))
    assert list(acts) == list(site_sizes(cfg))
    assert all(acts[f"L0.{s}"].shape == (2, 5, site_sizes(cfg)[f"L0.{s}"]) for s in SITES)


def test_models_optimizer_state_and_checkpoints_refuse_a_missing_parameter_alike(tmp_path):
    # one checker (minisparse.params.check_shapes) behind all four: the same fact, said the same way
    from safetensors.numpy import save_file

    from minisparse.checkpoint import CheckpointError, read_checkpoint
    from minisparse.config import TrainConfig
    from minisparse.mlx import MLXTrainer

    cfg = small_config()
    params = tiny_params(cfg, 0)
    del params["lm_head.weight"]
    said = []
    for load in (lambda: NumpyGPT(cfg, params=params), lambda: GPT(cfg, params=params),
                 lambda: MLXTrainer(GPT(cfg), TrainConfig(), state={"m": params, "v": params})):
        with pytest.raises(ValueError) as e:
            load()
        said.append(str(e.value))
    path = tmp_path / "m.safetensors"
    save_file(params, str(path), {"format": "minisparse", "format_version": "1", "config": cfg.to_json()})
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    said.append(str(e.value))
    assert all("missing ['lm_head.weight'], unexpected []" in s for s in said), said


def test_both_models_loss_is_one_contract_a_checked_float():
    cfg = small_config()
    ours, theirs = GPT(cfg, seed=3), NumpyGPT(cfg, seed=3)
    idx = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 5))
    targets = np.roll(idx, -1, axis=1)
    a, b = ours.loss(idx, targets), theirs.loss(idx, targets)
    assert type(a) is float and type(b) is float and abs(a - b) <= 1e-5 * abs(b)
    for bad_targets, says in ((targets[:, :4], "targets have shape"), (targets + cfg.vocab_size, "outside [0")):
        said = []
        for model in (ours, theirs):
            with pytest.raises(ValueError, match=facts(says)) as e:
                model.loss(idx, bad_targets)
            said.append(str(e.value).replace("(2, 4)", "").replace("(2, 5)", ""))
        assert said[0] == said[1]
