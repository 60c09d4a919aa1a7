"""draw_circuit: what it draws (every node, edge and label, where and how), read back from the figure itself."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgb

from minisparse.circuits import Circuit
from minisparse.viz import NEGATIVE, POSITIVE, draw_circuit

matplotlib.use("Agg")


def tiny_circuit() -> Circuit:
    edges = [("tok[39]", "resid[3]", 0.8), ("tok[34]", "resid[3]", -0.5),
             ("L0.attn_in[3]", "L0.q[5]", 0.9), ("L0.attn_in[3]", "L0.k[2]", -0.4), ("L0.attn_in[3]", "L0.v[7]", 1.2),
             ("L0.v[7]", "L0.attn_out[1]", -0.7), ("L1.mlp_in[1]", "L1.mlp_neuron[12]", 0.6),
             ("L1.mlp_neuron[12]", "L1.mlp_out[4]", 0.3), ("resid[1]", "logit[39]", 0.5),
             ("resid[4]", "logit[34]", -0.9)]
    nodes = ["L0.attn_in[3]", "L0.q[5]", "L0.k[2]", "L0.v[7]", "L0.attn_out[1]", "L1.mlp_in[1]", "L1.mlp_neuron[12]",
             "L1.mlp_out[4]"]
    return Circuit(task="single_double_quote", nodes=nodes, edges=edges, task_loss=0.12, sufficiency=0.13,
                   necessity=1.9, answers=("'", '"'))


def drawn(fig):
    """(labels {text: (x, y)}, dots [(x, y)], edge lines [(start, end, rgb, width)], residual segments)."""
    ax = fig.axes[0]
    labels = {t.get_text(): t.get_position() for t in ax.texts}
    dots = [tuple(p) for c in ax.collections if isinstance(c, PathCollection) for p in c.get_offsets()]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    solid = [c for c in lines if c.get_linestyle()[0][1] is None]
    dotted = [c for c in lines if c.get_linestyle()[0][1] is not None]
    assert len(solid) <= 1 and len(dotted) <= 1
    edges = [] if not solid else [(tuple(seg[0]), tuple(seg[-1]), tuple(rgba[:3]), width) for seg, rgba, width in
                                  zip(solid[0].get_segments(), solid[0].get_colors(), solid[0].get_linewidths())]
    return labels, dots, edges, [] if not dotted else dotted[0].get_segments()


def at(p) -> tuple[float, float]:
    return (round(float(p[0]), 6), round(float(p[1]), 6))


def dot_of(labels, name):
    x, y = labels[name]
    return at((x - 0.06, y))      # a node's label sits just right of its dot


# how the ends outside the blocks are labelled: by their byte, quoted as Python does
BYTE_LABELS = {"tok[39]": 'tok["\'"]', "tok[34]": "tok['\"']", "logit[39]": 'logit["\'"]', "logit[34]": "logit['\"']"}


def test_draw_circuit_draws_every_node_edge_and_label(tmp_path):
    c = tiny_circuit()
    fig = draw_circuit(c, tmp_path / "circuit.png")
    labels, dots, edges, residual = drawn(fig)
    label = {n: BYTE_LABELS.get(n, n) for edge in c.edges for n in edge[:2]}
    # every node of the circuit, and every end of an edge outside the blocks, is a labelled dot, and nothing else is
    assert set(c.nodes) <= set(label) and set(label.values()) <= set(labels)
    assert sorted(map(at, dots)) == sorted(dot_of(labels, text) for text in set(label.values()))
    # the column headers of exactly the columns in use, in forward order from left to right
    headers = ["tokens", "resid (in)", "L0.attn_in", "L0.q", "L0.k", "L0.v", "L0.attn_out", "L1.mlp_in",
               "L1.mlp_neuron", "L1.mlp_out", "resid (out)", "logits"]
    assert [labels[h][0] for h in headers] == sorted(labels[h][0] for h in headers)
    assert not {f"L0.{s}" for s in ("mlp_in", "mlp_neuron", "mlp_out")} & set(labels), "no empty columns"
    # one line per edge, from its source's dot to its destination's: blue if positive, red if negative, wider if larger
    weight = {(dot_of(labels, label[s]), dot_of(labels, label[d])): w for s, d, w in c.edges}
    assert sorted((at(start), at(end)) for start, end, _, _ in edges) == sorted(weight)
    for start, end, rgb, _ in edges:
        assert np.allclose(rgb, to_rgb(POSITIVE if weight[at(start), at(end)] > 0 else NEGATIVE))
    by_size = sorted(edges, key=lambda e: abs(weight[at(e[0]), at(e[1])]))
    assert [e[3] for e in by_size] == sorted(e[3] for e in edges)
    # residual channels: 3 is read by L0.attn_in; 1 written by L0.attn_out, read by L1.mlp_in; 4 written by L1.mlp_out
    assert {tuple(map(at, seg)) for seg in residual} == {
        (dot_of(labels, "resid[3]"), dot_of(labels, "L0.attn_in[3]")),
        (dot_of(labels, "L0.attn_out[1]"), dot_of(labels, "L1.mlp_in[1]")),
        (dot_of(labels, "L1.mlp_in[1]"), dot_of(labels, "resid[1]")),
        (dot_of(labels, "L1.mlp_out[4]"), dot_of(labels, "resid[4]"))}
    assert "single_double_quote: 8 nodes, 10 edges, task loss 0.120" in fig.axes[0].get_title()
    assert (tmp_path / "circuit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_crowded_column_is_named_by_its_header_only_and_a_given_axis_is_used():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    src = [f"L0.mlp_neuron[{i}]" for i in range(40)]
    dst = [f"L0.mlp_out[{i}]" for i in range(20)]
    edges = [(s, d, float(rng.normal())) for s in src for d in dst if rng.random() < 0.4]
    c = Circuit(task="crowded", nodes=src + dst, edges=edges, task_loss=0.1, sufficiency=0.1, necessity=1.0)
    fig, ax = plt.subplots()
    try:
        assert draw_circuit(c, ax=ax, max_labels_per_column=30) is fig
        labels, dots, lines, _ = drawn(fig)
    finally:
        plt.close(fig)
    assert len(dots) == 60 and len(lines) == len(edges)
    assert not any(t.startswith("L0.mlp_neuron[") for t in labels), "40 > 30 nodes: only the header"
    assert {t for t in labels if t.startswith("L0.mlp_out[")} == set(dst)
    assert {"L0.mlp_neuron", "L0.mlp_out"} <= set(labels)


def test_a_big_circuit_can_be_drawn_with_its_block_edges_or_its_strongest_edges_only(tmp_path):
    c = tiny_circuit()
    block = [e for e in c.edges if e[0].startswith("L") and e[1].startswith("L")]
    _, _, edges, _ = drawn(draw_circuit(c, embeddings=False))
    assert len(edges) == len(block) == 6
    labels, _, edges, _ = drawn(draw_circuit(c, embeddings=False, max_edges=2))
    strongest = sorted(block, key=lambda e: -abs(e[2]))[:2]        # L0.attn_in[3] → L0.v[7] (1.2), → L0.q[5] (0.9)
    assert sorted((at(s), at(d)) for s, d, _, _ in edges) == sorted(
        (dot_of(labels, s), dot_of(labels, d)) for s, d, _ in strongest)
    assert all(n in labels for n in c.nodes), "every node is still drawn"
    title = draw_circuit(c, embeddings=False, max_edges=2).axes[0].get_title()
    assert "8 edges not drawn" in title and "all but the 2 of largest |w|" in title


def test_plot_targets_draws_one_panel_per_task_and_marks_missed_targets(tmp_path):
    from minisparse.viz import plot_targets

    frontier = [{"target": t, "n_edges": e, "reached": r} for t, e, r in ((0.3, 5, True), (0.1, 40, True),
                                                                          (0.05, 90, False))]
    fig = plot_targets({"a": {"dense": frontier, "sparse": frontier}, "b": {"dense": frontier}}, tmp_path / "t.png")
    drawn = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in drawn] == ["a", "b"]
    open_markers = [line for line in drawn[0].lines if line.get_markerfacecolor() == "white"]
    assert len(open_markers) == 2                               # the missed target, once per curve
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
