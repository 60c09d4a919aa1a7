"""Contrastive next-token tasks (DESIGN §5): prompts whose next byte is one of two answers.

A task is what a circuit is pruned for: the pruned model must still pick the right one of two answer bytes at the last
position of every prompt. The built-in tasks (14, `minisparse.tasks.catalogue`, listed by `list_tasks()`) follow the
paper's Python-code tasks, at the byte level; six of them:

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

The machinery is `minisparse.tasks.task`; the built-in tasks are `minisparse.tasks.catalogue`, registered on import.
"""

from . import catalogue  # noqa: F401  (registers the built-in tasks)
from .task import (
    SPLITS,
    TASK_EXAMPLES_SEED,
    Example,
    Task,
    Vocabulary,
    fill,
    get_task,
    list_tasks,
    load_task_file,
    register,
    vocabulary,
    with_task_examples,
)

# The built-in tasks, in name order: what a recipe with `task_examples` mixes into its training text.
BUILTIN_TASKS = tuple(list_tasks())

__all__ = ["BUILTIN_TASKS", "SPLITS", "TASK_EXAMPLES_SEED", "Example", "Task", "Vocabulary", "fill", "get_task",
           "list_tasks", "load_task_file", "register", "vocabulary", "with_task_examples"]
