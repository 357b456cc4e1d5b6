"""Type conversion, constants and shape-only operators: Cast, CastLike, BitCast, Identity, Constant, Range,
Flatten, Reshape.

    Cast:     y = x converted to the type ``to`` by ``cast_array`` (refquant.ops.conversion)
    CastLike: y = Cast(x, to = the element type of target_type)
    BitCast:  y = the bits of x read as the type ``to`` (same bit width)
    Identity: y = x
    Constant: y = the value of the one value attribute
    Range:    y[i] = start + i * delta, i < max(ceil((limit - start) / delta), 0)
    Flatten:  y = x reshaped to (d_0 * ... * d_(axis-1), d_axis * ... * d_(n-1))
    Reshape:  y = x reshaped to ``shape`` (0 copies x's dimension unless allowzero; one -1 is inferred)

spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype
from ..dtypes import (
    BASIC_TYPES, FLATTEN_TYPES, FLOAT8_TYPES, IEEE_FLOATS, TENSOR_TYPES, dtype_name, np_dtype, proto_of, type_name,
    types_at,
)
from ..errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from ..node import Node
from ..registry import register
from .conversion import ROUND_MODES, cast_array

#: Cast: every type of TENSOR_TYPES (Identity, Constant, Reshape), and float6 from version 28
CAST_TYPES = TENSOR_TYPES | {28: (T.FLOAT6E2M3, T.FLOAT6E3M2)}

# ----------------------------------------------------------------------------
# Cast
# ----------------------------------------------------------------------------


@register("Cast", since=(9, 13, 19, 21, 23, 24, 25, 28))
def cast(node: Node, x):
    v = node.version
    allowed = types_at(CAST_TYPES, v)
    require_dtype(x, allowed, "input")
    to = node.attr("to", kind=int)
    if to not in allowed:
        raise AttributeValueError(f"to={to} ({type_name(to)}) is not a type Cast accepts at opset {v}")
    return (_cast_to(node, x, to),)


def _cast_to(node: Node, x: np.ndarray, to: int) -> np.ndarray:
    """x cast to TensorProto type ``to`` by ``cast_array``, with the node's saturate (19+) and round_mode (24+)."""
    v = node.version
    if to == T.STRING or x.dtype == object:
        raise DTypeError("casts from or to string are not supported")
    saturate = bool(node.attr("saturate", 1, int)) if v >= 19 else True
    round_mode = node.attr("round_mode", "up", str) if v >= 24 else "up"
    if round_mode not in ROUND_MODES:
        raise AttributeValueError(f"round_mode {round_mode!r} is not one of {ROUND_MODES}")
    return np.asarray(cast_array(x, np_dtype(to), saturate=saturate, round_mode=round_mode))


#: CastLike: TENSOR_TYPES from version 15 (bfloat16 included), float8 at 19, ... int2/uint2 at 25
CAST_LIKE_TYPES = TENSOR_TYPES


@register("CastLike", since=(15, 19, 21, 23, 24, 25))
def cast_like(node: Node, x, target_type):
    """y = x cast to the element type of ``target_type`` (its values unused), by Cast's rules."""
    allowed = types_at(CAST_LIKE_TYPES, node.version)
    require_dtype(x, allowed, "input")
    require_dtype(target_type, allowed, "target_type")
    return (_cast_to(node, x, proto_of(target_type.dtype)),)


# ----------------------------------------------------------------------------
# BitCast
# ----------------------------------------------------------------------------

#: BitCast: every type but string; complex64/complex128, which refquant holds in no tensor, are refused
BITCAST_TYPES = {26: tuple(t for t in types_at(TENSOR_TYPES, 26) if t != T.STRING)}
#: element types narrower than a byte: numpy stores each in one byte, the value in its low bits
_SUB_BYTE_WIDTHS = {T.UINT4: 4, T.INT4: 4, T.FLOAT4E2M1: 4, T.UINT2: 2, T.INT2: 2}


def _bit_width(proto: int) -> int:
    return _SUB_BYTE_WIDTHS.get(proto, np_dtype(proto).itemsize * 8)


