"""Reading and editing a forward pass by name: the keys both models cache and hook, and the checks on hooks.

Keys, per layer l, in forward order:

    L{l}.resid_pre      [B, T, D]     the residual stream entering block l
    L{l}.attn_in, L{l}.q, L{l}.k, L{l}.v        [B, T, n]   sites: the value after AbsTopK (the nodes pruning gates)
    L{l}.attn_pattern   [B, H, T, T]  attention weights over the visible positions (with a sink a row sums to < 1:
                                      the rest went to the sink); cached, not hookable
    L{l}.attn_out       [B, T, D]     site
    L{l}.resid_mid      [B, T, D]     the residual stream between attention and MLP
    L{l}.mlp_in, L{l}.mlp_neuron, L{l}.mlp_out  sites
    L{l}.resid_post     [B, T, D]     the residual stream leaving block l

A hook `fn(value, key) -> value` gets a NumPy array [B, T, n] and returns the array used from there on: zero-ablate,
mean-ablate, patch in another prompt's cache, add a steering vector. It must keep the shape, a floating dtype, and
finite values; anything else is refused naming the key. Both models take the same hooks and give the same cache.
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .params import SITES

RESIDUALS = ("resid_pre", "resid_mid", "resid_post")
POINTS = ("resid_pre", "attn_in", "q", "k", "v", "attn_pattern", "attn_out", "resid_mid", "mlp_in", "mlp_neuron",
          "mlp_out", "resid_post")           # forward order within a block


def cache_keys(cfg: ModelConfig) -> list[str]:
    """Every key a forward pass can cache, in forward order."""
    return [f"L{l}.{p}" for l in range(cfg.n_layer) for p in POINTS]


def hook_keys(cfg: ModelConfig) -> list[str]:
    """Every key a hook can edit: the sites and the residual stream."""
    return [k for k in cache_keys(cfg) if k.split(".", 1)[1] in SITES + RESIDUALS]


def check_keys(keys, allowed: list[str], what: str) -> None:
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} key {unknown[0]!r}; keys are 'L{{layer}}.{{point}}' with point in "
                         f"{sorted({a.split('.', 1)[1] for a in allowed})} and layer in [0, "
                         f"{int(allowed[-1].split('.')[0][1:]) + 1})")


def call_hook(fn, value: np.ndarray, key: str) -> np.ndarray:
    """`fn(value, key)`, checked: the same shape, a floating dtype (cast to the value's), finite."""
    out = fn(value, key)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"the hook at {key!r} returned {type(out).__name__}, expected a NumPy array of shape "
                         f"{value.shape}")
    if out.shape != value.shape:
        raise ValueError(f"the hook at {key!r} returned shape {out.shape}, expected {value.shape}")
    if out.dtype.kind != "f":
        raise ValueError(f"the hook at {key!r} returned dtype {out.dtype}, expected a floating dtype ({value.dtype})")
    if not np.isfinite(out).all():
        raise ValueError(f"the hook at {key!r} returned NaN or inf values")
    return out.astype(value.dtype, copy=False)
