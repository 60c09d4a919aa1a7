"""The training loop: batches → a backend's step → periodic validation → atomic checkpoints, resumable.

A run directory (`minisparse.rundir`) holds the latest checkpoint, the optimizer state that goes with it, and
`metrics.jsonl` (one line per logged step); one process at a time writes into it. Batches are a pure function of
(seed, step), so a run stopped at step N, at any instant, and resumed (on as many threads: numpy/trainer.py) is
bit-identical to one that never stopped. A non-finite loss or gradient stops the run with the last good checkpoint kept
untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import load_optimizer, read_checkpoint, save_optimizer, write_checkpoint
from .config import ModelConfig, TrainConfig
from .data import eval_batches, get_batch, load_corpus
from .rundir import (
    METRICS_FILE,
    MODEL_FILE,
    kept_checkpoint_file,
    locked,
    optimizer_file,
    optimizer_path,
    remove_optimizer_files_except,
    remove_stale_temps,
    write_text_atomic,
)
from .tasks import BUILTIN_TASKS, TASK_EXAMPLES_SEED, with_task_examples

# What may change when a run resumes: the learning rate (e.g. lower, after a divergence). Everything else, the step
# count included (the anneal and the LR schedule are fractions of it), must match the checkpoint's.
CHANGEABLE_ON_RESUME = ("lr",)


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or inf; the last good checkpoint is kept."""


def make_trainer(backend: str, model_cfg: ModelConfig, train_cfg: TrainConfig, params=None, opt_state=None,
                 group=None):
    """A trainer for `backend` ("numpy" or "mlx"), from given params/optimizer state or freshly initialised.
    `group`: an `mx.distributed` group to train data-parallel over (MLX only)."""
    if backend == "numpy":
        from .numpy import GPT, NumpyTrainer
        return NumpyTrainer(GPT(model_cfg, seed=train_cfg.seed, params=params), train_cfg, opt_state)
    if backend == "mlx":
        from .mlx import GPT, MLXTrainer
        model = GPT(model_cfg, seed=train_cfg.seed)
        if params is not None:
            model.load_params(params)
        return MLXTrainer(model, train_cfg, opt_state, group=group)
    raise ValueError(f"unknown backend {backend!r}; choose 'numpy' or 'mlx'")


@dataclass
class TrainResult:
    step: int                       # optimizer steps completed
    train_loss: float
    val_loss: float | None          # nats per byte (every logged step is in the run's metrics.jsonl)

    @property
    def val_bits_per_byte(self) -> float | None:
        return None if self.val_loss is None else self.val_loss / math.log(2)


def _validate(trainer, data: np.ndarray, model_cfg: ModelConfig, train_cfg: TrainConfig) -> float:
    batches = eval_batches(data, train_cfg.batch_size, model_cfg.n_ctx, train_cfg.eval_batches)
    return float(np.mean([trainer.eval_loss(x, y) for x, y in batches]))


def _checkpoint(trainer, out: Path, model_cfg, train_cfg, step: int, meta: dict, keep: bool) -> None:
    # The optimizer file of this step, then the model file (whose step a resume trusts), then the older optimizer
    # files: killed anywhere, the model file's step has its optimizer file beside it. A kept copy is written first,
    # so a run killed before the model file re-writes it on resume rather than missing it.
    params = trainer.numpy_params()
    if keep:
        write_checkpoint(model_cfg, params, out / kept_checkpoint_file(step), step=step, train_config=train_cfg,
                         metadata=meta)
    save_optimizer(trainer.numpy_opt_state(), out / optimizer_file(step), step=step)
    write_checkpoint(model_cfg, params, out / MODEL_FILE, step=step, train_config=train_cfg, metadata=meta)
    remove_optimizer_files_except(out / optimizer_file(step))


def _config_differences(saved: dict, wanted: dict, allowed=()) -> list[str]:
    """'field: saved -> wanted' for every field outside `allowed` that differs between two config dicts."""
    return [f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in sorted(set(saved) | set(wanted))
            if saved.get(k) != wanted.get(k) and k not in allowed]


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, out_dir, *, backend: str = "numpy", resume: bool = False,
          until: int | None = None, corpus=None, progress: bool = True, keep_checkpoints: bool = False) -> TrainResult:
    """Train from scratch (or `resume` from `out_dir`) up to step `until` (default: all `train_cfg.steps`).

    corpus: the text to train on, default the standard library (`minisparse.data.load_corpus`); with
    `train_cfg.task_examples` > 0, that many examples of every built-in task are mixed into its training text.

    keep_checkpoints: also keep every periodic checkpoint as `model-<step>.safetensors` (weights only), e.g. to compare
    a sparse model with the dense model at the point of training where their losses match.
    """
    if str(out_dir) == "":
        raise ValueError("the output directory is an empty string; name a directory for the run's files")
    out = Path(out_dir)
    # Under `mlx.launch` every process trains on its own shard of each batch; only rank 0 writes anything.
    group, shard, main = None, (lambda x, y, group: (x, y)), True
    if backend == "mlx":
        from .mlx.distributed import init, is_main, shard
        group = init()
        main = is_main(group)
    with locked(out) if main else contextlib.nullcontext():
        if main:
            remove_stale_temps(out)
        return _train_locked(model_cfg, train_cfg, out, backend, resume, until, corpus, progress, keep_checkpoints,
                             group, shard, main)