@register("BitCast", since=(26,))
def bit_cast(node: Node, x):
    """y = the bits of x read as type ``to`` (same bit width, little endian); a byte other than 0 or 1 has no
    bool value (spec/ops/float.md, BitCast)."""
    allowed = types_at(BITCAST_TYPES, node.version)
    require_dtype(x, allowed, "input")
    to = node.attr("to", kind=int)
    if to not in allowed:
        raise AttributeValueError(f"to={to} ({type_name(to)}) is not a type BitCast accepts")
    source = proto_of(x.dtype)
    if _bit_width(source) != _bit_width(to):
        raise AttributeValueError(
            f"to={type_name(to)} is {_bit_width(to)} bits wide, the input ({dtype_name(x.dtype)}) "
            f"{_bit_width(source)}: BitCast needs the same bit width"
        )
    target = np_dtype(to)
    if to in _SUB_BYTE_WIDTHS:  # the low bits of each byte; ml_dtypes keeps no others
        bits = np.asarray(x, order="C").view(np.uint8) & np.uint8((1 << _bit_width(to)) - 1)
        return (bits.view(target),)
    raw = np.asarray(x, order="C")  # numpy's native byte order: little endian on x86-64 and arm64, as ONNX says
    if to == T.BOOL and np.any(raw.view(np.uint8) > 1):
        bad = raw.view(np.uint8)[raw.view(np.uint8) > 1]
        raise NonFiniteError(f"{bad.size} byte(s) ({int(bad.flat[0])} first) are neither 0 nor 1: not a bool")
    return (raw.view(target),)


# ----------------------------------------------------------------------------
# Identity, Constant
# ----------------------------------------------------------------------------


@register("Identity", since=(1, 13, 14, 16, 19, 21, 23, 24, 25))
def identity(node: Node, x):
    if isinstance(x, list) and node.version >= 14 or x is None and node.version >= 16:
        return (x,)  # a sequence (opset 14+) or an empty optional (16+): spec/ops/sequence.md
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
    """The attribute's tensor, read-only: a Constant is a graph constant like an initializer (onnxruntime
    turns Constant nodes into initializers, which its MatMul and Gemm prepack; refquant.checks.frozen)."""
    (value,) = _constant_value(node)
    value = np.array(value)
    value.setflags(write=False)
    return (value,)


def _constant_value(node: Node):
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
# Range
# ----------------------------------------------------------------------------

RANGE_TYPES = {11: (T.FLOAT, T.DOUBLE, T.INT16, T.INT32, T.INT64), 27: (T.FLOAT16, T.BFLOAT16)}
#: the most elements a narrow-float Range makes exactly: i * delta needs <= 53 bits (delta: 24 bits or fewer)
_EXACT_RANGE_LENGTH = 2**29


def _range_scalars(node: Node, named: dict[str, np.ndarray]) -> list:
    """start, limit and delta: one-element tensors of one type, as Python numbers."""
    allowed = types_at(RANGE_TYPES, node.version)
    for name, value in named.items():
        require_dtype(value, allowed, name)
        if value.size != 1:
            raise ShapeError(f"{name} must be a scalar, got shape {value.shape}")
    if len({value.dtype for value in named.values()}) > 1:
        raise DTypeError(", ".join(f"{n} is {dtype_name(v.dtype)}" for n, v in named.items()) + ": they must share one type")
    scalars = [value.reshape(()).item() for value in named.values()]
    if not all(math.isfinite(v) for v in scalars):
        raise NonFiniteError(f"start, limit and delta must be finite, got {scalars}")
    if scalars[2] == 0:
        raise ShapeError("delta must not be 0")
    return scalars


@register("Range", since=(11, 27))
def range_(node: Node, start, limit, delta):
    """Integers: exact. float16, bfloat16, float32: the exact start + i * delta rounded once (whatever
    ``stash_type``). float64: start + i * delta in float64, the spec's pseudocode. The length is
    ceil((limit - start) / delta) of the exact values."""
    first, last, step = _range_scalars(node, {"start": start, "limit": limit, "delta": delta})
    if node.version >= 27 and node.attr("stash_type", T.FLOAT, int) not in (T.FLOAT, T.DOUBLE):
        raise AttributeValueError(f"stash_type must be {T.FLOAT} (float) or {T.DOUBLE} (double)")
    length = max(math.ceil((Fraction(last) - Fraction(first)) / Fraction(step)), 0)
    if start.dtype.kind in "iu":
        return ((first + np.arange(length, dtype=np.int64) * step).astype(start.dtype),)  # within [start, limit)
    steps = np.arange(length, dtype=np.float64) * step
    if start.dtype == np.float64:
        return (first + steps,)
    if length > _EXACT_RANGE_LENGTH:
        raise ShapeError(f"Range of {length} {dtype_name(start.dtype)} elements: refquant computes at most 2**29 exactly")
    return (arith.narrow(arith.add_round_to_odd(np.full(length, first), steps), start.dtype),)


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


