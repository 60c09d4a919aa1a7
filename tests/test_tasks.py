"""Contrastive tasks: every built-in is balanced, reproducible, split by template, short, and actually right."""

import os
from collections import Counter

import numpy as np
import pytest

from minisparse import data, tasks
from minisparse.tasks import Example, Task, fill, get_task, list_tasks


def _bracket_depth(prompt: str) -> int:
    return prompt.count("[") - prompt.count("]")


def _unclosed_bracket(prompt: str) -> str:
    """The innermost bracket still open at the end of `prompt` (string literals are skipped)."""
    stack, quote = [], None
    for ch in prompt:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            stack.append(ch)
        elif ch in "]})":
            assert stack and "[{(".index(stack.pop()) == "]})".index(ch), prompt
    return stack[-1]


def _set_or_string(prompt: str) -> str:
    first_line, last_line = prompt.split("\n")[0], prompt.split("\n")[-1]
    variable, initialiser = first_line.strip().split(" = ")
    assert variable == last_line.strip() == "ret", prompt
    return {"set()": ".", '""': " ", "''": " "}[initialiser]


def _list_or_dict(prompt: str) -> str:
    first_line, last_line = prompt.split("\n")[0], prompt.split("\n")[-1]
    variable, initialiser = first_line.strip().split(" = ")
    assert variable == last_line.strip() == "ret", prompt
    return {"[]": ".", "{}": "["}[initialiser]


def _paren_depth(prompt: str) -> int:
    return prompt.count("(") - prompt.count(")")


def _first_param(prompt: str) -> str:
    decorator = [line.strip() for line in prompt.split("\n") if line.strip().startswith("@")][-1]
    assert prompt.split("\n")[-1].strip().startswith("def ") and prompt.endswith("("), prompt
    return {"@classmethod": "c", "@property": "s"}[decorator]


# For each built-in: what the right answer is, worked out from the prompt alone by a different route than the
# generator took. A bug that pairs a prompt with the wrong label fails here.
RIGHT_ANSWER = {
    "single_double_quote": lambda p: [c for c in p if c in "'\""][-1] if sum(c in "'\"" for c in p) == 1 else None,
    "bracket_counting": lambda p: {1: "]", 0: "\n"}[_bracket_depth(p)] if p.endswith("]") else None,
    "set_or_string_fixedvarname": lambda p: _set_or_string(p),
    "while_return_true": lambda p: {"while": ":", "return": "\n"}[p.split()[-2]] if p.endswith(" True") else None,
    "dict_or_list": lambda p: {"{": "}", "[": "]"}[_unclosed_bracket(p)],
    "def_or_call": lambda p: ((":" if p.split("\n")[-1].lstrip().startswith("def ") else "\n")
                              if p.endswith(")") else None),
    "assign_or_compare": lambda p: ("=" if p.split("\n")[-1].split()[0] in ("if", "elif", "while") else " ")
    if p.endswith(" =") else None,
    "import_or_from": lambda p: {"from": " ", "import": "\n"}[p.split("\n")[-1].split()[0]],
    "paren_or_bracket": lambda p: _unclosed_bracket(p).translate(str.maketrans("([", ")]")),
    "call_paren_counting": lambda p: {1: ")", 0: "\n"}[_paren_depth(p)] if p.endswith(")") else None,
    "list_or_dict_fixedvarname": _list_or_dict,
    "self_or_cls": _first_param,
    "dict_key_or_list_item": lambda p: {"{": ":", "[": ","}[_unclosed_bracket(p)],
    "except_or_raise": lambda p: {"except": ":", "raise": "("}[p.split("\n")[-1].split()[0]]
    if p.endswith("Error") else None,
}
BUILTIN = sorted(RIGHT_ANSWER)


