"""`Circuit`: what pruning finds — its nodes and edges and the numbers that say whether it is real."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


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

    def to_json(self, path=None, indent: int | None = None) -> str:
        """The circuit as JSON (edges as [src, dst, weight] lists); also written to `path` if given."""
        d = dataclasses.asdict(self)
        d["edges"] = [[s, t, float(w)] for s, t, w in self.edges]
        text = json.dumps(d, indent=indent)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path) -> Circuit:
        """Read back what `to_json` wrote: a JSON string, or a path to a file holding one."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown Circuit field(s) {unknown}; known fields are {sorted(known)}")
        d["edges"] = [(s, t, float(w)) for s, t, w in d["edges"]]
        d["answers"] = tuple(d.get("answers", ("", "")))
        return cls(**d)
