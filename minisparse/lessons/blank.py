"""The exercise versions of the lessons: every `# BEGIN SOLUTION` … `# END SOLUTION` block of a code cell of a solution
notebook (`lessons/solutions/`) becomes `raise NotImplementedError`. `lessons/*.ipynb`, what a learner opens, are
written this way: `python -m minisparse.lessons.exercises blank lessons/solutions lessons` (a test checks that they
are up to date)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from minisparse.rundir import write_text_atomic

__all__ = ["blank_source", "blank_text", "main"]


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


def blank_text(path) -> str:
    """The exercise version of the notebook at `path`, as the text of a notebook file (read as plain JSON, so no
    Jupyter is needed)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = blank_source(src).splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "blank":
        raise SystemExit("usage: python -m minisparse.lessons.exercises blank SOLUTIONS_DIR OUT_DIR   "
                         "(writes OUT_DIR/*.ipynb, the solutions replaced by stubs)")
    src, out = Path(argv[1]), Path(argv[2])
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks (*.ipynb) in {src}")
    if not out.is_dir():
        raise SystemExit(f"{out} is not a folder")
    for nb in notebooks:
        text = blank_text(nb)
        n = sum("# BEGIN SOLUTION" in line for line in nb.read_text(encoding="utf-8").splitlines())
        write_text_atomic(out / nb.name, text)
        print(f"{out / nb.name}: {n} exercise(s) to solve")
