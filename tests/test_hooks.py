"""Reading and editing a forward pass by name (`minisparse.hooks`): both models cache the same values under the same
keys, take the same hooks, and give the same gradient with respect to every site's value."""

import numpy as np
import pytest

from finite_differences import central_differences, gradient_errors  # tests/finite_differences.py
from minisparse.config import ModelConfig
from minisparse.hooks import cache_keys, hook_keys
from minisparse.mlx import GPT as MlxGPT
from minisparse.numpy import GPT
from minisparse.params import site_sizes

CFGS = [ModelConfig(vocab_size=32, n_ctx=8, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32, pos_emb="learned"),
        ModelConfig(vocab_size=32, n_ctx=8, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=32, attn_sink=False,
                    afrac=0.5, bigram=True)]
IDX = np.random.default_rng(0).integers(0, 32, (3, 7))


def scale_err(a, b) -> float:
    """Largest difference, in units of the larger array's largest entry."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("cfg", CFGS)
def test_both_models_cache_the_same_keys_shapes_and_values(cfg):
    ours, twin = GPT(cfg, seed=1), MlxGPT(cfg, seed=1)
    logits, cache = ours.run_with_cache(IDX)
    logits_mx, cache_mx = twin.run_with_cache(IDX)
    assert list(cache) == list(cache_mx) == cache_keys(cfg)
    np.testing.assert_array_equal(logits, ours.forward(IDX))
    B, T = IDX.shape
    sizes = site_sizes(cfg)
    for key, value in cache.items():
        point = key.split(".", 1)[1]
        expected = ((B, cfg.n_head, T, T) if point == "attn_pattern" else (B, T, cfg.d_model) if "resid" in point
                    else (B, T, sizes[key]))
        assert value.shape == cache_mx[key].shape == expected, key
        assert scale_err(cache_mx[key], value) < 1e-5, key
    for l in range(cfg.n_layer):
        p = cache[f"L{l}.attn_pattern"]
        assert np.all(np.triu(np.ones((T, T)), k=1)[None, None] * p == 0)                 # causal
        rows = p.sum(-1)
        assert np.all(rows <= 1 + 1e-6) and (np.allclose(rows, 1) != cfg.attn_sink)     # a sink takes some weight
        # the residual stream: resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out
        np.testing.assert_allclose(cache[f"L{l}.resid_mid"], cache[f"L{l}.resid_pre"] + cache[f"L{l}.attn_out"],
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(cache[f"L{l}.resid_post"], cache[f"L{l}.resid_mid"] + cache[f"L{l}.mlp_out"],
                                   rtol=0, atol=1e-6)
    assert list(ours.run_with_cache(IDX, names=["L0.q"])[1]) == ["L0.q"]


@pytest.mark.parametrize("cfg", CFGS)
def test_identity_hooks_change_nothing_and_an_ablation_hook_is_a_closed_gate(cfg):
    ours, twin = GPT(cfg, seed=2), MlxGPT(cfg, seed=2)
    identity = {key: (lambda value, key: value) for key in hook_keys(cfg)}
    np.testing.assert_array_equal(ours.run_with_hooks(IDX, identity), ours.forward(IDX))       # bitwise
    assert scale_err(twin.run_with_hooks(IDX, identity), np.asarray(twin.forward(IDX))) < 1e-6
    n = site_sizes(cfg)["L0.mlp_neuron"]
    mu = np.linspace(-1, 1, n).astype(np.float32)
    closed = {"L0.mlp_neuron": (np.zeros(n, np.float32), mu)}
    mean_ablate = {"L0.mlp_neuron": lambda value, key: np.broadcast_to(mu, value.shape).copy()}
    for model in (ours, twin):
        assert scale_err(model.run_with_hooks(IDX, mean_ablate), np.asarray(model.forward(IDX, closed))) < 1e-6


def test_a_hook_on_the_residual_stream_steers_the_logits():
    cfg = CFGS[0]
    model = GPT(cfg, seed=3)
    last = f"L{cfg.n_layer - 1}.resid_post"
    _, cache = model.run_with_cache(IDX, names=[last])
    steer = np.random.default_rng(1).standard_normal(cfg.d_model).astype(np.float32)
    steered = model.run_with_hooks(IDX, {last: lambda value, key: value + steer})
    x = cache[last] + steer
    xf = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5) * model.params["norm_f.weight"]
    assert scale_err(steered, xf @ model.params["lm_head.weight"].T) < 1e-5


@pytest.mark.parametrize("hooks, says", [
    ({"L9.q": lambda v, k: v}, "unknown hook key 'L9.q'"),
    ({"L0.attn_pattern": lambda v, k: v}, "unknown hook key 'L0.attn_pattern'"),
    ({"L0.q": lambda v, k: v[:, :1]}, "the hook at 'L0.q' returned shape"),
    ({"L0.q": lambda v, k: v.astype(np.int64)}, "the hook at 'L0.q' returned dtype int64"),
    ({"L0.resid_mid": lambda v, k: v * np.nan}, "the hook at 'L0.resid_mid' returned NaN"),
    ({"L0.q": lambda v, k: v.tolist()}, "the hook at 'L0.q' returned list"),
])
@pytest.mark.parametrize("backend", [GPT, MlxGPT])
def test_a_bad_hook_is_refused_in_one_line_naming_its_key(backend, hooks, says):
    with pytest.raises(ValueError) as e:
        backend(CFGS[0], seed=0).run_with_hooks(IDX, hooks)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_cache_name_is_refused():
    with pytest.raises(ValueError, match="unknown cache key 'L0.nope'"):
        GPT(CFGS[0]).run_with_cache(IDX, names=["L0.nope"])


def last_logit_loss(weights):
    """loss_fn for site_grads: Σ over prompts of weights · last-position logits, and its gradient."""
    def loss_fn(logits):
        d = np.zeros_like(logits)
        d[:, -1] = weights
        return float((logits[:, -1] * weights).sum()), d
    return loss_fn


@pytest.mark.parametrize("cfg", CFGS)
def test_site_gradients_match_finite_differences_and_mlx_autograd(cfg):
    rng = np.random.default_rng(4)
    model = GPT(cfg, seed=4, dtype=np.float64)
    weights = rng.standard_normal(cfg.vocab_size)
    loss_fn = last_logit_loss(weights)
    loss, grads = model.site_grads(IDX, loss_fn)
    assert list(grads) == list(site_sizes(cfg))
    numeric = {}
    for key in ("L0.attn_in", "L0.q", "L0.v", "L0.attn_out", f"L{cfg.n_layer - 1}.mlp_neuron"):
        base = model.run_with_cache(IDX, names=[key])[1][key]
        delta = np.zeros_like(base)

        def f(key=key, delta=delta):
            return loss_fn(model.run_with_hooks(IDX, {key: lambda v, k: v + delta}))[0]

        numeric[key] = central_differences(f, delta).reshape(delta.shape)
    for key, err in gradient_errors(grads, numeric).items():
        assert err <= 1e-6, f"{key}: relative error {err:.2e}"
    twin_loss, twin_grads = MlxGPT(cfg, seed=4).site_grads(IDX, last_logit_loss(weights.astype(np.float32)))
    assert abs(twin_loss - loss) <= 1e-4 * abs(loss)
    for key, g in grads.items():
        assert scale_err(twin_grads[key], g) < 1e-4, key
