"""Where a circuit's attention heads look: the attention pattern from the answer position, on held-out task prompts.

A circuit's q, k and v channels belong to heads (channel i to head i // d_head). For each such head this reads, on
each held-out prompt, the softmax weights from the last position (where the answer is read off) over every earlier
position: which position gets the most weight, how much, and which byte stands there. "0.81 of its weight on `'`,
6 bytes back" is the attention step of a copy-the-opening-quote circuit, measured.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from minisparse.data import decode

from .circuit import Circuit
from .masks import parse_node
from .prune import N_EVAL, TaskData


@dataclass
class HeadAttention:
    layer: int
    head: int
    channels: list[str]           # the circuit's q/k/v nodes in this head
    top_share: float              # mean over prompts of the weight on each prompt's most-attended position
    top_bytes: list[tuple[str, int]]   # the bytes most often at that position, and in how many prompts
    back: float                   # mean distance of that position from the last one, in bytes
    sink: float                   # mean weight left to the sink (0 without one)
    n_prompts: int
    example: tuple[str, np.ndarray]   # one prompt and its weights [T] from the last position, for a heatmap

    def summary(self) -> str:
        where = ", ".join(f"{b!r} in {k}" for b, k in self.top_bytes)
        return (f"L{self.layer} head {self.head} ({', '.join(self.channels)}): {self.top_share:.2f} of its weight on "
                f"one position, {self.back:.1f} bytes back on average, holding {where} of {self.n_prompts} prompts"
                + (f"; {self.sink:.2f} on the sink" if self.sink > 0.005 else ""))


def circuit_heads(circuit: Circuit, d_head: int) -> dict[tuple[int, int], list[str]]:
    """{(layer, head): the circuit's q/k/v nodes in it}, in forward order."""
    heads: dict[tuple[int, int], list[str]] = {}
    for name in circuit.nodes:
        key, i = parse_node(name)
        layer, site = key.split(".")
        if site in ("q", "k", "v"):
            heads.setdefault((int(layer[1:]), i // d_head), []).append(name)
    return heads


def head_attention(model, circuit: Circuit, task, n: int = N_EVAL, seed: int = 0) -> list[HeadAttention]:
    """The attention of every head the circuit's q/k/v nodes belong to, on `n` held-out prompts of `task`."""
    cfg = model.config
    data = TaskData.from_task(task, n, cfg.n_ctx, "test", seed)
    heads = circuit_heads(circuit, cfg.d_head)
    layers = sorted({layer for layer, _ in heads})
    _, cache = model.run_with_cache(data.idx, names=[f"L{l}.attn_pattern" for l in layers])
    out = []
    for (layer, head), channels in heads.items():
        weights = cache[f"L{layer}.attn_pattern"][:, head, -1, :].astype(np.float64)     # [n, T] from the last one
        top = weights.argmax(axis=1)
        rows = np.arange(len(top))
        byte_at = [decode(data.idx[r, top[r]:top[r] + 1]) for r in rows]
        out.append(HeadAttention(layer, head, channels, float(weights[rows, top].mean()),
                                 Counter(byte_at).most_common(2), float((weights.shape[1] - 1 - top).mean()),
                                 float((1 - weights.sum(axis=1)).mean()), len(top), (decode(data.idx[0]), weights[0])))
    return out
