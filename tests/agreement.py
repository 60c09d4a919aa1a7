"""How far apart two computations are, and where AbsTopK lets them part: helpers shared by the comparison tests.

rel_err and rel_max measure disagreement. topk_gaps finds near-ties: AbsTopK is piecewise linear and its kept set
changes where the k-th and (k+1)-th largest |x| of a row swap, so two computations that differ by rounding (a finite-
difference step, two backends) may keep different channels there. Tests draw their inputs away from such points.
"""

from unittest import mock

import numpy as np

from minisparse.numpy import GPT, layers
from minisparse.params import site_sizes


def rel_err(a, b, scale: float) -> float:
    """||a − b|| / max(||a|| + ||b||, scale), in float64: relative where a and b are large, and measured against
    `scale`, the size of the problem, where they are near 0. A quantity that is 0 in exact arithmetic comes out as
    rounding (1e-16 of its ingredients) in some orders of arithmetic and exactly 0 in others, depending on the CPU's
    BLAS kernel; against its own size alone, that rounding would be a relative error of 1. `scale` must be > 0."""
    assert scale > 0, "rel_err needs the problem's scale, > 0, to judge values that are 0 in exact arithmetic"
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), scale))


def rel_max(a, b, floor: float = 0.0) -> float:
    """Largest entrywise difference relative to the largest |b| (or `floor`, if larger), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), floor, 1e-30))


def as64(params: dict) -> dict:
    return {n: w.astype(np.float64) for n, w in params.items()}


def topk_gaps(params, cfg, idx, gates=None, relative: bool = True) -> dict[str, np.ndarray]:
    """{site: [B, T] gap |x|_(k) − |x|_(k+1)} at every AbsTopK of a float64 NumPy forward, divided by the row's
    largest |x| if `relative`. Sites where AbsTopK is the identity (k = n) have no gap and are left out."""
    calls = []
    real = layers.abstopk_mask

    def recording(x, k):
        a = np.sort(np.abs(x), axis=-1)[..., ::-1]               # descending
        gap = a[..., k - 1] - a[..., k]
        calls.append(gap / np.maximum(a[..., 0], 1e-300) if relative else gap)
        return real(x, k)

    g64 = {s: tuple(np.asarray(a, np.float64) for a in pair) for s, pair in (gates or {}).items()}
    with mock.patch.object(layers, "abstopk_mask", recording):
        GPT(cfg, params=as64(params)).forward_cached(idx, g64)
    # AbsTopK is only called where it is not the identity (k < n); sites are visited in forward order
    keys = [key for key, n in site_sizes(cfg).items() if cfg.topk(n) < n]
    assert len(keys) == len(calls)
    return {key: gap.reshape(np.shape(idx)) for key, gap in zip(keys, calls)}


def min_topk_gap(params, cfg, idx, gates=None, relative: bool = True) -> float:
    """Smallest gap over every row of every AbsTopK call (inf when AbsTopK is off)."""
    return min((float(g.min()) for g in topk_gaps(params, cfg, idx, gates, relative).values()), default=np.inf)
