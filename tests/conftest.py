"""Shared test configuration: the hypothesis profiles.

    HYPOTHESIS_PROFILE=ci   CI: derandomized (same examples every run, so a red CI is reproducible), no deadline,
                            enough examples to matter, and a reproduction blob printed for every failure.
    HYPOTHESIS_PROFILE=dev  the default: few examples, for a quick run while editing.
    HYPOTHESIS_PROFILE=mutation  derandomized like ci but with fewer examples: mutation testing runs the suite once
                            per mutant (see benchmarks/mutation/setup.cfg).

Tests that are expensive per example (a training run, an MLX call) ask for a fraction of the profile's count with
`tests.strategies.examples(fraction)`, so both profiles stay in proportion.
"""

from __future__ import annotations

import os

# The test models are tiny: BLAS threads only add overhead, and oversubscribe a shared 2-core CI machine badly (a tiny
# step measured 2.8 ms single-threaded vs 14-165 ms threaded under load). Set before NumPy loads its BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=200,
    print_blob=True,
    database=None,  # derandomized runs need no example database; CI starts from a clean checkout anyway
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "mutation",
    derandomize=True,
    deadline=None,
    max_examples=40,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
