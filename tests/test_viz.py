"""draw_circuit: a PNG for a tiny circuit, and a figure for a crowded one, without a display."""

from __future__ import annotations

import numpy as np

from minisparse.circuits import Circuit
from minisparse.viz import draw_circuit


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


def test_draw_circuit_writes_a_png(tmp_path):
    path = tmp_path / "circuit.png"
    draw_circuit(tiny_circuit(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_draw_circuit_on_a_given_axis_and_a_crowded_circuit(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    src = [f"L0.mlp_neuron[{i}]" for i in range(40)]
    dst = [f"L0.mlp_out[{i}]" for i in range(20)]
    edges = [(s, d, float(rng.normal())) for s in src for d in dst if rng.random() < 0.4]
    c = Circuit(task="crowded", nodes=src + dst, edges=edges, task_loss=0.1, sufficiency=0.1, necessity=1.0)
    fig, ax = plt.subplots()
    assert draw_circuit(c, ax=ax) is fig
    draw_circuit(c, tmp_path / "crowded.png")
    plt.close(fig)
    assert (tmp_path / "crowded.png").stat().st_size > 5000
