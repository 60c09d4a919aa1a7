"""The weight-sparsity and activation-sparsity rules (DESIGN §1, §3), stated as properties of minisparse.sparsity.

Each test is one rule; its docstring says the rule. Hypothesis draws the matrices (any finite floats, heavy ties, all
zeros, distinct magnitudes), the budgets and the schedules; `HYPOTHESIS_PROFILE=ci` runs many, derandomized.

Ties: where several entries share the k-th largest |w|, which of them is kept is the implementation's choice. Rules
about *positions* are therefore checked on matrices with distinct |w|; rules that must hold with ties compare the
multiset of kept |w| instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from facts import facts  # tests/facts.py
from minisparse import checkpoint
from minisparse.numpy import GPT, layers
from minisparse.params import param_shapes
from minisparse.sparsity import (
    ANNEAL_SHAPES,
    abstopk,
    abstopk_mask,
    density_at,
    forced_count,
    is_sparsified,
    k_at,
    min_axis,
    project_mask,
    project_topk,
    topk_mask,
)
from strategies import (
    MAX_SIDE,
    bad_values,
    densities,
    distinct_matrices,
    examples,
    matrices,
    min_per_row,
    model_configs,
    nonempty_shapes_2d,
    problems,
)


def expected_count(w, k, j):
    """The rule's count: max(k, forced) capped at the size, forced = rows · min(j, ncols)."""
    rows, cols = w.shape
    return min(max(k, rows * min(j, cols)), w.size)


def kept_magnitudes(w, mask):
    """The multiset of kept |w|, as a sorted array."""
    return np.sort(np.abs(w[mask]).astype(np.float64))


# ----------------------------------------------------------------------------------------------------------------------
# topk_mask: how many, which, and what it does not depend on

@given(problems())
@example((np.zeros((3, 4), np.float32), 0, 0))                       # empty budget, all zeros
@example((np.zeros((3, 4), np.float32), 5, 1))                       # part of the budget must go to zeros
@example((np.array([[0, 2, 0], [0, 0, 1]], np.float32), 4, 0))        # more budget than nonzeros
@example((np.ones((3, 4), np.float32), 12, 0))                        # full budget, all tied
@example((np.arange(5, dtype=np.float32)[None, :], 2, 1))             # one row
@example((np.arange(5, dtype=np.float32)[:, None], 2, 1))             # one column
@example((np.array([[1, 0, 0], [1, 0, 0]], np.float32), 4, 1))        # budget left for zeros, each row's first forced
def test_topk_keeps_exactly_max_of_budget_and_forced(problem):
    """The mask keeps exactly max(k, rows·min(j, ncols)) entries, never more than the matrix holds."""
    w, k, j = problem
    mask = topk_mask(w, k, j)
    assert mask.dtype == np.bool_ and mask.shape == w.shape
    assert int(mask.sum()) == expected_count(w, k, j)


@given(problems())
def test_topk_every_row_keeps_its_own_top_j(problem):
    """Every row keeps at least min(j, ncols) entries, and they include the row's own j largest |w| (no dead neuron)."""
    w, k, j = problem
    mask = topk_mask(w, k, j)
    jj = min(j, w.shape[1])
    for row, keep in zip(np.abs(w), mask):
        assert keep.sum() >= jj
        top_of_row = np.sort(row)[::-1][:jj]
        top_of_kept = np.sort(row[keep])[::-1][:jj]
        np.testing.assert_array_equal(top_of_kept, top_of_row)


@given(problems())
@example((np.array([[9, 8, 7], [1, 2, 3]], np.float32), 4, 1))        # the budget must go to row 0, not row 1
def test_topk_entries_beyond_the_forced_ones_beat_every_dropped_one(problem):
    """Once each row has its top j, the rest of the budget goes to the largest |w| left: no dropped entry is larger."""
    w, k, j = problem
    mask = topk_mask(w, k, j)
    jj = min(j, w.shape[1])
    a = np.abs(w)
    extras = np.concatenate([np.sort(row[keep])[::-1][jj:] for row, keep in zip(a, mask)] + [np.empty(0, a.dtype)])
    dropped = a[~mask]
    if extras.size and dropped.size:
        assert extras.min() >= dropped.max()


