"""Checks for the lessons' exercises: you write a piece of minisparse, a check runs it beside minisparse's own.

    from minisparse.exercises import check_abstopk

    def abstopk(x, k):
        ...                        # your code
    check_abstopk(abstopk)         # prints "✓ ..." or raises ExerciseError: which input, which entry, expected vs got

Each check calls your function on several random inputs, the awkward ones included (rows with fewer than k nonzeros,
k ≥ n, tiny values, non-square matrices), compares it with minisparse's own answer, and stops at the first difference
with the case, the entry, the expected and the actual value, and a hint about what that case tests. The idea is
makemore's `cmp()` and ARENA's `test_x(your_fn)`: write a piece, find out at once whether, and where, it is wrong.
`compare(what, got, expected)` is the same comparison for your own experiments.

In the lessons each exercise cell holds a reference solution between `# BEGIN SOLUTION` and `# END SOLUTION`, so the
notebooks run top to bottom. `python -m minisparse.exercises blank lessons/` writes copies of the notebooks with every
solution replaced by `raise NotImplementedError`, to solve from scratch.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from minisparse.circuits.edges import circuit_edges
from minisparse.circuits.masks import gates_from_mask, parse_node
from minisparse.circuits.prune import TaskData, binary_task_loss, task_loss
from minisparse.config import ModelConfig
from minisparse.numpy import GPT, layers
from minisparse.params import init_params, site_sizes
from minisparse.sparsity import abstopk, density_at, is_sparsified, project_topk, topk_mask

__all__ = ["ExerciseError", "compare", "check_abstopk", "check_abstopk_backward", "check_topk_mask",
           "check_density_at", "check_rmsnorm_backward", "check_jacobian", "check_count_edges",
           "check_task_loss", "check_node_ablation", "check_prune_to_density", "check_sparse_matmul",
           "blank_notebook"]


class ExerciseError(AssertionError):
    """Your function gave a wrong answer; the message says on which input, where, and what was expected."""


def compare(what: str, got, expected, *, atol: float = 0.0, rtol: float = 0.0, hint: str = "") -> None:
    """Raise ExerciseError at the first entry where `got` differs from `expected` (beyond atol + rtol·|expected|).

    The message names the entry, both values, how many entries differ, and `hint`. Shapes and dtypes kinds (bool vs
    number) must match too.
    """
    expected = np.asarray(expected)
    try:
        got = np.asarray(got)
    except (ValueError, TypeError) as e:   # a ragged list, an object the learner returned by mistake
        raise ExerciseError(f"{what}: expected an array of shape {expected.shape}, got {type(got).__name__} "
                            f"({e})") from None
    if got.shape != expected.shape:
        raise ExerciseError(f"{what}: shape {got.shape}, expected {expected.shape}" + _hint(hint))
    if (expected.dtype == bool) != (got.dtype == bool):
        raise ExerciseError(f"{what}: dtype {got.dtype}, expected {'bool' if expected.dtype == bool else 'a number'}"
                            + _hint(hint))
    if expected.dtype == bool:
        wrong = got != expected
    else:
        got64, exp64 = got.astype(np.float64), expected.astype(np.float64)
        with np.errstate(invalid="ignore"):
            wrong = ~(np.abs(got64 - exp64) <= atol + rtol * np.abs(exp64))   # NaN counts as wrong
    if wrong.any():
        first = tuple(int(i) for i in np.argwhere(wrong)[0])
        where = f"entry {list(first)}" if first else "the value"
        count = f" ({int(wrong.sum())} of {wrong.size} entries differ)" if first else ""
        raise ExerciseError(f"{what}: {where} is {_fmt(got[first])}, expected {_fmt(expected[first])}{count}"
                            + _hint(hint))


def _fmt(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:.10g}" if isinstance(v, float) else repr(v)


def _hint(hint: str) -> str:
    return f"\n  hint: {hint}" if hint else ""


def _call(name: str, fn, *args):
    """Call the learner's function; a stub that raises NotImplementedError becomes a one-line reminder."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseError(f"{name} is not written yet: replace `raise NotImplementedError` with your code") from None


