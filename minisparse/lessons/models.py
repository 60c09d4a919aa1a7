"""The course's models and its task, shared by every lesson so that two lessons asking for "sparse" get the same model.

By default the models are the ones shipped in the zoo (`minisparse.zoo`): the first seed of `minisparse reproduce`, the
models the README's headline comes from. They load in a second; nothing trains.

    "dense"           the final dense model
    "dense-matched"   the dense checkpoint whose validation loss matches the 1/16 model's (compare circuits here)
    "sparse-4", "sparse", "sparse-64"   weight-sparse at 1/4, 1/16, 1/64, all else equal to "dense"

`fast=True` swaps in tiny versions trained in seconds by the same recipe at a small scale (the lessons' CI mode, cached
by `minisparse.zoo.trained_run`); their numbers illustrate the code, not the claims.

The course's task (`course_task`), by one rule for every lesson: the smallest real 1/16 circuit among the tasks that
`minisparse reproduce`'s headline comparison counts for these models (both models solve it, at matched loss).
"""

from __future__ import annotations

import dataclasses
import functools

from minisparse.checkpoint import load, read_configs
from minisparse.circuits import Circuit, TaskData, prune_with_controls, task_loss
from minisparse.circuits.controls import CONTROLS
from minisparse.config import ModelConfig, TrainConfig
from minisparse.data import Corpus
from minisparse.params import weights_digest
from minisparse.reproduce.plan import Experiment
from minisparse.reproduce.summary import smallest_circuit_task
from minisparse.rundir import MODEL_FILE, cache_dir
from minisparse.tasks import BUILTIN_TASKS, get_task
from minisparse.train import training_text
from minisparse.zoo import manifest, metrics, provenance, shipped, shipped_path, trained_run

SHIPPED = {"dense": "dense-s0@3000", "dense-matched": None, "sparse-4": "1in4-s0@3000", "sparse": "1in16-s0@3000",
           "sparse-64": "1in64-s0@3000"}
DENSITIES = {"dense": 1.0, "dense-matched": 1.0, "sparse-4": 1 / 4, "sparse": 1 / 16, "sparse-64": 1 / 64}

_FAST_MODEL = ModelConfig(vocab_size=256, n_ctx=64, d_model=32, n_layer=1, n_head=2, d_head=16, d_mlp=128,
                          pos_emb="learned")
_FAST_TRAIN = TrainConfig(steps=60, batch_size=8, lr=2e-2, min_per_neuron=1, eval_every=20, eval_batches=2,
                          checkpoint_every=60, task_examples=200)


def _check(name: str) -> None:
    if name not in DENSITIES:
        raise ValueError(f"unknown lesson model {name!r}; known: {list(DENSITIES)}")


def shipped_name(name: str) -> str:
    """The zoo name of a lesson model ("sparse" -> "1in16-s0@3000")."""
    _check(name)
    if name == "dense-matched":
        return next(n for n, e in manifest().items() if e["matched_to"] == SHIPPED["sparse"])
    return SHIPPED[name]


def fast_recipe(name: str) -> tuple[ModelConfig, TrainConfig]:
    """A fast model's configs: the tiny shape at the lesson model's density; "dense-matched" is dense trained a third
    as long (a stand-in for a checkpoint matched in loss)."""
    _check(name)
    train_cfg = dataclasses.replace(_FAST_TRAIN, weight_density=DENSITIES[name])
    if name == "dense-matched":
        train_cfg = dataclasses.replace(train_cfg, steps=20, checkpoint_every=20)
    return _FAST_MODEL, train_cfg


def _fast_run(name: str, progress: bool = True):
    return trained_run(*fast_recipe(name), progress=progress)


def lesson_checkpoint(name: str, fast: bool = False, progress: bool = True):
    """The checkpoint file of a lesson model (shipped, or for `fast` trained now if not cached)."""
    return _fast_run(name, progress) / MODEL_FILE if fast else shipped_path(shipped_name(name))


def lesson_model(name: str, fast: bool = False, progress: bool = True):
    """A lesson model as a NumPy GPT."""
    return load(lesson_checkpoint(name, fast, progress)) if fast else shipped(shipped_name(name))


def lesson_configs(name: str, fast: bool = False) -> tuple[ModelConfig, TrainConfig]:
    """The (ModelConfig, TrainConfig) a lesson model was trained with, read from its file."""
    config, train_config, _ = read_configs(lesson_checkpoint(name, fast))
    return config, train_config


