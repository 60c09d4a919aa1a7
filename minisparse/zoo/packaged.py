"""The models shipped with minisparse: trained models inside the package, loaded by name, with no training and no
download.

    from minisparse.zoo import shipped, provenance
    model = shipped("1in16-s0@3000")        # the 1/16 model of `minisparse reproduce`, seed 0, at its last step
    provenance("1in16-s0@3000")["task_loss"]   # its held-out task losses, as recorded when it was shipped

A model's name is its `minisparse reproduce` point: "<run>@<step>". Its file is a checkpoint (stored compactly where a
matrix is mostly zeros, see `minisparse.checkpoint`) in `files/`, read by the same strict loader as any other, after
its sha256 is checked against `files/manifest.json`. The manifest also says how each model was made (the command and
the commit), its recorded validation and held-out task losses, and its validation curve. `python -m minisparse.zoo`
lists the models; `files/README.md` says how every file is regenerated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

from ..checkpoint import CheckpointError, load, read_checkpoint, read_configs, write_checkpoint
from ..reproduce.layout import Layout
from ..reproduce.plan import Run
from ..rundir import MODEL_FILE, write_json_atomic
from .cache import metrics

FILES = Path(__file__).parent / "files"
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, dict]:
    """{name: entry} of every shipped model, in the order shipped."""
    path = FILES / MANIFEST
    if not path.is_file():
        return {}
    return {entry["name"]: entry for entry in json.loads(path.read_text(encoding="utf-8"))["models"]}


def shipped_names() -> list[str]:
    return list(manifest())


def provenance(name: str) -> dict:
    """A shipped model's manifest entry: its file and digest, how it was made, its recorded losses and curve."""
    if name not in manifest():
        raise KeyError(f"no shipped model {name!r}; the zoo holds {shipped_names()}")
    return manifest()[name]


def shipped_path(name: str) -> Path:
    """The file of a shipped model, after checking it is the one the manifest recorded."""
    entry = provenance(name)
    path = FILES / entry["file"]
    if not path.is_file() or _sha256(path) != entry["sha256"]:
        raise CheckpointError(f"the shipped file {path} is missing or differs from the one recorded in the zoo's "
                              "manifest: reinstall minisparse")
    return path


def shipped(name: str, backend: str = "numpy"):
    """A shipped model as a `backend` ("numpy" or "mlx") GPT."""
    return load(shipped_path(name), backend=backend)


def unpack(out) -> list[Path]:
    """Lay the shipped models out as `minisparse reproduce` keeps its models (`out/models/<run>/`), so that
    `minisparse reproduce --reuse --seeds 0 --out out` rebuilds, pruning only, the 1/16 model's comparison with its
    matched checkpoint (the headline pair); the other densities are matched among the two shipped dense checkpoints."""
    written = []
    for name, entry in manifest().items():
        layout = Layout(out, entry["step"])            # a final model is also the run's model file
        targets = [layout.checkpoint(name)] + ([layout.run_dir(name.split("@")[0]) / MODEL_FILE] if entry["final"]
                                               else [])
        source = shipped_path(name)                    # checked against the manifest once
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
    return written


def build(reproduce_out, *, command: str, commit: str, files: Path = FILES) -> dict:
    """Ship the first seed of a finished `minisparse reproduce` folder: its final model at every density, and the
    dense checkpoint matched to its headline-density model, with their comparison. Each checkpoint is rewritten
    compactly into `files`, and the manifest records its provenance, its recorded losses and its validation curve
    (results.json, the run's metrics log)."""
    results = json.loads((Path(reproduce_out) / "results.json").read_text(encoding="utf-8"))
    layout = Layout(reproduce_out, results["preset"]["train"]["steps"])
    experiment, seed = results["experiment"], results["experiment"]["seeds"][0]
    finals = [layout.final_point(Run(density, seed)) for density in experiment["densities"]]
    sparse_run = Run(experiment["headline_density"], seed).name
    matched = {results["matched"][sparse_run]: f"{sparse_run}@{layout.steps}"}
    comparison = next(c["matched"] for c in results["comparisons"] if c["run"] == sparse_run)
    files.mkdir(parents=True, exist_ok=True)
    entries = []
    for point in dict.fromkeys([*finals, *matched]):    # a matched checkpoint may also be a final one: shipped once
        run, step = point.split("@")
        config, params, meta = read_checkpoint(layout.checkpoint(point))
        train_config = read_configs(layout.checkpoint(point))[1]
        target = files / f"{point.replace('@', '-')}.safetensors"
        write_checkpoint(config, params, target, step=int(step), train_config=train_config, compact=True,
                         metadata=meta)
        evals = results["evaluations"][point]
        entries.append({
            "name": point, "file": target.name, "sha256": _sha256(target), "bytes": target.stat().st_size,
            "density": train_config.weight_density, "seed": train_config.seed, "step": int(step),
            "final": int(step) == train_config.steps, "matched_to": matched.get(point),
            "made_by": {"command": command, "commit": commit},
            "val_loss": evals["val_loss"], "task_loss": evals["task_loss"], "task_loss_se": evals["task_loss_se"],
            "val_curve": [[r["step"], r["val_loss"]] for r in metrics(layout.run_dir(run))
                          if "val_loss" in r and r["step"] <= int(step)],
            **({"comparison": comparison} if point in matched else {}),
        })
    write_json_atomic(files / MANIFEST, {"models": entries})
    manifest.cache_clear()
    return {e["name"]: e for e in entries}