def training_text(train_cfg: TrainConfig, corpus=None):
    """The text a run of `train_cfg` trains on: `corpus` (default: the standard library) with its `task_examples`
    examples of every built-in task mixed in (`minisparse.tasks.with_task_examples`)."""
    corpus = corpus if corpus is not None else load_corpus()
    if train_cfg.task_examples:
        corpus = with_task_examples(corpus, BUILTIN_TASKS, train_cfg.task_examples, TASK_EXAMPLES_SEED)
    return corpus


def _train_locked(model_cfg, train_cfg, out, backend, resume, until, corpus, progress, keep_checkpoints, group, shard,
                  main):
    corpus = training_text(train_cfg, corpus)
    until = train_cfg.steps if until is None else min(until, train_cfg.steps)
    start, params, opt_state, lr_changes = 0, None, None, []
    if resume and (out / MODEL_FILE).exists():
        saved_cfg, params, meta = read_checkpoint(out / MODEL_FILE)
        try:
            saved_train = json.loads(meta.get("train_config") or "{}")
        except ValueError:
            saved_train = {}
        differ = (_config_differences(saved_cfg.to_dict(), model_cfg.to_dict())
                  + _config_differences(saved_train, train_cfg.to_dict(), CHANGEABLE_ON_RESUME))
        if differ:
            raise ValueError(f"cannot resume {out}: these settings differ from its checkpoint's: {'; '.join(differ)}"
                             f". Resume with the checkpoint's settings (only {', '.join(CHANGEABLE_ON_RESUME)} may "
                             "change), or train into a new output directory")
        if meta.get("corpus_fingerprint") != corpus.fingerprint:
            raise ValueError(f"cannot resume {out}: the training corpus changed since it was written (fingerprint "
                             f"{meta.get('corpus_fingerprint')} vs {corpus.fingerprint}: a different Python version?)")
        start = int(meta["step"])
        # the record of every learning-rate change on resume: the configs say the LR now, this what it was before
        lr_changes = json.loads(meta.get("lr_changes", "[]"))
        if saved_train.get("lr", train_cfg.lr) != train_cfg.lr:
            lr_changes.append([start, train_cfg.lr])
        opt_path = optimizer_path(out, start)
        opt_state = load_optimizer(opt_path, model_cfg, step=start)
        if main:
            remove_optimizer_files_except(opt_path)  # a kill after the model file left the older one
    elif (out / MODEL_FILE).exists():
        raise FileExistsError(f"{out / MODEL_FILE} already exists: pass --resume to continue it, or choose a new "
                              "output directory")
    trainer = make_trainer(backend, model_cfg, train_cfg, params, opt_state, group=group)
    out.mkdir(parents=True, exist_ok=True)
    if main:
        _truncate_log(out / METRICS_FILE, start)
    loss, val = float("nan"), None
    tokens_per_step = train_cfg.batch_size * model_cfg.n_ctx
    bar = _progress(range(start, until), initial=start, total=until, disable=not (progress and main))
    tick, speed = time.perf_counter(), None  # tokens/s, smoothed
    with open(out / METRICS_FILE if main else os.devnull, "a") as log:
        step = start
        try:
            for step in bar:
                x, y = get_batch(corpus.train, train_cfg.batch_size, model_cfg.n_ctx, train_cfg.seed, step)
                try:
                    loss = trainer.step(*shard(x, y, group), step)
                except FloatingPointError as e:
                    raise TrainingDiverged(
                        f"training diverged at step {step} ({e}). Nothing was written after the last good checkpoint "
                        f"in {out}: resume from it with a lower learning rate (--resume --lr ...), or restart."
                    ) from None
                done = step + 1
                record = {"step": done, "loss": loss}
                if done % train_cfg.eval_every == 0 or done == until:
                    val = record["val_loss"] = _validate(trainer, corpus.val, model_cfg, train_cfg)
                # logged before the checkpoint that covers it: a kill in between redoes the step and re-logs it
                log.write(json.dumps(record) + "\n")
                log.flush()  # so a plot or `tail -f` can follow the run
                if main and (done % train_cfg.checkpoint_every == 0 or done == until):
                    meta = {"corpus_fingerprint": corpus.fingerprint,
                            **({"lr_changes": json.dumps(lr_changes)} if lr_changes else {})}
                    _checkpoint(trainer, out, model_cfg, train_cfg, done, meta, keep_checkpoints)
                now = time.perf_counter()
                rate, tick = tokens_per_step / (now - tick), now
                speed = rate if speed is None else 0.9 * speed + 0.1 * rate
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}",
                                density=f"{train_cfg.density_after(step):.3f}",
                                **({"val_bpb": f"{val / math.log(2):.3f}"} if val is not None else {}))
        except KeyboardInterrupt:
            # A step cut off halfway may have updated only some weights, so nothing is saved now; the last periodic
            # checkpoint is intact and `--resume` continues from it exactly.
            raise KeyboardInterrupt(f"interrupted during step {step}; resume from the checkpoint in {out} "
                                    "with --resume") from None
        finally:
            bar.close()
    if start == until:
        val = _validate(trainer, corpus.val, model_cfg, train_cfg)
    return TrainResult(step=until, train_loss=loss, val_loss=val)


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the records of steps ≤ `step`: a run resumed from its checkpoint at `step` redoes the steps after it
    (a run killed between checkpoints had logged them), and each step must be logged once. Rewritten atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line.decode())
        except (ValueError, KeyError, TypeError):   # a line cut off by a kill, or damaged: its step is redone
            pass
    write_text_atomic(path, "".join(kept))


def _progress(iterable, **kwargs):
    from tqdm.auto import tqdm
    return tqdm(iterable, unit="step", dynamic_ncols=True, **kwargs)
