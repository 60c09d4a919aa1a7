"""Data-parallel training with `mx.distributed`: every process holds the whole model, takes its own shard of each
batch, and the gradients are averaged across processes before the optimizer step (inside `MLXTrainer`).

`minisparse train --backend mlx` does this by itself when started by MLX's launcher, e.g. as two processes on this
machine over TCP (the "ring" backend):

    mlx.launch -n 2 --backend ring -- python -m minisparse train --backend mlx --preset tiny --out runs/dp

Averaging the gradients of equal shards gives exactly the gradient of the whole batch (the loss is a mean), so the
run follows the single-process run on the whole batch up to float rounding. Only rank 0 should write files
(checkpoints, logs): see `is_main`.
"""

from __future__ import annotations

import mlx.core as mx


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
