"""The edges of a circuit (DESIGN §5): the weights that connect its kept nodes.

Nodes are channels of the eight activation sites. Within a block, a weight matrix (stored (out, in)) connects one
site's channels to the next's, and an entry W[j, i] is an edge i → j when both end nodes are kept:

    Wq, Wk, Wv   attn_in[i]    → q[j], k[j], v[j]
    Wo           v[j]          → attn_out[i]       (through the attention pattern, which mixes positions, not channels)
    Wup          mlp_in[i]     → mlp_neuron[j]
    Wdown        mlp_neuron[j] → mlp_out[i]

q and k have no outgoing weight edges: they act through the attention scores q·k, which carry no weights.

Between blocks the residual stream carries channel c unchanged (an identity, no weight), so the only weighted edges
outside the blocks are the embedding and the unembedding. A residual channel c counts as *used* by the circuit when a
kept node reads or writes it:

    read:    L{l}.attn_in[c], L{l}.mlp_in[c]     (RMSNorm of the residual, channel c, then AbsTopK)
    written: L{l}.attn_out[c], L{l}.mlp_out[c]   (added to the residual at channel c)

for any layer l. For every used channel c the circuit then holds the `wte` entries wte[t, c] of every token t that
appears in the task's prompts (edge "tok[t]" → "resid[c]") and the `lm_head` entries lm_head[a, c] of the two answer
tokens (edge "resid[c]" → "logit[a]"). RMSNorm gains and biases are not edges (they connect nothing to anything).

Which entries count: the nonzero ones (`nonzero_only=True`, the default). That is the weight-sparse model's real
connectivity, and in a dense model every entry is nonzero, so the same rule counts every entry between kept nodes —
a dense model's circuit size is the product of its kept widths. `nonzero_only=False` counts every entry regardless.
"""

from __future__ import annotations

import numpy as np

from minisparse.config import ModelConfig

# (source site, destination site, parameter name inside block l): W[dst, src] is the edge's weight
BLOCK_EDGES = (
    ("attn_in", "q", "attn.q_proj.weight"),
    ("attn_in", "k", "attn.k_proj.weight"),
    ("attn_in", "v", "attn.v_proj.weight"),
    ("v", "attn_out", "attn.o_proj.weight"),
    ("mlp_in", "mlp_neuron", "mlp.up_proj.weight"),
    ("mlp_neuron", "mlp_out", "mlp.down_proj.weight"),
)
READS_RESIDUAL = ("attn_in", "mlp_in")
WRITES_RESIDUAL = ("attn_out", "mlp_out")

Edge = tuple[str, str, float]


def _kept(mask: dict[str, np.ndarray], key: str) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask.get(key, ())) > 0.5)


def residual_channels(mask: dict[str, np.ndarray], config: ModelConfig) -> np.ndarray:
    """Sorted residual channels that a kept node reads or writes, in any layer."""
    used = [_kept(mask, f"L{l}.{s}") for l in range(config.n_layer) for s in READS_RESIDUAL + WRITES_RESIDUAL]
    return np.unique(np.concatenate(used)) if used else np.empty(0, dtype=np.intp)


def _entries(w: np.ndarray, rows: np.ndarray, cols: np.ndarray, nonzero_only: bool):
    # W[rows][:, cols] -> (row, col, value) triples of the entries that count
    sub = w[np.ix_(rows, cols)]
    r, c = np.nonzero(sub) if nonzero_only else np.indices(sub.shape).reshape(2, -1)
    return zip(rows[r].tolist(), cols[c].tolist(), sub[r, c].tolist())


def circuit_edges(params: dict[str, np.ndarray], config: ModelConfig, mask: dict[str, np.ndarray],
                  tokens=(), answer_ids=(), *, nonzero_only: bool = True) -> list[Edge]:
    """Every edge (src, dst, weight) between kept nodes, in forward order.

    params: the flat DESIGN §2 dict (weights (out, in)); mask: {"L{l}.{site}": [n] 0/1}, kept = 1; tokens: token ids
    in the task prompts (their `wte` rows count); answer_ids: the two answer tokens (their `lm_head` rows count).
    """
    edges: list[Edge] = []
    resid = residual_channels(mask, config)
    for t in np.unique(np.asarray(tokens, dtype=np.int64)):
        edges += [(f"tok[{t}]", f"resid[{c}]", w)
                  for _, c, w in _entries(params["wte.weight"], np.array([t]), resid, nonzero_only)]
    for l in range(config.n_layer):
        for src, dst, name in BLOCK_EDGES:
            w = params[f"blocks.{l}.{name}"]                                       # [n_dst, n_src]
            edges += [(f"L{l}.{src}[{i}]", f"L{l}.{dst}[{j}]", v)
                      for j, i, v in _entries(w, _kept(mask, f"L{l}.{dst}"), _kept(mask, f"L{l}.{src}"), nonzero_only)]
    for a in np.asarray(answer_ids, dtype=np.int64):
        edges += [(f"resid[{c}]", f"logit[{a}]", w)
                  for _, c, w in _entries(params["lm_head.weight"], np.array([a]), resid, nonzero_only)]
    return edges
