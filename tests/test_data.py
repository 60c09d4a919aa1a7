"""The corpus (which files, in what order, the fingerprint, the split), batches, and the byte tokenizer."""

import os
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisparse import data

# ---------------------------------------------------------------------------------------------------------------------
# A fake stdlib: what must be kept, what must be skipped.

KEPT = {
    "abc.py": "x = 1\n",
    "pkg/__init__.py": "",
    "pkg/mod.py": "def f():\n    return 'é'\n",
    "pkg/testing/helpers.py": "y = 2\n",    # `testing` is not `test`
    "test_like_name.py": "z = 3\n",         # only *directories* named test/tests are excluded
    "zz/deep/er.py": "w = 4\n",
}
SKIPPED = {
    "test/test_abc.py": "assert True\n",
    "pkg/tests/test_mod.py": "assert True\n",
    "idlelib/editor.py": "pass\n",
    "site-packages/thirdparty.py": "pass\n",
    "__pycache__/abc.cpython-311.py": "pass\n",
    "README.txt": "not python\n",
    "pkg/data.pyc": "not source\n",
}


@pytest.fixture
def fake_stdlib(tmp_path) -> Path:
    for rel, text in {**KEPT, **SKIPPED}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    os.symlink(tmp_path, tmp_path / "pkg" / "loop")            # a directory symlink loop: must not be followed
    os.symlink(tmp_path / "abc.py", tmp_path / "alias.py")      # a symlinked file: skipped, it is not a regular file
    return tmp_path


def test_fake_stdlib_keeps_exactly_the_source_files_sorted(fake_stdlib):
    assert data.corpus_files(fake_stdlib) == sorted(KEPT)


def test_fake_stdlib_corpus_holds_every_kept_byte_once(fake_stdlib):
    corpus = data.load_corpus(fake_stdlib, refresh=True)
    assert corpus.n_files == len(KEPT)
    assert set(corpus.train_files).isdisjoint(corpus.val_files)
    assert sorted(corpus.train_files + corpus.val_files) == sorted(KEPT)
    assert corpus.train.dtype == np.uint8 and corpus.val.dtype == np.uint8
    for files, stream in ((corpus.train_files, corpus.train), (corpus.val_files, corpus.val)):
        assert files, "tiny trees still get a file on each side"
        expected = b"\0".join((fake_stdlib / f).read_bytes() for f in files)
        assert stream.tobytes() == expected


def test_fingerprint_is_stable_and_changes_with_any_file(fake_stdlib):
    first = data.load_corpus(fake_stdlib, refresh=True).fingerprint
    assert data.load_corpus(fake_stdlib, refresh=True).fingerprint == first
    assert data.load_corpus(fake_stdlib) is data.load_corpus(fake_stdlib), "cached within the process"

    target = fake_stdlib / "pkg" / "mod.py"
    original = target.read_bytes()
    target.write_bytes(original.replace(b"return", b"yield "))   # same length, different content
    assert data.load_corpus(fake_stdlib, refresh=True).fingerprint != first
    target.write_bytes(original)
    assert data.load_corpus(fake_stdlib, refresh=True).fingerprint == first

    target.rename(fake_stdlib / "pkg" / "mod2.py")                # same content under another name
    assert data.load_corpus(fake_stdlib, refresh=True).fingerprint != first


def test_missing_or_empty_stdlib_says_where_it_looked_and_how_to_pass_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.CorpusError, match="nowhere") as err:
        data.load_corpus(missing)
    assert "root=" in str(err.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "test").mkdir()
    (tmp_path / "empty" / "test" / "only_tests.py").write_text("pass\n")
    with pytest.raises(data.CorpusError, match="found 0 .py file") as err:
        data.load_corpus(tmp_path / "empty")
    assert "empty" in str(err.value) and "root=" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------------
# The real stdlib of the running Python.

@pytest.fixture(scope="module")
def stdlib():
    return data.load_corpus()


def test_real_corpus_excludes_tests_idlelib_site_packages(stdlib):
    files = stdlib.train_files + stdlib.val_files
    assert stdlib.n_files > 100
    for f in files:
        parts = PurePosixPath(f).parts
        assert f.endswith(".py") and not data.EXCLUDED_DIRS.intersection(parts[:-1]), f
    assert data.corpus_files() == sorted(files)


def test_real_corpus_split_is_by_file_and_about_five_percent(stdlib):
    assert set(stdlib.train_files).isdisjoint(stdlib.val_files)
    assert list(stdlib.train_files) == sorted(stdlib.train_files)
    assert all(data.split_of(f) == "val" for f in stdlib.val_files)
    assert 0.01 < len(stdlib.val_files) / stdlib.n_files < 0.15
    assert stdlib.val.size > 10_000 and stdlib.train.size > 5 * stdlib.val.size
    assert not stdlib.train.flags.writeable, "the cached corpus is shared, so it must not be writable"


# ---------------------------------------------------------------------------------------------------------------------
# Batches.

COUNTING = (np.arange(10_000) % 256).astype(np.uint8)   # every byte is its predecessor + 1 (mod 256)


def test_batches_are_a_pure_function_of_seed_and_step():
    x, y = data.get_batch(COUNTING, 4, 16, seed=7, step=3)
    data.get_batch(COUNTING, 4, 16, seed=7, step=2)          # whatever ran before, step 3 is step 3
    x2, y2 = data.get_batch(COUNTING, 4, 16, seed=7, step=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, data.get_batch(COUNTING, 4, 16, seed=7, step=4)[0])
    assert not np.array_equal(x, data.get_batch(COUNTING, 4, 16, seed=8, step=3)[0])


def test_targets_are_inputs_shifted_by_one():
    x, y = data.get_batch(COUNTING, 8, 32, seed=0, step=0)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == np.int64
    assert np.array_equal(y, (x + 1) % 256)                   # y[t] is the byte after x[t]
    assert np.array_equal(x[:, 1:], y[:, :-1])


def test_batches_from_the_real_corpus_are_windows_of_it(stdlib):
    x, y = data.get_batch(stdlib.train, 4, 64, seed=1, step=5)
    text = stdlib.train.tobytes()
    for row_x, row_y in zip(x, y):
        start = text.find(bytes(row_x.tolist()) + bytes([row_y[-1]]))
        assert start >= 0


def test_eval_batches_are_deterministic_and_span_the_data():
    batches = data.eval_batches(COUNTING, 4, 16, n_batches=3)
    again = data.eval_batches(COUNTING, 4, 16, n_batches=3)
    assert len(batches) == 3
    for (x, y), (x2, y2) in zip(batches, again):
        assert x.shape == (4, 16) and np.array_equal(x, x2) and np.array_equal(y, y2)
        assert np.array_equal(y, (x + 1) % 256)
    assert batches[0][0][0, 0] == COUNTING[0]                 # first window at the start...
    assert batches[-1][1][-1, -1] == COUNTING[-1]             # ...last one ends at the last byte


def test_too_short_data_is_refused():
    with pytest.raises(ValueError, match="n_ctx=16"):
        data.get_batch(COUNTING[:16], 2, 16, seed=0, step=0)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer.

@given(st.text())
def test_encode_decode_round_trip(text):
    ids = data.encode(text)
    assert ids.dtype == np.uint8 and ids.ndim == 1
    assert data.decode(ids) == text


def test_encode_is_utf8_and_decode_replaces_invalid_bytes():
    assert data.encode("é🐍").tolist() == list("é🐍".encode())
    assert data.decode([104, 105, 0xFF]) == "hi\ufffd"
