"""minisparse: weight-sparse transformers you can read.

One compact GPT written twice — `minisparse.numpy` (hand-written backprop) and `minisparse.mlx` (MLX autograd) — with
magnitude-masked weights (`minisparse.sparsity`), activation sparsity (AbsTopK), training on the Python standard
library, and circuit pruning (`minisparse.circuits`). docs/design.md (DESIGN) is the contract both
backends follow.
"""

from .checkpoint import CheckpointError, load, save
from .config import ConfigError, ModelConfig, TrainConfig, preset

__all__ = ["ModelConfig", "TrainConfig", "ConfigError", "CheckpointError", "preset", "save", "load"]
__version__ = "0.1.0"
