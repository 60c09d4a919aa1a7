"""What `pip install` brings, read from pyproject.toml for each platform: MLX with minisparse on Apple silicon (so
`--backend auto` can use the GPU), optional on Linux, and everything the lessons import with the `lessons` extra."""

import ast
import functools
import json
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")   # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
APPLE_SILICON = {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}


def installs(extras: tuple[str, ...], env: dict) -> set[str]:
    """Normalised names of the distributions `pip install minisparse[extras]` brings on `env`: the requirements
    whose markers hold there, following minisparse's own extras, and the dependencies of those that are installed
    here (for what a requirement brings in turn, e.g. ipython through ipykernel)."""
    todo = [(r, "") for r in PROJECT["dependencies"]]
    todo += [(r, extra) for extra in extras for r in PROJECT["optional-dependencies"][extra]]
    found: set[str] = set()
    while todo:
        text, extra = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = req.name.lower().replace("_", "-")
        if name == "minisparse":
            todo += [(r, x) for x in req.extras for r in PROJECT["optional-dependencies"][x]]
            continue
        if name in found:
            continue
        found.add(name)
        names = {name} | {f"{name}-{x}" for x in req.extras}   # mlx[cpu] is the mlx-cpu distribution
        for dist in names:
            try:
                todo += [(r, "") for r in metadata.requires(dist) or []]
            except metadata.PackageNotFoundError:
                pass
    return found


def lesson_imports() -> set[str]:
    """Top-level modules the lessons import (`minisparse.mlx` counts as mlx), standard library excluded."""
    modules = set()
    for path in sorted((ROOT / "lessons").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                               if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                for name in names:
                    modules.add("mlx" if name.startswith("minisparse.mlx") else name.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "minisparse"}


PROVIDES = functools.cache(metadata.packages_distributions)   # module -> distributions; slow to build, built once


def test_mlx_comes_with_minisparse_on_apple_silicon_only():
    assert "mlx" in installs((), APPLE_SILICON), "on a Mac, `pip install minisparse` must bring the GPU backend"
    assert not {"mlx", "mlx-cpu"} & installs((), LINUX), "on Linux MLX is slow: it stays optional"
    assert "mlx" in installs(("mlx",), LINUX)


@pytest.mark.parametrize("env", [APPLE_SILICON, LINUX], ids=["apple-silicon", "linux"])
def test_the_lessons_extra_installs_everything_the_lessons_import(env):
    provides = PROVIDES()
    needed = lesson_imports()
    assert {"numpy", "matplotlib"} <= needed, f"the lessons' imports were not found: {needed}"
    missing = {}
    for module in needed:
        dists = {d.lower() for d in provides.get(module, [module])}
        if not dists & installs(("lessons",), env):
            missing[module] = sorted(dists)
    assert not missing, f"`pip install minisparse[lessons]` does not bring what the lessons import: {missing}"
