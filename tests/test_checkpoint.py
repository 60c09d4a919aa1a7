"""Checkpoints round-trip exactly, are written atomically, and anything wrong with a file is refused by name."""

import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import save_file

from facts import facts  # tests/facts.py
from minisparse.checkpoint import CheckpointError, load_optimizer, read_checkpoint, save_optimizer, write_checkpoint
from minisparse.config import ModelConfig, TrainConfig
from minisparse.optim import init_state
from minisparse.params import init_params

CFG = ModelConfig(vocab_size=16, n_ctx=8, d_model=8, n_layer=1, n_head=2, d_head=4, d_mlp=16, bigram=True)


def sparse_params(seed=0):
    params = init_params(CFG, seed)
    rng = np.random.default_rng(seed)
    for w in params.values():
        w[rng.random(w.shape) < 0.7] = 0.0  # an exact zero pattern that must survive
    return params


def test_round_trip_keeps_every_value_and_zero(tmp_path):
    params = sparse_params()
    path = write_checkpoint(CFG, params, tmp_path / "m.safetensors", step=7, train_config=TrainConfig(),
                            metadata={"corpus_fingerprint": "abc"})
    cfg, loaded, meta = read_checkpoint(path)
    assert cfg == CFG and list(loaded) == list(params)
    for name in params:
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], params[name])
    assert meta["step"] == "7" and meta["corpus_fingerprint"] == "abc"
    assert TrainConfig.from_dict(json.loads(meta["train_config"])) == TrainConfig()


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "m.safetensors"
    write_checkpoint(CFG, sparse_params(0), path)
    before = path.read_bytes()
    bad = sparse_params(1)
    bad["wte.weight"] = object()  # the writer fails halfway
    with pytest.raises(TypeError):
        write_checkpoint(CFG, bad, path)
    assert path.read_bytes() == before, "a failed write must not touch the existing checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def _write_raw(path, tensors, config=None, **meta):
    metadata = {"format": "minisparse", "format_version": "1", "config": config or CFG.to_json(), "step": "0"}
    metadata.update(meta)
    save_file(tensors, str(path), metadata)
    return path


def test_missing_tensor_is_named(tmp_path):
    params = init_params(CFG)
    del params["lm_head.weight"]
    with pytest.raises(CheckpointError, match=r"missing \['lm_head.weight'\]"):
        read_checkpoint(_write_raw(tmp_path / "m.safetensors", params))


def test_extra_tensor_is_named(tmp_path):
    params = {**init_params(CFG), "wpe.weight": np.zeros((8, 8), np.float32)}
    with pytest.raises(CheckpointError, match=r"unexpected \['wpe.weight'\]"):
        read_checkpoint(_write_raw(tmp_path / "m.safetensors", params))


def test_wrong_shape_is_named(tmp_path):
    params = init_params(CFG)
    params["blocks.0.mlp.up_proj.weight"] = np.zeros((8, 16), np.float32)  # transposed
    with pytest.raises(CheckpointError, match=facts("'blocks.0.mlp.up_proj.weight'", "(8, 16)", "(16, 8)")):
        read_checkpoint(_write_raw(tmp_path / "m.safetensors", params))


def test_wrong_dtype_is_refused_not_cast(tmp_path):
    params = init_params(CFG)
    params["norm_f.weight"] = params["norm_f.weight"].astype(np.float64)
    with pytest.raises(CheckpointError, match=facts("'norm_f.weight'", "F64", "F32")):
        read_checkpoint(_write_raw(tmp_path / "m.safetensors", params))


def test_bad_config_in_metadata_is_refused(tmp_path):
    bad = json.loads(CFG.to_json()) | {"afrac": 3}
    path = _write_raw(tmp_path / "m.safetensors", init_params(CFG), config=json.dumps(bad))
    with pytest.raises(CheckpointError, match=facts("config", "afrac", "3")):
        read_checkpoint(path)


def test_not_a_minisparse_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(CheckpointError, match=facts("other.safetensors", "not a minisparse checkpoint")):
        read_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_is_refused(tmp_path, damage):
    path = write_checkpoint(CFG, init_params(CFG), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x93NUMPY" + data[6:200],
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=facts("m.safetensors", "corrupt")):
        read_checkpoint(path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "nope.safetensors")


