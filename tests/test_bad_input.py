"""Hostile input, as a user could give it: each is refused in one line that names it, before any long work, and never
as a traceback or a memory blow-up (the defects a hostile-user pass found, each pinned here)."""

import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from minisparse import save
from minisparse.checkpoint import DIGEST, CheckpointError, _digests, read_checkpoint, read_configs
from minisparse.circuits import Circuit
from minisparse.cli import main
from minisparse.config import ModelConfig, TrainConfig
from minisparse.numpy import GPT, NumpyTrainer
from minisparse.params import check_shapes
from test_cli import TINY, one_error_line  # tests/test_cli.py

CFG = ModelConfig(vocab_size=256, n_ctx=16, d_model=16, n_layer=1, n_head=2, d_head=8, d_mlp=32)


@pytest.fixture
def checkpoint(tmp_path):
    return save(GPT(CFG, seed=0), tmp_path / "model.safetensors")


def tampered(path, out, **meta_changes):
    """A copy of checkpoint `path` with its metadata changed and its digests recomputed, as anyone can do."""
    with safe_open(str(path), framework="numpy") as f:
        meta, tensors = f.metadata(), {n: f.get_tensor(n) for n in f.keys()}
    meta = {**meta, **meta_changes}
    meta[DIGEST] = _digests(tensors, meta)
    save_file(tensors, str(out), meta)
    return out


@pytest.mark.parametrize("n_layer", [10 ** 9, 200_000, 2])
def test_a_checkpoint_claiming_more_layers_than_it_holds_is_refused_at_once_in_a_short_line(checkpoint, tmp_path,
                                                                                             n_layer):
    claims = json.loads(read_checkpoint(checkpoint)[2]["config"]) | {"n_layer": n_layer}
    bad = tampered(checkpoint, tmp_path / "bad.safetensors", config=json.dumps(claims))
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(bad)
    assert time.perf_counter() - start < 1.0
    assert len(str(e.value)) < 300 and "\n" not in str(e.value)


def test_a_shape_mismatch_lists_a_few_names_not_thousands():
    expected = {f"w{i}": (2,) for i in range(10_000)}
    with pytest.raises(ValueError) as e:
        check_shapes({}, expected)
    assert len(str(e.value)) < 300 and "and 9995 more" in str(e.value)


def test_a_checkpoint_whose_training_config_is_not_json_is_refused_naming_the_file(checkpoint, tmp_path):
    bad = tampered(checkpoint, tmp_path / "bad.safetensors", train_config="{not json")
    with pytest.raises(CheckpointError, match="bad.safetensors carries a bad training config"):
        read_configs(bad)
    assert main(["tour", "--checkpoint", str(bad), "--out", str(tmp_path / "tour")]) == 2


def test_a_full_disk_during_a_save_is_one_line_and_keeps_nothing_half_written(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    import minisparse.checkpoint as ckpt

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    assert main(["train", *TINY, "--steps", "2", "--out", str(tmp_path / "run")]) == 2
    assert "No space left on device" in one_error_line(capsys.readouterr().err, "train")
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".safetensors")] == []


# ----------------------------------------------------------------------------------------------------------------------
# explain: circuit files


def circuit_file(tmp_path, **changes):
    circuit = Circuit(task="single_double_quote", nodes=["L0.q[1]"], edges=[], task_loss=0.1, sufficiency=0.1,
                      necessity=1.0)
    d = {**json.loads(circuit.to_json()), **changes}
    d = {k: v for k, v in d.items() if v is not ...}
    path = tmp_path / "circuit.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("changes, says", [
    ({"nodes": ...}, "missing field(s) ['nodes']"),
    ({"edges": ...}, "missing field(s) ['edges']"),
    ({"answers": 5}, "'answers' must be a pair of strings"),
    ({"nodes": "L0.q[1]"}, "'nodes' must be a list of node names"),
    ({"edges": [["a", "b"]]}, "'edges' must be a list of [source, destination, weight] triples"),
    ({"nodes": ["L99.q[5]"]}, "node 'L99.q[5]' is not in this model"),
    ({"nodes": ["L0.q[x]"]}, "not a node name: 'L0.q[x]'"),
])
def test_explain_refuses_a_malformed_circuit_in_one_line_naming_what_is_wrong(checkpoint, tmp_path, capsys, changes,
                                                                              says):
    path = circuit_file(tmp_path, **changes)
    assert main(["explain", "--checkpoint", str(checkpoint), "--circuit", str(path)]) == 2
    assert says in one_error_line(capsys.readouterr().err, "explain")


