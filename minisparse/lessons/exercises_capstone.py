"""The check of lesson 09's exercise (the capstone): the function that fills one column of the table comparing the
roads to a sparse circuit, from a model's weight matrices and its validation curve.

    check_road_column(fn)   fn(matrices, curve, target, tokens_per_step, attention)
                            -> {"zero_share", "steps", "flops_stored", "flops_skipped"}

`road_column` is the reference: what each entry means. Its FLOP counts are `minisparse.lessons.flops`'s, the one
count lessons 07 and 09 share.
"""

from __future__ import annotations

import numpy as np

from .check import ExerciseError, _call, _passed, compare
from .flops import _per_token, steps_to_loss

__all__ = ["check_road_column", "road_column"]

KEYS = ("zero_share", "steps", "flops_stored", "flops_skipped")


def road_column(matrices: dict[str, np.ndarray], curve, target: float, tokens_per_step: int,
                attention: float) -> dict:
    """One road's column of the capstone's table, from its model's weight matrices (the ones used in matrix products),
    its validation curve, and `attention`, the per-token training FLOPs of attention's weight-free products
    (`minisparse.lessons.flops.attention_flops_per_token`):

    zero_share     the share of all the matrices' entries that is exactly 0 (connections that provably do not exist)
    steps          `steps_to_loss(curve, target)`: training steps to reach the target validation loss (None: never)
    flops_stored   training FLOPs to get there with the zeros stored and multiplied like any number: per token,
                   6 per entry (2 forward, 2 for the input's gradient, 2 for the weight's) + attention
    flops_skipped  the same with a kernel that skips every zero: per token 2·nnz forward + 2·nnz for the input's
                   gradient + 2·size for the weight's gradient (which every entry needs, so that a zero can grow back)
                   + attention
    Both FLOP counts are steps · tokens_per_step · (per-token FLOPs), None where steps is None; the per-token FLOPs
    are `flops.training_flops_per_token`'s.
    """
    size = sum(w.size for w in matrices.values())
    nnz = sum(int(np.count_nonzero(w)) for w in matrices.values())
    steps = steps_to_loss(curve, target)
    tokens = None if steps is None else steps * tokens_per_step
    per_token = _per_token(size, nnz, attention)
    return {"zero_share": 1 - nnz / size, "steps": steps,
            "flops_stored": None if tokens is None else tokens * per_token.stored,
            "flops_skipped": None if tokens is None else tokens * per_token.skipped}


def _cases():
    rng = np.random.default_rng(9)
    dense = {"up": rng.normal(size=(16, 4)), "down": rng.normal(size=(4, 16))}
    sparse = {n: w * (rng.random(w.shape) < 1 / 4) for n, w in dense.items()}
    sparse["up"][0, :] = 0.0                     # a row with no weight left
    curve = [(100, 2.0), (200, 1.6), (300, 1.5), (400, 1.52), (500, 1.3)]
    return [
        ("dense matrices, target between two validations, no attention", dense, curve, 1.55, 32, 0,
         "steps: interpolate linearly between the last validation above the target and the first at or below it"),
        ("sparse matrices (1 in 4), target between two validations, no attention", sparse, curve, 1.8, 64, 0,
         "flops_skipped per token: 2·nnz (forward) + 2·nnz (the input's gradient) + 2·size (the weight's gradient)"),
        ("sparse matrices with attention", sparse, curve, 1.8, 64, 500,
         "attention's FLOPs per token are the same whatever the weights: add them to both counts"),
        ("target met exactly at a validation", sparse, curve, 1.6, 8, 100, "a loss equal to the target reaches it"),
        ("target already met at the first validation", dense, curve, 2.5, 8, 100,
         "nothing before the first validation is known: take its step"),
        ("a curve that goes back up: the first crossing counts", sparse, curve, 1.51, 8, 100,
         "the loss first falls to the target between steps 200 and 300"),
        ("target never reached", sparse, curve, 1.0, 8, 100, "steps and both FLOP counts are None when the curve "
                                                              "never reaches the target"),
        ("a matrix of zeros only", {"w": np.zeros((3, 5)), "v": rng.normal(size=(2, 3))}, curve, 1.55, 4, 10,
         "zero_share counts the entries of all matrices together"),
    ]


def check_road_column(fn) -> None:
    """`fn(matrices, curve, target, tokens_per_step, attention)` -> the dict `road_column` returns."""
    cases = _cases()
    for label, matrices, curve, target, tokens, attention, hint in cases:
        expected = road_column(matrices, curve, target, tokens, attention)
        copies = {n: w.copy() for n, w in matrices.items()}
        got = _call("road_column", fn, copies, list(curve), target, tokens, attention)
        if not isinstance(got, dict) or set(got) != set(KEYS):
            raise ExerciseError(f"road_column on {label}: expected a dict with keys {list(KEYS)}, got "
                                f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
        for key in KEYS:
            if expected[key] is None:
                if got[key] is not None:
                    raise ExerciseError(f"road_column on {label}: {key} is {got[key]!r}, expected None\n  hint: {hint}")
                continue
            if got[key] is None:
                raise ExerciseError(f"road_column on {label}: {key} is None, expected {expected[key]:.10g}\n"
                                    f"  hint: {hint}")
            compare(f"road_column on {label}: {key}", got[key], expected[key], rtol=1e-9, hint=hint)
        for n, w in matrices.items():
            compare(f"road_column on {label}: your function changed matrix {n!r}", copies[n], w,
                    hint="count the zeros, do not write to the matrices")
    _passed("road_column", len(cases))