@given(st.integers(1, 60), st.integers(1, 60), st.integers(1, 8), st.floats(0.0, 0.9), st.data())
@examples(0.5)
def test_topk_of_a_small_budget_is_a_full_sorts_choice(rows, cols, levels, zeros, data):
    """A budget small against the matrix (where topk_mask partitions only what a sample bounds from below) keeps
    exactly what a full sort keeps: the k largest |w|, ties broken by position. Few levels make ties; zeros too."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    w = (rng.integers(-levels, levels + 1, (rows, cols)) * (rng.random((rows, cols)) >= zeros)).astype(np.float32)
    w += np.float32(0.01) * rng.standard_normal(w.shape).astype(np.float32) * data.draw(st.sampled_from([0, 1]))
    k = data.draw(st.integers(1, max(1, w.size // 20)))
    order = np.lexsort((np.arange(w.size), -np.abs(w).reshape(-1)))    # by |w| descending, then by position
    expected = np.zeros(w.size, dtype=bool)
    expected[order[:k]] = True
    np.testing.assert_array_equal(topk_mask(w, k).reshape(-1), expected)


def test_topk_is_exact_when_the_sample_misjudges_the_bound():
    # the sampled entries (every 17th) are the largest: the bound the sample sets passes fewer than k entries, and the
    # top-k must come from the full partition instead
    w = np.random.default_rng(0).random((30, 30)).astype(np.float32)
    w.reshape(-1)[::17] += 10.0
    k = 40
    expected = np.zeros(w.size, dtype=bool)
    expected[np.argsort(-w.reshape(-1), kind="stable")[:k]] = True
    np.testing.assert_array_equal(topk_mask(w, k).reshape(-1), expected)


@given(problems())
def test_topk_is_idempotent(problem):
    """Projecting a projected matrix again keeps every one of its nonzeros (a projection changes nothing twice)."""
    w, k, j = problem
    once = w * topk_mask(w, k, j)
    mask2 = topk_mask(once, k, j)
    np.testing.assert_array_equal(once * mask2, once)
    assert int(mask2.sum()) == expected_count(w, k, j)


@given(problems(), st.data())
def test_topk_depends_only_on_magnitude(problem, data):
    """Flipping the sign of any entries leaves the mask exactly as it was: only |w| matters."""
    w, k, j = problem
    flip = data.draw(hnp.arrays(np.bool_, w.shape))
    np.testing.assert_array_equal(topk_mask(np.where(flip, -w, w), k, j), topk_mask(w, k, j))


@given(problems(distinct_matrices()), st.integers(-20, 20))
def test_topk_is_invariant_to_positive_scaling(problem, e):
    """Multiplying the matrix by a positive number keeps the same entries (checked with 2^e, which is exact in
    floats)."""
    w, k, j = problem
    np.testing.assert_array_equal(topk_mask(w * np.float32(2.0 ** e), k, j), topk_mask(w, k, j))


def permute(w, rnd):
    """w with its rows and columns shuffled by `rnd`, and the index that applies the same shuffle to any mask."""
    rows, cols = list(range(w.shape[0])), list(range(w.shape[1]))
    rnd.shuffle(rows)
    rnd.shuffle(cols)
    order = np.ix_(rows, cols)
    return w[order], order


@given(problems(distinct_matrices()), st.randoms(use_true_random=False))
def test_topk_commutes_with_permuting_rows_and_columns(problem, rnd):
    """With distinct |w|, permuting the rows and columns of the matrix permutes its mask the same way."""
    w, k, j = problem
    permuted, order = permute(w, rnd)
    np.testing.assert_array_equal(topk_mask(permuted, k, j), topk_mask(w, k, j)[order])


@given(problems(), st.randoms(use_true_random=False))
def test_topk_keeps_the_same_magnitudes_under_permutation_even_with_ties(problem, rnd):
    """With ties, permuting rows and columns may change which tied entry is kept, never the multiset of kept |w|."""
    w, k, j = problem
    permuted, _ = permute(w, rnd)
    np.testing.assert_array_equal(kept_magnitudes(permuted, topk_mask(permuted, k, j)),
                                  kept_magnitudes(w, topk_mask(w, k, j)))


@given(problems())
def test_topk_does_not_modify_its_input(problem):
    """topk_mask only reads the weights: the matrix is unchanged afterwards."""
    w, k, j = problem
    before = w.copy()
    topk_mask(w, k, j)
    np.testing.assert_array_equal(w, before)


@given(matrices(nonempty_shapes_2d), st.data(), bad_values)
def test_topk_refuses_nan_and_inf(w, data, bad):
    """A weight that is NaN or ±inf is refused with a ValueError that says so, never silently masked."""
    w = w.copy()
    w.flat[data.draw(st.integers(0, w.size - 1))] = bad
    with pytest.raises(ValueError, match=facts("weight matrix", "NaN", "learning rate")):
        topk_mask(w, data.draw(st.integers(0, w.size)), data.draw(min_per_row))


@given(problems())
def test_topk_forces_nothing_by_default(problem):
    """Without a minimum per row, topk_mask keeps exactly min(k, size) entries: the plain global top-k."""
    w, k, _ = problem
    np.testing.assert_array_equal(topk_mask(w, k), topk_mask(w, k, 0))
    assert int(topk_mask(w, k).sum()) == min(k, w.size)


@pytest.mark.parametrize("k, j", [(-1, 0), (0, -1), (1.5, 0), (0, 0.5)])
def test_topk_refuses_a_negative_or_fractional_budget(k, j):
    """A budget or a minimum per row that is negative or not a whole number is refused with a ValueError."""
    with pytest.raises(ValueError, match="k >= 0 and min_per_row >= 0"):
        topk_mask(np.ones((2, 3), np.float32), k, j)


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2)])
def test_topk_refuses_anything_but_a_matrix(shape):
    """topk_mask works on 2-D matrices only; a vector or a 3-D array is refused with a ValueError."""
    with pytest.raises(ValueError, match="2-D"):
        topk_mask(np.ones(shape, np.float32), 1)


# ----------------------------------------------------------------------------------------------------------------------
# the min-j axis of each parameter, forced_count, k_at, project_mask

AXIS_OF_SUFFIX = {  # DESIGN §2, written out again here so that the table and the code are checked against each other
    "wte.weight": 0, "wpe.weight": 0, "lm_head.weight": 0,
    "q_proj.weight": 0, "k_proj.weight": 0, "v_proj.weight": 0, "up_proj.weight": 0,
    "o_proj.weight": 1, "down_proj.weight": 1,
}


@given(model_configs())
def test_min_axis_follows_the_design_table(cfg):
    """Every matrix of DESIGN §2 is sparsified along its listed axis; norms, biases, sinks and bigram never are."""
    for name in param_shapes(cfg):
        suffix = next((s for s in AXIS_OF_SUFFIX if name.endswith(s)), None)
        assert min_axis(name) == (AXIS_OF_SUFFIX[suffix] if suffix else None), name
        assert is_sparsified(name) == (suffix is not None)


def test_min_axis_matches_whole_names_only():
    """A name is sparsified only when it ends with a whole sparsified path, not with a look-alike suffix."""
    assert min_axis("blocks.0.attn.q_proj.weight") == 0
    assert min_axis("blocks.0.attn.xq_proj.weight") is None
    assert min_axis("xwte.weight") is None
    assert min_axis("blocks.0.attn.q_proj.bias") is None


axes = st.sampled_from([0, 1])


@given(matrices(nonempty_shapes_2d), axes, min_per_row)
def test_forced_count_is_what_the_minimum_per_neuron_forces(w, axis, j):
    """forced_count is the number of entries the minimum per neuron keeps when the budget is zero, on either axis."""
    forced = topk_mask(w, 0, j) if axis == 0 else topk_mask(w.T, 0, j).T
    assert int(forced.sum()) == forced_count(w.shape, axis, j)
    units, fan = (w.shape[0], w.shape[1]) if axis == 0 else (w.shape[1], w.shape[0])
    assert forced_count(w.shape, axis, j) == units * min(j, fan)


@given(nonempty_shapes_2d, axes, densities, min_per_row)
def test_k_at_is_the_budget_or_the_forced_count(shape, axis, density, j):
    """k_at is round(density·size), raised to the forced count if that is larger, and never more than the size."""
    size = shape[0] * shape[1]
    k = k_at(shape, axis, density, j)
    forced = forced_count(shape, axis, j)
    assert isinstance(k, int)
    assert forced <= k <= size
    if k > forced:
        assert abs(k - density * size) <= 0.5
    else:
        assert density * size <= forced + 0.5
    assert k_at(shape, axis, 1.0, j) == size


@given(nonempty_shapes_2d, axes, densities, densities, min_per_row)
def test_k_at_never_decreases_with_density(shape, axis, d1, d2, j):
    """A higher density never keeps fewer entries."""
    lo, hi = sorted([d1, d2])
    assert k_at(shape, axis, lo, j) <= k_at(shape, axis, hi, j)


NAMES_BY_AXIS = {0: ["wte.weight", "blocks.0.attn.q_proj.weight", "blocks.1.mlp.up_proj.weight", "lm_head.weight"],
                 1: ["blocks.0.attn.o_proj.weight", "blocks.3.mlp.down_proj.weight"]}


@given(matrices(nonempty_shapes_2d), axes, densities, min_per_row, st.data())
def test_project_mask_keeps_k_at_and_the_minimum_along_the_min_j_axis(w, axis, density, j, data):
    """project_mask keeps k_at(density) entries, and every neuron on the parameter's min-j axis (rows for axis 0,
    columns for axis 1) keeps its own top min(j, fan-in) |w|."""
    name = data.draw(st.sampled_from(NAMES_BY_AXIS[axis]))
    mask = project_mask(name, w, density, j)
    assert mask.shape == w.shape
    assert int(mask.sum()) == k_at(w.shape, axis, density, j)
    units_a, units_m = (np.abs(w), mask) if axis == 0 else (np.abs(w).T, mask.T)
    jj = min(j, units_a.shape[1])
    for a, keep in zip(units_a, units_m):
        np.testing.assert_array_equal(np.sort(a[keep])[::-1][:jj], np.sort(a)[::-1][:jj])


@given(distinct_matrices(nonempty_shapes_2d), densities, min_per_row)
def test_project_mask_of_a_column_axis_is_the_row_rule_on_the_transpose(w, density, j):
    """For a matrix whose neurons are its columns, the mask is the row rule applied to the transposed matrix."""
    mask = project_mask("blocks.0.mlp.down_proj.weight", w, density, j)
    np.testing.assert_array_equal(mask.T, project_mask("blocks.0.mlp.up_proj.weight", w.T.copy(), density, j))


def test_project_mask_refuses_an_unsparsified_name():
    """Asking for the mask of a norm, bias, sink or bigram is an error, not a silent dense mask."""
    for name in ["norm_f.weight", "blocks.0.attn.q_proj.bias", "blocks.0.attn.sink", "bigram.weight"]:
        with pytest.raises(ValueError, match="not a sparsified"):
            project_mask(name, np.ones((2, 2), np.float32), 0.5, 0)


@given(model_configs(), densities, st.integers(0, 4), st.integers(0, 2 ** 32 - 1))
def test_project_topk_zeroes_all_but_the_mask_and_leaves_other_tensors_alone(cfg, density, j, seed):
    """project_topk zeroes, in place, exactly the entries off each matrix's mask, and never touches the others."""
    rng = np.random.default_rng(seed)
    params = {n: rng.normal(size=s).astype(np.float32) for n, s in param_shapes(cfg).items()}
    before = {n: p.copy() for n, p in params.items()}
    masks = project_topk(params, {n: density for n in params if is_sparsified(n)}, j)
    assert set(masks) == {n for n in params if is_sparsified(n)}
    for name, p in params.items():
        if name in masks:
            np.testing.assert_array_equal(masks[name], project_mask(name, before[name], density, j))
            np.testing.assert_array_equal(p, np.where(masks[name], before[name], 0))
        else:
            np.testing.assert_array_equal(p, before[name])


