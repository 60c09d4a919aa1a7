"""The lessons' exercise checks accept a right answer and reject plausible wrong ones, saying where they are wrong.

Each right answer here is written from scratch (as a learner would), not taken from minisparse, so a check that
compared minisparse with itself would not pass these tests. Each wrong answer is a mistake a learner could make; the
check must raise ExerciseError, and its message must point at the mistake (an entry, expected vs got, or the count).
"""

import json
import math

import numpy as np
import pytest

from minisparse.lessons import exercises as ex
from minisparse.sparsity import min_axis
from test_lessons_capstone import right as road_column  # each written from scratch there, as a learner would
from test_lessons_mechanism import by_hand as patch_restores

# ----------------------------------------------------------------------------------------------------------------------
# Right answers, from scratch


def abstopk(x, k):
    kth = np.sort(np.abs(x), axis=-1)[..., -k, None]           # the k-th largest |x| of each row
    return np.where(np.abs(x) >= kth, x, 0.0)


def abstopk_backward(dout, x, k):
    kth = np.sort(np.abs(x), axis=-1)[..., -k, None]
    return dout * (np.abs(x) >= kth)


def topk_mask(w, k, min_per_row):
    a = np.abs(w)
    mask = np.zeros(w.shape, dtype=bool)
    j = min(min_per_row, w.shape[1])
    for r in range(w.shape[0]):
        mask[r, np.argsort(-a[r])[:j]] = True
    rest = np.argsort(-np.where(mask, -1.0, a), axis=None)[:max(0, min(k, w.size) - mask.sum())]
    mask.flat[rest] = True
    return mask


def density_at(step, total, target):
    t0, t1 = 0.01 * total, 0.5 * total
    if step < t0:
        return 1.0
    if step >= t1:
        return target
    return 1.0 - (1.0 - target) * (step - t0) / (t1 - t0)


def rmsnorm_backward(dout, x, g):
    r = 1.0 / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5)
    xhat = x * r
    dxhat = dout * g
    return r * (dxhat - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)), (dout * xhat).sum(axis=0)


def jacobian(f, x, eps):
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = eps
        cols.append((f(x + e) - f(x - e)) / (2 * eps))
    return np.stack(cols, axis=1)


EDGES = (("attn_in", "q", "attn.q_proj.weight"), ("attn_in", "k", "attn.k_proj.weight"),
         ("attn_in", "v", "attn.v_proj.weight"), ("v", "attn_out", "attn.o_proj.weight"),
         ("mlp_in", "mlp_neuron", "mlp.up_proj.weight"), ("mlp_neuron", "mlp_out", "mlp.down_proj.weight"))


def count_edges(params, config, mask, *, nonzero=True, either_end=False, layers=None, edges=EDGES):
    total = 0
    for l in range(config.n_layer) if layers is None else layers:
        for src, dst, name in edges:
            w = params[f"blocks.{l}.{name}"]                        # [n_dst, n_src]
            d, s = mask[f"L{l}.{dst}"] > 0.5, mask[f"L{l}.{src}"] > 0.5
            both = (d[:, None] | s[None, :]) if either_end else (d[:, None] & s[None, :])
            total += int(np.sum(((w != 0) if nonzero else True) & both))
    return total


def task_loss(last, labels, answers):
    z = last[:, answers[1]] - last[:, answers[0]]
    return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -z, z))))


def prune_to_density(params, density, j, *, axis_of=min_axis, skip=False, global_topk=False):
    from minisparse.sparsity import is_sparsified

    out = {n: w.copy() for n, w in params.items()}
    for n, w in out.items():
        if not is_sparsified(n) and not skip:
            continue
        axis = axis_of(n) if axis_of(n) is not None else 0
        wt = w.reshape(1, -1) if w.ndim == 1 else (w if axis == 0 else w.T)
        k = round(density * w.size)
        mask = topk_mask(wt, k, j)
        w *= mask.reshape(w.shape) if axis == 0 else mask.T
    return out


def sparse_matmul(x, rows, cols, values, n_out):
    y = np.zeros((x.shape[0], n_out))
    for r, c, v in zip(rows, cols, values):
        y[:, r] += x[:, c] * v
    return y


def toy_loss_and_grads(w, b, x, importance, *, write_term=True):
    h = x @ w.T                                                 # W writes h = x Wᵀ ...
    z = h @ w + b                                               # ... and reads it back
    err = np.maximum(z, 0.0) - x
    dz = 2.0 / x.shape[0] * importance * err * (z > 0)
    dw = h.T @ dz + ((dz @ w.T).T @ x if write_term else 0.0)
    return float(np.mean(np.sum(importance * err ** 2, axis=1))), dw, dz.sum(axis=0)


