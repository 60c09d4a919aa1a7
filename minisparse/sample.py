"""Sampling text from a trained model of either backend, and showing it safely on a terminal."""

from __future__ import annotations

import numpy as np

from .data import decode, encode

KEPT_CONTROLS = "\n\t"   # the control characters that are text; every other one is escaped by `printable`


def generate_bytes(model, prompt: str, n_bytes: int = 200, temperature: float = 0.8, seed: int = 0) -> bytes:
    """The next `n_bytes` bytes after `prompt`, sampled at `temperature` (0 = greedy), raw: a byte-level model may
    write any byte, control bytes and broken UTF-8 included. The context is cropped to n_ctx."""
    if not (isinstance(n_bytes, (int, np.integer)) and n_bytes >= 0):
        raise ValueError(f"the number of bytes to sample must be an integer >= 0, got {n_bytes!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    rng = np.random.default_rng(seed)
    ids = list(encode(prompt)) or [ord("\n")]
    start, n_ctx = len(ids), model.config.n_ctx
    for _ in range(n_bytes):
        logits = np.asarray(model.forward(np.array([ids[-n_ctx:]])))[0, -1].astype(np.float64)
        if temperature == 0:
            ids.append(int(logits.argmax()))
            continue
        p = np.exp((logits - logits.max()) / temperature)
        ids.append(int(rng.choice(p.size, p=p / p.sum())))
    return bytes(ids[start:])


def generate(model, prompt: str, n_bytes: int = 200, temperature: float = 0.8, seed: int = 0) -> str:
    """`generate_bytes` decoded as UTF-8 (invalid sequences become U+FFFD)."""
    return decode(list(generate_bytes(model, prompt, n_bytes, temperature, seed)))


def printable(data: bytes) -> str:
    """`data` as text that is safe to print: valid UTF-8 that is printable stays as it is, and so do newlines and tabs;
    every other byte or character is shown escaped, as Python writes it (`\\x07`, `\\x00`, `\\r`, `\\u200b`)."""
    text = data.decode("utf-8", errors="backslashreplace")     # an invalid byte becomes the 4 characters \xNN
    return "".join(c if c.isprintable() or c in KEPT_CONTROLS else c.encode("unicode_escape").decode("ascii")
                   for c in text)
