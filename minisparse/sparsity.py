"""Weight sparsity and activation sparsity: the NumPy reference of DESIGN §3 and AbsTopK (§1).

Weight sparsity: after every optimizer step each sparsified matrix keeps its k(t) entries of largest |w|
(`topk_mask`), with a minimum per neuron so that no neuron or token goes dead, and k(t) annealed from dense to the
target (`density_at`, `k_at`). Activation sparsity: `abstopk` keeps the k largest-|x| channels of each vector.

Every other part of minisparse (both backends, the optimizer, the tests) takes these rules from here.
"""

from __future__ import annotations

import numpy as np

# Which matrices are sparsified, and along which axis their "neurons" lie (DESIGN §2): each unit along `axis` keeps at
# least `min_per_neuron` weights. axis 0 = one unit per row (e.g. a neuron's inputs), axis 1 = one per column.
_MIN_AXIS_BY_SUFFIX = {
    "wte.weight": 0,                # each token's embedding row
    "wpe.weight": 0,                # each position's row
    "lm_head.weight": 0,            # each token's unembedding row
    "attn.q_proj.weight": 0,        # each q channel's inputs
    "attn.k_proj.weight": 0,
    "attn.v_proj.weight": 0,
    "attn.o_proj.weight": 1,        # each input (head) channel's outputs
    "mlp.up_proj.weight": 0,        # each neuron's inputs
    "mlp.down_proj.weight": 1,      # each neuron's outputs
}


def min_axis(name: str) -> int | None:
    """The min-j axis of a parameter (0: rows, 1: columns), or None if the parameter is never sparsified."""
    for suffix, axis in _MIN_AXIS_BY_SUFFIX.items():
        if name == suffix or name.endswith("." + suffix):
            return axis
    return None


def is_sparsified(name: str) -> bool:
    return min_axis(name) is not None


def _check_finite(w: np.ndarray, what: str) -> None:
    if not np.isfinite(w).all():
        raise ValueError(f"{what} contains NaN or inf; refusing to pick a top-k from it "
                         "(the training run has diverged: lower the learning rate or resume from the last checkpoint)")


def _magnitudes(x: np.ndarray) -> np.ndarray:
    """|x| as a C-ordered array of signed integers that sort like |x|.

    Non-negative floats are ordered as their bit patterns read as integers, and NumPy partitions integers faster than
    floats (no NaN-aware comparisons). Every function below ranks these instead of |x|.
    """
    a = np.ascontiguousarray(np.abs(x))
    return a.view(f"i{a.itemsize}") if a.dtype.kind == "f" else a


def _top_per_row(a: np.ndarray, k: int, exact_at_zero: bool = True) -> np.ndarray:
    """Mask of the `k` largest entries along the last axis of `a` (from `_magnitudes`), 0 < k < a.shape[-1].

    Each row's k-th largest value comes from one np.partition (faster than argpartition and a scatter); every entry
    at least as large passes. More than k pass only where an entry left of the k-th after partitioning ties with it:
    those rows are redone exactly, by index. With `exact_at_zero=False` rows tied at 0 are left as they are: every
    entry of a row with fewer than k nonzeros passes (AbsTopK's rule).
    """
    n = a.shape[-1]
    part = np.partition(a, n - k, axis=-1)
    kth = part[..., n - k, None]
    mask = a >= kth
    if np.count_nonzero(mask) == mask.size // n * k:   # every row passes >= k: so exactly k each, no row tied at
        return mask                                      # its k-th value
    tied = part[..., :n - k].max(axis=-1, keepdims=True) == kth
    if not exact_at_zero:
        tied &= kth > 0
    rows = tied.reshape(-1)
    if rows.any():
        idx = np.argpartition(a.reshape(-1, n)[rows], n - k, axis=-1)[:, n - k:]
        exact = np.zeros((int(rows.sum()), n), dtype=bool)
        np.put_along_axis(exact, idx, True, axis=-1)
        mask.reshape(-1, n)[rows] = exact
    return mask