def sae_forward(x, p, k, *, by_abs=False):
    pre = (x - p["b_dec"]) @ p["W_enc"].T + p["b_enc"]
    s = np.zeros_like(pre)
    for n in range(len(pre)):
        top = np.argsort(-(np.abs(pre[n]) if by_abs else pre[n]))[:k]
        s[n, top] = np.maximum(pre[n, top], 0.0)
    return s @ p["W_dec"].T + p["b_dec"], s


def jsae_jacobian(p, q, slope, idx_in, act_in, idx_out, act_out, *, only_active=True):
    jac = np.zeros((len(slope), idx_in.shape[1], idx_out.shape[1]))
    for n in range(len(slope)):
        for a in range(idx_in.shape[1]):
            for b in range(idx_out.shape[1]):
                if (act_in[n, a] and act_out[n, b]) or not only_active:
                    jac[n, a, b] = np.sum(p[idx_in[n, a]] * slope[n] * q[:, idx_out[n, b]])
    return jac


RIGHT = {
    "check_abstopk": abstopk,
    "check_abstopk_backward": abstopk_backward,
    "check_topk_mask": topk_mask,
    "check_density_at": density_at,
    "check_rmsnorm_backward": rmsnorm_backward,
    "check_jacobian": jacobian,
    "check_count_edges": count_edges,
    "check_task_loss": task_loss,
    "check_prune_to_density": prune_to_density,
    "check_sparse_matmul": sparse_matmul,
    "check_toy_grads": toy_loss_and_grads,
    "check_sae_forward": sae_forward,
    "check_jsae_jacobian": jsae_jacobian,
    "check_patch_restores": patch_restores,
    "check_road_column": road_column,
}


@pytest.mark.parametrize("check", sorted(RIGHT))
def test_a_right_answer_passes(check, capsys):
    getattr(ex, check)(RIGHT[check])
    assert capsys.readouterr().out.startswith("✓")


def test_every_check_is_tested():
    checks = {name for name in ex.__all__ if name.startswith("check_")}
    assert checks == set(RIGHT) == set(WRONG)


# ----------------------------------------------------------------------------------------------------------------------
# Wrong answers: (what the mistake is, the function, a fragment the message must contain)

def _kth(x, k):
    return np.sort(np.abs(x), axis=-1)[..., -k, None]


def _in_place_abstopk(x, k):
    x[np.abs(x) < _kth(x, k)] = 0.0
    return x


def _mask_from_output(dout, x, k):
    return dout * (abstopk(x, k) != 0)


def _global_topk(w, k, j):
    return topk_mask(w, k, 0)


def _forced_plus_k(w, k, j):
    base = topk_mask(w, 0, j) if j else np.zeros(w.shape, bool)
    a = np.where(base, -1.0, np.abs(w))
    extra = np.argsort(-a, axis=None)[:min(k, w.size - base.sum())]
    base.flat[extra] = True
    return base


def _per_column_minimum(w, k, j):
    return topk_mask(w.T, k, j).T


def _signed_rank(w, k, j):
    return topk_mask(w - w.min(), k, j)


def _anneal_from_zero(step, total, target):
    return 1.0 - (1.0 - target) * min(1.0, step / (0.5 * total))


def _anneal_to_the_end(step, total, target):
    t0 = 0.01 * total
    return 1.0 if step < t0 else 1.0 - (1.0 - target) * min(1.0, (step - t0) / (total - t0))


def _integer_start(step, total, target):
    t0, t1 = int(0.01 * total), 0.5 * total
    return 1.0 if step < t0 else (target if step >= t1 else 1.0 - (1.0 - target) * (step - t0) / (t1 - t0))


def _geometric(step, total, target):
    t0, t1 = 0.01 * total, 0.5 * total
    if step < t0:
        return 1.0
    return target if step >= t1 else target ** ((step - t0) / (t1 - t0))


def _no_projection(dout, x, g):
    r = 1.0 / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5)
    return r * dout * g, (dout * x * r).sum(axis=0)


def _no_eps(dout, x, g):
    r = 1.0 / np.sqrt((x * x).mean(axis=1, keepdims=True))
    xhat, dxhat = x * r, dout * g
    return r * (dxhat - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)), (dout * xhat).sum(axis=0)


def _sum_not_mean(dout, x, g):
    r = 1.0 / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5)
    xhat, dxhat = x * r, dout * g
    return r * (dxhat - xhat * (dxhat * xhat).sum(axis=1, keepdims=True)), (dout * xhat).sum(axis=0)


