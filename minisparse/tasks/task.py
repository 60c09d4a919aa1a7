"""The task machinery: `Task` and its contrastive examples, the registry, and the corpus words prompts are filled
with (the catalogue of built-in tasks is `catalogue.py`; the package's docstring says how to build your own)."""

from __future__ import annotations

import builtins
import collections
import functools
import keyword
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minisparse import data

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: int          # index into Task.answers: 0 or 1


@dataclass(frozen=True, eq=False)
class Task:
    """A named set of contrastive prompts whose next byte is `answers[0]` or `answers[1]`.

    templates: {"train": [...], "test": [...]}, disjoint, each non-empty. A template is whatever `make` understands;
        the built-in tasks use format strings.
    make(template, answer, rng) -> prompt: a prompt for which `answers[answer]` is the right next byte. It should draw
        all its randomness from `rng`, so that examples are reproducible from the seed.
    max_len: the longest prompt in bytes `make` may return; longer ones are refused, so the number is a checked promise.
    """

    name: str
    description: str
    answers: tuple[str, str]
    templates: Mapping[str, Sequence[Any]]
    make: Callable[[Any, int, np.random.Generator], str]
    max_len: int = 64

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name):
            raise ValueError(f"Task.name must be a non-empty string, got {self.name!r}")
        answers = tuple(self.answers)
        if (len(answers) != 2 or not all(isinstance(a, str) and len(a.encode("utf-8")) == 1 for a in answers)
                or answers[0] == answers[1]):
            raise ValueError(f"task {self.name!r}: answers must be two different single-byte strings "
                             f"(each is one token of the byte-level model), got {self.answers!r}")
        if not isinstance(self.templates, Mapping) or set(self.templates) != set(SPLITS):
            raise ValueError(f"task {self.name!r}: templates must be a mapping with exactly the keys {list(SPLITS)}, "
                             f"got {self.templates!r}")
        templates = {split: tuple(self.templates[split]) for split in SPLITS}
        for split in SPLITS:
            if not templates[split]:
                raise ValueError(f"task {self.name!r}: no {split} templates")
        shared = [t for t in templates["train"] if t in templates["test"]]
        if shared:
            raise ValueError(f"task {self.name!r}: train and test templates must be disjoint; both have {shared!r}")
        if not callable(self.make):
            raise ValueError(f"task {self.name!r}: make must be callable as make(template, answer, rng) -> str")
        if not (isinstance(self.max_len, int) and self.max_len > 0):
            raise ValueError(f"task {self.name!r}: max_len must be a positive integer, got {self.max_len!r}")
        object.__setattr__(self, "answers", answers)
        object.__setattr__(self, "templates", templates)

    @property
    def answer_ids(self) -> np.ndarray:
        """(2,) int64: the byte ids of the two answers, the logits the task loss compares."""
        return np.array([ord(a.encode("utf-8")) for a in self.answers], dtype=np.int64)

    def examples(self, n: int, split: str = "train", seed: int = 0) -> list[Example]:
        """`n` examples from `split`'s templates, in shuffled contrastive pairs; a pure function of (n, split, seed)."""
        _check_split(split)
        if not (isinstance(n, int) and n >= 0):
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        out = [ex for pair in self._pairs(rng, (n + 1) // 2, split) for ex in pair]
        order = rng.permutation(len(out))[:n]
        return [out[i] for i in order]

    def pairs(self, n: int, split: str = "train", seed: int = 0) -> list[tuple[Example, Example]]:
        """`n` contrastive pairs (answer 0, answer 1), in the order `examples` draws them before shuffling."""
        _check_split(split)
        return self._pairs(np.random.default_rng([seed, SPLITS.index(split)]), n, split)

    def _pairs(self, rng: np.random.Generator, n: int, split: str) -> list[tuple[Example, Example]]:
        templates, out = self.templates[split], []
        for _ in range(n):
            template = templates[rng.integers(len(templates))]
            pair_seed = rng.integers(2**63)
            pair = []
            for answer in (0, 1):   # same template, same generator state: the two prompts differ only where they must
                prompt = self.make(template, answer, np.random.default_rng(pair_seed))
                self._check_prompt(prompt, template)
                pair.append(Example(prompt, answer))
            out.append(tuple(pair))
        return out

    def batch(self, n: int, n_ctx: int, split: str = "train", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`n` examples as model input: idx (n, T) int64 and labels (n,) int64 (0/1, an index into `answers`).

        T = min(n_ctx, longest prompt). Every prompt ends at the last position, where the answer is read off:
        shorter prompts are left-padded with `data.SEP` (the byte that separates files in the training stream, so the
        padding reads like the end of a previous file); prompts longer than n_ctx lose their first bytes.
        """
        if not (isinstance(n_ctx, int) and n_ctx > 0):
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        examples = self.examples(n, split, seed)
        return prompts_to_idx([ex.prompt for ex in examples], n_ctx), np.array([ex.answer for ex in examples],
                                                                             dtype=np.int64)

    def _check_prompt(self, prompt, template) -> None:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"task {self.name!r}: make({template!r}, ...) must return a non-empty str, got {prompt!r}")
        if len(prompt.encode("utf-8")) > self.max_len:
            raise ValueError(f"task {self.name!r}: prompt of {len(prompt.encode('utf-8'))} bytes exceeds "
                             f"max_len={self.max_len}: {prompt!r}")

    def __repr__(self) -> str:
        return f"Task({self.name!r}, answers={self.answers!r}: {self.description})"


def prompts_to_idx(prompts: list[str], n_ctx: int) -> np.ndarray:
    """Prompts as model input [n, T], each ending at the last position (see `Task.batch`)."""
    encoded = [data.encode(p)[-n_ctx:] for p in prompts]       # a prompt longer than n_ctx loses its first bytes
    T = max((len(e) for e in encoded), default=1)
    idx = np.full((len(prompts), T), data.SEP, dtype=np.int64)
    for row, e in zip(idx, encoded):
        row[T - len(e):] = e
    return idx


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Registry.

_REGISTRY: dict[str, Task] = {}


def register(task: Task, *, replace: bool = False) -> Task:
    """Make `task` available to `get_task` (and so to the command line) under its name."""
    if task.name in _REGISTRY and not replace:
        raise ValueError(f"a task named {task.name!r} is already registered; pass replace=True to replace it")
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks are {list_tasks()}") from None


def list_tasks() -> list[str]:
    return sorted(_REGISTRY)


_LOADED_FILES: dict[str, list[str]] = {}     # resolved path -> the task names it registered


def load_task_file(path) -> list[str]:
    """Run a Python file that defines tasks and `register`s them (what `--tasks-from` does on the command line); return
    the names it registered. A file is run once per process; loading it again returns the same names. The file is
    ordinary Python, run like a script: pass only files you trust."""
    import runpy
    from pathlib import Path

    path = Path(path)
    key = str(path.resolve())
    if key in _LOADED_FILES and all(name in _REGISTRY for name in _LOADED_FILES[key]):
        return _LOADED_FILES[key]
    if not path.is_file():
        raise FileNotFoundError(f"no task file at {path}; it should be a .py file that calls "
                                "minisparse.tasks.register(Task(...))")
    before = set(_REGISTRY)
    try:
        runpy.run_path(str(path), run_name="minisparse_tasks")
    except SyntaxError as e:
        raise ValueError(f"{path}, line {e.lineno}: {e.msg}; fix the task file") from None
    except Exception as e:      # the user's own code failed: say where, in one line
        raise ValueError(f"{path} failed while registering its tasks: {type(e).__name__}: {e}") from None
    added = sorted(set(_REGISTRY) - before)
    if not added:
        raise ValueError(f"{path} registered no task; call minisparse.tasks.register(Task(...)) in it")
    _LOADED_FILES[key] = added
    return added


# ---------------------------------------------------------------------------------------------------------------------
# Words from the corpus.

@dataclass(frozen=True)
class Vocabulary:
    names: tuple[str, ...]     # identifiers the stdlib assigns to, most frequent first
    short_names: tuple[str, ...]
    strings: tuple[str, ...]   # contents of short lowercase string literals, most frequent first
    modules: tuple[str, ...] = ()  # top-level module names the stdlib imports (up to 10 bytes), most frequent first
    errors: tuple[str, ...] = ()   # exception classes the stdlib raises or catches (up to 16 bytes), commonest first


_NOT_NAMES = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | {"self", "cls", "ret"}
_VOCAB_SIZE = 256


@functools.cache
def vocabulary() -> Vocabulary:
    """Names and string contents harvested by regex from the training corpus (~0.1 s after the corpus is loaded;
    once per process)."""
    text = data.load_corpus().train.tobytes()
    assigned = collections.Counter(m.decode() for m in re.findall(rb"(?m)^[ \t]*([a-z][a-z0-9_]{1,9}) = ", text))
    quoted = collections.Counter(m.decode() for _, m in re.findall(rb"""(['"])([a-z][a-z ]{1,11})\1""", text))
    names = _most_common([w for w in assigned.items() if w[0] not in _NOT_NAMES])
    strings = _most_common([w for w in quoted.items() if not w[0].endswith(" ")])
    imported = collections.Counter(m.decode() for m in re.findall(rb"(?m)^(?:import|from) ([a-z_][a-z0-9_]{1,9})\b",
                                                                 text))
    modules = _most_common([w for w in imported.items() if w[0] not in _NOT_NAMES])
    errors = _most_common(list(collections.Counter(
        m.decode() for m in re.findall(rb"(?:except|raise) ([A-Z][A-Za-z]{1,10}Error)\b", text)).items()))[:32]
    return Vocabulary(names=names, short_names=tuple(w for w in names if len(w) <= 5), strings=strings,
                      modules=modules, errors=errors)


def _most_common(counts: list[tuple[str, int]]) -> tuple[str, ...]:
    counts.sort(key=lambda wc: (-wc[1], wc[0]))     # ties broken alphabetically, so the pick is deterministic
    return tuple(w for w, _ in counts[:_VOCAB_SIZE])


def fill(template: str, rng: np.random.Generator, **given: str) -> str:
    """Fill a format-string template. Slots passed in `given` are used as given; {name}, {name2}, ... get distinct
    corpus identifiers (up to 10 bytes), {short}, {short2}, ... distinct short ones (up to 5), {module}, {module2}, ...
    distinct names of modules the corpus imports (up to 10 bytes), {error}, ... exception classes it raises or catches
    (up to 16 bytes), {text} a corpus string's content (up to 12 bytes,
    lowercase letters and spaces), {num} an integer 0..99."""
    vocab = vocabulary()
    # Sorted, never set order: the order of draws from `rng` must not depend on string hashing (PYTHONHASHSEED).
    slots = sorted({field for _, field, _, _ in string.Formatter().parse(template) if field} - set(given))
    values = dict(given)
    for prefix, words in (("name", vocab.names), ("short", vocab.short_names), ("module", vocab.modules),
                          ("error", vocab.errors)):
        wanted = [slot for slot in slots if slot.startswith(prefix)]
        used = set(values.values())
        unused = [w for w in words if w not in used]     # so {name} and {short} never coincide
        values.update(zip(wanted, _distinct(unused, len(wanted), rng)))
    for slot in [slot for slot in slots if slot not in values]:
        if slot == "text":
            values[slot] = vocab.strings[rng.integers(len(vocab.strings))]
        elif slot == "num":
            values[slot] = str(rng.integers(100))
        else:
            raise KeyError(f"template {template!r} has a slot {{{slot}}} that fill() cannot fill; "
                           f"pass it as {slot}=...")
    return template.format(**values)


def _distinct(words: Sequence[str], k: int, rng: np.random.Generator) -> list[str]:
    return [words[i] for i in rng.choice(len(words), size=k, replace=False)]


def _scalar(rng: np.random.Generator) -> str:
    """A short list element: a number or a short identifier (up to 5 bytes)."""
    number, name = str(rng.integers(100)), _distinct(vocabulary().short_names, 1, rng)[0]
    return number if rng.random() < 0.5 else name


# What a recipe with `task_examples` mixes into its training text is drawn with a seed that pruning (seeds 0, 1, 2) does
# not draw its train-template prompts with; the held-out prompts, from the test templates, never occur in it
# (tests/test_tasks.py).
TASK_EXAMPLES_SEED = 9


def with_task_examples(corpus: data.Corpus, tasks, per_task: int, seed: int = 0, *, repeat: int = 1) -> data.Corpus:
    """`corpus` with `per_task` examples of each task appended to its training text: each a prompt from the task's
    *train* templates followed by its right answer, shuffled, separated by SEP (the byte between files, with which
    task prompts are left-padded). Validation text is unchanged, and no test-template prompt is ever added, so held-out
    task loss still measures generalisation. The fingerprint covers the added bytes. `repeat` > 1 adds every example
    that many times (more task text for the cost of generating `per_task` examples).

    Drawing the examples takes ~5 s at the `reproduce` recipe's counts on a quiet 2-core machine (more under load), at
    every training start, evaluation and prune of a recipe model, so the added bytes are cached (in minisparse's cache
    folder, `task_text/`), keyed by everything they depend on, the task code included, and checked against their digest
    when read back."""
    import dataclasses
    import hashlib

    added = _cached_task_text(tuple(tasks), per_task, seed, repeat)
    train = np.frombuffer(corpus.train.tobytes() + bytes([data.SEP]) + added, dtype=np.uint8)
    fingerprint = hashlib.sha256(corpus.fingerprint.encode() + added).hexdigest()
    return dataclasses.replace(corpus, train=train, fingerprint=fingerprint)


def _task_text(tasks: tuple[str, ...], per_task: int, seed: int, repeat: int) -> bytes:
    examples = []
    for name in tasks:
        task = get_task(name)
        examples += [data.encode(ex.prompt + task.answers[ex.answer]).tobytes()
                     for ex in task.examples(per_task, "train", seed)]
    examples *= repeat
    np.random.default_rng(seed).shuffle(examples)
    return bytes([data.SEP]).join(examples)


def _source_file(fn) -> str:
    # the text of the file that defines `fn`, or "" for a callable without one (a partial, a builtin)
    import inspect

    try:
        return Path(inspect.getsourcefile(fn)).read_text()
    except (TypeError, OSError):
        return ""


def _cached_task_text(tasks: tuple[str, ...], per_task: int, seed: int, repeat: int) -> bytes:
    import hashlib
    import json

    from minisparse.rundir import cache_dir, replace_atomically

    # the examples depend on the vocabulary (harvested from the stdlib corpus, whatever `corpus` is), on each task's
    # answers, templates and length, and on the code that draws them: this file and the file defining each task's
    # `make` (built-in, registered or loaded from a task file alike)
    described = [[t.name, t.answers, repr(t.templates), t.max_len, _source_file(t.make)] for t in map(get_task, tasks)]
    key = hashlib.sha256(json.dumps([data.load_corpus().fingerprint, described, per_task, seed, repeat,
                                     _source_file(fill)]).encode()).hexdigest()
    path = cache_dir() / "task_text" / f"{key[:32]}.bin"
    if path.is_file():
        blob = path.read_bytes()
        digest, added = blob[:64], blob[64:]
        if hashlib.sha256(added).hexdigest().encode() == digest:
            return added           # else damaged: drawn again below, and the file replaced
    added = _task_text(tasks, per_task, seed, repeat)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda tmp: tmp.write_bytes(hashlib.sha256(added).hexdigest().encode() + added))
    except OSError:
        pass                       # a read-only cache only costs the time to draw them again
    return added

