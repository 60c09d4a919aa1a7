"""The course's shared pieces (minisparse/lessons/models.py): its pruning settings, and its circuit pruned once."""

import pytest

from minisparse.circuits import prune_with_controls
from minisparse.config import ModelConfig
from minisparse.lessons import models
from minisparse.numpy import GPT
from minisparse.reproduce.plan import Experiment
from minisparse.tasks import get_task

CFG = ModelConfig(vocab_size=256, n_ctx=48, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=32)
TASK = get_task("single_double_quote")


def test_the_course_prunes_as_reproduce_does():
    assert models.prune_settings() == {"steps": Experiment().prune_steps, "seed": 0}


def test_the_course_circuit_is_pruned_once_and_read_back_after(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISPARSE_CACHE", str(tmp_path))
    model = GPT(CFG, seed=4)
    first = models.course_circuit(model, TASK, fast=True)
    fresh = prune_with_controls(model, TASK, **models.prune_settings(fast=True))
    assert (first.nodes, first.edges, first.controls) == (fresh.nodes, fresh.edges, fresh.controls)

    def pruned(*args, **kwargs):
        raise LookupError("pruned again")

    monkeypatch.setattr(models, "prune_with_controls", pruned)
    again = models.course_circuit(model, TASK, fast=True)                      # read back: not pruned again
    assert (again.nodes, again.edges, again.controls) == (first.nodes, first.edges, first.controls)
    for other in ({"controls": ("shuffled_labels",)}, {"fast": False}):       # another key: pruned
        with pytest.raises(LookupError):
            models.course_circuit(model, TASK, **{"fast": True, **other})
    with pytest.raises(LookupError):
        models.course_circuit(GPT(CFG, seed=5), TASK, fast=True)
