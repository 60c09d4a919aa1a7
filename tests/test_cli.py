"""The command line: what each command prints and writes, and bad input refused with one line naming the problem."""

import json
import math
import re

import pytest

from minisparse import load, save
from minisparse.checkpoint import read_checkpoint
from minisparse.circuits import Circuit
from minisparse.cli import main
from minisparse.config import preset
from minisparse.numpy import GPT
from minisparse.sample import generate_bytes, printable

TINY = ["--preset", "tiny", "--backend", "numpy", "--no-progress"]


def one_error_line(err: str, command: str) -> str:
    """The single line a refusal prints, checked to be exactly one line, in the CLI's form, with no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines and lines[-1].startswith(f"minisparse {command}: error: "), err
    assert sum("error" in line for line in lines) == 1, err       # before it, at most the backend note of `train`
    return lines[-1]


def test_train_then_sample_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", *TINY, "--steps", "20", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 21))
    val = log[-1]["val_loss"]
    assert (f"step 20: validation loss {val / math.log(2):.3f} bits per byte ({val:.3f} nats); "
            f"checkpoint {out / 'model.safetensors'}\n") in printed
    model = load(out / "model.safetensors")
    sample = printable(b"def " + generate_bytes(model, "def ", n_bytes=300, temperature=0.6, seed=0))
    assert printed.endswith("sample:\n" + sample + "\n")

    assert main(["sample", "--checkpoint", str(out / "model.safetensors"), "--prompt", "import ", "--bytes", "8",
                 "--seed", "3"]) == 0
    continuation = generate_bytes(model, "import ", n_bytes=8, temperature=0.6, seed=3)
    assert capsys.readouterr().out == printable(b"import " + continuation) + "\n"

    assert main(args) == 2, "training into an existing run without --resume must be refused"
    assert "--resume" in one_error_line(capsys.readouterr().err, "train")
    assert main(args + ["--resume"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 20, "a finished run resumed adds no steps"


def test_train_takes_the_anneal_shape_and_a_bad_one_is_refused(tmp_path, capsys):
    out = tmp_path / "geo"
    assert main(["train", *TINY, "--steps", "4", "--density", "0.25", "--anneal", "geometric", "--out", str(out)]) == 0
    assert json.loads(read_checkpoint(out / "model.safetensors")[2]["train_config"])["anneal_shape"] == "geometric"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--anneal", "cosine", "--out", str(tmp_path / "x")])
    assert "'cosine'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory):
    """A freshly initialised model: its samples are close to uniform over all 256 bytes."""
    path = tmp_path_factory.mktemp("untrained") / "model.safetensors"
    save(GPT(preset("tiny")[0], seed=0), path)
    return path


def test_sample_shows_unprintable_bytes_escaped_and_raw_keeps_them(untrained_checkpoint, capsysbinary):
    argv = ["sample", "--checkpoint", str(untrained_checkpoint), "--prompt", "x", "--bytes", "120",
            "--temperature", "1"]
    raw = b"x" + generate_bytes(load(untrained_checkpoint), "x", n_bytes=120, temperature=1.0, seed=0)
    assert any(b < 32 and b not in b"\n\t" for b in raw), "the test needs control bytes in the sample"
    assert main(argv) == 0
    shown = capsysbinary.readouterr().out.decode("utf-8")
    assert all(c.isprintable() or c in "\n\t" for c in shown), [c for c in shown if not c.isprintable()][:5]
    assert re.search(r"\\x[0-9a-f]{2}", shown), "control bytes are shown as \\xNN"
    assert shown == printable(raw) + "\n"
    assert main(argv + ["--raw"]) == 0
    assert capsysbinary.readouterr().out == raw + b"\n"


def test_printable_escapes_exactly_what_a_terminal_should_not_see():
    assert printable("def f():\n\treturn 'é'".encode()) == "def f():\n\treturn 'é'"
    assert printable(b"a\x00b\x07c\x1b[31m\r") == "a\\x00b\\x07c\\x1b[31m\\r"
    assert printable(b"ok \xff\xfe \xe2\x82") == "ok \\xff\\xfe \\xe2\\x82"        # broken UTF-8, byte by byte
    assert printable("zero\u200bwidth".encode()) == "zero\\u200bwidth"


def test_resume_with_nothing_to_resume_says_so_and_starts_afresh(tmp_path, capsys):
    out = tmp_path / "fresh"
    assert main(["train", *TINY, "--steps", "2", "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"--resume: no checkpoint in {out} to resume; starting a fresh run" in err
    assert load(out / "model.safetensors") is not None


@pytest.mark.parametrize("argv, facts", [
    (["train", "--preset", "tiny", "--density", "0"], ["weight_density", "(0, 1]", "0"]),
    (["train", "--preset", "tiny", "--afrac", "2"], ["afrac", "(0, 1]", "2"]),
    (["sample", "--checkpoint", "does/not/exist.safetensors"], ["no checkpoint at", "does/not/exist.safetensors"]),
])
def test_bad_input_is_refused_with_a_line_naming_it(capsys, argv, facts):
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err, argv[0])
    assert all(fact in line for fact in facts), line


def test_an_unknown_task_is_named_without_quote_marks_and_the_known_ones_listed(untrained_checkpoint, capsys):
    assert main(["prune", "--task", "no_such_task", "--checkpoint", str(untrained_checkpoint)]) == 2
    line = one_error_line(capsys.readouterr().err, "prune")
    assert line.startswith("minisparse prune: error: unknown task 'no_such_task'"), line   # not "...: error: \"unk..."
    assert "single_double_quote" in line


def test_out_naming_a_file_is_refused_naming_the_flag(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for command in (["train", *TINY, "--steps", "2"], ["tour"]):
        assert main([*command, "--out", str(afile)]) == 2
        line = one_error_line(capsys.readouterr().err, command[0])
        assert f"--out {afile} is a file" in line and "directory" in line and "Errno" not in line
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("flag", ["--bytes", "--seed"])
def test_negative_counts_are_refused_not_ignored(untrained_checkpoint, capsys, flag):
    with pytest.raises(SystemExit) as e:
        main(["sample", "--checkpoint", str(untrained_checkpoint), flag, "-1"])
    assert e.value.code == 2
    assert f"argument {flag}: must be an integer >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="integer >= 0, got -1"):
        generate_bytes(load(untrained_checkpoint), "x", n_bytes=-1)


def test_a_corrupt_checkpoint_is_refused_in_one_line(untrained_checkpoint, tmp_path, capsys):
    damaged = tmp_path / "damaged.safetensors"
    data = untrained_checkpoint.read_bytes()
    damaged.write_bytes(data[:-100] + b"\xff" * 100)
    assert main(["sample", "--checkpoint", str(damaged)]) == 2
    line = one_error_line(capsys.readouterr().err, "sample")
    assert re.search(r"tensor '[\w.]+' does not match the digest", line), line


def test_prune_writes_the_circuit_it_prints_and_draws_it(untrained_checkpoint, tmp_path, capsys):
    json_path, png = tmp_path / "c.json", tmp_path / "c.png"
    # an untrained model sits at chance (0.693): a target of 0.7 gives a small circuit, quick to write and draw
    assert main(["prune", "--task", "single_double_quote", "--checkpoint", str(untrained_checkpoint), "--steps", "2",
                 "--target-loss", "0.7", "--no-controls", "--json", str(json_path), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    circuit = Circuit.load(json_path)
    assert circuit.task == "single_double_quote" and circuit.settings["steps"] == 2 and circuit.controls == {}
    assert circuit.reached_target and circuit.task_loss <= 0.7 and circuit.target_loss == 0.7
    assert circuit.summary() in printed
    assert printed.endswith(f"circuit drawn to {png}\n")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tour_tells_the_three_sparsities_compares_a_dense_circuit_and_tells_the_truth(tmp_path, capsys):
    for name, density in (("sparse", "0.0625"), ("dense", "1")):
        assert main(["train", *TINY, "--steps", "10", "--density", density, "--out", str(tmp_path / name)]) == 0
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
    circuit = Circuit.load(tmp_path / "tour" / "circuit-single_double_quote.json")
    assert f"{circuit.n_nodes} of {circuit.n_total_nodes} nodes, {circuit.n_edges} edges" in printed
    assert (tmp_path / "tour" / "circuit-single_double_quote.png").read_bytes()[:4] == b"\x89PNG"


def test_the_tour_uses_the_shipped_models_unless_given_others(tmp_path):
    from minisparse import tour
    from minisparse.zoo import shipped_path

    sparse, dense, source = tour.tour_checkpoints()
    assert (sparse, dense) == (shipped_path("1in16-s0@3000"), shipped_path("dense-s0@1500")) and "matched" in source
    assert tour.tour_checkpoints(tmp_path / "a.safetensors")[:2] == (tmp_path / "a.safetensors", None)
