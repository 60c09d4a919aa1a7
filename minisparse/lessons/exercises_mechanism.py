"""Checks for the mechanism exercises (lesson 05, reading a circuit): the share of the logit difference that patching
one node from the clean prompts into the corrupt ones restores (`minisparse.circuits.patching`)."""

from __future__ import annotations

import numpy as np

from minisparse.circuits.masks import parse_node
from minisparse.circuits.patching import Pairs, logit_diff, patch_nodes
from minisparse.config import ModelConfig
from minisparse.numpy import GPT
from minisparse.params import init_params
from minisparse.sparsity import is_sparsified

from .check import ExerciseError, _call, _passed, compare

__all__ = ["check_patch_restores"]

# Nodes at every kind of site, in both layers (a query, a value, a head's output channel, a key, a neuron, an MLP
# output channel): in `patching_case` each is the channel of its site whose patch restores the most, and for the
# layer-0 nodes and the key, patching the last position only restores something else.
_NODES = ("L0.q[5]", "L0.v[3]", "L0.attn_out[2]", "L1.k[2]", "L1.mlp_neuron[0]", "L1.mlp_out[2]")


def patching_case(seed: int = 8) -> tuple[GPT, Pairs]:
    """A small random sparse model (nothing square, AbsTopK off so that every node carries something) and six
    contrastive pairs whose prompts differ at positions 2 and 3; in each pair the right answer is the token the clean
    prompt raises most against the corrupt one, the wrong answer the one it lowers most."""
    cfg = ModelConfig(vocab_size=16, n_ctx=8, d_model=8, n_layer=2, n_head=2, d_head=3, d_mlp=12, afrac=1.0)
    rng = np.random.default_rng(seed)
    params = init_params(cfg, seed, np.float64)
    for name, w in params.items():
        if is_sparsified(name):
            w *= rng.random(w.shape) < 0.5                                    # half the entries nonzero
    model = GPT(cfg, params={n: w * 8 if w.ndim == 2 else w for n, w in params.items()})
    clean = rng.integers(1, cfg.vocab_size, (6, cfg.n_ctx))
    corrupt = clean.copy()
    corrupt[:, [2, 3]] = (clean[:, [2, 3]] + rng.integers(1, cfg.vocab_size - 1, (6, 2))) % cfg.vocab_size
    moved = model.forward(clean)[:, -1] - model.forward(corrupt)[:, -1]
    return model, Pairs(clean, corrupt, moved.argmax(axis=1), moved.argmin(axis=1))


def _restored_at_last_position(model, pairs: Pairs, node: str) -> float:
    """The same patch at the last position only: a common slip, named in the hint when it is what came back."""
    key, i = parse_node(node)
    _, clean = model.run_with_cache(pairs.clean, names=[key])
    corrupt = logit_diff(model.forward(pairs.corrupt), pairs).mean()

    def patch(value, key):
        value[:, -1, i] = clean[key][:, -1, i]
        return value

    patched = logit_diff(model.run_with_hooks(pairs.corrupt, {key: patch}), pairs).mean()
    return float((patched - corrupt) / (logit_diff(model.forward(pairs.clean), pairs).mean() - corrupt))


def check_patch_restores(fn) -> None:
    """`fn(model, pairs, node)`: the share of the mean logit difference restored on `pairs.corrupt` when `node`
    ("L{l}.{site}[i]") alone takes, at every position, its value on `pairs.clean`:
    (LD_patched − LD_corrupt) / (LD_clean − LD_corrupt), each LD the mean over pairs of
    logit[right] − logit[wrong] at the last position. `pairs` itself must not change."""
    model, pairs = patching_case()
    before = {f: getattr(pairs, f).copy() for f in ("clean", "corrupt", "right", "wrong")}
    ld_clean = logit_diff(model.forward(pairs.clean), pairs).mean()
    ld_corrupt = logit_diff(model.forward(pairs.corrupt), pairs).mean()
    for node in _NODES:
        expected = patch_nodes(model, pairs, [node])
        got = _call("patch_restores", fn, model, pairs, node)
        for field, array in before.items():
            compare(f"patch_restores({node!r}) changed pairs.{field}", getattr(pairs, field), array,
                    hint="patch a copy (or the value a hook receives), never the prompts themselves")
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"patch_restores({node!r}) must return a number (the share restored), got "
                                f"{type(got).__name__}") from None
        hint = ("run the clean prompts with model.run_with_cache(pairs.clean, names=[key]); run the corrupt ones with "
                "model.run_with_hooks and a hook that sets value[..., i] to the clean value at every position; then "
                "(LD_patched − LD_corrupt) / (LD_clean − LD_corrupt), each LD a mean over the pairs (logit_diff)")
        if np.isclose(got, expected * (ld_clean - ld_corrupt), rtol=1e-6, atol=1e-9) and not np.isclose(
                got, expected, rtol=1e-6, atol=1e-9):
            hint = ("you returned the change of the logit difference; divide it by LD_clean − LD_corrupt, the "
                    "change that would restore all of it")
        elif np.isclose(got, _restored_at_last_position(model, pairs, node), rtol=1e-6, atol=1e-9) and \
                not np.isclose(got, expected, rtol=1e-6, atol=1e-9):
            hint = ("you patched the last position only; the node's value at every position feeds the answer "
                    "(attention reads earlier positions), so patch value[..., i] at all of them")
        compare(f"patch_restores(model, pairs, {node!r})", got, expected, rtol=1e-6, atol=1e-9, hint=hint)
    _passed("patch_restores", len(_NODES))
