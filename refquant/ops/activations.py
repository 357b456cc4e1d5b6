"""Activation functions (element-wise, one input of type T, one output of T).

    PRelu:           Y = X < 0 ? slope X : X        (slope broadcasts unidirectionally to X)
    Elu:             Y = X < 0 ? alpha (exp(X) - 1) : X
    Selu:            Y = X > 0 ? gamma X : gamma (alpha exp(X) - alpha)
    Celu:            Y = max(0, X) + min(0, alpha (exp(X / alpha) - 1))
    Softplus:        Y = ln(exp(X) + 1)
    Softsign:        Y = X / (1 + |X|)
    ThresholdedRelu: Y = X > alpha ? X : 0
    Mish:            Y = X tanh(softplus(X))
    Swish:           Y = X sigmoid(alpha X)
    Shrink:          Y = X < -lambd ? X + bias : X > lambd ? X - bias : 0

Floats: evaluated in float64 from the exact input and rounded once to T, as the float functions of
elementwise.py. Integers (PRelu, Shrink): exact, wrapped to T (two's complement).

spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..broadcast import check_unidirectional
from ..checks import is_integer, require_dtype, require_same_type
from ..dtypes import IEEE_FLOATS, NARROW_INTS, WIDE_INTS, types_at
from ..errors import AttributeValueError
from ..node import Node
from ..registry import register
from .float_functions import sigmoid64

#: element types by the version that added them
PRELU_TYPES = {9: IEEE_FLOATS + WIDE_INTS, 16: (T.BFLOAT16,)}
ELU_TYPES = {6: IEEE_FLOATS, 22: (T.BFLOAT16,)}
SOFTPLUS_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}
THRESHOLDED_RELU_TYPES = {10: IEEE_FLOATS, 22: (T.BFLOAT16,)}
MISH_TYPES = {18: IEEE_FLOATS, 22: (T.BFLOAT16,)}
CELU_TYPES = {12: (T.FLOAT,), 28: (T.FLOAT16, T.DOUBLE, T.BFLOAT16)}
SWISH_TYPES = {24: IEEE_FLOATS + (T.BFLOAT16,)}
SHRINK_TYPES = {9: IEEE_FLOATS + WIDE_INTS + NARROW_INTS}

_WRAP = 2**64


def _attribute(node: Node, name: str, default: float) -> float:
    """A float attribute as the float32 value the model stores."""
    return float(np.float32(node.attr(name, default, float)))


def _activation(function: Callable[[np.ndarray, Node], np.ndarray], table):
    """Kernel Y = function(float64(X), node) rounded once to T."""

    def kernel(node: Node, x):
        require_dtype(x, types_at(table, node.version), "X")
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            y = function(x.astype(np.float64), node)
        return (np.asarray(arith.narrow(y, x.dtype)),)

    return kernel


def _softplus64(x: np.ndarray) -> np.ndarray:
    """ln(exp(x) + 1) in float64 without overflow (numpy's logaddexp)."""
    return np.logaddexp(0.0, x)


def _elu(x, node):
    return np.where(x < 0, _attribute(node, "alpha", 1.0) * np.expm1(x), x)


def _selu(x, node):
    alpha = _attribute(node, "alpha", 1.67326319217681884765625)  # the schema's float32 defaults
    gamma = _attribute(node, "gamma", 1.05070102214813232421875)
    return np.where(x > 0, gamma * x, gamma * (alpha * np.expm1(x)))


def _celu(x, node):
    alpha = _attribute(node, "alpha", 1.0)
    # max(0, x) + min(0, alpha (exp(x / alpha) - 1)): x where x > 0, the second term elsewhere (-0 stays -0)
    return np.where(x > 0, x, alpha * np.expm1(x / alpha))


def _thresholded_relu(x, node):
    return np.where(x > _attribute(node, "alpha", 1.0), x, 0.0)


def _swish(x, node):
    return x * sigmoid64(_attribute(node, "alpha", 1.0) * x)


register("Elu", since=(6, 22))(_activation(_elu, ELU_TYPES))
register("Selu", since=(6, 22))(_activation(_selu, ELU_TYPES))
register("Celu", since=(12, 28))(_activation(_celu, CELU_TYPES))
register("Softplus", since=(1, 22))(_activation(lambda x, node: _softplus64(x), SOFTPLUS_TYPES))
register("Softsign", since=(1, 22))(_activation(lambda x, node: x / (1.0 + np.abs(x)), SOFTPLUS_TYPES))
register("ThresholdedRelu", since=(10, 22))(_activation(_thresholded_relu, THRESHOLDED_RELU_TYPES))
register("Mish", since=(18, 22))(_activation(lambda x, node: x * np.tanh(_softplus64(x)), MISH_TYPES))
register("Swish", since=(24,))(_activation(_swish, SWISH_TYPES))


@register("PRelu", since=(9, 16))
def prelu(node: Node, x, slope):
    """Y = slope X where X < 0, else X; one product, rounded once (floats) or wrapped (integers)."""
    require_dtype(x, types_at(PRELU_TYPES, node.version), "X")
    require_same_type(slope, x, "slope")
    check_unidirectional(slope.shape, x.shape, "slope")
    if is_integer(x):
        return (np.asarray(np.where(x < 0, np.multiply(slope, x), x)).astype(x.dtype, copy=False),)
    wide = x.astype(np.float64)
    return (np.asarray(arith.narrow(np.where(wide < 0, slope.astype(np.float64) * wide, wide), x.dtype)),)


@register("Shrink", since=(9,))
def shrink(node: Node, x):
    """x < -lambd: x + bias; x > lambd: x - bias; otherwise 0 (NaN included)."""
    require_dtype(x, types_at(SHRINK_TYPES, node.version), "input")
    lambd, bias = _attribute(node, "lambd", 0.5), _attribute(node, "bias", 0.0)
    if not is_integer(x):
        wide = x.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.where(wide < -lambd, wide + bias, np.where(wide > lambd, wide - bias, 0.0))
        return (np.asarray(arith.narrow(y, x.dtype)),)
    if not (math.isfinite(lambd) and math.isfinite(bias)):
        raise AttributeValueError(f"lambd ({lambd}) and bias ({bias}) must be finite for integer input")
    low, high, b = Fraction(-lambd), Fraction(lambd), Fraction(bias)

    def exact(v: int) -> int:
        # the exact x -+ bias truncated toward zero (C's conversion of the float result to T)
        return math.trunc(v + b) if v < low else math.trunc(v - b) if v > high else 0

    y = np.asarray(np.frompyfunc(exact, 1, 1)(x.astype(object)), dtype=object).reshape(-1) % _WRAP
    return (y.astype(np.uint64).astype(x.dtype).reshape(x.shape),)
