"""`minisparse tour`: the whole story in one command — weight sparsity, activation sparsity, circuit sparsity.

Takes a weight-sparse model and a dense one trained the same way, shows how sparse the first one's weights and
activations are, prunes both to the circuit of one task, checks the sparse circuit with the scorecard (held-out
sufficiency and necessity, both controls), compares the two circuits' edges, reads the sparse circuit's busiest nodes,
and draws both. It ends by saying what was shown, or, if the circuit fails a check, which one and why.

Models: the ones given (--checkpoint, --dense-checkpoint), else the 1/16 model shipped in the zoo and the dense
checkpoint matched to it in validation loss (the first seed of `minisparse reproduce`, `minisparse.lessons.models`),
on the course's task: nothing trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .checkpoint import load, read_configs
from .circuits import prune, run_controls
from .circuits.explain import explain
from .circuits.prune import ablation_means
from .circuits.scorecard import verdict
from .config import TrainConfig
from .data import eval_batches, load_corpus
from .params import site_sizes
from .sample import generate_bytes, printable
from .sparsity import forced_count, is_sparsified, min_axis
from .tasks import get_task


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


def tour_checkpoints(checkpoint=None, dense_checkpoint=None, *, fast: bool = False):
    """(sparse checkpoint, dense checkpoint or None, a phrase saying where they came from)."""
    if checkpoint is not None:
        return Path(checkpoint), dense_checkpoint and Path(dense_checkpoint), str(checkpoint)
    from .lessons.models import lesson_checkpoint

    sparse, dense = (lesson_checkpoint(name, fast) for name in ("sparse", "dense-matched"))
    return sparse, dense, ("the lessons' fast (tiny) models" if fast else
                           "the 1/16 model shipped in the zoo and the dense checkpoint matched to it in validation "
                           "loss (`python -m minisparse.zoo`)")


def weight_sparsity(params: dict, train_cfg: TrainConfig | None) -> None:
    """Nonzeros per sparsified matrix; where the minimum per neuron keeps more than the target density, say so."""
    total = kept = 0
    floored = []
    for name, w in params.items():
        if not is_sparsified(name):
            continue
        nz = int(np.count_nonzero(w))
        total, kept = total + w.size, kept + nz
        print(f"  {name:32s} {nz:7d} / {w.size:7d} nonzero ({nz / w.size:6.1%})")
        if train_cfg is not None:
            axis, j = min_axis(name), train_cfg.min_per_neuron
            if forced_count(w.shape, axis, j) > round(train_cfg.density_for(name) * w.size):
                floored.append((name, min(j, w.shape[1 - axis]), w.shape[1 - axis]))
    print(f"  all sparsified matrices: {kept:,} / {total:,} = {kept / total:.1%} nonzero")
    if floored:
        name, j, fan = floored[0]
        print(f"  {len(floored)} matrices hold more than the target density {train_cfg.weight_density:g}: every neuron "
              f"keeps at least min_per_neuron={train_cfg.min_per_neuron} weights so that none goes dead, and with "
              f"{fan} weights per neuron that floor is {j / fan:.1%} (e.g. {name}). It takes over from the target; "
              "wider models reach the target.")


def tour(out_dir="runs/tour", *, checkpoint=None, dense_checkpoint=None, task: str | None = None,
         backend: str = "numpy", fast: bool = False) -> bool:
    """Run the tour; True if the sparse circuit passed the scorecard. `task`: by default the course's task on the
    shipped models (`minisparse.lessons.models.course_task`), `single_double_quote` on a checkpoint of one's own."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if task is None:
        from .lessons.models import course_task
        task = course_task(fast).name if checkpoint is None else "single_double_quote"
    task_obj = get_task(task)
    _section("1. Two models trained the same way, one weight-sparse, one dense, at matched loss")
    sparse_path, dense_path, source = tour_checkpoints(checkpoint, dense_checkpoint, fast=fast)
    sparse = load(sparse_path, backend=backend)
    dense = load(dense_path, backend=backend) if dense_path else None
    cfg = sparse.config
    print(f"  using {source}")

    _section("2. Weight sparsity: most weights are exactly zero")
    weight_sparsity(sparse.numpy_params(), read_configs(sparse_path)[1])

    _section(f"3. Activation sparsity: AbsTopK keeps {cfg.afrac:g} of each site's channels per token")
    x, _ = eval_batches(load_corpus().val, 4, cfg.n_ctx, 1)[0]
    acts = sparse.site_activations(x)
    for key, width in site_sizes(cfg).items():
        fires = np.count_nonzero(acts[key], axis=(0, 1)) / (x.size)
        l0 = np.count_nonzero(acts[key], axis=-1).mean()
        print(f"  {key:16s} L0 per token {l0:6.1f} of {width:4d}; channels firing on < 5% of bytes: "
              f"{np.mean(fires < 0.05):4.0%}, never: {np.mean(fires == 0):4.0%}")

    _section(f"4. Circuit sparsity: prune {task!r} ({task_obj.answers[0]!r} vs {task_obj.answers[1]!r})")
    means = ablation_means(sparse, "mean", 0)
    circuit = prune(sparse, task_obj, means=means)
    circuit.controls = run_controls(sparse, task_obj, circuit, means=means)
    circuit.to_json(out / f"circuit-{task}.json", indent=1)
    print(circuit.summary())
    real, why = verdict(circuit.full_loss, circuit.record())
    dense_circuit = None
    if dense is not None:
        dense_circuit = prune(dense, task_obj)
        dense_circuit.to_json(out / f"circuit-{task}-dense.json", indent=1)
        print(f"  the dense model's circuit for the same task: {dense_circuit.n_nodes} nodes, "
              f"{dense_circuit.n_edges} edges, held-out sufficiency {dense_circuit.sufficiency:.3f}"
              + ("" if dense_circuit.reached_target else " (target NOT reached)"))

    if real:
        _section("5. Reading the circuit: what its most important nodes respond to")
        explanations = sorted(explain(sparse, circuit, task_obj, n_contexts=3), key=lambda e: -e.delta_in_circuit)
        for e in explanations[:5]:
            print("  " + e.summary().replace("\n", "\n  "))

    from .viz import draw_circuit
    draw_circuit(circuit, out / f"circuit-{task}.png", embeddings=False, max_edges=150)
    drawn = [out / f"circuit-{task}.png"]
    if dense_circuit is not None:
        draw_circuit(dense_circuit, out / f"circuit-{task}-dense.png", embeddings=False, max_edges=150)
        drawn.append(out / f"circuit-{task}-dense.png")
    print(f"  drawn to {', '.join(map(str, drawn))} (block edges; the JSON files beside them list every edge)")

    _section("6. What it writes")
    print(printable(b"def " + generate_bytes(sparse, "def ", n_bytes=200, temperature=0.6)))

    _section("What this showed")
    if not real:
        print(f"  The sparse circuit did NOT pass the scorecard: {why}. A circuit that fails it is not evidence of a "
              "mechanism (pruning can fit prompts without one); train longer, or try another task.")
        return False
    ratio = "" if dense_circuit is None or not dense_circuit.reached_target else (
        f", {dense_circuit.n_edges / max(1, circuit.n_edges):.1f}× fewer than the dense model's "
        f"{dense_circuit.n_edges}")
    print(f"  The weight-sparse model does {task!r} with {circuit.n_nodes} of {circuit.n_total_nodes} nodes and "
          f"{circuit.n_edges} edges{ratio}. The circuit holds on held-out prompts (sufficiency "
          f"{circuit.sufficiency:.3f}), ablating it breaks the task (necessity {circuit.necessity:.3f}), and neither "
          "control gets there. Every edge is a nonzero weight: the connections that are not drawn are exactly zero, "
          "not small.")
    return True
