"""Activation patching, attribution patching and direct logit attribution (`minisparse.circuits.patching`)."""

import numpy as np
import pytest

from minisparse.circuits.patching import Pairs, attribution_scores, direct_logit_attribution, logit_diff, patch_nodes
from minisparse.config import ModelConfig
from minisparse.mlx import GPT as MlxGPT
from minisparse.numpy import GPT
from minisparse.params import site_sizes
from minisparse.tasks import get_task

CFG = ModelConfig(vocab_size=256, n_ctx=48, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32)
TASK = get_task("single_double_quote")


@pytest.fixture(scope="module")
def pairs():
    return Pairs.from_task(TASK, 6, CFG.n_ctx)


def test_pairs_are_aligned_contrastive_prompts(pairs):
    assert pairs.clean.shape == pairs.corrupt.shape and pairs.clean.shape[0] == 6
    assert np.all(pairs.right != pairs.wrong) and set(pairs.right) == set(TASK.answer_ids)   # both directions
    assert np.all((pairs.clean != pairs.corrupt).any(axis=1))


@pytest.mark.parametrize("backend", [GPT, MlxGPT])
def test_patching_every_node_restores_the_clean_run_and_none_leaves_the_corrupt_one(pairs, backend):
    model = backend(CFG, seed=1)
    everything = ["L0.resid_pre"] + [f"{key}[{i}]" for key, n in site_sizes(CFG).items() for i in range(n)]
    assert patch_nodes(model, pairs, everything) == pytest.approx(1.0, abs=1e-4)
    assert patch_nodes(model, pairs, []) == 0.0


def test_attribution_patching_is_the_derivative_of_patching_along_clean_minus_corrupt(pairs):
    model = GPT(CFG, seed=2, dtype=np.float64)
    scores = attribution_scores(model, pairs)
    assert len(scores) == sum(site_sizes(CFG).values())
    _, clean = model.run_with_cache(pairs.clean)
    _, corrupt = model.run_with_cache(pairs.corrupt)
    base = logit_diff(model.forward(pairs.corrupt), pairs).mean()
    for node in sorted(scores, key=lambda n: -abs(scores[n]))[:3] + ["L0.q[1]"]:
        key, i = node[:node.index("[")], int(node[node.index("[") + 1:-1])

        def nudge(value, key, i=i, eps=1e-5):    # corrupt + ε·(clean − corrupt), in one channel
            value[..., i] += eps * (clean[key][..., i] - corrupt[key][..., i])
            return value

        moved = (logit_diff(model.run_with_hooks(pairs.corrupt, {key: nudge}), pairs).mean() - base) / 1e-5
        assert moved == pytest.approx(scores[node], rel=1e-3, abs=1e-6 * max(map(abs, scores.values()))), node
    np.testing.assert_allclose([attribution_scores(MlxGPT(CFG, seed=2), pairs)[n] for n in scores],
                               list(scores.values()), rtol=0, atol=1e-3 * max(map(abs, scores.values())))


@pytest.mark.parametrize("bigram", [False, True])
def test_direct_logit_attribution_sums_to_the_logit_difference(pairs, bigram):
    cfg = ModelConfig(**{**CFG.to_dict(), "bigram": bigram})
    model = GPT(cfg, seed=3, dtype=np.float64)
    if bigram:
        model.params["bigram.weight"][:] = np.random.default_rng(0).standard_normal((256, 256))
    parts, bigram_term, ld = direct_logit_attribution(model, pairs)
    assert list(parts) == ["embed", "L0.attn_out", "L0.mlp_out", "L1.attn_out", "L1.mlp_out"]
    total = sum(p.sum(axis=1) for p in parts.values()) + bigram_term
    np.testing.assert_allclose(total, ld, rtol=0, atol=1e-9 * np.abs(ld).max())
    assert np.any(bigram_term != 0) == bigram


