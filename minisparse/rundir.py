"""A run directory: its file names, its one-writer lock, and the atomic writes everything in it goes through.

    model.safetensors              the latest checkpoint: weights, configs, step (what `--resume` trusts)
    optimizer-<step>.safetensors   Adam's moments at that step; the one matching the model's step is used
    model-<step>.safetensors       checkpoints kept along training (`keep_checkpoints`), weights only
    metrics.jsonl                  one JSON line per step
    .lock                          held by the one process writing here

A checkpoint is a pair written in this order: the optimizer file named by its step, then the model file, then the
older optimizer files are removed. A process killed at any instant therefore leaves a model file whose step has its
optimizer file beside it, and the run resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

MODEL_FILE, METRICS_FILE, LOCK_FILE = "model.safetensors", "metrics.jsonl", ".lock"
LEGACY_OPTIMIZER_FILE = "optimizer.safetensors"     # runs written before the optimizer file carried its step


class RunLocked(RuntimeError):
    """Another process is writing into the run directory."""


def cache_dir() -> Path:
    """Where minisparse caches what it made once (trained models, drawn task text): $MINISPARSE_CACHE, else
    ~/.cache/minisparse."""
    return Path(os.environ.get("MINISPARSE_CACHE") or Path.home() / ".cache" / "minisparse")


def optimizer_file(step: int) -> str:
    return f"optimizer-{step:06d}.safetensors"


def kept_checkpoint_file(step: int) -> str:
    """The name under which training keeps the checkpoint of `step` (`keep_checkpoints=True`)."""
    return f"model-{step:06d}.safetensors"


def step_of(path: Path, prefix: str) -> int | None:
    """The step in a name `<prefix>-<step>.safetensors`, or None for any other name."""
    stem = path.name.removesuffix(".safetensors")
    head, _, digits = stem.rpartition("-")
    return int(digits) if head == prefix and digits.isdigit() and path.name.endswith(".safetensors") else None


def kept_checkpoints(run_dir: Path) -> dict[int, Path]:
    """{step: file} of the checkpoints a run kept along training, by step."""
    found = {step_of(p, "model"): p for p in Path(run_dir).glob("model-*.safetensors")}
    return dict(sorted((s, p) for s, p in found.items() if s is not None))


def optimizer_path(run_dir: Path, step: int) -> Path:
    """The optimizer file for the model checkpoint of `step` (a run written before step-named files has one file)."""
    path = Path(run_dir) / optimizer_file(step)
    legacy = Path(run_dir) / LEGACY_OPTIMIZER_FILE
    return legacy if not path.exists() and legacy.exists() else path


def remove_optimizer_files_except(keep: Path) -> None:
    """Remove every optimizer file beside `keep` but `keep`: those of older checkpoints."""
    for p in Path(keep).parent.glob("optimizer*.safetensors"):
        if p.name != Path(keep).name:
            p.unlink(missing_ok=True)


def replace_atomically(path: Path, write) -> Path:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it onto `path`: a reader sees the old file
    or the new one, never half of one. The temporary file is removed if `write` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")       # remove_stale_temps knows this name
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=1))


def remove_stale_temps(run_dir: Path) -> None:
    """Remove the temporary files that killed writers left (`.<name>.tmp-<pid>`, the pid no longer running)."""
    for p in Path(run_dir).glob(".*.tmp-*"):
        if p.is_file() and not _running(p.name.rpartition("-")[2]):
            p.unlink(missing_ok=True)


def _running(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, someone else's
        return True
    return True


@contextlib.contextmanager
def locked(run_dir: Path):
    """Hold the run directory's exclusive lock for the block; refuse at once with `RunLocked` if another process
    holds it. The lock is the kernel's (flock), so it is released when its holder exits, however it exits."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:          # no flock (Windows): one writer per directory is then the user's to keep
        yield
        return
    with open(run_dir / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunLocked(f"{run_dir} is in use by {holder}; wait for it to finish, or choose another "
                            "output directory") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
