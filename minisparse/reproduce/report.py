"""The report of `minisparse reproduce`: results.md, the figures, and the best sparse circuit read node by node.

Everything here reads the results dictionary (`summary.summarise`, saved as results.json), so a report can be rewritten
from a finished experiment without recomputing anything but the best circuit's explanation.
"""

from __future__ import annotations

import math

from ..checkpoint import load
from ..circuits.scorecard import CHANCE, MOST_OF_THE_MODEL, is_whole_model, verdict
from ..config import ModelConfig
from ..params import site_sizes
from ..rundir import write_text_atomic
from ..tasks import get_task
from .layout import Layout
from .summary import geomean, smallest_circuit_task

BITS = 1 / math.log(2)     # nats -> bits


def density_of(point: str) -> str:
    """"1in16-s0@3000" -> "1/16"; "dense-s2@500" -> "dense"."""
    run = point.split("@")[0].rsplit("-s", 1)[0]
    return "dense" if run == "dense" else "1/" + run[3:]


def _loss_cell(loss: float, se: float | None, solved: float) -> str:
    if se is None:
        return f"{loss:.2f}"
    return f"{'~' if abs(loss - solved) < 2 * se else ''}{loss:.2f} ± {se:.2f}"


def frontier(results: dict) -> tuple[list[str], list[dict]]:
    """The frontier's tasks — those every pruned point solves with a circuit that reached its target — and its points:
    {point, density, val_bpb, edges (geometric mean over those tasks)}."""
    solved, cards = results["experiment"]["solved"], results["circuits"]
    ok = [{t for t, c in by_task.items() if c["full_loss"] <= solved and c["circuit"]["reached_target"]}
          for by_task in cards.values()]
    tasks = sorted(set.intersection(*ok)) if ok else []
    points = [{"point": p, "density": density_of(p), "val_bpb": results["evaluations"][p]["val_loss"] * BITS,
               "edges": geomean(max(1, cards[p][t]["circuit"]["n_edges"]) for t in tasks)}
              for p in cards] if tasks else []
    return tasks, points


