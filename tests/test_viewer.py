"""The circuit viewer in a real browser: headless Chromium loads the file from disk, runs it without a console error or
a single request leaving the file, draws one dot per node and one curve per block edge, and takes a screenshot.

Chromium is required (`.ci/run` installs Debian's `chromium`): without it these tests fail, loudly, never skip.
"""

import json
import re
import subprocess
import tempfile

import numpy as np
import pytest

from minisparse.circuits import Circuit
from minisparse.circuits.edges import circuit_edges
from minisparse.circuits.masks import mask_from_nodes
from minisparse.circuits.viewer import chromium_command, screenshot, write_viewer
from minisparse.config import ModelConfig
from minisparse.numpy import GPT
from minisparse.params import site_sizes
from minisparse.tasks import get_task

CFG = ModelConfig(vocab_size=256, n_ctx=48, d_model=16, n_layer=2, n_head=2, d_head=8, d_mlp=32)
TASK = get_task("single_double_quote")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    model = GPT(CFG, seed=0)
    rng = np.random.default_rng(0)
    nodes = [f"{key}[{i}]" for key, n in site_sizes(CFG).items() for i in rng.choice(n, 3, replace=False)]
    edges = circuit_edges(model.params, CFG, mask_from_nodes(nodes, site_sizes(CFG)), nonzero_only=True)
    circuit = Circuit(task=TASK.name, nodes=nodes, edges=edges, task_loss=0.1, sufficiency=0.2, necessity=1.0)
    path = write_viewer(model, circuit, TASK, tmp_path_factory.mktemp("viewer") / "circuit.html")
    block_edges = [e for e in edges if e[0].startswith("L") and e[1].startswith("L")]
    assert len(block_edges) > 10
    return path, circuit, block_edges


def run_chromium(path, *args):
    try:
        command = chromium_command(*args)
    except FileNotFoundError as e:
        pytest.fail(f"the viewer's browser test needs Chromium: {e}")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(command[:1] + [f"--user-data-dir={profile}"] + command[1:] + [path.resolve().as_uri()],
                              capture_output=True, text=True, timeout=120)


def page_requests(netlog: str) -> list[str]:
    """URLs the page itself asked for (Chromium's own background requests have no origin)."""
    events = json.loads(netlog)["events"]
    return sorted({e["params"]["url"] for e in events if "initiator" in e.get("params", {})
                   and e["params"]["initiator"] != "not an origin" and not e["params"]["url"].startswith("file:")})


def test_the_page_holds_everything_it_needs(page):
    html = page[0].read_text()
    assert not re.search(r"<(link|img|iframe)\b|\b(src|href)\s*=|url\(|@import|fetch\(|XMLHttpRequest", html)
    assert set(re.findall(r"https?://[^\"' ]+", html)) <= {"http://www.w3.org/2000/svg"}   # a namespace, not a request


def test_chromium_draws_every_node_and_edge_without_an_error_or_a_request(page, tmp_path):
    path, circuit, block_edges = page
    netlog = tmp_path / "net.json"
    done = run_chromium(path, f"--log-net-log={netlog}", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count('class="node') == circuit.n_nodes
    assert dom.count('class="edge') == len(block_edges)
    assert dom.count('class="head"') >= 1
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert page_requests(netlog.read_text()) == []


def test_the_network_check_sees_a_page_that_reaches_out(tmp_path):
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://example.invalid/x.png"></body></html>')
    netlog = tmp_path / "net.json"
    assert run_chromium(leaky, f"--log-net-log={netlog}", "--dump-dom").returncode == 0
    assert page_requests(netlog.read_text()) == ["http://example.invalid/x.png"]


def test_a_screenshot_of_the_page(page, tmp_path):
    png = tmp_path / "viewer.png"
    try:
        done = screenshot(page[0], png, size=(1200, 800))
    except FileNotFoundError as e:
        pytest.fail(f"the viewer's browser test needs Chromium: {e}")
    assert done.returncode == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_text_from_the_corpus_cannot_close_the_script_early():
    from minisparse.circuits.viewer import viewer_html

    data = {"title": "t</script>", "columns": [], "nodes": {"L0.q[0]": {"contexts": [["<!--<script>x</script>", 1.0]]}},
            "edges": [], "wmax": 1.0, "heads": []}
    html = viewer_html(data)
    script = html[html.index("const DATA"):html.index("</script>")]
    assert "<" not in script.split("\n")[0] and html.count("</script>") == 1
    assert json.loads(script.split("= ", 1)[1].split(";\n", 1)[0]) == data     # the payload reads back whole
