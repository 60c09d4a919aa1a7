"""The toy model of superposition (Elhage et al. 2022): n sparse features squeezed through m < n dimensions.

    h  = x Wᵀ                     [B, m]   W [m, n]: column i is feature i's direction in the hidden space
    x̂  = ReLU(h W + b)            [B, n]   read back with the same W
    L  = mean over the batch of Σ_i I_i (x̂_i − x_i)²          I_i: how much feature i matters

Each feature is 0 with probability `sparsity` and uniform in [0, 1] otherwise. With dense features the model keeps
the m most important ones, one per dimension; with sparse ones it packs many more into the same m dimensions at
small angles to each other, because two of them are rarely active at once. WᵀW shows which: its diagonal is each
feature's squared norm, its off-diagonal entries the interference between two features.
"""

from __future__ import annotations

import numpy as np

from minisparse.sparsity import topk_mask


def sample_features(rng: np.random.Generator, batch: int, n: int, sparsity: float) -> np.ndarray:
    """[batch, n]: each entry 0 with probability `sparsity`, else uniform in [0, 1]."""
    return rng.random((batch, n)) * (rng.random((batch, n)) >= sparsity)


def toy_forward(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    # [m, n], [n], [B, n] -> [B, n]
    return np.maximum((x @ w.T) @ w + b, 0.0)


def toy_loss_and_grads(w: np.ndarray, b: np.ndarray, x: np.ndarray, importance: np.ndarray):
    """(L, dL/dW [m, n], dL/db [n]). W is used twice, to write (h = x Wᵀ) and to read (h W), so its gradient has
    two terms."""
    h = x @ w.T                                       # [B, m]
    z = h @ w + b                                     # [B, n]
    x_hat = np.maximum(z, 0.0)
    err = x_hat - x
    loss = float(np.mean(np.sum(importance * err * err, axis=1)))
    dz = (2.0 / x.shape[0]) * importance * err * (z > 0)   # [B, n] through the ReLU
    dh = dz @ w.T                                     # [B, m]
    return loss, h.T @ dz + dh.T @ x, dz.sum(axis=0)  # read term + write term, bias


def one_direction_per_feature(w: np.ndarray) -> np.ndarray:
    """The weight-sparse projection used in the lesson: each feature (column of W) keeps only its largest |w|, so it
    lives on exactly one hidden dimension: `topk_mask` on Wᵀ with k = n and one forced entry per row."""
    return w * topk_mask(w.T, w.shape[1], min_per_row=1).T


def train_toy(n: int, m: int, sparsity: float, *, steps: int = 3000, batch: int = 1024, lr: float = 1e-2,
              importance_decay: float = 0.9, seed: int = 0, grads=toy_loss_and_grads, project=None):
    """Train the toy model with Adam; return (W [m, n], b [n], final loss). `grads` computes (loss, dW, db) (swap in
    your own); `project(W) -> W`, if given, runs after every step (e.g. `one_direction_per_feature`)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0 / np.sqrt(m), size=(m, n))
    b = np.zeros(n)
    if project is not None:
        w = project(w)
    importance = importance_decay ** np.arange(n)
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    loss = float("nan")
    for t in range(1, steps + 1):
        loss, dw, db = grads(w, b, sample_features(rng, batch, n, sparsity), importance)
        for p, g, m1, m2 in ((w, dw, moments[0], moments[1]), (b, db, moments[2], moments[3])):
            m1 += 0.1 * (g - m1)                      # Adam, β = (0.9, 0.999)
            m2 += 0.001 * (g * g - m2)
            p -= lr * (m1 / (1 - 0.9 ** t)) / (np.sqrt(m2 / (1 - 0.999 ** t)) + 1e-8)
        if project is not None:
            w = project(w)
    return w, b, loss
