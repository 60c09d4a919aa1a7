"""`minisparse reproduce` end to end on tiny models, matched-loss selection, resuming after a kill, user tasks, and
reading a circuit node by node (`minisparse.circuits.explain`) on a model with a planted feature."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minisparse import reproduce as rep
from minisparse import tasks
from minisparse.circuits import Circuit, TaskData, task_loss, task_losses
from minisparse.circuits.explain import explain, show_context, top_contexts
from minisparse.circuits.scorecard import node_jaccard, verdict
from minisparse.cli import main
from minisparse.config import ModelConfig, preset
from minisparse.numpy import GPT
from minisparse.params import init_params, site_sizes
from minisparse.reproduce import experiment as stages
from minisparse.reproduce import pool, report

TASKS = ("single_double_quote", "while_return_true")


def tiny_experiment(**kw) -> rep.Experiment:
    # solved=10: every task counts as solved, so the whole scorecard runs even on models trained for seconds
    return rep.Experiment(**{"preset": "tiny", "densities": (1.0, 0.25), "seeds": (0,), "headline_density": 0.25,
                             "tasks": TASKS, "prune_seeds": 2, "prune_steps": 4, "solved": 10.0, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    results = rep.Reproduction(tiny_experiment(), out, progress=False, log=lambda *a: None).run()
    return out, results


def test_reproduce_end_to_end(finished):
    out, results = finished
    assert json.loads((out / "results.json").read_text())["headline"] == results["headline"]
    finals = ["dense-s0@60", "1in4-s0@60"]
    assert set(finals) <= set(results["circuits"])
    for point in finals:
        for t in TASKS:
            card = results["circuits"][point][t]
            assert set(card["circuit"]["controls"]) == {"random_model", "shuffled_labels"}
            assert "zero_ablation" in card and len(card["seeds"]) == 1 and 0 <= card["stability"] <= 1
            saved = Circuit.load(out / "circuits" / point / f"{t}.circuit.json")
            assert saved.n_edges == card["circuit"]["n_edges"]
    # the sparse model's circuit edges are nonzero weights: never more than the dense model's count of every entry
    # between the same nodes, and the comparison reports exactly the tasks it counts or excludes
    (comparison,) = results["comparisons"]
    for kind in ("matched", "final"):
        m = comparison[kind]
        assert sorted(m["tasks"] + list(m["excluded"])) == sorted(TASKS)
        for numbers in m["per_task"].values():
            assert numbers["ratio"] == numbers["dense_edges"] / max(1, numbers["sparse_edges"])
    text = (out / "results.md").read_text()
    for point in finals:
        assert f"| {point} |" in text
    # every kept checkpoint was evaluated, each with every task
    assert {p.split("@")[1] for p in results["evaluations"]} == {"20", "40", "60"}
    assert all(set(e["task_loss"]) == set(e["task_loss_se"]) == set(TASKS) for e in results["evaluations"].values())
    assert all(0 < se < 1 for e in results["evaluations"].values() for se in e["task_loss_se"].values())


def test_the_report_flags_a_circuit_that_keeps_most_of_the_model(finished):
    _, results = finished
    results = copy.deepcopy(results)
    total = sum(site_sizes(preset("tiny")[0]).values())
    cards = results["circuits"]["1in4-s0@60"]
    cards["single_double_quote"]["circuit"]["n_nodes"] = total // 2 + 1          # just over half
    cards["while_return_true"]["circuit"]["n_nodes"] = total // 2                 # half: not flagged
    lines = report.results_markdown(results).splitlines()
    row = {t: next(line for line in lines if line.startswith(f"| 1in4-s0@60 | {t} |")) for t in TASKS}
    share = (total // 2 + 1) / total
    assert row["single_double_quote"].endswith(f"(keeps {share:.0%} of the nodes: the model, not a circuit) |")
    assert "not a circuit" not in row["while_return_true"]


def test_matched_loss_picks_the_dense_checkpoint_closest_in_validation_loss(tmp_path):
    experiment = tiny_experiment(seeds=(0, 1))
    r = rep.Reproduction(experiment, tmp_path, progress=False)
    evals = {"dense-s0@20": 3.0, "dense-s0@40": 2.5, "dense-s0@60": 2.0, "1in4-s0@60": 2.6,
             "dense-s1@20": 2.9, "dense-s1@40": 2.7, "dense-s1@60": 2.55, "1in4-s1@60": 2.6}
    matched = r.matched({p: {"val_loss": v} for p, v in evals.items()})
    # seed 0: |2.5 - 2.6| is the smallest; seed 1 is matched only with seed 1's dense run, whatever seed 0 offers
    assert matched == {"1in4-s0": "dense-s0@40", "1in4-s1": "dense-s1@60"}
    assert rep.closest_loss(1.0, {"a": 0.5, "b": 1.5}) == "a"       # a tie goes to the earlier checkpoint


def test_the_prune_plan_gives_each_circuit_the_scorecard_it_needs(tmp_path):
    r = rep.Reproduction(tiny_experiment(seeds=(0, 1), tasks=("single_double_quote",)), tmp_path, progress=False)
    solved, unsolved = {"single_double_quote": 0.1}, {"single_double_quote": 11.0}   # the bar is 10 here
    evals = {"dense-s0@60": solved, "1in4-s0@60": solved, "dense-s1@60": solved, "1in4-s1@60": solved,
             "dense-s0@20": solved}
    plan = r.prune_plan({p: {"task_loss": v} for p, v in evals.items()}, {"1in4-s0": "dense-s0@20"})
    assert plan == {("dense-s0@60", "single_double_quote"): "full", ("1in4-s0@60", "single_double_quote"): "full",
                    ("dense-s1@60", "single_double_quote"): "circuit",       # a later seed's dense model: no verdict
                    ("1in4-s1@60", "single_double_quote"): "controls",      # a later seed's sparse one: the verdict
                    ("dense-s0@20", "single_double_quote"): "circuit"}      # a matched checkpoint
    evals["1in4-s0@60"] = evals["dense-s0@20"] = unsolved
    plan = r.prune_plan({p: {"task_loss": v} for p, v in evals.items()}, {"1in4-s0": "dense-s0@20"})
    assert ("1in4-s0@60", "single_double_quote") not in plan                # not solved: nothing to prune
    assert ("dense-s0@20", "single_double_quote") not in plan
    assert plan["dense-s0@60", "single_double_quote"] == "full"


def test_a_comparison_counts_only_tasks_both_models_solve_with_a_real_sparse_circuit_smaller_than_its_model():
    real = {"full_loss": 0.1, "circuit": {"reached_target": True, "sufficiency": 0.1, "necessity": 1.0, "n_edges": 50,
                                          "n_nodes": 20, "controls": {"random_model": {"sufficiency": 0.7},
                                                                      "shuffled_labels": {"sufficiency": 0.7}}}}
    dense = {"full_loss": 0.1, "circuit": {"reached_target": True, "n_edges": 800, "n_nodes": 50}}
    fake = {**real, "circuit": {**real["circuit"], "sufficiency": 0.6}}       # does not generalise
    whole = {**dense, "circuit": {**dense["circuit"], "n_nodes": 51}}         # more than half of 100 nodes
    loss = {t: 0.1 for t in "abcdef"}
    evals = {"D": {"task_loss": {**loss, "b": 0.5}}, "S": {"task_loss": {**loss, "c": 0.5}}}
    cards = {"D": {"a": dense, "c": dense, "d": {**dense, "circuit": {**dense["circuit"], "n_edges": 200}},
                   "e": whole, "f": dense},
             "S": {"a": real, "b": real, "d": fake, "e": real, "f": {**real, "circuit": {**real["circuit"],
                                                                                           "n_nodes": 51}}}}
    got = rep.compare(evals, cards, "D", "S", list("abcdef"), solved=0.3, n_total_nodes=100)
    assert got["tasks"] == ["a"] and got["ratio"] == pytest.approx(16.0)
    assert got["excluded"]["b"].startswith("dense model does not solve it (0.50)")
    assert got["excluded"]["c"].startswith("sparse model does not solve it (0.50)")
    assert "sufficiency 0.60" in got["excluded"]["d"]
    assert got["excluded"]["e"] == "dense circuit keeps 51 of 100 nodes: the model, not a circuit"
    assert got["excluded"]["f"] == "sparse circuit keeps 51 of 100 nodes: the model, not a circuit"
    # exactly half is still a circuit
    half = {**dense, "circuit": {**dense["circuit"], "n_nodes": 50}}
    assert rep.compare(evals, {**cards, "D": {**cards["D"], "e": half}}, "D", "S", ["e"], 0.3, 100)["tasks"] == ["e"]


def test_a_task_loss_within_two_standard_errors_of_the_line_is_marked_borderline():
    assert report._loss_cell(0.31, 0.04, 0.3) == "~0.31 ± 0.04"
    assert report._loss_cell(0.20, 0.04, 0.3) == "0.20 ± 0.04"
    assert report._loss_cell(0.22, None, 0.3) == "0.22"     # an evaluation cached before the standard errors


def test_task_losses_are_the_per_prompt_terms_of_the_task_loss():
    cfg = ModelConfig(vocab_size=256, n_ctx=32, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=32)
    model = GPT(cfg, seed=1)
    data = TaskData.from_task(tasks.get_task("single_double_quote"), 16, cfg.n_ctx, "test", 0)
    per_prompt = task_losses(model, data)
    assert per_prompt.shape == (16,) and (per_prompt > 0).all()
    assert task_loss(model, data) == pytest.approx(per_prompt.mean(), rel=1e-12)
    last = model.forward(data.idx)[:, -1].astype(np.float64)
    a0, a1 = data.answer_ids
    right, wrong = np.where(data.labels == 0, a0, a1), np.where(data.labels == 0, a1, a0)
    margin = last[np.arange(16), right] - last[np.arange(16), wrong]
    assert per_prompt == pytest.approx(np.log1p(np.exp(-margin)), rel=1e-9)      # -log σ(right − wrong)


def test_a_killed_reproduce_resumes_without_redoing_finished_work(tmp_path, monkeypatch):
    experiment = tiny_experiment()
    calls = {"prune": 0, "train": 0}
    real_prune, real_train = rep.prune_job, rep.train_job

    def dying_prune(*args):
        if calls["prune"] == 2:
            raise KeyboardInterrupt("killed")
        calls["prune"] += 1
        return real_prune(*args)

    monkeypatch.setattr(stages, "prune_job", dying_prune)
    with pytest.raises(KeyboardInterrupt):
        rep.Reproduction(experiment, tmp_path, progress=False, log=lambda *a: None).run()
    assert not (tmp_path / "results.json").exists()
    done = sorted(p.relative_to(tmp_path) for p in (tmp_path / "circuits").rglob("*.json") if ".circuit" not in p.name)
    assert len(done) == 2

    def counting(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    calls["prune"] = 0
    monkeypatch.setattr(stages, "prune_job", counting("prune", real_prune))
    monkeypatch.setattr(stages, "train_job", counting("train", real_train))
    results = rep.Reproduction(experiment, tmp_path, progress=False, log=lambda *a: None).run()
    n_jobs = sum(len(by_task) for by_task in results["circuits"].values())
    assert calls == {"train": 0, "prune": n_jobs - 2}
    # and a third run redoes nothing at all
    calls.update(prune=0, train=0)
    rep.Reproduction(experiment, tmp_path, progress=False, log=lambda *a: None).run()
    assert calls == {"train": 0, "prune": 0}


def test_a_user_defined_task_runs_through_reproduce_and_prune(finished, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tasks.task, "_REGISTRY", dict(tasks.task._REGISTRY))
    monkeypatch.setattr(tasks.task, "_LOADED_FILES", {})
    task_file = tmp_path / "mytasks.py"
    task_file.write_text(
        "from minisparse.tasks import Task, fill, register\n"
        "register(Task('is_or_eq', 'x is None vs x == 0', answers=('N', '0'),\n"
        "              templates={'train': ['if {name} {op} '], 'test': ['while {name} {op} ']},\n"
        "              make=lambda template, answer, rng: fill(template, rng, op=('is', '==')[answer]), max_len=24))\n")
    out, _ = finished
    checkpoint = out / "models" / "1in4-s0" / "model.safetensors"
    assert main(["--tasks-from", str(task_file), "prune", "--task", "is_or_eq", "--checkpoint", str(checkpoint),
                 "--steps", "3", "--no-controls", "--json", str(tmp_path / "c.json")]) == 0
    assert Circuit.load(tmp_path / "c.json").task == "is_or_eq"
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "models").symlink_to(out / "models")       # the trained models, reused
    got = rep.Reproduction(tiny_experiment(tasks=("is_or_eq",), task_files=(str(task_file),)), tmp_path / "rep",
                           progress=False, log=lambda *a: None).run(reuse=True)
    assert set(got["circuits"]["1in4-s0@60"]) == {"is_or_eq"}


def test_an_unknown_task_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(KeyError, match="no_such_task"):
        tiny_experiment(tasks=("no_such_task",))
    assert main(["reproduce", "--preset", "tiny", "--task", "no_such_task", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_reuse_refuses_when_models_are_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="dense-s0"):
        rep.Reproduction(tiny_experiment(), tmp_path, progress=False).run(reuse=True)


def test_scorecard_verdict_and_stability():
    circuit = {"reached_target": True, "sufficiency": 0.1, "necessity": 1.0,
               "controls": {"random_model": {"sufficiency": 0.7}, "shuffled_labels": {"sufficiency": 0.9}}}
    assert verdict(0.1, circuit) == (True, "real")
    assert not verdict(0.5, circuit)[0]                                               # model cannot do the task
    assert not verdict(0.1, {**circuit, "sufficiency": 0.4})[0]                       # does not generalise
    assert not verdict(0.1, {**circuit, "necessity": 0.5})[0]                         # ablating it changes little
    assert not verdict(0.1, {**circuit, "controls": {}})[0]                           # no controls, no verdict
    fake = {"random_model": {"sufficiency": 0.7}, "shuffled_labels": {"sufficiency": 0.2}}
    assert "shuffled_labels" in verdict(0.1, {**circuit, "controls": fake})[1]       # a control does as well
    assert node_jaccard([{1, 2}, {1, 2}]) == 1.0
    assert node_jaccard([{1, 2}, {2, 3}, {1, 2}]) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)


# ----------------------------------------------------------------------------------------------------------------------
# explain: a planted feature


def planted_model(channel: int, byte: str):
    """A tiny model whose layer-0 residual channel `channel` is large for `byte` and exactly 0 for every other byte:
    node L0.attn_in[channel] is a "`byte` detector" by construction."""
    cfg = ModelConfig(vocab_size=256, n_ctx=32, d_model=32, n_layer=1, n_head=2, d_head=8, d_mlp=64)
    params = init_params(cfg, 0, np.float64)
    params["wte.weight"][:, channel] = 0.0
    params["wte.weight"][ord(byte), channel] = 5.0
    return GPT(cfg, params=params)


def test_explain_finds_a_planted_feature():
    model = planted_model(channel=3, byte="q")
    period = "the quick brown fox jumps over. "          # 32 bytes, one 'q': every window of 32 bytes holds one
    assert len(period) == 32 and period.count("q") == 1
    text = np.frombuffer((period * 40).encode(), dtype=np.uint8)
    circuit = Circuit(task="single_double_quote", nodes=["L0.attn_in[3]", "L0.attn_in[4]"], edges=[], task_loss=0.0,
                      sufficiency=0.0, necessity=0.0, settings={"n_eval": 8, "ablation": "mean"})
    explanations = explain(model, circuit, tasks.get_task("single_double_quote"), n_contexts=4, n_windows=8, data=text)
    detector, other = explanations
    assert detector.node == "L0.attn_in[3]" and len(detector.contexts) == 4
    assert all(context.endswith("q") and act > 0 for context, act in detector.contexts)
    assert detector.firing_rate == pytest.approx(1 / 32)
    assert all(not context.endswith("q") for context, _ in other.contexts)      # a node that is not the detector
    assert show_context("a\nq") == "…a⏎⟦q⟧"


def test_top_contexts_of_a_node_that_never_fires():
    model = planted_model(channel=3, byte="\x01")       # byte 1 never occurs in the text
    text = np.frombuffer(b"abc " * 64, dtype=np.uint8)
    contexts, rates = top_contexts(model, ["L0.attn_in[3]"], n_windows=4, data=text)
    assert contexts["L0.attn_in[3]"] == [] and rates["L0.attn_in[3]"] == 0.0


def _worker_threads(barrier):
    barrier.wait(timeout=60)    # both jobs wait for each other: they run at once, so on two different workers
    return os.getpid(), os.environ.get("OPENBLAS_NUM_THREADS")


def test_every_worker_runs_one_blas_thread_and_the_environment_is_restored(monkeypatch):
    import multiprocessing

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with multiprocessing.Manager() as manager, pool.worker_pool(2) as workers:
        barrier = manager.Barrier(2)
        seen = [f.result() for f in [workers.submit(_worker_threads, barrier) for _ in range(2)]]
    assert len({pid for pid, _ in seen}) == 2 and all(threads == "1" for _, threads in seen)
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_workers_end_when_reproduce_is_killed(tmp_path):
    # a reproduce killed from outside (SIGKILL, no cleanup) must not leave workers training or pruning for nobody
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, time\n"
        "from minisparse.reproduce.pool import worker_pool\n"
        "if __name__ == '__main__':\n"
        "    with worker_pool(1) as pool:\n"
        "        print(pool.submit(os.getpid).result(), flush=True)\n"
        "        pool.submit(time.sleep, 60)\n"
        "        time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(worker, 0)                               # alive while its parent is
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the worker outlived its killed parent by 10 s")


def test_the_report_writes_a_viewer_page_for_every_real_circuit_and_the_best_ones_causal_tests(finished, tmp_path,
                                                                                                monkeypatch):
    out, results = finished
    results = copy.deepcopy(results)
    layout = rep.Layout(tmp_path, 60)
    (tmp_path / "models").symlink_to(out / "models")                   # the trained models, reused
    point, task = "1in4-s0@60", "single_double_quote"
    circuit = Circuit.load(out / "circuits" / point / f"{task}.circuit.json")
    kept = set(circuit.nodes[:6])                                       # a small circuit keeps the test quick
    circuit.nodes = circuit.nodes[:6]
    circuit.edges = [e for e in circuit.edges if e[0] in kept and e[1] in kept]
    circuit.to_json(layout.circuit_file(point, task))
    card = results["circuits"][point][task]
    card["full_loss"] = 0.1                                     # made to pass the verdict: the report's rule, not ours
    fail = results["experiment"]["solved"] + 1                 # a control that does not do the task
    card["circuit"].update(reached_target=True, sufficiency=0.1, necessity=1.0,
                           controls={"random_model": {"sufficiency": fail}, "shuffled_labels": {"sufficiency": fail}})
    assert verdict(card["full_loss"], card["circuit"], results["experiment"]["solved"])[0]
    (comparison,) = results["comparisons"]                      # and counted, so it is the best circuit to read
    comparison["matched"].update(tasks=[task], ratio=2.0, per_task={task: {"dense_edges": 12, "sparse_edges": 6,
                                                                             "ratio": 2.0}})
    report.write_report(results, layout)
    page = layout.viewer_file(point, task).read_text()
    assert page.startswith("<!DOCTYPE html>") and f'"title": "{task}: 6 nodes' in page
    from minisparse.checkpoint import load
    from minisparse.circuits.viewer import viewer_data, viewer_html
    from minisparse.tasks import get_task
    model = load(layout.checkpoint(point))                       # the reading the report shares: the page, as alone
    assert page == viewer_html(viewer_data(model, Circuit.load(layout.circuit_file(point, task)), get_task(task)))
    assert [p.name for p in (tmp_path / "circuits").rglob("*.html")] == [f"{task}.html"]   # none for the others
    explained = (tmp_path / "explain.md").read_text()
    assert explained.startswith(f"# {task} on {point}: 6 nodes")
    assert "## Where its heads look" in explained and "## Causal tests" in explained
    assert "activation patching" in explained
    assert (tmp_path / "circuit.png").read_bytes()[:4] == b"\x89PNG"
    assert f"The smallest real sparse circuit: `{task}` on `{point}`" in (tmp_path / "results.md").read_text()
    # a second report (a resumed run) keeps the page it wrote instead of reading every circuit again
    monkeypatch.setattr("minisparse.circuits.viewer.write_viewer", lambda *a: pytest.fail("page rebuilt"))
    report.write_report(results, layout)


def test_the_longer_recipe_of_the_docs_runs_at_tiny_scale(tmp_path, monkeypatch):
    # docs/results.md, "A longer recipe": a preset registered at run time, with more steps and more task text
    import dataclasses

    from minisparse.config import PRESETS
    monkeypatch.setitem(PRESETS, "tiny-long", (PRESETS["tiny"][0],
                                               dataclasses.replace(PRESETS["tiny"][1], steps=80, task_examples=50)))
    results = rep.Reproduction(rep.Experiment(preset="tiny-long", densities=(1.0, 0.25), seeds=(0,),
                                              tasks=("single_double_quote",), prune_steps=3), tmp_path, jobs=1,
                               progress=False, log=lambda *a: None).run()
    assert sorted(results["evaluations"]) == [f"{run}-s0@{step}" for run in ("1in4", "dense")
                                              for step in (20, 40, 60, 80)]
    assert results["preset"]["train"]["task_examples"] == 50


def test_the_headline_pair_gets_its_frontier_over_targets_and_its_disjoint_circuits(finished, tmp_path):
    out, results = finished
    results = copy.deepcopy(results)
    (comparison,) = results["comparisons"]
    matched = comparison["matched"]            # tiny models' circuits rarely pass the scorecard: count one by hand
    matched["tasks"], matched["ratio"], matched["per_task"] = ["while_return_true"], 3.0, {
        "while_return_true": {"dense_edges": 9, "sparse_edges": 3, "ratio": 3.0}}
    reproduction = rep.Reproduction(tiny_experiment(), out, progress=False, log=lambda *a: None)
    beyond = reproduction.beyond(results)
    pair = (matched["sparse"], matched["dense"])
    assert set(beyond["targets"]) == {"while_return_true"} and set(beyond["targets"]["while_return_true"]) == set(pair)
    for frontier in beyond["targets"]["while_return_true"].values():
        assert [f["target"] for f in frontier] == [0.3, 0.2, 0.15, 0.1, 0.05]
    assert beyond["redundancy"]["task"] == "while_return_true" and set(beyond["redundancy"]["circuits"]) == set(pair)
    for point in pair:                                        # each cached in its own file, read back alike
        assert json.loads((out / "circuits" / point / "while_return_true.targets.json").read_text()) == \
            beyond["targets"]["while_return_true"][point]
    text = report.results_markdown({**results, **beyond})
    assert "## Circuit size against the pruning target" in text
    assert "## Disjoint circuits for `while_return_true`" in text
    matched["tasks"] = []                                     # nothing counted: nothing further to compute
    assert reproduction.beyond(results) == {"targets": {}, "redundancy": {}}
