"""Choosing a backend: MLX on Apple silicon (its GPU), NumPy elsewhere — and telling the user why."""

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
    if name == "mlx" or (name == "auto" and on_apple_silicon() and mlx_available()):
        if not mlx_available():
            raise RuntimeError("the MLX backend needs mlx: on Linux pip install 'minisparse[mlx]'; on Apple silicon "
                               "it comes with minisparse (pip install mlx)")
        if on_apple_silicon():
            return "mlx", "MLX backend on the Apple GPU" + (" (auto: Apple silicon)" if name == "auto" else "")
        gap = matmul_gflops("numpy") / matmul_gflops("mlx")
        return "mlx", (f"MLX backend on the CPU: the Linux mlx[cpu] wheel links a slow reference BLAS, measured here "
                       f"{gap:.0f}x slower than NumPy at float32 matmul; use --backend numpy (or auto) for speed")
    if on_apple_silicon():
        return "numpy", ("NumPy backend (auto): mlx is not installed, though minisparse depends on it on Apple "
                         "silicon; pip install mlx to use the Apple GPU")
    return "numpy", ("NumPy backend (auto): not on Apple silicon, and MLX on this platform runs on the CPU with a slow "
                     "bundled BLAS, so NumPy is faster here")
