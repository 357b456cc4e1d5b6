"""Type conversion and shape-only operators: Cast, Identity, Constant, Flatten, Reshape.

    Cast:     y = x converted to the type ``to`` (rules below)
    Identity: y = x
    Constant: y = the value of the one value attribute
    Flatten:  y = x reshaped to (d_0 * ... * d_(axis-1), d_axis * ... * d_(n-1))
    Reshape:  y = x reshaped to ``shape`` (0 copies x's dimension unless allowzero; one -1 is inferred)

Cast follows the rules of the Cast operator and of ONNX's float4/float6/int4/int2 pages:
- to a float type: the exact value rounded once to nearest-even. Out of range
  gives +-inf for float16/bfloat16/float32/float64; float8 types saturate to
  +-max when ``saturate`` (the default), else follow the spec's table (NaN, or
  inf for float8e5m2); float4/float6 always saturate and map NaN to +max;
  float8e8m0 rounds to a power of two per ``round_mode``.
- to an integer type: integers wrap (two's complement); floats truncate toward
  zero, except int4/uint4/int2/uint2, which round half to even and keep the
  low bits. Where ONNX leaves the result undefined (NaN, inf, a value outside
  the type) refquant raises NonFiniteError.
- to bool: x != 0. From bool: 0 or 1.

spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..dtypes import np_dtype, type_name
from ..errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from ..node import Node
from ..registry import register
from .common import dtype_name, require_dtype, types_at

BASE_TYPES = (
    T.FLOAT16, T.FLOAT, T.DOUBLE, T.BOOL, T.STRING,
    T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64,
)  # fmt: skip
FLOAT8_TYPES = (T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ)
INT4_TYPES = (T.UINT4, T.INT4)

#: element types by the version that added them: Identity, Constant, Reshape
TENSOR_TYPES = {
    1: BASE_TYPES,
    13: (T.BFLOAT16,),
    19: FLOAT8_TYPES,
    21: INT4_TYPES,
    23: (T.FLOAT4E2M1,),
    24: (T.FLOAT8E8M0,),
    25: (T.UINT2, T.INT2),
}
#: Flatten skipped version 19: its float8 types arrived at 21
FLATTEN_TYPES = TENSOR_TYPES | {19: (), 21: FLOAT8_TYPES + INT4_TYPES}
CAST_TYPES = TENSOR_TYPES | {28: (T.FLOAT6E2M3, T.FLOAT6E3M2)}

ROUND_MODES = ("up", "down", "nearest")

_SUB_BYTE_INTS = frozenset(np_dtype(t) for t in (T.UINT4, T.INT4, T.UINT2, T.INT2))
_FLOAT8 = frozenset(np_dtype(t) for t in FLOAT8_TYPES)
#: float types without inf or NaN: they always saturate
_FINITE_FLOATS = frozenset(np_dtype(t) for t in (T.FLOAT4E2M1, T.FLOAT6E2M3, T.FLOAT6E3M2))
_E8M0 = np_dtype(T.FLOAT8E8M0)
_E8M0_EXPONENTS = (-127, 127)


# ----------------------------------------------------------------------------
# Cast
# ----------------------------------------------------------------------------


def _is_integer_type(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" or dtype in _SUB_BYTE_INTS


def _require_defined(defined: np.ndarray, values: np.ndarray, target: np.dtype) -> None:
    """NonFiniteError where ONNX leaves the result of a float -> integer cast undefined."""
    if defined.all():
        return
    info = ml_dtypes.iinfo(target)
    bad = values[~defined]
    raise NonFiniteError(
        f"{bad.size} of {values.size} value(s) ({bad.flat[0]!r} first) have no {dtype_name(target)} value: "
        f"NaN, infinity and values outside [{info.min}, {info.max}] are undefined in ONNX Cast"
    )


def _float_to_integer(values: np.ndarray, target: np.dtype) -> np.ndarray:
    """float64 ``values`` to an integer type.

    int4/uint4/int2/uint2: round half to even, keep the low bits (ONNX int4/int2 pages).
    Other types: truncate toward zero (C); the result must fit the type.
    """
    info = ml_dtypes.iinfo(target)
    if target in _SUB_BYTE_INTS:
        _require_defined(np.isfinite(values), values, target)
        # fmod is exact and keeps the value's residue mod 2**bits; the wrap does the rest
        return np.fmod(np.rint(values), 2.0**info.bits).astype(np.int64).astype(target)
    truncated = np.trunc(values)
    # info.min and info.max + 1 are powers of two, so both bounds are exact in float64
    _require_defined((truncated >= info.min) & (truncated < 2.0**info.bits + info.min), values, target)
    return truncated.astype(target)


def _float64_for_narrowing(x: np.ndarray) -> np.ndarray:
    """x as float64, ready for one rounding to a type of at most 24 significant bits.

    Exact for every type but 64-bit integers of magnitude >= 2**53. Those keep
    their bits down to 2**11 and fold the lower ones into a sticky last bit
    (rounding to odd): >= 43 bits are kept, and rounding to odd into p + 2 or
    more bits, then to nearest into p bits, equals one rounding (Boldo &
    Melquiond, 2008).
    """
    wide = x.astype(np.float64)
    if x.dtype not in (np.int64, np.uint64):
        return wide
    unsigned = x.astype(np.uint64)
    magnitude = np.where(x < 0, np.uint64(0) - unsigned, unsigned)  # exact, -2**63 included
    sticky = (magnitude & np.uint64(0x7FF)) != 0
    kept = ((magnitude >> np.uint64(11)) | sticky.astype(np.uint64)).astype(np.float64) * 2048.0
    return np.where(magnitude >= np.uint64(2**53), np.where(x < 0, -kept, kept), wide)


def _to_e8m0(values: np.ndarray, *, saturate: bool, round_mode: str) -> np.ndarray:
    """float64 ``values`` to float8e8m0, the powers of two 2**-127 .. 2**127 (and NaN).

    With v = m * 2**k, 1 <= m < 2: ``up`` gives 2**(k+1) unless m == 1, ``down``
    2**k, ``nearest`` 2**(k+1) when m >= 1.5 (ties up). Zero, infinity and
    exponents out of range give 2**-127 / 2**127 with ``saturate``, NaN
    without; NaN stays NaN. Negative values are undefined in ONNX: an error.
    """
    if np.any(values < 0):  # -0.0 is not < 0: it counts as zero
        raise NonFiniteError("negative values have no float8e8m0 value (undefined in ONNX Cast)")
    fraction, exponent = np.frexp(values)  # v = fraction * 2**exponent, 0.5 <= fraction < 1
    k = exponent.astype(np.int64) - 1
    if round_mode == "up":
        k += fraction > 0.5
    elif round_mode == "nearest":
        k += fraction >= 0.75
    low, high = _E8M0_EXPONENTS
    finite_positive = np.isfinite(values) & (values > 0)
    too_large = (values == np.inf) | (finite_positive & (k > high))
    too_small = (values == 0) | (finite_positive & (k < low))
    result = np.ldexp(1.0, np.clip(k, low, high))
    if saturate:
        result = np.where(too_large, 2.0**high, np.where(too_small, 2.0**low, result))
    else:
        result = np.where(too_large | too_small, np.nan, result)
    return np.where(np.isnan(values), np.nan, result).astype(_E8M0)


def _to_float(x: np.ndarray, target: np.dtype, *, saturate: bool, round_mode: str) -> np.ndarray:
    """x to a float type: one rounding to nearest-even, then the type's overflow rule."""
    if target == np.float64:
        return x.astype(np.float64)  # exact, or (64-bit integers) numpy's correctly rounded conversion
    values = _float64_for_narrowing(x)
    if target == _E8M0:
        return _to_e8m0(values, saturate=saturate, round_mode=round_mode)
    largest = float(ml_dtypes.finfo(target).max)
    if target in _FINITE_FLOATS:
        values = np.where(np.isnan(values), largest, values)
    if target in _FINITE_FLOATS or (target in _FLOAT8 and saturate):
        # clipping before the rounding is exact: values beyond +-max round to +-max anyway
        values = np.clip(values, -largest, largest)
    return arith.narrow(values, target)