def test_a_circuits_heads_and_where_they_look():
    from minisparse.circuits import Circuit
    from minisparse.circuits.heads import circuit_heads, head_attention

    circuit = Circuit(task=TASK.name, nodes=["L0.attn_in[2]", "L0.q[3]", "L0.k[9]", "L1.v[15]", "L1.mlp_in[0]"],
                      edges=[], task_loss=0.1, sufficiency=0.1, necessity=1.0)
    assert circuit_heads(circuit, d_head=8) == {(0, 0): ["L0.q[3]"], (0, 1): ["L0.k[9]"], (1, 1): ["L1.v[15]"]}
    model = GPT(CFG, seed=5)
    # a head that only sees the sink and the last position puts its weight on the last byte: check the reading with
    # a model whose layer-0 scores are all equal (q = 0), so every visible position gets the same weight
    model.params["blocks.0.attn.q_proj.weight"][:] = 0
    model.params["blocks.0.attn.q_proj.bias"][:] = 0
    heads = head_attention(model, circuit, TASK, n=8)
    assert [(h.layer, h.head) for h in heads] == [(0, 0), (0, 1), (1, 1)]
    uniform = heads[0]
    T = len(uniform.example[1])
    # equal scores: the first position wins the argmax, weight 1 / (T + e^(sink − 0)) each
    assert uniform.back == T - 1 and uniform.top_share == pytest.approx(uniform.example[1][0])
    assert uniform.sink == pytest.approx(1 - T * uniform.top_share) and 0 < uniform.sink < 1
    assert "of its weight on one position" in uniform.summary()


def test_the_patch_command_prints_its_report(tmp_path, capsys):
    from minisparse import save
    from minisparse.circuits import Circuit
    from minisparse.cli import main

    checkpoint = save(GPT(CFG, seed=6), tmp_path / "m.safetensors")
    Circuit(task=TASK.name, nodes=["L0.v[3]", "L1.mlp_out[2]"], edges=[], task_loss=0.1, sufficiency=0.1,
            necessity=1.0).to_json(tmp_path / "c.json")
    assert main(["patch", "--checkpoint", str(checkpoint), "--circuit", str(tmp_path / "c.json"), "--pairs", "4"]) == 0
    out = capsys.readouterr().out
    assert "activation patching: the circuit's 2 nodes" in out and "Spearman" in out
    assert "L0.v[3]" in out and "direct logit attribution" in out


def test_pairs_are_only_drawn_where_the_two_prompts_align():
    aligned = Pairs.from_task(get_task("paren_or_bracket"), 8, CFG.n_ctx)
    assert aligned.clean.shape == aligned.corrupt.shape
    pad = 0                                         # data.SEP: the padding byte
    assert np.array_equal(aligned.clean == pad, aligned.corrupt == pad)        # same length, row by row
    with pytest.raises(ValueError, match="'while_return_true'.*equal length"):
        Pairs.from_task(get_task("while_return_true"), 8, CFG.n_ctx)       # `while True` / `return True`


def test_single_node_ablations_are_the_loss_with_that_node_removed_minus_without():
    from minisparse.circuits.explain import node_ablations
    from minisparse.circuits.masks import ablation_means, gates_from_mask, mask_from_nodes
    from minisparse.circuits.prune import TaskData, task_loss

    model = GPT(CFG, seed=3)
    task = get_task("single_double_quote")
    data = TaskData.from_task(task, 16, CFG.n_ctx, "test", 0)
    means = ablation_means(model, "mean", 0)
    sizes = site_sizes(CFG)
    circuit = ["L0.q[1]", "L0.mlp_neuron[3]", "L1.attn_out[2]", "L1.mlp_in[0]"]

    def loss_of(nodes):                      # the task loss with exactly `nodes` kept, every other node at its mean
        return task_loss(model, data, gates_from_mask(mask_from_nodes(nodes, sizes), means))

    everything = [f"{key}[{i}]" for key, n in sizes.items() for i in range(n)]
    in_model = node_ablations(model, circuit, data, means)
    in_circuit = node_ablations(model, circuit, data, means, within=circuit)
    for node in circuit:
        assert in_model[node] == pytest.approx(loss_of([n for n in everything if n != node]) - loss_of(everything),
                                               abs=1e-6)
        assert in_circuit[node] == pytest.approx(loss_of([n for n in circuit if n != node]) - loss_of(circuit),
                                                 abs=1e-6)
    assert any(abs(d) > 1e-4 for d in [*in_model.values(), *in_circuit.values()])     # not all trivially 0