# ----------------------------------------------------------------------------------------------------------------------
# the density schedule

@st.composite
def schedules(draw):
    total = draw(st.integers(1, 10_000))
    start = draw(st.floats(0.0, 1.0))
    end = draw(st.floats(start, 1.0))
    target = draw(densities)
    return total, target, start, end, draw(st.sampled_from(ANNEAL_SHAPES))


@given(schedules(), st.integers(-5, 12_000))
def test_density_is_dense_before_the_anneal_and_the_target_after(schedule, step):
    """Density is exactly 1 before start·T, exactly the target from end·T on, and between the two in between."""
    total, target, start, end, shape = schedule
    d = density_at(step, total, target, start, end, shape)
    if step < start * total:
        assert d == 1.0
    elif step >= end * total:
        assert d == target
    else:
        assert target <= d <= 1.0


@given(schedules(), st.integers(-5, 12_000), st.integers(-5, 12_000))
def test_density_never_increases(schedule, s1, s2):
    """Density never rises as training goes on."""
    total, target, start, end, shape = schedule
    s1, s2 = sorted([s1, s2])
    assert density_at(s2, total, target, start, end, shape) <= density_at(s1, total, target, start, end, shape)


@given(schedules(), st.data())
def test_density_falls_linearly_during_a_linear_anneal(schedule, data):
    """Between start·T and end·T a linear anneal is a straight line from 1 (at start·T) to the target (at end·T)."""
    total, target, start, end, _ = schedule
    t0, t1 = start * total, end * total
    inside = [s for s in range(int(np.ceil(t0)), int(np.ceil(t1))) if t0 <= s < t1]
    assume(inside)
    step = data.draw(st.sampled_from(inside))
    line = 1.0 + (target - 1.0) * (step - t0) / (t1 - t0)
    assert density_at(step, total, target, start, end, "linear") == pytest.approx(line, rel=1e-12, abs=1e-12)


