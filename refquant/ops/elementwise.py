"""Elementwise arithmetic, float functions and comparisons.

    Add, Sub, Mul, Div: C = A op B                (multidirectional broadcasting)
    Relu:               Y = max(X, 0)
    Clip:               Y = min(max, max(X, min))  (missing bounds: T's lowest / largest value)
    Round:              Y = round_half_even(X)
    Min, Max:           elementwise min / max of 1..N inputs (multidirectional broadcasting)
    Sqrt, Exp, Erf, Tanh, Sigmoid = 1 / (1 + exp(-x)), LeakyRelu = x < 0 ? alpha x : x,
    HardSigmoid = clip(alpha x + beta, 0, 1), HardSwish = x HardSigmoid(x; 1/6, 0.5),
    Gelu, Pow:          evaluated in float64, rounded once to T
    Where:              Y = condition ? X : Y     (three-way broadcasting)
    Equal, Less, Greater, LessOrEqual, GreaterOrEqual, Not, And, Or, Xor: boolean results
    BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot, BitShift: two's complement bits, exact
    Abs, Neg, Sign:     exact (Abs, Neg of the minimum integer wrap)
    Floor, Ceil, Reciprocal, Log, Sin, Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh:
                        evaluated in float64, rounded once to T
    IsNaN, IsInf:       boolean results
    Sum, Mean:          float64 total of 1..N inputs (/ N), rounded once to T
    Mod:                A - floor(A / B) B (fmod=0) or A - trunc(A / B) B (fmod=1), exact or rounded once

The activations (PRelu, Elu, Selu, ...) are in activations.py.

Floats: each result is one IEEE operation in T. numpy computes float16 and
bfloat16 in float32 and rounds back; float32 has >= 2p+2 bits for both, so
+, -, *, / still round once (Figueroa, 1995). NaN propagates.
Integers: two's complement wrap-around; Div truncates toward zero.

spec/ops/float.md states every choice these kernels make.
Under float_pipeline="mlas-float32" float32 Erf, Tanh, Sigmoid and Gelu (approximate="none") replay
onnxruntime's MLAS kernels instead (refquant/mlas_activations.py, spec/mlas.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import ml_dtypes
import numpy as np
from onnx import TensorProto as T

from .. import arith, mlas_activations
from ..broadcast import broadcast_shapes
from ..checks import flag, is_integer, require_dtype, require_types
from ..dtypes import BASIC_TYPES, FLOAT8_TYPES, IEEE_FLOATS, NARROW_INTS, WIDE_INTS, dtype_name, types_at
from ..errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from ..kernel_options import FloatPipelineOptions
from ..node import Node
from ..registry import register
from .conversion import cast_array
from .float_functions import erf64, gelu64, sigmoid64, tanh_gelu64

#: element types by the version that added them
ARITHMETIC_TYPES = {7: IEEE_FLOATS + WIDE_INTS, 13: (T.BFLOAT16,), 14: NARROW_INTS}
RELU_TYPES = {6: IEEE_FLOATS, 13: (T.BFLOAT16,), 14: (T.INT8, T.INT16, T.INT32, T.INT64)}
CLIP_TYPES = {6: IEEE_FLOATS, 12: WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}
ROUND_TYPES = {11: IEEE_FLOATS, 22: (T.BFLOAT16,)}
MIN_MAX_TYPES = {8: IEEE_FLOATS, 12: WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}


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


# ----------------------------------------------------------------------------
# Float functions: Sqrt, Exp, Erf, Tanh, Sigmoid, LeakyRelu, HardSigmoid, HardSwish, Gelu, Pow
#
# Each is evaluated in float64 (double-precision libm: error < 1 ulp of float64)
# and rounded once to T. For float32 that is the correctly rounded result except
# when the exact value lies within ~2**-29 ulp of a float32 rounding boundary.
# ----------------------------------------------------------------------------

UNARY_FLOAT_TYPES = {6: IEEE_FLOATS, 13: (T.BFLOAT16,)}
ERF_TYPES = {9: IEEE_FLOATS + WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}
LEAKY_RELU_TYPES = {6: IEEE_FLOATS, 16: (T.BFLOAT16,)}
HARD_TYPES = {6: IEEE_FLOATS, 22: (T.BFLOAT16,)}
GELU_TYPES = {20: IEEE_FLOATS + (T.BFLOAT16,)}
POW_TYPES = {7: IEEE_FLOATS, 12: (T.INT32, T.INT64), 13: (T.BFLOAT16,)}
POW_EXPONENT_TYPES = {7: IEEE_FLOATS, 12: WIDE_INTS + NARROW_INTS, 15: (T.BFLOAT16,)}

def _float_function(function: Callable[..., np.ndarray], table):
    """Kernel Y = function(float64(X), node) rounded once to T."""

    def kernel(node: Node, x):
        if node.version < 13 and node.op_type == "Erf" and is_integer(x):
            return (np.asarray(function(x.astype(np.float64), node)).astype(x.dtype),)  # C cast: truncates
        require_dtype(x, types_at(table, node.version), "input")
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            y = function(x.astype(np.float64), node)
        return (np.asarray(arith.narrow(y, x.dtype)),)

    return kernel


def _float_attribute(node: Node, name: str, default: float) -> float:
    """A float attribute as the float32 value the model stores."""
    return float(np.float32(node.attr(name, default, float)))


def _hard_sigmoid64(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(alpha * x + beta, 0.0, 1.0)


def _leaky_relu(x, node):
    return np.where(x < 0, _float_attribute(node, "alpha", 0.01) * x, x)


def _hard_sigmoid(x, node):
    return _hard_sigmoid64(x, _float_attribute(node, "alpha", 0.2), _float_attribute(node, "beta", 0.5))


def _hard_swish(x, node):
    return x * _hard_sigmoid64(x, 1 / 6, 0.5)


def _gelu(x, node):
    """0.5 x (1 + erf(x / sqrt 2)), or with approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    approximate = node.attr("approximate", "none", str)
    if approximate == "none":
        return gelu64(x)
    if approximate == "tanh":
        return tanh_gelu64(x)
    raise AttributeValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


