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

The lessons' own models (their recipes, their corpus) are `minisparse.lessons.models`, built on this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from ..checkpoint import CheckpointError, load, read_configs
from ..config import ModelConfig, TrainConfig
from ..data import Corpus, load_corpus
from ..rundir import METRICS_FILE, MODEL_FILE, cache_dir
from ..train import train


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
            "corpus": meta.get("corpus_fingerprint"), "step": int(meta["step"]),
            "lr_changes": meta.get("lr_changes")}


def find_run(model_cfg: ModelConfig, train_cfg: TrainConfig, fingerprint: str, search=()) -> Path | None:
    """A finished run directory under any of the `search` folders whose checkpoint was made with exactly these configs,
    on this corpus, to its last step; None if there is none."""
    want = {"config": model_cfg.to_dict(), "train_config": train_cfg.to_dict(), "corpus": fingerprint,
            "step": train_cfg.steps, "lr_changes": None}     # a run resumed with another LR is not this recipe
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
