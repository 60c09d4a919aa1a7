"""The shipped zoo: every model in the package is the one its manifest describes, evaluates to the losses recorded when
it was shipped, fits the size budget, and lays out for `minisparse reproduce --reuse`; `build` ships a reproduce
folder's models compactly and exactly."""

import json
import shutil

import numpy as np
import pytest

from minisparse import zoo
from minisparse.checkpoint import CheckpointError, read_checkpoint
from minisparse.circuits.scorecard import SOLVED
from minisparse.config import preset
from minisparse.reproduce.experiment import Reproduction
from minisparse.reproduce.jobs import evaluate_job
from minisparse.reproduce.layout import Layout
from minisparse.reproduce.plan import Experiment, Run

BUDGET_BYTES = 15_000_000          # what the zoo may add to the repository, in all
NAMES = zoo.shipped_names()


def test_the_course_task_is_the_smallest_real_sparse_circuit_the_shipped_comparison_counts():
    from minisparse.lessons.models import course_task

    (matched,) = [e for e in zoo.manifest().values() if e["matched_to"] == "1in16-s0@3000"]
    counted = matched["comparison"]["per_task"]
    assert counted, "the shipped pair counts no task: the course has no task to read"
    smallest = min(counted, key=lambda t: counted[t]["sparse_edges"])
    assert course_task().name == smallest == "paren_or_bracket"      # the task the docs and lessons name
    for t in counted:                        # counted means solved by both, as recorded
        assert max(matched["task_loss"][t], zoo.provenance("1in16-s0@3000")["task_loss"][t]) <= SOLVED


def test_the_zoo_ships_the_headline_models_within_its_budget():
    finals = {"dense-s0@3000", "1in4-s0@3000", "1in16-s0@3000", "1in64-s0@3000"}
    assert finals <= set(NAMES)
    matched = [e for e in zoo.manifest().values() if e["matched_to"] == "1in16-s0@3000"]
    assert len(matched) == 1 and matched[0]["density"] == 1 and not matched[0]["final"]
    total = sum((zoo.FILES / e["file"]).stat().st_size for e in zoo.manifest().values())
    assert total <= BUDGET_BYTES
    for e in zoo.manifest().values():
        assert e["made_by"]["command"].startswith("minisparse reproduce") and len(e["made_by"]["commit"]) == 40
        assert e["val_curve"][-1][0] == e["step"]


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_model_evaluates_to_its_recorded_losses(name, tmp_path):
    entry = zoo.provenance(name)
    evals = evaluate_job(Experiment(), str(zoo.shipped_path(name)), str(tmp_path / "eval.json"))
    # losses are O(1) nats; float32 sums in another order (another CPU's BLAS kernel) move them by ~1e-6
    assert abs(evals["val_loss"] - entry["val_loss"]) < 1e-4
    assert evals["task_loss"].keys() == entry["task_loss"].keys()
    for task, loss in entry["task_loss"].items():
        assert abs(evals["task_loss"][task] - loss) < 1e-4, task


def test_a_shipped_file_that_differs_from_the_manifest_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "files"
    shutil.copytree(zoo.FILES, copy)
    monkeypatch.setattr("minisparse.zoo.packaged.FILES", copy)
    name = NAMES[0]
    path = copy / zoo.provenance(name)["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="differs from the one recorded"):
        zoo.shipped(name)
    with pytest.raises(KeyError, match="no shipped model 'dense-s9@1'"):
        zoo.shipped("dense-s9@1")


def test_unpacked_models_are_what_reproduce_reuse_needs(tmp_path):
    zoo.unpack(tmp_path)
    layout = Layout(tmp_path, preset("reproduce")[1].steps)
    for run in Experiment(seeds=(0,)).runs():            # reproduce's first seed: every density it trains
        assert layout.finished(run)
    matched = next(n for n, e in zoo.manifest().items() if e["matched_to"])
    assert layout.checkpoint(matched).is_file()
    assert f"dense-s0@{matched.split('@')[1]}" in layout.points(Run(1.0, 0))


def test_build_ships_a_finished_reproduce_exactly_and_compactly(tmp_path):
    from test_reproduce import tiny_experiment  # solved=10: every task counts as solved, so comparisons exist

    out = tmp_path / "reproduce"
    results = Reproduction(tiny_experiment(), out, progress=False, log=lambda *a: None).run()
    layout = Layout(out, preset("tiny")[1].steps)
    finals = [layout.final_point(Run(1.0, 0)), layout.final_point(Run(0.25, 0))]
    files = tmp_path / "files"
    entries = zoo.build(out, command="minisparse reproduce --test", commit="0" * 40, files=files)
    matched = results["matched"]["1in4-s0"]
    assert list(entries) == finals + ([] if matched in finals else [matched])
    shipped_names = [e["name"] for e in json.loads((files / "manifest.json").read_text())["models"]]
    assert shipped_names == list(entries)                 # each checkpoint shipped once
    assert entries[matched]["matched_to"] == "1in4-s0@60"
    assert entries[matched]["comparison"] == next(c["matched"] for c in results["comparisons"])
    for name, entry in entries.items():
        _, original, _ = read_checkpoint(layout.checkpoint(name))
        _, shipped, meta = read_checkpoint(files / entry["file"])
        for key, w in original.items():
            np.testing.assert_array_equal(shipped[key], w, err_msg=key)
        assert meta["format_version"] == "3" and entry["task_loss"] == results["evaluations"][name]["task_loss"]
        assert entry["val_curve"][-1][0] == entry["step"]
    sparse_bytes = (files / entries["1in4-s0@60"]["file"]).stat().st_size
    dense_bytes = (files / entries["dense-s0@60"]["file"]).stat().st_size
    assert sparse_bytes < 0.5 * dense_bytes           # the nonzeros and a bit per entry, not the zeros
