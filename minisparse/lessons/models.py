"""The lessons' models: their recipes, their corpus, and where to find them trained (`minisparse.zoo` caches them).

`lesson_model(name, fast)` gives the models the lessons share, so that two lessons asking for "sparse" get the same
one: a small GPT trained on the standard library with examples of six built-in tasks mixed in
(`minisparse.tasks.with_task_examples`), so that a model this small, trained in minutes, does the tasks that lessons
4, 8 and 10 prune it for. "dense", "sparse-4", "sparse" and "sparse-64" (`DENSITIES`) differ only in weight density;
`fast` swaps in a tiny version that trains in seconds (the lessons' CI mode). If `minisparse reproduce` has finished a
model at the same density (its first seed), `lesson_run` uses that one instead (`reproduce_run`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from minisparse.checkpoint import load
from minisparse.config import ModelConfig, TrainConfig
from minisparse.data import Corpus, load_corpus
from minisparse.rundir import MODEL_FILE
from minisparse.tasks import TASK_EXAMPLES_SEED, with_task_examples
from minisparse.zoo import default_search, made_by, trained_run

_LESSON_MODEL = ModelConfig(vocab_size=256, n_ctx=64, d_model=64, n_layer=2, n_head=4, d_head=16, d_mlp=256,
                            pos_emb="learned")
_LESSON_TRAIN = TrainConfig(steps=2000, batch_size=16, lr=2e-2, min_per_neuron=1, eval_every=100, eval_batches=8,
                            checkpoint_every=250)
_FAST_MODEL = dataclasses.replace(_LESSON_MODEL, d_model=32, n_head=2, d_mlp=128, n_layer=1)
_FAST_TRAIN = dataclasses.replace(_LESSON_TRAIN, steps=60, batch_size=8, eval_every=20, eval_batches=2,
                                  checkpoint_every=60)
DENSITIES = {"dense": 1.0, "sparse-4": 1 / 4, "sparse": 1 / 16, "sparse-64": 1 / 64}
LESSON_TASKS = ("single_double_quote", "bracket_counting", "set_or_string_fixedvarname", "while_return_true",
                "dict_or_list", "def_or_call")
# Examples of each task mixed into the lessons' training text, by `fast`: 2,000 distinct ones, each 4 times (about 12%
# of the bytes), enough for the 2-layer models to learn some tasks in 2,000 steps. Their seed is not 0, the seed the
# lessons draw pruning prompts with, so that pruning fits fresh prompts, not training examples.
_EXAMPLES = {False: dict(per_task=2000, repeat=4), True: dict(per_task=200, repeat=1)}
_EXAMPLES_SEED = TASK_EXAMPLES_SEED     # a seed pruning never draws prompts with


def recipe(name: str, fast: bool = False, steps: int | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The (ModelConfig, TrainConfig) of a lesson model: "dense", or weight-sparse at 1/4, 1/16 or 1/64 ("sparse-4",
    "sparse", "sparse-64"), all else equal. `fast`: a tiny version that trains in seconds (the lessons' CI mode);
    `steps`: another training budget, the schedules scaled to it."""
    if name not in DENSITIES:
        raise ValueError(f"unknown lesson model {name!r}; known: {sorted(DENSITIES)}")
    model_cfg, train_cfg = (_FAST_MODEL, _FAST_TRAIN) if fast else (_LESSON_MODEL, _LESSON_TRAIN)
    train_cfg = dataclasses.replace(train_cfg, weight_density=DENSITIES[name])
    if steps is not None:
        train_cfg = dataclasses.replace(train_cfg, steps=steps)
    return model_cfg, train_cfg


@functools.lru_cache(maxsize=2)
def lesson_corpus(fast: bool = False) -> Corpus:
    """The lessons' training corpus: the standard library with examples of LESSON_TASKS mixed in."""
    return with_task_examples(load_corpus(), LESSON_TASKS, **_EXAMPLES[fast], seed=_EXAMPLES_SEED)


def reproduce_run(name: str, search=None) -> Path | None:
    """The finished run that `minisparse reproduce` trained at this lesson model's density (its first seed), if one is
    under the `search` folders (default: `default_search()`), as `<folder>/models/<run>/model.safetensors`."""
    from minisparse.reproduce import Run

    run = Run(DENSITIES[name], 0).name
    for folder in default_search() if search is None else search:
        made = made_by(Path(folder) / "models" / run / MODEL_FILE)
        if made is not None and made["train_config"] and made["step"] == made["train_config"]["steps"]:
            return Path(folder) / "models" / run
    return None


def lesson_run(name: str, fast: bool = False, steps: int | None = None, progress: bool = True,
               reproduce: bool = True) -> Path:
    """The run directory of a lesson model: with `reproduce` (and not `fast`, and no other `steps`), the model
    `minisparse reproduce` trained at this density if there is one; otherwise the lesson `recipe` trained on
    `lesson_corpus`, now if it is not cached yet."""
    found = reproduce_run(name) if reproduce and not fast and steps is None else None
    return found or trained_run(*recipe(name, fast, steps), corpus=lesson_corpus(fast), progress=progress)


def lesson_model(name: str, fast: bool = False, steps: int | None = None, progress: bool = True,
                 reproduce: bool = True):
    """A lesson model as a NumPy GPT (see `lesson_run`)."""
    return load(lesson_run(name, fast, steps, progress, reproduce) / MODEL_FILE)


def describe(run: Path) -> str:
    """One line on what a run directory holds: its shape, training, density and text."""
    made = made_by(Path(run) / MODEL_FILE)
    if made is None:
        raise ValueError(f"no readable checkpoint in {run}")
    m, t = made["config"], made["train_config"] or {}
    if made["corpus"] == load_corpus().fingerprint:
        text = "the standard library"
    elif any(made["corpus"] == lesson_corpus(fast).fingerprint for fast in (True, False)):   # the small one first
        text = "the standard library with task examples mixed in"
    else:
        text = f"a corpus of fingerprint {made['corpus'][:12]}…"
    density = t.get("weight_density", 1.0)
    return (f"{run}: d_model {m['d_model']}, {m['n_layer']} layers, context {m['n_ctx']}; "
            + ("dense" if density == 1 else f"weight density 1/{round(1 / density)}")
            + f"; {made['step']} steps of {t.get('batch_size', '?')}×{m['n_ctx']} bytes of {text}")
