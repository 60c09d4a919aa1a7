"""Checkpoints: safetensors files that either backend writes and either backend loads (DESIGN §2).

A model file holds float32 tensors under the DESIGN §2 names and, in its metadata, the model config as JSON, the format
version, the step, the training config, the corpus fingerprint, and a sha256 digest of every tensor and of the other
metadata. The optimizer's Adam moments go in a second file beside it. Files are written atomically (a temporary file,
then a rename), so an interrupted write never leaves a half-written checkpoint where a good one was, and with the
permissions of any file the user saves (the umask's). Loading refuses, with a message naming the problem, anything
that is not exactly right: a tensor or metadata entry that differs from its digest (corruption anywhere in the file),
a NaN or inf weight, a missing or extra tensor, a wrong shape or dtype. Nothing is silently reshaped, cast or skipped.
No pickle is ever read.

A compact file (`compact=True`, format version 3: how the shipped zoo stores its sparse models) holds a mostly-zero
tensor `name` as `name.nonzeros` (its nonzero values in row-major order) and `name.where` (one bit per entry,
`np.packbits`); the digests are those of the full tensors, so the expanded tensors pass the same checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from .config import ConfigError, ModelConfig, TrainConfig
from .params import check_shapes, param_shapes
from .rundir import replace_atomically

FORMAT = "minisparse"
FORMAT_VERSION = "2"             # 2 added the digests; version 1 files (no digests) still load
COMPACT_VERSION = "3"            # 3 added compact tensors
READABLE_VERSIONS = ("1", "2", "3")
DIGEST = "sha256"                # the metadata key of the digests
COMPACT = "compact"              # the metadata key listing the compact tensors
NONZEROS, WHERE = ".nonzeros", ".where"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match what it claims to be."""


def _sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _metadata_digest(metadata: dict[str, str]) -> str:
    return _sha256(json.dumps({k: v for k, v in metadata.items() if k != DIGEST}, sort_keys=True).encode())