def test_optimizer_state_round_trips_and_checks_its_step(tmp_path):
    params = init_params(CFG)
    state = {"m": {n: np.full_like(p, 0.5) for n, p in params.items()},
             "v": {n: np.full_like(p, 2.0) for n, p in params.items()}}
    path = save_optimizer(state, tmp_path / "optimizer.safetensors", step=3)
    loaded = load_optimizer(path, CFG, step=3)
    for k in ("m", "v"):
        for n in params:
            np.testing.assert_array_equal(loaded[k][n], state[k][n])
    with pytest.raises(CheckpointError, match=facts("step 3", "step 4", "another checkpoint")):
        load_optimizer(path, CFG, step=4)


@pytest.mark.parametrize("src, dst", [("numpy", "mlx"), ("mlx", "numpy")])
def test_a_checkpoint_from_one_backend_gives_the_same_logits_in_the_other(tmp_path, src, dst):
    pytest.importorskip("mlx.core")
    from minisparse import load, save

    model = load(write_checkpoint(CFG, sparse_params(3), tmp_path / "a.safetensors"), backend=src)
    save(model, tmp_path / "b.safetensors", step=5)
    other = load(tmp_path / "b.safetensors", backend=dst)
    idx = np.random.default_rng(0).integers(0, CFG.vocab_size, (2, CFG.n_ctx))
    a, b = np.asarray(model.forward(idx)), np.asarray(other.forward(idx))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name, w in read_checkpoint(tmp_path / "b.safetensors")[1].items():
        np.testing.assert_array_equal(w, sparse_params(3)[name], err_msg=name)  # zeros and values survive both ways


# ----------------------------------------------------------------------------------------------------------------------
# files as any other file the user saves, and damage past the header caught by the digests


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
def test_files_get_the_permissions_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        paths = [write_checkpoint(CFG, init_params(CFG), tmp_path / "model.safetensors"),
                 save_optimizer(init_state(init_params(CFG)), tmp_path / "optimizer.safetensors", step=0)]
    finally:
        os.umask(old)
    for path in paths:
        assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(0o666 & ~umask), path.name


