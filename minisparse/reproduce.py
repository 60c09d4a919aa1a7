"""`minisparse reproduce`: the paper's core experiment in miniature, in one resumable command.

Gao et al. (2025) train transformers with most weights held at zero, prune each to the circuit of a task, and find the
circuits many times smaller than a dense model's at the same pretraining loss. Here, on the stdlib corpus:

1. train     dense and weight-sparse models of one preset (densities 1, 1/4, 1/16, 1/64 with the first seed; dense
             and the headline density 1/16 with every seed). Every run keeps its checkpoints along training.
2. evaluate  every kept checkpoint: validation loss, and the full model's held-out loss on every task.
3. match     each sparse model with the dense checkpoint of the same seed whose validation loss is closest to its own.
4. prune     every task on every final model and on every matched dense checkpoint. The circuits of tasks a final
             model solves get the whole scorecard (`minisparse.circuits.scorecard`): both controls, zero instead of
             mean ablation, and more pruning seeds for stability.
5. report    results.json, results.md, frontier.png, per_task.png, and the best sparse circuit drawn (circuit.png) and
             read node by node (explain.md), see `minisparse.report`.

Everything is cached under `out`: each run in its training directory (training resumes from its last checkpoint),
each evaluation and each scorecard in a JSON file of its own, written atomically. Killed at any point, the same command
continues where it stopped; nothing finished is redone. With `jobs` > 1 independent runs and prunes go to that many
worker processes, one BLAS thread each (on a 2-core laptop, two single-threaded processes beat one with two threads).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import load, read_checkpoint
from .circuits import Circuit, TaskData, prune, run_controls, task_losses
from .circuits.prune import N_EVAL, ablation_means
from .circuits.scorecard import SOLVED, is_whole_model, node_jaccard, verdict
from .config import PRESETS, preset
from .data import eval_batches, load_corpus
from .numpy.layers import cross_entropy_forward
from .params import site_sizes
from .report import geomean, write_report
from .rundir import METRICS_FILE, MODEL_FILE, kept_checkpoint_file, kept_checkpoints, locked, write_json_atomic
from .tasks import get_task, list_tasks, load_task_file
from .train import train

EVAL_BATCHES = 32        # validation batches (of 16 windows) behind every reported validation loss


# ----------------------------------------------------------------------------------------------------------------------
# What to run


@dataclass(frozen=True)
class Run:
    """One training run: a density and a seed. Its name is its directory under out/models."""

    density: float
    seed: int

    @property
    def label(self) -> str:
        return "dense" if self.density == 1 else f"1/{round(1 / self.density)}"

    @property
    def name(self) -> str:
        return ("dense" if self.density == 1 else f"1in{round(1 / self.density)}") + f"-s{self.seed}"


@dataclass(frozen=True)
class Experiment:
    """Which models to train, which tasks to prune, and how.

    densities: target weight densities, each trained with the first seed; must include 1 (the dense reference).
    seeds: training seeds; the seeds after the first train only dense and `headline_density` (the headline's spread).
    tasks: task names (built-in, or registered by `task_files`); empty means every registered task.
    task_files: Python files that register user-defined tasks (`minisparse.tasks.load_task_file`), loaded in every
        process that prunes.
    prune_seeds: pruning seeds per scorecard (stability is the node Jaccard between their circuits).
    prune_steps: Adam steps on the node masks per prune.
    solved: held-out full-model task loss at or below which a model counts as solving a task.
    """

    preset: str = "reproduce"
    densities: tuple[float, ...] = (1.0, 1 / 4, 1 / 16, 1 / 64)
    seeds: tuple[int, ...] = (0, 1, 2)
    headline_density: float = 1 / 16
    tasks: tuple[str, ...] = ()
    task_files: tuple[str, ...] = ()
    prune_seeds: int = 3
    prune_steps: int = 100
    solved: float = SOLVED
    backend: str = "numpy"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known presets are {sorted(PRESETS)}")
        if 1.0 not in self.densities or not all(0 < d <= 1 for d in self.densities):
            raise ValueError(f"densities must lie in (0, 1] and include 1 (the dense reference), got {self.densities}")
        if not self.seeds or self.prune_seeds < 1 or self.prune_steps < 1:
            raise ValueError("reproduce needs at least one training seed, one pruning seed and one pruning step")
        self.load_tasks()
        for name in self.tasks:
            get_task(name)      # an unknown name is refused now, with the known ones listed, not after training

    def load_tasks(self) -> None:
        """Register the user's tasks in this process (a worker starts without them); a file is run once."""
        for path in self.task_files:
            load_task_file(path)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.tasks or tuple(list_tasks())

    def runs(self) -> list[Run]:
        # dense and the headline density first (the headline needs them), then the other densities, then more seeds
        first, rest = self.seeds[0], self.seeds[1:]
        spread = [d for d in (1.0, self.headline_density) if d in self.densities]
        others = [d for d in sorted(self.densities, reverse=True) if d not in spread]
        return [Run(d, first) for d in spread + others] + [Run(d, s) for s in rest for d in spread]


# ----------------------------------------------------------------------------------------------------------------------
# Files. A "point" is one kept checkpoint of one run, named "<run>@<step>".


def closest_loss(target: float, candidates: dict[str, float]) -> str:
    """The key of `candidates` ({point: validation loss}) whose loss is closest to `target`; ties go to the earlier
    point in order (fewer training steps)."""
    return min(candidates, key=lambda p: abs(candidates[p] - target))


# ----------------------------------------------------------------------------------------------------------------------
# The jobs: module-level functions of plain arguments, so worker processes can run them.


def train_job(experiment: Experiment, run: Run, run_dir: str, progress: bool = False) -> None:
    model_cfg, train_cfg = preset(experiment.preset)
    cfg = dataclasses.replace(train_cfg, weight_density=run.density, seed=run.seed)
    run_dir = Path(run_dir)
    train(model_cfg, cfg, run_dir, backend=experiment.backend, resume=(run_dir / MODEL_FILE).exists(),
          keep_checkpoints=True, progress=progress)


def evaluate_job(experiment: Experiment, checkpoint: str, path: str) -> dict:
    """Validation loss (nats/byte) and the full model's held-out loss on every task, saved to `path`."""
    experiment.load_tasks()
    model = load(checkpoint, backend=experiment.backend)
    cfg = model.config
    batches = eval_batches(load_corpus().val, 16, cfg.n_ctx, EVAL_BATCHES)
    logits = (np.asarray(model.forward(x)) for x, _ in batches)
    val = float(np.mean([cross_entropy_forward(z.reshape(y.size, -1), y.reshape(-1))[0]
                         for z, (_, y) in zip(logits, batches)]))
    losses = {name: task_losses(model, TaskData.from_task(get_task(name), N_EVAL, cfg.n_ctx, "test", 0))
              for name in experiment.task_names}
    # the standard error over the prompts says whether a loss near the SOLVED line is on it by luck
    result = {"val_loss": val, "task_loss": {t: float(x.mean()) for t, x in losses.items()},
              "task_loss_se": {t: float(x.std(ddof=1) / np.sqrt(x.size)) for t, x in losses.items()}}
    write_json_atomic(Path(path), result)
    return result


def circuit_record(c: Circuit) -> dict:
    """What results.json keeps of a circuit: its numbers and nodes, not its edge list (that is in its own file)."""
    return {"nodes": c.nodes, "n_nodes": c.n_nodes, "n_edges": c.n_edges,
            "n_block_edges": sum(1 for s, d, _ in c.edges if s.startswith("L") and d.startswith("L")),
            "task_loss": c.task_loss, "reached_target": c.reached_target, "sufficiency": c.sufficiency,
            "necessity": c.necessity, "full_loss": c.full_loss, "controls": c.controls,
            "seconds": c.settings.get("seconds")}


def prune_job(experiment: Experiment, checkpoint: str, task_name: str, scorecard: str, path: str) -> dict:
    """Prune one task on one checkpoint; save its scorecard to `path` and the whole circuit beside it. `scorecard`:
    "circuit" (the circuit alone), "controls" (and both controls), "full" (and zero ablation, more pruning seeds)."""
    experiment.load_tasks()
    model, task = load(checkpoint, backend=experiment.backend), get_task(task_name)
    means = ablation_means(model, "mean", 0)
    settings = {"steps": experiment.prune_steps}
    main = prune(model, task, means=means, seed=0, **settings)
    if scorecard in ("controls", "full"):
        main.controls = run_controls(model, task, main, means=means, seed=0, **settings)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    main.to_json(path.with_suffix(".circuit.json"))
    card = {"full_loss": main.full_loss, "circuit": circuit_record(main)}
    if scorecard == "full":
        card["zero_ablation"] = circuit_record(prune(model, task, ablation="zero", seed=0, **settings))
        others = [prune(model, task, means=means, seed=s, **settings) for s in range(1, experiment.prune_seeds)]
        card["seeds"] = [circuit_record(c) for c in others]
        card["stability"] = node_jaccard([set(c.nodes) for c in [main] + others])
    write_json_atomic(path, card)
    return card


# ----------------------------------------------------------------------------------------------------------------------
# The experiment


class Reproduction:
    """Runs an `Experiment` into `out`, caching every step there (see the module docstring)."""

    def __init__(self, experiment: Experiment, out, *, jobs: int = 1, progress: bool = True, log=print):
        self.experiment, self.out, self.jobs, self.progress, self.log = experiment, Path(out), jobs, progress, log
        self.steps = preset(experiment.preset)[1].steps

    def run_dir(self, run: Run) -> Path:
        return self.out / "models" / run.name

    def checkpoint(self, point: str) -> Path:
        run_name, step = point.split("@")
        return self.out / "models" / run_name / kept_checkpoint_file(int(step))

    def circuit_file(self, point: str, task_name: str) -> Path:
        return self.out / "circuits" / point / f"{task_name}.circuit.json"

    def final_point(self, run: Run) -> str:
        return f"{run.name}@{self.steps}"

    # --- 1. train ---------------------------------------------------------------------------------------------------
    def finished(self, run: Run) -> bool:
        path = self.run_dir(run) / MODEL_FILE
        return path.exists() and int(read_checkpoint(path)[2]["step"]) == self.steps

    def train_all(self, reuse: bool = False) -> None:
        todo = [run for run in self.experiment.runs() if not self.finished(run)]
        if todo and reuse:
            raise FileNotFoundError(f"--reuse: no finished model for {[r.name for r in todo]} in {self.out / 'models'};"
                                    " run without --reuse to train them")
        if not todo:
            return
        self.log(f"training {len(todo)} model(s) of preset {self.experiment.preset!r}: "
                 + ", ".join(f"{r.name} (density {r.label})" for r in todo))
        if self.jobs == 1:      # one run at a time, each with its own progress bar
            for r in todo:
                train_job(self.experiment, r, str(self.run_dir(r)), progress=self.progress)
            return
        total = self.steps * len(todo)
        done = lambda: sum(_logged_steps(self.run_dir(r)) for r in todo)   # noqa: E731  (read from metrics.jsonl)
        self._pool([(train_job, (self.experiment, r, str(self.run_dir(r)))) for r in todo], "train", total, done)

    # --- 2. evaluate ------------------------------------------------------------------------------------------------
    def evaluations(self) -> dict[str, dict]:
        """{point: evaluation} for every kept checkpoint of every run."""
        points = {f"{run.name}@{step}": path for run in self.experiment.runs()
                  for step, path in kept_checkpoints(self.run_dir(run)).items()}
        out, todo = {}, []
        for point, ckpt in points.items():
            path = self.out / "evals" / f"{point}.json"
            cached = json.loads(path.read_text()) if path.exists() else None
            if cached and set(self.experiment.task_names) <= set(cached["task_loss"]):
                out[point] = cached
            else:
                todo.append((point, (evaluate_job, (self.experiment, str(ckpt), str(path)))))
        for (point, _), result in zip(todo, self._pool([job for _, job in todo], "evaluate")):
            out[point] = result
        return {p: out[p] for p in points}

    # --- 3. match ---------------------------------------------------------------------------------------------------
    def matched(self, evals: dict) -> dict[str, str]:
        """{sparse run: the kept dense checkpoint of the same seed whose validation loss is closest to its own}."""
        out = {}
        for run in self.experiment.runs():
            dense = {p: e["val_loss"] for p, e in evals.items() if p.startswith(f"dense-s{run.seed}@")}
            if run.density != 1 and dense and self.final_point(run) in evals:
                out[run.name] = closest_loss(evals[self.final_point(run)]["val_loss"], dense)
        return out

    # --- 4. prune ---------------------------------------------------------------------------------------------------
    def pruned_points(self, matched: dict) -> list[str]:
        """Every final model, then every matched dense checkpoint that is not one."""
        finals = [self.final_point(r) for r in self.experiment.runs()]
        return finals + sorted(set(matched.values()) - set(finals))

    def prune_plan(self, evals: dict, matched: dict) -> dict[tuple[str, str], str]:
        """{(point, task): how much of the scorecard to compute} for every final model and every matched dense
        checkpoint, in that order, on the tasks that point solves (a model that cannot do a task has no circuit for it
        to find, and pruning it anyway took most of the experiment's time).

        "full" for the first seed's final models; for the other seeds' (whose role is the headline's spread)
        "controls" on the sparse models, which the verdict needs; "circuit" alone on the rest (a dense circuit only
        has to reach its target to be compared)."""
        runs = self.experiment.runs()
        first_seed = {self.final_point(r) for r in runs if r.seed == self.experiment.seeds[0]}
        sparse = {self.final_point(r) for r in runs if r.density < 1}
        plan = {}
        for point in self.pruned_points(matched):
            for t in self.experiment.task_names:
                if evals[point]["task_loss"][t] <= self.experiment.solved:
                    plan[point, t] = ("full" if point in first_seed else "controls" if point in sparse
                                      else "circuit")
        return plan

    def prune_all(self, evals: dict, matched: dict) -> dict[str, dict[str, dict]]:
        """{point: {task: scorecard}} for the points and tasks of `prune_plan`, each cached in its own file; a point
        that solves no task maps to {}."""
        plan = self.prune_plan(evals, matched)
        cards: dict[str, dict[str, dict]] = {p: {} for p in self.pruned_points(matched)}
        todo = []
        for (point, t), scorecard in plan.items():
            path = self.out / "circuits" / point / f"{t}.json"
            if path.exists():
                cards[point][t] = json.loads(path.read_text())
            else:
                todo.append(((point, t), (prune_job, (self.experiment, str(self.checkpoint(point)), t, scorecard,
                                                      str(path)))))
        for ((point, t), _), card in zip(todo, self._pool([job for _, job in todo], "prune")):
            cards[point][t] = card
        return {p: {t: cards[p][t] for t in self.experiment.task_names if t in cards[p]} for p in cards}

    # --- everything -------------------------------------------------------------------------------------------------
    def run(self, reuse: bool = False) -> dict:
        """Every stage, each skipping what is cached; returns the results (also in results.json). The wall time of
        each stage in this invocation is in results["seconds"] (a resumed run counts only what it did itself). One
        process at a time runs into `out`."""
        with locked(self.out):
            return self._run(reuse)

    def _run(self, reuse: bool) -> dict:
        seconds, t0 = {}, time.perf_counter()

        def timed(stage, fn, *args):
            start = time.perf_counter()
            result = fn(*args)
            seconds[stage] = round(time.perf_counter() - start, 1)
            return result

        timed("train", self.train_all, reuse)
        evals = timed("evaluate", self.evaluations)
        matched = self.matched(evals)
        cards = timed("prune", self.prune_all, evals, matched)
        results = summarise(self.experiment, evals, matched, cards,
                            {r.name: self.final_point(r) for r in self.experiment.runs()})
        results["seconds"] = seconds
        write_json_atomic(self.out / "results.json", results)
        timed("report", write_report, results, self.out,
              lambda p: load(self.checkpoint(p), backend=self.experiment.backend), get_task, self.circuit_file)
        results["seconds"]["total"] = round(time.perf_counter() - t0, 1)
        write_json_atomic(self.out / "results.json", results)
        self.log(f"reproduce: finished in {_duration(time.perf_counter() - t0)} "
                 f"({', '.join(f'{k} {_duration(v)}' for k, v in seconds.items() if k != 'total')}); "
                 f"report in {self.out / 'results.md'}")
        return results

    def _pool(self, jobs: list, desc: str, total: int | None = None, done=None) -> list:
        """Run (function, args) jobs, in this process or in `self.jobs` workers; return their results in order. The
        bar counts finished jobs, or `done()` out of `total` when given (training: steps logged so far)."""
        from tqdm.auto import tqdm

        if not jobs:
            return []
        bar = tqdm(total=total or len(jobs), desc=desc, unit="step" if total else "job", disable=not self.progress,
                   dynamic_ncols=True, initial=done() if done else 0)
        update = (lambda: setattr(bar, "n", done()) or bar.refresh()) if done else (lambda: bar.update())
        try:
            if self.jobs == 1:
                results = []
                for fn, args in jobs:
                    results.append(fn(*args))
                    update()
                return results
            with _worker_pool(self.jobs) as pool:
                futures = [pool.submit(fn, *args) for fn, args in jobs]
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, timeout=5.0, return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()      # a failed job stops the experiment here, with its own error
                    if finished or done:
                        update() if done else bar.update(len(finished))
                return [f.result() for f in futures]
        finally:
            bar.close()


@contextmanager
def _worker_pool(n: int):
    """`n` worker processes with one BLAS thread each. The variables that say so stay set while the pool lives: it
    starts workers on demand, and each must see them before it imports NumPy (a worker started after they were
    restored ran a two-thread BLAS beside the other's: two trainings made 4.3 steps/s together, not 7.0)."""
    import multiprocessing

    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    try:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            yield pool
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _end_with_parent(parent: int) -> None:
    """In a worker: exit as soon as the `reproduce` that started it is gone (killed, say), rather than train or prune
    on for nobody; what it was doing is redone, from its last checkpoint, by the next run."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _logged_steps(run_dir: Path) -> int:
    """Steps a run has logged: the last line of its metrics.jsonl (0 before it starts)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return 0
    lines = path.read_bytes().rstrip().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


# ----------------------------------------------------------------------------------------------------------------------
# Summaries


def compare(evals: dict, cards: dict, dense_point: str, sparse_point: str, task_names, solved: float,
            n_total_nodes: int) -> dict:
    """Circuit edges, dense / sparse, over the tasks both models solve where the sparse circuit is real, the dense one
    reached its target, and neither keeps most of its model (`is_whole_model`: the model, not a circuit):
    {dense, sparse, tasks, ratio (their geometric mean), per_task, excluded {task: why}}."""
    per_task, excluded = {}, {}
    for t in task_names:
        dense_loss, sparse_loss = evals[dense_point]["task_loss"][t], evals[sparse_point]["task_loss"][t]
        if dense_loss > solved:
            excluded[t] = f"dense model does not solve it ({dense_loss:.2f})"
            continue
        if sparse_loss > solved:
            excluded[t] = f"sparse model does not solve it ({sparse_loss:.2f})"
            continue
        d, s = cards[dense_point][t], cards[sparse_point][t]
        real, why = verdict(s["full_loss"], s["circuit"], solved)
        if not real:
            excluded[t] = f"sparse circuit: {why}"
        elif not d["circuit"]["reached_target"]:
            excluded[t] = "dense circuit did not reach the target"
        elif is_whole_model(s["circuit"]["n_nodes"], n_total_nodes) or is_whole_model(d["circuit"]["n_nodes"],
                                                                                        n_total_nodes):
            side, c = ("sparse", s) if is_whole_model(s["circuit"]["n_nodes"], n_total_nodes) else ("dense", d)
            excluded[t] = (f"{side} circuit keeps {c['circuit']['n_nodes']} of {n_total_nodes} nodes: the model, "
                           "not a circuit")
        else:
            dense, sparse = d["circuit"]["n_edges"], s["circuit"]["n_edges"]
            per_task[t] = {"dense_edges": dense, "sparse_edges": sparse, "ratio": dense / max(1, sparse)}
    return {"dense": dense_point, "sparse": sparse_point, "tasks": sorted(per_task),
            "ratio": geomean([v["ratio"] for v in per_task.values()]) if per_task else None, "per_task": per_task,
            "excluded": excluded}


def summarise(experiment: Experiment, evals: dict, matched: dict, cards: dict, finals: dict) -> dict:
    """results.json: every evaluation and scorecard; per sparse run its comparison with the matched dense checkpoint
    and with the final dense model; the headline (the headline density at matched loss, over seeds)."""
    comparisons = []
    n_total_nodes = sum(site_sizes(preset(experiment.preset)[0]).values())
    for run in experiment.runs():
        if run.density == 1:
            continue
        sparse = finals[run.name]
        entry = {"run": run.name, "density": run.density, "seed": run.seed, "val_loss": evals[sparse]["val_loss"]}
        for kind, dense in (("matched", matched.get(run.name)), ("final", finals.get(f"dense-s{run.seed}"))):
            if dense is not None:
                entry[kind] = compare(evals, cards, dense, sparse, experiment.task_names, experiment.solved,
                                      n_total_nodes)
                entry[kind]["dense_val_loss"] = evals[dense]["val_loss"]
        comparisons.append(entry)
    head = [c["matched"] for c in comparisons if c["density"] == experiment.headline_density and "matched" in c
            and c["matched"]["tasks"]]
    ratios = [m["ratio"] for m in head]
    return {"experiment": dataclasses.asdict(experiment), "preset": _preset_dict(experiment.preset),
            "evaluations": evals, "matched": matched, "circuits": cards, "comparisons": comparisons,
            "headline": {"density": experiment.headline_density, "ratios": ratios,
                         "n_tasks": [len(m["tasks"]) for m in head], "geomean": geomean(ratios) if ratios else None,
                         "min": min(ratios, default=None), "max": max(ratios, default=None)}}


def _preset_dict(name: str) -> dict:
    model_cfg, train_cfg = preset(name)
    return {"model": model_cfg.to_dict(), "train": train_cfg.to_dict()}


def _duration(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return (f"{h} h " if h else "") + f"{rest // 60} min {rest % 60:02d} s"
