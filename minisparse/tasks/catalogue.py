"""The built-in tasks, after the paper's Python-code tasks, at the byte level (the table is in the package's docstring).

Each `make` draws the same random numbers whatever the answer, and only then chooses by the answer, so the two prompts
of a contrastive pair share every name and element. Each max_len is the worst case with the longest words the
vocabulary allows (tests/test_tasks.py checks it with such words).
"""

from __future__ import annotations

import numpy as np

from .task import Task, _distinct, _scalar, fill, register, vocabulary

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


def _ending_after_a_close(answer: int, nested, close: str, rng: np.random.Generator) -> str:
    """The counting tasks' elements, which end right after a `close` either way: for answer 0 the last element is a
    `nested()` one, so the outer one is still open (`close` comes next); for answer 1 the outer one is closed after a
    flat last element. An earlier element may be nested in both classes, so the model has to track depth."""
    earlier = [_scalar(rng) for _ in range(rng.integers(0, 3))]
    if earlier and rng.random() < 0.5:
        earlier[rng.integers(len(earlier))] = nested()
    nested_end, flat_end = nested(), _scalar(rng)       # both drawn either way: the same draws for both answers
    return ", ".join(earlier + [nested_end]) if answer == 0 else ", ".join(earlier + [flat_end]) + close


# bracket_counting: a list literal that ends, in both classes, right after a `]`. If that `]` closed an inner list,
# the outer one is still open and `]` follows; if it closed the (flat) outer list, the statement ends. An earlier
# element may be a closed inner list in both classes, so "has [[" is no shortcut: the model has to track depth.
def _make_bracket_list(template: str, answer: int, rng: np.random.Generator) -> str:
    def inner() -> str:
        return "[" + ", ".join(_scalar(rng) for _ in range(rng.integers(1, 3))) + "]"

    return fill(template, rng, list="[" + _ending_after_a_close(answer, inner, "]", rng))


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
# the same quoted strings and values, so quotes and names say nothing about the answer (with quotes on the dict's keys
# alone, a circuit could read the quote instead of the bracket).
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

    return fill(template, rng, args=_ending_after_a_close(answer, call, ")", rng))


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
