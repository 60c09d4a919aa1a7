"""Contrastive next-token tasks (DESIGN §5): prompts whose next byte is one of two answers.

A task is what a circuit is pruned for: the pruned model must still pick the right one of two answer bytes at the last
position of every prompt. The built-in tasks follow the paper's Python-code tasks, at the byte level:

| name                       | answers        | the model must notice                                    | max bytes |
|----------------------------|----------------|----------------------------------------------------------|-----------|
| single_double_quote        | `'` vs `"`     | which quote opened the string literal                    | 41        |
| bracket_counting           | `]` vs newline | whether a list is still open after an inner `]`          | 56        |
| set_or_string_fixedvarname | `.` vs space   | `ret = set()` vs `ret = ""` earlier: `ret.add(` / `ret +=` | 62        |
| while_return_true          | `:` vs newline | `while True` vs `return True`                            | 43        |
| dict_or_list               | `}` vs `]`     | which bracket opened the literal                         | 64        |
| def_or_call                | `:` vs newline | `def f(x)` (a definition) vs `f(x)` (a call statement)   | 57        |

"max bytes" is each task's `max_len`: the longest prompt it can make, so every built-in fits a model with n_ctx ≥ 64.

Build your own with the same API:

    from minisparse.tasks import Task, fill, register
    is_or_eq = Task("is_or_eq", "`x is None` (N) vs `x == 0` (0)", answers=("N", "0"),
                    templates={"train": ["if {name} {op} "], "test": ["while {name} {op} "]},
                    make=lambda template, answer, rng: fill(template, rng, op=("is", "==")[answer]))
    is_or_eq.examples(4, "test", seed=1)      # [Example(prompt='while data == ', answer=1), ...]
    register(is_or_eq)                        # optional: makes get_task("is_or_eq") find it

`make(template, answer, rng) -> prompt` writes one prompt whose right answer is `answers[answer]`. Examples come in
*contrastive pairs*: both prompts of a pair are made from the same template and a copy of the same random generator,
so names and strings are shared and only what decides the answer differs. Classes are therefore balanced exactly,
and no filler word can act as a shortcut cue. Train and test use disjoint templates, to check that a circuit found on
one set of contexts carries over to others.

Identifiers and string contents come from the training corpus (the stdlib, `minisparse.data`): the 256 most frequent
assigned local names and short lowercase string literals, so prompts look like the text the model was trained on.
Prompts are therefore reproducible from the seed *on the same corpus* (same Python version).
"""

from __future__ import annotations

