"""Memory reuse for the NumPy backend: keep freed arrays in the process instead of handing them back to the kernel.

A training step allocates its activations and temporaries and frees them again. Left to its defaults, glibc's malloc
serves each large array with a fresh `mmap` and unmaps it when freed, so every step touches thousands of new pages,
each a page fault the kernel must zero. Told to serve arrays of up to 32 MB from its heap and to keep freed memory
there, malloc hands the same pages back step after step, with the same peak memory (`benchmarks/profile_step.py`
counts the faults; docs/speed.md has what it saves). Every thread allocates from that one heap: a step shared between
threads (threads.py) faulted thousands of pages a step again while the second thread had an arena of its own.

The setting is process-wide and only exists in glibc (Linux); elsewhere `reuse_freed_memory` does nothing. It is
applied once, when the first NumPy GPT is built: the model that allocates this way is the one that asks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8   # mallopt parameters, from glibc's <malloc.h>
MMAP_THRESHOLD = 32 * 2 ** 20    # arrays up to this size come from the heap (glibc's largest allowed value)
TRIM_THRESHOLD = 2 ** 30         # freed memory at the top of the heap is returned to the kernel only beyond this

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Configure glibc's malloc as described in the module docstring (once per process); True if it took effect."""
    global _applied
    if _applied is None:
        _applied = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _applied = all(libc.mallopt(param, value) for param, value in (
                (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_ARENA_MAX, 1)))
    return _applied
