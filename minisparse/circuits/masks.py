"""Node masks for circuit pruning (DESIGN §5): one scalar τ per node, a hard step forward, a smooth step backward.

Every channel of every activation site is a node. Pruning gives each node a score τ and, right after the site's
AbsTopK, replaces its activation x by

    x·H(τ) + μ·(1 − H(τ)),      H(τ) = 1 if τ ≥ 0 else 0

so the forward pass only ever sees a node fully kept (H = 1) or fully ablated to its mean μ (H = 0): the circuit that
is evaluated is exactly the circuit that is reported. A step has zero gradient almost everywhere, so the backward
pass pretends H was the sigmoid σ(τ/T) and uses its derivative (straight-through estimator with a sigmoid-derivative
surrogate):

    dL/dτ = dL/dg · σ'(τ/T) / T,     g = H(τ) the gate the model saw,  T = SURROGATE_TEMPERATURE

dL/dg comes from the model: the NumPy GPT's hand-written `backward` returns it per site, MLX's autograd does the same.

Sites are keyed "L{l}.{site}" (minisparse.params.site_sizes); masks, scores and means are dicts of [n] arrays under
those keys, so they plug straight into the models' `gates` argument.
"""

from __future__ import annotations

import numpy as np

from minisparse.data import get_batch, load_corpus
from minisparse.params import site_sizes, weights_digest

TAU_INIT_MEAN, TAU_INIT_STD = 0.1, 0.01   # the paper's init: every node starts just on the "kept" side of the step
TAU_CLAMP = 1.0                           # τ stays in [−1, 1], so no node drifts so far that the surrogate forgets it
# The surrogate is σ(τ/T). T = 0.1 puts the step's smooth region on the scale τ lives on: at the init τ = 0.1 the
# surrogate slope is σ'(1)/T ≈ 2.0, and at |τ| = 1 (the clamp) it is still ≈ 4.5e-4, small but not zero.
SURROGATE_TEMPERATURE = 0.1


def init_tau(sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """{site: [n]} float64 scores drawn N(0.1, 0.01) and clamped to [−1, 1], one per node, in site order."""
    rng = np.random.default_rng(seed)
    return {key: np.clip(rng.normal(TAU_INIT_MEAN, TAU_INIT_STD, size=n), -TAU_CLAMP, TAU_CLAMP)
            for key, n in sizes.items()}


def heaviside(tau: np.ndarray) -> np.ndarray:
    """H(τ): [n] -> [n] float64, 1 where τ ≥ 0 (kept), 0 where τ < 0 (ablated). τ = 0 counts as kept, so that
    "every τ ≥ 0" means "nothing ablated"."""
    return (np.asarray(tau) >= 0).astype(np.float64)


def surrogate_grad(tau: np.ndarray, temperature: float = SURROGATE_TEMPERATURE) -> np.ndarray:
    """d/dτ σ(τ/T) = σ(τ/T)·(1 − σ(τ/T)) / T: [n] -> [n], what the backward pass uses in place of H'(τ) = 0."""
    s = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(tau, dtype=np.float64) / temperature))   # σ(τ/T), overflow-free
    return s * (1.0 - s) / temperature


def gates_from_mask(mask: dict[str, np.ndarray], means: dict[str, np.ndarray]) -> dict[str, tuple]:
    """{site: [n] 0/1 mask} and {site: [n] μ} -> the models' `gates` argument {site: (g, μ)}."""
    return {key: (np.asarray(mask[key], dtype=np.float64), means[key]) for key in mask}


def tau_grads(gate_grads: dict[str, np.ndarray], tau: dict[str, np.ndarray],
              temperature: float = SURROGATE_TEMPERATURE) -> dict[str, np.ndarray]:
    """Straight-through: dL/dτ = dL/dg · σ'(τ/T)/T, per site. `gate_grads` are dL/dg at g = H(τ)."""
    return {key: np.asarray(gate_grads[key], dtype=np.float64) * surrogate_grad(tau[key], temperature)
            for key in tau}


