"""What the training loop adds to its steps: validation, checkpoints, the metrics log, batches and the progress bar.

    python benchmarks/bench_train_loop.py [--preset small] [--steps 40]

Runs `minisparse.train.train` on the preset for `--steps` steps (NumPy), validating and checkpointing every
`--steps // 2` steps, and times every part: the trainer's steps, `_validate`, `_checkpoint`, and the rest of the
loop. Validation and checkpoints are then spread over the preset's own intervals (`eval_every`, `checkpoint_every`):
the loop's overhead as a run of the preset pays it, in % of its steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import defaultdict

import minisparse.train as train_module
from minisparse.config import preset
from minisparse.data import load_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    model_cfg, preset_cfg = preset(args.preset)
    every = max(1, args.steps // 2)
    train_cfg = dataclasses.replace(preset_cfg, steps=args.steps, eval_every=every, checkpoint_every=every)
    corpus = load_corpus()
    seconds, calls = defaultdict(float), defaultdict(int)

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                seconds[name] += time.perf_counter() - t
                calls[name] += 1
        return wrapper

    make_trainer, validate, checkpoint = train_module.make_trainer, train_module._validate, train_module._checkpoint

    def make_timed_trainer(*a, **kw):
        trainer = make_trainer(*a, **kw)
        trainer.step = timed("step", trainer.step)
        return trainer

    train_module.make_trainer = make_timed_trainer
    train_module._validate, train_module._checkpoint = timed("validate", validate), timed("checkpoint", checkpoint)
    try:
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            train_module.train(model_cfg, train_cfg, out, corpus=corpus, progress=True)
            total = time.perf_counter() - t
    finally:
        train_module.make_trainer, train_module._validate, train_module._checkpoint = make_trainer, validate, checkpoint
    step = seconds["step"] / calls["step"]
    per = {name: seconds[name] / calls[name] for name in ("validate", "checkpoint")}
    rest = (total - sum(seconds.values())) / calls["step"]
    amortized = {"validation": per["validate"] / preset_cfg.eval_every,
                 "checkpoints": per["checkpoint"] / preset_cfg.checkpoint_every,
                 "batches, log, progress bar": rest}
    print(f"\npreset {args.preset}: a step takes {step * 1e3:.0f} ms; one validation "
          f"({train_cfg.eval_batches} batches) {per['validate']:.2f} s, one checkpoint {per['checkpoint']:.2f} s, "
          f"the rest of the loop {rest * 1e3:.1f} ms a step")
    print(f"at the preset's intervals (validation every {preset_cfg.eval_every} steps, checkpoint every "
          f"{preset_cfg.checkpoint_every}):")
    for name, s in amortized.items():
        print(f"  {name}: {s / step:.2%} of a step")
    print(f"  the loop in all: {sum(amortized.values()) / step:.2%} over the steps")


if __name__ == "__main__":
    main()
