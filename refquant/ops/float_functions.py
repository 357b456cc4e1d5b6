"""Float64 functions shared by float kernels of several modules (elementwise, activations, contrib_activations):
erf, the logistic sigmoid, the Gelu family, softmax and log-softmax. Each takes and returns float64 arrays; the kernels round once to
the output type (``arith.narrow``). No kernel is registered here.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["erf64", "sigmoid64", "gelu64", "tanh_gelu64", "quick_gelu64", "softmax64", "log_softmax64"]

_erf = np.frompyfunc(math.erf, 1, 1)


def erf64(x: np.ndarray) -> np.ndarray:
    """erf in float64 (C99 erf through math.erf: numpy has none)."""
    return _erf(np.asarray(x, np.float64)).astype(np.float64)


def gelu64(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + erf(x / sqrt 2))."""
    return 0.5 * x * (1.0 + erf64(x / math.sqrt(2.0)))


def tanh_gelu64(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the constants as float64 numbers."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def quick_gelu64(x: np.ndarray, alpha: float) -> np.ndarray:
    """x * sigmoid(alpha x), the sigmoid without overflow for large |alpha x|."""
    z = alpha * x
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(z))
    sigmoid = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return x * sigmoid


def sigmoid64(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) in float64, without overflow for large -x."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def softmax64(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """exp(x - max) / sum exp(x - max) over ``axes``, in float64 (x - max is exact for float32 x whose exponents differ by < 29)."""
    shifted = x - np.max(x, axis=axes, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axes, keepdims=True)


def log_softmax64(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """(x - max) - log(sum exp(x - max)) over ``axes``, in float64."""
    shifted = x - np.max(x, axis=axes, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axes, keepdims=True))