def keep_top(tau: dict[str, np.ndarray], k: int,
             tiebreak: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A 0/1 mask keeping the `k` nodes of largest τ over all sites.

    Equal τ (e.g. several nodes pinned at the clamp τ = 1) are ordered by `tiebreak`, smallest first (pruning passes
    Adam's first moment of dL/dτ: the more negative, the harder the task still pulls the node in), then by forward
    order, so the pick is reproducible.
    """
    keys = list(tau)
    flat = np.concatenate([tau[key] for key in keys])
    second = np.concatenate([tiebreak[key] for key in keys]) if tiebreak is not None else np.zeros_like(flat)
    order = np.lexsort((second, -flat))                  # last key is primary; lexsort is stable
    keep = np.zeros(flat.size)
    keep[order[:max(0, int(k))]] = 1.0
    out, start = {}, 0
    for key in keys:
        n = tau[key].size
        out[key] = keep[start:start + n]
        start += n
    return out


def node_names(mask: dict[str, np.ndarray]) -> list[str]:
    """The kept nodes of a {site: [n] 0/1} mask as "L{l}.{site}[{i}]", in forward order."""
    return [f"{key}[{i}]" for key, m in mask.items() for i in np.flatnonzero(np.asarray(m) > 0.5)]


def parse_node(name: str) -> tuple[str, int]:
    """"L0.attn_in[3]" -> ("L0.attn_in", 3)."""
    key, _, rest = name.partition("[") if isinstance(name, str) else ("", "", "")
    if not (rest.endswith("]") and rest[:-1].isdigit()):
        raise ValueError(f"not a node name: {name!r}; nodes are named like 'L0.attn_in[3]'")
    return key, int(rest[:-1])


def mask_from_nodes(nodes, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """The {site: [n] 0/1} mask of a list of node names, which must all be nodes of a model with these site sizes."""
    mask = {key: np.zeros(n) for key, n in sizes.items()}
    for name in nodes:
        key, i = parse_node(name)
        if key not in sizes or i >= sizes[key]:
            last = list(sizes)[-1]
            raise ValueError(f"node {name!r} is not in this model (its sites run from {list(sizes)[0]} to {last}, "
                             f"{sizes[last]} channels at the last): was the circuit pruned on another model?")
        mask[key][i] = 1.0
    return mask


# ----------------------------------------------------------------------------------------------------------------------
# What an ablated node is replaced with.

def mean_ablation(model, data: np.ndarray | None = None, *, n_batches: int = 4, batch_size: int = 16,
                  n_ctx: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """{site: [n]} each node's mean activation over pretraining text: what mean ablation replaces a pruned node with.

    `data`: a 1-D token stream, default the training corpus (`minisparse.data.load_corpus().train`). The mean is over
    n_batches·batch_size random windows of n_ctx tokens (default the model's n_ctx), every position counted. Means are
    taken after AbsTopK, so they include the zeros AbsTopK writes: μ is what the next layer sees on average.
    """
    if data is None:
        data = load_corpus().train
    n_ctx = n_ctx or model.config.n_ctx
    sums = {key: np.zeros(n) for key, n in site_sizes(model.config).items()}
    count = 0
    for i in range(n_batches):
        x, _ = get_batch(data, batch_size, n_ctx, seed, i)
        for key, a in model.site_activations(x).items():
            sums[key] += a.reshape(-1, a.shape[-1]).sum(axis=0, dtype=np.float64)
        count += x.size
    return {key: s / count for key, s in sums.items()}


def zero_ablation(model) -> dict[str, np.ndarray]:
    """{site: [n]} zeros: zero ablation, the option the paper compares against (a pruned node outputs 0)."""
    return {key: np.zeros(n) for key, n in site_sizes(model.config).items()}


_MEANS: dict[tuple, dict[str, np.ndarray]] = {}   # (weights digest, dtype, seed) -> means, the most recent few


def ablation_means(model, ablation: str, seed: int = 0) -> dict[str, np.ndarray]:
    """{site: [n]} what an ablated node outputs: its mean over pretraining text ("mean"), or 0 ("zero").

    Mean ablation runs the model over 64 windows of the corpus. Its result depends only on the weights and `seed`, so
    it is kept (for the last few models, by a digest of their weights) and reused: `reproduce` prunes every task,
    with several seeds and controls, on each model, and computes its means once.
    """
    if ablation == "zero":
        return zero_ablation(model)
    if ablation != "mean":
        raise ValueError(f"ablation must be 'mean' or 'zero', got {ablation!r}")
    key = (weights_digest(model.numpy_params()), str(model.dtype), seed)
    if key not in _MEANS:
        while len(_MEANS) >= 8:
            del _MEANS[next(iter(_MEANS))]       # the oldest
        _MEANS[key] = mean_ablation(model, seed=seed)
    return {site: mu.copy() for site, mu in _MEANS[key].items()}
