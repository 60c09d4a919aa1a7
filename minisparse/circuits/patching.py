"""Causal tests on contrastive pairs: activation patching, attribution patching, direct logit attribution.

A task's examples come in contrastive pairs: two prompts from one template that differ only where the answer is decided
(`'` vs `"` opening a string). Run on the *clean* prompt, the model should prefer the clean answer; on the *corrupt*
one, the other. The logit difference LD = logit[clean answer] − logit[corrupt answer] at the last position measures it.

- **Activation patching**: run the corrupt prompt, but give chosen nodes the values they had on the clean prompt. The
  share of LD restored, (LD_patched − LD_corrupt) / (LD_clean − LD_corrupt), says how much of the difference those
  nodes carry: 1 when they carry all of it, 0 when none.
- **Attribution patching** (Nanda 2023): the first-order estimate of patching each node alone, for every node at
  once: Σ over pairs and positions of ∂LD/∂value (on the corrupt run) × (clean value − corrupt value). One forward
  pass per prompt and one backward pass; in NumPy the gradient is the hand-written backward's (`site_grads`).
- **Direct logit attribution**: LD written as a sum over what writes the residual stream (the embeddings and each
  layer's `attn_out` and `mlp_out` channels), through the final RMSNorm *with its scale held fixed* at its value on the
  prompt: contribution_c = value_c · g_c / rms · (W_U[right, c] − W_U[wrong, c]). The contributions and the bigram term
  sum to LD exactly, because with the scale held the map from the residual stream to the logits is linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minisparse.data import encode
from minisparse.params import RMS_EPS, site_sizes
from minisparse.tasks.task import prompts_to_idx

from .explain import node_ablations
from .masks import ablation_means, parse_node
from .prune import N_EVAL, TaskData


@dataclass(frozen=True)
class Pairs:
    """Contrastive pairs as two aligned batches: clean[i] and corrupt[i] share a template; `right`/`wrong` are the
    token ids of the clean and the corrupt answer of pair i."""

    clean: np.ndarray       # [P, T]
    corrupt: np.ndarray     # [P, T]
    right: np.ndarray       # [P]
    wrong: np.ndarray       # [P]

    @classmethod
    def from_task(cls, task, n: int, n_ctx: int, split: str = "test", seed: int = 0) -> Pairs:
        """`n` pairs of `task` whose two prompts have the same length, so that position t of one is position t of the
        other (patching is position by position); in half of them the clean prompt is the one with answer 0. A task
        whose pairs never align (`while True` / `return True`) is refused."""
        aligned = [p for p in task.pairs(4 * n, split, seed) if len(encode(p[0].prompt)) == len(encode(p[1].prompt))]
        if len(aligned) < n:
            raise ValueError(f"task {task.name!r}: {len(aligned)} of {4 * n} contrastive pairs have prompts of equal "
                             f"length, {n} needed: patching position by position needs aligned prompts; choose a task "
                             "whose two prompts differ only in the bytes that decide the answer")
        pairs = [pair if i % 2 == 0 else pair[::-1] for i, pair in enumerate(aligned[:n])]
        idx = prompts_to_idx([ex.prompt for pair in pairs for ex in pair], n_ctx)       # one T for both halves
        ids = np.asarray(task.answer_ids)
        return cls(idx[0::2], idx[1::2], ids[[a.answer for a, _ in pairs]], ids[[b.answer for _, b in pairs]])


def logit_diff(logits: np.ndarray, pairs: Pairs) -> np.ndarray:
    """[P] logit[right] − logit[wrong] at the last position."""
    last = np.asarray(logits)[:, -1].astype(np.float64)
    rows = np.arange(len(pairs.right))
    return last[rows, pairs.right] - last[rows, pairs.wrong]


def patch_nodes(model, pairs: Pairs, nodes) -> float:
    """The share of the mean logit difference restored on the corrupt prompts when `nodes` take their values from the
    clean run, at every position. A node is "L{l}.{site}[i]", or a whole hook key ("L0.resid_pre": the embeddings)."""
    by_site: dict[str, list[int] | slice] = {}
    for name in nodes:
        if "[" not in name:
            by_site[name] = slice(None)
            continue
        key, i = parse_node(name)
        by_site.setdefault(key, []).append(i)
    clean_logits, clean = model.run_with_cache(pairs.clean, names=list(by_site))
    corrupt_ld = logit_diff(model.forward(pairs.corrupt), pairs).mean()

    def patch(value, key):
        value[..., by_site[key]] = clean[key][..., by_site[key]]
        return value

    patched = logit_diff(model.run_with_hooks(pairs.corrupt, {key: patch for key in by_site}), pairs).mean()
    return float((patched - corrupt_ld) / (logit_diff(clean_logits, pairs).mean() - corrupt_ld))


def attribution_scores(model, pairs: Pairs) -> dict[str, float]:
    """{node: estimated change of the mean logit difference if that node alone were patched from clean into corrupt}
    for every node of the model, from one backward pass (attribution patching)."""
    sizes = site_sizes(model.config)
    _, clean = model.run_with_cache(pairs.clean, names=list(sizes))
    _, corrupt = model.run_with_cache(pairs.corrupt, names=list(sizes))
    rows = np.arange(len(pairs.right))

    def mean_ld(logits):
        d = np.zeros_like(logits)
        d[rows, -1, pairs.right] = 1.0 / len(rows)
        d[rows, -1, pairs.wrong] -= 1.0 / len(rows)
        return float(logit_diff(logits, pairs).mean()), d

    _, grads = model.site_grads(pairs.corrupt, mean_ld)
    scores = {}
    for key in sizes:
        per_node = (grads[key].astype(np.float64) * (clean[key] - corrupt[key])).sum(axis=(0, 1))      # [n]
        scores.update({f"{key}[{i}]": float(s) for i, s in enumerate(per_node)})
    return scores


def direct_logit_attribution(model, pairs: Pairs) -> tuple[dict[str, np.ndarray], float, np.ndarray]:
    """({writer: [P, D] contribution of each residual channel it writes to the logit difference on the clean prompts},
    bigram term [P] summed in as a float array, LD [P]), through the final RMSNorm with its scale held fixed.

    Writers: "embed" (token and position embeddings), "L{l}.attn_out", "L{l}.mlp_out". Summed over writers and
    channels, plus the bigram term, the contributions equal the logit difference."""
    cfg, params = model.config, model.numpy_params()
    writers = [f"L{l}.{s}" for l in range(cfg.n_layer) for s in ("attn_out", "mlp_out")]
    last = f"L{cfg.n_layer - 1}.resid_post"
    logits, cache = model.run_with_cache(pairs.clean, names=["L0.resid_pre", last, *writers])
    x = cache[last][:, -1].astype(np.float64)                                                # [P, D] final residual
    scale = params["norm_f.weight"] / np.sqrt((x ** 2).mean(-1, keepdims=True) + RMS_EPS)    # [P, D], held fixed
    w_u = params["lm_head.weight"].astype(np.float64)
    direction = scale * (w_u[pairs.right] - w_u[pairs.wrong])                                # [P, D]
    parts = {"embed": cache["L0.resid_pre"][:, -1] * direction}
    parts.update({key: cache[key][:, -1] * direction for key in writers})
    bigram = np.zeros(len(pairs.right))
    if cfg.bigram:
        table, token = params["bigram.weight"].astype(np.float64), pairs.clean[:, -1]
        bigram = table[token, pairs.right] - table[token, pairs.wrong]
    return parts, bigram, logit_diff(logits, pairs)


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two equally long sequences (ties broken by order)."""
    ra, rb = (np.argsort(np.argsort(np.asarray(x, dtype=np.float64))) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(ra) > 1 else float("nan")


def patch_report(model, circuit, task, n_pairs: int = 32, seed: int = 0) -> dict:
    """What `minisparse patch` prints: the share of the logit difference the circuit's nodes restore, the nodes ranked
    by attribution patching beside their single-node ablations (and the rank correlation of the two), and direct logit
    attribution by writer, all on held-out contrastive pairs."""
    pairs = Pairs.from_task(task, n_pairs, model.config.n_ctx, "test", seed)
    scores = attribution_scores(model, pairs)
    data = TaskData.from_task(task, N_EVAL, model.config.n_ctx, "test", seed)
    ablations = node_ablations(model, circuit.nodes, data, ablation_means(model, "mean", seed))
    nodes = sorted(circuit.nodes, key=lambda n: -abs(scores[n]))
    parts, bigram, ld = direct_logit_attribution(model, pairs)
    return {"restored": patch_nodes(model, pairs, circuit.nodes), "n_pairs": n_pairs,
            "clean_ld": float(ld.mean()), "corrupt_ld": float(logit_diff(model.forward(pairs.corrupt), pairs).mean()),
            "attribution": {n: scores[n] for n in nodes}, "ablation": {n: ablations[n] for n in nodes},
            "rank_correlation": rank_correlation([abs(scores[n]) for n in nodes], [ablations[n] for n in nodes]),
            "dla": {w: float(p.sum(axis=1).mean()) for w, p in parts.items()}, "dla_bigram": float(bigram.mean())}


def patch_report_text(report: dict, top: int = 15) -> str:
    r = report
    lines = [f"activation patching: the circuit's {len(r['attribution'])} nodes, patched from clean into corrupt, "
             f"restore {r['restored']:.0%} of the logit difference (clean {r['clean_ld']:+.2f}, corrupt "
             f"{r['corrupt_ld']:+.2f}; {r['n_pairs']} held-out pairs)",
             f"its nodes by attribution patching (grad × (clean − corrupt)), beside single-node mean ablation in the "
             f"full model (Δ task loss); Spearman rank correlation of |attribution| with Δ loss: "
             f"{r['rank_correlation']:+.2f}"]
    lines += [f"  {n:<24} attribution {a:+8.3f}   ablation Δ loss {r['ablation'][n]:+.3f}"
              for n, a in list(r["attribution"].items())[:top]]
    lines.append("direct logit attribution on the clean prompts (final RMSNorm scale held fixed; the parts sum to the "
                 "logit difference): " + ", ".join(f"{w} {v:+.2f}" for w, v in r["dla"].items())
                 + f", bigram {r['dla_bigram']:+.2f}")
    return "\n".join(lines)
