"""The check behind lesson 05's patching exercise: it passes a right `patch_restores`, and stops a wrong one with the
hint that names its mistake."""

import numpy as np
import pytest

from minisparse.circuits.masks import parse_node
from minisparse.circuits.patching import logit_diff, patch_nodes
from minisparse.lessons.exercises import ExerciseError, check_patch_restores
from minisparse.lessons.exercises_mechanism import _NODES, patching_case


def by_hand(model, pairs, node, positions=slice(None), normalise=True):
    """patch_restores written out: cache the clean run, hook the corrupt one, divide by the whole difference."""
    key, i = parse_node(node)
    clean_logits, clean = model.run_with_cache(pairs.clean, names=[key])

    def patch(value, key):
        value[:, positions, i] = clean[key][:, positions, i]
        return value

    corrupt = logit_diff(model.forward(pairs.corrupt), pairs).mean()
    change = logit_diff(model.run_with_hooks(pairs.corrupt, {key: patch}), pairs).mean() - corrupt
    return change / (logit_diff(clean_logits, pairs).mean() - corrupt) if normalise else change


def test_the_check_passes_the_library_and_a_hand_written_solution(capsys):
    check_patch_restores(lambda model, pairs, node: patch_nodes(model, pairs, [node]))
    check_patch_restores(by_hand)
    assert capsys.readouterr().out.count("✓ patch_restores") == 2


def test_the_case_is_one_where_each_node_matters_and_where_mistakes_show():
    model, pairs = patching_case()
    gap = logit_diff(model.forward(pairs.clean), pairs).mean() - logit_diff(model.forward(pairs.corrupt), pairs).mean()
    assert gap > 0.1                                  # the clean prompts lean to the right answer more than the corrupt
    shares = [patch_nodes(model, pairs, [n]) for n in _NODES]
    assert all(abs(s) > 0.005 for s in shares)        # a function returning 0 fails every case
    last_only = [by_hand(model, pairs, n, positions=-1) for n in _NODES]
    assert sum(not np.isclose(a, b) for a, b in zip(shares, last_only)) >= 3


@pytest.mark.parametrize("wrong, match", [
    (lambda m, p, n: by_hand(m, p, n, normalise=False), "divide it by LD_clean − LD_corrupt"),
    (lambda m, p, n: by_hand(m, p, n, positions=-1), "patched the last position only"),
    (lambda m, p, n: 1 - by_hand(m, p, n), "LD_patched − LD_corrupt"),
    (lambda m, p, n: "half", "must return a number"),
])
def test_a_wrong_patch_restores_is_stopped_with_its_hint(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        check_patch_restores(wrong)


def test_a_patch_restores_that_changes_the_pairs_is_stopped():
    def in_place(model, pairs, node):
        share = patch_nodes(model, pairs, [node])
        pairs.corrupt[:] = pairs.clean                 # "patch" the prompts themselves
        return share

    with pytest.raises(ExerciseError, match="changed pairs.corrupt"):
        check_patch_restores(in_place)


def test_a_stub_is_a_reminder_not_a_crash():
    def stub(model, pairs, node):
        raise NotImplementedError

    with pytest.raises(ExerciseError, match="not written yet"):
        check_patch_restores(stub)
