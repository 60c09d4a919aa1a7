"""The lessons run top to bottom, and are committed without outputs.

Every `lessons/*.ipynb` is executed in a fresh `python3` kernel with MINISPARSE_LESSON_FAST=1 (smaller inputs, well
under a minute each on a 2-core CPU); any cell error fails the test with the cell's traceback. Skipped when the lessons
extra (nbclient, nbformat, ipykernel) is not installed, so the core suite does not need Jupyter.

The kernel is ipykernel's built-in "python3" spec, whose command is `python -m ipykernel_launcher`; jupyter_client
replaces a bare `python` with `sys.executable`, so the kernel runs in the same environment as pytest and no
`ipykernel install --user` is needed.
"""

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
KERNEL = "python3"


def test_the_lessons_readme_lists_exactly_the_lessons_there_are():
    listed = re.findall(r"^\| `(\w+\.ipynb)` \|", (LESSONS / "README.md").read_text(), flags=re.M)
    assert listed, f"no lesson table in {LESSONS / 'README.md'}"
    assert listed == [p.name for p in NOTEBOOKS], "lessons/README.md's table and the notebooks differ"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing "
                       f"(e.g. `jupyter nbconvert --clear-output --inplace {path.name}` or Jupyter's "
                       f"'Clear All Outputs')")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_runs_top_to_bottom(path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.skip(f"no {KERNEL!r} Jupyter kernel found (install ipykernel in this environment)")
    # The kernel inherits this environment. One BLAS thread: the lessons' matrices are tiny, and on a shared CPU
    # OpenBLAS threads spinning against each other made a training step ~15x slower.
    monkeypatch.setenv("MINISPARSE_LESSON_FAST", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(LESSONS)}})
    client.execute()   # raises CellExecutionError, naming the cell and its traceback, on the first error
