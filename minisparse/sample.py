"""Sampling text from a trained model of either backend."""

from __future__ import annotations

import numpy as np

from .data import decode, encode


def generate(model, prompt: str, n_bytes: int = 200, temperature: float = 0.8, seed: int = 0) -> str:
    """Continue `prompt` by `n_bytes` bytes, sampling at `temperature` (0 = greedy); the context is cropped to n_ctx."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    rng = np.random.default_rng(seed)
    ids = list(encode(prompt)) or [ord("\n")]
    n_ctx = model.config.n_ctx
    for _ in range(n_bytes):
        logits = np.asarray(model.forward(np.array([ids[-n_ctx:]])))[0, -1].astype(np.float64)
        if temperature == 0:
            ids.append(int(logits.argmax()))
            continue
        p = np.exp((logits - logits.max()) / temperature)
        ids.append(int(rng.choice(p.size, p=p / p.sum())))
    return decode(ids[len(encode(prompt)):])
