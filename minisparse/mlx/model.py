"""The MLX GPT (DESIGN §1): the same model as `minisparse.numpy`, written in MLX's own idiom.

Modules hold the parameters, so `tree_flatten(model.parameters())` yields exactly the DESIGN §2 names; autograd
(`nn.value_and_grad`) replaces the NumPy twin's hand-written backward. The initial weights come from
`minisparse.params.init_params`, the same NumPy draws the NumPy model uses, so one seed gives one model in both.

Shape legend:
    B  batch        T  tokens (<= n_ctx)      D  d_model      H  n_head      Dh d_head      A = H·Dh (q, k, v width)
    M  d_mlp        V  vocab_size
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..config import ModelConfig
from ..hooks import cache_keys, call_hook, check_keys, hook_keys
from ..params import RMS_EPS, SITES, check_gates, check_shapes, init_params, param_shapes, site_sizes
from .ops import abstopk, as_mx, gelu

# A site function applies one named point of the forward pass (`minisparse.hooks.POINTS`): at an activation site,
# AbsTopK and then the optional pruning gate; at every point, the recording and the hook asked for. site("q", x) -> x'.
# Blocks call it by name; the GPT builds one per layer.
Site = Callable[[str, mx.array], mx.array]


class Attention(nn.Module):
    """Causal multi-head attention with AbsTopK on q, k, v and on its output, and an optional per-head sink logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_attn)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_attn)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_attn)
        self.o_proj = nn.Linear(cfg.d_attn, cfg.d_model)
        if cfg.attn_sink:
            # One extra softmax logit per head whose value vector is zero: a head can attend to "nothing".
            self.sink = mx.zeros((cfg.n_head,))

    def __call__(self, a: mx.array, site: Site) -> mx.array:
        # [B, T, D] -> [B, T, D]
        B, T, _ = a.shape
        q, k, v = site("q", self.q_proj(a)), site("k", self.k_proj(a)), site("v", self.v_proj(a))   # [B, T, A] each
        q, k, v = (t.reshape(B, T, self.n_head, -1).transpose(0, 2, 1, 3) for t in (q, k, v))     # [B, H, T, Dh]
        s = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(0, 1, 3, 2)                         # [B, H, T, T]
        s = s + causal_bias(T, s.dtype)
        if "sink" in self:
            # p_ij = exp(s_ij) / (exp(sink_h) + Σ_j' exp(s_ij')): softmax over [sink, s_i0, ...], sink column dropped.
            sink = mx.broadcast_to(self.sink[:, None, None], (B, self.n_head, T, 1))                # [B, H, T, 1]
            p = mx.softmax(mx.concatenate([sink, s], axis=-1), axis=-1)[..., 1:]
        else:
            p = mx.softmax(s, axis=-1)
        p = site("attn_pattern", p)
        y = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, -1)                                         # [B, T, A]
        return site("attn_out", self.o_proj(y))


def causal_bias(T: int, dtype) -> mx.array:
    # -> [T, T]: 0 on and below the diagonal, -inf above, so softmax gives the future zero weight
    return mx.triu(mx.full((T, T), -mx.inf, dtype=dtype), k=1)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.down_proj = nn.Linear(cfg.d_mlp, cfg.d_model)

    def __call__(self, m: mx.array, site: Site) -> mx.array:
        # [B, T, D] -> [B, T, D]
        n = site("mlp_neuron", gelu(self.up_proj(m)))                                              # [B, T, M]
        return site("mlp_out", self.down_proj(n))


