"""The MLX backend: the GPT as an `mlx.nn.Module`, the DESIGN §3 optimizer step compiled with `mx.compile`, and
data-parallel training over `mx.distributed` (`minisparse.mlx.distributed`).

On Linux the `mlx[cpu]` wheel runs on the CPU with a slow bundled BLAS (a few GFLOP/s): prefer the NumPy backend there.
"""

from .model import GPT
from .ops import abstopk, gelu
from .optim import SparseAdam, project_matrix
from .trainer import MLXTrainer

__all__ = ["GPT", "MLXTrainer", "SparseAdam", "abstopk", "gelu", "project_matrix"]
