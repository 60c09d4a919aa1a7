"""The compiled MLX training step costs one round trip to the device and computes in float32.

On Apple silicon every evaluation the host waits for is a GPU round trip, and Metal has no float64. The Apple GPU
cannot be timed here, so the step is inspected instead:
- exactly one `mx.eval` runs in `MLXTrainer.step`, and it evaluates every output of the compiled step;
- after it, the host builds no new MLX operation (reading such an array would evaluate it: a second round trip);
- every array crossing the host/device boundary (batch, schedule, outputs, model and optimizer state) is float32,
  int32 or bool. (MLX exposes no walk of a graph's internal dtypes from Python; the boundary is what can be checked.)
"""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

from mlx.utils import tree_flatten  # noqa: E402

from minisparse.config import preset  # noqa: E402
from minisparse.train import make_trainer  # noqa: E402

ALLOWED = {mx.float32, mx.int32, mx.bool_}
READS = {"item", "tolist", "shape", "dtype", "size", "ndim", "itemsize", "nbytes"}   # no new computation
OPERATORS = ["__getitem__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
             "__rtruediv__", "__matmul__", "__neg__", "__invert__", "__and__", "__or__", "__eq__", "__ne__", "__lt__",
             "__le__", "__gt__", "__ge__", "__pow__"]


def test_a_step_evaluates_once_and_then_only_reads(monkeypatch):
    cfg, tcfg = preset("tiny")
    trainer = make_trainer("mlx", cfg, tcfg)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, cfg.vocab_size, (4, cfg.n_ctx)), rng.integers(0, cfg.vocab_size, (4, cfg.n_ctx))
    trainer.step(x, y, 0)                                     # compiles

    outputs, evaluated, after_eval = [], [], []
    compiled, real_eval = trainer._step, mx.eval
    monkeypatch.setattr(trainer, "_step", lambda *a: outputs.extend(compiled(*a)) or tuple(outputs))
    monkeypatch.setattr(mx, "eval", lambda *arrays: (evaluated.append(arrays), real_eval(*arrays))[1])
    for name in [n for n in dir(mx.array) if not n.startswith("_") and n not in READS] + OPERATORS:
        op = getattr(mx.array, name)
        monkeypatch.setattr(mx.array, name, lambda *a, _op=op, _name=name, **k: (
            after_eval.append(_name) if evaluated else None, _op(*a, **k))[1])

    loss = trainer.step(x, y, 1)
    assert np.isfinite(loss)
    assert len(evaluated) == 1, f"{len(evaluated)} mx.eval calls in one step"
    assert outputs and all(any(out is a for a in evaluated[0]) for out in outputs), "an output was not evaluated"
    assert after_eval == [], f"MLX operations built after the step's eval (each a device round trip): {after_eval}"

    boundary = dict(tree_flatten([trainer.model.state, trainer.optimizer.state]))
    boundary.update({f"schedule {k}": v for k, v in trainer.optimizer.schedule(2).items()})
    boundary.update({f"output {i}": a for i, a in enumerate(outputs)})
    boundary.update(zip(("x", "y"), trainer._check_batch(x, y)))
    bad = {k: v.dtype for k, v in boundary.items() if v.dtype not in ALLOWED}
    assert not bad, f"arrays of a type Metal lacks or the step should not need: {bad}"
