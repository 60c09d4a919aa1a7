"""The zoo's cache trains a model once, finds it again by what made it, and resumes an interrupted training."""

import dataclasses
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from minisparse import zoo
from minisparse.checkpoint import read_checkpoint
from minisparse.config import ModelConfig, TrainConfig
from minisparse.data import Corpus
from minisparse.tasks import with_task_examples
from minisparse.train import MODEL_FILE, train

CFG = ModelConfig(vocab_size=256, n_ctx=16, d_model=16, n_layer=1, n_head=1, d_head=8, d_mlp=32)
TCFG = TrainConfig(steps=6, batch_size=2, lr=1e-2, weight_density=0.25, eval_every=3, eval_batches=1,
                   checkpoint_every=3, min_per_neuron=1)
TEXT = b"def add(a, b):\n    return a + b\n" * 20
CORPUS = SimpleNamespace(train=np.frombuffer(TEXT, np.uint8), val=np.frombuffer(TEXT[::-1], np.uint8),
                         fingerprint="zoo-test-corpus")
CORPUS_WITH_FILES = Corpus(root="test", train=CORPUS.train, val=CORPUS.val, fingerprint="zoo-test-corpus",
                           train_files=("a.py",), val_files=("b.py",))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISPARSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _count_trainings(monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        return train(*args, **kwargs)

    monkeypatch.setattr(zoo.cache, "train", counting)
    return calls


def test_a_model_is_trained_once_then_loaded(monkeypatch, cache):
    calls = _count_trainings(monkeypatch)
    first = zoo.trained(CFG, TCFG, corpus=CORPUS, progress=False)
    second = zoo.trained(CFG, TCFG, corpus=CORPUS, progress=False)
    assert len(calls) == 1
    for name, w in first.params.items():
        np.testing.assert_array_equal(w, second.params[name], err_msg=name)
    run = zoo.trained_run(CFG, TCFG, corpus=CORPUS)
    assert run.parent == cache / "models" and run.name == zoo.model_key(CFG, TCFG, CORPUS.fingerprint)
    assert [r["step"] for r in zoo.metrics(run)] == list(range(1, TCFG.steps + 1))


def test_the_key_changes_with_every_input():
    base = zoo.model_key(CFG, TCFG, "a")
    assert zoo.model_key(CFG, TCFG, "a") == base
    assert zoo.model_key(dataclasses.replace(CFG, afrac=0.5), TCFG, "a") != base
    assert zoo.model_key(CFG, dataclasses.replace(TCFG, seed=1), "a") != base
    assert zoo.model_key(CFG, TCFG, "b") != base
    # a field added later, left at its default, does not move the key: the cached models stay where they are

    @dataclasses.dataclass(frozen=True)
    class Later(TrainConfig):
        new_knob: int = 0

    assert zoo.model_key(CFG, Later(**TCFG.to_dict()), "a") == base
    assert zoo.model_key(CFG, Later(**TCFG.to_dict(), new_knob=1), "a") != base


def test_an_interrupted_training_resumes(monkeypatch):
    target = zoo.cache_dir() / "models" / zoo.model_key(CFG, TCFG, CORPUS.fingerprint)
    train(CFG, TCFG, target, corpus=CORPUS, progress=False, until=3)       # stopped halfway
    calls = _count_trainings(monkeypatch)
    assert zoo.trained_run(CFG, TCFG, corpus=CORPUS, progress=False) == target
    assert calls == [True]
    assert read_checkpoint(target / MODEL_FILE)[2]["step"] == str(TCFG.steps)


def test_a_finished_run_elsewhere_is_used_and_a_different_one_is_not(tmp_path, monkeypatch):
    runs = tmp_path / "runs" / "reproduce"
    train(CFG, TCFG, runs / "nested" / "sparse", corpus=CORPUS, progress=False)
    train(CFG, dataclasses.replace(TCFG, seed=1), runs / "other-seed", corpus=CORPUS, progress=False)
    (runs / "junk").mkdir()
    (runs / "junk" / MODEL_FILE).write_bytes(b"not a checkpoint")
    calls = _count_trainings(monkeypatch)
    assert zoo.trained_run(CFG, TCFG, corpus=CORPUS, search=[tmp_path / "runs"]) == runs / "nested" / "sparse"
    assert calls == []
    monkeypatch.setenv("MINISPARSE_RUNS", str(tmp_path / "runs"))          # the default search reads it
    assert zoo.trained_run(CFG, TCFG, corpus=CORPUS) == runs / "nested" / "sparse"
    assert calls == []
    # a run stopped before its last step is not a finished model
    shutil.rmtree(runs / "nested")
    train(CFG, TCFG, runs / "half", corpus=CORPUS, progress=False, until=3)
    assert zoo.find_run(CFG, TCFG, CORPUS.fingerprint, [tmp_path / "runs"]) is None


def test_task_examples_are_appended_to_training_text_only():
    from minisparse.data import SEP
    from minisparse.tasks import get_task

    mixed = with_task_examples(CORPUS_WITH_FILES, ["while_return_true"], per_task=6, repeat=2, seed=3)
    assert mixed.val is CORPUS_WITH_FILES.val
    base = CORPUS_WITH_FILES.train.tobytes()
    added = mixed.train.tobytes()
    assert added.startswith(base + bytes([SEP]))
    examples = added[len(base) + 1:].split(bytes([SEP]))
    task = get_task("while_return_true")
    expected = sorted((ex.prompt + task.answers[ex.answer]).encode() for ex in task.examples(6, "train", 3))
    assert sorted(examples) == sorted(expected * 2)                          # train templates only, with their answers
    test_prompts = {ex.prompt.encode() for ex in task.examples(50, "test", 3)}
    assert not any(e[:-1] in test_prompts for e in examples)
    assert mixed.fingerprint != CORPUS_WITH_FILES.fingerprint
    again = with_task_examples(CORPUS_WITH_FILES, ["while_return_true"], 6, repeat=2, seed=3)
    assert again.fingerprint == mixed.fingerprint
    assert with_task_examples(CORPUS_WITH_FILES, ["while_return_true"], 6, repeat=2, seed=4).fingerprint \
        != mixed.fingerprint
