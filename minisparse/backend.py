"""Choosing a backend: MLX where MLX has a GPU (Metal on Apple silicon, CUDA on Linux with minisparse[cuda12] or
[cuda13]), NumPy elsewhere — and telling the user why."""

from __future__ import annotations

import importlib.util
import platform
import sys
import time

BACKENDS = ("numpy", "mlx", "auto")


def mlx_available() -> bool:
    return importlib.util.find_spec("mlx") is not None


def on_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def mlx_gpu() -> str | None:
    """The GPU MLX would run on ("Metal" or "CUDA"), or None where MLX is missing or has no GPU here."""
    if not mlx_available():
        return None
    import mlx.core as mx

    if not mx.is_available(mx.gpu):
        return None
    return "Metal" if mx.metal.is_available() else "CUDA"


def matmul_gflops(backend: str, n: int = 256, seconds: float = 0.05) -> float:
    """Measured float32 matmul speed of one backend on this machine: the best n×n by n×n product over `seconds`."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    if backend == "mlx":
        import mlx.core as mx

        a = mx.array(a)
        product = lambda: mx.eval(a @ a)  # noqa: E731  (MLX is lazy: eval makes it compute)
    else:
        product = lambda: a @ a  # noqa: E731
    product()  # warm-up
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        product()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def resolve_backend(name: str) -> tuple[str, str]:
    """The backend to use for `name` ("numpy", "mlx" or "auto") and a sentence saying why (or warning)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    if name == "numpy":
        return "numpy", "NumPy backend, as asked"
    gpu = mlx_gpu()
    if name == "auto":
        if gpu:
            return "mlx", f"MLX backend on the {gpu} GPU (auto: MLX has a GPU here)"
        if on_apple_silicon():
            return "numpy", ("NumPy backend (auto): mlx is not installed, though minisparse depends on it on Apple "
                             "silicon; pip install mlx to use the Apple GPU")
        return "numpy", ("NumPy backend (auto): MLX has no GPU here (for an NVIDIA GPU on Linux, pip install "
                         "'minisparse[cuda12]' or '[cuda13]'), and MLX on the CPU is slower than NumPy")
    if not mlx_available():
        raise RuntimeError("the MLX backend needs mlx: on Linux pip install 'minisparse[mlx]' (CPU) or "
                           "'minisparse[cuda12]' (NVIDIA GPU); on Apple silicon it comes with minisparse")
    if gpu:
        return "mlx", f"MLX backend on the {gpu} GPU, as asked"
    gap = matmul_gflops("numpy") / matmul_gflops("mlx")
    return "mlx", (f"MLX backend on the CPU: the Linux mlx[cpu] wheel links a slow reference BLAS, measured here "
                   f"{gap:.0f}x slower than NumPy at float32 matmul; use --backend numpy (or auto) for speed")
