"""`--backend auto` picks MLX only on Apple silicon, and every choice comes with its reason."""

import pytest

from facts import facts  # tests/facts.py
from minisparse import backend


def test_auto_picks_numpy_off_apple_silicon_and_says_why(monkeypatch):
    monkeypatch.setattr(backend, "on_apple_silicon", lambda: False)
    name, why = backend.resolve_backend("auto")
    assert name == "numpy" and "slow bundled BLAS" in why


def test_auto_picks_mlx_on_apple_silicon(monkeypatch):
    monkeypatch.setattr(backend, "on_apple_silicon", lambda: True)
    monkeypatch.setattr(backend, "mlx_available", lambda: True)
    assert backend.resolve_backend("auto") == ("mlx", "MLX backend on the Apple GPU (auto: Apple silicon)")
    monkeypatch.setattr(backend, "mlx_available", lambda: False)
    name, why = backend.resolve_backend("auto")
    assert name == "numpy" and "pip install mlx" in why


def test_mlx_on_linux_warns_with_the_measured_gap(monkeypatch):
    pytest.importorskip("mlx.core")
    monkeypatch.setattr(backend, "on_apple_silicon", lambda: False)
    speeds = {"numpy": 120.0, "mlx": 4.0}
    monkeypatch.setattr(backend, "matmul_gflops", lambda name: speeds[name])
    name, why = backend.resolve_backend("mlx")
    assert name == "mlx" and "30x slower than NumPy" in why and "--backend numpy" in why


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match=facts("'torch'", "'numpy', 'mlx', 'auto'")):
        backend.resolve_backend("torch")
