"""`Reproduction`: runs an `Experiment` stage by stage into its output folder, caching every step there."""

from __future__ import annotations

import json
import time

from ..config import preset
from ..rundir import locked, write_json_atomic
from .jobs import evaluate_job, prune_job, redundancy_job, targets_job, train_job
from .layout import Layout
from .plan import Experiment, Run
from .pool import logged_steps, run_jobs
from .report import write_report
from .summary import closest_loss, smallest_circuit_task, summarise


class Reproduction:
    """Runs an `Experiment` into `out` (see `minisparse.reproduce`)."""

    def __init__(self, experiment: Experiment, out, *, jobs: int = 1, progress: bool = True, log=print):
        self.experiment, self.jobs, self.progress, self.log = experiment, jobs, progress, log
        self.layout = Layout(out, preset(experiment.preset)[1].steps)
        self.out = self.layout.out

    def final_point(self, run: Run) -> str:
        return self.layout.final_point(run)

    def _pool(self, jobs: list, desc: str, total: int | None = None, done=None) -> list:
        return run_jobs(jobs, self.jobs, desc, self.progress, total, done)

    # --- 1. train ---------------------------------------------------------------------------------------------------
    def train_all(self, reuse: bool = False) -> None:
        todo = [run for run in self.experiment.runs() if not self.layout.finished(run)]
        if todo and reuse:
            raise FileNotFoundError(f"--reuse: no finished model for {[r.name for r in todo]} in {self.out / 'models'};"
                                    " run without --reuse to train them")
        if not todo:
            return
        self.log(f"training {len(todo)} model(s) of preset {self.experiment.preset!r}: "
                 + ", ".join(f"{r.name} (density {r.label})" for r in todo))
        if self.jobs == 1:      # one run at a time, each with its own progress bar
            for r in todo:
                train_job(self.experiment, r, str(self.layout.run_dir(r)), progress=self.progress)
            return
        total = self.layout.steps * len(todo)
        done = lambda: sum(logged_steps(self.layout.run_dir(r)) for r in todo)   # noqa: E731
        self._pool([(train_job, (self.experiment, r, str(self.layout.run_dir(r)))) for r in todo], "train", total,
                   done)

    # --- 2. evaluate ------------------------------------------------------------------------------------------------
    def evaluations(self) -> dict[str, dict]:
        """{point: evaluation} for every kept checkpoint of every run."""
        points = {p: ckpt for run in self.experiment.runs() for p, ckpt in self.layout.points(run).items()}
        out, todo = {}, []
        for point, ckpt in points.items():
            path = self.layout.eval_file(point)
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
        to find).

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
            path = self.layout.card_file(point, t)
            if path.exists():
                cards[point][t] = json.loads(path.read_text())
            else:
                args = (self.experiment, str(self.layout.checkpoint(point)), t, scorecard, str(path),
                        str(self.layout.circuit_file(point, t)))
                todo.append(((point, t), (prune_job, args)))
        for ((point, t), _), card in zip(todo, self._pool([job for _, job in todo], "prune")):
            cards[point][t] = card
        return {p: {t: cards[p][t] for t in self.experiment.task_names if t in cards[p]} for p in cards}

    # --- 5. the headline pair, further: circuit size against the pruning target; disjoint circuits -----------------
    def beyond(self, results: dict) -> dict:
        """For the first seed's headline comparison: {"targets": {task: {point: frontier}}} over the tasks it counts,
        and {"redundancy": {"task", "circuits": {point: disjoint circuits}}} for its smallest real sparse circuit and
        the matched dense checkpoint, each cached in its own file."""
        first = Run(self.experiment.headline_density, self.experiment.seeds[0]).name
        pair = next((c["matched"] for c in results["comparisons"] if c["run"] == first and "matched" in c), None)
        if pair is None or not pair["tasks"]:
            return {"targets": {}, "redundancy": {}}
        best = smallest_circuit_task(pair)
        jobs = {("targets", t, p): (targets_job, self.layout.targets_file(p, t))
                for t in pair["tasks"] for p in (pair["sparse"], pair["dense"])}
        jobs.update({("redundancy", best, p): (redundancy_job, self.layout.redundancy_file(p, best))
                     for p in (pair["sparse"], pair["dense"])})
        self._pool([(fn, (self.experiment, str(self.layout.checkpoint(p)), t, str(path)))
                    for (_, t, p), (fn, path) in jobs.items() if not path.exists()], "targets, redundancy")
        out: dict = {"targets": {}, "redundancy": {"task": best, "circuits": {}}}
        for (kind, t, p), (_, path) in jobs.items():      # every job wrote its file: read them all alike
            value = json.loads(path.read_text())
            (out["targets"].setdefault(t, {}) if kind == "targets" else out["redundancy"]["circuits"])[p] = value
        return out

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
        results.update(timed("beyond", self.beyond, results))
        results["seconds"] = seconds
        write_json_atomic(self.out / "results.json", results)
        timed("report", write_report, results, self.layout, self.experiment.backend)
        results["seconds"]["total"] = round(time.perf_counter() - t0, 1)
        write_json_atomic(self.out / "results.json", results)
        self.log(f"reproduce: finished in {_duration(time.perf_counter() - t0)} "
                 f"({', '.join(f'{k} {_duration(v)}' for k, v in seconds.items() if k != 'total')}); "
                 f"report in {self.out / 'results.md'}")
        return results


def _duration(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return (f"{h} h " if h else "") + f"{rest // 60} min {rest % 60:02d} s"
