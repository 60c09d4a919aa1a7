"""Lesson 09's exercise (`minisparse.lessons.exercises_capstone`): the reference column is right on hand-worked
numbers, and the check accepts a right answer written from scratch and rejects plausible wrong ones. And the training
FLOP count lessons 07 and 09 share (`minisparse.lessons.flops`), on hand-worked numbers and on the shipped models."""

import dataclasses

import numpy as np
import pytest

from minisparse.config import ModelConfig, TrainConfig
from minisparse.lessons import exercises as ex
from minisparse.lessons.exercises_capstone import road_column
from minisparse.lessons.flops import (
    attention_flops_per_token,
    cumulative_training_flops,
    product_nonzeros,
    product_shapes,
    scheduled_nonzeros,
    steps_to_loss,
    training_flops_per_token,
)

CURVE = [(100, 2.0), (200, 1.6), (300, 1.5), (400, 1.52), (500, 1.3)]


def test_steps_to_loss_interpolates_between_validations_and_takes_the_first_crossing():
    assert steps_to_loss(CURVE, 1.8) == pytest.approx(150)
    assert steps_to_loss(CURVE, 1.6) == 200
    assert steps_to_loss(CURVE, 3.0) == 100                  # already there at the first validation
    assert steps_to_loss(CURVE, 1.51) == pytest.approx(290)  # the first crossing, not the one after the bump
    assert steps_to_loss(CURVE, 1.0) is None


def test_road_column_on_hand_worked_numbers():
    w = np.zeros((4, 8))
    w[0, :2] = 1.0                                           # 2 nonzeros of 32
    col = road_column({"w": w, "v": np.ones((2, 4))}, CURVE, 1.8, tokens_per_step=10, attention=7)
    size, nnz = 32 + 8, 2 + 8
    assert col["zero_share"] == pytest.approx(1 - nnz / size)
    assert col["steps"] == pytest.approx(150)
    assert col["flops_stored"] == pytest.approx(150 * 10 * (6 * size + 7))
    assert col["flops_skipped"] == pytest.approx(150 * 10 * (4 * nnz + 2 * size + 7))
    assert road_column({"w": w}, CURVE, 0.5, 10, 7) == {"zero_share": 1 - 2 / 32, "steps": None,
                                                        "flops_stored": None, "flops_skipped": None}


TINY = ModelConfig(vocab_size=256, n_ctx=16, d_model=8, n_layer=2, n_head=2, d_head=4, d_mlp=32, pos_emb="learned")


def test_training_flops_per_token_on_hand_worked_numbers():
    # per block: q, k, v, o (8×8 each) and up, down (32×8 each); the unembedding 256×8; the embeddings are lookups
    size = 2 * (4 * 64 + 2 * 256) + 256 * 8
    assert sum(r * c for r, c in product_shapes(TINY).values()) == size
    assert not any(n.startswith(("wte", "wpe")) for n in product_shapes(TINY))
    attention = 12 * 2 * 2 * 4 * 16                          # 12 · n_layer · n_head · d_head · n_ctx
    assert attention_flops_per_token(TINY) == attention
    assert training_flops_per_token(TINY) == (6 * size + attention, 6 * size + attention)
    assert training_flops_per_token(TINY, 100) == (6 * size + attention, 4 * 100 + 2 * size + attention)
    assert training_flops_per_token(TINY, 0).skipped == 2 * size + attention    # the floor no mask removes
    with pytest.raises(ValueError, match="nnz"):
        training_flops_per_token(TINY, size + 1)


def test_cumulative_training_flops_follow_the_density_schedule():
    cfg = TrainConfig(steps=40, batch_size=3, weight_density=1 / 4, min_per_neuron=1, anneal_start=0.25,
                      anneal_end=0.5)
    cum = cumulative_training_flops(TINY, cfg)
    tokens = 3 * 16
    assert cum.stored[0] == cum.skipped[0] == 0 and len(cum.stored) == 41
    np.testing.assert_allclose(np.diff(cum.stored), training_flops_per_token(TINY).stored * tokens)
    per_step = np.diff(cum.skipped) / tokens
    assert per_step[0] == per_step[10] == training_flops_per_token(TINY).stored       # dense before the anneal
    assert np.all(np.diff(per_step) <= 0) and per_step[12] < per_step[10]             # then falling
    final = training_flops_per_token(TINY, scheduled_nonzeros(TINY, cfg, 39)).skipped
    assert per_step[-1] == final and per_step[21] == final                            # flat after it
    dense = dataclasses.replace(cfg, weight_density=1.0)
    np.testing.assert_allclose(cumulative_training_flops(TINY, dense).skipped, cum.stored)