def test_explain_reads_a_circuit_argument_as_a_path_even_if_it_looks_like_json(checkpoint, capsys):
    text = json.dumps({"task": "x"})
    assert main(["explain", "--checkpoint", str(checkpoint), "--circuit", text]) == 2
    assert "No such file" in one_error_line(capsys.readouterr().err, "explain")


def test_explain_warns_when_the_circuit_was_pruned_on_another_model(checkpoint, tmp_path, capsys):
    path = circuit_file(tmp_path, settings={"model_digest": "0123456789abcdef", "n_eval": 4})
    assert main(["explain", "--checkpoint", str(checkpoint), "--circuit", str(path), "--contexts", "1"]) == 0
    assert "was pruned on another model" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# values and paths, refused before any work


@pytest.mark.parametrize("args, says", [
    (["prune", "--task", "single_double_quote", "--checkpoint", "CKPT", "--json", "no/such/dir/c.json"],
     "does not exist"),
    (["prune", "--task", "single_double_quote", "--checkpoint", "CKPT", "--json", "c.txt"], "should end in .json"),
    (["prune", "--task", "single_double_quote", "--checkpoint", "CKPT", "--plot", "TMP/"], "is a folder"),
    (["prune", "--task", "single_double_quote", "--checkpoint", "CKPT", "--target-loss", "nan"], "finite number > 0"),
    (["prune", "--task", "single_double_quote", "--checkpoint", "CKPT", "--k-coef", "-1"], "finite number >= 0"),
    (["explain", "--checkpoint", "CKPT", "--circuit", "c.json", "--contexts", "-3"], "integer >= 1"),
    (["explain", "--checkpoint", "CKPT", "--circuit", "c.json", "--markdown", "TMP"], "is a folder"),
    (["reproduce", "--jobs", "0"], "integer >= 1"),
    (["reproduce", "--seeds", "-1"], "integer >= 0"),
    (["train", *TINY, "--prompt", "def \udcff"], "not valid UTF-8"),
    (["sample", "--checkpoint", "CKPT", "--prompt", "\udcff"], "not valid UTF-8"),
    (["sample", "--checkpoint", "CKPT", "--temperature", "-1"], "finite number >= 0"),
])
def test_bad_values_and_paths_are_refused_while_parsing(checkpoint, tmp_path, capsys, args, says):
    args = [a.replace("CKPT", str(checkpoint)).replace("TMP", str(tmp_path)) for a in args]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and time.perf_counter() - start < 1.0
    assert says in capsys.readouterr().err


def test_an_empty_out_is_refused(capsys):
    assert main(["train", *TINY, "--out", ""]) == 2
    assert "--out is empty" in one_error_line(capsys.readouterr().err, "train")


def test_a_task_file_with_a_syntax_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "tasks.py"
    bad.write_text("def broken(:\n")
    assert main(["--tasks-from", str(bad), "sample", "--checkpoint", "x"]) == 2
    assert "tasks.py, line 1" in one_error_line(capsys.readouterr().err, "sample")


def test_sample_into_a_closed_pipe_stops_quietly(checkpoint):
    command = (f"{sys.executable} -m minisparse.cli sample --checkpoint {checkpoint} --bytes 2000 --raw "
               "| head -c 10 > /dev/null")
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.stderr == ""


def test_a_diverging_step_raises_once_without_numpy_warnings():
    trainer = NumpyTrainer(GPT(CFG, seed=0), TrainConfig(steps=4, batch_size=2))
    trainer.model.params["lm_head.weight"][:] = 3e38         # logits overflow on their way to the loss
    x = np.zeros((2, 8), np.int64)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(FloatingPointError):
            trainer.step(x, x, 0)
    assert [w for w in seen if issubclass(w.category, RuntimeWarning)] == []
