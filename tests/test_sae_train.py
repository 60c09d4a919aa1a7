"""Training and measuring a Jacobian SAE pair (minisparse.sae.train; python -m minisparse.lessons.sae_table) on tiny
models."""

import numpy as np
import pytest

from minisparse.config import ModelConfig
from minisparse.data import eval_batches, load_corpus
from minisparse.numpy import GPT
from minisparse.sae import jacobian_sparsity, mlp_forward
from minisparse.sae.train import (
    channel_jacobian,
    evaluate_pair,
    mean_ablation_hooks,
    mlp_data,
    next_byte_loss,
    pair_training_flops,
    splice_hooks,
    summary_table,
    sweep,
    train_pair,
)
from minisparse.sparsity import topk_mask

CFG = ModelConfig(vocab_size=256, n_ctx=16, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=64)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def data(corpus):
    return mlp_data(GPT(CFG, seed=0), corpus, 0, n_train=1024, n_val=256)


def test_mlp_data_is_normalised_and_the_mlp_rescaled_with_it(data):
    assert np.mean(data.x ** 2) == pytest.approx(1.0, rel=1e-4)
    assert np.mean(data.y ** 2) == pytest.approx(1.0, rel=1e-4)
    assert data.x.shape == (1024, 16) and data.x_val.shape == (256, 16)
    # the rescaled MLP maps the normalised inputs to the normalised outputs, on held-out tokens too
    np.testing.assert_allclose(mlp_forward(data.x_val, data.mlp)[0], data.y_val, rtol=1e-4, atol=1e-4)