register("Sqrt", since=(6, 13))(_float_function(lambda x, node: np.sqrt(x), UNARY_FLOAT_TYPES))
register("Exp", since=(6, 13))(_float_function(lambda x, node: np.exp(x), UNARY_FLOAT_TYPES))


def _replaying_mlas(kernel, replay: Callable[[np.ndarray], np.ndarray]):
    """``kernel``, except that float32 X under ``float_pipeline="mlas-float32"`` takes onnxruntime's MLAS
    kernel ``replay`` (refquant.mlas_activations)."""

    def replaying(node: Node, x):
        if node.options.replays_mlas_float32(x.dtype):
            return (replay(x),)
        return kernel(node, x)

    return replaying


register("Erf", since=(9, 13), options=FloatPipelineOptions)(
    _replaying_mlas(_float_function(lambda x, node: erf64(x), ERF_TYPES), mlas_activations.erf)
)
register("Tanh", since=(6, 13), options=FloatPipelineOptions)(
    _replaying_mlas(_float_function(lambda x, node: np.tanh(x), UNARY_FLOAT_TYPES), mlas_activations.tanh)
)
register("Sigmoid", since=(6, 13), options=FloatPipelineOptions)(
    _replaying_mlas(_float_function(lambda x, node: sigmoid64(x), UNARY_FLOAT_TYPES), mlas_activations.logistic)
)
register("LeakyRelu", since=(6, 16))(_float_function(_leaky_relu, LEAKY_RELU_TYPES))
register("HardSigmoid", since=(6, 22))(_float_function(_hard_sigmoid, HARD_TYPES))
register("HardSwish", since=(14, 22))(_float_function(_hard_swish, HARD_TYPES))


def _mlas_gelu(node: Node, x):
    """ai.onnx Gelu; float32 with approximate="none" under mlas-float32 replays onnxruntime's MLAS erf."""
    if node.options.replays_mlas_float32(x.dtype) and node.attr("approximate", "none", str) == "none":
        return (mlas_activations.gelu(x),)
    return _float_function(_gelu, GELU_TYPES)(node, x)


register("Gelu", since=(20,), options=FloatPipelineOptions)(_mlas_gelu)

# ----------------------------------------------------------------------------
# Unary math: Abs, Neg, Sign (exact), Floor, Ceil, Reciprocal, Log, the trigonometric and
# hyperbolic functions (float64, rounded once), IsNaN, IsInf
# ----------------------------------------------------------------------------

ABS_TYPES = {6: IEEE_FLOATS + WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}
NEG_TYPES = {6: IEEE_FLOATS + (T.INT8, T.INT16, T.INT32, T.INT64), 13: (T.BFLOAT16,)}
SIGN_TYPES = {9: IEEE_FLOATS + WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}
TRIGONOMETRIC_TYPES = {7: IEEE_FLOATS, 22: (T.BFLOAT16,)}
HYPERBOLIC_TYPES = {9: IEEE_FLOATS, 22: (T.BFLOAT16,)}
IS_NAN_TYPES = {9: IEEE_FLOATS, 13: (T.BFLOAT16,), 20: FLOAT8_TYPES}
IS_INF_TYPES = {10: (T.FLOAT, T.DOUBLE), 20: (T.FLOAT16, T.BFLOAT16) + FLOAT8_TYPES}


