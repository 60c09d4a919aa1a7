"""Is a circuit real? The scorecard every circuit of `minisparse reproduce` is read with.

Pruning optimises thousands of binary choices against a few dozen prompts, so a low task loss alone proves little
(Drori 2026: pruning can "solve" nonsense tasks). A circuit counts as real when all of these hold:

- the full model solves the task: held-out task loss ≤ SOLVED (a circuit of a model that cannot do the task explains
  nothing);
- pruning reached its target on the prompts it saw;
- sufficiency: the circuit alone, on held-out prompts from other templates, still has task loss ≤ SOLVED;
- necessity: ablating just the circuit breaks the task (held-out loss ≥ chance, log 2);
- both controls fail where it succeeds: pruning a random model of the same shape and sparsity, and pruning the real
  model for shuffled labels, do not reach held-out loss ≤ SOLVED.

Two further numbers are reported beside the verdict, not part of it: the circuit found with zero instead of mean
ablation, and the node Jaccard between circuits pruned from different seeds (stability).
"""

from __future__ import annotations

import math

import numpy as np

SOLVED = 0.3              # held-out task loss (nats) that counts as doing the task; chance is log 2
CHANCE = math.log(2)
MOST_OF_THE_MODEL = 0.5   # a circuit keeping more than this share of its model's nodes is the model, not a circuit


def is_whole_model(n_nodes: int, n_total_nodes: int) -> bool:
    """Whether a circuit keeps most of its model: then pruning found no small part that does the task, and the
    circuit does not count in a comparison of circuit sizes (its edge count is the model's, not a circuit's)."""
    return n_nodes > MOST_OF_THE_MODEL * n_total_nodes


def node_jaccard(node_sets: list[set]) -> float:
    """Mean pairwise Jaccard index |A ∩ B| / |A ∪ B| of node sets (1: every seed found the same circuit)."""
    pairs = [(a, b) for i, a in enumerate(node_sets) for b in node_sets[i + 1:]]
    if not pairs:
        return 1.0
    return float(np.mean([len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs]))


def verdict(full_loss: float, circuit: dict, solved: float = SOLVED) -> tuple[bool, str]:
    """(real?, why not) for a circuit given as a dict of Circuit fields (task_loss, reached_target, sufficiency,
    necessity, controls) and its full model's held-out task loss; `solved` is the held-out bar."""
    if full_loss > solved:
        return False, f"full model does not solve the task ({full_loss:.2f})"
    if not circuit["reached_target"]:
        return False, "target not reached"
    if circuit["sufficiency"] > solved:
        return False, f"held-out sufficiency {circuit['sufficiency']:.2f} > {solved}"
    if circuit["necessity"] < CHANCE:
        return False, f"necessity {circuit['necessity']:.2f} < chance"
    controls = circuit.get("controls") or {}
    if not controls:
        return False, "controls not run"
    for name, ctl in controls.items():
        if ctl["sufficiency"] <= solved:
            return False, f"control {name} also reaches held-out {ctl['sufficiency']:.2f}"
    return True, "real"
