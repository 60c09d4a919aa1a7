"""Faults lose nothing: a training process killed at each of its file writes in turn resumes to the same model, two
writers cannot share a run directory, and a failed write leaves the last checkpoint intact."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors import safe_open

from minisparse.checkpoint import CheckpointError, read_checkpoint, save_optimizer
from minisparse.config import ModelConfig, TrainConfig
from minisparse.rundir import METRICS_FILE, MODEL_FILE, RunLocked, locked, optimizer_file
from minisparse.train import train

CFG = ModelConfig(vocab_size=256, n_ctx=16, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=32)
TCFG = TrainConfig(steps=6, batch_size=2, lr=1e-2, weight_density=0.25, eval_every=2, eval_batches=1,
                   checkpoint_every=2, min_per_neuron=2)
TEXT = b"def add(a, b):\n    return a + b\n" * 20
CORPUS = SimpleNamespace(train=np.frombuffer(TEXT, np.uint8), val=np.frombuffer(TEXT[::-1], np.uint8),
                         fingerprint="test-corpus")

# Trains CFG/TCFG into argv[1]; with argv[2] = N and argv[3] = "before" or "after", the process dies (os._exit, as
# under kill -9: no cleanup runs) at the N-th file operation that changes the run directory: a rename of a finished
# temporary file onto its name, or the removal of a file.
CHILD = textwrap.dedent("""
    import os, sys, pathlib, dataclasses, json
    import numpy as np
    from types import SimpleNamespace
    from minisparse.config import ModelConfig, TrainConfig
    from minisparse.train import train
    CFG = ModelConfig.from_dict(json.loads(sys.argv[4]))
    TCFG = TrainConfig.from_dict(json.loads(sys.argv[5]))
    TEXT = sys.argv[6].encode()
    corpus = SimpleNamespace(train=np.frombuffer(TEXT, np.uint8), val=np.frombuffer(TEXT[::-1], np.uint8),
                             fingerprint="test-corpus")
    target, when, count = int(sys.argv[2]), sys.argv[3], [0]

    def dying(real):
        def op(*args, **kwargs):
            if not os.path.lexists(args[0]):     # nothing to rename or remove: no change to the directory
                return real(*args, **kwargs)
            count[0] += 1
            if count[0] == target and when == "before":
                os._exit(137)
            out = real(*args, **kwargs)
            if count[0] == target and when == "after":
                os._exit(137)
            return out
        return op

    os.replace, os.unlink = dying(os.replace), dying(os.unlink)
    train(CFG, TCFG, sys.argv[1], resume=pathlib.Path(sys.argv[1], "model.safetensors").exists(), corpus=corpus,
          progress=False, keep_checkpoints=True)
    print("operations", count[0])
