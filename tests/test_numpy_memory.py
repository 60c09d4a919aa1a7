"""The NumPy backend's steady state maps no fresh memory: freed activations are reused (minisparse/numpy/memory.py)."""

import platform
import subprocess
import sys

import pytest

# A model whose step allocates and frees arrays of 64 KB–1 MB, ~20 MB a step: with glibc's defaults every step maps
# fresh pages and faults on them (thousands a step); with the setting, almost none.
STEP_FAULTS = """
import resource
import numpy as np
from minisparse.config import ModelConfig, TrainConfig
from minisparse.train import make_trainer
cfg = ModelConfig(vocab_size=256, n_ctx=64, d_model=64, n_layer=2, n_head=4, d_head=16, d_mlp=256)
trainer = make_trainer("numpy", cfg, TrainConfig(steps=100, batch_size=16, weight_density=0.25))
rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (16, 64)), rng.integers(0, 256, (16, 64))
for i in range(3):
    trainer.step(x, y, 60 + i)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(5):
    trainer.step(x, y, 63 + i)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists only in glibc's malloc")
def test_steady_state_steps_map_no_fresh_memory():
    faults = float(subprocess.run([sys.executable, "-c", STEP_FAULTS], capture_output=True, text=True,
                                  check=True).stdout)
    assert faults < 20, f"{faults:.0f} minor page faults per steady-state step"