def test_the_schedule_gives_the_shipped_models_their_nonzeros():
    from minisparse.lessons.models import lesson_configs, lesson_model

    for name in ("dense", "sparse", "sparse-64"):
        model_cfg, train_cfg = lesson_configs(name)
        assert scheduled_nonzeros(model_cfg, train_cfg, train_cfg.steps) == product_nonzeros(
            lesson_model(name, progress=False).params), name


def right(matrices, curve, target, tokens_per_step, attention):
    size = sum(m.size for m in matrices.values())
    nnz = sum((m != 0).sum() for m in matrices.values())
    steps = None
    for (s0, l0), (s1, l1) in zip([(None, None)] + list(curve), curve):
        if l1 <= target:
            steps = s1 if s0 is None else s0 + (s1 - s0) * (l0 - target) / (l0 - l1)
            break
    tokens = None if steps is None else steps * tokens_per_step
    return {"zero_share": 1 - nnz / size, "steps": steps,
            "flops_stored": None if tokens is None else (6 * size + attention) * tokens,
            "flops_skipped": None if tokens is None else (4 * nnz + 2 * size + attention) * tokens}


def test_the_check_accepts_a_right_answer(capsys):
    ex.check_road_column(right)
    assert "✓ road_column" in capsys.readouterr().out


def no_interpolation(matrices, curve, target, tokens_per_step, attention):
    out = right(matrices, curve, target, tokens_per_step, attention)
    first = next((s for s, loss in curve if loss <= target), None)
    scale = None if out["steps"] is None else first / out["steps"]
    return {**out, "steps": first, **({} if scale is None else {k: out[k] * scale
                                                                   for k in ("flops_stored", "flops_skipped")})}


def skipped_weight_gradient(matrices, curve, target, tokens_per_step, attention):
    out = right(matrices, curve, target, tokens_per_step, attention)
    if out["steps"] is not None:
        nnz = sum((m != 0).sum() for m in matrices.values())
        out["flops_skipped"] = (6 * nnz + attention) * out["steps"] * tokens_per_step
    return out


def no_attention(matrices, curve, target, tokens_per_step, attention):
    return right(matrices, curve, target, tokens_per_step, 0)


def mean_of_shares(matrices, curve, target, tokens_per_step, attention):
    return {**right(matrices, curve, target, tokens_per_step, attention),
            "zero_share": float(np.mean([(m == 0).mean() for m in matrices.values()]))}


def nan_when_never(matrices, curve, target, tokens_per_step, attention):
    out = right(matrices, curve, target, tokens_per_step, attention)
    return {k: (float("nan") if v is None else v) for k, v in out.items()}


def last_crossing(matrices, curve, target, tokens_per_step, attention):
    out = right(matrices, curve, target, tokens_per_step, attention)
    below = [i for i, (_, loss) in enumerate(curve) if loss <= target]
    if below and below[-1] > 0 and below[0] != below[-1]:
        i = below[-1]
        (s0, l0), (s1, l1) = curve[i - 1], curve[i]
        out["steps"] = s0 + (s1 - s0) * (l0 - target) / (l0 - l1)
    return out


@pytest.mark.parametrize("wrong, says", [
    (no_interpolation, "steps"),
    (skipped_weight_gradient, "flops_skipped"),
    (no_attention, "attention"),
    (mean_of_shares, "zero_share"),
    (nan_when_never, "expected None"),
    (last_crossing, "steps"),
    (lambda *a: list(right(*a).values()), "expected a dict"),
])
def test_the_check_rejects_plausible_mistakes(wrong, says):
    with pytest.raises(ex.ExerciseError, match=says):
        ex.check_road_column(wrong)
