"""Central finite differences, the independent check every hand-written gradient is held to."""

import numpy as np


def central_differences(f, x: np.ndarray, entries=None, h: float = 1e-6) -> np.ndarray:
    """(f(x + h·e_i) − f(x − h·e_i)) / 2h for each flat index i in `entries` (all of x by default), perturbing x in
    place and restoring it; x must be contiguous so that its flat view writes through."""
    flat = x.reshape(-1)
    entries = range(flat.size) if entries is None else entries
    out = np.empty(len(entries))
    for j, i in enumerate(entries):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        out[j] = (fp - fm) / (2 * h)
    return out
