"""Training-step throughput against the machine's measured float32 matmul peak, for each backend, in one run.

    python benchmarks/bench_step.py [--steps 10] [--backends numpy,mlx]   # NumPy and MLX
    python benchmarks/bench_step.py --backends mlx                          # on a Mac: MLX on the Apple GPU
    python benchmarks/bench_step.py --backends numpy --against torch        # NumPy against PyTorch eager and compiled
    python benchmarks/bench_step.py --backends numpy --prune runs/small-sparse/model.safetensors   # and prune time
    python benchmarks/bench_step.py --backends numpy --shares               # a step's share alone and side by side

Reference config: vocab 256, d_model 128, 4 layers, 8 heads of 16, d_mlp 512, n_ctx 128, batch 16; dense (afrac 1,
density 1) and sparse (afrac 0.25, density 1/16, timed after the anneal so the projection works at its target).
A step = forward + backward + optimizer + top-k projection. FLOPs per step = 6·N·tokens + attention (12·L·H·Dh·T per
token, nanoGPT's count), N = the weights that take part in matmuls (every matrix but the embedding lookups).

Every variant is timed interleaved with the others (one step of each in turn), so a machine that slows down halfway
slows all of them alike: the ratios are the numbers to compare across machines, the milliseconds are this run's.
NumPy's minor page faults per steady-state step (resource.getrusage) measure how much memory a step maps afresh.
`--against torch` needs `pip install -e ".[bench]"`; PyTorch gets as many threads as NumPy's step runs on.
`--prune CHECKPOINT` times one `prune` of single_double_quote on it, alone and with both controls (`minisparse prune`'s
default), as the CLI would run it: a fresh process state (no mean ablation cached) for each.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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
RUNS = {"dense": (1.0, 1.0), "sparse": (0.25, 1 / 16)}   # (afrac, weight density)
FIRST_STEP = 600  # past the anneal (50% of 1000 steps): the sparse run projects to its target density


def flops_per_step(cfg: ModelConfig, tokens: int) -> float:
    n_matmul = sum(int(np.prod(s)) for name, s in param_shapes(cfg).items()
                   if name.endswith(".weight") and len(s) == 2 and not name.startswith(("wte", "wpe", "bigram")))
    return 6 * n_matmul * tokens + 12 * cfg.n_layer * cfg.n_head * cfg.d_head * cfg.n_ctx * tokens


def matmul_peak() -> float:
    """The machine's float32 matmul peak in GFLOP/s (NumPy, 1024x1024, best over one second)."""
    return matmul_gflops("numpy", n=1024, seconds=1.0)


def blas_threads() -> int:
    """Threads NumPy's BLAS runs on here, as the BLAS itself reports them."""
    from threadpoolctl import threadpool_info

    return max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1)


def run_configs(run: str) -> tuple[ModelConfig, TrainConfig]:
    afrac, density = RUNS[run]
    return (ModelConfig(**{**REFERENCE.to_dict(), "afrac": afrac}),
            TrainConfig(steps=1000, batch_size=BATCH, weight_density=density))


def batch(cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, cfg.vocab_size, (BATCH, cfg.n_ctx)), rng.integers(0, cfg.vocab_size, (BATCH, cfg.n_ctx))


def interleaved(steppers: dict, steps: int, warmup: int = 2) -> tuple[dict[str, list[float]], dict[str, float]]:
    """{name: step(i)} -> ({name: seconds of each timed step}, {name: minor page faults per timed step}), the
    steppers taking turns step by step after `warmup` untimed steps each (caches, allocator, compilation)."""
    for i in range(warmup):
        for step in steppers.values():
            step(FIRST_STEP + i)
    times = {name: [] for name in steppers}
    faults = dict.fromkeys(steppers, 0)
    for i in range(steps):
        for name, step in steppers.items():
            f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = time.perf_counter()
            step(FIRST_STEP + warmup + i)
            times[name].append(time.perf_counter() - t)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f
    return times, {name: n / steps for name, n in faults.items()}


def stepper(trainer, x, y):
    """step(i): one training step of `trainer` on the batch (x, y), as step number i."""
    return lambda i: trainer.step(x, y, i)


