"""Checks for the sparsity exercises: AbsTopK (lesson 01) and its backward (deep dive 1), the top-k mask with a
minimum per row (lesson 01) and the density schedule (deep dive 2), pruning after training and a sparse matmul
(lessons 06, 07)."""

from __future__ import annotations

import numpy as np

from minisparse.config import ModelConfig
from minisparse.numpy import layers
from minisparse.params import init_params
from minisparse.sparsity import abstopk, density_at, is_sparsified, project_topk, topk_mask

from .check import ExerciseError, _call, _hint, _passed, compare

__all__ = ["check_abstopk", "check_abstopk_backward", "check_topk_mask", "check_density_at", "check_prune_to_density",
           "check_sparse_matmul"]


# ----------------------------------------------------------------------------------------------------------------------
# Activation sparsity: AbsTopK (lesson 01, deep dive 1)

def _abstopk_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 16))
    few = x.copy()
    few[:, 3:] = 0.0                                          # 3 nonzeros per row, fewer than k = 4
    return [
        ("a (6, 16) batch, k = 4", x, 4, ""),
        ("a (2, 3, 10) batch, k = 3 (top-k along the last axis only)", rng.normal(size=(2, 3, 10)), 3,
         "AbsTopK acts on each vector along the last axis, not on the whole array"),
        ("k = 1", x, 1, ""),
        ("k = n - 1", x, 15, ""),
        ("k = n: AbsTopK is off, the identity", x, 16, "keeping all n channels changes nothing"),
        ("values around -3: the largest |x| are negative", x - 3.0, 4,
         "rank by |x|, not by x, and keep each kept entry's sign and value"),
        ("rows with 3 nonzeros and k = 4", few, 4,
         "a row with fewer than k nonzeros keeps all of them (the k-th largest |x| is 0)"),
    ]


def check_abstopk(fn) -> None:
    """`fn(x, k)`: keep the k entries of largest |x| along the last axis (sign and value kept), zero the rest."""
    cases = _abstopk_cases()
    for label, x, k, hint in cases:
        x_in = x.copy()
        got = _call("abstopk", fn, x_in, k)
        compare(f"abstopk on {label}", got, abstopk(x, k), hint=hint)
        compare(f"abstopk on {label}: your function changed its input x", x_in, x,
                hint="work on a copy (np.where or x * mask allocate a new array)")
    _passed("abstopk", len(cases))


def check_abstopk_backward(fn) -> None:
    """`fn(dout, x, k)`: dL/dx of y = AbsTopK(x, k), given dout = dL/dy."""
    rng = np.random.default_rng(1)
    cases = _abstopk_cases()
    for label, x, k, hint in cases:
        dout = rng.normal(size=x.shape)
        y, mask = layers.abstopk_forward(x, k)
        expected = layers.abstopk_backward(dout, mask)
        if "3 nonzeros" in label:
            hint = ("the derivative is 1 at every entry that passes, zeros included: nudge a zero of a row with fewer "
                    "than k nonzeros and it is kept, so the mask is |x| >= (k-th largest |x|), not y != 0")
        compare(f"abstopk backward on {label}", _call("abstopk_backward", fn, dout, x.copy(), k), expected,
                atol=1e-12, hint=hint or "dL/dx = dout where x passes, 0 where AbsTopK zeroed it")
    _passed("abstopk backward", len(cases))


# ----------------------------------------------------------------------------------------------------------------------
# Weight sparsity: the top-k mask with a minimum per row, and the density schedule (lesson 01, deep dive 2)

def check_topk_mask(fn) -> None:
    """`fn(w, k, min_per_row)`: bool mask keeping each row's `min_per_row` largest |w|, then the largest |w| of the
    rest until `max(k, forced)` entries are kept."""
    rng = np.random.default_rng(2)
    scaled = rng.normal(size=(12, 20)) * np.exp(2 * rng.normal(size=(12, 1)))     # rows of very different scales
    cases = [
        ("k = 30 of a (12, 20) matrix, no minimum", scaled, 30, 0, ""),
        ("k = 30, at least 2 per row", scaled, 30, 2,
         "first each row's 2 largest |w| (the forced entries), then the largest |w| among all the others"),
        ("k = 5, at least 2 per row: the minimum forces 24 > k", scaled, 5, 2,
         "when the forced entries alone exceed k, keep exactly those: max(k, rows·min_per_row) in all"),
        ("k = 0, no minimum", scaled, 0, 0, "k = 0 keeps nothing"),
        ("k larger than the matrix", scaled, 1000, 2, "a budget of at least w.size keeps everything"),
        ("min_per_row larger than the row (20 columns, 25 per row)", scaled, 10, 25,
         "a row cannot keep more than its own entries"),
        ("a wide (3, 40) matrix with negative entries, k = 12, at least 3 per row", -np.abs(rng.normal(size=(3, 40))),
         12, 3, "rank by |w|: a large negative weight is a large weight"),
        ("a tall (40, 3) matrix, k = 50, at least 1 per row", rng.normal(size=(40, 3)), 50, 1,
         "the minimum is per row (axis 0 units), not per column"),
    ]
    for label, w, k, j, hint in cases:
        w_in = w.copy()
        got = np.asarray(_call("topk_mask", fn, w_in, k, j))
        expected = topk_mask(w, k, j)
        what = f"topk_mask on {label}"
        if got.shape == expected.shape and got.dtype == bool:
            if got.sum() != expected.sum():
                raise ExerciseError(f"{what}: {int(got.sum())} entries kept, expected {int(expected.sum())} = "
                                    f"max(k={k}, forced={w.shape[0] * min(j, w.shape[1])}), capped at w.size")
            short = np.flatnonzero(got.sum(axis=1) < min(j, w.shape[1]))
            if short.size:
                r = int(short[0])
                raise ExerciseError(f"{what}: row {r} keeps {int(got[r].sum())} entries, needs at least "
                                    f"min_per_row={min(j, w.shape[1])}" + _hint(hint))
        compare(what, got, expected, hint=hint)
        compare(f"topk_mask on {label}: your function changed its input w", w_in, w)
    _passed("topk_mask", len(cases))


