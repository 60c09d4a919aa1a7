"""Data-parallel MLX training (`minisparse.mlx.distributed`): two processes on half batches each follow one process
on the whole batch, because the mean loss over equal shards has the averaged gradient of the whole batch."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
from minisparse.config import preset  # noqa: E402
from minisparse.mlx import GPT, MLXTrainer  # noqa: E402
from minisparse.mlx.distributed import init, is_main, main, shard, synthetic_batches  # noqa: E402


class FakeGroup:
    def __init__(self, rank, size):
        self._rank, self._size = rank, size

    def rank(self):
        return self._rank

    def size(self):
        return self._size


def test_shards_split_the_global_batch_evenly():
    x, y = np.arange(24).reshape(6, 4), -np.arange(24).reshape(6, 4)
    parts = [shard(x, y, FakeGroup(r, 3)) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    assert shard(x, y, None) == (x, y)
    with pytest.raises(ValueError, match="does not split evenly over 4 processes"):
        shard(x, y, FakeGroup(0, 4))
    assert is_main(None) and is_main(FakeGroup(0, 2)) and not is_main(FakeGroup(1, 2))


def test_a_group_of_one_trains_exactly_like_no_group():
    group = init()
    assert group.size() == 1 and group.rank() == 0
    cfg, tcfg = preset("tiny")
    batches = list(zip(range(3), synthetic_batches(cfg.vocab_size, cfg.n_ctx, 4)))
    alone, grouped = MLXTrainer(GPT(cfg), tcfg), MLXTrainer(GPT(cfg), tcfg, group=group)
    assert [alone.step(x, y, s) for s, (x, y) in batches] == [grouped.step(x, y, s) for s, (x, y) in batches]
    # and the all-reduce itself is the identity on one process
    np.testing.assert_array_equal(np.array(mx.distributed.all_sum(mx.arange(3.0), group=group)), [0, 1, 2])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCH = shutil.which("mlx.launch") or str(Path(sys.executable).with_name("mlx.launch"))


@pytest.mark.skipif(not Path(LAUNCH).exists(), reason="mlx.launch (MLX's process launcher) is not installed")
def test_two_processes_on_half_batches_follow_one_process(tmp_path):
    steps, batch = 20, 16
    one = tmp_path / "one.json"
    main(["--steps", str(steps), "--batch", str(batch), "--out", str(one)])
    two = tmp_path / "two.json"
    cmd = [LAUNCH, "-n", "2", "--backend", "ring", "--starting-port", str(free_port()), "--",
           sys.executable, "-m", "minisparse.mlx.distributed", "--steps", str(steps), "--batch", str(batch),
           "--out", str(two)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # mlx.launch exits 0 even when its processes fail, so look for the result, and show their output if it is missing
    assert two.exists(), f"no result from {' '.join(cmd)}\n{run.stdout}\n{run.stderr}"
    single, parallel = json.loads(one.read_text()), json.loads(two.read_text())
    assert single["world_size"] == 1 and parallel["world_size"] == 2
    np.testing.assert_allclose(parallel["losses"], single["losses"], rtol=2e-5)
    assert parallel["losses"][-1] < parallel["losses"][0]
