"""The NumPy backend's steady state maps no fresh memory: freed activations are reused (minisparse/numpy/memory.py)."""

import os
import platform
import subprocess
import sys

import pytest

# A step that allocates and frees arrays of 64 KB–1 MB, ~20 MB a step: with glibc's defaults every step maps fresh
# pages and faults on them (thousands a step); with the setting, almost none. On two threads the batch is shared
# (numpy/trainer.py) and the model is bench_step.py's sparse reference, whose share of a step outgrows the 64 MB heaps
# a second thread's own malloc arena is made of: without one heap for every thread, ~7,000 faults a step.
STEP_FAULTS = """
import resource
import numpy as np
from minisparse.config import ModelConfig, TrainConfig
from minisparse.train import make_trainer
width, layers, batch = {width}, {layers}, 16
cfg = ModelConfig(vocab_size=256, n_ctx=width, d_model=width, n_layer=layers, n_head=4, d_head=width // 4,
                  d_mlp=4 * width)
trainer = make_trainer("numpy", cfg, TrainConfig(steps=100, batch_size=batch, weight_density=1 / 16))
rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (batch, width)), rng.integers(0, 256, (batch, width))
for i in range(4):
    trainer.step(x, y, 60 + i)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(6):
    trainer.step(x, y, 64 + i)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 6)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists only in glibc's malloc")
@pytest.mark.parametrize(("threads", "width", "layers", "most"), [("1", 64, 2, 20), ("2", 128, 4, 200)])
def test_steady_state_steps_map_no_fresh_memory(threads, width, layers, most):
    env = {**os.environ, "MINISPARSE_NUM_THREADS": threads}
    faults = float(subprocess.run([sys.executable, "-c", STEP_FAULTS.format(width=width, layers=layers)],
                                  capture_output=True, text=True, env=env, check=True).stdout)
    assert faults < most, f"{faults:.0f} minor page faults per steady-state step on {threads} thread(s)"