@given(schedules(), st.data())
def test_a_geometric_anneal_removes_the_same_fraction_every_step(schedule, data):
    """Between start·T and end·T a geometric anneal is a straight line in log density: from 1 to the target, so any
    two steps the same distance apart divide the density by the same factor."""
    total, target, start, end, _ = schedule
    t0, t1 = start * total, end * total
    inside = [s for s in range(int(np.ceil(t0)), int(np.ceil(t1))) if t0 <= s < t1]
    assume(len(inside) >= 2)
    a, b = sorted(data.draw(st.lists(st.sampled_from(inside), min_size=2, max_size=2, unique=True)))
    d = lambda s: density_at(s, total, target, start, end, "geometric")  # noqa: E731
    assert np.log(d(a)) == pytest.approx(np.log(target) * (a - t0) / (t1 - t0), rel=1e-9, abs=1e-12)
    assert d(b) / d(a) == pytest.approx(target ** ((b - a) / (t1 - t0)), rel=1e-9)


def test_an_unknown_anneal_shape_is_refused():
    with pytest.raises(ValueError, match="'cosine'.*linear.*geometric"):
        density_at(10, 100, 0.1, shape="cosine")


@given(schedules(), nonempty_shapes_2d, st.sampled_from([0, 1]), st.integers(0, 4))
def test_kept_count_never_increases_along_the_schedule(schedule, shape, axis, j):
    """The integer number of kept weights k(t) = k_at(density_at(t)) never rises from one step to the next."""
    total, target, start, end, anneal = schedule
    steps = range(-1, min(total, 400) + 2) if total <= 400 else np.linspace(-1, total + 1, 400).astype(int)
    ks = [k_at(shape, axis, density_at(int(s), total, target, start, end, anneal), j) for s in steps]
    assert all(a >= b for a, b in zip(ks, ks[1:]))
    assert ks[0] == shape[0] * shape[1]