def _dg_per_row(dout, x, g):
    dx, _ = rmsnorm_backward(dout, x, g)
    return dx, (dout * x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5)).sum(axis=1)


def _transposed_jacobian(f, x, eps):
    return jacobian(f, x, eps).T


def _forward_difference(f, x, eps):
    return np.stack([(f(x + eps * e) - f(x)) / eps for e in np.eye(x.size)], axis=1)


def _one_eps(f, x, eps):
    return jacobian(f, x, eps) * 2


def _perturbs_in_place(f, x, eps):
    cols = []
    for j in range(x.size):
        x[j] += eps
        up = f(x)
        x[j] -= 2 * eps
        cols.append((up - f(x)) / (2 * eps))   # never restores x[j]
    return np.stack(cols, axis=1)


def _naive_softplus(last, labels, answers):
    z = last[:, answers[1]] - last[:, answers[0]]
    with np.errstate(over="ignore"):
        return float(np.mean(np.log1p(np.exp(np.where(labels == 1, -z, z)))))


def _sign_flipped(last, labels, answers):
    return task_loss(last, 1 - labels, answers)


def _full_softmax(last, labels, answers):
    logp = last - np.logaddexp.reduce(last, axis=1, keepdims=True)
    return float(-np.mean(logp[np.arange(len(labels)), np.asarray(answers)[labels]]))


def _log2(last, labels, answers):
    return task_loss(last, labels, answers) / math.log(2)


def _prunes_everything(params, density, j):
    return prune_to_density(params, density, j, skip=True)


def _rows_everywhere(params, density, j):
    return prune_to_density(params, density, j, axis_of=lambda n: 0 if min_axis(n) is not None else None)


def _no_minimum(params, density, j):
    return prune_to_density(params, density, 0)


def _in_place_prune(params, density, j):
    pruned = prune_to_density(params, density, j)
    for n in params:
        params[n][...] = pruned[n]
    return params


def _one_global_topk(params, density, j):
    from minisparse.sparsity import is_sparsified

    out = {n: w.copy() for n, w in params.items()}
    names = [n for n in out if is_sparsified(n)]
    flat = np.concatenate([np.abs(out[n]).ravel() for n in names])
    cut = np.sort(flat)[-round(density * flat.size)]
    for n in names:
        out[n][np.abs(out[n]) < cut] = 0.0
    return out


def _transposed_result(x, rows, cols, values, n_out):
    w = np.zeros((n_out, x.shape[1]))
    w[rows, cols] = values
    return w @ x.T


def _overwrites(x, rows, cols, values, n_out):
    y = np.zeros((x.shape[0], n_out))
    for r, c, v in zip(rows, cols, values):
        y[:, r] = x[:, c] * v                   # = instead of +=
    return y


def _forgets_values(x, rows, cols, values, n_out):
    y = np.zeros((x.shape[0], n_out))
    for r, c in zip(rows, cols):
        y[:, r] += x[:, c]
    return y


def _summed_toy_loss(w, b, x, importance):
    loss, dw, db = toy_loss_and_grads(w, b, x, importance)
    return loss * len(x), dw, db


