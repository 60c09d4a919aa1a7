"""The NumPy backend: a GPT with hand-written backprop (`layers.py` holds the forward/backward pairs)."""

from .model import GPT
from .trainer import NumpyTrainer

__all__ = ["GPT", "NumpyTrainer"]
