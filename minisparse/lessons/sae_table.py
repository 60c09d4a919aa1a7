"""Measure Jacobian sparsity: TopK SAE pairs and Jacobian SAEs on a dense model's MLP, against the MLP read in the
model's own channels, dense and weight-sparse, and against the same pairs on a randomly initialised model of the same
shape (Farnik et al.'s control: a trained model's computation should be sparser in the SAE basis than a random
one's). The models are the lessons' (`minisparse.lessons.models`: the zoo's shipped models), measured on their
training corpus (`lesson_corpus`); each pair is also spliced into its model in place of the MLP, and the table gives
the rise in the model's next-byte loss.

    python -m minisparse.lessons.sae_table     # lesson 08's measurements over seeds, a markdown table
    python -m minisparse.lessons.sae_table --lambdas 0,1 --seeds 0 --steps 1000 --no-random
"""

from __future__ import annotations

import argparse
import time

from minisparse.circuits.controls import random_model_like
from minisparse.data import eval_batches
from minisparse.sae.train import LESSON_SETTINGS, channel_row, mlp_data, summary_table, sweep

from .models import lesson_corpus, lesson_model

N_LOSS_BATCHES, LOSS_BATCH = 8, 16          # validation windows the spliced-in loss is measured on


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m minisparse.lessons.sae_table", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast", action="store_true", help="the lessons' fast (CI) models and settings")
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--lambdas", default="0,0.3,1,3", help="Jacobian penalties, comma-separated (0: a plain TopK pair)")
    ap.add_argument("--seeds", default="0,1,2", help="SAE seeds, comma-separated")
    ap.add_argument("--sparse", default="sparse",
                    help="the weight-sparse lesson model to compare with (lesson 08's: sparse, 1/16)")
    ap.add_argument("--no-random", action="store_true", help="skip the randomly initialised control model")
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
    dense = lesson_model("dense", args.fast)
    models = {"dense": dense, args.sparse: lesson_model(args.sparse, args.fast)}
    if not args.no_random:
        models["random-init"] = random_model_like(dense, seed=1)     # the dense model's shape, never trained
    channels, pairs = [], []                     # the table: every model in its channels first, then the SAE pairs
    batches = eval_batches(corpus.val, LOSS_BATCH, dense.config.n_ctx, N_LOSS_BATCHES)
    for name, model in models.items():
        data = mlp_data(model, corpus, args.layer, n_train, n_val)
        channels.append({"name": f"{name} model, its channels", **channel_row(model, data)})
        if name != args.sparse:
            pairs += [{"name": f"{name} model, SAE pair", **row}
                      for row in sweep(data, lambdas, seeds, model=model, batches=batches, **settings)]
    rows = channels + pairs
    print(f"layer {args.layer} MLP, SAE pairs: {settings}; {n_train} training tokens, {n_val} measured")
    print(summary_table(rows))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