import builtins
import collections
import functools
import keyword
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
        templates = self.templates[split]
        out = []
        for _ in range((n + 1) // 2):
            template = templates[rng.integers(len(templates))]
            pair_seed = rng.integers(2**63)
            for answer in (0, 1):   # same template, same generator state: the two prompts differ only where they must
                prompt = self.make(template, answer, np.random.default_rng(pair_seed))
                self._check_prompt(prompt, template)
                out.append(Example(prompt, answer))
        order = rng.permutation(len(out))[:n]
        return [out[i] for i in order]

    def batch(self, n: int, n_ctx: int, split: str = "train", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`n` examples as model input: idx (n, T) int64 and labels (n,) int64 (0/1, an index into `answers`).

        T = min(n_ctx, longest prompt). Every prompt ends at the last position, where the answer is read off:
        shorter prompts are left-padded with `data.SEP` (the byte that separates files in the training stream, so the
        padding reads like the end of a previous file); prompts longer than n_ctx lose their first bytes.
        """
        if not (isinstance(n_ctx, int) and n_ctx > 0):
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        examples = self.examples(n, split, seed)
        encoded = [data.encode(ex.prompt) for ex in examples]
        T = min(n_ctx, max((len(e) for e in encoded), default=1))
        idx = np.full((n, T), data.SEP, dtype=np.int64)
        for row, e in zip(idx, encoded):
            e = e[-T:]
            row[T - len(e):] = e
        return idx, np.array([ex.answer for ex in examples], dtype=np.int64)

    def _check_prompt(self, prompt, template) -> None:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"task {self.name!r}: make({template!r}, ...) must return a non-empty str, got {prompt!r}")
        if len(prompt.encode("utf-8")) > self.max_len:
            raise ValueError(f"task {self.name!r}: prompt of {len(prompt.encode('utf-8'))} bytes exceeds "
                             f"max_len={self.max_len}: {prompt!r}")

    def __repr__(self) -> str:
        return f"Task({self.name!r}, answers={self.answers!r}: {self.description})"


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
        unused = [w for w in words if w not in values.values()]     # so {name} and {short} never coincide
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


# ---------------------------------------------------------------------------------------------------------------------
# Built-in tasks.
#
# Each `make` draws the same random numbers whatever the answer, and only then chooses by the answer, so the two
# prompts of a contrastive pair share every name and element. Each max_len is the worst case with the longest words
# the vocabulary allows (tests/test_tasks.py checks it with such words).

# single_double_quote: the prompt ends inside a string literal; the model must recall which quote opened it.
QUOTES = ("'", '"')

register(Task(
    "single_double_quote", "close a string literal with the quote that opened it: ' vs \"", answers=QUOTES,
    templates={
        "train": ["{name} = {q}{text}", "return {q}{text}", "print({q}{text}", "if {name} == {q}{text}",
                  "raise ValueError({q}{text}", "{name}({name2}, {q}{text}"],
        "test": ["yield {q}{text}", "{name}.append({q}{text}", "assert {name} != {q}{text}", "{name}[{q}{text}",
                 "{name} = {name2}.get({q}{text}"],
    },
    make=lambda template, answer, rng: fill(template, rng, q=QUOTES[answer]),
    max_len=41,
))


# bracket_counting: a list literal that ends, in both classes, right after a `]`. If that `]` closed an inner list,
# the outer one is still open and `]` follows; if it closed the (flat) outer list, the statement ends. An earlier
# element may be a closed inner list in both classes, so "has [[" is no shortcut: the model has to track depth.
def _make_bracket_list(template: str, answer: int, rng: np.random.Generator) -> str:
    def inner() -> str:
        return "[" + ", ".join(_scalar(rng) for _ in range(rng.integers(1, 3))) + "]"

    earlier = [_scalar(rng) for _ in range(rng.integers(0, 3))]
    if earlier and rng.random() < 0.5:
        earlier[rng.integers(len(earlier))] = inner()
    nested_end, flat_end = inner(), _scalar(rng)
    if answer == 0:
        literal = "[" + ", ".join(earlier + [nested_end])            # still open: `]` comes next
    else:
        literal = "[" + ", ".join(earlier + [flat_end]) + "]"       # closed: the statement ends
    return fill(template, rng, list=literal)


register(Task(
    "bracket_counting", "after a `]`: is a nested list still open (]) or is the statement done (newline)",
    answers=("]", "\n"),
    templates={"train": ["{name} = {list}", "return {list}", "self.{name} = {list}"],
               "test": ["yield {list}", "{name}[{num}] = {list}", "{name} += {list}"]},
    make=_make_bracket_list,
    max_len=56,
))


# set_or_string_fixedvarname: the variable is always `ret` (the "fixed variable name"), so only its initialiser, lines
# earlier, says whether it is a set (`ret.add(x)`, answer `.`) or a string (`ret += x`, answer space). The paper's
# tokens were `.add` vs ` +=`; at the byte level the first byte of ` +=` is the space.
FIXED_VARNAME = "ret"


def _make_set_or_string(template: str, answer: int, rng: np.random.Generator) -> str:
    empty_string = ('""', "''")[rng.integers(2)]
    return fill(template, rng, init=("set()", empty_string)[answer], ret=FIXED_VARNAME)


register(Task(
    "set_or_string_fixedvarname", "`ret` was set to set() or \"\": `ret.add(...)` (.) vs `ret += ...` (space)",
    answers=(".", " "),
    templates={
        "train": ["{ret} = {init}\nfor {short} in {name}:\n    {ret}",
                  "{ret} = {init}\nif {name}:\n    {ret}",
                  "    {ret} = {init}\n    for {short} in {name}:\n        {ret}",
                  "{ret} = {init}\n{name} = {name2}\n{ret}"],
        "test": ["{ret} = {init}\nwhile {name}:\n    {ret}",
                 "{ret} = {init}\nfor {short} in {name}:\n    if {short}:\n        {ret}",
                 "    {ret} = {init}\n    {name} = {name2}()\n    {ret}"],
    },
    make=_make_set_or_string,
    max_len=62,
))


# while_return_true: `True` is followed by `:` in `while True:` and by a newline in `return True`.
register(Task(
    "while_return_true", "after `True`: `while True:` (:) vs `return True` (newline)", answers=(":", "\n"),
    templates={
        "train": ["def {name}({name2}):\n    {kw} True", "if {name}:\n    {kw} True",
                  "    {name} = {name2}\n    {kw} True"],
        "test": ["def {name}(self):\n    {kw} True", "else:\n    {kw} True", "try:\n    {kw} True",
                 "    {name}.{name2}()\n    {kw} True"],
    },
    make=lambda template, answer, rng: fill(template, rng, kw=("while", "return")[answer]),
    max_len=43,
))


# dict_or_list: which bracket closes a literal, `}` for `{'k': v, ...` or `]` for `['k', v, ...`. The opening bracket
# is several bytes back (single_double_quote with brackets), and the dict's `:` pairs are a second cue. The list holds
# the same quoted strings and values, so quotes and names say nothing about the answer (an earlier version quoted only
# the dict's keys, and its circuits read the quote instead of the bracket).
def _make_dict_or_list(template: str, answer: int, rng: np.random.Generator) -> str:
    values = [_scalar(rng) for _ in range(rng.integers(1, 4))]
    keys = _distinct(vocabulary().short_names, len(values), rng)
    opener, pair = ("{", ": ") if answer == 0 else ("[", ", ")
    return fill(template, rng, lit=opener + ", ".join(f"'{k}'{pair}{v}" for k, v in zip(keys, values)))


register(Task(
    "dict_or_list", "close a literal with the bracket that opened it: } vs ]", answers=("}", "]"),
    templates={"train": ["{name} = {lit}", "return {lit}", "{name}({lit}"],
               "test": ["yield {lit}", "print({lit}", "{name}[{num}] = {lit}"]},
    make=_make_dict_or_list,
    max_len=64,
))


# def_or_call: `name(args)` at the end of a line is a call statement, but is followed by `:` after `def`.
def _make_def_or_call(template: str, answer: int, rng: np.random.Generator) -> str:
    args = ", ".join(_distinct(vocabulary().short_names, rng.integers(0, 4), rng))
    return fill(template, rng, kw=("def ", "")[answer], args=args)


register(Task(
    "def_or_call", "after `name(args)`: a definition `def f(x):` (:) vs a call statement `f(x)` (newline)",
    answers=(":", "\n"),
    templates={"train": ["{kw}{name}({args})", "    {kw}{name}({args})", "import {name2}\n\n{kw}{name}({args})"],
               "test": ["if {name2}:\n    {kw}{name}({args})", "class {name2}:\n    {kw}{name}({args})"]},
    make=_make_def_or_call,
    max_len=57,
))


# assign_or_compare: `if x =` can only go on as `==`; a statement `x =` is an assignment, followed by a space.
def _make_assign_or_compare(template: tuple[str, str], answer: int, rng: np.random.Generator) -> str:
    fmt, keyword = template
    return fill(fmt, rng, kw=(keyword + " ", "")[answer])


register(Task(
    "assign_or_compare", "after `x =`: a comparison `if x ==` (=) vs an assignment `x = ...` (space)",
    answers=("=", " "),
    templates={"train": [("{kw}{name} =", "if"), ("    {kw}{name} =", "if"), ("{kw}self.{name} =", "if"),
                         ("    {kw}{name}.{name2} =", "elif")],
               "test": [("{kw}{name}.{short} =", "while"), ("        {kw}{name} =", "elif"),
                        ("    {kw}{name}[{num}] =", "if")]},
    make=_make_assign_or_compare,
    max_len=34,
))


# import_or_from: `from os` goes on with ` import ...`; `import os` is a whole statement, so the line ends.
register(Task(
    "import_or_from", "after a module name: `from m` (space, ` import ...`) vs `import m` (newline)",
    answers=(" ", "\n"),
    templates={"train": ["{kw}{module}", "import {module2}\n{kw}{module}", '"""{text}."""\n\n{kw}{module}'],
               "test": ["    {kw}{module}", "try:\n    {kw}{module}",
                        "import {module2}\nimport {module3}\n{kw}{module}"]},
    make=lambda template, answer, rng: fill(template, rng, kw=("from ", "import ")[answer]),
    max_len=53,
))


# paren_or_bracket: a tuple `(a, b` closes with `)`, a list `[a, b` with `]` (dict_or_list with other brackets).
def _make_paren_or_bracket(template: str, answer: int, rng: np.random.Generator) -> str:
    items = ", ".join(_scalar(rng) for _ in range(rng.integers(2, 5)))
    return fill(template, rng, lit="([" [answer] + items)


register(Task(
    "paren_or_bracket", "close a literal with the bracket that opened it: ) (a tuple) vs ] (a list)",
    answers=(")", "]"),
    templates={"train": ["{name} = {lit}", "return {lit}", "for {short} in {lit}"],
               "test": ["yield {lit}", "{name} += {lit}", "if {short} in {lit}"]},
    make=_make_paren_or_bracket,
    max_len=52,
))


# call_paren_counting: bracket_counting with the parentheses of calls. Both classes end right after a `)`; if it
# closed an inner call, the outer call is still open and `)` follows; otherwise the statement ends.
def _make_call_parens(template: str, answer: int, rng: np.random.Generator) -> str:
    def call() -> str:
        return _distinct(vocabulary().short_names, 1, rng)[0] + "(" + _scalar(rng) + ")"

    earlier = [_scalar(rng) for _ in range(rng.integers(0, 3))]
    if earlier and rng.random() < 0.5:
        earlier[rng.integers(len(earlier))] = call()
    nested_end, flat_end = call(), _scalar(rng)
    if answer == 0:
        args = ", ".join(earlier + [nested_end])                    # the outer call is still open: `)` comes next
    else:
        args = ", ".join(earlier + [flat_end]) + ")"               # closed: the statement ends
    return fill(template, rng, args=args)


register(Task(
    "call_paren_counting", "after a `)`: is an outer call still open ()) or is the statement done (newline)",
    answers=(")", "\n"),
    templates={"train": ["{name}({args}", "{name} = {name2}({args}", "    self.{name}({args}"],
               "test": ["return {name}({args}", "print({args}", "    {name}.{name2}({args}"]},
    make=_make_call_parens,
    max_len=64,
))


# list_or_dict_fixedvarname: set_or_string_fixedvarname's twin. `ret = []` is filled with `ret.append(x)` (.),
# `ret = {}` with `ret[k] = v` ([); only the initialiser, lines earlier, tells which.
register(Task(
    "list_or_dict_fixedvarname", "`ret` was set to [] or {}: `ret.append(...)` (.) vs `ret[key] = ...` ([)",
    answers=(".", "["),
    templates={
        "train": ["{ret} = {init}\nfor {short} in {name}:\n    {ret}",
                  "{ret} = {init}\nif {name}:\n    {ret}",
                  "    {ret} = {init}\n    for {short} in {name}:\n        {ret}"],
        "test": ["{ret} = {init}\nwhile {name}:\n    {ret}",
                 "    {ret} = {init}\n    {name} = {name2}()\n    {ret}",
                 "{ret} = {init}\nfor {short} in {name}:\n    if {short}:\n        {ret}"],
    },
    make=lambda template, answer, rng: fill(template, rng, init=("[]", "{}")[answer], ret=FIXED_VARNAME),
    max_len=62,
))


# self_or_cls: a method's first parameter is `cls` under @classmethod and `self` under @property (and in a plain
# method); the decorator is a line above the `def`.
register(Task(
    "self_or_cls", "first parameter after a decorator: @classmethod `def f(cls` (c) vs @property `def f(self` (s)",
    answers=("c", "s"),
    templates={"train": ["    @{deco}\n    def {name}(", "\n    @{deco}\n    def {name}(",
                         "        return {name2}\n\n    @{deco}\n    def {name}("],
               "test": ["class {name2}:\n    @{deco}\n    def {name}(",
                        "    {name2} = {num}\n\n    @{deco}\n    def {name}("]},
    make=lambda template, answer, rng: fill(template, rng, deco=("classmethod", "property")[answer]),
    max_len=63,
))


# dict_key_or_list_item: a string right after `{` is a dict key, followed by `:`; right after `[` it is a list item,
# followed by `,` (or `]`: the task compares `:` with `,`).
register(Task(
    "dict_key_or_list_item", "after a string literal: a dict key `{'k'` (:) vs a list item `['k'` (,)",
    answers=(":", ","),
    templates={"train": ["{name} = {open}'{text}'", "return {open}'{text}'", "{name}({open}'{text}'"],
               "test": ["yield {open}\"{text}\"", "{name}[{num}] = {open}'{text}'", "    {name} = {open}\"{text}\""]},
    make=lambda template, answer, rng: fill(template, rng, open="{["[answer]),
    max_len=40,
))


# except_or_raise: an exception class after `except` is followed by `:` (or ` as`); after `raise`, by `(`.
register(Task(
    "except_or_raise", "after an exception class: `except ValueError` (:) vs `raise ValueError` (()",
    answers=(":", "("),
    templates={"train": ["{kw} {error}", "    {kw} {error}", "        {name}({name2})\n    {kw} {error}"],
               "test": ["        {name} = {num}\n    {kw} {error}", "            return {name}\n        {kw} {error}"]},
    make=lambda template, answer, rng: fill(template, rng, kw=("except", "raise")[answer]),
    max_len=61,
))


# The tasks above, in name order: what a recipe with `task_examples` mixes into its training text, drawn with a seed
# that pruning (seeds 0, 1, 2) does not draw its train-template prompts with. Tasks with few distinct prompts still
# share some of pruning's prompts with the training text, more the more examples are mixed in; the held-out prompts,
# from the test templates, never occur in it (tests/test_tasks.py).
BUILTIN_TASKS = tuple(list_tasks())
TASK_EXAMPLES_SEED = 9


def with_task_examples(corpus: data.Corpus, tasks, per_task: int, seed: int = 0, *, repeat: int = 1) -> data.Corpus:
    """`corpus` with `per_task` examples of each task appended to its training text: each a prompt from the task's
    *train* templates followed by its right answer, shuffled, separated by SEP (the byte between files, with which
    task prompts are left-padded). Validation text is unchanged, and no test-template prompt is ever added, so held-out
    task loss still measures generalisation. The fingerprint covers the added bytes. `repeat` > 1 adds every example
    that many times (more task text for the cost of generating `per_task` examples)."""
    import dataclasses
    import hashlib

    examples = []
    for name in tasks:
        task = get_task(name)
        examples += [data.encode(ex.prompt + task.answers[ex.answer]).tobytes()
                     for ex in task.examples(per_task, "train", seed)]
    examples *= repeat
    np.random.default_rng(seed).shuffle(examples)
    added = bytes([data.SEP]).join(examples)
    train = np.frombuffer(corpus.train.tobytes() + bytes([data.SEP]) + added, dtype=np.uint8)
    fingerprint = hashlib.sha256(corpus.fingerprint.encode() + added).hexdigest()
    return dataclasses.replace(corpus, train=train, fingerprint=fingerprint)
