"""Measure Jacobian sparsity: TopK SAE pairs and Jacobian SAEs on a dense model's MLP, against the MLP read in the
model's own channels, dense and weight-sparse: the lesson models of `minisparse.lessons.models` (trained once, then
cached), measured on their training corpus (`lesson_corpus`).

    python -m minisparse.lessons.sae_table     # the numbers of lesson 9 and docs/results.md, a markdown table
    python -m minisparse.lessons.sae_table --lambdas 0,0.3,1,3 --seeds 0 --steps 2000
"""

from __future__ import annotations

import argparse
import time

from minisparse.sae.train import LESSON_SETTINGS, channel_row, mlp_data, summary_table, sweep

from .models import lesson_corpus, lesson_model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m minisparse.lessons.sae_table", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast", action="store_true", help="the lessons' fast (CI) models and settings")
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--lambdas", default="0,1", help="Jacobian penalties, comma-separated (0: a plain TopK pair)")
    ap.add_argument("--seeds", default="0,1,2", help="SAE seeds, comma-separated")
    ap.add_argument("--sparse", default="sparse-64", help="the weight-sparse zoo recipe to compare with")
    ap.add_argument("--steps", type=int, help="SAE training steps (default: the lesson's)")
    args = ap.parse_args(argv)
    settings = dict(LESSON_SETTINGS["fast" if args.fast else "default"])
    n_train, n_val = settings.pop("n_train"), settings.pop("n_val")
    if args.steps:
        settings["steps"] = args.steps
    lambdas = [float(v) for v in args.lambdas.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    start = time.perf_counter()
    corpus = lesson_corpus(args.fast)
    rows = []
    for name in ("dense", args.sparse):
        model = lesson_model(name, args.fast)
        data = mlp_data(model, corpus, args.layer, n_train, n_val)
        rows.append({"name": f"{name} model, its channels", **channel_row(model, data)})
        if name == "dense":
            dense_data = data
    rows += [{"name": "dense model, SAE pair", **row} for row in sweep(dense_data, lambdas, seeds, **settings)]
    print(f"layer {args.layer} MLP, SAE pairs: {settings}; {n_train} training tokens, {n_val} measured")
    print(summary_table(rows))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