def trainer_stepper(backend: str, run: str):
    cfg, tcfg = run_configs(run)
    return stepper(make_trainer(backend, cfg, tcfg), *batch(cfg))


def numpy_projection_seconds(run: str, repeats: int = 5) -> float:
    """Median seconds of the NumPy top-k projection of every sparsified matrix (random dense weights), on the
    trainer's threads."""
    cfg, tcfg = run_configs(run)
    trainer = make_trainer("numpy", cfg, tcfg)
    params = trainer.numpy_params()
    densities = densities_at(FIRST_STEP, params, tcfg)
    times = []
    for _ in range(repeats):
        fresh = {n: p + np.float32(1e-3) for n, p in params.items()}  # undo last projection's zeros
        t = time.perf_counter()
        project_topk(fresh, densities, tcfg.min_per_neuron, trainer.threads.each)   # as the step does it
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def throughput_table(backends: list[str], steps: int, peaks: dict[str, float]) -> None:
    tokens = BATCH * REFERENCE.n_ctx
    flops = flops_per_step(REFERENCE, tokens)
    print(f"reference config, {tokens} tokens/step, {flops / 1e9:.2f} GFLOP/step\n")
    print("| backend | run | ms/step (median) | tokens/s | GFLOP/s | % of numpy peak | % of own peak "
          "| projection share | page faults/step |")
    print("|---|---|---|---|---|---|---|---|---|")
    steppers = {(b, run): trainer_stepper(b, run) for b in backends for run in RUNS}
    times, faults = interleaved(steppers, steps)
    for (backend, run), ts in times.items():
        sec = float(np.median(ts))
        afrac, density = RUNS[run]
        share = f"{numpy_projection_seconds(run) / sec:.1%}" if backend == "numpy" else "—"
        gflops = flops / sec / 1e9
        print(f"| {backend} | {run} (afrac {afrac:g}, density {density:g}) | {sec * 1e3:.0f} | "
              f"{tokens / sec:,.0f} | {gflops:.1f} | {gflops / peaks['numpy']:.0%} | "
              f"{gflops / peaks[backend]:.0%} | {share} | {faults[(backend, run)]:,.0f} |")
    dense, sparse = (float(np.median(times[("numpy", r)])) for r in RUNS) if "numpy" in backends else (0, 0)
    if dense:
        print(f"\nnumpy sparse / dense step: {sparse / dense:.2f} "
              f"(per-step ratios, interleaved: {ratio_range(times[('numpy', 'sparse')], times[('numpy', 'dense')])})")


def ratio_range(a: list[float], b: list[float]) -> str:
    """Median and range of a_i / b_i over steps timed side by side."""
    r = np.asarray(a) / np.asarray(b)
    return f"median {np.median(r):.2f}, range {r.min():.2f}–{r.max():.2f}"


