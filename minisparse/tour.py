"""`minisparse tour`: the whole story in one command — weight sparsity, activation sparsity, circuit sparsity.

Trains (or loads) a weight-sparse model, shows how sparse its weights and activations are, prunes a task to a circuit,
counts the circuit's edges against what a dense model with the same nodes would need, and draws it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .checkpoint import load
from .circuits import TaskData, circuit_edges, prune_report
from .circuits.masks import mask_from_nodes
from .config import preset
from .data import eval_batches, load_corpus
from .params import site_sizes
from .sample import generate_bytes, printable
from .sparsity import is_sparsified
from .tasks import get_task
from .train import MODEL_FILE, train


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


def tour(out_dir="runs/tour", *, checkpoint=None, preset_name: str = "tiny", steps: int | None = None,
         density: float = 1 / 16, task: str = "while_return_true", backend: str = "numpy") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        model_cfg, train_cfg = preset(preset_name)
        train_cfg = dataclasses.replace(train_cfg, weight_density=density, steps=steps or train_cfg.steps)
        _section(f"1. Train a weight-sparse model (preset {preset_name}, target density {density:g})")
        checkpoint = out / MODEL_FILE
        train(model_cfg, train_cfg, out, backend=backend, resume=checkpoint.exists())
    model = load(checkpoint, backend="numpy")
    cfg = model.config

    _section("2. Weight sparsity: most weights are exactly zero")
    total = kept = 0
    for name, w in model.params.items():
        if is_sparsified(name):
            nz = int(np.count_nonzero(w))
            total, kept = total + w.size, kept + nz
            print(f"  {name:32s} {nz:7d} / {w.size:7d} nonzero ({nz / w.size:6.1%})")
    print(f"  all sparsified matrices: {kept:,} / {total:,} = {kept / total:.1%} nonzero")

    _section(f"3. Activation sparsity: AbsTopK keeps {cfg.afrac:g} of each site's channels")
    x, _ = eval_batches(load_corpus().val, 4, cfg.n_ctx, 1)[0]
    _, cache = model.forward_cached(x)
    for key, width in site_sizes(cfg).items():
        l0 = np.count_nonzero(cache["sites"][key], axis=-1).mean()
        print(f"  {key:16s} L0 per token {l0:6.1f} of {width}")

    _section(f"4. Circuit sparsity: prune {task!r} to the channels it needs")
    circuit = prune_report(model, task, json_path=out / f"circuit-{task}.json")
    # the same prompts pruning used, every entry between the circuit's nodes counted, zero or not
    data = TaskData.from_task(get_task(task), circuit.settings["n_examples"], cfg.n_ctx, "train",
                              circuit.settings["seed"])
    dense = circuit_edges(model.params, cfg, mask_from_nodes(circuit.nodes, site_sizes(cfg)), data.tokens,
                          data.answer_ids, nonzero_only=False)
    print(f"  {circuit.n_edges} edges; a dense model with the same nodes would have {len(dense)}: weight sparsity "
          "is what makes the circuit small enough to read")
    from .viz import draw_circuit
    draw_circuit(circuit, out / f"circuit-{task}.png")
    print(f"  drawn to {out / f'circuit-{task}.png'}; saved as {out / f'circuit-{task}.json'}")

    _section("5. What it writes")
    print(printable(b"def " + generate_bytes(model, "def ", n_bytes=200, temperature=0.6)))
