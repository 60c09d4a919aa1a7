"""Offline training data: the running Python's own standard library, read as bytes.

Every Python installation ships a few megabytes of well-written source code, so a model can be trained without
downloading anything, and a checkpoint can say exactly which text it saw (a sha256 fingerprint of the files).

Corpus rules:
- files: every `.py` file under `sysconfig.get_paths()["stdlib"]` (or `root`), except those under a directory named
  `test`, `tests`, `idlelib`, `site-packages` or `__pycache__` (tests are repetitive and huge, idlelib is an app,
  site-packages is not the stdlib); symlinks and anything else that is not a regular file are skipped, so the walk
  cannot loop and never leaves the tree; sorted by relative POSIX path.
- split by *file* (so no file leaks between train and validation): a file is in validation when the first 8 bytes of
  sha256(relative path) mod 10 000 fall below 500 (~5%), the same on every machine. (A tree so small that
  the hash puts every file on one side moves the file with the lowest hash to validation.)
- files are joined with one NUL byte (`SEP`). Python source never contains NUL, so it marks file boundaries
  unambiguously; tasks also left-pad prompts with it, which reads to the model like "a new file starts here".

Tokens are bytes (vocab 256): `encode` is UTF-8, `decode` replaces invalid sequences.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEP = 0                                                # byte between files, and the pad byte of task prompts
EXCLUDED_DIRS = frozenset({"test", "tests", "idlelib", "site-packages", "__pycache__"})
VAL_PER_10000 = 500                                    # validation share of files, in 1/10 000ths


class CorpusError(RuntimeError):
    """The corpus cannot be built; the message says where it looked and what to do."""


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer: one token per byte.

def encode(text: str) -> np.ndarray:
    """str -> (N,) uint8 token ids, the UTF-8 bytes of `text`."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(ids) -> str:
    """Token ids (any int sequence, values 0..255) -> str; invalid UTF-8 becomes U+FFFD."""
    return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------------------------------
# Corpus.

@dataclass(frozen=True)
class Corpus:
    """The stdlib as two byte streams. Arrays are read-only because the corpus is cached and shared."""

    root: str
    train: np.ndarray              # (N_train,) uint8
    val: np.ndarray                # (N_val,) uint8
    fingerprint: str               # sha256 hex over (relative path, content) of every file, in order
    train_files: tuple[str, ...]   # relative POSIX paths, sorted
    val_files: tuple[str, ...]

    @property
    def n_files(self) -> int:
        return len(self.train_files) + len(self.val_files)

    def __repr__(self) -> str:
        return (f"Corpus(root={self.root!r}, n_files={self.n_files}, train={self.train.size:,} bytes, "
                f"val={self.val.size:,} bytes, fingerprint={self.fingerprint[:16]}…)")