def tensor_ranges(data: bytes) -> dict[str, tuple[int, int]]:
    """{name: (start, end)} byte ranges of each tensor's data in a safetensors file."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    return {name: (8 + n + t["data_offsets"][0], 8 + n + t["data_offsets"][1])
            for name, t in header.items() if name != "__metadata__"}


def test_damage_past_the_header_is_refused_naming_the_tensor(tmp_path):
    # the defect as found: the last 100 bytes of a checkpoint overwritten with 0xff (NaNs), and it loaded
    path = write_checkpoint(CFG, sparse_params(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    last = max(tensor_ranges(data).items(), key=lambda item: item[1][1])[0]
    path.write_bytes(data[:-100] + b"\xff" * 100)
    with pytest.raises(CheckpointError, match=f"tensor '{last}' does not match the digest"):
        read_checkpoint(path)


def test_a_flipped_bit_that_leaves_every_weight_finite_is_caught(tmp_path):
    path = write_checkpoint(CFG, sparse_params(), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    start, end = tensor_ranges(bytes(data))["blocks.0.mlp.up_proj.weight"]
    data[start + 4 * 5] ^= 0x01                      # lowest mantissa bit of one float32: a tiny, finite change
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tensor 'blocks.0.mlp.up_proj.weight' does not match the digest"):
        read_checkpoint(path)


def test_damage_to_the_metadata_is_caught(tmp_path):
    path = write_checkpoint(CFG, sparse_params(), tmp_path / "m.safetensors", step=3)
    data = path.read_bytes()
    assert data.count(b'"step":"3"') == 1
    path.write_bytes(data.replace(b'"step":"3"', b'"step":"7"'))
    with pytest.raises(CheckpointError, match="metadata does not match the digest"):
        read_checkpoint(path)


def test_damaged_optimizer_state_is_refused_naming_the_tensor(tmp_path):
    path = save_optimizer(init_state(init_params(CFG)), tmp_path / "optimizer.safetensors", step=2)
    data = bytearray(path.read_bytes())
    start, _ = tensor_ranges(bytes(data))["v.wte.weight"]
    data[start:start + 4] = np.float32(1.0).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tensor 'v.wte.weight' does not match the digest"):
        load_optimizer(path, CFG, step=2)


def test_a_file_without_digests_is_still_refused_when_a_weight_is_not_finite(tmp_path):
    params = init_params(CFG)
    params["wte.weight"][2, :3] = [np.nan, np.inf, -np.inf]
    with pytest.raises(CheckpointError, match=facts("'wte.weight'", "3 NaN or inf")):
        read_checkpoint(_write_raw(tmp_path / "m.safetensors", params))   # format version 1: no digests


# --- compact files: a mostly-zero matrix stored as its nonzeros and a bit per entry -----------------------------------

def _compact(tmp_path, params=None):
    params = sparse_params() if params is None else params
    return write_checkpoint(CFG, params, tmp_path / "c.safetensors", compact=True), params


def test_a_compact_file_reads_back_every_value_with_its_zeros_made_positive(tmp_path):
    params = sparse_params()
    params["blocks.0.mlp.up_proj.weight"][0, :2] = -0.0           # masking a negative weight leaves -0.0
    path, _ = _compact(tmp_path, params)
    _, loaded, meta = read_checkpoint(path)
    compacted = json.loads(meta["compact"])
    assert "blocks.0.mlp.up_proj.weight" in compacted and "blocks.0.norm1.weight" not in compacted
    for name in params:
        np.testing.assert_array_equal(loaded[name], params[name])      # equal values (-0.0 == 0.0) ...
        assert not np.signbit(loaded[name][loaded[name] == 0]).any()    # ... and every zero stored as +0.0
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:     # what is stored: the nonzeros and a bit per entry
        w = params["blocks.0.mlp.up_proj.weight"]
        assert f.get_slice("blocks.0.mlp.up_proj.weight.nonzeros").get_shape() == [np.count_nonzero(w)]
        assert f.get_slice("blocks.0.mlp.up_proj.weight.where").get_shape() == [w.size // 8]


def _rewrite(path, change):
    """The file's tensors and metadata, with `change(tensors, metadata)` applied, written back as they are."""
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    change(tensors, meta)
    save_file(tensors, str(path), meta)
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda t, m: t.update({"lm_head.weight.nonzeros": t["lm_head.weight.nonzeros"][:-1]}), "marks .* nonzeros"),
    (lambda t, m: t.update({"lm_head.weight.where": t["lm_head.weight.where"][:-1]}), "'lm_head.weight.where'"),
    (lambda t, m: t.update({"lm_head.weight.where": t["lm_head.weight.where"].astype(np.float32)}), "expected U8"),
    (lambda t, m: t.update({"lm_head.weight.nonzeros": -t["lm_head.weight.nonzeros"]}), "does not match the digest"),
    (lambda t, m: t.pop("lm_head.weight.where"), r"missing \['lm_head.weight.where'\]"),
    (lambda t, m: t.update({"lm_head.weight.nonzeros": t["lm_head.weight.nonzeros"][None]}), r"holds shape \(1, "),
])
def test_a_damaged_compact_tensor_is_refused_by_name(tmp_path, damage, message):
    path, _ = _compact(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(_rewrite(path, damage))


def test_bits_that_claim_more_nonzeros_than_the_file_holds_are_refused(tmp_path):
    def set_every_bit(t, m):
        t["lm_head.weight.where"] = np.full_like(t["lm_head.weight.where"], 255)
    path, _ = _compact(tmp_path)
    with pytest.raises(CheckpointError, match="marks 128 nonzeros but holds"):
        read_checkpoint(_rewrite(path, set_every_bit))


def test_a_compact_list_that_names_no_matrix_of_the_model_is_refused(tmp_path):
    from minisparse.checkpoint import _metadata_digest

    def listing(listed):        # a file whose digests were recomputed after the list changed: the list itself is wrong
        def change(t, m):
            m["compact"] = listed
            m["sha256"] = json.dumps({**json.loads(m["sha256"]), "metadata": _metadata_digest(m)})
        return change

    for listed in ('["blocks.0.norm1.weight"]', '"wte.weight"', "[1]", "not json"):
        path, _ = _compact(tmp_path)
        with pytest.raises(CheckpointError, match="list of compact tensors"):
            read_checkpoint(_rewrite(path, listing(listed)))
