"""Data-parallel training with `mx.distributed`: every process holds the whole model, takes its own shard of each
batch, and the gradients are averaged across processes before the optimizer step (inside `MLXTrainer`).

Start several processes with MLX's launcher, e.g. two on this machine over TCP (the "ring" backend):

    mlx.launch -n 2 --backend ring -- python -m minisparse.mlx.distributed --steps 20 --batch 16 --out losses.json

Averaging the gradients of equal shards gives exactly the gradient of the whole batch (the loss is a mean), so the
run follows the single-process run on the whole batch up to float rounding. Only rank 0 should write files
(checkpoints, logs): see `is_main`.
"""

from __future__ import annotations

import argparse
import json

import mlx.core as mx
import numpy as np


def init(backend: str = "any") -> mx.distributed.Group:
    """The group of all processes started by `mlx.launch` (a group of size 1 when run on its own)."""
    return mx.distributed.init(backend=backend)


def is_main(group: mx.distributed.Group | None = None) -> bool:
    """Whether this process is the one that writes checkpoints and logs (rank 0)."""
    return group is None or group.rank() == 0


def shard(x, y, group: mx.distributed.Group | None):
    """This process's rows of a global batch x, y [B, T]: B must divide evenly, so every shard has the same weight
    in the averaged gradient."""
    if group is None or group.size() == 1:
        return x, y
    n, r = group.size(), group.rank()
    if x.shape[0] % n:
        raise ValueError(f"a global batch of {x.shape[0]} sequences does not split evenly over {n} processes")
    b = x.shape[0] // n
    return x[r * b:(r + 1) * b], y[r * b:(r + 1) * b]


def synthetic_batches(vocab_size: int, n_ctx: int, batch: int, seed: int = 0):
    """An endless stream of global batches (x, y) [batch, n_ctx] of a learnable synthetic language: each sequence
    counts up from a random start by a random stride, modulo the vocabulary. Every process draws the same stream."""
    rng = np.random.default_rng(seed)
    while True:
        start = rng.integers(0, vocab_size, (batch, 1))
        stride = rng.integers(1, 4, (batch, 1))
        seq = (start + stride * np.arange(n_ctx + 1)) % vocab_size
        yield seq[:, :-1], seq[:, 1:]


def main(argv=None) -> None:
    """Train the `tiny` preset data-parallel for a few steps; rank 0 writes the losses as JSON (used by the tests)."""
    from ..config import TrainConfig, preset
    from .model import GPT
    from .optim import MLXTrainer

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16, help="global batch, split over the processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    group = init()
    model_cfg, train_cfg = preset(args.preset)
    train_cfg = TrainConfig(**{**train_cfg.to_dict(), "steps": args.steps, "batch_size": args.batch})
    trainer = MLXTrainer(GPT(model_cfg, seed=args.seed), train_cfg, group=group)
    batches = synthetic_batches(model_cfg.vocab_size, model_cfg.n_ctx, args.batch, args.seed)
    losses = [trainer.step(*shard(*next(batches), group), step) for step in range(args.steps)]
    if is_main(group):
        with open(args.out, "w") as f:
            json.dump({"world_size": group.size(), "losses": losses}, f)


if __name__ == "__main__":
    main()