def _passed(name: str, n_cases: int) -> None:
    print(f"✓ {name}: matches minisparse on all {n_cases} cases")


# ----------------------------------------------------------------------------------------------------------------------
# Activation sparsity: AbsTopK (lesson 1, lesson 2)

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
# Weight sparsity: the top-k mask with a minimum per row, and the density schedule (lesson 1, lesson 3)

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
# Backprop by hand (lesson 2)

def check_rmsnorm_backward(fn) -> None:
    """`fn(dout, x, g)` -> (dx, dg) for y = x / sqrt(mean(x²) + 1e-5) · g over the last axis of a 2-D x."""
    rng = np.random.default_rng(3)
    cases = [("x of unit scale, (4, 8)", rng.normal(size=(4, 8)), ""),
             ("x of scale 1e-3, where the 1e-5 inside the square root matters", 1e-3 * rng.normal(size=(3, 16)),
              "r = 1/sqrt(mean(x²) + 1e-5): keep the 1e-5"),
             ("x of scale 30, (2, 5)", 30 * rng.normal(size=(2, 5)), "")]
    for label, x, hint in cases:
        g = rng.normal(size=x.shape[1])
        dout = rng.normal(size=x.shape)
        _, cache = layers.rmsnorm_forward(x, g)
        dx, dg = layers.rmsnorm_backward(dout, cache)
        got = _call("rmsnorm_backward", fn, dout, x.copy(), g.copy())
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseError(f"rmsnorm_backward must return a pair (dx, dg), got {type(got).__name__}")
        compare(f"rmsnorm_backward dg on {label}", got[1], dg, rtol=1e-7, atol=1e-12,
                hint=hint or "g multiplies x̂ = x·r, r = 1/sqrt(mean(x²) + 1e-5), and is shared by every row: "
                             "dg = Σ_rows dout·x̂")
        compare(f"rmsnorm_backward dx on {label}", got[0], dx, rtol=1e-7, atol=1e-9 * np.abs(dx).max(),
                hint=hint or "dx = r·(dx̂ − x̂·mean(dx̂·x̂)) with dx̂ = dout·g: x̂ does not change when x is scaled, "
                             "so dx has no component along x")
    _passed("rmsnorm backward", len(cases))


def _gelu(z):
    return layers.gelu_forward(np.asarray(z, dtype=np.float64))[0]


