"""`--backend auto` picks MLX where MLX has a GPU (Metal or CUDA) and NumPy elsewhere, and every choice says why."""

import re

import mlx.core as mx
import pytest

from facts import facts  # tests/facts.py
from minisparse import backend


def gpu(monkeypatch, cuda: bool = False, metal: bool = False):
    """Make MLX report the GPUs given, through the calls `mlx_gpu` makes."""
    monkeypatch.setattr(mx, "is_available", lambda device: cuda or metal if device == mx.gpu else True)
    monkeypatch.setattr(mx.metal, "is_available", lambda: metal)


def test_auto_follows_what_mlx_reports_on_this_machine_and_says_why():
    # the real check, not a stand-in: NumPy on a CPU-only machine (CI, the developers'), MLX where MLX has a GPU
    name, why = backend.resolve_backend("auto")
    if mx.is_available(mx.gpu):
        assert name == "mlx" and "GPU (auto: MLX has a GPU here)" in why
    else:
        assert name == "numpy" and re.match(facts("no GPU here", "minisparse[cuda12]"), why)


def test_auto_picks_mlx_on_a_cuda_gpu(monkeypatch):
    gpu(monkeypatch, cuda=True)
    assert backend.mlx_gpu() == "CUDA"
    assert backend.resolve_backend("auto") == ("mlx", "MLX backend on the CUDA GPU (auto: MLX has a GPU here)")
    assert backend.resolve_backend("mlx") == ("mlx", "MLX backend on the CUDA GPU, as asked")


def test_auto_picks_mlx_on_apple_silicon(monkeypatch):
    gpu(monkeypatch, metal=True)
    assert backend.resolve_backend("auto") == ("mlx", "MLX backend on the Metal GPU (auto: MLX has a GPU here)")
    monkeypatch.setattr(backend, "mlx_available", lambda: False)
    monkeypatch.setattr(backend, "on_apple_silicon", lambda: True)
    name, why = backend.resolve_backend("auto")
    assert name == "numpy" and "pip install mlx" in why


def test_mlx_without_a_gpu_warns_with_the_measured_gap(monkeypatch):
    gpu(monkeypatch)
    speeds = {"numpy": 120.0, "mlx": 4.0}
    monkeypatch.setattr(backend, "matmul_gflops", lambda name: speeds[name])
    name, why = backend.resolve_backend("mlx")
    assert name == "mlx" and "30x slower than NumPy" in why and "--backend numpy" in why


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match=facts("'torch'", "'numpy', 'mlx', 'auto'")):
        backend.resolve_backend("torch")
