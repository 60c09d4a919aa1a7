"""Train a Jacobian SAE pair (or, with λ = 0, a plain TopK SAE pair) on one MLP of a trained GPT, and measure it.

    data = mlp_data(model, corpus, layer=0, n_train=32_768, n_val=4096)   # normalised activations, rescaled MLP
    params, log = train_pair(data.x, data.y, data.mlp, n_latents=256, k=8, lam=1.0, steps=1000)
    evaluate_pair(params, data.x_val, data.y_val, data.mlp, k=8)         # FVU of each SAE, Jacobian sparsity
    sweep(data, lambdas=[0, 1], seeds=[0, 1, 2], n_latents=256, k=8, steps=1000)   # all of it, a row per run
    next_byte_loss(model, batches, splice_hooks(model, params, data, k=8))   # the model with the pair in
    pair_training_flops(128, 256, 8, 512, steps=1000, batch_size=256, lam=1.0)       # what the pair cost to train

Activations are normalised so that their entries have mean square 1 on the training tokens (each side by its own
scale, and the MLP rescaled to match: `MLP.rescaled`), so MSE_in and MSE_out weigh alike and λ means the same on any
model. The Jacobian is then that of normalised latents; FVU does not depend on the scale.

The optimizer is the model's own (`minisparse.optim.optimizer_step`: Adam on RMS-normalised gradients, warmup then
linear decay) with no weight sparsity and no weight decay; after every step the decoders' columns go back to unit
norm, without which a Jacobian penalty is met by shrinking decoder columns instead of by sparsifying (see
`normalize_decoder`).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from minisparse.config import TrainConfig
from minisparse.data import get_batch
from minisparse.numpy.layers import cross_entropy_forward
from minisparse.optim import init_state, optimizer_step
from minisparse.sparsity import abstopk

from .numpy import (
    MLP,
    active_latents,
    fvu,
    init_pair,
    jacobian_factors,
    jacobian_forward,
    jacobian_sparsity,
    mlp_activations,
    mlp_forward,
    normalize_decoder,
    pair_loss_and_grads,
    sae_forward,
)


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


# Lesson 08's sizes, shared with `python -m minisparse.lessons.sae_table`: tokens to train on and to measure on, the
# SAEs' latents and k, and their training; sized so that the lesson's eight pairs (four λ, a trained and a random
# model) train in about half a minute on a laptop core. "fast" goes with the lessons' fast models (their CI mode).
LESSON_SETTINGS = {
    "default": dict(n_train=16_384, n_val=4096, n_latents=128, k=8, steps=400, batch_size=128),
    "fast": dict(n_train=4096, n_val=1024, n_latents=64, k=4, steps=150, batch_size=128),
}


class MLPData(NamedTuple):
    """One MLP's normalised inputs and outputs, for training (x, y) and for measuring (x_val, y_val), and the MLP
    rescaled to map the one to the other."""
    x: np.ndarray          # [N, D] MLP inputs / scale_in
    y: np.ndarray          # [N, D] MLP outputs / scale_out
    x_val: np.ndarray
    y_val: np.ndarray
    mlp: MLP               # MLP.of(model, layer).rescaled(scale_in, scale_out)
    scale_in: float
    scale_out: float
    layer: int             # the block whose MLP this is


def mlp_data(model, corpus, layer: int, n_train: int, n_val: int) -> MLPData:
    """Block `layer`'s MLP activations on `n_train` tokens of the training split and `n_val` of the validation split,
    normalised by the training tokens' root-mean-square entry."""
    x, y = collect_activations(model, corpus.train, layer, n_train)
    x_val, y_val = collect_activations(model, corpus.val, layer, n_val)
    scale_in, scale_out = float(np.sqrt(np.mean(x ** 2))), float(np.sqrt(np.mean(y ** 2)))
    return MLPData(x / scale_in, y / scale_out, x_val / scale_in, y_val / scale_out,
                   MLP.of(model, layer).rescaled(scale_in, scale_out), scale_in, scale_out, layer)


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
                  chunk: int = 1024, keep_jacobians: bool = False, **sparsity_args) -> dict:
    """FVU of each SAE, the fraction of latents that never fire, and `jacobian_sparsity` of the per-token Jacobians,
    over all tokens of (x, y). With `keep_jacobians`, also "jacobians": ([N, k, k] J, [N, k, k] active)."""
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
    jac, active = np.concatenate(jacs), np.concatenate(actives)
    out = {"fvu_in": fvu(x, np.concatenate(x_hat)), "fvu_out": fvu(y, np.concatenate(y_hat)),
           "dead_in": float(1 - np.mean(fired_in)), "dead_out": float(1 - np.mean(fired_out)),
           **jacobian_sparsity(jac, active, **sparsity_args)}
    if keep_jacobians:
        out["jacobians"] = (jac, active)
    return out


