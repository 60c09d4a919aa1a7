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