WRONG = {
    "check_abstopk": [
        ("ranks by x, not |x|", lambda x, k: np.where(x >= np.sort(x, axis=-1)[..., -k, None], x, 0.0), "expected"),
        ("drops the sign", lambda x, k: np.abs(abstopk(x, k)), "expected"),
        ("returns the mask", lambda x, k: (abstopk(x, k) != 0).astype(float), "expected"),
        ("keeps k + 1", lambda x, k: abstopk(x, min(k + 1, x.shape[-1])), "expected"),
        ("keeps k - 1", lambda x, k: abstopk(x, k - 1) if k > 1 else np.zeros_like(x), "expected"),
        ("top-k over the whole array", lambda x, k: np.where(np.abs(x) >= np.sort(np.abs(x), axis=None)[-k], x, 0.0),
         "expected"),
        ("overwrites its input", _in_place_abstopk, "changed its input"),
        ("only keeps nonzeros strictly above the threshold", lambda x, k: np.where(np.abs(x) > _kth(x, k), x, 0.0),
         "expected"),
    ],
    "check_abstopk_backward": [
        ("mask from the output (y != 0)", _mask_from_output, "3 nonzeros"),
        ("passes everything", lambda dout, x, k: dout, "expected"),
        ("the complement of the mask", lambda dout, x, k: dout * (np.abs(x) < _kth(x, k)), "expected"),
        ("forgets dout", lambda dout, x, k: (np.abs(x) >= _kth(x, k)).astype(float), "expected"),
        ("multiplies by x", lambda dout, x, k: dout * abstopk(x, k), "expected"),
    ],
    "check_topk_mask": [
        ("ignores the minimum per row", _global_topk, "row"),
        ("adds k on top of the forced entries", _forced_plus_k, "entries kept"),
        ("minimum per column", _per_column_minimum, "expected"),
        ("ranks by w, not |w|", _signed_rank, "expected"),
        ("per-row top only", lambda w, k, j: topk_mask(w, 0, max(j, 1)), "entries kept"),
        ("returns floats", lambda w, k, j: topk_mask(w, k, j).astype(float), "dtype"),
    ],
    "check_density_at": [
        ("anneals from step 0", _anneal_from_zero, "expected"),
        ("anneals until the last step", _anneal_to_the_end, "expected"),
        ("rounds the start to an integer step", _integer_start, "expected"),
        ("geometric, not linear", _geometric, "expected"),
        ("the target throughout", lambda s, t, target: target, "expected"),
    ],
    "check_rmsnorm_backward": [
        ("drops the projection term", _no_projection, "dx"),
        ("no eps", _no_eps, "1e-5"),
        ("sum instead of mean", _sum_not_mean, "dx"),
        ("dg per row", _dg_per_row, "shape"),
        ("returns only dx", lambda dout, x, g: rmsnorm_backward(dout, x, g)[0], "pair"),
        ("swaps dx and dg", lambda dout, x, g: rmsnorm_backward(dout, x, g)[::-1], "shape"),
    ],
    "check_jacobian": [
        ("transposed", _transposed_jacobian, "shape"),
        ("forward difference", _forward_difference, "expected"),
        ("divides by eps, not 2·eps", _one_eps, "expected"),
        ("never restores x", _perturbs_in_place, "x"),
    ],
    "check_count_edges": [
        ("counts zero weights too", lambda p, c, m: count_edges(p, c, m, nonzero=False), "expected"),
        ("one kept end is enough", lambda p, c, m: count_edges(p, c, m, either_end=True), "expected"),
        ("only layer 0", lambda p, c, m: count_edges(p, c, m, layers=[0]), "expected"),
        ("only the MLP", lambda p, c, m: count_edges(p, c, m, edges=EDGES[4:]), "expected"),
    ],
    "check_task_loss": [
        ("log(1 + exp) overflows", _naive_softplus, "800"),
        ("labels the wrong way round", _sign_flipped, "expected"),
        ("softmax over the whole vocabulary", _full_softmax, "expected"),
        ("in bits", _log2, "expected"),
        ("sums over prompts", lambda *a: task_loss(*a) * len(a[1]), "expected"),
    ],
    "check_patch_restores": [
        ("patches the last position only", lambda m, p, n: patch_restores(m, p, n, positions=-1), "expected"),
        ("the change in LD, not its share", lambda m, p, n: patch_restores(m, p, n, normalise=False), "expected"),
    ],
    "check_road_column": [
        ("first validation at or below the target, no interpolation",
         lambda m, c, t, n, a: {**road_column(m, c, t, n, a), "steps": next((s for s, v in c if v <= t), None)},
         "steps"),
        ("6·nnz with the zeros skipped (forgets the dense weight gradient)",
         lambda m, c, t, n, a: {**(r := road_column(m, c, t, n, a)),
                                "flops_skipped": None if r["steps"] is None else
                                (6 * sum((w != 0).sum() for w in m.values()) + a) * r["steps"] * n}, "flops_skipped"),
        ("leaves attention out", lambda m, c, t, n, a: road_column(m, c, t, n, 0), "attention"),
    ],
    "check_prune_to_density": [
        ("prunes norms and biases too", _prunes_everything, "never pruned"),
        ("minimum per row for every matrix", _rows_everywhere, "o_proj"),
        ("no minimum per neuron", _no_minimum, "expected"),
        ("one global top-k over all matrices", _one_global_topk, "expected"),
        ("prunes the input in place", _in_place_prune, "changed the input"),
    ],
    "check_sparse_matmul": [
        ("= instead of +=", _overwrites, "expected"),
        ("ignores the values", _forgets_values, "expected"),
        ("returns (W xᵀ), the transpose", _transposed_result, "shape"),
    ],
    "check_toy_grads": [
        ("the read term of dW only", lambda *a: toy_loss_and_grads(*a, write_term=False), "read term"),
        ("sums the loss over the batch", _summed_toy_loss, "mean over the batch"),
    ],
    "check_sae_forward": [
        ("selects by |pre|", lambda x, p, k: sae_forward(x, p, k, by_abs=True), "by value"),
        ("returns (s, x̂)", lambda x, p, k: sae_forward(x, p, k)[::-1], "shape"),
    ],
    "check_jsae_jacobian": [
        ("transposed", lambda *a: jsae_jacobian(*a).transpose(0, 2, 1), "transposed"),
        ("ignores which latents are active", lambda *a: jsae_jacobian(*a, only_active=False), "inactive"),
    ],
}


