"""Are a model's channels features? How concentrated each channel's strongest contexts are (lesson 02).

Weight sparsity implies circuit sparsity when the features are the model's own channels (lesson 01). Whether a channel
is one feature can be measured, crudely, from what it responds to most: take its `k` top-activating contexts (largest
activation) and ask how many of them end on the same byte. A channel that is one byte-level feature ("fires on `(`")
has all `k` on one byte; a channel that mixes several features spreads them over several bytes.

    top_context_concentration(acts, labels, k)   any activations [N, C] and a label per context [N] -> (share, entropy)
    neuron_concentration(sites, idx, k, point)   the same for every layer of one site, from a model's site activations
                                                 on the windows `idx`, each context labelled by its last byte

`share` is the fraction of the top `k` whose label is the most common one among them (1: one label; 1/k: all differ);
`entropy` is the entropy, in nats, of the labels over the top `k` (0: one label; log k: all differ). A channel that is
positive on fewer than `k` contexts gets NaN in both: its "top k" would include contexts on which it does not fire.

Contexts are ranked by the signed activation, not |activation|: an MLP neuron fires when it is positive, and GELU's
negative floor (about −0.17, where the neuron is off) would otherwise fill the top `k` of a neuron that rarely fires
with arbitrary contexts. For a channel whose sign means nothing (a residual channel), measure each side: `acts` and
`-acts`.

The measure sees only features of the last byte: a channel that tracks "inside a docstring" is one feature and still
scores low. It is a proxy to compare models of one shape on the same text, not a verdict on any single channel.
"""

from __future__ import annotations

import numpy as np

__all__ = ["top_context_concentration", "neuron_concentration"]


def top_context_concentration(acts, labels, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(share, entropy), each [C]: how concentrated on one label the `k` contexts of largest activation of each
    channel (column of `acts` [N, C]) are; `labels` [N] holds an integer per context (e.g. the byte it ends on).

    NaN for a channel positive on fewer than `k` contexts. Ties at the k-th place are broken arbitrarily."""
    acts, labels = np.asarray(acts), np.asarray(labels)
    if acts.ndim != 2 or labels.shape != (acts.shape[0],):
        raise ValueError(f"acts must be [N, C] and labels [N]; got {acts.shape} and {labels.shape}")
    if not 1 <= k <= acts.shape[0]:
        raise ValueError(f"k must be in [1, {acts.shape[0]}] (the number of contexts), got {k}")
    top = np.argpartition(-acts, k - 1, axis=0)[:k]            # [k, C]: each channel's k strongest contexts
    lab = labels[top]                                          # [k, C]: the label of each
    counts = (lab[:, None, :] == lab[None, :, :]).sum(axis=1)  # [k, C]: how many of the k share each one's label
    share = counts.max(axis=0) / k
    # H = −Σ_v p_v log p_v = −(1/k) Σ_i log(c_i / k), where c_i counts the label of the i-th context: each label v
    # appears c_v = k·p_v times in the sum
    entropy = -np.mean(np.log(counts / k), axis=0)
    silent = np.count_nonzero(acts > 0, axis=0) < k
    share[silent] = entropy[silent] = np.nan
    return share, entropy


def neuron_concentration(sites: dict, idx, k: int = 20, point: str = "mlp_neuron") -> tuple[np.ndarray, np.ndarray]:
    """(share, entropy), each [n_layer, n]: `top_context_concentration` of every channel of site `point` in every
    layer, from `sites` = `model.site_activations(idx)` (or any dict holding its "L{layer}.{point}" entries [B, T, n]),
    over every position of the windows `idx` [B, T], each position's context labelled by the byte it ends on."""
    labels = np.asarray(idx).reshape(-1)
    layers = sorted(int(key[1:].split(".", 1)[0]) for key in sites if key.split(".", 1)[1] == point)
    if not layers:
        raise ValueError(f"no 'L{{layer}}.{point}' entry in sites (keys: {sorted(sites)[:4]}...)")
    per_layer = [top_context_concentration(np.asarray(sites[f"L{l}.{point}"]).reshape(labels.size, -1), labels, k)
                 for l in layers]
    return np.stack([s for s, _ in per_layer]), np.stack([e for _, e in per_layer])
