"""Trained models, trained once and cached: the lessons' real models, and anyone's.

    from minisparse.zoo import trained
    model = trained(model_cfg, train_cfg)      # the first call trains (with a progress bar); later calls just load

A model is keyed by everything that decides its weights: the model config, the training config and the corpus
fingerprint. Its run directory (`model.safetensors`, its optimizer file, `metrics.jsonl`, as `minisparse train`
writes them) lives in `<cache>/models/<key>/`, the cache being $MINISPARSE_CACHE or ~/.cache/minisparse. A training
that was interrupted resumes from its last checkpoint. Before training, `trained` also accepts a finished run with the
same configs and corpus anywhere under the `search` folders (by default $MINISPARSE_RUNS, a list of folders, else
`runs/reproduce` seen from the repository root or from `lessons/`, where `minisparse reproduce` writes its models):
each checkpoint's metadata says how it was made.

`lesson_model(name, fast)` gives the models the lessons share, so that two lessons asking for "sparse" get the same
one: a small GPT trained on the standard library with examples of six built-in tasks mixed in
(`minisparse.tasks.with_task_examples`), so that a model this small, trained in minutes, does the tasks that lessons
4, 8 and 10 prune it for.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

from .checkpoint import CheckpointError, load, read_configs
from .config import ModelConfig, TrainConfig
from .data import Corpus, load_corpus
from .rundir import METRICS_FILE, MODEL_FILE
from .tasks import TASK_EXAMPLES_SEED, with_task_examples
from .train import train


def cache_dir() -> Path:
    """Where trained models are cached: $MINISPARSE_CACHE, else ~/.cache/minisparse."""
    return Path(os.environ.get("MINISPARSE_CACHE") or Path.home() / ".cache" / "minisparse")


def model_key(model_cfg: ModelConfig, train_cfg: TrainConfig, fingerprint: str) -> str:
    """A short hash of what decides a trained model's weights: the configs' fields that differ from their defaults
    (so that a field added later, whose default keeps the old behaviour, does not orphan every cached model), and the
    corpus fingerprint."""
    def changed(cfg) -> dict:
        defaults = type(cfg)()
        return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                if getattr(cfg, f.name) != getattr(defaults, f.name)}

    blob = json.dumps({"config": changed(model_cfg), "train_config": changed(train_cfg), "corpus": fingerprint},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _made_by(path: Path) -> dict | None:
    """The metadata of a checkpoint that says how it was made, or None if the file is not a readable checkpoint."""
    try:
        config, train_config, meta = read_configs(path)
    except CheckpointError:   # not a match: a half-copied file, another program's file
        return None
    return {"config": config.to_dict(), "train_config": train_config.to_dict() if train_config else None,
            "corpus": meta.get("corpus_fingerprint"), "step": int(meta.get("step", 0))}


def find_run(model_cfg: ModelConfig, train_cfg: TrainConfig, fingerprint: str, search=()) -> Path | None:
    """A finished run directory under any of the `search` folders whose checkpoint was made with exactly these configs,
    on this corpus, to its last step; None if there is none."""
    want = {"config": model_cfg.to_dict(), "train_config": train_cfg.to_dict(), "corpus": fingerprint,
            "step": train_cfg.steps}
    for folder in search:
        for path in sorted(Path(folder).glob(f"**/{MODEL_FILE}")):
            if _made_by(path) == want:
                return path.parent
    return None


def default_search() -> list[Path]:
    """The folders searched for finished runs: $MINISPARSE_RUNS (os.pathsep-separated), else `runs/reproduce` from the
    repository root or from `lessons/`; only those that exist."""
    env = os.environ.get("MINISPARSE_RUNS")
    folders = env.split(os.pathsep) if env else ["runs/reproduce", "../runs/reproduce"]
    return [Path(f) for f in folders if f and Path(f).is_dir()]


def trained_run(model_cfg: ModelConfig, train_cfg: TrainConfig, *, corpus: Corpus | None = None, search=None,
                backend: str = "numpy", progress: bool = True) -> Path:
    """The run directory of a model trained with these configs: found under `search` (default: `default_search()`),
    found in the cache, or trained into the cache now (resuming a run that was interrupted)."""
    corpus = corpus if corpus is not None else load_corpus()
    found = find_run(model_cfg, train_cfg, corpus.fingerprint, default_search() if search is None else search)
    if found is not None:
        return found
    run = cache_dir() / "models" / model_key(model_cfg, train_cfg, corpus.fingerprint)
    made = _made_by(run / MODEL_FILE) if (run / MODEL_FILE).exists() else None
    if made is None or made["step"] < train_cfg.steps:
        train(model_cfg, train_cfg, run, backend=backend, resume=True, corpus=corpus, progress=progress)
    return run


def trained(model_cfg: ModelConfig, train_cfg: TrainConfig, *, backend: str = "numpy", **kwargs):
    """A model trained with these configs (a `backend` GPT), trained now only if no finished run exists yet.
    kwargs go to `trained_run` (corpus, search, progress)."""
    return load(trained_run(model_cfg, train_cfg, **kwargs) / MODEL_FILE, backend=backend)


def metrics(run: Path) -> list[dict]:
    """The logged steps of a run ({"step", "loss", and "val_loss" where validated}), one per step, in order; where a
    resumed run logged a step twice the later record wins."""
    by_step: dict[int, dict] = {}
    with open(Path(run) / METRICS_FILE) as f:
        for line in f:
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


# ----------------------------------------------------------------------------------------------------------------------
# The lessons' models

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
    from .reproduce import Run

    run = Run(DENSITIES[name], 0).name
    for folder in default_search() if search is None else search:
        made = _made_by(Path(folder) / "models" / run / MODEL_FILE)
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
    made = _made_by(Path(run) / MODEL_FILE)
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
