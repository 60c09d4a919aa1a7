"""Model and training configuration, shared by both backends (DESIGN §1, §3).

Both are frozen dataclasses that validate themselves on construction, so a bad value is refused where it is written,
with a message that says what is wrong and what would be right, not deep inside a forward pass.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from .sparsity import ANNEAL_SHAPES, density_at


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which and why."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive_int(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{type(obj).__name__}.{name} must be a positive integer, got {value!r}")


def _from_dict(cls, data: dict):
    """Build `cls` from a plain dict, refusing unknown keys rather than silently dropping them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be built from a dict, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    _require(not unknown, f"unknown {cls.__name__} field(s) {unknown}; known fields are {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """The shape of one GPT (DESIGN §1). `d_mlp=None` means 4·d_model."""

    vocab_size: int = 256
    n_ctx: int = 128
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 8
    d_head: int = 16          # the paper's; need not equal d_model / n_head
    d_mlp: int | None = None
    pos_emb: str = "none"     # "none" (the paper's default) or "learned"
    attn_sink: bool = True    # a learned per-head logit that attention can dump probability mass on
    bigram: bool = False      # a dense (V, V) table added to the logits
    afrac: float = 0.25       # fraction of channels AbsTopK keeps at every site; 1 turns activation sparsity off

    def __post_init__(self):
        if self.d_mlp is None:
            object.__setattr__(self, "d_mlp", 4 * self.d_model)
        _positive_int(self, "vocab_size", "n_ctx", "d_model", "n_layer", "n_head", "d_head", "d_mlp")
        _require(self.pos_emb in ("none", "learned"),
                 f"ModelConfig.pos_emb must be 'none' or 'learned', got {self.pos_emb!r}")
        _require(isinstance(self.attn_sink, bool),
                 f"ModelConfig.attn_sink must be True or False, got {self.attn_sink!r}")
        _require(isinstance(self.bigram, bool), f"ModelConfig.bigram must be True or False, got {self.bigram!r}")
        _require(isinstance(self.afrac, (int, float)) and not isinstance(self.afrac, bool) and 0 < self.afrac <= 1,
                 f"ModelConfig.afrac must be in (0, 1] (1 turns AbsTopK off), got {self.afrac!r}")
        object.__setattr__(self, "afrac", float(self.afrac))

    @property
    def d_attn(self) -> int:
        """Width of the q, k, v sites: all heads concatenated."""
        return self.n_head * self.d_head

    def topk(self, n: int) -> int:
        """How many of `n` channels AbsTopK keeps: max(1, floor(afrac·n))."""
        return max(1, int(self.afrac * n))

    def check_tokens(self, idx, what: str = "idx") -> np.ndarray:
        """`idx` as a 2-D integer NumPy array of token ids this model can read, or a ValueError that says what is
        wrong and what to do. Both backends check their input here, not deep inside a matmul."""
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu":
            raise ValueError(f"{what} must be an integer array of token ids, got dtype {idx.dtype}; "
                             f"convert it with {what}.astype(np.int64)")
        if idx.ndim != 2:
            # 1-D is refused rather than guessed at: a batch of one and a sequence of length one look alike
            raise ValueError(f"{what} must be 2-D (batch, tokens), got shape {idx.shape}; "
                             f"for a single sequence pass {what}[None, :]")
        B, T = idx.shape
        if B == 0 or T == 0:
            raise ValueError(f"{what} has shape {idx.shape}; it needs at least one sequence of at least one token")
        if T > self.n_ctx:
            raise ValueError(f"sequence of length {T} exceeds n_ctx={self.n_ctx}; crop it "
                             f"(e.g. {what}[:, -{self.n_ctx}:]) or train a model with a larger n_ctx")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"{what} holds token ids in [{lo}, {hi}], outside [0, vocab_size={self.vocab_size}); "
                             "check the tokenizer matches the model's vocab_size")
        return idx

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (DESIGN §3). Fractions of training are of `steps`."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-2
    weight_density: float = 1 / 16   # fraction of each sparsified matrix kept; 1 trains a dense model
    density_overrides: dict = field(default_factory=dict)  # parameter name -> density, e.g. {"wte.weight": 0.25}
    min_per_neuron: int = 4          # each row/column on a matrix's min-j axis keeps at least this many weights
    anneal_start: float = 0.01       # density is 1 until this fraction of training...
    anneal_end: float = 0.5          # ...then falls to the target here
    anneal_shape: str = "linear"     # "linear" in k (the paper's), or "geometric": the same fraction of k every step
    warmup: float = 0.01             # linear LR warmup fraction, then linear decay to 0
    sharkfin: bool = False           # multiply LR by sqrt(target_density / density(t))
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 0.1                 # the paper's; large, because gradients are RMS-normalised to 1
    weight_decay: float = 0.1
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 8
    checkpoint_every: int = 100
    task_examples: int = 0           # examples of every built-in task mixed into the training text, per task

    def __post_init__(self):
        _positive_int(self, "steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every")
        _require(isinstance(self.task_examples, int) and self.task_examples >= 0,
                 f"TrainConfig.task_examples must be an integer >= 0, got {self.task_examples!r}")
        _require(isinstance(self.min_per_neuron, int) and self.min_per_neuron >= 0,
                 f"TrainConfig.min_per_neuron must be an integer >= 0, got {self.min_per_neuron!r}")
        _require(isinstance(self.seed, int) and self.seed >= 0,
                 f"TrainConfig.seed must be an integer >= 0, got {self.seed!r}")
        _require(_is_number(self.lr) and self.lr > 0, f"TrainConfig.lr must be > 0, got {self.lr!r}")
        _check_density("TrainConfig.weight_density", self.weight_density)
        _require(isinstance(self.density_overrides, dict),
                 "TrainConfig.density_overrides must be a dict of parameter name -> density, "
                 f"got {self.density_overrides!r}")
        for name, d in self.density_overrides.items():
            _check_density(f"TrainConfig.density_overrides[{name!r}]", d)
        _require(_is_number(self.anneal_start) and _is_number(self.anneal_end)
                 and 0 <= self.anneal_start <= self.anneal_end <= 1,
                 "TrainConfig needs 0 <= anneal_start <= anneal_end <= 1, "
                 f"got {self.anneal_start!r}, {self.anneal_end!r}")
        _require(self.anneal_shape in ANNEAL_SHAPES,
                 f"TrainConfig.anneal_shape must be one of {ANNEAL_SHAPES}, got {self.anneal_shape!r}")
        _require(_is_number(self.warmup) and 0 <= self.warmup < 1,
                 f"TrainConfig.warmup must be in [0, 1), got {self.warmup!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            _require(_is_number(v) and 0 <= v < 1, f"TrainConfig.{name} must be in [0, 1), got {v!r}")
        _require(_is_number(self.eps) and self.eps > 0, f"TrainConfig.eps must be > 0, got {self.eps!r}")
        _require(_is_number(self.weight_decay) and self.weight_decay >= 0,
                 f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        _require(self.weight_decay * self.lr < 1,
                 f"TrainConfig needs weight_decay * lr < 1 (the decay factor 1 - wd·lr must stay positive), got "
                 f"{self.weight_decay} * {self.lr}")
        _require(isinstance(self.sharkfin, bool), f"TrainConfig.sharkfin must be True or False, got {self.sharkfin!r}")

    def density_for(self, name: str) -> float:
        """Target density of one parameter: its override, else `weight_density`."""
        return self.density_overrides.get(name, self.weight_density)

    def density_after(self, step: int, name: str | None = None) -> float:
        """Density in force after optimizer step `step`: this config's anneal toward the target of parameter `name`
        (`weight_density` when None), DESIGN §3."""
        target = self.weight_density if name is None else self.density_for(name)
        return density_at(step, self.steps, target, self.anneal_start, self.anneal_end, self.anneal_shape)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return _from_dict(cls, data)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _check_density(what: str, d) -> None:
    _require(_is_number(d) and 0 < d <= 1, f"{what} must be in (0, 1] (1 = dense), got {d!r}")


# Named presets: a model shape and a training recipe that go together. `tiny` is for tests and CI (seconds); `small`
# trains on a laptop CPU in minutes, with the positions and LR that won a sweep at density 1/16 (docs/results.md).
PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "tiny": (
        ModelConfig(vocab_size=256, n_ctx=32, d_model=32, n_layer=2, n_head=2, d_head=16, d_mlp=64),
        TrainConfig(steps=60, batch_size=8, lr=1e-2, eval_every=20, eval_batches=2, checkpoint_every=20),
    ),
    "small": (
        ModelConfig(vocab_size=256, n_ctx=128, d_model=128, n_layer=4, n_head=8, d_head=16, d_mlp=512,
                    pos_emb="learned"),
        TrainConfig(steps=2500, batch_size=16, lr=2e-2, eval_every=500, eval_batches=16, checkpoint_every=250),
    ),
}
# `reproduce`: the recipe of `minisparse reproduce` — the `small` shape with a 64-byte context (every task prompt fits)
# and examples of each built-in task (train templates only) mixed into the standard library, so that models trained in
# minutes on a laptop CPU do the tasks; held-out task prompts come from other templates. The geometric anneal avoids
# the loss jump where the linear one ends (DESIGN §3; the measurements behind these choices are in docs/results.md).
PRESETS["reproduce"] = (
    ModelConfig(vocab_size=256, n_ctx=64, d_model=128, n_layer=4, n_head=8, d_head=16, d_mlp=512, pos_emb="learned"),
    TrainConfig(steps=3000, batch_size=32, lr=2e-2, eval_every=250, eval_batches=16, checkpoint_every=250,
                task_examples=4000, anneal_shape="geometric"),
)


def preset(name: str) -> tuple[ModelConfig, TrainConfig]:
    """The (ModelConfig, TrainConfig) of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets are {sorted(PRESETS)}")
    return PRESETS[name]