def check_density_at(fn) -> None:
    """`fn(step, total_steps, target)`: 1 until 1% of training, then linear to `target` at 50%, then `target`."""
    cases = []
    for total in (1000, 250, 37, 1):
        for target in (1 / 16, 0.5, 1.0):
            t0, t1 = 0.01 * total, 0.5 * total
            steps = sorted({0, int(t0), int(t0) + 1, int((t0 + t1) / 2), int(t1) - 1, int(t1), int(t1) + 1,
                            total - 1} & set(range(total)))
            cases += [(s, total, target) for s in steps]
    for s, total, target in cases:
        got = _call("density_at", fn, s, total, target)
        hint = (f"with {total} steps the anneal runs from step {0.01 * total:g} (1% of training; before it the "
                f"density is 1) to step {0.5 * total:g} (50%; from there on it is the target), linearly in between")
        compare(f"density_at(step={s}, total_steps={total}, target={target:g})", got, density_at(s, total, target),
                atol=1e-12, hint=hint)
    _passed("density_at", len(cases))


# ----------------------------------------------------------------------------------------------------------------------
# Weight sparsity after the fact, and what zeros cost (lessons 06, 07)

def check_prune_to_density(fn) -> None:
    """`fn(params, density, min_per_neuron)`: a pruned copy of `params`: every sparsified matrix keeps its top
    round(density·size) entries by |w| (at least `min_per_neuron` per unit on its min-j axis); every other tensor and
    the input dict unchanged."""
    cases = []
    for seed, density, j in ((0, 1 / 4, 1), (1, 1 / 16, 2), (2, 1 / 64, 4)):
        cfg = ModelConfig(vocab_size=32, n_ctx=8, d_model=8, n_layer=2, n_head=2, d_head=3, d_mlp=16, bigram=True)
        params = init_params(cfg, seed, np.float64)
        rng = np.random.default_rng(seed)
        for w in params.values():
            w += 0.1 * rng.normal(size=w.shape)      # nonzero biases and norms: pruning must leave them alone
        cases.append((f"a random 2-layer model, density {density:g}, at least {j} per neuron", params, density, j))
    for label, params, density, j in cases:
        before = {n: w.copy() for n, w in params.items()}
        got = _call("prune_to_density", fn, params, density, j)
        for n, w in params.items():
            compare(f"prune_to_density on {label}: your function changed the input params[{n!r}]", w, before[n],
                    hint="return a pruned copy; leave the trained model as it is")
        expected = {n: w.copy() for n, w in before.items()}
        project_topk(expected, {n: density for n in expected if is_sparsified(n)}, j)
        if not isinstance(got, dict) or set(got) != set(expected):
            raise ExerciseError(f"prune_to_density on {label}: expected a dict with the keys of params")
        for n in expected:
            compare(f"prune_to_density on {label}: params[{n!r}]", got[n], expected[n],
                    hint=("norms, biases and the bigram table are never pruned" if not is_sparsified(n) else
                          "each matrix on its own (not one global top-k), k = round(density·size); the minimum per "
                          "neuron is per row for wte, wpe, lm_head, q/k/v and up_proj, per column for o_proj and "
                          "down_proj (minisparse.sparsity.min_axis)"))
    _passed("prune_to_density", len(cases))


def check_sparse_matmul(fn) -> None:
    """`fn(x, rows, cols, values, n_out)`: y = x Wᵀ for W of shape (n_out, n_in) given only its nonzeros
    W[rows[i], cols[i]] = values[i]; x is [N, n_in], y is [N, n_out]."""
    rng = np.random.default_rng(6)
    cases = []
    for n_out, n_in, density in ((7, 5, 0.4), (16, 64, 1 / 16), (9, 4, 1.0), (6, 6, 0.0)):
        w = rng.normal(size=(n_out, n_in)) * (rng.random((n_out, n_in)) < density)
        cases.append((f"W of shape {(n_out, n_in)} with {np.count_nonzero(w)} nonzeros", w, rng.normal(size=(3, n_in))))
    for label, w, x in cases:
        rows, cols = np.nonzero(w)
        got = _call("sparse_matmul", fn, x.copy(), rows, cols, w[rows, cols], w.shape[0])
        compare(f"sparse_matmul with {label}", got, x @ w.T, rtol=1e-10, atol=1e-12,
                hint="y[:, r] += x[:, c] * v for every nonzero (r, c, v); W is stored (out, in), so y has n_out "
                     "columns")
    _passed("sparse_matmul", len(cases))

