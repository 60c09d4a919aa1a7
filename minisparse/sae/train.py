"""Train a Jacobian SAE pair (or, with λ = 0, a plain TopK SAE pair) on one MLP of a trained GPT, and measure it.

    x, y = collect_activations(model, corpus.train, layer=0, n_tokens=65_536)
    params, log = train_pair(x, y, MLP.of(model, 0), n_latents=512, k=16, lam=1.0, steps=2000)
    evaluate_pair(params, x_val, y_val, MLP.of(model, 0), k=16)    # FVU of each SAE, Jacobian sparsity

The optimizer is the model's own (`minisparse.optim.optimizer_step`: Adam on RMS-normalised gradients, warmup then
linear decay) with no weight sparsity and no weight decay; after every step the decoders' columns go back to unit
norm, without which a Jacobian penalty is met by shrinking decoder columns instead of by sparsifying (see
`normalize_decoder`).
"""

from __future__ import annotations

import numpy as np

from minisparse.config import TrainConfig
from minisparse.data import get_batch
from minisparse.optim import init_state, optimizer_step

from .numpy import (MLP, active_latents, fvu, init_pair, jacobian_factors, jacobian_forward, jacobian_sparsity,
                    mlp_activations, mlp_forward, normalize_decoder, pair_loss_and_grads, sae_forward)


def collect_activations(model, data: np.ndarray, layer: int, n_tokens: int, batch_size: int = 16,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """([n_tokens, D] MLP inputs, [n_tokens, D] MLP outputs) of block `layer` on random windows of `data`."""
    n_ctx = model.config.n_ctx
    xs, ys = [], []
    for step in range(-(-n_tokens // (batch_size * n_ctx))):
        idx, _ = get_batch(data, batch_size, n_ctx, seed, step)
        x, y = mlp_activations(model, idx, layer)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs)[:n_tokens], np.concatenate(ys)[:n_tokens]


def train_pair(x: np.ndarray, y: np.ndarray, mlp: MLP, *, n_latents: int, k: int, lam: float, steps: int,
               batch_size: int = 256, lr: float = 1e-2, seed: int = 0, progress: bool = True,
               desc: str | None = None) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Train a pair on the tokens (x [N, D], y [N, D]) for `steps` minibatches; return its params and a log of
    {"step", "loss", "mse_in", "mse_out", "jacobian_l1"} every 1% of the steps."""
    if not 0 < k <= n_latents:
        raise ValueError(f"k must be in 1..n_latents={n_latents}, got {k}")
    params = init_pair(x.shape[1], n_latents, seed, x.dtype)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_density=1.0, weight_decay=0.0, seed=seed)
    state = init_state(params)
    rng = np.random.default_rng(seed)
    log = []
    bar = _progress(range(steps), desc or f"pair, λ = {lam:g}", disable=not progress)
    for step in bar:
        rows = rng.integers(0, x.shape[0], size=batch_size)
        logged = step % max(1, steps // 100) == 0 or step == steps - 1
        out, grads = pair_loss_and_grads(params, x[rows], y[rows], mlp, k, lam, with_jacobian=bool(lam) or logged)
        optimizer_step(params, grads, state, step, cfg)
        normalize_decoder(params, "in.")
        normalize_decoder(params, "out.")
        if logged:
            log.append({"step": step, "loss": out.loss, "mse_in": out.mse_in, "mse_out": out.mse_out,
                        "jacobian_l1": out.jacobian_l1})
            bar.set_postfix(loss=f"{out.loss:.4f}", jac=f"{out.jacobian_l1:.4f}")
    bar.close()
    return params, log


def evaluate_pair(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, mlp: MLP, k: int,
                  chunk: int = 1024, **sparsity_args) -> dict[str, float]:
    """FVU of each SAE, the fraction of latents that never fire, and `jacobian_sparsity` of the per-token Jacobians,
    over all tokens of (x, y)."""
    x_hat, y_hat, jacs, actives, fired_in, fired_out = [], [], [], [], 0, 0
    p, q = jacobian_factors(params, mlp)
    for lo in range(0, x.shape[0], chunk):
        xb, yb = x[lo:lo + chunk], y[lo:lo + chunk]
        xh, s_in, idx_in, _ = sae_forward(xb, params, k, "in.")
        yh, s_out, idx_out, _ = sae_forward(yb, params, k, "out.")
        act_in, act_out = active_latents(s_in, idx_in), active_latents(s_out, idx_out)
        jacs.append(jacobian_forward(p, q, mlp_forward(xb, mlp)[1], idx_in, act_in, idx_out, act_out)[0])
        actives.append(act_in[:, :, None] & act_out[:, None, :])
        x_hat.append(xh)
        y_hat.append(yh)
        fired_in, fired_out = fired_in | (s_in > 0).any(axis=0), fired_out | (s_out > 0).any(axis=0)
    return {"fvu_in": fvu(x, np.concatenate(x_hat)), "fvu_out": fvu(y, np.concatenate(y_hat)),
            "dead_in": float(1 - np.mean(fired_in)), "dead_out": float(1 - np.mean(fired_out)),
            **jacobian_sparsity(np.concatenate(jacs), np.concatenate(actives), **sparsity_args)}


def channel_jacobian(x: np.ndarray, y: np.ndarray, mlp: MLP, k_in: int, k_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The MLP's Jacobian read in the model's own basis: ([N, k_in, k_out] ∂y[c_out] / ∂x[c_in], [N, k_in, k_out]
    bool active) over each token's k_in input channels of largest |x| that are nonzero (the mlp_in site's AbsTopK
    survivors) and the k_out output channels mlp_out's AbsTopK keeps. The same formula as the SAE pair's Jacobian with
    identity encoders and decoders: P = W_upᵀ, Q = W_downᵀ. For a weight-sparse model most entries are exactly 0."""
    idx_in = np.argpartition(-np.abs(x), k_in - 1, axis=1)[:, :k_in]
    idx_out = np.argpartition(-np.abs(y), k_out - 1, axis=1)[:, :k_out]
    act_in = np.take_along_axis(x, idx_in, axis=1) != 0
    act_out = np.ones(idx_out.shape, dtype=bool)
    jac, _ = jacobian_forward(mlp.up.T, mlp.down.T, mlp_forward(x, mlp)[1], idx_in, act_in, idx_out, act_out)
    return jac, act_in[:, :, None] & act_out[:, None, :]


def _progress(iterable, desc: str, disable: bool):
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, unit="step", dynamic_ncols=True, disable=disable)