def test_channel_jacobian_is_exactly_zero_where_no_path_exists(corpus):
    model = GPT(CFG, seed=1)
    for name in ("up_proj", "down_proj"):                 # a weight-sparse MLP: 1 in 8 weights kept
        w = model.params[f"blocks.0.mlp.{name}.weight"]
        w *= topk_mask(w, w.size // 8)
    data = mlp_data(model, corpus, 0, n_train=256, n_val=128)
    k = CFG.topk(CFG.d_model)
    jac, active = channel_jacobian(data.x_val, data.y_val, data.mlp, k, k)
    assert jac.shape == (128, k, k) and active.all()
    # against the explicit product W_down diag(φ′) W_up, read between each token's k largest-|x| input channels and
    # k largest-|y| output channels (compared as sets of entries: the slots' order is the function's own)
    slope = mlp_forward(data.x_val, data.mlp)[1]
    for n in range(0, 128, 17):
        full = data.mlp.down @ np.diag(slope[n]) @ data.mlp.up          # [D out, D in]
        ins, outs = np.argsort(-np.abs(data.x_val[n]))[:k], np.argsort(-np.abs(data.y_val[n]))[:k]
        np.testing.assert_allclose(np.sort(jac[n].ravel()), np.sort(full[np.ix_(outs, ins)].ravel()),
                                   rtol=1e-5, atol=1e-7)
        # an entry is exactly 0 precisely where no kept neuron reads the input channel and writes the output one
        path = ((data.mlp.down[outs] != 0) & (slope[n] != 0)) @ (data.mlp.up[:, ins] != 0).astype(int)
        assert np.count_nonzero(jac[n]) == np.count_nonzero(path) < k * k
    assert jacobian_sparsity(jac, active)["exact_zero"] > 0.3


def test_train_pair_learns_and_the_penalty_shrinks_the_jacobian(data):
    args = dict(n_latents=48, k=4, steps=150, batch_size=128, progress=False)
    plain, log = train_pair(data.x, data.y, data.mlp, lam=0.0, **args)
    assert log[-1]["mse_in"] < 0.5 * log[0]["mse_in"] and log[-1]["mse_out"] < 0.5 * log[0]["mse_out"]
    for side in ("in.", "out."):
        np.testing.assert_allclose(np.linalg.norm(plain[side + "W_dec"], axis=0), 1.0, rtol=1e-5)
    jsae, _ = train_pair(data.x, data.y, data.mlp, lam=3.0, **args)
    m_plain = evaluate_pair(plain, data.x_val, data.y_val, data.mlp, 4)
    m_jsae = evaluate_pair(jsae, data.x_val, data.y_val, data.mlp, 4, keep_jacobians=True)
    assert m_jsae["mean_abs"] < 0.7 * m_plain["mean_abs"]
    assert 0 < m_plain["fvu_in"] < 1 and 0 < m_plain["fvu_out"] < 1
    jac, active = m_jsae["jacobians"]
    assert jac.shape == active.shape == (256, 4, 4)
    with pytest.raises(ValueError, match="k must be in 1..n_latents"):
        train_pair(data.x, data.y, data.mlp, lam=0.0, n_latents=4, k=5, steps=1)


def test_sweep_and_summary_table(data):
    rows = sweep(data, [0.0, 1.0], [0, 1], n_latents=32, k=4, steps=5, batch_size=64, progress=False)
    assert [(r["lam"], r["seed"]) for r in rows] == [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]
    table = summary_table([{"name": "dense model, its channels", "fvu_in": None, "above_threshold": 0.5,
                            "mass_fraction": 0.25, "exact_zero": 0.0, "mean_abs": 0.1},
                           {"lam": 1.0, "seed": 0, "fvu_in": 0.1, "fvu_out": 0.2, "above_threshold": 0.4,
                            "mass_fraction": 0.3, "exact_zero": 0.0, "mean_abs": 0.02, "dead_out": 0.5},
                           {"lam": 1.0, "seed": 1, "fvu_in": 0.3, "fvu_out": 0.2, "above_threshold": 0.6,
                            "mass_fraction": 0.3, "exact_zero": 0.0, "mean_abs": 0.04, "dead_out": 0.5}])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| Jacobian of | λ | seeds | FVU in |")
    assert lines[2] == "| dense model, its channels | — | — | — | — | 50.0% | 25.0% | 0.0% | 0.1000 | — |"
    assert lines[3] == ("| SAE pair | 1 | 0,1 | 0.200 (0.100..0.300) | 0.200 (0.200..0.200) | 50.0% (40.0%..60.0%) | "
                        "30.0% (30.0%..30.0%) | 0.0% (0.0%..0.0%) | 0.0300 (0.0200..0.0400) | 50% (50%..50%) |")


def exact_pair(d: int) -> dict[str, np.ndarray]:
    """A pair that reconstructs any D-wide input exactly with k = D: latents ±e_i, so x = ReLU(x) − ReLU(−x) and the
    D positive pre-activations are the ones TopK keeps (for inputs with no zero entry)."""
    w = np.concatenate([np.eye(d), -np.eye(d)], axis=1).astype(np.float32)          # [D, 2D]
    sae = {"W_enc": w.T.copy(), "b_enc": np.zeros(2 * d, np.float32), "W_dec": w, "b_dec": np.zeros(d, np.float32)}
    return {p + n: v.copy() for p in ("in.", "out.") for n, v in sae.items()}


def test_a_perfect_pair_spliced_in_leaves_the_loss_unchanged_and_a_trained_one_costs_a_little(data, corpus):
    model = GPT(CFG, seed=0)                              # the model `data` was made from
    batches = eval_batches(corpus.val, 4, CFG.n_ctx, 2)
    clean = next_byte_loss(model, batches)
    assert clean == pytest.approx(np.mean([model.loss(x, y) for x, y in batches]), rel=1e-5)
    # inputs with a zero entry (AbsTopK's dropped channels) are reconstructed exactly too: ±e_i both give 0 there
    spliced = next_byte_loss(model, batches, splice_hooks(model, exact_pair(CFG.d_model), data, CFG.d_model))
    assert spliced == pytest.approx(clean, abs=1e-4)
    ablated = next_byte_loss(model, batches, mean_ablation_hooks(model, data))
    assert abs(ablated - clean) > 1e-3
    pair, _ = train_pair(data.x, data.y, data.mlp, n_latents=48, k=4, lam=0.0, steps=150, batch_size=128,
                         progress=False)
    rough = next_byte_loss(model, batches, splice_hooks(model, pair, data, 4))
    assert rough != pytest.approx(clean, abs=1e-4)        # a 4-of-48 pair is not exact: the loss moves


def test_pair_training_flops_counts_the_matrix_products():
    d, s, k, m, steps, batch = 16, 64, 4, 64, 10, 32
    plain = pair_training_flops(d, s, k, m, steps=steps, batch_size=batch, lam=0.0)
    assert plain == 24 * d * s * steps * batch            # 2 SAEs × (forward 2 + backward 4 products) × 2·D·S
    penalised = pair_training_flops(d, s, k, m, steps=steps, batch_size=batch, lam=1.0)
    assert penalised - plain == (4 * d * m + 6 * k * k * m + 4 * k * m * d) * steps * batch + 4 * m * d * s * steps
    assert pair_training_flops(d, s, k, m, steps=2 * steps, batch_size=batch, lam=1.0) == 2 * penalised


def test_command_line_prints_the_table(monkeypatch, capsys):
    import minisparse.lessons.sae_table as cli

    models = {}

    def tiny(name, fast):                            # stand-ins for the zoo's trained models
        models[name, fast] = GPT(CFG, seed=len(models))
        return models[name, fast]

    monkeypatch.setattr(cli, "lesson_model", tiny)
    monkeypatch.setattr(cli, "lesson_corpus", lambda fast: load_corpus())
    monkeypatch.setitem(cli.LESSON_SETTINGS, "fast", dict(n_train=512, n_val=128, n_latents=32, k=4, steps=5,
                                                          batch_size=64))
    cli.main(["--fast", "--lambdas", "0,1", "--seeds", "0"])
    out = capsys.readouterr().out
    assert sorted(models) == [("dense", True), ("sparse", True)]          # lesson 08's pair: dense and 1/16
    for name in ("| dense model, its channels |", "| sparse model, its channels |",
                 "| dense model, SAE pair | 0 | 0 |", "| dense model, SAE pair | 1 | 0 |",
                 "| random-init model, its channels |", "| random-init model, SAE pair | 1 | 0 |",
                 "loss increase spliced in (nats/byte) |"):
        assert name in out
    cli.main(["--fast", "--lambdas", "0", "--seeds", "0", "--no-random"])
    assert "random-init" not in capsys.readouterr().out


def test_the_hooks_act_on_the_block_the_data_came_from(corpus):
    model = GPT(ModelConfig(**{**CFG.to_dict(), "n_layer": 2}), seed=0)
    data = mlp_data(model, corpus, 1, n_train=128, n_val=64)
    assert data.layer == 1
    assert set(splice_hooks(model, exact_pair(CFG.d_model), data, 4)) == {"L1.mlp_in", "L1.mlp_out"}
    assert set(mean_ablation_hooks(model, data)) == {"L1.mlp_out"}
