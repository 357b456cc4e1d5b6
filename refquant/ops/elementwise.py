"""Elementwise arithmetic: Add, Sub, Mul, Div, Relu, Clip, Round, Min, Max.

    Add, Sub, Mul, Div: C = A op B                (multidirectional broadcasting)
    Relu:               Y = max(X, 0)
    Clip:               Y = min(max, max(X, min))  (missing bounds: T's lowest / largest value)
    Round:              Y = round_half_even(X)
    Min, Max:           elementwise min / max of 1..N inputs (multidirectional broadcasting)

Floats: each result is one IEEE operation in T. numpy computes float16 and
bfloat16 in float32 and rounds back; float32 has >= 2p+2 bits for both, so
+, -, *, / still round once (Figueroa, 1995). NaN propagates.
Integers: two's complement wrap-around; Div truncates toward zero.

spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import ml_dtypes
import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..broadcast import broadcast_shapes
from ..errors import DTypeError, NonFiniteError, ShapeError
from ..node import Node
from ..registry import register
from .common import dtype_name, require_dtype, types_at

__all__ = ["FLOATS", "WIDE_INTS", "NARROW_INTS", "require_types", "is_integer"]

FLOATS = (T.FLOAT16, T.FLOAT, T.DOUBLE)
WIDE_INTS = (T.INT32, T.INT64, T.UINT32, T.UINT64)
NARROW_INTS = (T.INT8, T.INT16, T.UINT8, T.UINT16)

#: element types by the version that added them
ARITHMETIC_TYPES = {7: FLOATS + WIDE_INTS, 13: (T.BFLOAT16,), 14: NARROW_INTS}
RELU_TYPES = {6: FLOATS, 13: (T.BFLOAT16,), 14: (T.INT8, T.INT16, T.INT32, T.INT64)}
CLIP_TYPES = {6: FLOATS, 12: WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}
ROUND_TYPES = {11: FLOATS, 22: (T.BFLOAT16,)}
MIN_MAX_TYPES = {8: FLOATS, 12: WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}


def is_integer(array: np.ndarray) -> bool:
    return array.dtype.kind in "iu"


def require_types(node: Node, table, named: Mapping[str, np.ndarray]) -> None:
    """Each named input has a type ``table`` allows at this version, and all share it (ONNX's one T)."""
    allowed = types_at(table, node.version)
    for name, array in named.items():
        require_dtype(array, allowed, name)
    if len({array.dtype for array in named.values()}) > 1:
        listing = ", ".join(f"{name} is {dtype_name(array.dtype)}" for name, array in named.items())
        raise DTypeError(f"inputs must share one element type: {listing}")


def _check_operands(node: Node, table, named: Mapping[str, np.ndarray]) -> None:
    """require_types, then multidirectional broadcasting."""
    require_types(node, table, named)
    broadcast_shapes({name: array.shape for name, array in named.items()})


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b; integers truncate toward zero (ONNX Div-14: "truncating division")."""
    if not is_integer(a):
        return np.divide(a, b)
    if np.any(b == 0):
        raise NonFiniteError("integer division by zero (undefined in ONNX)")
    # a - fmod(a, b) is an exact multiple of b (|fmod| < |a| with a's sign, so no
    # overflow), hence floor division of it is exact and equals truncation.
    # INT_MIN / -1 wraps to INT_MIN, as every other integer overflow.
    return np.floor_divide(a - np.fmod(a, b), b)


def _binary(op: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def kernel(node: Node, a, b):
        _check_operands(node, ARITHMETIC_TYPES, {"A": a, "B": b})
        return (np.asarray(op(a, b)),)

    return kernel


register("Add", since=(7, 13, 14))(_binary(np.add))
register("Sub", since=(7, 13, 14))(_binary(np.subtract))
register("Mul", since=(7, 13, 14))(_binary(np.multiply))
register("Div", since=(7, 13, 14))(_binary(_divide))


@register("Relu", since=(6, 13, 14))
def relu(node: Node, x):
    require_dtype(x, types_at(RELU_TYPES, node.version), "X")
    return (np.asarray(np.maximum(x, np.zeros((), x.dtype))),)


@register("Round", since=(11, 22))
def round_(node: Node, x):
    require_dtype(x, types_at(ROUND_TYPES, node.version), "X")
    return (np.asarray(np.rint(x)),)


def _extremum(op: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def kernel(node: Node, *inputs):
        if not inputs or any(x is None for x in inputs):
            raise ShapeError(f"needs one or more inputs, got {len(inputs)} (missing inputs are not allowed)")
        _check_operands(node, MIN_MAX_TYPES, {f"data_{i}": x for i, x in enumerate(inputs)})
        return (np.asarray(functools.reduce(op, inputs)),)

    return kernel


register("Min", since=(8, 12, 13))(_extremum(np.minimum))
register("Max", since=(8, 12, 13))(_extremum(np.maximum))


def _type_limits(dtype: np.dtype) -> tuple:
    """numeric_limits<T>::lowest() and ::max(), the defaults of Clip-11+'s min and max."""
    info = np.iinfo(dtype) if dtype.kind in "iu" else ml_dtypes.finfo(dtype)
    return np.asarray(info.min, dtype), np.asarray(info.max, dtype)


def _bound_input(bound, name: str, x: np.ndarray):
    """Clip-11+ ``min``/``max``: a scalar of x's type (one-element tensors are accepted)."""
    if bound is None:
        return None
    if bound.dtype != x.dtype:
        raise DTypeError(f"{name} has type {dtype_name(bound.dtype)}, it must match input ({dtype_name(x.dtype)})")
    if bound.size != 1:
        raise ShapeError(f"{name} must be a scalar, got shape {bound.shape}")
    return bound.reshape(())


#: Clip-6's attribute defaults in the ONNX schema: -+FLT_MAX, whatever T is
_CLIP6_DEFAULTS = {"min": -float(np.finfo(np.float32).max), "max": float(np.finfo(np.float32).max)}


def _bound_attribute(node: Node, name: str, x: np.ndarray):
    """Clip-6 ``min``/``max`` attribute (a float, default -+FLT_MAX), rounded once into x's type."""
    return arith.narrow(np.float64(node.attr(name, _CLIP6_DEFAULTS[name], float)), x.dtype)


@register("Clip", since=(6, 11, 12, 13))
def clip(node: Node, x, min_value=None, max_value=None):
    require_dtype(x, types_at(CLIP_TYPES, node.version), "input")
    if node.version < 11:
        low, high = _bound_attribute(node, "min", x), _bound_attribute(node, "max", x)
    else:
        low, high = _bound_input(min_value, "min", x), _bound_input(max_value, "max", x)
        lowest, largest = _type_limits(x.dtype)  # numeric_limits<T>::lowest() and ::max()
        low = lowest if low is None else low
        high = largest if high is None else high
    # Min(max, Max(input, min)) as numpy.clip computes it: x itself where min <= x <= max
    # (a tie keeps x's sign of zero), max everywhere when min > max (ONNX Clip-13),
    # NaN where x or a bound is NaN. bfloat16 is clipped in float32, exactly.
    return (np.asarray(np.clip(x, low, high)).astype(x.dtype, copy=False),)
