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

from ..checkpoint import CheckpointError, load, read_checkpoint, write_checkpoint
from ..circuits.scorecard import SOLVED
from ..config import TrainConfig
from ..params import site_sizes
from ..reproduce.summary import closest_loss, compare
from ..rundir import METRICS_FILE, MODEL_FILE, kept_checkpoint_file, write_json_atomic

FILES = Path(__file__).parent / "files"
MANIFEST = "manifest.json"
_OWN_METADATA = ("format", "format_version", "config", "step", "train_config", "sha256", "compact")


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
    `minisparse reproduce --reuse --seeds 0 --out out` rebuilds the table they were shipped with, pruning only."""
    written = []
    for name, entry in manifest().items():
        run, step = name.split("@")
        run_dir = Path(out) / "models" / run
        run_dir.mkdir(parents=True, exist_ok=True)
        files = [kept_checkpoint_file(int(step))] + ([MODEL_FILE] if entry["final"] else [])
        for file in files:
            shutil.copyfile(shipped_path(name), run_dir / file)
            written.append(run_dir / file)
    return written


def _curve(run_dir: Path, until: int) -> list[list[float]]:
    """[[step, validation loss], ...] of a run up to `until`, from its metrics log."""
    curve = {}
    with open(run_dir / METRICS_FILE, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if "val_loss" in record and record["step"] <= until:
                curve[record["step"]] = record["val_loss"]
    return [[step, curve[step]] for step in sorted(curve)]


def matched_point(reproduce_out, sparse_point: str) -> str:
    """The kept dense checkpoint of the same seed whose validation loss is closest to `sparse_point`'s, as
    `minisparse reproduce` matches them, from the folder's evaluations."""
    evals = Path(reproduce_out) / "evals"
    val = {p.stem: json.loads(p.read_text(encoding="utf-8"))["val_loss"] for p in evals.glob("*.json")}
    seed = sparse_point.split("@")[0].split("-")[-1]
    return closest_loss(val[sparse_point], {p: v for p, v in val.items() if p.startswith(f"dense-{seed}@")})


def headline_comparison(reproduce_out, dense_point: str, sparse_point: str) -> dict:
    """`minisparse reproduce`'s comparison of two points (`reproduce.summary.compare`): the tasks both solve, which of
    them count (a real sparse circuit, a dense one that reached its target, neither the whole model) and their edges,
    from the folder's evaluations and scorecards; refused while a scorecard it needs is missing."""
    out = Path(reproduce_out)
    evals = {p: json.loads((out / "evals" / f"{p}.json").read_text(encoding="utf-8")) for p in (dense_point,
                                                                                                 sparse_point)}
    cards = {p: {c.stem: json.loads(c.read_text(encoding="utf-8")) for c in (out / "circuits" / p).glob("*.json")
                 if "." not in c.stem} for p in evals}
    tasks = list(evals[sparse_point]["task_loss"])
    both = [t for t in tasks if max(evals[p]["task_loss"][t] for p in evals) <= SOLVED]
    missing = [f"{p}/{t}" for p in evals for t in both if t not in cards[p]]
    if missing:
        raise FileNotFoundError(f"{out}: no scorecard yet for {missing}; let `minisparse reproduce` prune first")
    config = read_checkpoint(out / "models" / sparse_point.split("@")[0] / MODEL_FILE)[0]
    return compare(evals, cards, dense_point, sparse_point, tasks, SOLVED, sum(site_sizes(config).values()))


def build(reproduce_out, finals: list[str], matched_to: str, *, command: str, commit: str, files: Path = FILES) -> dict:
    """Ship the final models `finals` ("<run>@<step>") of a `minisparse reproduce` folder, and the dense checkpoint
    matched to `matched_to` with their comparison (`headline_comparison`, so the folder must have pruned that pair):
    each checkpoint rewritten compactly into `files`, and the manifest with its provenance, its recorded losses
    (`reproduce_out/evals`) and its validation curve."""
    out = Path(reproduce_out)
    matched = {matched_point(out, matched_to): matched_to}
    comparison = headline_comparison(out, *matched, matched_to)
    files.mkdir(parents=True, exist_ok=True)
    entries = []
    for point in [*finals, *matched]:
        run, step = point.split("@")
        config, params, meta = read_checkpoint(out / "models" / run / kept_checkpoint_file(int(step)))
        train_config = TrainConfig.from_dict(json.loads(meta["train_config"]))
        target = files / f"{point.replace('@', '-')}.safetensors"
        write_checkpoint(config, params, target, step=int(step), train_config=train_config, compact=True,
                         metadata={k: v for k, v in meta.items() if k not in _OWN_METADATA})
        evals = json.loads((out / "evals" / f"{point}.json").read_text(encoding="utf-8"))
        entries.append({
            "name": point, "file": target.name, "sha256": _sha256(target), "bytes": target.stat().st_size,
            "density": train_config.weight_density, "seed": train_config.seed, "step": int(step),
            "final": int(step) == train_config.steps, "matched_to": matched.get(point),
            "made_by": {"command": command, "commit": commit},
            "val_loss": evals["val_loss"], "task_loss": evals["task_loss"], "task_loss_se": evals["task_loss_se"],
            "val_curve": _curve(out / "models" / run, int(step)),
            **({"comparison": comparison} if point in matched else {}),
        })
    write_json_atomic(files / MANIFEST, {"models": entries})
    manifest.cache_clear()
    return {e["name"]: e for e in entries}