def val_curve(name: str, fast: bool = False) -> list[tuple[int, float]]:
    """[(step, validation loss in nats/byte), ...] along the lesson model's training."""
    if fast:
        return [(r["step"], r["val_loss"]) for r in metrics(_fast_run(name)) if "val_loss" in r]
    return [(int(step), loss) for step, loss in provenance(shipped_name(name))["val_curve"]]


def held_out_losses(name: str, fast: bool = False) -> dict[str, float]:
    """{task: the model's held-out task loss}: recorded in the zoo when it was shipped (a test re-evaluates them), or
    computed now for `fast`."""
    if not fast:
        return dict(provenance(shipped_name(name))["task_loss"])
    model = lesson_model(name, fast=True)
    return {t: task_loss(model, TaskData.from_task(get_task(t), 64, model.config.n_ctx, "test", 0))
            for t in BUILTIN_TASKS}


@functools.lru_cache(maxsize=2)
def lesson_corpus(fast: bool = False) -> Corpus:
    """The text the lesson models were trained on: the standard library with examples of every built-in task mixed
    in (train templates only, so held-out prompts stay unseen), as `minisparse.train` mixes them."""
    return training_text(lesson_configs("dense", fast)[1])


def course_task(fast: bool = False):
    """The course's task, by one rule: of the tasks `minisparse reproduce`'s headline comparison counts for the shipped
    pair (both the 1/16 model and the matched dense checkpoint solve it, the 1/16 circuit is real by `verdict`, the
    dense one reached its target, neither keeps most of its model), the one with the smallest 1/16 circuit: the
    circuit the reproduce report reads. In fast mode (nothing pruned in advance), the task whose worse loss of the two
    tiny models is lowest."""
    if not fast:
        comparison = provenance(shipped_name("dense-matched"))["comparison"]
        if comparison["per_task"]:
            return get_task(smallest_circuit_task(comparison))
    sparse, dense = held_out_losses("sparse", fast), held_out_losses("dense-matched", fast)
    return get_task(min(sparse, key=lambda t: max(sparse[t], dense[t])))


def prune_settings(fast: bool = False) -> dict:
    """The course's pruning settings: `minisparse reproduce`'s (its Adam steps on the node masks, seed 0); fewer steps
    in fast mode."""
    return {"steps": 20 if fast else Experiment().prune_steps, "seed": 0}


def course_circuit(model, task, fast: bool = False, controls=CONTROLS) -> Circuit:
    """`prune_with_controls(model, task, controls=controls, **prune_settings(fast))`, pruned once for the whole course:
    kept in minisparse's cache folder (`circuits/`), keyed by the weights, the task, the settings, the controls and the
    pruning code, so that lessons 03, 05 and 09 read one circuit instead of pruning it again each."""
    import hashlib
    import json
    from pathlib import Path

    import minisparse.circuits as circuits_package

    code = "".join(f.read_text() for f in sorted(Path(circuits_package.__file__).parent.glob("*.py")))
    key = hashlib.sha256(json.dumps([weights_digest(model.numpy_params()), model.backend, task.name,
                                     prune_settings(fast), list(controls), code]).encode()).hexdigest()
    path = cache_dir() / "circuits" / f"{key[:32]}.json"
    if path.is_file():
        try:
            return Circuit.load(path)
        except (ValueError, OSError):
            pass                        # damaged: pruned again below, and the file replaced
    circuit = prune_with_controls(model, task, controls=controls, **prune_settings(fast))
    path.parent.mkdir(parents=True, exist_ok=True)
    circuit.to_json(path)
    return circuit


def describe(name: str, fast: bool = False) -> str:
    """One line on a lesson model: where it comes from, its shape, training, density and validation loss."""
    m, t = lesson_configs(name, fast)
    density = "dense" if t.weight_density == 1 else f"weight density 1/{round(1 / t.weight_density)}"
    step = read_configs(lesson_checkpoint(name, fast))[2]["step"]
    source = "a fast (tiny) model" if fast else f"the zoo's {shipped_name(name)}"
    return (f"{name}: {source}: d_model {m.d_model}, {m.n_layer} layers, context {m.n_ctx}; {density}; step {step} of "
            f"{t.steps} ({t.batch_size}×{m.n_ctx} bytes a step); validation loss {val_curve(name, fast)[-1][1]:.3f} "
            "nats/byte")