@pytest.mark.parametrize("check,mistake,fn,fragment",
                         [(c, m, f, frag) for c, wrongs in WRONG.items() for m, f, frag in wrongs],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_wrong_answer_is_caught_and_located(check, mistake, fn, fragment):
    with pytest.raises(ex.ExerciseError) as info:
        getattr(ex, check)(fn)
    assert fragment in str(info.value), f"{check} caught {mistake!r} but its message does not say where:\n{info.value}"


def test_a_stub_gets_a_reminder_not_a_traceback():
    def stub(*args):
        raise NotImplementedError("your code here")

    with pytest.raises(ex.ExerciseError, match="not written yet"):
        ex.check_abstopk(stub)


def test_every_check_raises_the_one_exercise_error():
    from minisparse.lessons import (
        check,
        exercises_capstone,
        exercises_circuits,
        exercises_gradients,
        exercises_mechanism,
        exercises_sparsity,
        exercises_superposition,
    )

    assert ex.ExerciseError is check.ExerciseError and ex.compare is check.compare
    subjects = (exercises_capstone, exercises_circuits, exercises_gradients, exercises_mechanism, exercises_sparsity,
                exercises_superposition)
    assert all(module.ExerciseError is check.ExerciseError for module in subjects)
    assert {name for name in ex.__all__ if name.startswith("check_")} == {
        name for module in subjects for name in module.__all__ if name.startswith("check_")}
    # two subjects, one mistake each: both raise the one class, so one `except ExerciseError` catches either
    for name, (_, wrong, _) in (("check_abstopk", WRONG["check_abstopk"][0]),
                                ("check_toy_grads", WRONG["check_toy_grads"][0])):
        with pytest.raises(check.ExerciseError) as info:
            getattr(ex, name)(wrong)
        assert type(info.value) is check.ExerciseError, name
    # a function that forgot its `return`, given to every check: an ExerciseError, never a crash inside the check
    for name in sorted(name for name in ex.__all__ if name.startswith("check_")):
        with pytest.raises(check.ExerciseError) as info:
            getattr(ex, name)(lambda *args: None)
        assert type(info.value) is check.ExerciseError, name


def test_compare_names_the_first_wrong_entry():
    with pytest.raises(ex.ExerciseError) as info:
        ex.compare("y", np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert "[1, 1]" in str(info.value) and "5" in str(info.value) and "4" in str(info.value)
    assert "1 of 4" in str(info.value)
    ex.compare("y", np.array([1.0, 2.0 + 1e-9]), np.array([1.0, 2.0]), atol=1e-8)
    with pytest.raises(ex.ExerciseError, match="shape"):
        ex.compare("y", np.zeros(3), np.zeros(4))
    with pytest.raises(ex.ExerciseError):
        ex.compare("y", np.array([np.nan]), np.array([1.0]), atol=1.0)
    with pytest.raises(ex.ExerciseError, match="list"):
        ex.compare("y", [[1.0, 2.0], [3.0]], np.zeros(2))                # ragged: not an array at all


def test_blank_removes_every_solution_and_keeps_the_rest(tmp_path):
    cell = ("import numpy as np\n\ndef f(x):\n    \"\"\"doc\"\"\"\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n"
            "    # END SOLUTION\n\ncheck(f)\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# BEGIN SOLUTION in prose\n"]},
                    {"cell_type": "code", "metadata": {}, "source": cell.splitlines(keepends=True), "outputs": [],
                     "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    src = tmp_path / "lesson.ipynb"
    src.write_text(json.dumps(nb))
    out = json.loads(ex.blank_text(src))
    code = "".join(out["cells"][1]["source"])
    assert "x + 1" not in code and "SOLUTION" not in code
    assert '    raise NotImplementedError("your code here")\n' in code
    assert code.startswith("import numpy as np\n\ndef f(x):\n    \"\"\"doc\"\"\"\n") and code.endswith("\ncheck(f)\n")
    assert out["cells"][0] == nb["cells"][0]                              # markdown untouched
    namespace = {}
    exec(code.replace("check(f)", ""), namespace)                          # the blanked cell still runs
    with pytest.raises(NotImplementedError):
        namespace["f"](1)
    with pytest.raises(ValueError, match="END SOLUTION"):
        ex.blank_source("# BEGIN SOLUTION\nx = 1\n")