def test_density_defaults_are_the_papers():
    """By default the anneal runs from 1% to 50% of training (DESIGN §3)."""
    assert density_at(0, 1000, 0.1) == 1.0 and density_at(9, 1000, 0.1) == 1.0
    assert density_at(10, 1000, 0.1) == 1.0 and density_at(11, 1000, 0.1) < 1.0
    assert density_at(499, 1000, 0.1) > 0.1 and density_at(500, 1000, 0.1) == 0.1


# ----------------------------------------------------------------------------------------------------------------------
# AbsTopK: activation sparsity

@st.composite
def activations(draw):
    """A batch of activation vectors (1-3 axes, any finite floats or heavy ties) and a k ≥ 1."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=MAX_SIDE))
    elements = draw(st.sampled_from([st.floats(-1e6, 1e6, width=32), st.sampled_from([0.0, 1.0, -1.0, 2.0])]))
    x = draw(hnp.arrays(np.float32, shape, elements=elements))
    return x, draw(st.integers(1, shape[-1] + 2))


@given(activations())
def test_abstopk_keeps_at_most_k_per_vector(xk):
    """Every vector keeps min(k, its number of nonzeros) nonzeros: never more than k."""
    x, k = xk
    y = abstopk(x, k)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(np.count_nonzero(y, axis=-1), np.minimum(k, np.count_nonzero(x, axis=-1)))


@given(activations())
def test_abstopk_keeps_values_and_signs_unchanged(xk):
    """Each kept entry is exactly the input entry, sign and value; each other entry is zero."""
    x, k = xk
    y = abstopk(x, k)
    mask = abstopk_mask(x, k)
    np.testing.assert_array_equal(y, np.where(mask, x, 0))
    np.testing.assert_array_equal(y[y != 0], x[y != 0])


@given(activations())
def test_abstopk_keeps_the_largest_magnitudes(xk):
    """No entry AbsTopK drops is larger in |x| than an entry it keeps, within the same vector."""
    x, k = xk
    mask = abstopk_mask(x, k)
    a = np.abs(x).reshape(-1, x.shape[-1])
    for row, keep in zip(a, mask.reshape(a.shape)):
        if keep.any() and (~keep).any():
            assert row[keep].min() >= row[~keep].max()


@given(activations())
def test_abstopk_is_idempotent(xk):
    """Applying AbsTopK twice is the same as once."""
    x, k = xk
    np.testing.assert_array_equal(abstopk(abstopk(x, k), k), abstopk(x, k))


@given(activations())
def test_abstopk_with_k_at_least_the_width_is_the_identity(xk):
    """With k ≥ the vector's width, AbsTopK keeps everything (afrac = 1 turns it off)."""
    x, _ = xk
    np.testing.assert_array_equal(abstopk(x, x.shape[-1]), x)
    assert abstopk_mask(x, x.shape[-1]).all()


