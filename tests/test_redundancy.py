"""The frontier over pruning targets and the redundancy loop (`minisparse.circuits.redundancy`)."""

import sys

import numpy as np
import pytest

from minisparse.circuits import Circuit, redundancy
from minisparse.circuits.masks import ablation_means, gates_from_mask, mask_from_nodes
from minisparse.circuits.redundancy import WithoutNodes, disjoint_circuits, frontier_over_targets
from minisparse.config import ModelConfig
from minisparse.numpy import GPT
from minisparse.params import site_sizes
from minisparse.tasks import get_task

CFG = ModelConfig(vocab_size=256, n_ctx=48, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=32)
TASK = get_task("single_double_quote")
IDX = np.random.default_rng(0).integers(0, 256, (2, 9))


def test_forbidden_nodes_are_held_at_their_ablated_values_and_get_no_gradient():
    model = GPT(CFG, seed=0)
    means = ablation_means(model, "mean", 0)
    forbidden = ["L0.q[1]", "L0.mlp_neuron[7]"]
    without = WithoutNodes(model, forbidden, means)
    keep_all_but = {k: 1.0 - m for k, m in mask_from_nodes(forbidden, site_sizes(CFG)).items()}
    np.testing.assert_array_equal(without.forward(IDX), model.forward(IDX, gates_from_mask(keep_all_but, means)))
    gates = gates_from_mask({k: np.full(n, 0.7) for k, n in site_sizes(CFG).items()}, means)

    def loss_fn(logits):
        return float(logits.sum()), np.ones_like(logits)

    _, grads = without.loss_and_gate_grads(IDX, gates, loss_fn)
    assert grads["L0.q"][1] == 0 and grads["L0.mlp_neuron"][7] == 0 and np.count_nonzero(grads["L0.q"]) > 1


def test_the_redundancy_loop_forbids_each_circuit_and_stops(monkeypatch):
    model = GPT(CFG, seed=1)
    found = [["L0.q[1]", "L0.k[2]"], ["L0.q[1]", "L0.v[3]"], ["L0.v[4]"], []]    # the 2nd reuses a forbidden node
    seen_forbidden = []

    def fake_prune(allowed, task, **kwargs):
        seen_forbidden.append(sorted(f"{key}[{i}]" for key, keep in allowed.keep.items()
                                     for i in np.flatnonzero(keep == 0)))
        nodes = found[len(seen_forbidden) - 1]
        return Circuit(task=task.name, nodes=nodes, edges=[], task_loss=0.1, sufficiency=0.1, necessity=1.0,
                       reached_target=True)

    monkeypatch.setattr(redundancy, "prune", fake_prune)
    monkeypatch.setattr(redundancy, "task_loss", lambda *a: 0.0)                     # the task stays solvable
    circuits = disjoint_circuits(model, TASK, max_circuits=10)
    assert [c.nodes for c in circuits] == [["L0.q[1]", "L0.k[2]"], ["L0.v[3]"], ["L0.v[4]"], []]
    assert seen_forbidden == [[], ["L0.k[2]", "L0.q[1]"], ["L0.k[2]", "L0.q[1]", "L0.v[3]"],
                              ["L0.k[2]", "L0.q[1]", "L0.v[3]", "L0.v[4]"]]
    seen_forbidden.clear()
    assert len(disjoint_circuits(model, TASK, max_circuits=2)) == 2                  # bounded
    monkeypatch.setattr(redundancy, "task_loss", lambda *a: 0.69)                    # cannot do the task at all
    assert disjoint_circuits(model, TASK) == []


def test_the_frontier_fits_once_and_cuts_at_each_target_what_prune_would(monkeypatch):
    prune_module = sys.modules["minisparse.circuits.prune"]     # the package exports the function `prune` by that name
    model, settings = GPT(CFG, seed=2), {"steps": 2, "n_examples": 8, "n_eval": 8}
    fits = []
    real_fit = prune_module.optimise_tau
    monkeypatch.setattr(prune_module, "optimise_tau", lambda *a, **kw: fits.append(1) or real_fit(*a, **kw))
    points = frontier_over_targets(model, TASK, targets=(0.75, 0.6), **settings)
    assert len(fits) == 1 and [p["target"] for p in points] == [0.75, 0.6]
    for point in points:                     # each point is the circuit pruning at that target alone finds
        alone = redundancy.prune(model, TASK, target_loss=point["target"], **settings)
        assert (point["n_nodes"], point["n_edges"], point["reached"]) == (alone.n_nodes, alone.n_edges,
                                                                          alone.reached_target)
        assert point["sufficiency"] == alone.sufficiency


@pytest.mark.parametrize("seed", [2])
def test_a_stricter_target_never_needs_a_smaller_circuit(seed):
    model = GPT(CFG, seed=seed)
    points = frontier_over_targets(model, TASK, targets=(0.75, 0.7, 0.69, 0.6), steps=5, n_examples=16, n_eval=16,
                                   seed=seed)
    assert [p["target"] for p in points] == [0.75, 0.7, 0.69, 0.6]
    sizes = [p["n_nodes"] for p in points if p["reached"]]
    assert sizes == sorted(sizes) and len(sizes) >= 2