def check_jacobian(fn) -> None:
    """`fn(f, x, eps)`: the central-difference Jacobian J[i, j] = (f(x + eps·e_j) − f(x − eps·e_j))_i / (2·eps) of a
    function f from [n] to [m], as an [m, n] array."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, 3))
    w[1, 2] = w[3, 0] = 0.0
    x = rng.normal(size=3)
    u = rng.normal(size=(5, 3))
    cases = [
        ("a linear map x -> W x, W of shape (5, 3)", lambda v: w @ v, w,
         "J[i, j] = ∂f_i/∂x_j: rows are outputs, columns are inputs; its shape is (outputs, inputs)"),
        ("x -> GELU(W x)", lambda v: _gelu(w @ v), _gelu_prime(w @ x)[:, None] * w,
         "use central differences, (f(x + ε) − f(x − ε)) / 2ε: a one-sided difference is off by O(ε)"),
        ("x -> tanh(U x) · sum(x)", lambda v: np.tanh(u @ v) * v.sum(),
         (1 - np.tanh(u @ x) ** 2)[:, None] * u * x.sum() + np.tanh(u @ x)[:, None], ""),
    ]
    for label, f, exact, hint in cases:
        x_in = x.copy()
        got = _call("jacobian", fn, f, x_in, 1e-4)
        compare(f"jacobian of {label} at x = {np.round(x, 3).tolist()}, eps = 1e-4", got, exact, rtol=1e-6,
                atol=1e-6 * np.abs(exact).max(), hint=hint)
        compare(f"jacobian of {label}: your function left x changed", x_in, x,
                hint="perturb a copy of x, or put each entry back after evaluating f")
    _passed("jacobian", len(cases))


def _gelu_prime(z):
    return layers.gelu_backward(np.ones_like(z), layers.gelu_forward(z)[1])


# ----------------------------------------------------------------------------------------------------------------------
# Circuits (lesson 4, lesson 8)

def _edge_case_model(seed: int):
    cfg = ModelConfig(vocab_size=16, n_ctx=8, d_model=8, n_layer=2, n_head=2, d_head=3, d_mlp=12)   # nothing square
    rng = np.random.default_rng(seed)
    params = init_params(cfg, seed, np.float64)
    for name, w in params.items():
        if is_sparsified(name):
            w *= rng.random(w.shape) < 0.3                                     # 30% of the entries nonzero
    mask = {key: (rng.random(n) < 0.5).astype(np.float64) for key, n in site_sizes(cfg).items()}
    return cfg, params, mask


def check_count_edges(fn) -> None:
    """`fn(params, config, mask)`: the number of edges between kept nodes inside the blocks: nonzero entries of
    Wq, Wk, Wv (attn_in → q, k, v), Wo (v → attn_out), Wup (mlp_in → mlp_neuron), Wdown (mlp_neuron → mlp_out)
    whose two end nodes are both kept. `mask` is {"L{l}.{site}": [n] 0/1}."""
    cases = []
    for seed in range(3):
        cfg, params, mask = _edge_case_model(seed)
        cases.append((f"a random sparse 2-layer model (seed {seed})", cfg, params, mask))
    cfg, params, mask = _edge_case_model(3)
    cases.append(("the same with every node kept", cfg, params, {k: np.ones_like(m) for k, m in mask.items()}))
    cases.append(("the same with nothing kept in layer 1", cfg, params,
                  {k: (m if k.startswith("L0") else np.zeros_like(m)) for k, m in mask.items()}))
    for label, cfg, params, mask in cases:
        expected = len(circuit_edges(params, cfg, mask))
        got = _call("count_edges", fn, params, cfg, mask)
        if got != expected:
            per = {}
            for src, dst, _ in circuit_edges(params, cfg, mask):
                key = f"{src.split('[')[0]} -> {dst.split('[')[0]}"
                per[key] = per.get(key, 0) + 1
            raise ExerciseError(f"count_edges on {label}: {got!r} edges, expected {expected}; per matrix, expected "
                                f"{per}\n  hint: weights are stored (out, in): W[dst, src] connects src → dst, so "
                                "index rows by the kept destination channels and columns by the kept sources, "
                                "and count only nonzero entries")
    _passed("count_edges", len(cases))


def check_task_loss(fn) -> None:
    """`fn(last_logits, labels, answer_ids)`: mean binary cross-entropy between the two answer tokens' logits at the
    last position, label 0 meaning answer_ids[0] is right; in nats (chance is ln 2)."""
    rng = np.random.default_rng(5)
    cases = [("random logits over 16 tokens", rng.normal(size=(8, 16)), rng.integers(0, 2, 8), np.array([3, 11])),
             ("confident right answers (logit gap 40)", None, np.array([0, 1, 1, 0]), np.array([5, 2])),
             ("confidently wrong answers (logit gap 800: exp overflows)", None, np.array([1, 0, 0]), np.array([4, 7])),
             ("answers whose ids are in decreasing order", rng.normal(size=(6, 16)), rng.integers(0, 2, 6),
              np.array([9, 1]))]
    for label, logits, labels, answers in cases:
        if logits is None:   # every prompt's right answer 40 above the other, or its wrong answer 800 above
            n, right = len(labels), "right" in label
            logits = np.zeros((n, 16))
            logits[np.arange(n), answers[labels if right else 1 - labels]] = 40.0 if right else 800.0
        expected = binary_task_loss(logits, labels, answers)[0]
        got = _call("task_loss", fn, logits.copy(), labels.copy(), answers.copy())
        compare(f"task_loss on {label}", got, expected, rtol=1e-9, atol=1e-12,
                hint="only the two answer logits count: with z = logit[a1] − logit[a0], the loss is softplus(−z) "
                     "when label 1 is right and softplus(z) when label 0 is; average over prompts, in nats, and "
                     "compute it so that a large |z| does not overflow (np.logaddexp)")
    _passed("task_loss", len(cases))


def check_node_ablation(fn) -> None:
    """`fn(model, data, mask, means, node)`: how much the task loss on `data` rises when `node` ("L{l}.{site}[i]") is
    ablated too, inside the circuit `mask` ({site: [n] 0/1}, everything outside it ablated to `means`):
    task loss without the node − task loss of the circuit. `mask` itself must not change."""
    cfg, params, mask = _edge_case_model(7)
    model = GPT(cfg, params={n: w * 30 if w.ndim == 2 else w for n, w in params.items()})   # logits far from equal
    rng = np.random.default_rng(7)
    data = TaskData(idx=rng.integers(0, cfg.vocab_size, (6, cfg.n_ctx)), labels=np.array([0, 1, 1, 0, 1, 0]),
                    answer_ids=np.array([3, 9]), tokens=np.arange(cfg.vocab_size))
    means = {key: rng.normal(size=n) for key, n in site_sizes(cfg).items()}
    kept = [f"{key}[{i}]" for key, m in mask.items() for i in np.flatnonzero(m)]
    outside = next(f"{key}[{i}]" for key, m in mask.items() for i in np.flatnonzero(m == 0))
    cases = [(f"kept node {kept[0]}", kept[0]), (f"kept node {kept[len(kept) // 2]}", kept[len(kept) // 2]),
             (f"kept node {kept[-1]}", kept[-1]), (f"node {outside}, which is not in the circuit", outside)]
    base = task_loss(model, data, gates_from_mask(mask, means))
    for label, node in cases:
        before = {key: m.copy() for key, m in mask.items()}
        key, i = parse_node(node)
        without = {k: m.copy() for k, m in mask.items()}
        without[key][i] = 0.0
        expected = task_loss(model, data, gates_from_mask(without, means)) - base
        got = _call("node_ablation", fn, model, data, mask, means, node)
        for k in mask:
            compare(f"node_ablation of the {label}: your function changed mask[{k!r}]", mask[k], before[k],
                    hint="ablate the node in a copy of the mask: the circuit itself stays as it is")
        compare(f"node_ablation of the {label}", got, expected, rtol=1e-9, atol=1e-12,
                hint="Δ = task loss with the circuit minus this node (every other node still ablated to its mean) − "
                     "task loss of the circuit; ablating a node outside the circuit changes nothing")
    _passed("node_ablation", len(cases))


# ----------------------------------------------------------------------------------------------------------------------
# Weight sparsity after the fact, and what zeros cost (lessons 6, 7)

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


# ----------------------------------------------------------------------------------------------------------------------
# Blank copies of the lessons, to solve from scratch

_BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")


def blank_source(source: str) -> str:
    """A cell's source with every `# BEGIN SOLUTION` … `# END SOLUTION` block replaced by `raise NotImplementedError`
    at the block's indentation."""
    out, skipping = [], False
    for line in source.splitlines(keepends=True):
        if not skipping and (m := _BEGIN.match(line)):
            skipping = True
            out.append(f"{m.group(1)}raise NotImplementedError(\"your code here\")\n")
        elif skipping and _END.match(line):
            skipping = False
        elif not skipping:
            out.append(line)
    if skipping:
        raise ValueError("a '# BEGIN SOLUTION' has no matching '# END SOLUTION'")
    return "".join(out)


def blank_notebook(path, out_path) -> int:
    """Write a copy of the notebook at `path` to `out_path` with every solution blanked; returns how many cells
    changed. The notebook is read as plain JSON (no Jupyter needed)."""
    nb = json.loads(Path(path).read_text())
    changed = 0
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new = blank_source(src)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
            changed += 1
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "blank":
        raise SystemExit("usage: python -m minisparse.exercises blank LESSONS_DIR   "
                         "(writes LESSONS_DIR/blank/*.ipynb with the solutions removed)")
    src = Path(argv[1])
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks (*.ipynb) in {src}")
    for nb in notebooks:
        n = blank_notebook(nb, src / "blank" / nb.name)
        print(f"{src / 'blank' / nb.name}: {n} exercise cell(s) blanked")


if __name__ == "__main__":
    main()
