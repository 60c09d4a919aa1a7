"""`Circuit`: what pruning finds — its nodes and edges and the numbers that say whether it is real."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from minisparse.rundir import write_text_atomic


@dataclass
class Circuit:
    """A task circuit of one model (DESIGN §5).

    nodes: kept channels, "L{l}.{site}[{i}]", in forward order.
    edges: (src, dst, weight) between kept nodes (see `minisparse.circuits.edges` for which entries count, and the
        "tok[t]", "resid[c]", "logit[a]" names of the embedding and unembedding ends).
    task_loss: task loss of the circuit alone (everything else ablated) on the examples it was pruned on; ≤ target_loss
        when `reached_target`.
    sufficiency: the same ablation, on held-out examples (the task's test templates): the circuit is sufficient if this
        is ≤ target_loss too.
    necessity: task loss on held-out examples with only the circuit ablated: it should collapse towards chance
        (log 2 ≈ 0.693) or beyond if the circuit is the mechanism and not a bystander.
    full_loss: the unpruned model's task loss on the held-out examples, for reference.
    controls: the same pruning on controls (`minisparse.circuits.controls`), name -> numbers.
    settings: how the circuit was found (k_coef, steps, lr, seed, ablation, ...), so it can be reproduced.
    """

    task: str
    nodes: list[str]
    edges: list[tuple[str, str, float]]
    task_loss: float
    sufficiency: float
    necessity: float
    full_loss: float = float("nan")
    target_loss: float = 0.15
    reached_target: bool = True
    n_total_nodes: int = 0
    answers: tuple[str, str] = ("", "")
    controls: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def summary(self) -> str:
        """One paragraph for a terminal."""
        lines = [f"circuit for {self.task}: {self.n_nodes} of {self.n_total_nodes} nodes, {self.n_edges} edges",
                 f"  task loss {self.task_loss:.3f} (target {self.target_loss}"
                 f"{'' if self.reached_target else ', NOT reached'}), full model {self.full_loss:.3f}",
                 f"  held out: sufficiency {self.sufficiency:.3f} (circuit alone), "
                 f"necessity {self.necessity:.3f} (circuit ablated)"]
        for name, c in self.controls.items():
            lines.append(f"  control {name}: {c.get('n_nodes')} nodes, {c.get('n_edges')} edges, "
                         f"task loss {c.get('task_loss', float('nan')):.3f}, "
                         f"held out {c.get('sufficiency', float('nan')):.3f}"
                         f"{'' if c.get('reached_target', True) else ' (target NOT reached)'}")
        return "\n".join(lines)

    def record(self) -> dict:
        """Its numbers and nodes without the edge list: what a scorecard keeps, and what `scorecard.verdict` reads."""
        return {"nodes": self.nodes, "n_nodes": self.n_nodes, "n_edges": self.n_edges,
                "n_total_nodes": self.n_total_nodes, "task_loss": self.task_loss,
                "reached_target": self.reached_target, "sufficiency": self.sufficiency, "necessity": self.necessity,
                "full_loss": self.full_loss, "controls": self.controls, "seconds": self.settings.get("seconds")}

    def to_json(self, path=None, indent: int | None = None) -> str:
        """The circuit as JSON (edges as [src, dst, weight] lists); also written to `path` if given."""
        d = dataclasses.asdict(self)
        d["edges"] = [[s, t, float(w)] for s, t, w in self.edges]
        text = json.dumps(d, indent=indent)
        if path is not None:
            write_text_atomic(Path(path), text)
        return text

    @classmethod
    def from_json(cls, text: str, source: str = "circuit JSON") -> Circuit:
        """Read back what `to_json` wrote, refusing (ValueError naming `source` and the field) anything else."""
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{source} is not JSON ({e})") from None
        return cls(**_checked_fields(d, source))

    @classmethod
    def load(cls, path) -> Circuit:
        """Read a circuit file written by `to_json` (e.g. by `minisparse prune --json`)."""
        path = Path(path)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a circuit file (not UTF-8 text)") from None
        return cls.from_json(text, str(path))


def _checked_fields(d, source: str) -> dict:
    """The fields of a circuit read from JSON, each of the type it must have."""
    def bad(what: str):
        return ValueError(f"{source} is not a circuit: {what}")

    if not isinstance(d, dict):
        raise bad(f"it holds a {type(d).__name__}, not an object of circuit fields")
    known = {f.name for f in dataclasses.fields(Circuit)}
    unknown, missing = sorted(set(d) - known), [f.name for f in dataclasses.fields(Circuit)
                                                          if f.default is f.default_factory is dataclasses.MISSING
                                                          and f.name not in d]
    if unknown or missing:
        raise bad(f"unknown field(s) {unknown[:5]}, missing field(s) {missing}; known fields are {sorted(known)}")
    if not isinstance(d["task"], str):
        raise bad(f"'task' must be a task name, got {d['task']!r:.60}")
    if not (isinstance(d["nodes"], list) and all(isinstance(n, str) for n in d["nodes"])):
        raise bad("'nodes' must be a list of node names like 'L0.attn_in[3]'")
    edges = d["edges"]
    ok = isinstance(edges, list) and all(
        isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and isinstance(e[1], str)
        and isinstance(e[2], (int, float)) and not isinstance(e[2], bool) for e in edges)
    if not ok:
        raise bad("'edges' must be a list of [source, destination, weight] triples")
    answers = d.get("answers", ["", ""])
    if not (isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)):
        raise bad(f"'answers' must be a pair of strings, got {answers!r:.60}")
    for name in ("task_loss", "sufficiency", "necessity", "full_loss", "target_loss", "n_total_nodes"):
        if name in d and (not isinstance(d[name], (int, float)) or isinstance(d[name], bool)):
            raise bad(f"{name!r} must be a number, got {d[name]!r:.60}")
    for name in ("controls", "settings"):
        if not isinstance(d.get(name, {}), dict):
            raise bad(f"{name!r} must be an object")
    if not isinstance(d.get("reached_target", True), bool):
        raise bad("'reached_target' must be true or false")
    return {**d, "edges": [(s, t, float(w)) for s, t, w in edges], "answers": tuple(answers)}
