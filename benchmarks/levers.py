"""The paper's levers, one at a time, against the `reproduce` recipe (issue: the headline over eight tasks).

Each lever changes today's recipe in one way and trains the 1/16-equivalent model of one seed. Its row: the tasks that
model solves (held-out task loss <= 0.3), the tasks the matched dense checkpoint solves (the kept checkpoint of the
recipe's dense run whose validation loss is closest), validation loss, and the wall time of training.

    python benchmarks/levers.py dense recipe bigram --seed 0   # train (or resume) and evaluate these, then the table
    python benchmarks/levers.py --table --seed 0               # the table of every lever trained so far

The dense run is the reference every row is matched against: train it first (or in the same invocation).

Runs live under ~/.cache/minisparse/levers/s<seed>/<lever> (resumable: a killed run continues). Give each of two
concurrent invocations OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from minisparse.checkpoint import read_configs
from minisparse.circuits.scorecard import SOLVED
from minisparse.config import ModelConfig, preset
from minisparse.params import param_shapes
from minisparse.reproduce import Experiment, closest_loss, evaluate_job
from minisparse.rundir import MODEL_FILE, kept_checkpoints
from minisparse.sparsity import k_at, min_axis
from minisparse.train import train

BASE_MODEL, BASE_TRAIN = preset("reproduce")
HEADLINE = 1 / 16


def nonzeros(cfg: ModelConfig, density: float, min_per_neuron: int) -> int:
    """Nonzero weights in the sparsified matrices of a model of `cfg` at `density`."""
    return sum(k_at(shape, min_axis(name), density, min_per_neuron)
               for name, shape in param_shapes(cfg).items() if min_axis(name) is not None)


def density_for_nonzeros(cfg: ModelConfig, target: int, min_per_neuron: int) -> float:
    """The density at which a model of `cfg` keeps `target` nonzeros (bisection; nonzeros grow with density)."""
    lo, hi = 1e-6, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if nonzeros(cfg, mid, min_per_neuron) < target else (lo, mid)
    return hi


def wider(d_model: int) -> tuple[ModelConfig, float]:
    """The recipe's shape at `d_model` (heads and MLP scaled with it), and the density that keeps the 1/16 model's
    nonzero count."""
    cfg = dataclasses.replace(BASE_MODEL, d_model=d_model, n_head=d_model // BASE_MODEL.d_head, d_mlp=4 * d_model)
    target = nonzeros(BASE_MODEL, HEADLINE, BASE_TRAIN.min_per_neuron)
    return cfg, density_for_nonzeros(cfg, target, BASE_TRAIN.min_per_neuron)


def lever(name: str, seed: int) -> tuple[ModelConfig, object]:
    """(model config, train config) of a lever at `seed`; "a+b" applies lever a, then lever b."""
    if "+" in name:
        model_cfg, train_cfg = lever(name.split("+")[0], seed)
        for part in name.split("+")[1:]:
            model_part, train_part = lever(part, seed)
            model_cfg = dataclasses.replace(model_cfg, **_changed(BASE_MODEL, model_part))
            train_cfg = dataclasses.replace(train_cfg, **_changed(lever("recipe", seed)[1], train_part))
        return model_cfg, train_cfg
    train_cfg = dataclasses.replace(BASE_TRAIN, weight_density=HEADLINE, seed=seed)
    if name == "dense":
        return BASE_MODEL, dataclasses.replace(train_cfg, weight_density=1.0)
    if name == "recipe":
        return BASE_MODEL, train_cfg
    if name == "bigram":
        return dataclasses.replace(BASE_MODEL, bigram=True), train_cfg
    if name.startswith("width"):         # width192, width256: same nonzeros, lower density
        cfg, density = wider(int(name[5:]))
        return cfg, dataclasses.replace(train_cfg, weight_density=density)
    if name.startswith("steps"):         # steps6000
        return BASE_MODEL, dataclasses.replace(train_cfg, steps=int(name[5:]))
    if name.startswith("lr"):            # lr4e-2
        return BASE_MODEL, dataclasses.replace(train_cfg, lr=float(name[2:]))
    if name.startswith("tasks"):         # tasks8000: examples of each task in the text
        return BASE_MODEL, dataclasses.replace(train_cfg, task_examples=int(name[5:]))
    raise SystemExit(f"levers.py: error: unknown lever {name!r}; try recipe, bigram, width192, steps6000, lr4e-2, "
                     "tasks8000 or dense")


def _changed(base, cfg) -> dict:
    """The fields of a config that differ from `base`'s."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if getattr(cfg, f.name) != getattr(base, f.name)}