def _digests(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """JSON of the sha256 of every tensor's bytes and of the other metadata entries."""
    return json.dumps({"metadata": _metadata_digest(metadata),
                       "tensors": {name: _sha256(t) for name, t in tensors.items()}})


def _file_mode() -> int:
    # What open() would give a new file: 0o666 less the umask. (safetensors creates its files 0o600.)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _compacted(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """(the tensors as they will read back, as they are stored, the names of the compact ones): every mostly-zero
    matrix is stored as its nonzeros and a bit per entry, its zeros all +0.0 (a masked weight is often -0.0)."""
    full, stored, names = dict(tensors), {}, []
    for name, t in tensors.items():
        where = t.ravel() != 0
        if t.ndim == 2 and where.mean() < 0.5:       # the bits cost 1/32 of the dense size: worth it below 1/2
            full[name] = np.where(t == 0, np.float32(0), t)
            stored[name + NONZEROS] = t.ravel()[where]
            stored[name + WHERE] = np.packbits(where)
            names.append(name)
        else:
            stored[name] = t
    return full, stored, names


def _write_atomic(tensors: dict[str, np.ndarray], path: Path, metadata: dict[str, str], compact: bool = False) -> None:
    tensors = {n: np.ascontiguousarray(t, dtype=np.float32) for n, t in tensors.items()}
    tensors, stored, names = _compacted(tensors) if compact else (tensors, tensors, [])
    # the keys a checkpoint writes for itself replace any of the caller's (a copy of another file's metadata)
    metadata = {**{k: v for k, v in metadata.items() if k != COMPACT},
                "format_version": COMPACT_VERSION if compact else FORMAT_VERSION}
    if compact:
        metadata[COMPACT] = json.dumps(names)
    metadata[DIGEST] = _digests(tensors, metadata)

    def write(tmp: Path) -> None:
        save_file(stored, str(tmp), metadata)
        os.chmod(tmp, _file_mode())

    try:
        replace_atomically(path, write)
    except (SafetensorError, OSError) as e:     # a full disk, a read-only folder: the old file is untouched
        raise CheckpointError(f"could not write {path}: {e}; the previous file there, if any, is intact") from None


def save(model, path, *, step: int = 0, train_config=None, metadata: dict[str, str] | None = None) -> Path:
    """Write `model` (NumPy or MLX) to a safetensors checkpoint at `path`, atomically."""
    return write_checkpoint(model.config, model.numpy_params(), path, step=step, train_config=train_config,
                            metadata=metadata)


def write_checkpoint(config: ModelConfig, params: dict[str, np.ndarray], path, *, step: int = 0, train_config=None,
                     metadata: dict[str, str] | None = None, compact: bool = False) -> Path:
    """Write a config and its flat parameter dict as a checkpoint, atomically; `compact` stores each mostly-zero matrix
    as its nonzeros and a bit per entry."""
    path = Path(path)
    meta = {**(metadata or {}), "format": FORMAT, "config": config.to_json(), "step": str(int(step)),
            "train_config": train_config.to_json() if train_config is not None else ""}
    _write_atomic(params, path, meta, compact)
    return path


def _open(path: Path, what: str):
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}: check the path (train one with `minisparse train`)")
    try:
        return safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors {what} ({e}); the file is corrupt or "
                              "truncated: restore it or retrain") from None


def _read_metadata(f, path: Path, fmt: str, what: str) -> tuple[dict[str, str], dict[str, str] | None]:
    """The file's metadata and its tensors' digests (None for version 1), after checking its format, its version and
    the metadata's digest."""
    meta = f.metadata() or {}
    if meta.get("format") != fmt:
        raise CheckpointError(f"{path} is not a minisparse {what} (metadata 'format' is {meta.get('format')!r})")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} has format version {meta.get('format_version')!r}; this minisparse reads "
                              f"versions {list(READABLE_VERSIONS)}")
    if meta["format_version"] == "1":
        return meta, None
    try:
        stored = json.loads(meta[DIGEST])
        ok = stored["metadata"] == _metadata_digest(meta) and isinstance(stored["tensors"], dict)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: the metadata does not match the digest saved with it: the file is corrupt; "
                              "restore it or retrain")
    return meta, stored["tensors"]


def _compact_names(meta: dict[str, str], path: Path, expected: dict[str, tuple[int, ...]]) -> list[str]:
    if COMPACT not in meta:
        return []
    try:
        names = json.loads(meta[COMPACT])
        ok = isinstance(names, list) and all(isinstance(n, str) and len(expected.get(n, ())) == 2 for n in names)
    except ValueError:
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: its list of compact tensors is not a list of the model's matrices; the file "
                              "is corrupt")
    return names


