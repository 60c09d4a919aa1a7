"""Support for the notebooks in `lessons/`: exercise checks, the superposition toy, the recipes of the lessons' models.

- `exercises`: the notebooks' one import point for the exercise checks (`from minisparse.lessons.exercises import
  check_abstopk`). The checks live by subject in `exercises_sparsity`, `exercises_gradients`, `exercises_circuits` and
  `exercises_superposition`, all built on the one checker of `check` (`ExerciseError`, `compare`).
  `python -m minisparse.lessons.exercises blank lessons/` writes copies of the lessons with the solutions removed
  (`blank`).
- `toy`: the toy model of superposition (lesson 5).
- `models`: the lessons' models (their recipes and corpus), trained once and cached by `minisparse.zoo`.

Nothing is imported here, so that importing one of them does not import the others.
"""