SAMPLE = 17   # _largest's sample takes every 17th entry: prime, so not the same columns of every row


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` largest entries of a 1-D array of magnitudes, 0 < n <= the count of entries >= 0.

    Entries < 0 are never picked. Ties at the n-th largest are broken by index. np.partition slows down ~10x when most
    entries are equal (exact zeros after a projection), so only the positive candidates are partitioned when they are
    the minority, and when they are too few all of them are taken, then the first zeros. When n is a small part of
    the candidates (a sparse model's weights), a sample bounds the n-th largest from below: only the candidates above
    the bound are partitioned, if there are at least n of them (else all are, as before).
    """
    positive = np.flatnonzero(values > 0)
    if positive.size <= n:
        zeros = np.flatnonzero(values == 0)[: n - positive.size]
        return np.concatenate([positive, zeros])
    candidates = values[positive] if 2 * positive.size < values.size else values
    if SAMPLE * n < candidates.size:                     # few to pick: partition only those above a sampled bound
        sample = candidates[::SAMPLE]
        rank = min(sample.size, 2 * (n // SAMPLE) + 32)  # the bound's rank in the sample: twice n's, and a margin
        bound = np.partition(sample, sample.size - rank)[sample.size - rank]
        above_bound = candidates[candidates >= bound]
        if above_bound.size >= n:                        # then the n largest are all among them
            candidates = above_bound
    nth = np.partition(candidates, candidates.size - n)[candidates.size - n]
    above = np.flatnonzero(values > nth)
    return np.concatenate([above, np.flatnonzero(values == nth)[: n - above.size]])


def topk_mask(w: np.ndarray, k: int, min_per_row: int = 0) -> np.ndarray:
    """Boolean mask of the entries of a 2-D `w` to keep.

    First each row keeps its `min(min_per_row, ncols)` largest |w| (the forced entries), then the remaining budget
    goes to the largest |w| among all other entries. Exactly `max(k, forced)` entries are True (capped at w.size):
    the budget is never exceeded unless the minimum per row forces it.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"topk_mask expects a 2-D matrix, got shape {w.shape}")
    if int(k) != k or k < 0 or int(min_per_row) != min_per_row or min_per_row < 0:
        raise ValueError(f"topk_mask needs integers k >= 0 and min_per_row >= 0, "
                         f"got k={k!r}, min_per_row={min_per_row!r}")
    _check_finite(w, "weight matrix")
    if k >= w.size:  # the whole budget (a dense run, or early in the anneal): nothing to choose
        return np.ones(w.shape, dtype=bool)
    rows, cols = w.shape
    j = min(int(min_per_row), cols)
    if j == cols:
        return np.ones(w.shape, dtype=bool)
    a = _magnitudes(w)
    mask = _top_per_row(a, j) if j > 0 else np.zeros(w.shape, dtype=bool)
    need = min(int(k), w.size) - rows * j
    if need > 0:
        free = np.where(mask, -1, a).reshape(-1)     # the forced entries rank below every free one
        mask.reshape(-1)[_largest(free, need)] = True
    return mask


ANNEAL_SHAPES = ("linear", "geometric")


def density_at(step: int, total_steps: int, target: float, start: float = 0.01, end: float = 0.5,
               shape: str = "linear") -> float:
    """Weight density in force after optimizer step `step` (0-based) of `total_steps`.

    Dense (1.0) until `start`·total_steps, then falling to `target` at `end`·total_steps, then constant. "linear" (the
    paper's): k falls by the same count every step, so the last steps of the anneal cut the most from what is left
    (1% of the surviving weights a step at the end, for 1/16 over half of 3,000 steps). "geometric": k falls by the
    same fraction every step, density = target ** progress.
    """
    if shape not in ANNEAL_SHAPES:
        raise ValueError(f"unknown anneal shape {shape!r}; use one of {ANNEAL_SHAPES}")
    t0, t1 = start * total_steps, end * total_steps
    if step < t0:
        return 1.0
    if step >= t1 or t1 <= t0:
        return float(target)
    progress = (step - t0) / (t1 - t0)
    if shape == "geometric":
        return float(target) ** progress
    return 1.0 - (1.0 - target) * progress


def forced_count(shape: tuple[int, int], axis: int, min_per_neuron: int) -> int:
    """How many entries the minimum per neuron forces on a matrix of `shape` whose units lie along `axis`."""
    units, fan = (shape[0], shape[1]) if axis == 0 else (shape[1], shape[0])
    return units * min(min_per_neuron, fan)


def k_at(shape: tuple[int, int], axis: int, density: float, min_per_neuron: int) -> int:
    """The number of nonzeros a matrix keeps at `density`: max(forced by min-j, round(density·size)), ≤ size."""
    size = shape[0] * shape[1]
    return min(size, max(forced_count(shape, axis, min_per_neuron), round(density * size)))


def project_mask(name: str, w: np.ndarray, density: float, min_per_neuron: int) -> np.ndarray:
    """The top-k mask of one sparsified parameter at `density`, with its min-j axis from DESIGN §2."""
    axis = min_axis(name)
    if axis is None:
        raise ValueError(f"{name!r} is not a sparsified parameter")
    k = k_at(w.shape, axis, density, min_per_neuron)
    if axis == 0:
        return topk_mask(w, k, min_per_neuron)
    return topk_mask(w.T, k, min_per_neuron).T


def project_topk(params: dict[str, np.ndarray], densities: dict[str, float],
                 min_per_neuron: int, each=None) -> dict[str, np.ndarray]:
    """Zero, in place, all but the top-k entries of every sparsified parameter; return the masks.

    `densities` maps each sparsified parameter name to its density now (see `density_at`). Unsparsified tensors (norms,
    biases, sinks, bigram) are never touched. `each(fn, names)`, if given, calls fn(name) for every name, in any order
    or concurrently, and returns once all are done (the NumPy trainer's threads): each matrix is projected alone.
    """
    names = [name for name in params if is_sparsified(name)]
    masks = dict.fromkeys(names)

    def project(name):
        masks[name] = mask = project_mask(name, params[name], densities[name], min_per_neuron)
        np.multiply(params[name], mask, out=params[name])

    (each or in_turn)(project, names)
    return masks


def in_turn(fn, items) -> None:
    """fn(item) for every item, one after the other: what an `each` argument does when none is given."""
    for item in items:
        fn(item)


def abstopk_mask(x: np.ndarray, k: int) -> np.ndarray:
    """Which entries AbsTopK passes along the last axis: those with |x| at least the k-th largest |x|.

    When a row has k or more nonzeros this is exactly its top k (ties among nonzeros broken by index). When it has
    fewer, the k-th largest |x| is 0 and every entry passes: the output equals x, and so does the derivative, since
    nudging any zero entry would make it one of the k kept. Defined this way the gradient is the true one and does
    not depend on how a backend breaks ties among zeros.
    """
    n = x.shape[-1]
    if k >= n:  # AbsTopK is off: the identity
        return np.ones(x.shape, dtype=bool)
    return _top_per_row(_magnitudes(x), k, exact_at_zero=False)


def abstopk(x: np.ndarray, k: int) -> np.ndarray:
    """Keep the `k` entries of largest |x| along the last axis (sign kept), zero the rest: activation sparsity."""
    if k <= 0:
        raise ValueError(f"abstopk needs k >= 1, got {k}")
    return np.where(abstopk_mask(x, k), x, 0).astype(x.dtype, copy=False)
