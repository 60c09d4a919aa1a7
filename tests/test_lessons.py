"""The lessons run top to bottom, and are committed without outputs.

Every `lessons/*.ipynb` is executed in a fresh `python3` kernel with MINISPARSE_LESSON_FAST=1 (tiny models, well
under a minute each on a 2-core CPU); any cell error fails the test with the cell's traceback. The exercise cells run
their reference solutions, so every check in them must pass. All notebooks share one temporary model cache
(MINISPARSE_CACHE), so a model two lessons use is trained once per test session, and never into the user's own cache.
Skipped when the lessons extra (nbclient, nbformat, ipykernel) is not installed, so the core suite does not need
Jupyter.

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


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("minisparse-cache")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing "
                       f"(e.g. `jupyter nbconvert --clear-output --inplace {path.name}` or Jupyter's "
                       f"'Clear All Outputs')")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_runs_top_to_bottom(path, monkeypatch, model_cache):
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.skip(f"no {KERNEL!r} Jupyter kernel found (install ipykernel in this environment)")
    # The kernel inherits this environment. One BLAS thread: the lessons' matrices are tiny, and on a shared CPU
    # OpenBLAS threads spinning against each other made a training step ~15x slower.
    monkeypatch.setenv("MINISPARSE_LESSON_FAST", "1")
    monkeypatch.setenv("MINISPARSE_CACHE", str(model_cache))
    monkeypatch.delenv("MINISPARSE_RUNS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(LESSONS)}})
    client.execute()   # raises CellExecutionError, naming the cell and its traceback, on the first error


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_is_checked_and_can_be_blanked(path, tmp_path):
    from minisparse.lessons.exercises import blank_notebook

    nb = nbformat.read(path, as_version=4)
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    exercises = [src for src in sources if "# BEGIN SOLUTION" in src]
    assert exercises, f"{path.name} has no exercise (a code cell with a '# BEGIN SOLUTION' block)"
    assert any("check_" in src for src in sources), f"{path.name} never calls a check from minisparse.lessons.exercises"
    assert blank_notebook(path, tmp_path / path.name) == len(exercises)
    blank = nbformat.read(tmp_path / path.name, as_version=4)
    assert not any("SOLUTION" in cell.source for cell in blank.cells if cell.cell_type == "code")
