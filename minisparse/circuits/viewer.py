"""A circuit in the browser: one self-contained HTML file (`minisparse view`), opened from disk, no server, no network.

Layers left to right, one column per site, kept nodes as dots; edges are the nonzero weights between kept nodes (blue
+, red −, width ∝ |w|). Hovering a node shows its top-activating contexts and what ablating it alone costs; clicking it
lights its edges in and out; clicking a head shows its attention from the answer position on a held-out prompt. A
slider hides small weights and a checkbox per layer collapses it, so a circuit of hundreds of nodes stays readable.
"""

from __future__ import annotations

import json
import subprocess
from importlib.resources import files
from pathlib import Path

from minisparse.params import SITES
from minisparse.rundir import write_text_atomic

from .circuit import Circuit
from .explain import explain
from .heads import head_attention
from .masks import parse_node


def viewer_data(model, circuit: Circuit, task, n_contexts: int = 3, explanations=None, heads=None) -> dict:
    """What the page draws: columns of nodes in forward order, block edges, each node's reading, each head's look.
    `explanations` (from `explain`, with at least `n_contexts` contexts each) and `heads` (from `head_attention`) are
    computed here unless given."""
    if explanations is None:
        explanations = explain(model, circuit, task, n_contexts=n_contexts)
    explanations = {e.node: e for e in explanations}
    columns: dict[str, list[tuple[int, str]]] = {}
    for name in circuit.nodes:
        key, i = parse_node(name)
        columns.setdefault(key, []).append((i, name))
    order = sorted(columns, key=lambda k: (int(k.split(".")[0][1:]), SITES.index(k.split(".")[1])))
    edges = [{"s": s, "t": t, "w": float(w)} for s, t, w in circuit.edges if s.startswith("L") and t.startswith("L")]
    heads = [{"layer": h.layer, "head": h.head, "summary": h.summary().split(": ", 1)[1],
              "bytes": list(h.example[0]), "weights": [round(float(w), 4) for w in h.example[1]]}
             for h in (head_attention(model, circuit, task) if heads is None else heads)]
    return {
        "title": f"{circuit.task}: {circuit.n_nodes} nodes, {len(edges)} block edges (of {circuit.n_edges} edges); "
                 f"held-out sufficiency {circuit.sufficiency:.3f}, necessity {circuit.necessity:.3f}",
        "columns": [{"name": k, "layer": int(k.split(".")[0][1:]), "nodes": [n for _, n in sorted(columns[k])]}
                    for k in order],
        "nodes": {n: {"firing": e.firing_rate, "ablation": e.delta_in_model, "in_circuit": e.delta_in_circuit,
                      "contexts": [[text, float(a)] for text, a in e.contexts[:n_contexts]]}
                  for n, e in explanations.items()},
        "edges": edges, "wmax": max((abs(e["w"]) for e in edges), default=1.0), "heads": heads,
    }


def viewer_html(data: dict) -> str:
    page = files("minisparse.circuits").joinpath("viewer.html").read_text(encoding="utf-8")
    # JSON inside a <script>: no "<" at all, so no text from the corpus can close the element or open a comment
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    return page.replace("/*DATA*/null", payload).replace("TITLE", data["title"].replace("<", "&lt;"), 1)


def write_viewer(model, circuit: Circuit, task, path, **computed) -> Path:
    """The page of `circuit` at `path`; `computed`: `viewer_data`'s explanations and heads, if already at hand."""
    return write_text_atomic(Path(path), viewer_html(viewer_data(model, circuit, task, **computed)))


def chromium_command(*args: str) -> list[str]:
    """Headless Chromium as the tests and `--screenshot` run it: no sandbox (root), no GPU, and no network: every
    host name resolves to nothing, so a request leaving the file fails and says so on the console."""
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        raise FileNotFoundError("no Chromium found (chromium, chromium-browser or google-chrome on PATH); install "
                                "it, e.g. `apt-get install chromium`")
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr", "--v=0", *args]


def screenshot(html: Path, png: Path, size: tuple[int, int] = (1600, 1000)) -> subprocess.CompletedProcess:
    """Render `html` in headless Chromium and save a screenshot; returns the finished process (its stderr holds the
    page's console)."""
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        try:
            command = chromium_command(f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                                       f"--screenshot={Path(png).resolve()}", Path(html).resolve().as_uri())
            return subprocess.run(command, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise RuntimeError("Chromium did not finish the screenshot within 120 s") from None