def against_torch(steps: int) -> None:
    try:
        import torch
    except ImportError:
        raise SystemExit('--against torch needs PyTorch: pip install -e ".[bench]"') from None
    import torch_twin

    from minisparse.numpy.threads import default_threads  # here: bench_versions.py runs this file on older trees

    threads = default_threads()
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} thread(s) for both (NumPy's step and PyTorch)\n")
    print("| run | numpy ms | torch eager ms | torch.compile ms | numpy / eager | numpy / compile |")
    print("|---|---|---|---|---|---|")
    for run in RUNS:
        cfg, tcfg = run_configs(run)
        x, y = batch(cfg)
        numpy_loss = make_trainer("numpy", cfg, tcfg).model.loss_and_grads(x, y)[0]
        twin_loss = torch_twin.initial_loss(cfg, x, y)
        if abs(numpy_loss - twin_loss) > 1e-4 * abs(numpy_loss):
            raise SystemExit(f"the PyTorch twin computes a different loss ({twin_loss} vs NumPy {numpy_loss})")
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        steppers = {"numpy": trainer_stepper("numpy", run),
                    "eager": stepper(torch_twin.TorchTrainer(cfg, tcfg, compile=False), tx, ty),
                    "compile": stepper(torch_twin.TorchTrainer(cfg, tcfg, compile=True), tx, ty)}
        times, _ = interleaved(steppers, steps, warmup=3)
        ms = {name: float(np.median(ts)) * 1e3 for name, ts in times.items()}
        print(f"| {run} | {ms['numpy']:.0f} | {ms['eager']:.0f} | {ms['compile']:.0f} | "
              f"{ratio_range(times['numpy'], times['eager'])} | {ratio_range(times['numpy'], times['compile'])} |")


def shares_side_by_side(steps: int) -> None:
    """One share of a two-thread step (half the batch: forward and backward) timed alone and side by side with the
    other, wall and thread CPU time: whether the threads wait (on the GIL) or run slower (sharing the machine)."""
    import threading

    cfg, tcfg = run_configs("dense")
    trainer, (x, y) = make_trainer("numpy", cfg, tcfg), batch(cfg)
    if trainer.threads.n < 2:
        raise SystemExit("--shares needs two threads (unset OPENBLAS_NUM_THREADS / MINISPARSE_NUM_THREADS)")
    half = x.shape[0] // 2
    times = {"alone": [], "side by side": []}

    def share(rows, out):
        wall, cpu = time.perf_counter(), time.thread_time()
        trainer.model.loss_and_grads(x[rows], y[rows])
        out.append((time.perf_counter() - wall, time.thread_time() - cpu))

    with trainer.threads.own_cores():
        for i in range(steps + 2):
            alone, both = [], []
            share(slice(0, half), alone)
            other = threading.Thread(target=share, args=(slice(half, None), both))
            other.start()
            share(slice(0, half), both)
            other.join()
            if i >= 2:
                times["alone"] += alone
                times["side by side"] += both
    print("\n| one share of a dense step (8 sequences) | wall ms | thread CPU ms |\n|---|---|---|")
    for name, ts in times.items():
        wall, cpu = np.median(np.array(ts), axis=0) * 1e3
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")


def prune_seconds(checkpoint: str, task: str = "single_double_quote") -> tuple[float, float]:
    """Wall seconds of one prune of `task` on `checkpoint` (NumPy), without and with both controls."""
    from minisparse.checkpoint import load
    from minisparse.circuits import prune, prune_with_controls
    from minisparse.circuits.masks import _MEANS
    from minisparse.tasks import get_task

    model, task = load(checkpoint, backend="numpy"), get_task(task)
    seconds = []
    for run in (prune, prune_with_controls):
        _MEANS.clear()                                # as in a fresh `minisparse prune` process
        t = time.perf_counter()
        run(model, task)
        seconds.append(time.perf_counter() - t)
    return seconds[0], seconds[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median reported)")
    parser.add_argument("--backends", default="numpy,mlx")
    parser.add_argument("--against", choices=["torch"], help="also time an independent PyTorch twin, interleaved")
    parser.add_argument("--prune", metavar="CHECKPOINT", help="also time pruning a task on this NumPy checkpoint")
    parser.add_argument("--shares", action="store_true", help="also time one share of a step alone and side by side")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    peaks = {b: matmul_gflops(b, n=1024, seconds=1.0) for b in {"numpy", *backends}}
    mlx_peak = f"; mlx float32 matmul peak {peaks['mlx']:.1f} GFLOP/s" if "mlx" in peaks else ""
    machine = f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores"
    print(f"machine: {machine}; numpy {np.__version__}{mlx_peak}")
    print(f"float32 matmul peak (1024x1024): numpy {peaks['numpy']:.1f} GFLOP/s")
    throughput_table(backends, args.steps, peaks)
    if args.against == "torch":
        print()
        against_torch(args.steps)
    if args.shares:
        shares_side_by_side(args.steps)
    if args.prune:
        alone, with_controls = prune_seconds(args.prune)
        print(f"\nprune single_double_quote on {args.prune}: {alone:.1f} s; with both controls {with_controls:.1f} s")
    print(f"\nfloat32 matmul peak (1024x1024) at the end: numpy {matmul_peak():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
