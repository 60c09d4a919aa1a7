"""The `minisparse` command line: its arguments, checked as they are parsed, and its one-line errors. Commands: train,
sample, prune, explain, patch, view, tour, reproduce (what each does is `minisparse.commands`)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from . import commands
from .backend import BACKENDS
from .checkpoint import CheckpointError
from .config import PRESETS, ConfigError
from .sparsity import ANNEAL_SHAPES


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _number(low: float, strict: bool):
    """A finite float above `low` (strictly, or at least)."""
    def parse(text: str) -> float:
        value = float(text)
        if not (math.isfinite(value) and (value > low if strict else value >= low)):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {low}, got {text}")
        return value
    return parse


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:      # argv bytes that are not UTF-8 arrive as lone surrogates
        raise argparse.ArgumentTypeError("is not valid UTF-8 text") from None
    return text


def _output_file(*suffixes: str):
    """A file path to write later, checked now: its folder exists, it is not a folder, its suffix is one of these."""
    def parse(text: str) -> str:
        path = Path(text)
        if not text or text.endswith(("/", "\\")) or path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; name a file in it, e.g. {text.rstrip('/')}/"
                                             f"out{suffixes[0]}")
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{text!r} should end in {' or '.join(suffixes)}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"the folder {str(path.parent)!r} does not exist; create it first")
        return text
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minisparse", description="Weight-sparse transformers you can read.")
    parser.add_argument("--tasks-from", metavar="FILE.py", action="append", default=[],
                        help="a Python file that registers your own tasks (minisparse.tasks.register); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a weight-sparse GPT on the Python standard library")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model size and recipe (default small)")
    p.add_argument("--density", type=float, help="target weight density, e.g. 0.0625 (1 = dense)")
    p.add_argument("--afrac", type=float, help="fraction of channels AbsTopK keeps (1 = no activation sparsity)")
    p.add_argument("--pos-emb", choices=["none", "learned"], help="positional embedding (default: the preset's)")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=_non_negative_int)
    p.add_argument("--sharkfin", action="store_true", help="scale LR by sqrt(target density / current density)")
    p.add_argument("--anneal", choices=ANNEAL_SHAPES,
                   help="how density falls to the target: the same count of weights a step (linear, the paper's) or "
                        "the same share (geometric); default: the preset's")
    p.add_argument("--out", default="runs/sparse", help="run directory (default runs/sparse)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (with none there: say so, start afresh)")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--prompt", default="def ", type=_utf8, help="prompt for the sample printed at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=commands.train)

    p = sub.add_parser("sample", help="continue a prompt with a trained model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", default="def ", type=_utf8)
    p.add_argument("--bytes", type=_non_negative_int, default=300, help="how many bytes to sample")
    p.add_argument("--temperature", type=_number(0, strict=False), default=0.6)
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument("--raw", action="store_true",
                   help="write the sampled bytes as they are (for piping); by default bytes that are not printable "
                        "text are shown escaped, e.g. \\x07")
    p.set_defaults(run=commands.sample)

    p = sub.add_parser("prune", help="prune a trained model to the circuit of a task, with controls")
    p.add_argument("--task", required=True, help="a task name from minisparse.tasks, e.g. single_double_quote")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--plot", type=_output_file(".png", ".svg", ".pdf"), help="draw the circuit to this image file")
    p.add_argument("--json", type=_output_file(".json"), help="save the circuit as JSON here")
    p.add_argument("--target-loss", type=_number(0, strict=True), default=0.15)
    p.add_argument("--steps", type=_non_negative_int, default=100, help="optimisation steps on the node masks")
    p.add_argument("--k-coef", type=_number(0, strict=False), default=1e-3, help="penalty per kept node")
    p.add_argument("--ablation", default="mean", choices=["mean", "zero"])
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--no-controls", action="store_true", help="skip the random-model and shuffled-label controls")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.set_defaults(run=commands.prune)

    p = sub.add_parser("reproduce", help="the paper's experiment in miniature: train dense and sparse models, prune "
                       "every task, compare circuit sizes at matched loss (resumable)")
    p.add_argument("--out", default="runs/reproduce", help="where models, circuits and the report go")
    p.add_argument("--preset", default="reproduce", choices=sorted(PRESETS))
    p.add_argument("--densities", type=_number(0, strict=True), nargs="+", default=[1.0, 1 / 4, 1 / 16, 1 / 64])
    p.add_argument("--seeds", type=_non_negative_int, nargs="+", default=[0, 1, 2],
                   help="training seeds; seeds after the first train only dense and 1/16")
    p.add_argument("--task", action="append", help="a task to prune (repeatable; default: every registered task)")
    p.add_argument("--prune-seeds", type=_positive_int, default=3,
                   help="pruning seeds per circuit for the stability score")
    p.add_argument("--reuse", action="store_true", help="use the models already trained in --out; train none")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="worker processes, one BLAS thread each (2 on a 2-core CPU)")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=commands.reproduce)

    p = sub.add_parser("explain", help="read a circuit node by node: top-activating contexts, single-node ablations")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--circuit", required=True, help="a circuit JSON written by `minisparse prune --json`")
    p.add_argument("--contexts", type=_positive_int, default=5, help="top-activating contexts per node")
    p.add_argument("--markdown", type=_output_file(".md"), help="also write the explanation as a Markdown table here")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.set_defaults(run=commands.explain)

    p = sub.add_parser("patch", help="causal tests of a circuit: activation patching, attribution patching, direct "
                       "logit attribution, on held-out contrastive pairs")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--circuit", required=True, help="a circuit JSON written by `minisparse prune --json`")
    p.add_argument("--pairs", type=_positive_int, default=32, help="held-out contrastive pairs")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.set_defaults(run=commands.patch)

    p = sub.add_parser("view", help="a circuit in the browser: one self-contained HTML file to explore")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--circuit", required=True, help="a circuit JSON written by `minisparse prune --json`")
    p.add_argument("--out", required=True, type=_output_file(".html"), help="the HTML file to write")
    p.add_argument("--screenshot", type=_output_file(".png"), help="also save a screenshot (needs Chromium)")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.set_defaults(run=commands.view)

    p = sub.add_parser("tour", help="the whole story end to end: weight, activation and circuit sparsity, a sparse "
                       "circuit checked and compared with a dense one")
    p.add_argument("--out", default="runs/tour")
    p.add_argument("--checkpoint", help="tour this weight-sparse checkpoint instead of the cached models")
    p.add_argument("--dense-checkpoint", help="a dense model to compare circuits with (with --checkpoint)")
    p.add_argument("--task", help="default: the course's task on the shipped models, single_double_quote on yours")
    p.add_argument("--fast", action="store_true", help="tiny models trained in seconds (for tests; nothing solved)")
    p.set_defaults(run=commands.tour)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .tasks import load_task_file
        for path in args.tasks_from:
            load_task_file(path)
        args.run(args)
    except KeyboardInterrupt as e:
        print(f"\n{e or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:     # the reader stopped reading (`| head`): stop quietly, as command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ConfigError, CheckpointError, ValueError, KeyError, OSError, RuntimeError) as e:
        print(f"minisparse {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    return 0


def _message(e: Exception) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])               # str(KeyError) would wrap the message in the quotes of its repr
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)


if __name__ == "__main__":
    sys.exit(main())