@given(activations())
def test_abstopk_mask_is_the_top_k_or_everything(xk):
    """Along each vector the mask passes exactly its top k entries when it has at least k nonzeros, and every entry
    when it has fewer (the k-th largest |x| is then 0, so nudging any zero would make it kept: the true derivative)."""
    x, k = xk
    mask = abstopk_mask(x, k)
    n = x.shape[-1]
    for row, keep in zip(x.reshape(-1, n), mask.reshape(-1, n)):
        if np.count_nonzero(row) >= k:
            assert keep.sum() == min(k, n)
            assert (row[keep] != 0).all()
        else:
            assert keep.all()


@given(st.sampled_from([(64, 16), (128, 32), (512, 128)]), st.integers(0, 2 ** 32 - 1))
def test_abstopk_mask_is_the_top_k_at_the_models_widths(nk, seed):
    """On rows as wide as the model's sites (np.partition no longer sorts them whole as a side effect, as it does
    the short rows drawn above), each row keeps exactly its k largest |x|. Many rows: a wrong selection index is
    right by luck in ~99% of them."""
    n, k = nk
    x = np.random.default_rng(seed).standard_normal((256, n)).astype(np.float32)
    mask = abstopk_mask(x, k)
    assert (mask.sum(axis=-1) == k).all()
    top = -np.sort(-np.abs(x), axis=-1)[:, :k]
    np.testing.assert_array_equal(-np.sort(-np.where(mask, np.abs(x), -1), axis=-1)[:, :k], top)