def stdlib_dir() -> Path:
    """The running Python's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: str | os.PathLike | None = None) -> list[str]:
    """Relative POSIX paths of the corpus files under `root` (default: the stdlib), sorted."""
    root = Path(root) if root is not None else stdlib_dir()
    if not root.is_dir():
        raise CorpusError(f"no standard library found: {str(root)!r} is not a directory. "
                          f"Pass a directory of Python sources explicitly: load_corpus(root='/path/to/lib/python3.X').")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):            # followlinks=False: a symlinked dir is not entered
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]
        for filename in filenames:
            path = Path(dirpath, filename)
            if filename.endswith(".py") and not path.is_symlink() and path.is_file():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def _path_bytes(relpath: str) -> bytes:
    # os.walk decodes non-UTF-8 file names with surrogateescape; encoding the same way gives back the original bytes.
    return relpath.encode("utf-8", "surrogateescape")


def split_of(relpath: str) -> str:
    """Which split one file is in, "train" or "val": a hash of its relative path alone, so it is stable as other
    files come and go."""
    h = int.from_bytes(hashlib.sha256(_path_bytes(relpath)).digest()[:8], "big")
    return "val" if h % 10_000 < VAL_PER_10000 else "train"


def fingerprint(files: list[tuple[str, bytes]]) -> str:
    """sha256 over each (relative path, content) in order; lengths are included so no two corpora can collide by
    moving bytes between a path and its content or between neighbouring files."""
    h = hashlib.sha256()
    for relpath, content in files:
        name = _path_bytes(relpath)
        h.update(len(name).to_bytes(8, "little") + name + len(content).to_bytes(8, "little"))
        h.update(content)
    return h.hexdigest()


_CACHE: dict[str, Corpus] = {}


def load_corpus(root: str | os.PathLike | None = None, *, refresh: bool = False) -> Corpus:
    """Read and split the corpus under `root` (default: this Python's stdlib). Cached per root within the process;
    `refresh=True` re-reads the files (e.g. after editing them)."""
    root_path = Path(root) if root is not None else stdlib_dir()
    key = str(root_path.resolve())
    if refresh or key not in _CACHE:
        _CACHE[key] = _read_corpus(root_path)
    return _CACHE[key]


def _read_corpus(root: Path) -> Corpus:
    relpaths = corpus_files(root)
    if len(relpaths) < 2:
        raise CorpusError(f"found {len(relpaths)} .py file(s) under {str(root)!r} (excluding {sorted(EXCLUDED_DIRS)}); "
                          f"need at least 2, one for training and one for validation. "
                          f"Pass a directory of Python sources: load_corpus(root='/path/to/lib/python3.X').")
    files = [(p, (root / p).read_bytes()) for p in relpaths]
    is_val = [split_of(p) == "val" for p in relpaths]
    if all(is_val) or not any(is_val):
        # Too few files for the hash to land on both sides (tiny test trees): move the file with the lowest hash.
        lowest = min(range(len(relpaths)), key=lambda i: hashlib.sha256(_path_bytes(relpaths[i])).digest())
        is_val = [False] * len(relpaths)
        is_val[lowest] = True

    def join(parts: list[bytes]) -> np.ndarray:
        return np.frombuffer(bytes([SEP]).join(parts), dtype=np.uint8)  # a read-only view: safe to share from cache

    return Corpus(
        root=str(root),
        train=join([c for (_, c), v in zip(files, is_val) if not v]),
        val=join([c for (_, c), v in zip(files, is_val) if v]),
        fingerprint=fingerprint(files),
        train_files=tuple(p for p, v in zip(relpaths, is_val) if not v),
        val_files=tuple(p for p, v in zip(relpaths, is_val) if v),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Batches.

def get_batch(data: np.ndarray, batch_size: int, n_ctx: int, seed: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bytes -> x, y: (B, T) int64 windows at random offsets, y = x shifted left by one (next-token targets).

    The offsets come from `default_rng([seed, step])`, a pure function of (seed, step): a run resumed at step s sees
    exactly the batches an uninterrupted run would have seen, with no generator state to save.
    """
    _check_window(data, n_ctx)
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, data.size - n_ctx, size=batch_size)        # last valid start leaves room for y's byte
    return _windows(data, starts, n_ctx)


def eval_batches(data: np.ndarray, batch_size: int, n_ctx: int, n_batches: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n_batches` (x, y) pairs at evenly spaced offsets: deterministic, and spread over every part of `data` rather
    than a few random spots, so validation loss is comparable between runs and checkpoints."""
    _check_window(data, n_ctx)
    starts = np.linspace(0, data.size - n_ctx - 1, batch_size * n_batches).astype(np.int64)
    return [_windows(data, s, n_ctx) for s in starts.reshape(n_batches, batch_size)]


def _windows(data: np.ndarray, starts: np.ndarray, n_ctx: int) -> tuple[np.ndarray, np.ndarray]:
    # (B,) starts -> (B, T+1) bytes -> x (B, T), y (B, T)
    chunk = data[starts[:, None] + np.arange(n_ctx + 1)].astype(np.int64)
    return chunk[:, :-1], chunk[:, 1:]


def _check_window(data: np.ndarray, n_ctx: int) -> None:
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D array of token ids, got shape {data.shape}")
    if data.size < n_ctx + 1:
        raise ValueError(f"data has {data.size} tokens; a window of n_ctx={n_ctx} needs at least {n_ctx + 1}")
