"""Circuit pruning (DESIGN §5): gate gradients, the step/surrogate masks, edges, bisection, Circuit JSON, pruning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisparse.circuits import Circuit, TaskData, bisect_min_k, circuit_edges, prune
from minisparse.circuits.controls import random_model_like, run_controls, shuffled
from minisparse.circuits.masks import (
    SURROGATE_TEMPERATURE,
    gates_from_mask,
    heaviside,
    init_tau,
    keep_top,
    mask_from_nodes,
    mean_ablation,
    node_names,
    surrogate_grad,
    tau_grads,
    zero_ablation,
)
from minisparse.circuits.prune import binary_task_loss, task_loss, task_loss_and_gate_grads
from minisparse.config import ModelConfig
from minisparse.numpy import GPT
from minisparse.params import init_params, site_sizes
from minisparse.tasks import get_task

CFG = ModelConfig(vocab_size=256, n_ctx=32, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32)
TASK = get_task("single_double_quote")


def loud_params(cfg=CFG, seed=0, dtype=np.float64):
    """Init weights scaled up 25×: an untrained model at init has task-loss gradients of ~1e-9, too small for a
    finite-difference check to mean anything; scaled up, they are O(1e-2)."""
    return {n: (w * 25 if n.endswith(".weight") and "norm" not in n else w)
            for n, w in init_params(cfg, seed, dtype).items()}


@pytest.fixture(scope="module")
def data():
    return TaskData.from_task(TASK, 8, CFG.n_ctx, "train", seed=0)


@pytest.fixture(scope="module")
def random_gates():
    rng = np.random.default_rng(1)
    return {k: (rng.uniform(0.3, 1.0, n), rng.normal(0.0, 0.3, n)) for k, n in site_sizes(CFG).items()}


# ----------------------------------------------------------------------------------------------------------------------
# gradients

def test_numpy_gate_grads_match_finite_differences(data, random_gates):
    model = GPT(CFG, params=loud_params())
    _, grads = task_loss_and_gate_grads(model, data, random_gates)
    rng = np.random.default_rng(2)
    eps = 1e-6
    for key in ["L0.attn_in", "L0.q", "L0.k", "L0.v", "L0.attn_out", "L1.mlp_in", "L1.mlp_neuron", "L1.mlp_out"]:
        for i in rng.choice(site_sizes(CFG)[key], 3, replace=False):
            losses = []
            for sign in (1, -1):
                g = random_gates[key][0].copy()
                g[i] += sign * eps
                losses.append(task_loss(model, data, {**random_gates, key: (g, random_gates[key][1])}))
            fd = (losses[0] - losses[1]) / (2 * eps)
            assert abs(fd - grads[key][i]) <= 1e-6 * max(1.0, abs(fd)), (key, i, fd, grads[key][i])
    assert max(np.abs(g).max() for g in grads.values()) > 1e-3   # the check is not vacuous


def test_numpy_gate_grads_match_mlx_autograd(data, random_gates):
    mx = pytest.importorskip("mlx.core")
    from minisparse.mlx import GPT as MLXGPT

    params = loud_params()
    loss_np, grads_np = task_loss_and_gate_grads(GPT(CFG, params=params), data, random_gates)
    loss_mx, grads_mx = task_loss_and_gate_grads(MLXGPT(CFG, dtype=mx.float32, params=params), data, random_gates)
    assert loss_mx == pytest.approx(loss_np, rel=1e-4)
    scale = max(np.abs(g).max() for g in grads_np.values())
    for key in grads_np:
        np.testing.assert_allclose(grads_mx[key], grads_np[key], atol=2e-3 * scale, err_msg=key)


def test_binary_task_loss_gradient_and_chance():
    rng = np.random.default_rng(0)
    logits, labels, answers = rng.normal(size=(6, 10)), rng.integers(0, 2, 6), (3, 7)
    loss, dz = binary_task_loss(logits, labels, answers)
    eps = 1e-6
    for b in range(6):
        bumped = logits.copy()
        bumped[b, 7] += eps
        assert (binary_task_loss(bumped, labels, answers)[0] - loss) / eps == pytest.approx(dz[b], abs=1e-5)
    assert binary_task_loss(np.zeros((4, 10)), np.array([0, 1, 0, 1]), answers)[0] == pytest.approx(math.log(2))


def test_tau_grads_are_straight_through_with_sigmoid_surrogate():
    tau = {"L0.q": np.array([-0.5, 0.0, 0.1, 1.0])}
    T = SURROGATE_TEMPERATURE
    s = 1 / (1 + np.exp(-tau["L0.q"] / T))
    np.testing.assert_allclose(surrogate_grad(tau["L0.q"]), s * (1 - s) / T)
    np.testing.assert_allclose(tau_grads({"L0.q": np.full(4, 2.0)}, tau)["L0.q"], 2.0 * s * (1 - s) / T)
    np.testing.assert_array_equal(heaviside(tau["L0.q"]), [0, 1, 1, 1])


def test_tau_init_and_clamp():
    tau = init_tau(site_sizes(CFG), seed=0)
    flat = np.concatenate(list(tau.values()))
    assert flat.size == sum(site_sizes(CFG).values())
    assert abs(flat.mean() - 0.1) < 0.002 and abs(flat.std() - 0.01) < 0.002
    assert (flat >= -1).all() and (flat <= 1).all() and (heaviside(flat) == 1).all()


# ----------------------------------------------------------------------------------------------------------------------
# masks

def test_nothing_ablated_reproduces_the_unmasked_logits_exactly(data):
    model = GPT(CFG, params=loud_params(dtype=np.float32))
    means = {k: np.random.default_rng(0).normal(size=n) for k, n in site_sizes(CFG).items()}
    tau = {k: np.abs(t) * (np.arange(t.size) % 2) for k, t in init_tau(site_sizes(CFG)).items()}   # τ ≥ 0, some = 0
    gates = gates_from_mask({k: heaviside(t) for k, t in tau.items()}, means)
    np.testing.assert_array_equal(model.forward_cached(data.idx, gates)[0], model.forward(data.idx))


def test_ablating_everything_leaves_only_the_current_token():
    # every site replaced by its mean: what is left is wte[token] + constant writes, so context no longer matters
    model = GPT(CFG, params=loud_params())
    means = mean_ablation(model, np.arange(2000, dtype=np.uint8) % 97, n_batches=2, batch_size=4)
    gates = gates_from_mask({k: np.zeros(n) for k, n in site_sizes(CFG).items()}, means)
    a = model.forward_cached(np.array([[1, 2, 3]]), gates)[0][0, -1]
    b = model.forward_cached(np.array([[9, 8, 3]]), gates)[0][0, -1]
    c = model.forward_cached(np.array([[9, 8, 4]]), gates)[0][0, -1]
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert np.abs(b - c).max() > 1e-3          # the token's own embedding still reaches the logits


def test_mean_ablation_is_the_mean_site_activation():
    model = GPT(CFG, params=loud_params())
    stream = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8)
    means = mean_ablation(model, stream, n_batches=2, batch_size=3, n_ctx=16, seed=4)
    from minisparse.data import get_batch
    xs = np.concatenate([get_batch(stream, 3, 16, 4, i)[0] for i in range(2)])
    _, cache = model.forward_cached(xs)
    for key, a in cache["sites"].items():
        np.testing.assert_allclose(means[key], a.reshape(-1, a.shape[-1]).mean(axis=0), atol=1e-12)
    assert all((z == 0).all() for z in zero_ablation(model).values())


def test_keep_top_and_node_names_round_trip():
    tau = {"L0.q": np.array([0.5, -0.2, 0.9]), "L0.k": np.array([0.1, 0.7])}
    mask = keep_top(tau, 3)
    assert node_names(mask) == ["L0.q[0]", "L0.q[2]", "L0.k[1]"]
    back = mask_from_nodes(node_names(mask), {"L0.q": 3, "L0.k": 2})
    assert all((back[k] == mask[k]).all() for k in mask)
    # ties at the clamp are ranked by the tie-break (smallest first), not by forward order
    pinned = {"L0.q": np.array([1.0, 1.0, 0.2]), "L0.k": np.array([1.0, -1.0])}
    pull = {"L0.q": np.array([0.0, -0.1, 0.0]), "L0.k": np.array([-0.5, 0.0])}
    assert node_names(keep_top(pinned, 2, pull)) == ["L0.q[1]", "L0.k[0]"]


# ----------------------------------------------------------------------------------------------------------------------
# edges

TINY = ModelConfig(vocab_size=8, n_ctx=4, d_model=3, n_layer=1, n_head=1, d_head=2, d_mlp=4)


def hand_params(sparse: bool) -> dict[str, np.ndarray]:
    """Every weight 1..n (so every entry is nonzero), and in the sparse variant a checkerboard of exact zeros."""
    params = {}
    for name, w in init_params(TINY, 0, np.float64).items():
        w = np.arange(1, w.size + 1, dtype=np.float64).reshape(w.shape)
        if sparse and w.ndim == 2:
            w = w * (np.indices(w.shape).sum(axis=0) % 2 == 0)
        params[name] = w
    return params


KEPT = {"L0.attn_in": [0, 2], "L0.q": [1], "L0.k": [0], "L0.v": [0, 1], "L0.attn_out": [1],
        "L0.mlp_in": [1], "L0.mlp_neuron": [0, 3], "L0.mlp_out": [2]}


def kept_mask():
    mask = {k: np.zeros(n) for k, n in site_sizes(TINY).items()}
    for k, idx in KEPT.items():
        mask[k][idx] = 1
    return mask


def test_dense_model_counts_every_entry_between_kept_nodes():
    edges = circuit_edges(hand_params(False), TINY, kept_mask(), tokens=[5, 6, 5], answer_ids=[1, 2])
    resid = 3   # attn_in {0, 2} ∪ attn_out {1} ∪ mlp_in {1} ∪ mlp_out {2} = {0, 1, 2}
    expected = (2 * 1 + 2 * 1 + 2 * 2      # attn_in → q, k, v
                + 2 * 1                    # v → attn_out
                + 1 * 2 + 2 * 1            # mlp_in → neuron, neuron → mlp_out
                + 2 * resid + 2 * resid)   # wte rows of tokens {5, 6}, lm_head rows of answers {1, 2}
    assert len(edges) == expected
    assert len(set((s, d) for s, d, _ in edges)) == len(edges)
    P = hand_params(False)
    e = dict(((s, d), w) for s, d, w in edges)
    assert e[("L0.attn_in[2]", "L0.q[1]")] == P["blocks.0.attn.q_proj.weight"][1, 2]
    assert e[("L0.v[1]", "L0.attn_out[1]")] == P["blocks.0.attn.o_proj.weight"][1, 1]
    assert e[("L0.mlp_neuron[3]", "L0.mlp_out[2]")] == P["blocks.0.mlp.down_proj.weight"][2, 3]
    assert e[("tok[6]", "resid[1]")] == P["wte.weight"][6, 1]
    assert e[("resid[0]", "logit[2]")] == P["lm_head.weight"][2, 0]


def test_sparse_model_counts_only_the_nonzeros():
    P = hand_params(True)
    edges = circuit_edges(P, TINY, kept_mask(), tokens=[5, 6], answer_ids=[1, 2])
    assert all(w != 0 for _, _, w in edges)
    # the same count by brute force: every (dst, src) entry of every matrix, kept ends, nonzero
    pairs = [("attn_in", "q", "attn.q_proj"), ("attn_in", "k", "attn.k_proj"), ("attn_in", "v", "attn.v_proj"),
             ("v", "attn_out", "attn.o_proj"), ("mlp_in", "mlp_neuron", "mlp.up_proj"),
             ("mlp_neuron", "mlp_out", "mlp.down_proj")]
    brute = sum(P[f"blocks.0.{m}.weight"][j, i] != 0
                for s, d, m in pairs for i in KEPT[f"L0.{s}"] for j in KEPT[f"L0.{d}"])
    brute += sum(P["wte.weight"][t, c] != 0 for t in (5, 6) for c in range(3))
    brute += sum(P["lm_head.weight"][a, c] != 0 for a in (1, 2) for c in range(3))
    assert len(edges) == brute < len(circuit_edges(hand_params(False), TINY, kept_mask(), [5, 6], [1, 2]))
    # counting every entry regardless gives the dense count back
    assert len(circuit_edges(P, TINY, kept_mask(), [5, 6], [1, 2], nonzero_only=False)) == len(
        circuit_edges(hand_params(False), TINY, kept_mask(), [5, 6], [1, 2]))


def test_no_kept_nodes_no_edges():
    empty = {k: np.zeros(n) for k, n in site_sizes(TINY).items()}
    assert circuit_edges(hand_params(False), TINY, empty, [5], [1, 2]) == []


# ----------------------------------------------------------------------------------------------------------------------
# bisection

@given(n=st.integers(0, 300), data=st.data())
def test_bisect_finds_the_minimal_k_of_a_monotone_loss(n, data):
    lo = data.draw(st.integers(0, n))
    k_star = data.draw(st.integers(lo, n + 1))           # n + 1: the target is never reached
    drops = data.draw(st.lists(st.floats(0.0, 1.0), min_size=n + 1, max_size=n + 1))
    # a non-increasing loss that crosses the target 0.5 exactly at k_star (plateaus allowed on either side)
    curve = [0.5 + 1.0 + sum(drops[k:]) if k < k_star else 0.5 - sum(drops[:k]) / (n + 1) for k in range(n + 1)]
    calls = []

    def loss_of_k(k):
        calls.append(k)
        return curve[k]

    found = bisect_min_k(loss_of_k, lo, n, 0.5)
    assert found == (k_star if k_star <= n else None)
    assert len(calls) <= math.ceil(math.log2(n - lo + 1)) + 2


def test_bisect_rejects_an_empty_range():
    with pytest.raises(ValueError):
        bisect_min_k(lambda k: 0.0, 3, 2, 0.1)


# ----------------------------------------------------------------------------------------------------------------------
# Circuit

def test_circuit_json_round_trip(tmp_path):
    c = Circuit(task="t", nodes=["L0.q[1]", "L1.mlp_out[0]"], edges=[("L0.attn_in[0]", "L0.q[1]", -0.25)],
                task_loss=0.1, sufficiency=0.12, necessity=2.5, full_loss=0.05, answers=("'", '"'),
                controls={"random_model": {"n_nodes": 9}}, settings={"k_coef": 1e-3})
    back = Circuit.from_json(c.to_json())
    assert back == c
    c.to_json(tmp_path / "c.json")
    assert Circuit.load(tmp_path / "c.json") == c
    assert "2 of 0 nodes" in c.summary()


# ----------------------------------------------------------------------------------------------------------------------
# pruning end to end (tiny, few steps)

def test_prune_end_to_end_numpy():
    model = GPT(CFG, params=loud_params(dtype=np.float32))
    stream = np.random.default_rng(0).integers(1, 128, 4000).astype(np.uint8)
    means = mean_ablation(model, stream, n_batches=2, batch_size=4)
    c = prune(model, TASK, k_coef=1e-2, steps=8, lr=0.05, target_loss=0.69, means=means, n_examples=8, n_eval=8)
    n_total = sum(site_sizes(CFG).values())
    assert c.n_total_nodes == n_total and 0 <= c.n_nodes <= n_total
    if c.reached_target:
        assert c.task_loss <= 0.69
    assert all(np.isfinite([c.task_loss, c.sufficiency, c.necessity, c.full_loss]))
    kept = set(c.nodes)
    assert all(s in kept for s, d, _ in c.edges if s.startswith("L")) and all(d in kept for _, d, _ in c.edges
                                                                             if d.startswith("L"))
    assert Circuit.from_json(c.to_json()) == c


def test_prune_mlx_backend_runs():
    pytest.importorskip("mlx.core")
    from minisparse.mlx import GPT as MLXGPT

    model = MLXGPT(CFG, params=loud_params(dtype=np.float32))
    c = prune(model, TASK, steps=2, ablation="zero", n_examples=4, n_eval=4, target_loss=10.0)
    assert c.settings["backend"] == "mlx" and c.reached_target and c.n_nodes == 0   # any loss ≤ 10: empty circuit


def test_controls_random_model_and_shuffled_labels():
    model = GPT(CFG, params=loud_params(dtype=np.float32))
    twin = random_model_like(model, seed=5)
    assert type(twin) is GPT and twin.config == model.config
    for name, w in twin.params.items():
        assert np.count_nonzero(w) <= np.count_nonzero(model.params[name]) or w.ndim < 2
    d = TaskData.from_task(TASK, 8, CFG.n_ctx)
    s = shuffled(d, seed=0)
    assert sorted(s.labels) == sorted(d.labels) and (s.idx == d.idx).all()
    out = run_controls(model, TASK, None, steps=2, ablation="zero", n_examples=4, n_eval=4)
    assert set(out) == {"random_model", "shuffled_labels"}
    assert all(np.isfinite(v["task_loss"]) for v in out.values())
