"""Lesson 09's exercise (`minisparse.lessons.exercises_capstone`): the reference column is right on hand-worked
numbers, and the check accepts a right answer written from scratch and rejects plausible wrong ones."""

import numpy as np
import pytest

from minisparse.lessons import exercises as ex
from minisparse.lessons.exercises_capstone import road_column, steps_to_loss

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
    col = road_column({"w": w, "v": np.ones((2, 4))}, CURVE, 1.8, tokens_per_step=10)
    size, nnz = 32 + 8, 2 + 8
    assert col["zero_share"] == pytest.approx(1 - nnz / size)
    assert col["steps"] == pytest.approx(150)
    assert col["flops_stored"] == pytest.approx(150 * 10 * 6 * size)
    assert col["flops_skipped"] == pytest.approx(150 * 10 * (4 * nnz + 2 * size))
    assert road_column({"w": w}, CURVE, 0.5, 10) == {"zero_share": 1 - 2 / 32, "steps": None, "flops_stored": None,
                                                     "flops_skipped": None}


def right(matrices, curve, target, tokens_per_step):
    size = sum(m.size for m in matrices.values())
    nnz = sum((m != 0).sum() for m in matrices.values())
    steps = None
    for (s0, l0), (s1, l1) in zip([(None, None)] + list(curve), curve):
        if l1 <= target:
            steps = s1 if s0 is None else s0 + (s1 - s0) * (l0 - target) / (l0 - l1)
            break
    tokens = None if steps is None else steps * tokens_per_step
    return {"zero_share": 1 - nnz / size, "steps": steps,
            "flops_stored": None if tokens is None else 6 * size * tokens,
            "flops_skipped": None if tokens is None else (4 * nnz + 2 * size) * tokens}


def test_the_check_accepts_a_right_answer(capsys):
    ex.check_road_column(right)
    assert "✓ road_column" in capsys.readouterr().out


def no_interpolation(matrices, curve, target, tokens_per_step):
    out = right(matrices, curve, target, tokens_per_step)
    first = next((s for s, loss in curve if loss <= target), None)
    scale = None if out["steps"] is None else first / out["steps"]
    return {**out, "steps": first, **({} if scale is None else {k: out[k] * scale
                                                                   for k in ("flops_stored", "flops_skipped")})}


def skipped_weight_gradient(matrices, curve, target, tokens_per_step):
    out = right(matrices, curve, target, tokens_per_step)
    if out["steps"] is not None:
        nnz = sum((m != 0).sum() for m in matrices.values())
        out["flops_skipped"] = 6 * nnz * out["steps"] * tokens_per_step
    return out


def mean_of_shares(matrices, curve, target, tokens_per_step):
    return {**right(matrices, curve, target, tokens_per_step),
            "zero_share": float(np.mean([(m == 0).mean() for m in matrices.values()]))}


def nan_when_never(matrices, curve, target, tokens_per_step):
    out = right(matrices, curve, target, tokens_per_step)
    return {k: (float("nan") if v is None else v) for k, v in out.items()}


def last_crossing(matrices, curve, target, tokens_per_step):
    out = right(matrices, curve, target, tokens_per_step)
    below = [i for i, (_, loss) in enumerate(curve) if loss <= target]
    if below and below[-1] > 0 and below[0] != below[-1]:
        i = below[-1]
        (s0, l0), (s1, l1) = curve[i - 1], curve[i]
        out["steps"] = s0 + (s1 - s0) * (l0 - target) / (l0 - l1)
    return out


@pytest.mark.parametrize("wrong, says", [
    (no_interpolation, "steps"),
    (skipped_weight_gradient, "flops_skipped"),
    (mean_of_shares, "zero_share"),
    (nan_when_never, "expected None"),
    (last_crossing, "steps"),
    (lambda *a: list(right(*a).values()), "expected a dict"),
])
def test_the_check_rejects_plausible_mistakes(wrong, says):
    with pytest.raises(ex.ExerciseError, match=says):
        ex.check_road_column(wrong)