def _expand(f, path: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A compact tensor, whole: its nonzeros put back where its bits say, after checking that the two agree."""
    size = math.prod(shape)
    bits = np.unpackbits(f.get_tensor(name + WHERE))
    where = bits[:size].astype(bool)
    nonzeros = f.get_tensor(name + NONZEROS)
    if bits[size:].any():
        raise CheckpointError(f"{path}: tensor {name!r} marks entries beyond its {size}; the file is corrupt")
    if nonzeros.shape != (where.sum(),):
        raise CheckpointError(f"{path}: tensor {name!r} marks {where.sum()} nonzeros but holds shape "
                              f"{nonzeros.shape}; the file is corrupt")
    t = np.zeros(size, np.float32)
    t[where] = nonzeros
    return t.reshape(shape)


def _read_tensors(f, path: Path, digests: dict[str, str] | None, expected: dict[str, tuple[int, ...]],
                  compact: list[str] = ()) -> dict[str, np.ndarray]:
    slices = {name: f.get_slice(name) for name in f.keys()}
    layout = {name: shape for name, shape in expected.items() if name not in compact}
    for name in compact:     # a compact tensor's bytes of bits are known; its nonzeros are checked against the bits
        layout[name + WHERE] = ((math.prod(expected[name]) + 7) // 8,)
        layout[name + NONZEROS] = tuple(slices[name + NONZEROS].get_shape()) if name + NONZEROS in slices else ()
    try:
        check_shapes({name: sl.get_shape() for name, sl in slices.items()}, layout, "tensors")
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    bits = {name + WHERE for name in compact}
    for name in layout:
        dtype, want = slices[name].get_dtype(), "U8" if name in bits else "F32"
        if dtype != want:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, expected {want}")
    tensors = {name: _expand(f, path, name, shape) if name in compact else f.get_tensor(name)
               for name, shape in expected.items()}
    for name, t in tensors.items():
        if digests is not None and digests.get(name) != _sha256(t):
            raise CheckpointError(f"{path}: tensor {name!r} does not match the digest saved with it: the file is "
                                  "corrupt; restore it or retrain")
        bad = t.size - int(np.count_nonzero(np.isfinite(t)))
        if bad:  # training never saves a non-finite weight (it stops first), so this is damage
            raise CheckpointError(f"{path}: tensor {name!r} holds {bad} NaN or inf values; the file is corrupt: "
                                  "restore it or retrain")
    return tensors


def _configs(f, path: Path) -> tuple[ModelConfig, TrainConfig | None, dict[str, str], dict | None]:
    """The file's model config, training config (None if it has none), metadata and tensor digests, all checked."""
    meta, digests = _read_metadata(f, path, FORMAT, "checkpoint")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path} carries a bad model config: {e}") from None
    try:
        train_config = TrainConfig.from_dict(json.loads(meta["train_config"])) if meta.get("train_config") else None
    except (json.JSONDecodeError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path} carries a bad training config: {e}") from None
    meta.setdefault("step", "0")               # a version-1 file may carry none: step 0, here once for every reader
    if not meta["step"].isdigit():
        raise CheckpointError(f"{path} carries a bad step {meta.get('step')!r}; the file is corrupt")
    # Bound what the config claims by what the file holds before building anything of the config's size: every layer
    # has tensors of its own in the file.
    if config.n_layer > len(f.keys()):
        raise CheckpointError(f"{path}: its config claims {config.n_layer} layers but the file holds only "
                              f"{len(f.keys())} tensors; the file is corrupt or was not written by minisparse")
    return config, train_config, meta, digests


def read_configs(path) -> tuple[ModelConfig, TrainConfig | None, dict[str, str]]:
    """A checkpoint's model config, training config (None if it has none) and metadata, checked, without reading its
    tensors: how a run was made."""
    path = Path(path)
    with _open(path, "checkpoint") as f:
        return _configs(f, path)[:3]


def read_checkpoint(path) -> tuple[ModelConfig, dict[str, np.ndarray], dict[str, str]]:
    """Read and validate a model checkpoint: (config, float32 params in canonical order, metadata)."""
    path = Path(path)
    with _open(path, "checkpoint") as f:
        config, _, meta, digests = _configs(f, path)
        shapes = param_shapes(config)
        params = _read_tensors(f, path, digests, shapes, _compact_names(meta, path, shapes))
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
    _write_atomic(tensors, Path(path), {"format": FORMAT + "-optimizer", "step": str(int(step))})
    return Path(path)


def load_optimizer(path, config: ModelConfig, *, step: int) -> dict:
    """Read the Adam moments written by `save_optimizer`, checking they belong to a model of `config` at `step`."""
    path = Path(path)
    with _open(path, "optimizer state") as f:
        meta, digests = _read_metadata(f, path, FORMAT + "-optimizer", "optimizer state")
        if meta.get("step") != str(step):
            raise CheckpointError(f"{path} is from step {meta.get('step')}, but the model checkpoint is from step "
                                  f"{step}: it belongs to another checkpoint; the run's files were mixed up or damaged")
        shapes = param_shapes(config)
        flat = _read_tensors(f, path, digests, {f"{k}.{n}": s for k in ("m", "v") for n, s in shapes.items()})
    return {k: {n: flat[f"{k}.{n}"] for n in shapes} for k in ("m", "v")}
