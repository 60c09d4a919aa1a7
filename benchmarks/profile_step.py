"""Where a NumPy training step spends its time: forward and backward per op kind, the optimizer and the projection.

    python benchmarks/profile_step.py [--steps 10] [--clock cpu] [--plain]

Every op the model calls (the functions `minisparse.numpy.model` imports), the projection and the optimizer are
wrapped with a timer; the step runs `--steps` times on the reference config of bench_step.py, dense and sparse, the
variants taking turns step by step, and each op kind's time is shown as ms per step and as % of the step. "other" is
the step minus everything attributed: glue in model.py (reshapes, concatenations, the gradient dict), the loss's
Python. Timers add a few µs per call (~300 calls a step), well under 1% of a step.

The step runs on one thread (the trainer's `threads=1`: a step shared between threads runs the same ops on each
share). `--plain` adds a dense step that runs layers.py's plain attention and GELU instead of fast.py's: what the fast
paths buy. `--clock cpu` measures this process's CPU time instead of wall time: steadier on a shared machine (use it
with OPENBLAS_NUM_THREADS=1, since CPU time adds up the time of every thread).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict

from bench_step import BATCH, FIRST_STEP, RUNS, batch, matmul_peak, run_configs

import minisparse.numpy.model as model_module
import minisparse.numpy.trainer as trainer_module
import minisparse.optim as optim_module
from minisparse.numpy import GPT, NumpyTrainer, fast, layers

# op kind of each function, by a piece of its name (first match wins)
KINDS = [("linear", "matmuls (linear layers)"), ("attention", "attention (matmuls + softmax)"), ("abstopk", "AbsTopK"),
         ("gelu", "GELU"), ("rmsnorm", "RMSNorm"), ("cross_entropy", "cross-entropy"), ("embedding", "embedding"),
         ("gate", "gate"), ("project_topk", "projection (top-k)"), ("optimizer_step", "optimizer (Adam)")]
FAST_OPS = [name for name in vars(fast) if name.endswith(("_forward", "_backward"))]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class Profiler:
    """Timers around functions; each call's time goes to the current variant, minus the time of nested timed calls."""

    def __init__(self, clock):
        self.clock = clock
        self.variant = None
        self.total = defaultdict(float)  # (variant, kind, "forward" | "backward" | "") -> seconds
        self.nested: list[float] = []    # per open timed call: time spent in timed calls inside it

    def timed(self, name: str, fn):
        phase = "backward" if name.endswith("_backward") else "forward" if name.endswith("_forward") else ""
        kind = next(kind for piece, kind in KINDS if piece in name)

        def wrapper(*args, **kwargs):
            self.nested.append(0.0)
            t = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = self.clock() - t
                self.total[(self.variant, kind, phase)] += dt - self.nested.pop()
                if self.nested:
                    self.nested[-1] += dt
        return wrapper


def profile(steps: int, clock, plain: bool) -> dict[str, tuple[dict, float, float]]:
    """{variant: ({(kind, phase): ms per step}, ms per step, minor page faults per step)}."""
    prof = Profiler(clock)
    patched = {}
    for module in (model_module, optim_module, trainer_module):
        for name in dir(module):
            if name.endswith(("_forward", "_backward", "project_topk", "optimizer_step")):
                patched[(module, name)] = getattr(module, name)
                setattr(module, name, prof.timed(name, getattr(module, name)))
    plain_ops = {name: prof.timed(name, getattr(layers, name)) for name in FAST_OPS}
    variants = {run: (run, False) for run in RUNS}
    if plain:
        variants["dense, plain attention and GELU"] = ("dense", True)
    try:
        steppers = {}
        for variant, (run, _) in variants.items():
            cfg, tcfg = run_configs(run)
            trainer, (x, y) = NumpyTrainer(GPT(cfg, seed=tcfg.seed), tcfg, threads=1), batch(cfg)
            steppers[variant] = (lambda i, t=trainer, x=x, y=y: t.step(x, y, i))
        times, faults = defaultdict(float), defaultdict(int)
        for i in range(-3, steps):                        # 3 warm-up steps: caches, allocator, BLAS threads
            for variant, (_, use_plain) in variants.items():
                fast_ops = {name: getattr(model_module, name) for name in FAST_OPS}
                if use_plain:
                    for name in FAST_OPS:
                        setattr(model_module, name, plain_ops[name])
                prof.variant = variant if i >= 0 else None
                f, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, clock()
                steppers[variant](FIRST_STEP + 3 + i)
                if i >= 0:
                    times[variant] += clock() - t
                    faults[variant] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f
                for name, fn in fast_ops.items():
                    setattr(model_module, name, fn)
    finally:
        for (module, name), fn in patched.items():
            setattr(module, name, fn)
    out = {}
    for variant in variants:
        ms = {(kind, phase): s / steps * 1e3 for (v, kind, phase), s in prof.total.items() if v == variant}
        out[variant] = (ms, times[variant] / steps * 1e3, faults[variant] / steps)
    return out


def table(results: dict[str, tuple[dict, float, float]]) -> str:
    order = [kind for _, kind in KINDS]
    rows = sorted({key for ms, _, _ in results.values() for key in ms},
                  key=lambda k: (order.index(k[0]), k[1] != "forward"))
    lines = ["| op | " + " | ".join(f"{v} ms | %" for v in results) + " |", "|---" * (1 + 2 * len(results)) + "|"]
    for key in rows:
        cells = [f"{ms.get(key, 0.0):.1f} | {ms.get(key, 0.0) / wall:.1%}" for ms, wall, _ in results.values()]
        lines.append(f"| {key[0]}{', ' + key[1] if key[1] else ''} | " + " | ".join(cells) + " |")
    other = [(wall - sum(ms.values()), wall) for ms, wall, _ in results.values()]
    lines.append("| other (glue in model.py, loss bookkeeping) | "
                 + " | ".join(f"{o:.1f} | {o / wall:.1%}" for o, wall in other) + " |")
    lines.append("| **step** | " + " | ".join(f"**{wall:.1f}** | 100%" for _, wall, _ in results.values()) + " |")
    lines.append("| minor page faults per step | " + " | ".join(f"{f:,.0f} | " for _, _, f in results.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall")
    parser.add_argument("--plain", action="store_true", help="also time a dense step on layers.py's plain ops")
    args = parser.parse_args()
    print(f"float32 matmul peak (1024x1024): {matmul_peak():.1f} GFLOP/s; batch {BATCH}, {args.clock} time")
    print(table(profile(args.steps, CLOCKS[args.clock], args.plain)))
    print(f"float32 matmul peak (1024x1024), again: {matmul_peak():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
