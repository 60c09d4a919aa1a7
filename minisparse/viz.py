"""Drawing a circuit: sites in forward order from left to right, kept channels as dots, weights as lines.

    tokens | resid | L0.attn_in L0.q L0.k L0.v L0.attn_out L0.mlp_in L0.mlp_neuron L0.mlp_out | L1 ... | resid | logits

Only columns with a kept node are drawn. A line is an edge of the circuit: its width and opacity grow with |w|
(relative to the largest |w| in the circuit), blue for positive weights, red for negative. The residual stream is an
identity, not a weight, so it has no edges; thin grey dotted lines follow each residual channel c through the
columns that read or write it (attn_in, attn_out, mlp_in, mlp_out), which is how information crosses layers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from minisparse.params import SITES
from minisparse.rundir import replace_atomically

POSITIVE, NEGATIVE, RESIDUAL = "#1f5fbf", "#c8283c", "#9a9a9a"
RESIDUAL_SITES = ("attn_in", "attn_out", "mlp_in", "mlp_out")
_NODE = re.compile(r"^(?:L(\d+)\.(\w+)|(tok|resid|logit))\[(\d+)\]$")



def save_figure(fig, path) -> None:
    """Save `fig` to `path` atomically, in the format its suffix names (.png, .svg, .pdf)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    replace_atomically(Path(path), lambda tmp: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))

def _column_order(n_layer: int) -> list[str]:
    return (["tokens", "resid (in)"] + [f"L{l}.{s}" for l in range(n_layer) for s in SITES]
            + ["resid (out)", "logits"])


def _byte_label(t: int) -> str:
    return repr(chr(t)) if 32 <= t < 127 else f"0x{t:02x}"


def _layout(circuit, embeddings: bool = True, max_edges: int | None = None):
    """{column: sorted channel list}, and the edges' ends as ((column, channel), (column, channel), weight): without
    the embedding edges unless `embeddings`, and only the `max_edges` of largest |w| if given."""
    columns: dict[str, set[int]] = {}

    def column_of(name: str, as_src: bool) -> tuple[str, int]:
        m = _NODE.match(name)
        if m is None:
            raise ValueError(f"cannot place node {name!r}; "
                             "expected 'L{l}.{site}[i]', 'tok[t]', 'resid[c]' or 'logit[a]'")
        layer, site, special, i = m.groups()
        if special is None:
            return f"L{layer}.{site}", int(i)
        # a residual channel is drawn where it is used: after the embedding (tok → resid) or before the unembedding
        return {"tok": "tokens", "logit": "logits", "resid": "resid (out)" if as_src else "resid (in)"}[special], int(i)

    for name in circuit.nodes:
        col, i = column_of(name, False)
        columns.setdefault(col, set()).add(i)
    ends = []
    edges = [e for e in circuit.edges if embeddings or not (e[0].startswith("tok") or e[1].startswith("logit"))]
    if max_edges is not None:
        edges = sorted(edges, key=lambda e: -abs(e[2]))[:max_edges]
    for src, dst, w in edges:
        a, b = column_of(src, True), column_of(dst, False)
        for col, i in (a, b):
            columns.setdefault(col, set()).add(i)
        ends.append((a, b, float(w)))
    return {c: sorted(v) for c, v in columns.items()}, ends


def _edge_path(p, q, n: int = 16) -> np.ndarray:
    """A straight segment between neighbouring columns; an arc bowing upwards when the edge skips columns (attn_in → k,
    attn_in → v, v → attn_out), so it does not run through the nodes in between."""
    (x0, y0), (x1, y1) = p, q
    span = abs(x1 - x0)
    if span <= 1.0:
        return np.array([p, q])
    t = np.linspace(0.0, 1.0, n)[:, None]
    mid = np.array([(x0 + x1) / 2, max(y0, y1) + 0.6 * (span - 1) + 0.4])    # quadratic Bézier control point
    return (1 - t) ** 2 * np.array(p) + 2 * t * (1 - t) * mid + t ** 2 * np.array(q)


