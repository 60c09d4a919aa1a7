"""The one checker behind every exercise check: `ExerciseError`, `compare`, and the helpers the checks share.

A check calls the learner's function through `_call` (a stub that still raises NotImplementedError becomes a one-line
reminder), compares each answer with minisparse's own through `compare`, and stops at the first difference with an
`ExerciseError` that names the case, the entry, the expected and the actual value, and a hint. `compare` is also there
for the learner's own experiments.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ExerciseError", "compare"]


class ExerciseError(AssertionError):
    """Your function gave a wrong answer; the message says on which input, where, and what was expected."""


def compare(what: str, got, expected, *, atol: float = 0.0, rtol: float = 0.0, hint: str = "") -> None:
    """Raise ExerciseError at the first entry where `got` differs from `expected` (beyond atol + rtol·|expected|).

    The message names the entry, both values, how many entries differ, and `hint`. Shapes and dtypes kinds (bool vs
    number) must match too, and an answer that is not an array of numbers (a ragged list, None, strings) is an
    ExerciseError, not a crash inside the check.
    """
    expected = np.asarray(expected)
    try:
        got = np.asarray(got)
    except (ValueError, TypeError) as e:   # a ragged list, an object the learner returned by mistake
        raise ExerciseError(f"{what}: expected an array of shape {expected.shape}, got {type(got).__name__} "
                            f"({e})") from None
    if got.shape != expected.shape:
        raise ExerciseError(f"{what}: shape {got.shape}, expected {expected.shape}" + _hint(hint))
    if (expected.dtype == bool) != (got.dtype == bool):
        raise ExerciseError(f"{what}: dtype {got.dtype}, expected {'bool' if expected.dtype == bool else 'a number'}"
                            + _hint(hint))
    if expected.dtype == bool:
        wrong = got != expected
    else:
        try:
            got64 = got.astype(np.float64)
        except (ValueError, TypeError) as e:   # None, strings: an array, but not of numbers
            raise ExerciseError(f"{what}: dtype {got.dtype}, expected a number ({e})" + _hint(hint)) from None
        exp64 = expected.astype(np.float64)
        with np.errstate(invalid="ignore"):
            wrong = ~(np.abs(got64 - exp64) <= atol + rtol * np.abs(exp64))   # NaN counts as wrong
    if wrong.any():
        first = tuple(int(i) for i in np.argwhere(wrong)[0])
        where = f"entry {list(first)}" if first else "the value"
        count = f" ({int(wrong.sum())} of {wrong.size} entries differ)" if first else ""
        raise ExerciseError(f"{what}: {where} is {_fmt(got[first])}, expected {_fmt(expected[first])}{count}"
                            + _hint(hint))


def _fmt(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:.10g}" if isinstance(v, float) else repr(v)


def _hint(hint: str) -> str:
    return f"\n  hint: {hint}" if hint else ""


def _call(name: str, fn, *args):
    """Call the learner's function; a stub that raises NotImplementedError becomes a one-line reminder."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseError(f"{name} is not written yet: replace `raise NotImplementedError` with your code") from None


def _pair(name: str, got, n: int):
    """`got` if it is a tuple of n answers; otherwise an ExerciseError saying what the function must return."""
    if not (isinstance(got, tuple) and len(got) == n):
        raise ExerciseError(f"{name} must return a tuple of {n}, got {type(got).__name__}")
    return got


def _passed(name: str, n_cases: int) -> None:
    print(f"✓ {name}: matches minisparse on all {n_cases} cases")
