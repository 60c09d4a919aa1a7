"""Do sparse matrix products (scipy.sparse CSR) beat dense BLAS for a weight-sparse model's linear layers?

    pip install scipy && python benchmarks/bench_sparse_matmul.py [--density 0.0625] [--repeats 20]

For every weight shape of the reference config (and of the same model at 4x the width), at the given density (each
neuron keeping at least 4 weights, as training does), the two products of a linear layer that a sparse weight can
speed up are timed, dense against CSR, interleaved:
- forward  y = x Wᵀ  ([N, in] -> [N, out]);
- backward dx = dy W ([N, out] -> [N, in]).
(The third, dW = dyᵀ x, must be dense: Adam's moments and regrowth need every entry.) The CSR columns include what
the model would have to pay every step: building the CSR matrix of the freshly updated weight, and copying the
activations into the layout scipy's kernel reads and back. N = 2048 tokens (batch 16 × 128).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from bench_step import REFERENCE, blas_threads, matmul_peak

from minisparse.params import param_shapes
from minisparse.sparsity import min_axis, project_mask

N = 2048


def median_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each function, called in turn `repeats` times (interleaved)."""
    for f in fns.values():
        f()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) * 1e3 for name, ts in times.items()}


def csr_forward(w, x):
    # y = x Wᵀ = (W xᵀ)ᵀ: scipy multiplies a CSR matrix by a C-ordered dense one; the result comes back C-ordered
    return np.ascontiguousarray((sp.csr_matrix(w) @ np.ascontiguousarray(x.T)).T)


def csr_backward(w, dy):
    # dx = dy W = (Wᵀ dyᵀ)ᵀ
    return np.ascontiguousarray((sp.csr_matrix(w.T) @ np.ascontiguousarray(dy.T)).T)


def products(w, x, dy) -> dict:
    """The timed products: forward and backward, dense and CSR, and the CSR kernels alone."""
    w_csr, wt_csr, xt, dyt = sp.csr_matrix(w), sp.csr_matrix(w.T), np.ascontiguousarray(x.T), np.ascontiguousarray(dy.T)
    return {"fd": lambda: x @ w.T, "fs": lambda: csr_forward(w, x), "fk": lambda: w_csr @ xt,
            "bd": lambda: dy @ w, "bs": lambda: csr_backward(w, dy), "bk": lambda: wt_csr @ dyt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--density", type=float, default=1 / 16)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"float32 matmul peak (1024x1024): {matmul_peak():.1f} GFLOP/s, {blas_threads()} BLAS thread(s); "
          f"density {args.density:g}, N = {N}\n")
    print("| width | weight (out, in) | nnz | forward: dense ms | CSR ms | CSR kernel alone ms "
          "| backward dx: dense ms | CSR ms | CSR kernel alone ms | CSR / dense, both products |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for mult in (1, 4):
        shapes = param_shapes(REFERENCE.__class__(**{**REFERENCE.to_dict(), "d_model": 128 * mult,
                                                      "d_head": 16 * mult, "d_mlp": 512 * mult}))
        seen = set()
        for name, shape in shapes.items():
            if min_axis(name) is None or shape in seen or name.startswith("wte"):
                continue
            seen.add(shape)
            w = rng.standard_normal(shape).astype(np.float32)
            w *= project_mask(name, w, args.density, 4)
            x = rng.standard_normal((N, shape[1])).astype(np.float32)
            dy = rng.standard_normal((N, shape[0])).astype(np.float32)
            np.testing.assert_allclose(csr_forward(w, x), x @ w.T, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(csr_backward(w, dy), dy @ w, rtol=1e-4, atol=1e-4)
            ms = median_ms(products(w, x, dy), args.repeats)
            print(f"| {mult}x | {name.split('.', 2)[-1] if 'blocks' in name else name} {shape} | "
                  f"{np.count_nonzero(w):,} | {ms['fd']:.2f} | {ms['fs']:.2f} | {ms['fk']:.2f} | {ms['bd']:.2f} | "
                  f"{ms['bs']:.2f} | {ms['bk']:.2f} | {(ms['fs'] + ms['bs']) / (ms['fd'] + ms['bd']):.2f} |")


if __name__ == "__main__":
    main()
