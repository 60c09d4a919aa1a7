"""Training-step throughput against the machine's measured float32 matmul peak, for each backend, in one run.

    python benchmarks/bench_step.py [--steps 10] [--backends numpy,mlx]

Reference config: vocab 256, d_model 128, 4 layers, 8 heads of 16, d_mlp 512, n_ctx 128, batch 16; dense (afrac 1,
density 1) and sparse (afrac 0.25, density 1/16, timed after the anneal so the projection works at its target).
A step = forward + backward + optimizer + top-k projection. FLOPs per step = 6·N·tokens + attention (12·L·H·Dh·T per
token, nanoGPT's count), N = the weights that take part in matmuls (every matrix but the embedding lookups).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from minisparse.backend import matmul_gflops
from minisparse.config import ModelConfig, TrainConfig
from minisparse.optim import densities_at
from minisparse.params import param_shapes
from minisparse.sparsity import project_topk
from minisparse.train import make_trainer

REFERENCE = ModelConfig(vocab_size=256, n_ctx=128, d_model=128, n_layer=4, n_head=8, d_head=16, d_mlp=512)
BATCH = 16


def flops_per_step(cfg: ModelConfig, tokens: int) -> float:
    n_matmul = sum(int(np.prod(s)) for name, s in param_shapes(cfg).items()
                   if name.endswith(".weight") and len(s) == 2 and not name.startswith(("wte", "wpe", "bigram")))
    return 6 * n_matmul * tokens + 12 * cfg.n_layer * cfg.n_head * cfg.d_head * cfg.n_ctx * tokens


def time_steps(backend: str, cfg: ModelConfig, tcfg: TrainConfig, first_step: int, steps: int) -> float:
    """Median seconds per full training step."""
    trainer = make_trainer(backend, cfg, tcfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.vocab_size, (BATCH, cfg.n_ctx))
    y = rng.integers(0, cfg.vocab_size, (BATCH, cfg.n_ctx))
    trainer.step(x, y, first_step)  # warm-up (and MLX compilation)
    times = []
    for i in range(steps):
        t = time.perf_counter()
        trainer.step(x, y, first_step + 1 + i)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def numpy_projection_seconds(cfg: ModelConfig, tcfg: TrainConfig, step: int, repeats: int = 5) -> float:
    """Median seconds of the NumPy top-k projection of every sparsified matrix (random dense weights)."""
    trainer = make_trainer("numpy", cfg, tcfg)
    params = trainer.numpy_params()
    densities = densities_at(step, params, tcfg)
    times = []
    for _ in range(repeats):
        fresh = {n: p + np.float32(1e-3) for n, p in params.items()}  # undo last projection's zeros
        t = time.perf_counter()
        project_topk(fresh, densities, tcfg.min_per_neuron)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (median reported)")
    parser.add_argument("--backends", default="numpy,mlx")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    tokens = BATCH * REFERENCE.n_ctx
    flops = flops_per_step(REFERENCE, tokens)
    peaks = {b: matmul_gflops(b, n=1024, seconds=1.0) for b in {"numpy", *backends}}
    mlx_peak = f"; mlx float32 matmul peak {peaks['mlx']:.1f} GFLOP/s" if "mlx" in peaks else ""
    machine = f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores"
    print(f"machine: {machine}; numpy {np.__version__}{mlx_peak}")
    print(f"float32 matmul peak (1024x1024): numpy {peaks['numpy']:.1f} GFLOP/s")
    print(f"reference config, {tokens} tokens/step, {flops / 1e9:.2f} GFLOP/step\n")
    print("| backend | run | ms/step | tokens/s | GFLOP/s | % of numpy peak | % of own peak | projection share |")
    print("|---|---|---|---|---|---|---|---|")
    runs = {"dense": (1.0, 1.0), "sparse": (0.25, 1 / 16)}
    for backend in backends:
        for run, (afrac, density) in runs.items():
            cfg = ModelConfig(**{**REFERENCE.to_dict(), "afrac": afrac})
            tcfg = TrainConfig(steps=1000, batch_size=BATCH, weight_density=density)
            first = 600  # past the anneal (50%): the sparse run projects to its target density
            sec = time_steps(backend, cfg, tcfg, first, args.steps)
            share = (f"{numpy_projection_seconds(cfg, tcfg, first) / sec:.1%}" if backend == "numpy" else "—")
            gflops = flops / sec / 1e9
            print(f"| {backend} | {run} (afrac {afrac:g}, density {density:g}) | {sec * 1e3:.0f} | "
                  f"{tokens / sec:,.0f} | {gflops:.1f} | {gflops / peaks['numpy']:.0%} | "
                  f"{gflops / peaks[backend]:.0%} | {share} |")


if __name__ == "__main__":
    main()
