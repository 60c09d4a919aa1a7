"""What each `minisparse` command does, once `cli` has parsed and checked its arguments: one function per command."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from .backend import resolve_backend
from .config import preset


def train(args) -> None:
    from .checkpoint import load
    from .rundir import MODEL_FILE
    from .sample import generate_bytes, printable
    from .train import train

    model_cfg, train_cfg = preset(args.preset)
    model_cfg = dataclasses.replace(model_cfg, **{k: v for k, v in (("afrac", args.afrac), ("pos_emb", args.pos_emb))
                                                  if v is not None})
    overrides = {"weight_density": args.density, "steps": args.steps, "seed": args.seed, "lr": args.lr,
                 "batch_size": args.batch_size, "sharkfin": args.sharkfin or None, "anneal_shape": args.anneal}
    train_cfg = dataclasses.replace(train_cfg, **{k: v for k, v in overrides.items() if v is not None})
    backend, why = resolve_backend(args.backend)
    print(f"{why}.", file=sys.stderr)
    out = run_dir(args.out)
    if args.resume and not (out / MODEL_FILE).exists():
        print(f"--resume: no checkpoint in {out} to resume; starting a fresh run", file=sys.stderr)
    result = train(model_cfg, train_cfg, out, backend=backend, resume=args.resume, progress=not args.no_progress)
    print(f"step {result.step}: validation loss {result.val_bits_per_byte:.3f} bits per byte "
          f"({result.val_loss:.3f} nats); checkpoint {out / MODEL_FILE}")
    model = load(out / MODEL_FILE, backend="numpy")
    continuation = generate_bytes(model, args.prompt, n_bytes=300, temperature=0.6, seed=0)
    print("sample:\n" + printable(args.prompt.encode() + continuation))


def sample(args) -> None:
    from .checkpoint import load
    from .sample import generate_bytes, printable

    backend, _ = resolve_backend(args.backend)
    model = load(args.checkpoint, backend=backend)
    text = args.prompt.encode() + generate_bytes(model, args.prompt, n_bytes=args.bytes,
                                                 temperature=args.temperature, seed=args.seed)
    if args.raw:
        sys.stdout.buffer.write(text + b"\n")
        sys.stdout.flush()
    else:
        print(printable(text))


def prune(args) -> None:
    from .circuits import prune_report

    circuit = prune_report(args.checkpoint, args.task, backend=resolve_backend(args.backend)[0], json_path=args.json,
                           controls=not args.no_controls, target_loss=args.target_loss, steps=args.steps,
                           k_coef=args.k_coef, ablation=args.ablation, seed=args.seed)
    if args.plot:
        from .viz import draw_circuit
        draw_circuit(circuit, args.plot)
        print(f"circuit drawn to {args.plot}")


def reproduce(args) -> None:
    from .reproduce import Experiment, Reproduction

    backend, why = resolve_backend(args.backend)
    print(f"{why}.", file=sys.stderr)
    experiment = Experiment(preset=args.preset, seeds=tuple(args.seeds), tasks=tuple(args.task or ()),
                            task_files=tuple(args.tasks_from), densities=tuple(args.densities),
                            prune_seeds=args.prune_seeds, backend=backend)
    Reproduction(experiment, run_dir(args.out), jobs=args.jobs, progress=not args.no_progress).run(reuse=args.reuse)


def explain(args) -> None:
    from .checkpoint import load
    from .circuits import Circuit
    from .circuits.explain import explain, explanations_markdown
    from .circuits.heads import head_attention
    from .params import weights_digest
    from .rundir import write_text_atomic
    from .tasks import get_task

    circuit = Circuit.load(args.circuit)
    model = load(args.checkpoint, backend=resolve_backend(args.backend)[0])
    pruned_on = circuit.settings.get("model_digest")
    if pruned_on and pruned_on != weights_digest(model.numpy_params()):
        print(f"warning: {args.circuit} was pruned on another model than {args.checkpoint} (weights digest "
              f"{pruned_on}); its nodes are explained in this model all the same", file=sys.stderr)
    explanations = explain(model, circuit, get_task(circuit.task), n_contexts=args.contexts)
    print(f"{circuit.task}: {circuit.n_nodes} nodes, {circuit.n_edges} edges; per node: top-activating contexts on "
          "validation text (⟦the byte it fires on⟧), and the task loss lost when it alone is ablated")
    for e in explanations:
        print(e.summary())
    for head in head_attention(model, circuit, get_task(circuit.task)):
        print(head.summary())
    if args.markdown:
        write_text_atomic(Path(args.markdown), explanations_markdown(explanations, args.contexts) + "\n")
        print(f"table written to {args.markdown}")


def patch(args) -> None:
    from .checkpoint import load
    from .circuits import Circuit
    from .circuits.patching import patch_report, patch_report_text
    from .tasks import get_task

    circuit = Circuit.load(args.circuit)
    model = load(args.checkpoint, backend=resolve_backend(args.backend)[0])
    print(patch_report_text(patch_report(model, circuit, get_task(circuit.task), n_pairs=args.pairs)))


def view(args) -> None:
    from .checkpoint import load
    from .circuits import Circuit
    from .circuits.viewer import screenshot, write_viewer
    from .tasks import get_task

    circuit = Circuit.load(args.circuit)
    model = load(args.checkpoint, backend=resolve_backend(args.backend)[0])
    print(f"circuit viewer written to {write_viewer(model, circuit, get_task(circuit.task), args.out)}: open it in any "
          "browser")
    if args.screenshot:
        done = screenshot(Path(args.out), Path(args.screenshot))
        if done.returncode != 0 or not Path(args.screenshot).exists():
            raise RuntimeError(f"Chromium could not take the screenshot: {done.stderr.strip().splitlines()[-1:]}")
        print(f"screenshot saved to {args.screenshot}")


def tour(args) -> None:
    from .tour import tour

    tour(run_dir(args.out), checkpoint=args.checkpoint, dense_checkpoint=args.dense_checkpoint, task=args.task,
         fast=args.fast)


def run_dir(out: str) -> Path:
    # refused here, naming the flag, rather than as "[Errno 17] File exists" from deep inside
    if not out:
        raise ValueError("--out is empty; name a directory for the run's files")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file; it must be a directory (created if missing) for the run's files")
    return path