def test_the_builtins_are_registered():
    assert set(BUILTIN) <= set(list_tasks())
    assert len(BUILTIN) >= 14


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("split", tasks.SPLITS)
def test_builtin_prompts_have_the_right_answer(name, split):
    task = get_task(name)
    for ex in task.examples(300, split, seed=0):
        assert RIGHT_ANSWER[name](ex.prompt) == task.answers[ex.answer], ex


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_answers_are_two_distinct_single_bytes(name):
    task = get_task(name)
    assert [len(data.encode(a)) for a in task.answers] == [1, 1]
    assert task.answers[0] != task.answers[1]
    assert task.answer_ids.tolist() == [data.encode(a)[0] for a in task.answers]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_classes_are_balanced(name):
    task = get_task(name)
    for split in tasks.SPLITS:
        assert Counter(ex.answer for ex in task.examples(200, split, seed=1)) == {0: 100, 1: 100}
        odd = Counter(ex.answer for ex in task.examples(101, split, seed=1))
        assert abs(odd[0] - odd[1]) == 1


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_examples_are_reproducible_from_the_seed(name):
    task = get_task(name)
    assert task.examples(40, "train", seed=5) == task.examples(40, "train", seed=5)
    assert task.examples(40, "train", seed=5) != task.examples(40, "train", seed=6)
    idx, labels = task.batch(40, 64, "test", seed=5)
    idx2, labels2 = task.batch(40, 64, "test", seed=5)
    assert np.array_equal(idx, idx2) and np.array_equal(labels, labels2)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_train_and_test_come_from_disjoint_templates(name):
    task = get_task(name)
    train, test = task.templates["train"], task.templates["test"]
    assert train and test and not set(train) & set(test)
    train_prompts = {ex.prompt for ex in task.examples(400, "train", seed=0)}
    test_prompts = {ex.prompt for ex in task.examples(400, "test", seed=0)}
    assert not train_prompts & test_prompts


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_prompts_fit_a_64_byte_context(name):
    task = get_task(name)
    assert task.max_len <= 64
    examples = task.examples(200, "train", seed=2)
    idx, labels = task.batch(200, 64, "train", seed=2)
    assert idx.shape == (200, max(len(data.encode(ex.prompt)) for ex in examples)) and idx.dtype == np.int64
    for row, ex, label in zip(idx, examples, labels):
        assert label == ex.answer
        n = len(data.encode(ex.prompt))
        assert data.decode(row[-n:]) == ex.prompt              # nothing cropped; the prompt ends at the last position
        assert (row[:-n] == data.SEP).all()                    # padding only on the left


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_max_len_holds_with_the_longest_words(name, monkeypatch):
    # The corpus decides which words appear; with the longest words the vocabulary allows, every prompt must still
    # fit the task's max_len (examples() raises otherwise).
    longest = tasks.Vocabulary(names=tuple(f"n{i:02d}" + "x" * 7 for i in range(40)),
                               short_names=tuple(f"s{i:02d}xx" for i in range(40)),
                               strings=tuple(f"t{i:02d}" + "y" * 9 for i in range(40)),
                               modules=tuple(f"m{i:02d}" + "z" * 7 for i in range(40)),
                               errors=tuple(f"E{i:02d}" + "w" * 8 + "Error" for i in range(40)))
    monkeypatch.setattr(tasks, "vocabulary", lambda: longest)
    task = get_task(name)
    for split in tasks.SPLITS:
        assert max(len(data.encode(ex.prompt)) for ex in task.examples(2000, split, seed=0)) <= task.max_len


def test_batch_left_pads_and_crops_to_keep_the_end():
    task = get_task("while_return_true")
    examples = task.examples(16, "test", seed=0)
    idx, _ = task.batch(16, 8, "test", seed=0)
    assert idx.shape == (16, 8)
    for row, ex in zip(idx, examples):
        assert data.decode(row) == ex.prompt[-8:] == ("ile True" if ex.answer == 0 else "urn True")


def test_unknown_task_error_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        get_task("no_such_task")
    for name in BUILTIN:
        assert name in str(err.value)


# ---------------------------------------------------------------------------------------------------------------------
# A user's own task goes through the same API.

def _is_or_eq() -> Task:
    return Task("is_or_eq", "`x is None` (N) vs `x == 0` (0)", answers=("N", "0"),
                templates={"train": ["if {name} {op} "], "test": ["while {name} {op} "]},
                make=lambda template, answer, rng: fill(template, rng, op=("is", "==")[answer]), max_len=24)


def test_user_defined_task_works_like_a_builtin(monkeypatch):
    task = _is_or_eq()
    examples = task.examples(10, "test", seed=1)
    assert all(isinstance(ex, Example) and ex.prompt.startswith("while ") for ex in examples)
    assert all(ex.prompt.endswith(("is ", "== ")[ex.answer]) for ex in examples)
    assert Counter(ex.answer for ex in examples) == {0: 5, 1: 5}
    idx, labels = task.batch(10, 32, "test", seed=1)
    assert idx.shape[0] == 10 and labels.tolist() == [ex.answer for ex in examples]

    monkeypatch.setattr(tasks.task, "_REGISTRY", dict(tasks.task._REGISTRY))   # keep the global registry clean
    tasks.register(task)
    assert get_task("is_or_eq") is task and "is_or_eq" in list_tasks()
    with pytest.raises(ValueError, match="already registered"):
        tasks.register(_is_or_eq())


