"""Central finite differences, the independent check every hand-written gradient is held to, and how the two are
compared."""

import numpy as np

from agreement import rel_err  # tests/agreement.py


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


def gradient_errors(analytic: dict, numeric: dict) -> dict:
    """{name: rel_err} of each analytic gradient against its finite differences, all judged at one scale: the norm of
    the whole numeric gradient. A gradient that is 0 in exact arithmetic (dq when a query sees a single key) may come
    out as rounding from one BLAS kernel and as an exact 0 from another; against the whole gradient's size that
    rounding is ~1e-16, while a real error in any part is as large as the parts it corrupts."""
    scale = sum(float(np.linalg.norm(g)) for g in numeric.values())
    return {name: rel_err(analytic[name], numeric[name], scale) for name in numeric}