def draw_circuit(circuit, path=None, ax=None, *, title: str | None = None, max_labels_per_column: int = 80,
                 embeddings: bool = True, max_edges: int | None = None):
    """Draw `circuit` (a minisparse.circuits.Circuit) on `ax`, or on a new figure sized to it; save it to `path` if
    given (PNG, SVG, PDF: by extension). Returns the matplotlib Figure.

    max_edges: draw only that many edges, those of largest |w| (every node is still drawn), so a big circuit stays a
    picture; the title says how many were left out.
    embeddings=False leaves out the token → residual and residual → logit edges (often most of a sparse circuit's
    edges, one per prompt byte and used channel), drawing the blocks' own wiring only; the title says how many.

    Nodes are labelled "L{l}.{site}[i]" ("tok[...]" with the byte, "logit[...]" with the answer), except in columns
    with more than `max_labels_per_column` nodes, where only the column header names them.
    """
    import matplotlib.colors
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    columns, ends = _layout(circuit, embeddings, max_edges)
    n_layer = 1 + max([int(c[1:c.index(".")]) for c in columns if c.startswith("L")], default=0)
    order = [c for c in _column_order(n_layer) if c in columns]
    x_of = {c: float(i) for i, c in enumerate(order)}
    tallest = max((len(v) for v in columns.values()), default=1)
    pos: dict[tuple[str, int], tuple[float, float]] = {}
    for c in order:
        chans = columns[c]
        ys = np.linspace(0, tallest - 1, len(chans) + 2)[1:-1] if len(chans) < tallest else np.arange(tallest)
        for ch, y in zip(chans, ys):
            pos[(c, ch)] = (x_of[c], float(tallest - 1 - y))         # channel 0 at the top

    if ax is None:
        size = (min(60, 2.2 + 1.35 * len(order)), min(60, 2.5 + 0.28 * tallest))
        if path is not None:
            # a bare Figure renders with Agg and never touches pyplot's global state or opens a window
            fig = Figure(figsize=size)
            ax = fig.subplots()
        else:
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=size)
    else:
        fig = ax.figure

    # residual channels: dotted grey links through the columns that read or write them
    res_cols = [c for c in order if c in ("resid (in)", "resid (out)") or c.split(".")[-1] in RESIDUAL_SITES]
    res_segments = []
    for ch in sorted({ch for c in res_cols for ch in columns[c]}):
        points = [pos[(c, ch)] for c in res_cols if (c, ch) in pos]
        res_segments += [(p, q) for p, q in zip(points, points[1:])]
    if res_segments:
        ax.add_collection(LineCollection(res_segments, colors=RESIDUAL, linewidths=0.5, linestyles=":", zorder=1))

    if ends:
        mags = np.abs([w for _, _, w in ends])
        rel = mags / (mags.max() or 1.0)
        colors = [(POSITIVE if w >= 0 else NEGATIVE) for _, _, w in ends]
        rgba = matplotlib.colors.to_rgba_array(colors)
        # many edges: thinner and fainter, so a few hundred lines stay a picture rather than a smear
        crowd = min(1.0, 8.0 / np.sqrt(len(ends)))
        rgba[:, 3] = np.clip(0.15 + 0.85 * rel, 0.08, 1.0) * max(0.35, crowd)
        ax.add_collection(LineCollection([_edge_path(pos[a], pos[b]) for a, b, _ in ends], colors=rgba,
                                         linewidths=0.3 + 2.7 * rel * max(0.4, crowd), zorder=2))

    answers = getattr(circuit, "answers", ("", ""))
    for c in order:
        xs, ys = zip(*(pos[(c, ch)] for ch in columns[c]))
        ax.scatter(xs, ys, s=max(6.0, 28.0 - 0.2 * len(xs)), color="#222222", zorder=3)
        ax.text(x_of[c], tallest + 1.0, c, rotation=60, ha="left", va="bottom", fontsize=8)
        if len(columns[c]) > max_labels_per_column:
            continue
        size = 6.5 if len(columns[c]) <= 30 else 5.0
        for ch in columns[c]:
            x, y = pos[(c, ch)]
            if c == "tokens":
                label = f"tok[{_byte_label(ch)}]"
            elif c == "logits":
                label = f"logit[{_byte_label(ch)}]"
            elif c.startswith("resid"):
                label = f"resid[{ch}]"
            else:
                label = f"{c}[{ch}]"
            ax.text(x + 0.06, y, label, fontsize=size, va="center", ha="left", zorder=4)

    ax.set_xlim(-0.5, len(order) - 0.2)
    ax.set_ylim(-1, tallest + 1.5)
    ax.axis("off")
    n_nodes, n_edges = len(circuit.nodes), len(circuit.edges)
    head = title or (f"{circuit.task}: {n_nodes} nodes, {n_edges} edges, task loss {circuit.task_loss:.3f}"
                     + (f" ({answers[0]!r} vs {answers[1]!r})" if any(answers) else ""))
    hidden = "" if len(ends) == n_edges else (
        f"; {n_edges - len(ends)} edges not drawn (" + ("embedding/unembedding" if not embeddings else "")
        + (", " if not embeddings and max_edges is not None else "")
        + (f"all but the {max_edges} of largest |w|" if max_edges is not None else "") + ")")
    ax.set_title(head + "\nblue +, red −; width ∝ |w|; dotted: residual channel" + hidden, fontsize=9, pad=48)
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------------------------------------------------
# The figures of `minisparse reproduce`


