"""Where a NumPy training step spends its time: forward and backward per op kind, the optimizer and the projection.

    python benchmarks/profile_step.py [--steps 10]

Every op the model calls (the functions `minisparse.numpy.model` imports) and the projection are wrapped with a timer;
the step runs `--steps` times on the reference config of bench_step.py, dense and sparse, and each op kind's total is
shown as ms per step and as % of the (wrapped) step. "other" is the step minus everything attributed: glue in
model.py (reshapes, concatenations, the gradient dict), the loss's Python, the optimizer's loop overhead.
Timers add a few µs per call (~300 calls a step), well under 1% of a step.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from bench_step import BATCH, REFERENCE, matmul_peak

import minisparse.numpy.model as model_module
import minisparse.numpy.trainer as trainer_module
import minisparse.optim as optim_module
from minisparse.config import ModelConfig, TrainConfig
from minisparse.train import make_trainer

# op kind of each function, by a piece of its name (first match wins)
KINDS = [("linear", "matmuls (linear layers)"), ("qk", "attention: QKᵀ and its backward"),
         ("pv", "attention: PV and its backward"), ("softmax", "attention: causal softmax"),
         ("attention", "attention (matmuls + softmax)"), ("abstopk", "AbsTopK"), ("gelu", "GELU"),
         ("rmsnorm", "RMSNorm"), ("cross_entropy", "cross-entropy"), ("embedding", "embedding"),
         ("gate", "gate"), ("project_topk", "projection (top-k)"), ("optimizer_step", "optimizer (Adam)")]


def kind_of(name: str) -> str:
    return next(kind for piece, kind in KINDS if piece in name)


class Profile:
    """Wraps functions of a module namespace with timers; nested wrapped calls are subtracted from their caller."""

    def __init__(self):
        self.total = defaultdict(float)  # (kind, "forward" | "backward" | "") -> seconds, exclusive of nested timers
        self.stack: list[float] = []     # time spent in nested timed calls, per open frame

    def wrap(self, module, name: str) -> None:
        fn = getattr(module, name)
        phase = "backward" if name.endswith("_backward") else "forward" if name.endswith("_forward") else ""
        key = (kind_of(name), phase)

        def timed(*args, **kwargs):
            self.stack.append(0.0)
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = clock() - t
                nested = self.stack.pop()
                self.total[key] += dt - nested
                if self.stack:
                    self.stack[-1] += dt
        setattr(module, name, timed)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def profile(cfg: ModelConfig, tcfg: TrainConfig, steps: int) -> tuple[dict, float, float]:
    """({(kind, phase): ms per step}, ms per step, minor page faults per step) over `steps` steady-state steps."""
    import resource

    prof = Profile()
    originals = {}
    for module in (model_module, optim_module, trainer_module):
        for name in dir(module):
            fn = getattr(module, name)
            if callable(fn) and name.endswith(("_forward", "_backward", "project_topk", "optimizer_step")):
                originals[(module, name)] = fn
                prof.wrap(module, name)
    try:
        trainer = make_trainer("numpy", cfg, tcfg)
        rng = np.random.default_rng(0)
        x = rng.integers(0, cfg.vocab_size, (BATCH, cfg.n_ctx))
        y = rng.integers(0, cfg.vocab_size, (BATCH, cfg.n_ctx))
        for i in range(3):                      # warm-up: caches, allocator, BLAS threads
            trainer.step(x, y, 600 + i)
        prof.total.clear()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = clock()
        for i in range(steps):
            trainer.step(x, y, 603 + i)
        wall = (clock() - t) / steps
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    return {key: s / steps * 1e3 for key, s in prof.total.items()}, wall * 1e3, faults


def table(results: dict[str, tuple[dict, float, float]]) -> str:
    runs = list(results)
    rows = sorted({key for ms, _, _ in results.values() for key in ms},
                  key=lambda k: ([kind for _, kind in KINDS].index(k[0]), k[1] != "forward"))
    head = "| op | " + " | ".join(f"{run} ms | {run} %" for run in runs) + " |"
    lines = [head, "|---" * (1 + 2 * len(runs)) + "|"]
    for key in rows:
        cells = []
        for run in runs:
            ms, wall, _ = results[run]
            v = ms.get(key, 0.0)
            cells.append(f"{v:.1f} | {v / wall:.1%}")
        label = f"{key[0]}, {key[1]}" if key[1] else key[0]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    other = [results[r][1] - sum(results[r][0].values()) for r in runs]
    lines.append("| other (glue, loss bookkeeping, loop) | "
                 + " | ".join(f"{o:.1f} | {o / results[r][1]:.1%}" for o, r in zip(other, runs)) + " |")
    lines.append("| **step** | " + " | ".join(f"**{results[r][1]:.1f}** | 100%" for r in runs) + " |")
    lines.append("| minor page faults per step | " + " | ".join(f"{results[r][2]:,.0f} | " for r in runs) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (steadier on a busy machine; with one BLAS thread)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    print(f"float32 matmul peak (1024x1024): {matmul_peak():.1f} GFLOP/s")
    results = {}
    for run, (afrac, density) in {"dense": (1.0, 1.0), "sparse": (0.25, 1 / 16)}.items():
        cfg = ModelConfig(**{**REFERENCE.to_dict(), "afrac": afrac})
        results[run] = profile(cfg, TrainConfig(steps=1000, batch_size=BATCH, weight_density=density), args.steps)
    print(table(results))
    print(f"float32 matmul peak (1024x1024), again: {matmul_peak():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
