"""Fuzzing the edges where outside input comes in: the command line and the checkpoint loaders.

Hypothesis draws argument lists (flags in any order, numbers of every sign and kind, paths to nothing, to a file, to
a damaged checkpoint) and byte-level damage to checkpoint files. Every run must end in a result or in one line that
names the problem: never a traceback, never a silent wrong answer.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minisparse import save
from minisparse.checkpoint import CheckpointError, load_optimizer, read_checkpoint, save_optimizer
from minisparse.cli import main
from minisparse.config import ModelConfig
from minisparse.numpy import GPT
from minisparse.optim import init_state
from strategies import examples

CFG = ModelConfig(vocab_size=256, n_ctx=16, d_model=8, n_layer=1, n_head=2, d_head=4, d_mlp=16, bigram=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good checkpoint and optimizer state, a damaged checkpoint, a plain file and a directory, in one place."""
    root = tmp_path_factory.mktemp("fuzz")
    model = GPT(CFG, seed=0)
    save(model, root / "model.safetensors", step=3)
    state = init_state(model.params)
    for k in ("m", "v"):
        for a in state[k].values():
            a += np.random.default_rng(1).standard_normal(a.shape).astype(a.dtype)
    save_optimizer(state, root / "optimizer.safetensors", step=3)
    data = (root / "model.safetensors").read_bytes()
    (root / "damaged.safetensors").write_bytes(data[:-64] + b"\xff" * 64)
    (root / "afile").write_text("not a checkpoint")
    (root / "adir").mkdir()
    return root


# ----------------------------------------------------------------------------------------------------------------------
# the loaders: any damage is refused with a CheckpointError, or (if it changed nothing that matters) gives the original

damage = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                            st.one_of(st.integers(0, 400), st.integers(0, 2 ** 20)),   # the header, or anywhere
                            st.integers(0, 255)), min_size=1, max_size=3)


def damaged(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, position, value in edits:
        i = position % (len(out) + 1)
        if kind == "flip" and i < len(out):
            out[i] ^= 1 << (value % 8)
        elif kind == "set" and i < len(out):
            out[i] = value
        elif kind == "insert":
            out[i:i] = bytes([value])
        elif kind == "delete":
            del out[i:i + 1 + value % 16]
        elif kind == "truncate":
            del out[i:]
    return bytes(out)


@settings(examples(0.5), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=damage)
def test_a_damaged_checkpoint_is_refused_or_reads_as_the_original(files, tmp_path, edits):
    original = read_checkpoint(files / "model.safetensors")
    path = tmp_path / "model.safetensors"
    path.write_bytes(damaged((files / "model.safetensors").read_bytes(), edits))
    try:
        config, params, meta = read_checkpoint(path)
    except CheckpointError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert config == original[0] and meta == original[2]
    for name, w in original[1].items():
        np.testing.assert_array_equal(params[name], w, err_msg=name)


@settings(examples(0.5), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=damage)
def test_damaged_optimizer_state_is_refused_or_reads_as_the_original(files, tmp_path, edits):
    original = load_optimizer(files / "optimizer.safetensors", CFG, step=3)
    path = tmp_path / "optimizer.safetensors"
    path.write_bytes(damaged((files / "optimizer.safetensors").read_bytes(), edits))
    try:
        state = load_optimizer(path, CFG, step=3)
    except CheckpointError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    for k in ("m", "v"):
        for name, a in original[k].items():
            np.testing.assert_array_equal(state[k][name], a, err_msg=f"{k}.{name}")


# ----------------------------------------------------------------------------------------------------------------------
# the command line

numbers = st.one_of(st.integers(-3, 3), st.sampled_from(["0.5", "-1", "1e9", "nan", "inf", "-inf", "1e-300", "x", ""]))
paths = st.sampled_from(["model.safetensors", "damaged.safetensors", "afile", "adir", "nowhere/x.safetensors"])
words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)

FLAGS = {   # flag -> strategy of its value (None: a switch); paths are relative to the fuzz directory
    "train": {"--density": numbers, "--afrac": numbers,
              "--pos-emb": st.sampled_from(["none", "learned", "rope"]), "--lr": numbers, "--batch-size": numbers,
              "--seed": numbers, "--sharkfin": None, "--resume": None, "--backend": st.sampled_from(["numpy", "gpu"]),
              "--prompt": words, "--out": st.sampled_from(["run", "afile", "adir", "new/run"])},
    "sample": {"--checkpoint": paths, "--prompt": words, "--bytes": numbers, "--temperature": numbers,
               "--seed": numbers, "--raw": None, "--backend": st.sampled_from(["numpy", "auto", "gpu"])},
    "prune": {"--checkpoint": paths, "--task": st.sampled_from(["single_double_quote", "bracket_counting", "nope"]),
              "--target-loss": numbers, "--k-coef": numbers, "--ablation": st.sampled_from(["mean", "zero", "one"]),
              "--seed": numbers, "--json": st.sampled_from(["c.json", "adir", "no/c.json"])},
}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from([*FLAGS, "tour", "explain", ""]))
    argv = [command]
    if command == "train":   # kept small: at most 2 steps of the tiny preset
        argv += ["--preset", draw(st.sampled_from(["tiny", "huge"])), "--steps", str(draw(st.integers(-1, 2))),
                 "--no-progress"]
    if command == "sample":  # a few bytes, not the default 300
        argv += ["--bytes", str(draw(st.integers(-1, 4)))]
    if command == "prune":   # the controls prune twice more, with the same inputs: test_cli runs them
        argv += ["--steps", str(draw(st.integers(0, 2))), "--no-controls"]
    if command == "tour":    # only its refusals here: a whole tour is test_cli's
        argv += draw(st.sampled_from([["--out", "afile"], ["--preset", "huge"], ["--checkpoint", "damaged.safetensors"],
                                      ["--checkpoint", "nowhere.safetensors"]]))
    for flag in draw(st.lists(st.sampled_from(sorted(FLAGS.get(command, {"--help": None}))), max_size=5)):
        value = FLAGS.get(command, {}).get(flag)
        argv += [flag] if value is None else [flag, str(draw(value))]
    if command in ("sample", "prune") and "--checkpoint" not in argv:
        argv += ["--checkpoint", "model.safetensors"]
    if command == "prune" and "--task" not in argv:
        argv += ["--task", "single_double_quote"]
    if draw(st.booleans()):
        argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(["--bogus", "-x", "--steps"])))
    return argv


def run(argv, cwd: Path) -> tuple[int, str, str]:
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as e:     # argparse: usage and one error line, exit 2 (or --help, exit 0)
        code = e.code
    finally:
        os.chdir(here)
    out.flush()
    return code, out.buffer.getvalue().decode("utf-8", errors="backslashreplace"), err.getvalue()


@settings(examples(0.15), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command_lines())
def test_any_command_line_ends_in_a_result_or_one_line_naming_the_problem(files, argv):
    with tempfile.TemporaryDirectory() as here:      # a fresh directory for every example
        here = Path(here)
        for name in ("model.safetensors", "damaged.safetensors", "afile"):
            shutil.copy(files / name, here / name)
        (here / "adir").mkdir()
        code, out, err = run(argv, here)
    assert "Traceback" not in err and "Traceback" not in out
    assert code in (0, 2), (code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert len(errors) == 1 and errors[0].startswith("minisparse") and err.rstrip().endswith(errors[0]), err
    elif argv[0] in ("sample", "train") and "--help" not in argv and "--raw" not in argv:
        assert all(c.isprintable() or c in "\n\t" for c in out), "a sample reached the terminal unescaped"