def sweep(data: MLPData, lambdas, seeds, *, n_latents: int, k: int, steps: int, batch_size: int = 256,
          lr: float = 1e-2, progress: bool = True, model=None, batches=None) -> list[dict]:
    """Train a pair for every λ and seed and measure it on the validation tokens: one row per run,
    {"lam", "seed", "seconds", **evaluate_pair(...)}. Given the `model` that `data` came from and
    validation `batches`, each row also has "loss_increase": the model's next-byte loss with the pair spliced in
    (`splice_hooks`) minus its clean loss."""
    rows = []
    clean = next_byte_loss(model, batches) if model is not None else None
    for lam in lambdas:
        for seed in seeds:
            start = time.perf_counter()
            params, _ = train_pair(data.x, data.y, data.mlp, n_latents=n_latents, k=k, lam=lam, steps=steps,
                                   batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                                   desc=f"λ = {lam:g}, seed {seed}")
            rows.append({"lam": lam, "seed": seed, "seconds": time.perf_counter() - start,
                         **evaluate_pair(params, data.x_val, data.y_val, data.mlp, k)})
            if model is not None:
                rows[-1]["loss_increase"] = next_byte_loss(model, batches,
                                                           splice_hooks(model, params, data, k)) - clean
    return rows


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


def channel_row(model, data: MLPData, **sparsity_args) -> dict:
    """`jacobian_sparsity` of the MLP's Jacobian in the model's own basis, between the channels its AbsTopK sites keep
    (mlp_in and mlp_out), on the validation tokens of `data` (made from the same model)."""
    k = model.config.topk(model.config.d_model)
    return jacobian_sparsity(*channel_jacobian(data.x_val, data.y_val, data.mlp, k, k), **sparsity_args)


