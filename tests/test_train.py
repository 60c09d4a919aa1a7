"""Training: the schedule holds at every step, runs resume bit-identically, and divergence loses nothing."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from facts import facts  # tests/facts.py
from minisparse.checkpoint import read_checkpoint
from minisparse.config import ModelConfig, TrainConfig
from minisparse.numpy import NumpyTrainer
from minisparse.optim import densities_at
from minisparse.sparsity import k_at, min_axis
from minisparse.train import MODEL_FILE, TrainingDiverged, make_trainer, train

CFG = ModelConfig(vocab_size=256, n_ctx=16, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32)
TCFG = TrainConfig(steps=12, batch_size=4, lr=1e-2, weight_density=0.25, eval_every=6, eval_batches=2,
                   checkpoint_every=4, min_per_neuron=2)
TEXT = b"def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n" * 40
CORPUS = SimpleNamespace(train=np.frombuffer(TEXT, np.uint8), val=np.frombuffer(TEXT[::-1], np.uint8),
                         fingerprint="test-corpus")


def test_every_step_of_an_annealing_run_holds_exactly_the_scheduled_nonzeros():
    tcfg = dataclasses.replace(TCFG, steps=40)
    trainer = make_trainer("numpy", CFG, tcfg)
    rng = np.random.default_rng(0)
    seen_densities = set()
    for step in range(tcfg.steps):
        x = rng.integers(0, 256, (4, 16))
        trainer.step(x, np.roll(x, -1, axis=1), step)
        for name, density in densities_at(step, trainer.model.params, tcfg).items():
            w = trainer.model.params[name]
            axis = min_axis(name)
            assert np.count_nonzero(w) == k_at(w.shape, axis, density, tcfg.min_per_neuron), (step, name)
            per_neuron = np.count_nonzero(w, axis=1 - axis)
            assert per_neuron.min() >= min(tcfg.min_per_neuron, w.shape[1 - axis]), (step, name)
            seen_densities.add(round(density, 6))
    assert len(seen_densities) > 10, "the run should pass through the anneal, not jump to the target"


@pytest.mark.parametrize("threads", ["1", "2"])
def test_stop_and_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, monkeypatch, threads):
    monkeypatch.setenv("MINISPARSE_NUM_THREADS", threads)     # on two, each step's batch is shared between threads
    straight = train(CFG, TCFG, tmp_path / "straight", corpus=CORPUS, progress=False)
    train(CFG, TCFG, tmp_path / "resumed", corpus=CORPUS, progress=False, until=TCFG.steps // 2)
    assert read_checkpoint(tmp_path / "resumed" / MODEL_FILE)[2]["step"] == str(TCFG.steps // 2)
    resumed = train(CFG, TCFG, tmp_path / "resumed", corpus=CORPUS, progress=False, resume=True)
    a = read_checkpoint(tmp_path / "straight" / MODEL_FILE)[1]
    b = read_checkpoint(tmp_path / "resumed" / MODEL_FILE)[1]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert resumed.train_loss == straight.train_loss and resumed.val_loss == straight.val_loss


def test_a_run_killed_between_checkpoints_and_resumed_logs_every_step_once(tmp_path, monkeypatch):
    # killed during step 6, after its last checkpoint at step 4: steps 5 and 6 were logged and are redone on resume
    train(CFG, TCFG, tmp_path / "straight", corpus=CORPUS, progress=False)
    real_step = NumpyTrainer.step

    def killed(self, x, y, step):
        if step == 6:
            raise KeyboardInterrupt
        return real_step(self, x, y, step)

    monkeypatch.setattr(NumpyTrainer, "step", killed)
    with pytest.raises(KeyboardInterrupt):
        train(CFG, TCFG, tmp_path / "resumed", corpus=CORPUS, progress=False)
    assert [r["step"] for r in metrics(tmp_path / "resumed")] == [1, 2, 3, 4, 5, 6]
    monkeypatch.setattr(NumpyTrainer, "step", real_step)
    train(CFG, TCFG, tmp_path / "resumed", corpus=CORPUS, progress=False, resume=True)
    assert [r["step"] for r in metrics(tmp_path / "resumed")] == list(range(1, TCFG.steps + 1))
    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "straight")   # and the records are the same


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = NumpyTrainer.step

    def poisoned(self, x, y, step):
        if step == 6:
            self.model.params["lm_head.weight"][0, 0] = np.inf  # what a blow-up looks like
        return real_step(self, x, y, step)

    monkeypatch.setattr(NumpyTrainer, "step", poisoned)
    with pytest.raises(TrainingDiverged, match=facts("diverged", "step 6", "checkpoint")):
        train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False)
    cfg, params, meta = read_checkpoint(tmp_path / MODEL_FILE)
    assert meta["step"] == "4"
    assert all(np.isfinite(p).all() for p in params.values())
    monkeypatch.setattr(NumpyTrainer, "step", real_step)
    result = train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False, resume=True)
    assert result.step == TCFG.steps and np.isfinite(result.val_loss)


def test_resume_refuses_a_different_config_and_a_fresh_run_refuses_to_overwrite(tmp_path):
    train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False, until=4)
    with pytest.raises(ValueError, match=facts(str(tmp_path), "weight_density: 0.25 -> 0.5", "new output directory")):
        train(CFG, dataclasses.replace(TCFG, weight_density=0.5), tmp_path, corpus=CORPUS, progress=False,
              resume=True)
    with pytest.raises(ValueError, match=facts(str(tmp_path), "corpus", "other")):
        train(CFG, TCFG, tmp_path, corpus=SimpleNamespace(**{**vars(CORPUS), "fingerprint": "other"}),
              progress=False, resume=True)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(CFG, TCFG, tmp_path, corpus=CORPUS, progress=False)


def test_training_lowers_the_loss():
    trainer = make_trainer("numpy", CFG, dataclasses.replace(TCFG, steps=60))
    x = CORPUS.train[: 4 * 17].reshape(4, 17).astype(np.int64)
    losses = [trainer.step(x[:, :-1], x[:, 1:], s) for s in range(60)]
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_an_update_that_overflows_the_weights_is_reported_as_divergence():
    trainer = make_trainer("numpy", CFG, TCFG)
    trainer.model.params["lm_head.weight"][0, 0] = np.finfo(np.float32).max  # one Adam step pushes it past the top
    grads = {n: np.zeros_like(p) for n, p in trainer.model.params.items()}
    grads["lm_head.weight"][0, 0] = -1.0
    from minisparse.optim import optimizer_step
    with pytest.raises(FloatingPointError, match="overflowed the weights"):
        optimizer_step(trainer.model.params, grads, trainer.state, 5,
                       dataclasses.replace(TCFG, lr=1e33, weight_decay=0.0))
    with pytest.raises(ValueError, match=facts("shape", "'lm_head.weight'")):
        optimizer_step(trainer.model.params, {**grads, "lm_head.weight": np.zeros(3, np.float32)}, trainer.state, 5,
                       TCFG)


def test_task_examples_are_mixed_into_the_training_text_and_recorded(tmp_path):
    from minisparse.data import Corpus
    from minisparse.tasks import BUILTIN_TASKS, TASK_EXAMPLES_SEED, with_task_examples

    corpus = Corpus(root="test", train=np.frombuffer(TEXT, np.uint8), val=np.frombuffer(TEXT[::-1], np.uint8),
                    fingerprint="test-corpus", train_files=("a.py",), val_files=("b.py",))
    tcfg = dataclasses.replace(TCFG, steps=4, task_examples=3)
    train(CFG, tcfg, tmp_path, corpus=corpus, progress=False)
    meta = read_checkpoint(tmp_path / MODEL_FILE)[2]
    mixed = with_task_examples(corpus, BUILTIN_TASKS, 3, TASK_EXAMPLES_SEED)
    assert meta["corpus_fingerprint"] == mixed.fingerprint != corpus.fingerprint
    assert '"task_examples": 3' in meta["train_config"]
    # what was added: exactly 3 examples of each built-in task, each a train-template prompt and its right answer
    added = mixed.train.tobytes()[len(TEXT) + 1:].split(b"\0")
    assert len(added) == 3 * len(BUILTIN_TASKS) and np.array_equal(mixed.val, corpus.val)
    with pytest.raises(ValueError, match="task_examples"):
        TrainConfig(task_examples=-1)
