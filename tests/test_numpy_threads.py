"""The NumPy trainer's threads (minisparse/numpy/threads.py, trainer.py): how many, how they share a step, what they
guarantee: the same bits on the same thread count, the same model to float rounding on any."""

import multiprocessing
import os
import threading

import numpy as np
import pytest

from agreement import rel_err  # tests/agreement.py
from minisparse.config import ModelConfig, TrainConfig
from minisparse.numpy import GPT, NumpyTrainer, threads

CFG = ModelConfig(vocab_size=32, n_ctx=8, d_model=16, n_layer=2, n_head=2, d_head=4, d_mlp=32, bigram=True)
TCFG = TrainConfig(steps=6, batch_size=5, weight_density=0.25, lr=1e-2)   # 5 sequences: unequal shares on 2 and 3


def train(n_threads, afrac, dtype=np.float64):
    """(losses, params) after TCFG.steps steps on `n_threads` threads."""
    cfg = ModelConfig(**{**CFG.to_dict(), "afrac": afrac})
    rng = np.random.default_rng(0)
    trainer = NumpyTrainer(GPT(cfg, seed=1, dtype=dtype), TCFG, threads=n_threads)
    losses = [trainer.step(*rng.integers(0, cfg.vocab_size, (2, TCFG.batch_size, cfg.n_ctx)), step)
              for step in range(TCFG.steps)]
    return losses, trainer.model.params


@pytest.mark.parametrize("afrac", [1.0, 0.25])
def test_training_gives_the_same_model_on_any_number_of_threads(afrac):
    # float64, so that the gradients' sums, taken in another order, cannot flip a top-k choice
    losses, params = train(1, afrac)
    start = GPT(CFG, seed=1, dtype=np.float64).params["blocks.0.mlp.up_proj.weight"]
    assert rel_err(params["blocks.0.mlp.up_proj.weight"], start, 1.0) > 1e-3      # training moved the weights
    for n in (2, 3):
        losses_n, params_n = train(n, afrac)
        assert rel_err(losses_n, losses, 1.0) <= 1e-13, f"losses on {n} threads"
        for name, w in params.items():
            assert np.array_equal(params_n[name] == 0, w == 0), f"{name}: another sparsity pattern on {n} threads"
            assert rel_err(params_n[name], w, 1.0) <= 1e-12, f"{name} on {n} threads"


def test_training_on_threads_gives_the_same_bits_every_run():
    # the shares finish in any order; their gradients are summed in one
    (losses_a, params_a), (losses_b, params_b) = train(3, 0.25, np.float32), train(3, 0.25, np.float32)
    assert losses_a == losses_b
    assert all(params_a[name].tobytes() == params_b[name].tobytes() for name in params_a)


def test_a_malformed_batch_is_refused_by_the_model_on_threads():
    trainer = NumpyTrainer(GPT(CFG, seed=1), TCFG, threads=2)
    x = np.zeros((4, 8), dtype=np.int64)
    with pytest.raises(ValueError, match="targets have shape"):
        trainer.step(x, x[:3], 0)
    with pytest.raises(ValueError, match="out of range|vocab"):
        trainer.step(x + 99, x, 0)


def test_a_share_that_fails_stops_the_call_with_its_own_error_and_the_pool_works_on():
    pool = threads.Threads(3)

    def fail_on(bad):
        def fn(item):
            if item == bad:
                raise ZeroDivisionError(f"item {item}")
        return fn

    for bad in (0, 3):                                   # in the caller's own share, then in a pool thread's
        with pytest.raises(ZeroDivisionError, match=f"item {bad}"):
            pool.each(fail_on(bad), [0, 1, 2, 3])
    seen = []
    pool.each(seen.append, list(range(6)))
    assert sorted(seen) == list(range(6))


def test_a_nested_call_is_refused():
    pool = threads.Threads(2)
    with pytest.raises(RuntimeError, match="one call at a time"):
        pool.each(lambda item: pool.each(print, [1, 2]), [0, 1])


def test_numpy_error_settings_hold_in_the_pool_threads():
    # the trainer silences a diverging step's overflow warnings with np.errstate: the pool's threads must obey it too
    big = np.full(4, 1e30, dtype=np.float32)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        threads.Threads(2).each(lambda i: big[i] * big[i], [0, 1, 2, 3])


def test_each_gives_each_thread_one_contiguous_group():
    done_by = {}
    barrier = threading.Barrier(3, timeout=10)           # every thread holds its first item until all three have one

    def record(item):
        if item % 4 == 0:
            barrier.wait()
        done_by[item] = threading.get_ident()

    threads.Threads(3).each(record, list(range(12)))
    groups = [[item for item in range(12) if done_by[item] == ident] for ident in dict.fromkeys(done_by.values())]
    assert sorted(groups) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


@pytest.mark.parametrize(("setting", "n"), [({"MINISPARSE_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}, 3),
                                            ({"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "5"}, 2),
                                            ({"OMP_NUM_THREADS": "4,2"}, 4), ({"MKL_NUM_THREADS": "5"}, 5)])
def test_thread_count_follows_its_own_setting_then_the_blas_one(monkeypatch, setting, n):
    for var in threads.THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    for var, value in setting.items():
        monkeypatch.setenv(var, value)
    assert threads.Threads().n == n


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_bad_thread_setting_is_refused_by_name(monkeypatch, bad):
    monkeypatch.setenv("MINISPARSE_NUM_THREADS", bad)
    with pytest.raises(ValueError, match="MINISPARSE_NUM_THREADS"):
        threads.Threads()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_a_bad_thread_count_is_refused(bad):
    with pytest.raises(ValueError, match="threads must be a whole number"):
        NumpyTrainer(GPT(CFG, seed=1), TCFG, threads=bad)


def test_blas_runs_one_thread_while_the_pool_works_and_as_before_after():
    blas = threads._blas().select(user_api="blas")
    assert blas.info(), "threadpoolctl finds no BLAS in this process"
    with blas.limit(limits=2, user_api="blas"):        # the tests run BLAS on one thread: start from two
        assert all(lib["num_threads"] == 2 for lib in blas.info())
        with threads.Threads(2).own_cores():
            assert all(lib["num_threads"] == 1 for lib in blas.info())
        assert all(lib["num_threads"] == 2 for lib in blas.info())
        with threads.Threads(1).own_cores():          # one thread: BLAS as it is
            assert all(lib["num_threads"] == 2 for lib in blas.info())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork exists only on POSIX systems")
def test_a_forked_child_starts_threads_of_its_own():
    # the child inherits the parent's pool without its threads: without the fork handler, its first call waits forever
    pool = threads.Threads(2)
    pool.each(lambda item: None, [0, 1])                # the parent's pool threads are running
    child = multiprocessing.get_context("fork").Process(target=pool.each, args=(print, [0, 1]))
    child.start()
    child.join(timeout=20)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
