"""Blank copies of the lessons, to solve from scratch: every `# BEGIN SOLUTION` … `# END SOLUTION` block of a code
cell becomes `raise NotImplementedError`. The command is `python -m minisparse.lessons.exercises blank lessons/`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

__all__ = ["blank_source", "blank_notebook", "main"]


_BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")


def blank_source(source: str) -> str:
    """A cell's source with every `# BEGIN SOLUTION` … `# END SOLUTION` block replaced by `raise NotImplementedError`
    at the block's indentation."""
    out, skipping = [], False
    for line in source.splitlines(keepends=True):
        if not skipping and (m := _BEGIN.match(line)):
            skipping = True
            out.append(f"{m.group(1)}raise NotImplementedError(\"your code here\")\n")
        elif skipping and _END.match(line):
            skipping = False
        elif not skipping:
            out.append(line)
    if skipping:
        raise ValueError("a '# BEGIN SOLUTION' has no matching '# END SOLUTION'")
    return "".join(out)


def blank_notebook(path, out_path) -> int:
    """Write a copy of the notebook at `path` to `out_path` with every solution blanked; returns how many cells
    changed. The notebook is read as plain JSON (no Jupyter needed)."""
    nb = json.loads(Path(path).read_text())
    changed = 0
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new = blank_source(src)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
            changed += 1
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "blank":
        raise SystemExit("usage: python -m minisparse.lessons.exercises blank LESSONS_DIR   "
                         "(writes LESSONS_DIR/blank/*.ipynb with the solutions removed)")
    src = Path(argv[1])
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks (*.ipynb) in {src}")
    for nb in notebooks:
        n = blank_notebook(nb, src / "blank" / nb.name)
        print(f"{src / 'blank' / nb.name}: {n} exercise cell(s) blanked")

