"""Normalisation of states and action targets, kept outside the network.

Stats are fit on training data and saved in the checkpoint next to the weights, so a policy
always un-normalises with exactly the numbers it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Normalizer"]


@dataclass
class Normalizer:
    """(x - mean) / std per dim; std floored so constant dims (a locked joint) stay finite."""

    mean: np.ndarray  # (D,) float32
    std: np.ndarray   # (D,) float32

    MIN_STD = 1e-3

    @classmethod
    def fit(cls, x: np.ndarray) -> "Normalizer":
        x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        if x.shape[0] < 1:
            raise ValueError("cannot fit a normaliser on 0 samples")
        return cls(x.mean(0).astype(np.float32),
                   np.maximum(x.std(0), cls.MIN_STD).astype(np.float32))

    @classmethod
    def identity(cls, dim: int) -> "Normalizer":
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x) - self.mean) / self.std).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) * self.std + self.mean
