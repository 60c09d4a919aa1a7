"""Parameter names, shapes and initialisation (DESIGN §1–§2), shared by both backends.

Both backends initialise from `init_params`, one NumPy `Generator(seed)` drawing in the fixed order of `param_shapes`,
so one seed gives one model whichever backend runs it.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .config import ModelConfig

# The fixed constants of the model's math (DESIGN §1), one definition for both backends. Python floats, so that a
# float32 array times a constant stays float32 (a NumPy float64 scalar would upcast it, NEP 50).
RMS_EPS = 1e-5                       # RMSNorm: x / sqrt(mean(x²) + RMS_EPS) · g
GELU_C = math.sqrt(2.0 / math.pi)    # tanh GELU: 0.5·x·(1 + tanh(GELU_C·(x + GELU_A·x³)))
GELU_A = 0.044715


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in the canonical order (the order of the init draws)."""
    D, A, M, V = cfg.d_model, cfg.d_attn, cfg.d_mlp, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (V, D)}
    if cfg.pos_emb == "learned":
        shapes["wpe.weight"] = (cfg.n_ctx, D)
    for l in range(cfg.n_layer):
        b = f"blocks.{l}"
        shapes[f"{b}.norm1.weight"] = (D,)
        for p in ("q", "k", "v"):
            shapes[f"{b}.attn.{p}_proj.weight"] = (A, D)
            shapes[f"{b}.attn.{p}_proj.bias"] = (A,)
        shapes[f"{b}.attn.o_proj.weight"] = (D, A)
        shapes[f"{b}.attn.o_proj.bias"] = (D,)
        if cfg.attn_sink:
            shapes[f"{b}.attn.sink"] = (cfg.n_head,)
        shapes[f"{b}.norm2.weight"] = (D,)
        shapes[f"{b}.mlp.up_proj.weight"] = (M, D)
        shapes[f"{b}.mlp.up_proj.bias"] = (M,)
        shapes[f"{b}.mlp.down_proj.weight"] = (D, M)
        shapes[f"{b}.mlp.down_proj.bias"] = (D,)
    shapes["norm_f.weight"] = (D,)
    shapes["lm_head.weight"] = (V, D)
    if cfg.bigram:
        shapes["bigram.weight"] = (V, V)
    return shapes


def weights_digest(params: dict) -> str:
    """A short sha256 of a model's weights, in name order, each in its own dtype: which model a circuit was pruned on,
    which model ablation means were computed for."""
    h = hashlib.sha256()
    for name in sorted(params):
        w = np.ascontiguousarray(params[name])
        h.update(f"{name}:{w.dtype}".encode())
        h.update(w.tobytes())
    return h.hexdigest()[:16]


def _listed(names: list[str], most: int = 5) -> str:
    """At most `most` names, and how many more: an error message stays one readable line."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{names[:most]}{more}"


def check_shapes(shapes: dict, expected: dict[str, tuple[int, ...]], what: str = "parameters") -> None:
    """Refuse, naming them, the names missing from `shapes` or not in `expected`, then the first shape that differs.

    `shapes` maps names to the shapes of whatever holds them (NumPy or MLX arrays, safetensors slices); `expected` is
    usually `param_shapes(config)`. The one check of names and shapes that models, optimizer state and checkpoint
    files all go through, so their messages say the same thing the same way.
    """
    missing = [name for name in expected if name not in shapes]
    extra = sorted(name for name in shapes if name not in expected)
    if missing or extra:
        raise ValueError(f"{what} and the model config differ: missing {_listed(missing)}, unexpected {_listed(extra)}")
    for name, shape in expected.items():
        if tuple(shapes[name]) != tuple(shape):
            raise ValueError(f"{what}: {name!r} has shape {tuple(shapes[name])}, expected {tuple(shape)}")


def init_params(cfg: ModelConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """DESIGN §1 init: weights N(0, 0.02), residual-stream writers (o_proj, down_proj) N(0, 0.02/sqrt(2·n_layer)),
    biases, sinks and the bigram table 0, norm gains 1. Drawn in float64, then cast, so float32 and float64 models
    built from one seed hold the same numbers."""
    rng = np.random.default_rng(seed)
    out_std = 0.02 / math.sqrt(2 * cfg.n_layer)
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm_f.weight":
            w = np.ones(shape)
        elif name.endswith(".weight") and name != "bigram.weight":
            std = out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            w = rng.normal(0.0, std, size=shape)
        else:  # biases, sinks, bigram
            w = np.zeros(shape)
        params[name] = w.astype(dtype)
    return params


# The eight activation sites of every block, in forward order (DESIGN §1). AbsTopK acts at each; circuits prune their
# channels (DESIGN §5). A site is keyed "L{l}.{site}", a node "L{l}.{site}[{i}]".
SITES = ("attn_in", "q", "k", "v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")


def site_sizes(cfg: ModelConfig) -> dict[str, int]:
    """Number of channels at every site, keyed "L{l}.{site}", in forward order."""
    width = {"attn_in": cfg.d_model, "q": cfg.d_attn, "k": cfg.d_attn, "v": cfg.d_attn, "attn_out": cfg.d_model,
             "mlp_in": cfg.d_model, "mlp_neuron": cfg.d_mlp, "mlp_out": cfg.d_model}
    return {f"L{l}.{s}": width[s] for l in range(cfg.n_layer) for s in SITES}


def check_gates(gates: dict, cfg: ModelConfig) -> None:
    """Refuse, with a message naming the problem, a gates dict ("L{l}.{site}" -> (g, mu), each [n]) that does not fit
    a model of `cfg`. Works on NumPy and MLX arrays alike (only shapes are read)."""
    sizes = site_sizes(cfg)
    for key, pair in gates.items():
        if key not in sizes:
            raise ValueError(f"unknown gate site {key!r}; sites are 'L{{layer}}.{{site}}' with site in {SITES} "
                             f"and layer in [0, {cfg.n_layer})")
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"gates[{key!r}] must be a pair (g, mu) of arrays of shape ({sizes[key]},)")
        shapes = [tuple(getattr(a, "shape", ())) for a in pair]
        if shapes != [(sizes[key],)] * 2:
            raise ValueError(f"gates[{key!r}] has g of shape {shapes[0]} and mu of shape {shapes[1]}; "
                             f"both must be ({sizes[key]},), one entry per channel of the site")


def check_param_arrays(params, config: ModelConfig, dtype=None) -> np.dtype:
    """Check a dict of NumPy parameters against param_shapes(config); return its (single, floating) dtype. A
    `dtype` asked for must be the one the arrays have: nothing is cast silently."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> np.ndarray, got {type(params).__name__}")
    for name, w in params.items():
        if not isinstance(w, np.ndarray):
            raise TypeError(f"params[{name!r}] must be a np.ndarray, got {type(w).__name__}")
    check_shapes({name: w.shape for name, w in params.items()}, param_shapes(config), "params")
    dtypes = {w.dtype for w in params.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ValueError(f"params must all be float32 or all float64, got dtypes {sorted(map(str, dtypes))}")
    found = next(iter(dtypes))
    if dtype is not None and np.dtype(dtype) != found:
        raise ValueError(f"dtype={np.dtype(dtype)} was asked for but the given params are {found}; "
                         f"cast them first, e.g. {{n: w.astype(np.{np.dtype(dtype)}) for n, w in params.items()}}")
    return found