@pytest.mark.parametrize("k", [0, -1])
def test_abstopk_refuses_k_below_one(k):
    """AbsTopK keeps at least one entry: k < 1 is refused with a ValueError."""
    with pytest.raises(ValueError, match="k >= 1"):
        abstopk(np.ones(4, np.float32), k)


@given(activations(), st.integers(0, 2 ** 32 - 1))
def test_abstopk_gradient_flows_through_the_kept_entries_only(xk, seed):
    """The backward of AbsTopK passes the upstream gradient where its mask passes the input (the top k; every entry of a
    vector with fewer than k nonzeros) and exactly zero everywhere else."""
    x, k = xk
    dout = np.random.default_rng(seed).normal(size=x.shape).astype(x.dtype)
    out, cache = layers.abstopk_forward(x, k)
    np.testing.assert_array_equal(out, abstopk(x, k))
    dx = layers.abstopk_backward(dout, cache)
    keep = abstopk_mask(x, k)
    np.testing.assert_array_equal(dx[~keep], 0)
    np.testing.assert_array_equal(dx[keep], dout[keep])


# ----------------------------------------------------------------------------------------------------------------------
# a projected model (the NumPy GPT): masked-out weights are inert, and the zero pattern survives a checkpoint

@st.composite
def projected_models(draw):
    """A tiny NumPy GPT, projected in place at a drawn density; returns (model, masks, density, j, token batch)."""
    cfg = draw(model_configs(max_vocab=8))
    model = GPT(cfg, seed=draw(st.integers(0, 1000)))
    density, j = draw(densities), draw(st.integers(0, 4))
    masks = project_topk(model.params, {n: density for n in model.params if is_sparsified(n)}, j)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    idx = rng.integers(0, cfg.vocab_size, size=(draw(st.integers(1, 2)), draw(st.integers(1, cfg.n_ctx))))
    return model, masks, density, j, idx


@examples(0.25)
@given(projected_models())
def test_projected_forward_equals_forward_with_weights_times_mask(case):
    """A model projected in place gives the same logits as the original weights explicitly multiplied by their masks."""
    model, masks, density, j, idx = case
    fresh = GPT(model.config, seed=0)  # any weights; replaced below by the masked original ones
    original = GPT(model.config, params={n: p.copy() for n, p in model.params.items()})
    for name, mask in masks.items():
        fresh.params[name][...] = original.params[name] * mask
    for name in model.params:
        if name not in masks:
            fresh.params[name][...] = model.params[name]
    np.testing.assert_array_equal(model.forward(idx), fresh.forward(idx))


@examples(0.25)
@given(projected_models(), st.integers(0, 2 ** 32 - 1))
def test_weights_off_the_mask_are_inert_after_reprojection(case, seed):
    """Writing any small values where the mask is False and projecting again gives bitwise the same logits: what a
    masked-out weight held never reaches the output."""
    model, masks, density, j, idx = case
    rng = np.random.default_rng(seed)
    logits = model.forward(idx)
    for name, mask in masks.items():
        w = model.params[name]
        kept = np.abs(w[mask])
        assume(kept.size and kept.min() > 0)
        # smaller than every kept |w|, so the same entries win the top-k again
        noise = rng.uniform(-0.5, 0.5, size=w.shape) * kept.min()
        w[~mask] = noise[~mask]
    project_topk(model.params, {n: density for n in masks}, j)
    np.testing.assert_array_equal(model.forward(idx), logits)


@examples(0.1)
@given(projected_models())
def test_checkpoint_keeps_the_zero_pattern_and_every_value(case):
    """Saving a projected NumPy model and loading it back (NumPy backend) gives every weight bitwise, zeros included."""
    model, masks, density, j, idx = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        checkpoint.save(model, path)
        loaded = checkpoint.load(path, backend="numpy")
    assert loaded.config == model.config
    assert loaded.params.keys() == model.params.keys()
    for name, w in model.params.items():
        got = loaded.params[name]
        assert got.dtype == np.float32 and got.shape == w.shape
        assert got.tobytes() == w.tobytes(), name  # bitwise: the zero pattern, signs of zeros and every value
    np.testing.assert_array_equal(loaded.forward(idx), model.forward(idx))
