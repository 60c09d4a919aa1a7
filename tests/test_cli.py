"""The command line: a tiny end-to-end run, and bad input refused with a message instead of a traceback."""


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


def test_tour_tells_the_three_sparsities_compares_a_dense_circuit_and_tells_the_truth(tmp_path, capsys):
    for name, density in (("sparse", "0.0625"), ("dense", "1")):
        assert main(["train", "--preset", "tiny", "--steps", "10", "--density", density, "--out", str(tmp_path / name),
                     "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["tour", "--checkpoint", str(tmp_path / "sparse" / "model.safetensors"), "--dense-checkpoint",
                 str(tmp_path / "dense" / "model.safetensors"), "--out", str(tmp_path / "tour"),
                 "--task", "single_double_quote"]) == 0
    printed = capsys.readouterr().out
    for section in ("Weight sparsity", "Activation sparsity", "Circuit sparsity", "What this showed"):
        assert section in printed
    # tiny's d_model is 32: 4 weights per neuron is 12.5%, above the 1/16 target, and the tour says so
    assert "min_per_neuron=4" in printed and "12.5%" in printed
    # a model trained for 10 steps does no task: the tour must not claim a circuit
    assert "did NOT pass the scorecard" in printed and "full model does not solve the task" in printed
    for suffix in ("", "-dense"):
        assert (tmp_path / "tour" / f"circuit-single_double_quote{suffix}.json").exists()
