"""Support for the notebooks in `lessons/`: exercise checks, the course's models, what a lesson computes with.

- `exercises`: the notebooks' one import point for the exercise checks (`from minisparse.lessons.exercises import
  check_abstopk`). The checks live by subject in `exercises_sparsity`, `exercises_gradients`, `exercises_circuits` and
  `exercises_superposition`, all built on the one checker of `check` (`ExerciseError`, `compare`).
  `python -m minisparse.lessons.exercises blank lessons/solutions lessons` writes the exercise versions (`blank`).
- `models`: the course's models (shipped in the zoo; tiny ones for fast mode) and its task.
- `toy`: the toy model of superposition (lesson 02); `features`: how concentrated a channel's top contexts are
  (lesson 02); `pretraining`: prune a dense model and fine-tune it sparse (lesson 06).
- `run`: running the lessons top to bottom (`python -m minisparse.lessons check`).

Nothing is imported here, so that importing one of them does not import the others.
"""