class Block(nn.Module):
    """Pre-norm block: x + Attn(AbsTopK(RMSNorm(x))), then x + MLP(AbsTopK(RMSNorm(x)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model, eps=RMS_EPS)
        self.attn = Attention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model, eps=RMS_EPS)
        self.mlp = MLP(cfg)

    def __call__(self, x: mx.array, site: Site) -> mx.array:
        # [B, T, D] -> [B, T, D]
        x = site("resid_mid", x + self.attn(site("attn_in", self.norm1(x)), site))
        return site("resid_post", x + self.mlp(site("mlp_in", self.norm2(x)), site))


class GPT(nn.Module):
    """The weight-sparse GPT of DESIGN §1 in MLX.

    `GPT(config, seed=0)` takes its weights from `init_params(config, seed)` (or from `params`, a flat dict of the
    DESIGN §2 names). `model(idx)`, or `model.forward(idx)`, checks `idx` and returns logits; `forward_unchecked` is the
    same without the checks, for use inside `mx.compile`d and transformed functions (checking values needs them
    evaluated). `site_activations`, `loss_and_gate_grads` and `numpy_params` answer as the NumPy model's do.

    `dtype` is float32 by default. float64 runs on the CPU only (Metal has none), and even there MLX's exp and fast
    RMSNorm are float32-accurate (~2e-7 relative, measured), so it is no stronger reference than float32.
    """

    def __init__(self, config: ModelConfig, seed: int = 0, dtype: mx.Dtype = mx.float32,
                 params: dict | None = None):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"GPT needs a minisparse.ModelConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = dtype
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        if config.pos_emb == "learned":
            self.wpe = nn.Embedding(config.n_ctx, config.d_model)
        self.blocks = [Block(config) for _ in range(config.n_layer)]
        self.norm_f = nn.RMSNorm(config.d_model, eps=RMS_EPS)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.bigram:
            self.bigram = nn.Embedding(config.vocab_size, config.vocab_size)
        # The modules above drew MLX-random weights lazily; they are replaced before ever being computed.
        if params is None:
            params = init_params(config, seed, dtype=np.float64 if dtype == mx.float64 else np.float32)
        self.load_params(params)

    # --- the surface both backends share (DESIGN §6) --------------------------------------------------------------

    backend = "mlx"

    def __call__(self, idx, gates: dict | None = None) -> mx.array:
        return self.forward(idx, gates)

    def forward(self, idx, gates: dict | None = None) -> mx.array:
        """Logits [B, T, V] for token ids `idx` [B, T] (NumPy or MLX), checked as the NumPy model checks them.

        `gates` ("L{l}.{site}" -> (g, mu), each [n], NumPy or MLX) replaces a site's output x by x·g + mu·(1 − g) right
        after its AbsTopK (circuit pruning, DESIGN §5).
        """
        return self.forward_unchecked(self.check_tokens(idx), self._check_gates(gates))

    def site_activations(self, idx, gates: dict | None = None) -> dict[str, np.ndarray]:
        """{"L{l}.{site}": [B, T, n]} every site's activation after its AbsTopK (and before its gate), as NumPy
        arrays, in forward order."""
        acts: dict[str, mx.array] = {}
        self.forward_unchecked(self.check_tokens(idx), self._check_gates(gates), acts)
        sites = {key: a for key, a in acts.items() if key.split(".", 1)[1] in SITES}
        mx.eval(sites)
        return {key: np.array(a) for key, a in sites.items()}

    def run_with_cache(self, idx, names=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """([B, T, V] logits, {key: value}) as NumPy arrays, for every key of `minisparse.hooks.cache_keys` (or only
        `names`), as the NumPy model gives them."""
        names = cache_keys(self.config) if names is None else list(names)
        check_keys(names, cache_keys(self.config), "cache")
        acts: dict[str, mx.array] = {}
        logits = self.forward_unchecked(self.check_tokens(idx), None, acts)
        kept = {key: acts[key] for key in names}
        mx.eval(logits, kept)
        return np.array(logits), {key: np.array(a) for key, a in kept.items()}

    def run_with_hooks(self, idx, hooks: dict) -> np.ndarray:
        """[B, T, V] logits with each `hooks[key](value, key)` used in place of that value (`minisparse.hooks`)."""
        check_keys(hooks, hook_keys(self.config), "hook")
        return np.array(self.forward_unchecked(self.check_tokens(idx), None, hooks=hooks))

    def site_grads(self, idx, loss_fn) -> tuple[float, dict[str, np.ndarray]]:
        """(loss, {"L{l}.{site}": [B, T, n] dL/d(the site's value)}) for `loss_fn(logits) -> (loss, dL/dlogits)` on
        NumPy arrays, by autograd through a zero offset added at every site."""
        idx = self.check_tokens(idx)
        B, T = idx.shape
        offsets = {key: mx.zeros((B, T, n), dtype=self.dtype) for key, n in site_sizes(self.config).items()}
        loss = []

        def linearised(offsets):
            logits = self.forward_unchecked(idx, None, offsets=offsets)
            value, dlogits = loss_fn(np.array(logits))
            loss.append(value)
            return (logits * as_mx(dlogits, logits.dtype)).sum()

        grads = mx.grad(linearised)(offsets)
        mx.eval(grads)
        return loss[0], {key: np.array(g) for key, g in grads.items()}

    def loss_and_gate_grads(self, idx, gates: dict, loss_fn) -> tuple[float, dict[str, np.ndarray]]:
        """A loss of the logits and its gradient with respect to every gate: (loss, {"L{l}.{site}": [n] dL/dg}).

        `loss_fn(logits) -> (loss, dL/dlogits)` takes and gives NumPy arrays [B, T, V] (circuit pruning's task loss).
        """
        idx, gates = self.check_tokens(idx), self._check_gates(gates)
        mus, loss = {key: mu for key, (_, mu) in gates.items()}, []

        def linearised(gs):
            # The gradient of Σ logits·c, with c = dL/dlogits a constant, is the vector-Jacobian product dL/dg. c comes
            # from `loss_fn` in NumPy, so the logits are evaluated here, inside the transform: one forward pass.
            logits = self.forward_unchecked(idx, {key: (g, mus[key]) for key, g in gs.items()})
            value, dlogits = loss_fn(np.array(logits))
            loss.append(value)
            return (logits * as_mx(dlogits, logits.dtype)).sum()

        grads = mx.grad(linearised)({key: g for key, (g, _) in gates.items()})
        mx.eval(grads)
        return loss[0], {key: np.array(g) for key, g in grads.items()}

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy array (a copy), under its DESIGN §2 name, in the canonical order."""
        flat = dict(tree_flatten(self.parameters()))
        return {name: np.array(flat[name]) for name in param_shapes(self.config)}

    # --- the forward pass itself ----------------------------------------------------------------------------------

    def forward_unchecked(self, idx: mx.array, gates: dict | None = None, activations: dict | None = None,
                          hooks: dict | None = None, offsets: dict | None = None) -> mx.array:
        """`forward` without the input checks, for use inside `mx.compile`d and transformed functions (checking values
        needs them evaluated). If `activations` is a dict, every point's value (`minisparse.hooks.cache_keys`; a site's
        after its AbsTopK, before its gate) is stored in it. `hooks` edit values as in `run_with_hooks`; `offsets`
        ({site: [B, T, n]}) are added to the sites' values after their gates (for gradients with respect to them)."""
        T = idx.shape[1]
        x = self.wte(idx)                                                                           # [B, T, D]
        if "wpe" in self:
            x = x + self.wpe(mx.arange(T))
        for l, block in enumerate(self.blocks):
            site = self._site_fn(l, gates, activations, hooks, offsets)
            x = block(site("resid_pre", x), site)
        logits = self.lm_head(self.norm_f(x))                                                       # [B, T, V]
        if "bigram" in self:
            logits = logits + self.bigram(idx)
        return logits

    def _site_fn(self, layer: int, gates: dict | None, activations: dict | None, hooks: dict | None,
                 offsets: dict | None) -> Site:
        def site(name: str, x: mx.array) -> mx.array:
            key = f"L{layer}.{name}"
            if name in SITES:
                x = abstopk(x, self.config.topk(x.shape[-1]))
            if activations is not None:
                activations[key] = x
            if gates is not None and key in gates:
                g, mu = gates[key]
                x = x * g + mu * (1.0 - g)
            if offsets is not None and key in offsets:
                x = x + offsets[key]
            if hooks is not None and key in hooks:
                x = mx.array(call_hook(hooks[key], np.array(x), key), dtype=x.dtype)
            return x
        return site

    def loss(self, idx, targets) -> float:
        """Mean next-token cross-entropy of `targets` [B, T] given `idx` [B, T], checked as the NumPy model checks
        them (the two models' `loss` share this contract)."""
        idx, targets = self.check_tokens(idx), self.check_tokens(targets, what="targets")
        if targets.shape != idx.shape:
            raise ValueError(f"targets have shape {tuple(targets.shape)} but idx has shape {tuple(idx.shape)}; "
                             "they must match (targets[b, t] is the token that follows idx[b, t])")
        return self.loss_unchecked(idx, targets).item()

    def loss_unchecked(self, idx: mx.array, targets: mx.array, gates: dict | None = None) -> mx.array:
        """Mean next-token cross-entropy as an mx.array, without input checks: for use inside transformed and
        compiled functions."""
        logits = self.forward_unchecked(idx, gates)
        return nn.losses.cross_entropy(logits, targets, reduction="mean")

    # --- input checks ---------------------------------------------------------------------------------------------

    def check_tokens(self, idx, what: str = "idx") -> mx.array:
        """`idx` as an int32 mx.array of shape [B, T], or a ValueError saying what is wrong with it (the checks are
        the NumPy model's: `ModelConfig.check_tokens`)."""
        idx = self.config.check_tokens(np.array(idx) if isinstance(idx, mx.array) else idx, what)
        return mx.array(idx, dtype=mx.int32)

    def _check_gates(self, gates) -> dict:
        # cast to the model's dtype so a float64 gate cannot upcast a float32 forward pass
        gates = {key: tuple(as_mx(a, self.dtype) for a in pair) if isinstance(pair, (tuple, list)) else pair
                 for key, pair in (gates or {}).items()}
        check_gates(gates, self.config)
        return gates

    # --- parameters in and out --------------------------------------------------------------------------------------

    def load_params(self, params: dict) -> None:
        """Set every parameter from a flat dict of DESIGN §2 names to NumPy or MLX arrays (cast to the model's dtype).

        The names and shapes must match the config exactly: nothing is skipped, reshaped or left at its old value.
        """
        shapes = param_shapes(self.config)
        check_shapes({name: a.shape for name, a in params.items()}, shapes, "params")
        self.update(tree_unflatten([(name, as_mx(params[name], self.dtype)) for name in shapes]))
        mx.eval(self.parameters())