# ----------------------------------------------------------------------------
# Dropout (inference), EyeLike, Trilu
# ----------------------------------------------------------------------------

#: Dropout's data types (T) by version; ratio's (T1) from 12: the IEEE floats, bfloat16 and float8 from 22
DROPOUT_TYPES = {10: IEEE_FLOATS, 13: (T.BFLOAT16,), 22: FLOAT8_TYPES}
DROPOUT_RATIO_TYPES = {12: IEEE_FLOATS, 22: (T.BFLOAT16,) + FLOAT8_TYPES}


@register("Dropout", since=(10, 12, 13, 22))
def dropout(node: Node, data, ratio=None, training_mode=None):
    """Inference: output = data, mask = all True. training_mode = True (12+) with a ratio other than 0 is refused
    (it drops random elements: a training graph); with ratio 0 it drops nothing, so it runs as inference."""
    require_dtype(data, types_at(DROPOUT_TYPES, node.version), "data")
    if node.version >= 12:
        if ratio is not None:
            require_dtype(ratio, types_at(DROPOUT_RATIO_TYPES, node.version), "ratio")
            if ratio.size != 1:
                raise ShapeError(f"ratio must be a scalar, got shape {ratio.shape}")
        if training_mode is not None:
            require_dtype(training_mode, {T.BOOL}, "training_mode")
            if training_mode.size != 1:
                raise ShapeError(f"training_mode must be a scalar, got shape {training_mode.shape}")
            rate = 0.5 if ratio is None else float(ratio.reshape(()).astype(np.float64))
            if bool(training_mode.reshape(())) and rate != 0:
                raise AttributeValueError(
                    f"training_mode=True with ratio {rate} drops random elements (a training graph); refquant runs "
                    "inference graphs (training_mode=True with ratio 0 drops nothing and runs)"
                )
    outputs = (data,)
    if len(node.proto.output) > 1 and node.proto.output[1]:
        outputs += (np.ones(data.shape, dtype=np.bool_),)
    return outputs


EYE_TYPES = {9: tuple(t for t in BASIC_TYPES if t != T.STRING), 22: (T.BFLOAT16,)}


@register("EyeLike", since=(9, 22))
def eye_like(node: Node, x):
    """A 2-D tensor of x's shape: ones on the diagonal shifted by ``k``, zeros elsewhere, of type ``dtype``
    (default: x's type)."""
    allowed = types_at(EYE_TYPES, node.version)
    require_dtype(x, allowed, "input")
    if x.ndim != 2:
        raise ShapeError(f"input must be 2-D, got shape {x.shape}")
    dtype = x.dtype
    if node.has("dtype"):
        to = node.attr("dtype", kind=int)
        if to not in allowed:
            raise AttributeValueError(f"dtype={to} ({type_name(to)}) is not a type EyeLike makes at opset {node.version}")
        dtype = np_dtype(to)
    k = node.attr("k", 0, int)
    return (np.eye(x.shape[0], x.shape[1], k=k).astype(dtype),)


TRILU_TYPES = {14: BASIC_TYPES + (T.BFLOAT16,)}


@register("Trilu", since=(14,))
def trilu(node: Node, x, k_input=None):
    """The upper (``upper`` = 1, default) or lower triangle of the last two axes, the diagonal shifted by k
    (an int64 scalar input, default 0); other elements 0 (False, "" for strings). Any k: beyond the matrix
    keeps all or nothing."""
    require_dtype(x, types_at(TRILU_TYPES, node.version), "input")
    if x.ndim < 2:
        raise ShapeError(f"input must have rank >= 2, got shape {x.shape}")
    k = 0
    if k_input is not None:
        require_dtype(k_input, {T.INT64}, "k")
        if k_input.size != 1:
            raise ShapeError(f"k must be a scalar, got shape {k_input.shape}")
        k = int(k_input.reshape(()))
    rows, cols = x.shape[-2:]
    k = max(min(k, cols + 1), -rows - 1)  # beyond the matrix, every k selects the same
    upper = node.attr("upper", 1, int)
    if upper not in (0, 1):
        raise AttributeValueError(f"upper must be 0 or 1, got {upper}")
    keep = np.triu(np.ones((rows, cols), np.bool_), k) if upper else np.tril(np.ones((rows, cols), np.bool_), k)
    zero = np.array("" if x.dtype == object else 0).astype(x.dtype)
    return (np.where(keep, x, zero),)
