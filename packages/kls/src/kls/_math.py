"""Small numeric helpers (numpy) shared by the soft-label generators."""

from __future__ import annotations

import numpy as np


def softmax_rows(S: np.ndarray, tau: float | np.ndarray = 1.0) -> np.ndarray:
    """Row-wise ``softmax(S / τ)`` (numerically stable), float64."""
    Z = np.asarray(S, dtype=np.float64) / tau
    Z = Z - Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def one_hot(index: np.ndarray, n_classes: int) -> np.ndarray:
    Y = np.zeros((len(index), n_classes), dtype=np.float64)
    Y[np.arange(len(index)), index] = 1.0
    return Y


def mix(y: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    """§2.1: ``ỹ = (1 − α)·y + α·q``."""
    return (1.0 - alpha) * y + alpha * q