def plot_frontier(points: list[dict], tasks: list[str], path=None):
    """The paper's frontier in miniature: geometric-mean circuit edges (log) against validation loss, one point per
    model (or checkpoint), one line per weight density. points: {"density", "val_bpb", "edges", "point"}."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    densities = sorted({p["density"] for p in points}, key=lambda d: 1.0 if d == "dense" else 1 / float(d[2:]),
                       reverse=True)
    for i, d in enumerate(densities):
        ps = sorted((p for p in points if p["density"] == d), key=lambda p: p["val_bpb"])
        label = d if d == "dense" else f"density {d}"
        ax.plot([p["val_bpb"] for p in ps], [p["edges"] for p in ps], "o-", color=f"C{i}", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("validation loss (bits per byte)")
    ax.set_ylabel("circuit edges (geometric mean over tasks)")
    ax.set_title(f"Circuit size vs loss, {len(tasks)} task{'s' * (len(tasks) != 1)} every model solves", fontsize=10)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_edges_per_task(comparisons: list[dict], path=None):
    """Per task: dense circuit edges against sparse circuit edges, log-log, one marker per comparison
    ({"per_task": {task: {"dense_edges", "sparse_edges"}}, "sparse", "dense"}); the diagonal is 'same size'."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.subplots()
    tasks = sorted({t for c in comparisons for t in c["per_task"]})
    markers = "osD^v<>phX*"
    lo, hi = math.inf, 1.0
    for i, task in enumerate(tasks):
        xs = [c["per_task"][task]["sparse_edges"] for c in comparisons if task in c["per_task"]]
        ys = [c["per_task"][task]["dense_edges"] for c in comparisons if task in c["per_task"]]
        ax.scatter(xs, ys, marker=markers[i % len(markers)], color=f"C{i % 10}", label=task, s=36)
        lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
    lo = max(1.0, lo)
    ax.plot([lo, hi], [lo, hi], color="#888888", lw=1, ls="--", label="same size")
    ax.plot([lo, hi / 10], [lo * 10, hi], color="#888888", lw=1, ls=":", label="10× more dense edges")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sparse circuit edges")
    ax.set_ylabel("dense circuit edges (matched loss)")
    ax.set_title("Each task's circuit, dense vs weight-sparse", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_targets(targets: dict[str, dict[str, list[dict]]], path=None):
    """The paper's Figure 2 in miniature, one small panel per task: circuit edges (log) against the task loss pruning
    had to reach, one curve per model ({task: {point: [{"target", "n_edges", "reached"}]}}); an open marker is a
    target pruning did not reach."""
    from matplotlib.figure import Figure

    tasks = sorted(targets)
    cols = min(3, len(tasks))
    rows = -(-len(tasks) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.9 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax, task in zip(axes, tasks):
        for i, (point, frontier) in enumerate(sorted(targets[task].items())):
            xs, ys = [f["target"] for f in frontier], [max(1, f["n_edges"]) for f in frontier]
            ax.plot(xs, ys, "-", color=f"C{i}", label=point)
            for f, x, y in zip(frontier, xs, ys):
                ax.plot(x, y, "o", color=f"C{i}", mfc=f"C{i}" if f["reached"] else "white")
        ax.set_yscale("log")
        ax.invert_xaxis()         # stricter targets to the right
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("pruning target (task loss, nats)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("circuit edges")
    axes[0].legend(fontsize=7)
    for ax in axes[len(tasks):]:
        ax.axis("off")
    fig.suptitle("Circuit size against the pruning target, dense (matched loss) and weight-sparse", fontsize=10)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
