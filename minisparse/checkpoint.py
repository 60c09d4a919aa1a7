"""Checkpoints: safetensors files that either backend writes and either backend loads (DESIGN §2).

A model file holds float32 tensors under the DESIGN §2 names and, in its metadata, the model config as JSON, the format
version, the step, the training config and the corpus fingerprint. The optimizer's Adam moments go in a second file
beside it. Files are written atomically (a temporary file, then a rename), so an interrupted write never leaves a
half-written checkpoint where a good one was. Loading refuses, with a message naming the problem, anything that is
not exactly right: nothing is silently reshaped, cast or skipped. No pickle is ever read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from .config import ConfigError, ModelConfig
from .params import check_shapes, param_shapes

FORMAT = "minisparse"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match what it claims to be."""


def _write_atomic(tensors: dict[str, np.ndarray], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({n: np.ascontiguousarray(t, dtype=np.float32) for n, t in tensors.items()}, str(tmp), metadata)
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new, never half of one
    finally:
        tmp.unlink(missing_ok=True)


def save(model, path, *, step: int = 0, train_config=None, metadata: dict[str, str] | None = None) -> Path:
    """Write `model` (NumPy or MLX) to a safetensors checkpoint at `path`, atomically."""
    return write_checkpoint(model.config, model.numpy_params(), path, step=step, train_config=train_config,
                            metadata=metadata)


def write_checkpoint(config: ModelConfig, params: dict[str, np.ndarray], path, *, step: int = 0, train_config=None,
                     metadata: dict[str, str] | None = None) -> Path:
    """Write a config and its flat parameter dict as a checkpoint, atomically."""
    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_json(), "step": str(int(step)),
            "train_config": train_config.to_json() if train_config is not None else ""}
    meta.update(metadata or {})
    _write_atomic(params, path, meta)
    return path


def _open(path: Path, what: str):
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}: check the path (train one with `minisparse train`)")
    try:
        return safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors {what} ({e}); the file is corrupt or "
                              "truncated: restore it or retrain") from None


def _read_tensors(f, path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    slices = {name: f.get_slice(name) for name in f.keys()}
    try:
        check_shapes({name: sl.get_shape() for name, sl in slices.items()}, expected, "tensors")
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    for name in expected:
        dtype = slices[name].get_dtype()
        if dtype != "F32":
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, expected F32 (float32)")
    return {name: f.get_tensor(name) for name in expected}


def read_checkpoint(path) -> tuple[ModelConfig, dict[str, np.ndarray], dict[str, str]]:
    """Read and validate a model checkpoint: (config, float32 params in canonical order, metadata)."""
    path = Path(path)
    with _open(path, "checkpoint") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a minisparse checkpoint "
                                  f"(metadata 'format' is {meta.get('format')!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path} has format version {meta.get('format_version')!r}; this minisparse reads "
                                  f"version {FORMAT_VERSION!r}")
        try:
            config = ModelConfig.from_dict(json.loads(meta["config"]))
        except (KeyError, json.JSONDecodeError, TypeError, ConfigError) as e:
            raise CheckpointError(f"{path} carries a bad model config: {e}") from None
        params = _read_tensors(f, path, param_shapes(config))
    return config, params, meta


def load(path, backend: str = "numpy"):
    """Load a checkpoint (written by either backend) as a `backend` ("numpy" or "mlx") model."""
    config, params, _ = read_checkpoint(path)
    if backend == "numpy":
        from .numpy import GPT
        return GPT(config, params=params)
    if backend == "mlx":
        from .mlx import GPT
        model = GPT(config)
        model.load_params(params)
        return model
    raise ValueError(f"unknown backend {backend!r}; choose 'numpy' or 'mlx'")


def save_optimizer(state: dict, path, *, step: int) -> Path:
    """Write Adam's moments ({"m": {...}, "v": {...}}) beside a model checkpoint, atomically."""
    tensors = {f"{k}.{n}": a for k in ("m", "v") for n, a in state[k].items()}
    _write_atomic(tensors, Path(path), {"format": FORMAT + "-optimizer", "format_version": FORMAT_VERSION,
                                        "step": str(int(step))})
    return Path(path)


def load_optimizer(path, config: ModelConfig, *, step: int) -> dict:
    """Read the Adam moments written by `save_optimizer`, checking they belong to a model of `config` at `step`."""
    path = Path(path)
    with _open(path, "optimizer state") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT + "-optimizer":
            raise CheckpointError(f"{path} is not a minisparse optimizer state")
        if meta.get("step") != str(step):
            raise CheckpointError(f"{path} is from step {meta.get('step')}, but the model checkpoint is from step "
                                  f"{step}: the pair is inconsistent (an interrupted save?); delete both to restart")
        shapes = param_shapes(config)
        flat = _read_tensors(f, path, {f"{k}.{n}": s for k in ("m", "v") for n, s in shapes.items()})
    return {k: {n: flat[f"{k}.{n}"] for n in shapes} for k in ("m", "v")}
