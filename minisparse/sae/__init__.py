"""Sparse autoencoders on a GPT's MLP: a TopK SAE and the Jacobian SAE pair (Farnik et al. 2025).

`minisparse.sae.numpy` is the reference (hand-written backward, checked against finite differences);
`minisparse.sae.mlx` computes the same loss with MLX autograd; `minisparse.sae.train` trains a pair on a model's MLP
and measures it. The NumPy names are re-exported here. (The toy model of superposition of lesson 02 is not an SAE: it is
`minisparse.lessons.toy`.)
"""

from . import numpy as _numpy
from .numpy import *  # noqa: F403

__all__ = _numpy.__all__