def results_markdown(results: dict) -> str:
    """results.md: the headline, the models and the tasks they solve, every circuit's scorecard, the comparisons."""
    ev, cards, solved = results["evaluations"], results["circuits"], results["experiment"]["solved"]
    tasks = list(next(iter(ev.values()))["task_loss"])
    n_nodes = sum(site_sizes(ModelConfig.from_dict(results["preset"]["model"])).values())
    head = results["headline"]
    lines = ["# minisparse reproduce", ""]
    if head["ratios"]:
        n = len(head["ratios"])
        seeds = (f"{n} training seeds: {head['min']:.1f}–{head['max']:.1f}×" if n > 1 else "1 training seed")
        lines += [f"**Headline:** at matched validation loss, the dense model's circuits have "
                  f"**{head['geomean']:.1f}×** the edges of the 1/{round(1 / head['density'])}-dense model's "
                  f"(geometric mean over the tasks both solve; over {seeds}, on "
                  f"{'/'.join(map(str, head['n_tasks']))} task{'' if head['n_tasks'] == [1] else 's'}).", ""]
    else:
        lines += ["**Headline:** no task is solved by both a sparse model of the headline density and its matched "
                  "dense checkpoint with a circuit that passes the scorecard; see the tables below for why.", ""]
    lines += ["## Models and the tasks they solve", "",
              f"Full-model task loss on held-out prompts (nats; solved when ≤ {solved}; chance is {CHANCE:.3f}), "
              "± its standard error over the prompts; ~ marks a loss within two standard errors of the line, solved "
              "or not by the luck of the prompts.", "",
              "| point | val bits/byte | solved | " + " | ".join(tasks) + " |", "|---|---|---|" + "---|" * len(tasks)]
    for point in cards:
        losses, se = ev[point]["task_loss"], ev[point].get("task_loss_se", {})
        lines.append(f"| {point} | {ev[point]['val_loss'] * BITS:.3f} | {sum(losses[t] <= solved for t in tasks)} | "
                     + " | ".join(_loss_cell(losses[t], se.get(t), solved) for t in tasks) + " |")
    lines += ["", "## Every circuit and its scorecard", "",
              "Each model is pruned on the tasks it solves. Mean ablation, pruning seed 0. suff./nec.: held-out task "
              "loss of the circuit alone / of the model with only the circuit ablated. Controls: held-out loss of the "
              "circuit pruned from a random model of the same sparsity / for shuffled labels. Zero abl.: edges / "
              "held-out loss with zero instead of mean ablation. Jaccard: mean node overlap between pruning seeds. "
              f"(✗): pruning target not reached. A circuit that keeps more than {MOST_OF_THE_MODEL:.0%} of the model's "
              "nodes is flagged \"the model, not a circuit\" and never counts in a comparison: the scorecard checks "
              "faithfulness, not size.", "",
              "| point | task | nodes | edges | suff. | nec. | random ctl | shuffled ctl | zero abl. | Jaccard "
              "| verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for point, by_task in cards.items():
        for t, card in by_task.items():
            c = card["circuit"]
            controls = c.get("controls") or {}
            ctl = [f"{controls[n]['sufficiency']:.2f}" if n in controls else "—"
                   for n in ("random_model", "shuffled_labels")]
            zero = card.get("zero_ablation")
            real, why = verdict(card["full_loss"], c, solved)
            flag = (f" (keeps {c['n_nodes'] / n_nodes:.0%} of the nodes: the model, not a circuit)"
                    if is_whole_model(c["n_nodes"], n_nodes) else "")
            lines.append(f"| {point} | {t} | {c['n_nodes']} | {c['n_edges']}{'' if c['reached_target'] else ' (✗)'} "
                         f"| {c['sufficiency']:.2f} | {c['necessity']:.2f} | {ctl[0]} | {ctl[1]} | "
                         + (f"{zero['n_edges']} / {zero['sufficiency']:.2f}" if zero else "—") + " | "
                         + (f"{card['stability']:.2f}" if "stability" in card else "—")
                         + f" | {'**real**' if real else why}{flag} |")
    lines += ["", "## Dense vs sparse circuits", "",
              "Each sparse model against the dense checkpoint of the same seed whose validation loss is closest "
              "(matched) and against the final dense model. Ratio: geometric mean over the counted tasks of dense "
              "edges / sparse edges.", "",
              "| sparse run | val bits/byte | compared with | its val bits/byte | tasks counted | ratio "
              "| not counted |",
              "|---|---|---|---|---|---|---|"]
    for c in results["comparisons"]:
        for kind in ("matched", "final"):
            if kind in c:
                m = c[kind]
                ratio = f"**{m['ratio']:.1f}×**" if m["tasks"] else "—"
                excluded = "; ".join(f"{t}: {why}" for t, why in m["excluded"].items()) or "—"
                lines.append(f"| {c['run']} | {c['val_loss'] * BITS:.3f} | {kind} dense `{m['dense']}` | "
                             f"{m['dense_val_loss'] * BITS:.3f} | {len(m['tasks'])} | {ratio} | {excluded} |")
    lines += _beyond_markdown(results)
    return "\n".join(lines) + "\n"


def _beyond_markdown(results: dict) -> list[str]:
    """The headline pair's circuit size at each pruning target, and its disjoint circuits."""
    lines = []
    if results.get("targets"):
        lines += ["", "## Circuit size against the pruning target", "",
                  "The first seed's headline pair, on every task it counts: edges of the circuit pruned to each target "
                  "task loss (✗: target not reached). targets.png draws it.", "",
                  "| task | point | " + " | ".join(f"{t:g}" for t in _targets_of(results)) + " |",
                  "|---|---|" + "---|" * len(_targets_of(results))]
        for task, by_point in sorted(results["targets"].items()):
            for point, frontier in by_point.items():
                lines.append(f"| {task} | {point} | " + " | ".join(
                    f"{f['n_edges']}{'' if f['reached'] else ' ✗'}" for f in frontier) + " |")
    redundancy = results.get("redundancy") or {}
    if redundancy:
        lines += ["", f"## Disjoint circuits for `{redundancy['task']}`", "",
                  "Pruned again and again, each time with every earlier circuit's nodes forbidden (held at their "
                  "mean), until what is left no longer solves the task: how many disjoint circuits each model holds.",
                  "",
                  "| point | circuits that reach the target | edges of each (✗: target not reached) |", "|---|---|---|"]
        for point, circuits in redundancy["circuits"].items():
            edges = ", ".join(f"{c['n_edges']}{'' if c['reached_target'] else ' ✗'}" for c in circuits) or "—"
            lines.append(f"| {point} | {sum(c['reached_target'] for c in circuits)} | {edges} |")
    return lines


def _targets_of(results: dict) -> list[float]:
    frontier = next(iter(next(iter(results["targets"].values())).values()))
    return [f["target"] for f in frontier]


def best_sparse_circuit(results: dict) -> tuple[str, str] | None:
    """(point, task) of the smallest real circuit of a headline-density model, among the tasks its headline
    comparison counts; None if there is none."""
    pairs = [c["matched"] for c in results["comparisons"]
             if c["density"] == results["headline"]["density"] and c.get("matched", {}).get("per_task")]
    if not pairs:
        return None
    best = min(pairs, key=lambda m: m["per_task"][smallest_circuit_task(m)]["sparse_edges"])
    return best["sparse"], smallest_circuit_task(best)


def write_report(results: dict, layout: Layout, backend: str = "numpy") -> None:
    """results.md, frontier.png, per_task.png, targets.png, a viewer page for every real circuit, and circuit.png +
    explain.md (its nodes, where its heads look, the causal tests) for the best sparse circuit."""
    from ..circuits import Circuit
    from ..circuits.explain import explain, explanations_markdown
    from ..circuits.heads import head_attention
    from ..circuits.patching import patch_report, patch_report_text
    from ..circuits.viewer import write_viewer
    from ..viz import draw_circuit, plot_edges_per_task, plot_frontier, plot_targets

    out = layout.out
    text = results_markdown(results)
    tasks, points = frontier(results)
    if points:
        plot_frontier(points, tasks, out / "frontier.png")
    pairs = [c["matched"] for c in results["comparisons"] if "matched" in c and c["matched"]["tasks"]]
    if pairs:
        plot_edges_per_task(pairs, out / "per_task.png")
    if results.get("targets"):
        plot_targets(results["targets"], out / "targets.png")
    best = best_sparse_circuit(results)
    for point, by_task in results["circuits"].items():
        for task_name, card in by_task.items():
            page = layout.viewer_file(point, task_name)     # cached like every scorecard: a resumed run keeps it
            if ((point, task_name) != best and not page.exists()     # the best circuit's page: below, with its reading
                    and verdict(card["full_loss"], card["circuit"], results["experiment"]["solved"])[0]):
                write_viewer(load(layout.checkpoint(point), backend=backend),
                             Circuit.load(layout.circuit_file(point, task_name)), get_task(task_name), page)
    if best is not None:
        point, task_name = best
        circuit, model, task = (Circuit.load(layout.circuit_file(point, task_name)),
                                load(layout.checkpoint(point), backend=backend), get_task(task_name))
        draw_circuit(circuit, out / "circuit.png", embeddings=False, max_edges=150)
        explanations, head_looks = explain(model, circuit, task), head_attention(model, circuit, task)
        if not layout.viewer_file(point, task_name).exists():  # a counted circuit is real: it has a page
            write_viewer(model, circuit, task, layout.viewer_file(point, task_name), explanations=explanations,
                         heads=head_looks)
        heads = "\n".join(f"- {h.summary()}" for h in head_looks)
        causal = patch_report_text(patch_report(model, circuit, task))
        write_text_atomic(out / "explain.md", f"# {task_name} on {point}: {circuit.n_nodes} nodes, {circuit.n_edges} "
                          f"edges\n\n{explanations_markdown(explanations)}\n\n## Where its heads look, from the "
                          f"answer position\n\n{heads}\n\n## Causal tests\n\n```\n{causal}\n```\n")
        text += (f"\nThe smallest real sparse circuit: `{task_name}` on `{point}` (circuit.png, explain.md, "
                 f"circuits/{point}/{task_name}.html).\n")
    write_text_atomic(out / "results.md", text)
