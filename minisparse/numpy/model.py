"""The GPT of DESIGN §1 in NumPy, with hand-written backprop.

The forward pass below reads like the equations of DESIGN §1; each step is a forward function from `layers.py` (for
attention and GELU, its twin in `fast.py`: the same formula, restructured for speed) whose cache the backward pass
hands back to the matching backward function, in reverse order. Activations are kept 2-D,
(N = B·T, width), so every linear layer is a single BLAS call; only attention sees (B, H, T, Dh), through views.

Shapes: B batch, T tokens, N = B·T, D d_model, H heads, Dh d_head, A = H·Dh, M d_mlp, V vocab (see layers.py).
"""

from __future__ import annotations

import numpy as np

from minisparse.config import ModelConfig
from minisparse.hooks import cache_keys, call_hook, check_keys, hook_keys
from minisparse.params import check_gates, check_param_arrays, init_params

from .fast import attention_backward, attention_forward, gelu_backward, gelu_forward  # layers.py's, restructured
from .layers import (
    abstopk_backward,
    abstopk_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    embedding_backward,
    embedding_forward,
    gate_backward,
    gate_forward,
    linear_backward,
    linear_forward,
    rmsnorm_backward,
    rmsnorm_forward,
)
from .memory import reuse_freed_memory


class GPT:
    """A weight-sparse GPT: a flat dict of parameters (DESIGN §2 names, weights (out, in)) and the functions on them.

    GPT(config, seed=0, dtype=None, params=None)
        params=None: fresh weights from `minisparse.params.init_params(config, seed, dtype)`, dtype default float32.
        params=dict: used as given (not copied; the optimizer may update its arrays in place). Names and shapes must
        match `param_shapes(config)`, and all arrays must share one floating dtype, which becomes the model's; asking
        for a different `dtype` is an error rather than a silent cast.
    """

    def __init__(self, config: ModelConfig, seed: int = 0, dtype=None, params: dict | None = None):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"GPT needs a minisparse.ModelConfig, got {type(config).__name__}")
        self.config = config
        reuse_freed_memory()   # a step allocates and frees its activations: keep the memory (memory.py)
        if params is None:
            self.dtype = np.dtype(np.float32 if dtype is None else dtype)
            if self.dtype not in (np.float32, np.float64):
                raise ValueError(f"GPT dtype must be float32 or float64, got {self.dtype}")
            self.params = init_params(config, seed, self.dtype)
        else:
            self.params = params
            self.dtype = check_param_arrays(params, config, dtype)

    # ------------------------------------------------------------------------------------------------------------------
    # the surface both backends share (DESIGN §6): the tools above the models never ask which backend they hold

    backend = "numpy"

    def forward(self, idx, gates: dict | None = None) -> np.ndarray:
        """[B, T] int -> [B, T, V] logits; `gates` as in `forward_cached`."""
        return self.forward_cached(idx, gates)[0]

    def site_activations(self, idx, gates: dict | None = None) -> dict[str, np.ndarray]:
        """{"L{l}.{site}": [B, T, n]} each site's activation after its AbsTopK, before its gate, in forward order."""
        return self.forward_cached(idx, gates)[1]["sites"]

    def loss_and_gate_grads(self, idx, gates: dict, loss_fn) -> tuple[float, dict[str, np.ndarray]]:
        """A loss of the logits and its gradient with respect to every gate: (loss, {"L{l}.{site}": [n] dL/dg}).

        `loss_fn(logits) -> (loss, dL/dlogits)` takes and gives NumPy arrays [B, T, V] (circuit pruning's task loss).
        """
        logits, cache = self.forward_cached(idx, gates)
        loss, dlogits = loss_fn(logits)
        return loss, self.backward(dlogits, cache, param_grads=False)[1]

    def numpy_params(self) -> dict[str, np.ndarray]:
        """The parameters under their DESIGN §2 names: `self.params` itself, not a copy."""
        return self.params

    # ------------------------------------------------------------------------------------------------------------------
    # training, and the forward/backward pair underneath everything

    def loss(self, idx, targets) -> float:
        """Mean next-token cross-entropy of `targets` [B, T] given `idx` [B, T]."""
        return self._loss_cached(idx, targets)[0]

    def loss_and_grads(self, idx, targets) -> tuple[float, dict[str, np.ndarray]]:
        """Mean next-token cross-entropy of `targets` [B, T] given `idx` [B, T], and its gradient for every
        parameter."""
        loss, logits_shape, ce_cache, cache = self._loss_cached(idx, targets)
        dlogits = cross_entropy_backward(1.0, ce_cache).reshape(logits_shape)
        grads, _ = self.backward(dlogits, cache)
        return loss, grads

    def _loss_cached(self, idx, targets):
        idx = self.config.check_tokens(idx)
        targets = self.config.check_tokens(targets, what="targets")
        if targets.shape != idx.shape:
            raise ValueError(f"targets have shape {targets.shape} but idx has shape {idx.shape}; "
                             "they must match (targets[b, t] is the token that follows idx[b, t])")
        logits, cache = self.forward_cached(idx)
        B, T, V = logits.shape
        loss, ce_cache = cross_entropy_forward(logits.reshape(B * T, V), targets.reshape(B * T))
        return loss, logits.shape, ce_cache, cache

    def run_with_cache(self, idx, names=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """([B, T, V] logits, {key: value}) for every key of `minisparse.hooks.cache_keys`, or only `names`."""
        names = cache_keys(self.config) if names is None else list(names)
        check_keys(names, cache_keys(self.config), "cache")
        logits, cache = self._forward(idx, None, {}, set(names))
        return logits, {k: cache["recorded"][k] for k in names}

    def run_with_hooks(self, idx, hooks: dict) -> np.ndarray:
        """[B, T, V] logits with each `hooks[key](value, key)` used in place of that value (`minisparse.hooks`)."""
        check_keys(hooks, hook_keys(self.config), "hook")
        return self._forward(idx, None, hooks, set())[0]

    def site_grads(self, idx, loss_fn) -> tuple[float, dict[str, np.ndarray]]:
        """(loss, {"L{l}.{site}": [B, T, n] dL/d(the site's value)}) for `loss_fn(logits) -> (loss, dL/dlogits)` on
        NumPy arrays: the hand-written backward, read at every site (attribution patching's gradient)."""
        logits, cache = self.forward_cached(idx)
        loss, dlogits = loss_fn(logits)
        grads: dict[str, np.ndarray] = {}
        self.backward(dlogits, cache, param_grads=False, site_grads=grads)
        return loss, {key: grads[key] for key in cache["sites"]}

    def forward_cached(self, idx, gates: dict | None = None) -> tuple[np.ndarray, dict]:
        """[B, T] int -> ([B, T, V] logits, cache).

        `gates`: optional {"L{l}.{site}": (g, mu)}, each [n]; right after that site's AbsTopK the activation becomes
        x·g + mu·(1 − g) (circuit pruning, DESIGN §5). cache["sites"]["L{l}.{site}"] is the [B, T, n] activation after
        the site's AbsTopK and before its gate.
        """
        return self._forward(idx, gates, {}, set())

    def _forward(self, idx, gates, hooks: dict, record: set) -> tuple[np.ndarray, dict]:
        # the one forward pass: gates (pruning) and hooks (editing) act at the same point of every site, right after
        # its AbsTopK; `record` names the cache keys to keep copies of
        cfg, P = self.config, self.params
        idx = self.config.check_tokens(idx)
        gates = self._check_gates(gates)
        (B, T), A, H = idx.shape, cfg.d_attn, cfg.n_head
        N, flat_idx = B * T, idx.reshape(B * T)
        sites, recorded = {}, {}        # key -> [B, T, n] activation after AbsTopK; key -> a copy of what `record` asks

        def site(l, name, x):
            # [N, n] -> [N, n]: AbsTopK, record the activation, then the gate and the hook if given
            key = f"L{l}.{name}"
            x, topk_cache = abstopk_forward(x, cfg.topk(x.shape[-1]))
            sites[key] = x.reshape(B, T, -1)
            if key in record:
                recorded[key] = sites[key].copy()
            gate_cache = None
            if key in gates:
                x, gate_cache = gate_forward(x, *gates[key])
            if key in hooks:
                x = call_hook(hooks[key], x.reshape(B, T, -1).copy(), key).reshape(N, -1)
            return x, (key, topk_cache, gate_cache)

        def resid(l, name, x):
            # [N, D] -> [N, D], a fresh array when a hook replaced it: the residual stream is added to in place
            key = f"L{l}.{name}"
            if key in record:
                recorded[key] = x.reshape(B, T, -1).copy()
            if key in hooks:
                x = np.array(call_hook(hooks[key], x.reshape(B, T, -1).copy(), key)).reshape(N, -1)
            return x

        x, c_wte = embedding_forward(flat_idx, P["wte.weight"])                # [N, D] a fresh copy: safe to += below
        if cfg.pos_emb == "learned":
            x.reshape(B, T, -1)[...] += P["wpe.weight"][:T]
        blocks = []
        for l in range(cfg.n_layer):
            p, c = f"blocks.{l}.", {}
            x = resid(l, "resid_pre", x)
            h, c["norm1"] = rmsnorm_forward(x, P[p + "norm1.weight"])            # [N, D]
            a, c["attn_in"] = site(l, "attn_in", h)
            # q, k and v in one matmul over the stacked (3A, D) weight: one large GEMM beats three small ones
            w_qkv = np.concatenate([P[p + f"attn.{s}_proj.weight"] for s in "qkv"])    # [3A, D]
            b_qkv = np.concatenate([P[p + f"attn.{s}_proj.bias"] for s in "qkv"])      # [3A]
            qkv, c["qkv"] = linear_forward(a, w_qkv, b_qkv)                     # [N, 3A]
            q, c["q"] = site(l, "q", qkv[:, :A])                                # [N, A] each (views when no AbsTopK)
            k, c["k"] = site(l, "k", qkv[:, A:2 * A])
            v, c["v"] = site(l, "v", qkv[:, 2 * A:])
            sink = P[p + "attn.sink"] if cfg.attn_sink else None
            y, c["attn"] = attention_forward(q.reshape(B, T, A), k.reshape(B, T, A), v.reshape(B, T, A), sink, H)
            if f"L{l}.attn_pattern" in record:                                  # the weights, from the cache
                recorded[f"L{l}.attn_pattern"] = c["attn"][3].copy()
            o, c["o_proj"] = linear_forward(y.reshape(N, A), P[p + "attn.o_proj.weight"], P[p + "attn.o_proj.bias"])
            o, c["attn_out"] = site(l, "attn_out", o)                           # [N, D]
            x += o                                                              # x is ours and cached nowhere
            x = resid(l, "resid_mid", x)
            h, c["norm2"] = rmsnorm_forward(x, P[p + "norm2.weight"])
            m, c["mlp_in"] = site(l, "mlp_in", h)                               # [N, D]
            u, c["up"] = linear_forward(m, P[p + "mlp.up_proj.weight"], P[p + "mlp.up_proj.bias"])  # [N, M]
            u, c["gelu"] = gelu_forward(u)
            u, c["mlp_neuron"] = site(l, "mlp_neuron", u)                       # [N, M]
            w, c["down"] = linear_forward(u, P[p + "mlp.down_proj.weight"], P[p + "mlp.down_proj.bias"])
            w, c["mlp_out"] = site(l, "mlp_out", w)                             # [N, D]
            x += w
            x = resid(l, "resid_post", x)
            blocks.append(c)
        xf, c_norm_f = rmsnorm_forward(x, P["norm_f.weight"])                  # [N, D]
        logits, c_lm_head = linear_forward(xf, P["lm_head.weight"])             # [N, V]
        c_bigram = None
        if cfg.bigram:
            bigram, c_bigram = embedding_forward(flat_idx, P["bigram.weight"])  # [N, V] a logit table per token
            logits += bigram
        cache = {"B": B, "T": T, "wte": c_wte, "blocks": blocks, "norm_f": c_norm_f, "lm_head": c_lm_head,
                 "bigram": c_bigram, "sites": sites, "recorded": recorded}
        return logits.reshape(B, T, cfg.vocab_size), cache

    def backward(self, dlogits, cache, param_grads: bool = True, site_grads: dict | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """[B, T, V] dL/dlogits and the cache of `forward_cached` -> (grads keyed like params, gate_grads).

        gate_grads["L{l}.{site}"] is [n], dL/dg summed over B and T, for each site that had a gate. With
        `param_grads=False` no parameter gradient is computed (grads is {}): a third of the matmuls saved, for pruning.
        `site_grads`, if a dict, receives every site's [B, T, n] dL/d(its value after AbsTopK and gate).
        """
        cfg = self.config
        B, T = cache["B"], cache["T"]
        N, A, V = B * T, cfg.d_attn, cfg.vocab_size
        if np.shape(dlogits) != (B, T, V):
            raise ValueError(f"dlogits has shape {np.shape(dlogits)}, expected {(B, T, V)} (the logits' shape)")
        dlogits = np.asarray(dlogits, dtype=self.dtype).reshape(N, V)   # a float64 dlogits must not upcast the grads
        grads: dict[str, np.ndarray] = {}
        gate_grads: dict[str, np.ndarray] = {}

        def site_back(dout, site_cache):
            # [N, n] -> [N, n]: through the gate (if any), then AbsTopK
            key, topk_cache, gate_cache = site_cache
            if site_grads is not None:
                site_grads[key] = dout.reshape(B, T, -1).copy()
            if gate_cache is not None:
                dout, gate_grads[key] = gate_backward(dout, gate_cache)
            return abstopk_backward(dout, topk_cache)

        def linear_back(dout, linear_cache):
            return linear_backward(dout, linear_cache, weights=param_grads)

        if cfg.bigram and param_grads:
            grads["bigram.weight"] = embedding_backward(dlogits, cache["bigram"])
        dxf, grads["lm_head.weight"], _ = linear_back(dlogits, cache["lm_head"])
        dx, grads["norm_f.weight"] = rmsnorm_backward(dxf, cache["norm_f"])    # [N, D], ours: += below is safe
        for l in reversed(range(cfg.n_layer)):
            p, c = f"blocks.{l}.", cache["blocks"][l]
            # MLP branch: x += w reads the residual gradient dx as dL/dw
            dw = site_back(dx, c["mlp_out"])
            du, grads[p + "mlp.down_proj.weight"], grads[p + "mlp.down_proj.bias"] = linear_back(dw, c["down"])
            du = gelu_backward(site_back(du, c["mlp_neuron"]), c["gelu"])
            dm, grads[p + "mlp.up_proj.weight"], grads[p + "mlp.up_proj.bias"] = linear_back(du, c["up"])
            dh, grads[p + "norm2.weight"] = rmsnorm_backward(site_back(dm, c["mlp_in"]), c["norm2"])
            dx += dh
            # attention branch
            do = site_back(dx, c["attn_out"])
            dy, grads[p + "attn.o_proj.weight"], grads[p + "attn.o_proj.bias"] = linear_back(do, c["o_proj"])
            dq, dk, dv, dsink = attention_backward(dy.reshape(B, T, A), c["attn"])
            if dsink is not None:
                grads[p + "attn.sink"] = dsink
            d_qkv = np.concatenate([site_back(dq.reshape(N, A), c["q"]), site_back(dk.reshape(N, A), c["k"]),
                                    site_back(dv.reshape(N, A), c["v"])], axis=1)   # [N, 3A]
            da, dw_qkv, db_qkv = linear_back(d_qkv, c["qkv"])
            for i, s in enumerate("qkv" if param_grads else ""):   # row blocks of the stacked weight: views
                grads[p + f"attn.{s}_proj.weight"] = dw_qkv[i * A:(i + 1) * A]
                grads[p + f"attn.{s}_proj.bias"] = db_qkv[i * A:(i + 1) * A]
            dh, grads[p + "norm1.weight"] = rmsnorm_backward(site_back(da, c["attn_in"]), c["norm1"])
            dx += dh
        if not param_grads:
            return {}, gate_grads
        grads["wte.weight"] = embedding_backward(dx, cache["wte"])
        if cfg.pos_emb == "learned":
            dwpe = np.zeros((cfg.n_ctx, cfg.d_model), dtype=dx.dtype)
            dwpe[:T] = dx.reshape(B, T, -1).sum(axis=0)
            grads["wpe.weight"] = dwpe
        return {name: grads[name] for name in self.params}, gate_grads

    # ------------------------------------------------------------------------------------------------------------------
    # input validation: refuse bad input here, with a message that says what to do, not deep inside a matmul

    def _check_gates(self, gates) -> dict:
        # cast to the model's dtype so a float64 gate cannot upcast a float32 forward pass
        gates = {key: tuple(np.asarray(a, dtype=self.dtype) for a in pair) if isinstance(pair, (tuple, list)) else pair
                 for key, pair in (gates or {}).items()}
        check_gates(gates, self.config)
        return gates

    def __repr__(self) -> str:
        n = sum(w.size for w in self.params.values())
        return f"GPT({self.config}, dtype={self.dtype}, {n:,} parameters)"