def summary_table(rows: list[dict]) -> str:
    """A markdown table, one line per (name, λ) with every measure as mean (min..max) over its seeds. A row is
    {"name", "lam", "seed", and measures}; name defaults to the JSAE pair's. A "loss_increase" measure (the model's
    loss with the pair spliced in, minus its clean loss) gets a column when some row has one."""
    columns = [("fvu_in", "FVU in", "{:.3f}"), ("fvu_out", "FVU out", "{:.3f}"),
               ("above_threshold", r"share of \|J\| > 0.01", "{:.1%}"),            # \| : a | inside a cell
               ("mass_fraction", r"share of entries holding 90% of Σ\|J\|", "{:.1%}"),
               ("exact_zero", "share exactly 0", "{:.1%}"), ("mean_abs", r"mean \|J\|", "{:.4f}"),
               ("dead_out", "dead output latents", "{:.0%}")]
    if any(row.get("loss_increase") is not None for row in rows):        # only where the pairs were spliced in
        columns.append(("loss_increase", "loss increase spliced in (nats/byte)", "{:.3f}"))
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row.get("name", "SAE pair"), row.get("lam")), []).append(row)
    lines = ["| Jacobian of | λ | seeds | " + " | ".join(c[1] for c in columns) + " |",
             "|---" * (len(columns) + 3) + "|"]
    for (name, lam), group in groups.items():
        cells = []
        for key, _, fmt in columns:
            values = [r[key] for r in group if r.get(key) is not None]
            if not values:
                cells.append("—")
            elif len(values) == 1:
                cells.append(fmt.format(values[0]))
            else:
                cells.append(f"{fmt.format(np.mean(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})")
        seeds = ",".join(str(r["seed"]) for r in group if r.get("seed") is not None) or "—"
        lines.append(f"| {name} | {'—' if lam is None else f'{lam:g}'} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def splice_hooks(model, params: dict[str, np.ndarray], data: MLPData, k: int) -> dict:
    """Hooks for `model.run_with_hooks` that put the SAE pair in place of the MLP `data` was read from (block
    `data.layer`), the standard test of an SAE (how much of the model's loss survives it): the MLP reads the input
    SAE's reconstruction x̂ of its input, its output y is replaced by the output SAE's reconstruction ŷ, and ŷ goes
    through mlp_out's AbsTopK as y would. `data` (made from `model`) gives the scales the pair was trained at and the
    rescaled MLP."""
    seen: dict[str, np.ndarray] = {}
    k_out = model.config.topk(model.config.d_model)

    def read_input(value, key):                 # mlp_in: the MLP's input x; the residual stream never reads it
        seen["x"] = value
        return value

    def write_output(value, key):               # mlp_out: after its AbsTopK, so ŷ gets the same AbsTopK
        x = seen.pop("x").reshape(-1, value.shape[-1]) / data.scale_in
        x_hat = sae_forward(x, params, k, "in.")[0]
        y_hat = sae_forward(mlp_forward(x_hat, data.mlp)[0], params, k, "out.")[0]
        return abstopk(y_hat * data.scale_out, k_out).reshape(value.shape)

    return {f"L{data.layer}.mlp_in": read_input, f"L{data.layer}.mlp_out": write_output}


def mean_ablation_hooks(model, data: MLPData) -> dict:
    """Hooks that replace the output (the mlp_out site) of the MLP `data` was read from (block `data.layer`) by its
    mean over the training tokens of `data`: the MLP's contribution with everything token-specific removed, the floor
    a spliced-in SAE pair is measured against."""
    k_out = model.config.topk(model.config.d_model)
    mean = abstopk(data.y * data.scale_out, k_out).mean(axis=0)
    return {f"L{data.layer}.mlp_out": lambda value, key: np.broadcast_to(mean, value.shape).astype(value.dtype)}


def next_byte_loss(model, batches, hooks: dict | None = None) -> float:
    """Mean next-byte cross-entropy (nats/byte) of `model` over `batches` [(idx [B, T], targets [B, T]), ...]
    (`minisparse.data.eval_batches`), with `hooks` (`splice_hooks`, `mean_ablation_hooks`) if given."""
    losses = []
    for idx, targets in batches:
        logits = model.run_with_hooks(idx, hooks) if hooks else model.forward(idx)
        losses.append(cross_entropy_forward(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))[0])
    return float(np.mean(losses))


def pair_training_flops(d_model: int, n_latents: int, k: int, d_mlp: int, *, steps: int, batch_size: int,
                        lam: float) -> float:
    """About how many FLOPs `train_pair` spends (multiply-adds count 2), from the matrix products of its code:
    per token, each SAE's encoder and decoder forward and their three backward products, 12·D·S, two SAEs; with a
    Jacobian penalty also the MLP's forward (4·D·M), the k × k Jacobian and its backward (6·k²·M) and the gradients'
    way back into the decoders (4·k·M·D); per step, P and Q (4·M·D·S). Activations and the model's forward passes
    that collect them are not counted (they are a few forward passes over n_train tokens)."""
    tokens = steps * batch_size
    flops = 24 * d_model * n_latents * tokens
    if lam:
        flops += (4 * d_model * d_mlp + 6 * k * k * d_mlp + 4 * k * d_mlp * d_model) * tokens
        flops += 4 * d_mlp * d_model * n_latents * steps
    return float(flops)


def _progress(iterable, desc: str, disable: bool):
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, unit="step", dynamic_ncols=True, disable=disable)
