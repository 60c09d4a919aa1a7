"""The lessons run top to bottom, the notebooks a learner opens are the exercise versions of the solutions, and
nothing is committed with outputs.

Every `lessons/solutions/*.ipynb` is executed in a fresh `python3` kernel with MINISPARSE_LESSON_FAST=1 (tiny models,
well under a minute each on a 2-core CPU); any cell error fails the test with the cell's traceback. The exercise cells
there hold the reference solutions, so every check in them must pass. All notebooks share one temporary model cache
(MINISPARSE_CACHE), so a model two lessons use is trained once per test session, and never into the user's own cache.
The default mode (the shipped models, the numbers the prose is about) is `python -m minisparse.lessons check`.

The kernel is ipykernel's built-in "python3" spec, whose command is `python -m ipykernel_launcher`; jupyter_client
replaces a bare `python` with `sys.executable`, so the kernel runs in the same environment as pytest and no
`ipykernel install --user` is needed.
"""

import re
from pathlib import Path

import nbclient
import nbformat
import pytest

from minisparse.lessons.blank import blank_text
from minisparse.lessons.run import KERNEL, run_notebook

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
SOLUTIONS = sorted((LESSONS / "solutions").glob("*.ipynb"))
EXERCISES = sorted(LESSONS.glob("*.ipynb"))


def test_the_lessons_readme_lists_exactly_the_lessons_there_are():
    listed = re.findall(r"^\| `(\w+\.ipynb)` \|", (LESSONS / "README.md").read_text(), flags=re.M)
    assert listed, f"no lesson table in {LESSONS / 'README.md'}"
    assert listed == [p.name for p in EXERCISES], "lessons/README.md's table and the notebooks differ"


def test_every_solution_notebook_has_its_exercise_version_up_to_date():
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]
    stale = [p.name for p in SOLUTIONS if (LESSONS / p.name).read_text(encoding="utf-8") != blank_text(p)]
    assert not stale, (f"{stale}: the exercise versions differ from their solutions; regenerate them with "
                       "`python -m minisparse.lessons.exercises blank lessons/solutions lessons`")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("minisparse-cache")


@pytest.mark.parametrize("path", SOLUTIONS + EXERCISES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing "
                       f"(e.g. `jupyter nbconvert --clear-output --inplace {path.name}` or Jupyter's "
                       f"'Clear All Outputs')")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_lesson_runs_top_to_bottom(path, model_cache):
    from jupyter_client.kernelspec import KernelSpecManager

    assert KERNEL in KernelSpecManager().find_kernel_specs(), f"no {KERNEL!r} Jupyter kernel (pip install ipykernel)"
    run_notebook(path, fast=True, cache=model_cache)   # raises CellExecutionError, with the cell, on the first error


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_every_exercise_is_checked(path):
    sources = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    assert any("# BEGIN SOLUTION" in src for src in sources), f"{path.name} has no exercise"
    assert any("check_" in src for src in sources), f"{path.name} never calls a check from minisparse.lessons.exercises"
    exercise = nbformat.read(LESSONS / path.name, as_version=4).cells
    assert not any("SOLUTION" in cell.source for cell in exercise if cell.cell_type == "code")


def test_a_stub_left_in_an_exercise_version_fails_loudly(tmp_path, model_cache):
    # the learner's notebook, run as is, stops at the first exercise with the stub's message
    first = next(p for p in EXERCISES)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="your code here"):
        run_notebook(first, fast=True, cache=model_cache)


# A measured number is printed by the cell that measures it, never typed into the prose, so what a learner reads is
# what their notebook computed from the shipped models. Settings and thresholds go in backticks (`0.3`); links and
# math are not prose.
_MEASURED = re.compile(r"(?<![\w./])\d+(?:\.\d+)?\s?(?:%|×)|(?<![\w./])\d+\.\d+(?![\w/])")
_NOT_PROSE = re.compile(r"`[^`]*`|\$[^$]*\$|\]\([^)]*\)|<[^>]*>")


def measured_numbers_in_prose(source: str) -> list[str]:
    return _MEASURED.findall(_NOT_PROSE.sub("", source))


def test_the_number_rule_catches_typed_measurements_and_lets_settings_pass():
    typed = "the circuit keeps 35 nodes, 12.5% of them, 8.9× fewer edges, loss 0.148"
    assert measured_numbers_in_prose(typed) == ["12.5%", "8.9×", "0.148"]
    settings = "solved below `0.3`; density 1/16; see [the paper](https://arxiv.org/2511.1)"
    assert measured_numbers_in_prose(settings) == []


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_the_prose_types_no_measured_number(path):
    cells = nbformat.read(path, as_version=4).cells
    typed = {i: found for i, cell in enumerate(cells) if cell.cell_type == "markdown"
             and (found := measured_numbers_in_prose(cell.source))}
    assert not typed, (f"{path.name}: markdown cells {typed} type measured numbers; print them from the cell that "
                       "computes them (or put a setting in backticks)")