def _exact_unary(op: Callable[[np.ndarray], np.ndarray], table):
    """Kernel Y = op(X) in T itself: exact (integers wrap in two's complement)."""

    def kernel(node: Node, x):
        require_dtype(x, types_at(table, node.version), "X")
        return (np.asarray(op(x)).astype(x.dtype, copy=False),)

    return kernel


def _sign(x: np.ndarray) -> np.ndarray:
    """-1, 0 or 1; +0 for both zeros (the operator's "output 0"); NaN stays NaN."""
    if is_integer(x):
        return np.sign(x)
    return arith.narrow(np.sign(x.astype(np.float64)) + 0.0, x.dtype)  # -0 + 0 = +0


register("Abs", since=(6, 13))(_exact_unary(np.abs, ABS_TYPES))  # Abs(INT_MIN) wraps to INT_MIN
register("Neg", since=(6, 13))(_exact_unary(np.negative, NEG_TYPES))  # Neg(INT_MIN) wraps to INT_MIN
register("Sign", since=(9, 13))(_exact_unary(_sign, SIGN_TYPES))
register("Floor", since=(6, 13))(_float_function(lambda x, node: np.floor(x), UNARY_FLOAT_TYPES))
register("Ceil", since=(6, 13))(_float_function(lambda x, node: np.ceil(x), UNARY_FLOAT_TYPES))
register("Reciprocal", since=(6, 13))(_float_function(lambda x, node: 1.0 / x, UNARY_FLOAT_TYPES))
register("Log", since=(6, 13))(_float_function(lambda x, node: np.log(x), UNARY_FLOAT_TYPES))
register("Sin", since=(7, 22))(_float_function(lambda x, node: np.sin(x), TRIGONOMETRIC_TYPES))
register("Cos", since=(7, 22))(_float_function(lambda x, node: np.cos(x), TRIGONOMETRIC_TYPES))
register("Tan", since=(7, 22))(_float_function(lambda x, node: np.tan(x), TRIGONOMETRIC_TYPES))
register("Asin", since=(7, 22))(_float_function(lambda x, node: np.arcsin(x), TRIGONOMETRIC_TYPES))
register("Acos", since=(7, 22))(_float_function(lambda x, node: np.arccos(x), TRIGONOMETRIC_TYPES))
register("Atan", since=(7, 22))(_float_function(lambda x, node: np.arctan(x), TRIGONOMETRIC_TYPES))
register("Sinh", since=(9, 22))(_float_function(lambda x, node: np.sinh(x), HYPERBOLIC_TYPES))
register("Cosh", since=(9, 22))(_float_function(lambda x, node: np.cosh(x), HYPERBOLIC_TYPES))
register("Asinh", since=(9, 22))(_float_function(lambda x, node: np.arcsinh(x), HYPERBOLIC_TYPES))
register("Acosh", since=(9, 22))(_float_function(lambda x, node: np.arccosh(x), HYPERBOLIC_TYPES))
register("Atanh", since=(9, 22))(_float_function(lambda x, node: np.arctanh(x), HYPERBOLIC_TYPES))


@register("IsNaN", since=(9, 13, 20))
def is_nan(node: Node, x):
    require_dtype(x, types_at(IS_NAN_TYPES, node.version), "X")
    with np.errstate(invalid="ignore"):  # widening a signalling NaN
        return (np.isnan(x.astype(np.float64)),)


@register("IsInf", since=(10, 20))
def is_inf(node: Node, x):
    """True at +inf where detect_positive (default 1), at -inf where detect_negative (default 1)."""
    require_dtype(x, types_at(IS_INF_TYPES, node.version), "X")
    with np.errstate(invalid="ignore"):
        wide = x.astype(np.float64)
    positive = _flag_default_one(node, "detect_positive") & (wide == np.inf)
    negative = _flag_default_one(node, "detect_negative") & (wide == -np.inf)
    return (np.asarray(positive | negative),)


def _flag_default_one(node: Node, name: str) -> bool:
    """A 0/1 attribute whose default is 1."""
    value = node.attr(name, 1, int)
    if value not in (0, 1):
        raise AttributeValueError(f"{name} must be 0 or 1, got {value}")
    return bool(value)


