"""Checks for the lessons' exercises: you write a piece of minisparse, a check runs it beside minisparse's own.

    from minisparse.lessons.exercises import check_abstopk

    def abstopk(x, k):
        ...                        # your code
    check_abstopk(abstopk)         # prints "✓ ..." or raises ExerciseError: which input, which entry, expected vs got

Each check calls your function on several random inputs, the awkward ones included (rows with fewer than k nonzeros,
k ≥ n, tiny values, non-square matrices), compares it with minisparse's own answer, and stops at the first difference
with the case, the entry, the expected and the actual value, and a hint about what that case tests. The idea is
makemore's `cmp()` and ARENA's `test_x(your_fn)`: write a piece, find out at once whether, and where, it is wrong.
`compare(what, got, expected)` is the same comparison for your own experiments.

This module is the notebooks' one import point. The checks live by subject, all raising the one `ExerciseError` of
`minisparse.lessons.check`:

    exercises_sparsity        AbsTopK and its backward, the top-k mask, the density schedule, pruning, sparse matmul
    exercises_gradients       RMSNorm's backward, a central-difference Jacobian
    exercises_circuits        a circuit's edges, the task loss, a single-node ablation
    exercises_superposition   the toy model's gradient, a TopK SAE's forward, the Jacobian SAE's Jacobian
    exercises_mechanism       the share of the logit difference that patching one node restores
    exercises_capstone        one column of the capstone's table: zero share, steps and compute to a loss

In `lessons/solutions/` each exercise cell holds a reference solution between `# BEGIN SOLUTION` and
`# END SOLUTION`, so those notebooks run top to bottom. The notebooks a learner opens, `lessons/*.ipynb`, are the same
with every solution replaced by `raise NotImplementedError` (`minisparse.lessons.blank`).
"""

from __future__ import annotations

from .blank import blank_source, blank_text, main
from .check import ExerciseError, compare
from .exercises_capstone import check_road_column
from .exercises_circuits import check_count_edges, check_task_loss
from .exercises_gradients import check_jacobian, check_rmsnorm_backward
from .exercises_mechanism import check_patch_restores
from .exercises_sparsity import (
    check_abstopk,
    check_abstopk_backward,
    check_density_at,
    check_prune_to_density,
    check_sparse_matmul,
    check_topk_mask,
)
from .exercises_superposition import check_jsae_jacobian, check_sae_forward, check_toy_grads

__all__ = ["ExerciseError", "compare", "check_abstopk", "check_abstopk_backward", "check_topk_mask",
           "check_density_at", "check_rmsnorm_backward", "check_jacobian", "check_count_edges",
           "check_task_loss", "check_prune_to_density", "check_sparse_matmul",
           "check_toy_grads", "check_sae_forward", "check_jsae_jacobian", "check_patch_restores", "check_road_column",
           "blank_source",
           "blank_text"]


if __name__ == "__main__":
    main()