""")


def _child(run_dir, target=0, when="never"):
    args = [sys.executable, "-c", CHILD, str(run_dir), str(target), when, CFG.to_json(), TCFG.to_json(),
            TEXT.decode()]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})


def _files(run_dir) -> dict:
    """{name: content} of a run directory: a safetensors file as its metadata and its tensors' bytes (the header's
    order of metadata keys is not fixed), any other file as its bytes."""
    def content(p):
        if p.suffix != ".safetensors":
            return p.read_bytes()
        with safe_open(str(p), framework="numpy") as f:
            return f.metadata(), {name: f.get_tensor(name).tobytes() for name in f.keys()}

    return {p.name: content(p) for p in run_dir.iterdir() if p.name != ".lock"}


def test_a_kill_at_every_file_write_leaves_a_run_that_resumes_to_the_uninterrupted_model(tmp_path):
    reference = _child(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    operations = int(reference.stdout.split()[-1])
    assert operations >= 3 * 3      # per checkpoint: the kept copy, the optimizer and the model file, a removal
    expected = _files(tmp_path / "reference")
    for target in range(1, operations + 1):
        for when in ("before", "after"):
            run = tmp_path / f"killed-{target}-{when}"
            killed = _child(run, target, when)
            assert killed.returncode == 137, (target, when, killed.stderr)
            resumed = _child(run)
            assert resumed.returncode == 0, (target, when, resumed.stderr[-500:])
            # the same files, bit for bit: weights, optimizer state, kept checkpoints and the metrics log; no
            # temporary file or stale optimizer file is left behind
            assert _files(run) == expected, (target, when, sorted(_files(run)), sorted(expected))


def test_a_second_writer_is_refused_while_the_first_holds_the_run(tmp_path):
    with locked(tmp_path):
        with pytest.raises(RunLocked, match="in use by process"):
            train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False)
    assert not (tmp_path / MODEL_FILE).exists()
    train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False)    # released: the run proceeds
    assert (tmp_path / MODEL_FILE).exists()


def test_two_concurrent_trainings_into_one_directory_do_not_both_succeed(tmp_path):
    slow = dataclasses.replace(TCFG, steps=40)
    outcomes = []

    def run():
        try:
            train(CFG, slow, tmp_path, corpus=CORPUS, progress=False)
            outcomes.append("trained")
        except (RunLocked, FileExistsError) as e:
            outcomes.append(type(e).__name__)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) in (["RunLocked", "trained"], ["FileExistsError", "trained"])
    steps = [json.loads(line)["step"] for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert steps == list(range(1, 41))     # one run's log, not two interleaved


def test_a_failed_write_is_one_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import minisparse.checkpoint as ckpt
    train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False)
    before = _files(tmp_path)

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(CheckpointError, match="could not write .*No space left on device.*intact"):
        save_optimizer({"m": {}, "v": {}}, tmp_path / optimizer_file(TCFG.steps), step=TCFG.steps)
    assert _files(tmp_path) == before


def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path):
    train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False, until=2)
    stale = tmp_path / f".{optimizer_file(4)}.tmp-999999"      # what a writer killed mid-file leaves
    stale.write_bytes(b"half a file")
    live = tmp_path / f".c.json.tmp-{os.getpid()}"             # another process's write, still going on
    live.write_bytes(b"being written")
    train(CFG, TCFG, tmp_path, resume=True, corpus=CORPUS, progress=False)
    assert not stale.exists() and live.exists()


def test_resume_names_the_settings_that_differ_and_allows_a_new_learning_rate(tmp_path):
    train(CFG, dataclasses.replace(TCFG, steps=6), tmp_path, corpus=CORPUS, progress=False, until=4)
    with pytest.raises(ValueError, match=r"d_model: 16 -> 32.*seed: 0 -> 1"):
        train(dataclasses.replace(CFG, d_model=32), dataclasses.replace(TCFG, seed=1), tmp_path, resume=True,
              corpus=CORPUS, progress=False)
    lower = dataclasses.replace(TCFG, lr=5e-3)
    result = train(CFG, lower, tmp_path, resume=True, corpus=CORPUS, progress=False)
    assert result.step == TCFG.steps
    meta = read_checkpoint(tmp_path / MODEL_FILE)[2]
    assert json.loads(meta["train_config"])["lr"] == 5e-3
    assert json.loads(meta["lr_changes"]) == [[4, 5e-3]]           # the history is kept, not rewritten
    from minisparse.zoo import find_run
    assert find_run(CFG, lower, CORPUS.fingerprint, [tmp_path]) is None    # not a run of the lower-LR recipe
    train(CFG, lower, tmp_path / "clean", corpus=CORPUS, progress=False)
    assert find_run(CFG, lower, CORPUS.fingerprint, [tmp_path]) == tmp_path / "clean"


def test_damaged_lines_in_the_metrics_log_do_not_block_resume(tmp_path):
    train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False, until=4)
    with open(tmp_path / METRICS_FILE, "ab") as f:
        f.write(b'{"step": 5, "loss": \xff\xfe\n')
    train(CFG, TCFG, tmp_path, resume=True, corpus=CORPUS, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert steps == list(range(1, TCFG.steps + 1))


def test_a_second_reproduce_into_the_same_folder_is_refused_before_it_starts(tmp_path):
    from minisparse.reproduce import Experiment, Reproduction

    with locked(tmp_path):
        with pytest.raises(RunLocked, match="in use by process"):
            Reproduction(Experiment(preset="tiny", seeds=(0,), densities=(1.0,)), tmp_path, progress=False).run()
    assert not (tmp_path / "models").exists()