def cast_array(x: np.ndarray, target: np.dtype, *, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """``x`` converted to numpy dtype ``target`` by the rules of ONNX Cast."""
    if x.dtype == target:
        return x
    if target == np.bool_:
        return x.astype(np.float64) != 0
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    if _is_integer_type(target):
        if _is_integer_type(x.dtype):
            # two's complement wrap, through int64 (ml_dtypes casts int4 to uint2 no other way)
            return x.astype(np.int64).astype(target)
        return _float_to_integer(x.astype(np.float64), target)
    return _to_float(x, target, saturate=saturate, round_mode=round_mode)


@register("Cast", since=(9, 13, 19, 21, 23, 24, 25, 28))
def cast(node: Node, x):
    v = node.version
    allowed = types_at(CAST_TYPES, v)
    require_dtype(x, allowed, "input")
    to = node.attr("to", kind=int)
    if to not in allowed:
        raise AttributeValueError(f"to={to} ({type_name(to)}) is not a type Cast accepts at opset {v}")
    if to == T.STRING or x.dtype == object:
        raise DTypeError("casts from or to string are not supported")
    saturate = bool(node.attr("saturate", 1, int)) if v >= 19 else True
    round_mode = node.attr("round_mode", "up", str) if v >= 24 else "up"
    if round_mode not in ROUND_MODES:
        raise AttributeValueError(f"round_mode {round_mode!r} is not one of {ROUND_MODES}")
    return (np.asarray(cast_array(x, np_dtype(to), saturate=saturate, round_mode=round_mode)),)


# ----------------------------------------------------------------------------
# Identity, Constant
# ----------------------------------------------------------------------------


@register("Identity", since=(1, 13, 14, 16, 19, 21, 23, 24, 25))
def identity(node: Node, x):
    require_dtype(x, types_at(TENSOR_TYPES, node.version), "input")
    return (x,)


#: value_* attributes (opset 12+) and the type of the tensor each makes
_VALUE_ATTRIBUTES = {
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
    "value_string": object,
    "value_strings": object,
}


@register("Constant", since=(9, 11, 12, 13, 19, 21, 23, 24, 25))
def constant(node: Node):
    v = node.version
    known = ["value"] + (["sparse_value"] if v >= 11 else []) + (list(_VALUE_ATTRIBUTES) if v >= 12 else [])
    given = [name for name in known if node.has(name)]
    if len(given) != 1:
        raise AttributeValueError(f"exactly one of {', '.join(known)} must be set, got {given or 'none'}")
    name = given[0]
    if name == "sparse_value":
        raise AttributeValueError("sparse_value is not supported; store the constant as a dense 'value'")
    if name == "value":
        value = node.attr("value", kind=np.ndarray)
        require_dtype(value, types_at(TENSOR_TYPES, v), "value")
        return (value,)
    return (np.array(node.attr(name), dtype=_VALUE_ATTRIBUTES[name]),)


# ----------------------------------------------------------------------------
# Flatten, Reshape
# ----------------------------------------------------------------------------


@register("Flatten", since=(9, 11, 13, 21, 23, 24, 25))
def flatten(node: Node, x):
    require_dtype(x, types_at(FLATTEN_TYPES, node.version), "input")
    rank = x.ndim
    axis = node.attr("axis", 1, int)
    lowest = -rank if node.version >= 11 else 0
    if not lowest <= axis <= rank:
        raise AttributeValueError(f"axis {axis} is out of range [{lowest}, {rank}] for rank {rank}")
    axis = axis % rank if axis < 0 else axis
    return (x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])),)


