"""Reading a circuit node by node: what each kept node responds to, and what the task loses without it.

A circuit is only interpretable if its nodes can be read. For every kept node `explain` gives

- its **top-activating contexts**: the byte positions of validation text (never seen in training) where the node's
  activation is largest in |x|, each shown with the bytes before it. A node that fires on `'` right after `= `, and
  nowhere else, reads as "an open single quote";
- its **single-node ablations** on the task's held-out prompts: how much the task loss rises when that node alone is
  ablated (to its mean, like pruning) inside the circuit (everything else already ablated), and inside the full model;
- its **wiring**: the circuit's nodes it reads from and writes to (the circuit's edges).

Activations are read after the site's AbsTopK, where pruning gates them, so "fires" means "survives AbsTopK".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minisparse.data import get_batch, load_corpus

from .circuit import Circuit
from .masks import ablation_means, gates_from_mask, mask_from_nodes, parse_node
from .prune import TaskData, task_loss

CONTEXT_BYTES = 24     # bytes of text shown before (and including) the byte a node fires on


@dataclass
class NodeExplanation:
    """What one node of a circuit does (see the module docstring)."""

    node: str
    contexts: list[tuple[str, float]]     # (text ending at the byte the node fires on, activation), strongest first
    firing_rate: float                    # fraction of validation positions where the node survives AbsTopK
    delta_in_circuit: float               # task loss of the circuit without this node − the circuit's own
    delta_in_model: float                 # task loss of the full model without this node − the full model's
    reads: list[str] = field(default_factory=list)     # circuit nodes with an edge into this one
    writes: list[str] = field(default_factory=list)    # circuit nodes this one has an edge into

    def summary(self) -> str:
        shown = "  ".join(f"{show_context(text)} ({act:+.2f})" for text, act in self.contexts[:3])
        return (f"{self.node}: fires on {self.firing_rate:.1%} of bytes; ablating it costs the circuit "
                f"{self.delta_in_circuit:+.3f} and the full model {self.delta_in_model:+.3f} nats\n    top: {shown}")


def show_context(text: str) -> str:
    """A context on one line: newlines as ⏎, the last byte (the one the node fires on) in ⟦ ⟧."""
    visible = text.replace("\n", "⏎").replace("\t", "⇥").replace("\0", "␀")
    return f"…{visible[:-1]}⟦{visible[-1:]}⟧"


def top_contexts(model, nodes: list[str], *, n_contexts: int = 5, n_windows: int = 32, data: np.ndarray | None = None,
                 seed: int = 0) -> tuple[dict[str, list[tuple[str, float]]], dict[str, float]]:
    """For each node, its `n_contexts` strongest activations over `n_windows` random windows of `data` (default: the
    validation corpus) as (context text, activation), and its firing rate (fraction of positions with x ≠ 0)."""
    data = load_corpus().val if data is None else data
    n_ctx = model.config.n_ctx
    wanted: dict[str, list[int]] = {}
    for name in nodes:
        key, i = parse_node(name)
        wanted.setdefault(key, []).append(i)
    windows, acts = [], {key: [] for key in wanted}
    for b in range(0, n_windows, 16):
        x, _ = get_batch(data, min(16, n_windows - b), n_ctx, seed, b)
        windows.append(x)
        for key, a in model.site_activations(x).items():
            if key in wanted:
                acts[key].append(a[..., wanted[key]])                       # [B, T, kept channels of this site]
    tokens = np.concatenate(windows)                                         # [W, T]
    contexts, rates = {}, {}
    for key, channels in wanted.items():
        a = np.concatenate(acts[key])                                        # [W, T, c]
        for j, i in enumerate(channels):
            v = a[..., j].ravel()
            order = np.argsort(-np.abs(v), kind="stable")[:n_contexts]
            order = order[v[order] != 0]
            shown = []
            for flat in order:
                w, t = divmod(int(flat), tokens.shape[1])
                start = max(0, t + 1 - CONTEXT_BYTES)
                text = bytes(tokens[w, start:t + 1].astype(np.uint8).tolist()).decode("utf-8", errors="replace")
                shown.append((text, float(v[flat])))
            contexts[f"{key}[{i}]"] = shown
            rates[f"{key}[{i}]"] = float(np.count_nonzero(v) / v.size)
    return contexts, rates


def explain(model, circuit: Circuit, task, *, n_contexts: int = 5, n_windows: int = 32, data: np.ndarray | None = None,
            means=None, eval_data: TaskData | None = None, seed: int = 0) -> list[NodeExplanation]:
    """One `NodeExplanation` per node of `circuit` (pruned from `model` for `task`), in forward order.

    Contexts come from `n_windows` windows of `data` (default: the validation corpus). Ablation uses the circuit's own
    setting (mean or zero; `means` may pass precomputed ones) on `eval_data`, default the held-out prompts the
    circuit's sufficiency was measured on.
    """
    settings = circuit.settings
    means = means if means is not None else ablation_means(model, settings.get("ablation", "mean"),
                                                           settings.get("seed", 0))
    eval_data = eval_data if eval_data is not None else TaskData.from_task(
        task, settings.get("n_eval", 64), model.config.n_ctx, "test", settings.get("seed", 0))
    in_circuit = node_ablations(model, circuit.nodes, eval_data, means, within=circuit.nodes)
    in_model = node_ablations(model, circuit.nodes, eval_data, means)
    contexts, rates = top_contexts(model, circuit.nodes, n_contexts=n_contexts, n_windows=n_windows, data=data,
                                   seed=seed)
    return [NodeExplanation(node=name, contexts=contexts[name], firing_rate=rates[name],
                            delta_in_circuit=in_circuit[name], delta_in_model=in_model[name],
                            reads=sorted({s for s, d, _ in circuit.edges if d == name}),
                            writes=sorted({d for s, d, _ in circuit.edges if s == name}))
            for name in circuit.nodes]


def node_ablations(model, nodes, data: TaskData, means: dict, within=None) -> dict[str, float]:
    """{node: the task loss on `data` with that node alone ablated (to `means`) − without}, inside the circuit of the
    nodes `within` (everything else already ablated), or inside the full model when `within` is None."""
    from minisparse.params import site_sizes

    sizes = site_sizes(model.config)
    kept = mask_from_nodes(within, sizes) if within is not None else {}       # {}: the full model, no gate at all
    base = task_loss(model, data, gates_from_mask(kept, means) if kept else None)
    out = {}
    for name in nodes:
        key, i = parse_node(name)
        without = {k: m.copy() for k, m in kept.items()}
        without.setdefault(key, np.ones(sizes[key]))[i] = 0.0
        out[name] = task_loss(model, data, gates_from_mask(without, means)) - base
    return out


def explanations_markdown(explanations: list[NodeExplanation], n_contexts: int = 3) -> str:
    """A Markdown table: node, firing rate, the single-node ablations, top contexts."""
    lines = ["| node | fires on | Δ task loss, circuit | Δ task loss, full model | top-activating contexts |",
             "|---|---|---|---|---|"]
    for e in explanations:
        shown = "<br>".join(f"`{show_context(text)}` {act:+.2f}" for text, act in e.contexts[:n_contexts])
        lines.append(f"| {e.node} | {e.firing_rate:.1%} | {e.delta_in_circuit:+.3f} | {e.delta_in_model:+.3f} "
                     f"| {shown} |")
    return "\n".join(lines)