@pytest.mark.parametrize("change, message", [
    (dict(answers=("é", "0")), "single-byte"),
    (dict(answers=("N", "N")), "different"),
    (dict(templates={"train": ["a {op}"], "test": ["a {op}"]}), "disjoint"),
    (dict(templates={"train": ["a {op}"]}), "exactly the keys"),
    (dict(templates={"train": ["a {op}"], "test": []}), "no test templates"),
])
def test_a_badly_built_task_is_refused_with_the_reason(change, message):
    kwargs = dict(name="bad", description="", answers=("N", "0"),
                  templates={"train": ["if {op}"], "test": ["while {op}"]},
                  make=lambda template, answer, rng: template.format(op="is"))
    with pytest.raises(ValueError, match=message):
        Task(**{**kwargs, **change})


def test_a_prompt_longer_than_max_len_is_refused():
    task = Task("long", "", answers=("a", "b"), templates={"train": ["x" * 10], "test": ["y"]},
                make=lambda template, answer, rng: template, max_len=5)
    with pytest.raises(ValueError, match="exceeds max_len=5"):
        task.examples(2)


def test_examples_do_not_depend_on_string_hashing():
    # Set iteration order changes with PYTHONHASHSEED; the examples of a seed must not.
    import subprocess
    import sys
    script = ("from minisparse.tasks import Task, fill, get_task\n"
              "t = Task('t', '', answers=('a', 'b'), templates={'train': ['{num} {text} {name}{x}'], 'test': ['-']},\n"
              "         make=lambda template, answer, rng: fill(template, rng, x='ab'[answer]))\n"
              "print(t.examples(8), get_task('single_double_quote').examples(8))\n")
    runs = [subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": str(h)},
                             stdout=subprocess.PIPE, text=True) for h in range(4)]   # in parallel: ~1 s in all
    outputs = {run.communicate()[0] for run in runs}
    assert [run.returncode for run in runs] == [0] * 4 and len(outputs) == 1


def test_task_examples_never_hold_a_held_out_prompt():
    from minisparse.data import Corpus
    from minisparse.tasks import BUILTIN_TASKS, TASK_EXAMPLES_SEED, with_task_examples

    corpus = Corpus(root="-", train=np.zeros(4, np.uint8), val=np.zeros(4, np.uint8), fingerprint="-",
                    train_files=(), val_files=())
    mixed = with_task_examples(corpus, BUILTIN_TASKS, 300, TASK_EXAMPLES_SEED).train.tobytes()
    trained = set(mixed.split(b"\0"))
    for name in BUILTIN_TASKS:
        task = get_task(name)
        held_out = {data.encode(ex.prompt + task.answers[ex.answer]).tobytes() for ex in task.examples(64, "test")}
        assert not held_out & trained, name


def test_task_text_is_cached_by_what_it_depends_on_and_a_damaged_cache_is_drawn_again(tmp_path, monkeypatch):
    from minisparse.data import load_corpus
    from minisparse.tasks import task as task_module
    from minisparse.tasks import with_task_examples

    monkeypatch.setenv("MINISPARSE_CACHE", str(tmp_path))
    corpus = load_corpus()
    first = with_task_examples(corpus, ["while_return_true"], 30, seed=4)
    (cached,) = (tmp_path / "task_text").iterdir()
    draw = task_module._task_text

    def not_drawn(*args):
        raise AssertionError("drawn again although cached")

    monkeypatch.setattr(task_module, "_task_text", not_drawn)   # the same settings: read back, never drawn
    assert with_task_examples(corpus, ["while_return_true"], 30, seed=4).fingerprint == first.fingerprint
    monkeypatch.setattr(task_module, "_task_text", draw)
    assert with_task_examples(corpus, ["while_return_true"], 31, seed=4).fingerprint != first.fingerprint
    assert with_task_examples(corpus, ["while_return_true"], 30, seed=5).fingerprint != first.fingerprint
    blob = bytearray(cached.read_bytes())
    blob[-2] ^= 1                                              # a flipped bit in the cached examples
    cached.write_bytes(bytes(blob))
    again = with_task_examples(corpus, ["while_return_true"], 30, seed=4)
    assert again.fingerprint == first.fingerprint and np.array_equal(again.train, first.train)
    assert cached.read_bytes() != bytes(blob)                  # and the damaged file replaced