def _reshape_target(in_shape: tuple[int, ...], requested: list[int], allowzero: bool) -> tuple[int, ...]:
    """The output shape: 0 copies the input dimension (unless allowzero), one -1 is inferred."""

    def refuse(why: str) -> ShapeError:
        return ShapeError(f"cannot reshape {in_shape} to {requested}: {why}")

    if any(d < -1 for d in requested):
        raise refuse("dimensions must be >= -1")
    if requested.count(-1) > 1:
        raise refuse("at most one dimension may be -1")
    if allowzero and 0 in requested and -1 in requested:
        raise refuse("with allowzero, 0 and -1 cannot both appear")
    dims = list(requested)
    if not allowzero:
        for i, d in enumerate(requested):
            if d == 0:
                if i >= len(in_shape):
                    raise refuse(f"0 at position {i} copies a dimension the input (rank {len(in_shape)}) lacks")
                dims[i] = in_shape[i]
    size = math.prod(in_shape)
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or size % known:
            raise refuse(f"-1 cannot be inferred: {size} elements, {known} in the other dimensions")
        dims[dims.index(-1)] = size // known
    if math.prod(dims) != size:
        raise refuse(f"{size} elements cannot fill {math.prod(dims)}")
    return tuple(dims)


@register("Reshape", since=(5, 13, 14, 19, 21, 23, 24, 25))
def reshape(node: Node, data, shape):
    require_dtype(data, types_at(TENSOR_TYPES, node.version), "data")
    require_dtype(shape, {T.INT64}, "shape")
    if shape.ndim != 1:
        raise ShapeError(f"shape must be a 1-D tensor, got shape {shape.shape}")
    allowzero = node.version >= 14 and bool(node.attr("allowzero", 0, int))
    return (data.reshape(_reshape_target(data.shape, [int(d) for d in shape], allowzero)),)
