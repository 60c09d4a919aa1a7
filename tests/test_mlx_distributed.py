"""Data-parallel MLX training (`minisparse.mlx.distributed`, used by `minisparse train --backend mlx` under
`mlx.launch`): two processes on half batches each follow one process on the whole batch, because the mean loss over
equal shards has the averaged gradient of the whole batch."""

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
from facts import facts  # noqa: E402  (tests/facts.py)
from minisparse.checkpoint import read_checkpoint  # noqa: E402
from minisparse.cli import main  # noqa: E402
from minisparse.config import preset  # noqa: E402
from minisparse.mlx import GPT, MLXTrainer  # noqa: E402
from minisparse.mlx.distributed import init, is_main, shard  # noqa: E402


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
    with pytest.raises(ValueError, match=facts("6 sequences", "4 processes")):
        shard(x, y, FakeGroup(0, 4))
    assert is_main(None) and is_main(FakeGroup(0, 2)) and not is_main(FakeGroup(1, 2))


def test_a_group_of_one_trains_exactly_like_no_group():
    group = init()
    assert group.size() == 1 and group.rank() == 0
    cfg, tcfg = preset("tiny")
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (3, 4, cfg.n_ctx + 1))
    batches = [(s, (t[:, :-1], t[:, 1:])) for s, t in enumerate(tokens)]
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
    train = ["train", "--preset", "tiny", "--steps", "20", "--backend", "mlx", "--no-progress"]
    assert main(train + ["--out", str(tmp_path / "one")]) == 0
    cmd = [LAUNCH, "-n", "2", "--backend", "ring", "--starting-port", str(free_port()), "--",
           sys.executable, "-m", "minisparse", *train, "--out", str(tmp_path / "two")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    # mlx.launch exits 0 even when its processes fail, so look for the result, and show their output if it is missing
    assert (tmp_path / "two" / "model.safetensors").exists(), \
        f"no checkpoint from {' '.join(cmd)}\n{run.stdout}\n{run.stderr}"
    logs = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("one", "two")]
    assert len(logs[1]) == 20, "only rank 0 writes the log: one line per step"
    np.testing.assert_allclose([r["loss"] for r in logs[1]], [r["loss"] for r in logs[0]], rtol=2e-5)
    assert logs[1][-1]["loss"] < logs[1][0]["loss"]
    one, two = (read_checkpoint(tmp_path / d / "model.safetensors")[1] for d in ("one", "two"))
    for name in one:
        np.testing.assert_allclose(two[name], one[name], atol=1e-4, err_msg=name)