# ----------------------------------------------------------------------------
# Sum, Mean (variadic), Mod
# ----------------------------------------------------------------------------

SUM_MEAN_TYPES = {8: IEEE_FLOATS, 13: (T.BFLOAT16,)}
MOD_TYPES = {10: IEEE_FLOATS + WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}


def _sum_or_mean(mean: bool):
    def kernel(node: Node, *inputs):
        if not inputs or any(x is None for x in inputs):
            raise ShapeError(f"needs one or more inputs, got {len(inputs)} (missing inputs are not allowed)")
        _check_operands(node, SUM_MEAN_TYPES, {f"data_{i}": x for i, x in enumerate(inputs)})
        # float64, left to right, then one rounding to T; for two inputs the float64 rounding is innocuous
        # (53 >= 2p + 2), so Sum of two is the correctly rounded A + B, as Add
        total = functools.reduce(np.add, (x.astype(np.float64) for x in inputs))
        if mean:
            total = total / len(inputs)
        return (np.asarray(arith.narrow(total, inputs[0].dtype)),)

    return kernel


register("Sum", since=(8, 13))(_sum_or_mean(mean=False))
register("Mean", since=(8, 13))(_sum_or_mean(mean=True))


@register("Mod", since=(10, 13, 28))
def mod(node: Node, a, b):
    """fmod=0: A - floor(A / B) B (the sign of B); fmod=1: A - trunc(A / B) B (the sign of A). Exact for
    integers; floats: the exact remainder, rounded once to T (Mod-28's text, at every version)."""
    _check_operands(node, MOD_TYPES, {"A": a, "B": b})
    truncated = flag(node, "fmod")
    if is_integer(a):
        if np.any(b == 0):
            raise NonFiniteError("integer modulo by zero (undefined in ONNX)")
        return (np.asarray(np.fmod(a, b) if truncated else np.mod(a, b)),)
    with np.errstate(invalid="ignore", divide="ignore"):
        # fmod is exact; numpy's mod adds B to fmod's result when their signs differ: one rounding in float64,
        # innocuous before the rounding to a type of <= 24 bits (53 >= 2 * 24 + 2)
        r = (np.fmod if truncated else np.mod)(a.astype(np.float64), b.astype(np.float64))
    return (np.asarray(arith.narrow(r, a.dtype)),)


@register("Pow", since=(7, 12, 13, 15), options=FloatPipelineOptions)
def pow_(node: Node, x, y):
    """Z = X ** Y. Float X: float64 pow rounded once to T. Integer X: the exact power, wrapped
    (integer Y >= 0), or float64 pow truncated toward zero (float Y, as C's (T)pow(x, y)).

    Under ``float_pipeline="mlas-float32"``, float32 X with a one-value Y of 2 or 3 (any type) is onnxruntime's
    float32 x * x and (x * x) * x, each product rounded (measured on 10**6 values against onnxruntime 1.32; its
    other exponents go through libm's powf and stay float64 rounded once here: spec/mlas.md)."""
    require_dtype(x, types_at(POW_TYPES, node.version), "X")
    require_dtype(y, types_at(POW_EXPONENT_TYPES, node.version), "Y")
    if node.version < 12 and x.dtype != y.dtype:
        raise DTypeError(f"X ({dtype_name(x.dtype)}) and Y ({dtype_name(y.dtype)}) must share one type before opset 12")
    broadcast_shapes({"X": x.shape, "Y": y.shape})
    if is_integer(x) and is_integer(y):
        if np.any(y < 0):
            raise NonFiniteError("integer X to a negative integer power is not an integer (undefined in ONNX)")
        # Python integers: exact, then reduced mod 2**64 and wrapped to T
        exact = np.power(x.astype(object), y.astype(object)) % _WRAP
        return (np.asarray(exact.astype(np.uint64).astype(x.dtype)),)
    if node.options.replays_mlas_float32(x.dtype) and y.size == 1 and float(y.reshape(-1)[0]) in (2.0, 3.0):
        square = x * x
        return (np.asarray(square if float(y.reshape(-1)[0]) == 2.0 else square * x),)
    with np.errstate(all="ignore"):
        z = np.power(x.astype(np.float64), y.astype(np.float64))
    if is_integer(x):
        return (np.asarray(cast_array(z, x.dtype)),)
    return (np.asarray(arith.narrow(z, x.dtype)),)


_WRAP = 2**64

# ----------------------------------------------------------------------------
# Where, Equal, Less, Greater, LessOrEqual, GreaterOrEqual, Not, And, Or, Xor,
# BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot, BitShift
# ----------------------------------------------------------------------------

