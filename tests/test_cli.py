"""The command line: a tiny end-to-end run, and bad input refused with a message instead of a traceback."""

import re

import pytest

from minisparse.cli import main


def test_train_then_sample_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--steps", "20", "--out", str(out), "--backend", "numpy", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "bits per byte" in printed and "sample:" in printed
    assert (out / "model.safetensors").exists() and (out / "optimizer.safetensors").exists()
    assert main(["sample", "--checkpoint", str(out / "model.safetensors"), "--prompt", "import ", "--bytes", "8"]) == 0
    assert capsys.readouterr().out.startswith("import ")
    assert main(args) == 2, "training into an existing run without --resume must be refused"
    assert "pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0


@pytest.mark.parametrize("argv, words", [
    (["train", "--preset", "tiny", "--density", "0"], "weight_density must be in (0, 1]"),
    (["train", "--preset", "tiny", "--afrac", "2"], "afrac must be in (0, 1]"),
    (["sample", "--checkpoint", "does/not/exist.safetensors"], "no checkpoint at does/not/exist.safetensors"),
    (["prune", "--task", "no_such_task", "--checkpoint", "x.safetensors"], "no_such_task"),
])
def test_bad_input_is_refused_with_a_message(tmp_path, capsys, argv, words):
    if argv[0] == "prune":  # the task name is checked, not just the file
        main(["train", "--preset", "tiny", "--steps", "2", "--out", str(tmp_path), "--no-progress"])
        argv = argv[:-1] + [str(tmp_path / "model.safetensors")]
        capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    if argv[0] == "prune":
        assert "single_double_quote" in err, "an unknown task's error lists the known ones"


def test_tour_tells_the_three_sparsities_and_draws_a_circuit(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--steps", "10", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["tour", "--checkpoint", str(tmp_path / "run" / "model.safetensors"), "--out", str(tmp_path / "tour"),
                 "--task", "single_double_quote"]) == 0
    printed = capsys.readouterr().out
    for section in ("Weight sparsity", "Activation sparsity", "Circuit sparsity"):
        assert section in printed
    counts = re.search(r"(\d+) edges; a dense model with the same nodes would have (\d+)", printed)
    sparse, dense = map(int, counts.groups())
    assert sparse <= dense, "counting every entry between the same nodes can only add edges"
    assert (tmp_path / "tour" / "circuit-single_double_quote.png").stat().st_size > 0
    assert (tmp_path / "tour" / "circuit-single_double_quote.json").exists()
