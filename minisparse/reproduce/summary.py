"""The experiment's numbers: matching by validation loss, comparing circuit sizes, the headline (results.json)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..circuits.scorecard import is_whole_model, verdict
from ..config import preset
from ..params import site_sizes
from .plan import Experiment


def closest_loss(target: float, candidates: dict[str, float]) -> str:
    """The key of `candidates` ({point: validation loss}) whose loss is closest to `target`; ties go to the earlier
    point in order (fewer training steps)."""
    return min(candidates, key=lambda p: abs(candidates[p] - target))


def geomean(xs) -> float:
    """Geometric mean (of edge counts and ratios; a count of 0 counts as 1); NaN for no values."""
    xs = np.asarray(list(xs), dtype=float)
    return float(np.exp(np.mean(np.log(np.maximum(xs, 1e-12))))) if xs.size else math.nan


def compare(evals: dict, cards: dict, dense_point: str, sparse_point: str, task_names, solved: float,
            n_total_nodes: int) -> dict:
    """Circuit edges, dense / sparse, over the tasks both models solve where the sparse circuit is real, the dense one
    reached its target, and neither keeps most of its model (`is_whole_model`: the model, not a circuit):
    {dense, sparse, tasks, ratio (their geometric mean), per_task, excluded {task: why}}."""
    per_task, excluded = {}, {}
    for t in task_names:
        dense_loss, sparse_loss = evals[dense_point]["task_loss"][t], evals[sparse_point]["task_loss"][t]
        if dense_loss > solved:
            excluded[t] = f"dense model does not solve it ({dense_loss:.2f})"
            continue
        if sparse_loss > solved:
            excluded[t] = f"sparse model does not solve it ({sparse_loss:.2f})"
            continue
        d, s = cards[dense_point][t], cards[sparse_point][t]
        real, why = verdict(s["full_loss"], s["circuit"], solved)
        if not real:
            excluded[t] = f"sparse circuit: {why}"
        elif not d["circuit"]["reached_target"]:
            excluded[t] = "dense circuit did not reach the target"
        elif is_whole_model(s["circuit"]["n_nodes"], n_total_nodes) or is_whole_model(d["circuit"]["n_nodes"],
                                                                                        n_total_nodes):
            side, c = ("sparse", s) if is_whole_model(s["circuit"]["n_nodes"], n_total_nodes) else ("dense", d)
            excluded[t] = (f"{side} circuit keeps {c['circuit']['n_nodes']} of {n_total_nodes} nodes: the model, "
                           "not a circuit")
        else:
            dense, sparse = d["circuit"]["n_edges"], s["circuit"]["n_edges"]
            per_task[t] = {"dense_edges": dense, "sparse_edges": sparse, "ratio": dense / max(1, sparse)}
    return {"dense": dense_point, "sparse": sparse_point, "tasks": sorted(per_task),
            "ratio": geomean([v["ratio"] for v in per_task.values()]) if per_task else None, "per_task": per_task,
            "excluded": excluded}


def smallest_circuit_task(matched: dict) -> str:
    """Of the tasks a comparison (`compare`) counts, the one with the smallest sparse circuit: the circuit to read."""
    return min(matched["per_task"], key=lambda t: matched["per_task"][t]["sparse_edges"])


def summarise(experiment: Experiment, evals: dict, matched: dict, cards: dict, finals: dict) -> dict:
    """results.json: every evaluation and scorecard; per sparse run its comparison with the matched dense checkpoint
    and with the final dense model; the headline (the headline density at matched loss, over seeds)."""
    comparisons = []
    n_total_nodes = sum(site_sizes(preset(experiment.preset)[0]).values())
    for run in experiment.runs():
        if run.density == 1:
            continue
        sparse = finals[run.name]
        entry = {"run": run.name, "density": run.density, "seed": run.seed, "val_loss": evals[sparse]["val_loss"]}
        for kind, dense in (("matched", matched.get(run.name)), ("final", finals.get(f"dense-s{run.seed}"))):
            if dense is not None:
                entry[kind] = compare(evals, cards, dense, sparse, experiment.task_names, experiment.solved,
                                      n_total_nodes)
                entry[kind]["dense_val_loss"] = evals[dense]["val_loss"]
        comparisons.append(entry)
    head = [c["matched"] for c in comparisons if c["density"] == experiment.headline_density and "matched" in c
            and c["matched"]["tasks"]]
    ratios = [m["ratio"] for m in head]
    return {"experiment": dataclasses.asdict(experiment), "preset": _preset_dict(experiment.preset),
            "evaluations": evals, "matched": matched, "circuits": cards, "comparisons": comparisons,
            "headline": {"density": experiment.headline_density, "ratios": ratios,
                         "n_tasks": [len(m["tasks"]) for m in head], "geomean": geomean(ratios) if ratios else None,
                         "min": min(ratios, default=None), "max": max(ratios, default=None)}}


def _preset_dict(name: str) -> dict:
    model_cfg, train_cfg = preset(name)
    return {"model": model_cfg.to_dict(), "train": train_cfg.to_dict()}