WHERE_TYPES = {9: BASIC_TYPES, 16: (T.BFLOAT16,)}
EQUAL_TYPES = {7: (T.BOOL, T.INT32, T.INT64), 11: IEEE_FLOATS + NARROW_INTS + (T.UINT32, T.UINT64), 13: (T.BFLOAT16,), 19: (T.STRING,)}
ORDER_TYPES = {9: IEEE_FLOATS + WIDE_INTS + NARROW_INTS, 13: (T.BFLOAT16,)}
ORDER_OR_EQUAL_TYPES = {12: IEEE_FLOATS + WIDE_INTS + NARROW_INTS, 16: (T.BFLOAT16,)}
LOGICAL_TYPES = {7: (T.BOOL,)}
BITWISE_TYPES = {18: WIDE_INTS + NARROW_INTS}
BIT_SHIFT_TYPES = {11: (T.UINT8, T.UINT16, T.UINT32, T.UINT64), 28: (T.INT8, T.INT16, T.INT32, T.INT64)}


@register("Where", since=(9, 16))
def where(node: Node, condition, x, y):
    require_dtype(condition, {T.BOOL}, "condition")
    _check_operands(node, WHERE_TYPES, {"X": x, "Y": y})
    broadcast_shapes({"condition": condition.shape, "X": x.shape, "Y": y.shape})
    return (np.asarray(np.where(condition, x, y)),)


def _comparison(op: Callable[[np.ndarray, np.ndarray], np.ndarray], table):
    def kernel(node: Node, a, b):
        _check_operands(node, table, {"A": a, "B": b})
        return (np.asarray(op(a, b)),)

    return kernel


register("Equal", since=(7, 11, 13, 19))(_comparison(np.equal, EQUAL_TYPES))
register("Less", since=(9, 13))(_comparison(np.less, ORDER_TYPES))
register("Greater", since=(9, 13))(_comparison(np.greater, ORDER_TYPES))
register("LessOrEqual", since=(12, 16))(_comparison(np.less_equal, ORDER_OR_EQUAL_TYPES))
register("GreaterOrEqual", since=(12, 16))(_comparison(np.greater_equal, ORDER_OR_EQUAL_TYPES))
register("And", since=(7,))(_comparison(np.logical_and, LOGICAL_TYPES))
register("Or", since=(7,))(_comparison(np.logical_or, LOGICAL_TYPES))
register("Xor", since=(7,))(_comparison(np.logical_xor, LOGICAL_TYPES))
# the same kernel shape: one T for A and B, broadcast; the result is T (bits of two's complement)
register("BitwiseAnd", since=(18,))(_comparison(np.bitwise_and, BITWISE_TYPES))
register("BitwiseOr", since=(18,))(_comparison(np.bitwise_or, BITWISE_TYPES))
register("BitwiseXor", since=(18,))(_comparison(np.bitwise_xor, BITWISE_TYPES))


@register("Not", since=(1,))
def not_(node: Node, x):
    require_dtype(x, {T.BOOL}, "X")
    return (np.logical_not(x),)


@register("BitwiseNot", since=(18,))
def bitwise_not(node: Node, x):
    require_dtype(x, types_at(BITWISE_TYPES, node.version), "X")
    return (np.asarray(np.invert(x)),)


@register("BitShift", since=(11, 28))
def bit_shift(node: Node, x, y):
    """Z = X << Y or X >> Y (arithmetic for signed T, 28). A shift Y < 0 or Y >= T's bits gives what the sign
    fill alone gives: -1 for a right shift of a negative X, else 0 (BitShift-28's text, at every version)."""
    _check_operands(node, BIT_SHIFT_TYPES, {"X": x, "Y": y})
    direction = node.attr("direction", "", str)
    if direction not in ("LEFT", "RIGHT"):
        raise AttributeValueError(f"direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    zero = np.zeros((), x.dtype)
    beyond = (y < zero) | (y >= np.asarray(x.dtype.itemsize * 8, x.dtype))
    shift = np.where(beyond, zero, y)
    if direction == "LEFT":
        # through the unsigned type of T's width: bits past the sign bit are discarded (two's complement)
        unsigned = np.dtype(f"u{x.dtype.itemsize}")
        shifted = np.left_shift(x.astype(unsigned), shift.astype(unsigned)).astype(x.dtype)
        return (np.asarray(np.where(beyond, zero, shifted)),)
    fill = np.where(x < zero, np.asarray(-1).astype(x.dtype), zero)  # -1 only for signed T
    return (np.asarray(np.where(beyond, fill, np.right_shift(x, shift))),)