def run_lever(name: str, root: Path) -> dict:
    """Train (or resume) one lever's run, evaluate its final checkpoint (every kept one for dense); cached."""
    model_cfg, train_cfg = lever(name, int(root.name[1:]))
    run_dir, record = root / name, root / f"{name}.json"
    if record.exists():
        return json.loads(record.read_text())
    done = (run_dir / MODEL_FILE).exists() and int(read_configs(run_dir / MODEL_FILE)[2]["step"]) == train_cfg.steps
    clock = root / f"{name}.seconds"
    if not done:
        start = time.perf_counter()
        train(model_cfg, train_cfg, run_dir, resume=(run_dir / MODEL_FILE).exists(), keep_checkpoints=True)
        spent = float(clock.read_text()) if clock.exists() else 0.0
        clock.write_text(str(spent + time.perf_counter() - start))
    experiment = Experiment(densities=(1.0,), seeds=(0,))
    steps = kept_checkpoints(run_dir)
    wanted = steps if train_cfg.weight_density == 1 else {train_cfg.steps: steps[train_cfg.steps]}  # dense: all
    evals = {step: evaluate_job(experiment, str(path), str(root / "evals" / f"{name}@{step}.json"))
             for step, path in wanted.items()}
    result = {"lever": name, "density": train_cfg.weight_density, "d_model": model_cfg.d_model,
              "steps": train_cfg.steps, "seconds": float(clock.read_text()) if clock.exists() else None,
              "evals": {str(s): e for s, e in evals.items()}}
    record.write_text(json.dumps(result, indent=1))
    return result


def solved(evaluation: dict) -> list[str]:
    return sorted(t for t, loss in evaluation["task_loss"].items() if loss <= SOLVED)


def reference(root: Path, lever_name: str) -> str:
    """The dense run a lever is matched against: trained on the same text ("dense+tasks8000" for a lever that mixes in
    8,000 examples per task, when it has been trained), else the recipe's dense run."""
    data = [part for part in lever_name.split("+") if part.startswith("tasks")]
    name = "+".join(["dense", *data])
    return name if (root / f"{name}.json").exists() else "dense"


def table(root: Path) -> str:
    rows = ["| lever | d_model, density | tasks solved (sparse) | matched dense: run@step, tasks solved | both solve | "
            "val bits/byte | train minutes |", "|---|---|---|---|---|---|---|"]
    for path in sorted(root.glob("*.json")):
        r = json.loads(path.read_text())
        if r["density"] == 1:
            continue
        ref = reference(root, r["lever"])
        dense = json.loads((root / f"{ref}.json").read_text())
        dense_vals = {s: e["val_loss"] for s, e in dense["evals"].items()}
        final = r["evals"][str(r["steps"])]
        match = closest_loss(final["val_loss"], dense_vals)
        mins = f"{r['seconds'] / 60:.0f}" if r["seconds"] else "?"
        rows.append(f"| {r['lever']} | {r['d_model']}, 1/{1 / r['density']:.1f} | {len(solved(final))}: "
                    f"{', '.join(solved(final))} | {ref}@{match}, {len(solved(dense['evals'][match]))} | "
                    f"{len(set(solved(final)) & set(solved(dense['evals'][match])))} | "
                    f"{final['val_loss'] / math.log(2):.3f} | {mins} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("levers", nargs="*", help="recipe, bigram, width192, steps6000, lr4e-2, tasks8000, ..., or "
                        "combinations such as steps6000+tasks8000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=str(Path.home() / ".cache" / "minisparse" / "levers"))
    parser.add_argument("--table", action="store_true", help="print the table of every lever trained so far")
    args = parser.parse_args()
    root = Path(args.root) / f"s{args.seed}"
    root.mkdir(parents=True, exist_ok=True)
    for name in args.levers:
        lever(name, args.seed)       # an unknown name is refused before any training
    for name in args.levers:
        run_lever(name, root)
    if (root / "dense.json").exists():
        print(table(root))


if __name__ == "__main__":
    main()
