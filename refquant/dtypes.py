"""One table of tensor element types: ONNX enum, numpy dtype, quantized range.

A dtype is data here, never a branch in an operator: kernels look up
:func:`qtype` and use ``qmin``/``qmax``/``is_float``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import TensorProto as T

__all__ = [
    "QType",
    "QTYPES",
    "qtype",
    "np_dtype",
    "proto_of",
    "type_name",
    "dtype_name",
    "types_at",
    "FLOAT_TYPES",
    "IEEE_FLOATS",
    "WIDE_INTS",
    "NARROW_INTS",
    "EIGHT_BIT_INTS",
    "FOUR_BIT_INTS",
    "FLOAT8_TYPES",
    "BASIC_TYPES",
    "TENSOR_TYPES",
    "FLATTEN_TYPES",
]


def np_dtype(proto: int) -> np.dtype:
    """numpy (or ml_dtypes) dtype of a TensorProto element type."""
    try:
        return _NP_OF_PROTO[proto]
    except KeyError:
        raise KeyError(f"unsupported ONNX element type {type_name(proto)}") from None


def proto_of(dtype: np.dtype) -> int:
    """TensorProto element type of a numpy dtype."""
    return _PROTO_OF_NP[np.dtype(dtype)]


def type_name(proto: int) -> str:
    try:
        return T.DataType.Name(proto).lower()
    except ValueError:
        return f"<element type {proto}>"


def dtype_name(dtype) -> str:
    """The ONNX name of a numpy dtype ("float32", "int8"), or numpy's own name for a type ONNX lacks."""
    try:
        return type_name(proto_of(dtype))
    except KeyError:
        return str(dtype)


def types_at(table: Mapping[int, Iterable[int]], version: int) -> frozenset[int]:
    """Union of the element types a table adds at each since_version <= ``version``."""
    return frozenset(t for since, types in table.items() if since <= version for t in types)


_NP_OF_PROTO = {
    T.FLOAT: np.dtype(np.float32),
    T.DOUBLE: np.dtype(np.float64),
    T.FLOAT16: np.dtype(np.float16),
    T.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    T.INT8: np.dtype(np.int8),
    T.UINT8: np.dtype(np.uint8),
    T.INT16: np.dtype(np.int16),
    T.UINT16: np.dtype(np.uint16),
    T.INT32: np.dtype(np.int32),
    T.UINT32: np.dtype(np.uint32),
    T.INT64: np.dtype(np.int64),
    T.UINT64: np.dtype(np.uint64),
    T.BOOL: np.dtype(np.bool_),
    T.STRING: np.dtype(object),
    T.UINT4: np.dtype(ml_dtypes.uint4),
    T.INT4: np.dtype(ml_dtypes.int4),
    T.UINT2: np.dtype(ml_dtypes.uint2),
    T.INT2: np.dtype(ml_dtypes.int2),
    T.FLOAT8E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    T.FLOAT8E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    T.FLOAT8E5M2: np.dtype(ml_dtypes.float8_e5m2),
    T.FLOAT8E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    T.FLOAT8E8M0: np.dtype(ml_dtypes.float8_e8m0fnu),
    T.FLOAT4E2M1: np.dtype(ml_dtypes.float4_e2m1fn),
    T.FLOAT6E2M3: np.dtype(ml_dtypes.float6_e2m3fn),
    T.FLOAT6E3M2: np.dtype(ml_dtypes.float6_e3m2fn),
}
_PROTO_OF_NP = {dt: proto for proto, dt in _NP_OF_PROTO.items()}

# ----------------------------------------------------------------------------
# Groups of element types (TensorProto enums) shared by several kernels; a table
# of one op's types by version stays with its kernel
# ----------------------------------------------------------------------------

#: Element types that hold real numbers for scales and float tensors (bfloat16 included).
FLOAT_TYPES = frozenset({T.FLOAT, T.DOUBLE, T.FLOAT16, T.BFLOAT16})
#: the IEEE 754 binary floats: float16, float32, float64 (ops add bfloat16 at a version of their own)
IEEE_FLOATS = (T.FLOAT16, T.FLOAT, T.DOUBLE)
#: the 32- and 64-bit integers
WIDE_INTS = (T.INT32, T.INT64, T.UINT32, T.UINT64)
#: the 8- and 16-bit integers
NARROW_INTS = (T.INT8, T.INT16, T.UINT8, T.UINT16)
#: uint8 and int8: the 8-bit integers of the quantized products and the com.microsoft quantized ops
EIGHT_BIT_INTS = (T.UINT8, T.INT8)
#: uint4 and int4
FOUR_BIT_INTS = (T.UINT4, T.INT4)
#: the float8 types with an exponent and a mantissa (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ; not E8M0)
FLOAT8_TYPES = (T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ)
#: every element type of opset 1: bool, string, the IEEE floats and the 8- to 64-bit integers
BASIC_TYPES = (T.BOOL, T.STRING) + IEEE_FLOATS + WIDE_INTS + NARROW_INTS

#: ONNX's every-type constraint, by the version that added each type (Identity, Constant, Reshape, ...)
TENSOR_TYPES = {
    1: BASIC_TYPES,
    13: (T.BFLOAT16,),
    19: FLOAT8_TYPES,
    21: FOUR_BIT_INTS,
    23: (T.FLOAT4E2M1,),
    24: (T.FLOAT8E8M0,),
    25: (T.UINT2, T.INT2),
}
#: TENSOR_TYPES of the ops that skipped version 19 (Flatten, Squeeze, Unsqueeze, ...): float8 arrived at 21
FLATTEN_TYPES = TENSOR_TYPES | {19: (), 21: FLOAT8_TYPES + FOUR_BIT_INTS}


@dataclass(frozen=True)
class QType:
    """A quantized element type and its saturation range.

    For integer types ``qmin``/``qmax`` are the representable integers; for
    float types (float8, float6, float4) they are -/+ the largest finite value.
    """

    name: str
    proto: int
    dtype: np.dtype
    is_float: bool
    bits: int
    qmin: float
    qmax: float


def _int_qtype(name: str, proto: int) -> QType:
    dtype = _NP_OF_PROTO[proto]
    info = ml_dtypes.iinfo(dtype)
    return QType(name, proto, dtype, False, info.bits, int(info.min), int(info.max))


def _float_qtype(name: str, proto: int) -> QType:
    dtype = _NP_OF_PROTO[proto]
    info = ml_dtypes.finfo(dtype)
    return QType(name, proto, dtype, True, info.bits, -float(info.max), float(info.max))


QTYPES: dict[int, QType] = {
    q.proto: q
    for q in (
        _int_qtype("uint8", T.UINT8),
        _int_qtype("int8", T.INT8),
        _int_qtype("uint16", T.UINT16),
        _int_qtype("int16", T.INT16),
        _int_qtype("uint4", T.UINT4),
        _int_qtype("int4", T.INT4),
        _int_qtype("uint2", T.UINT2),
        _int_qtype("int2", T.INT2),
        _int_qtype("int32", T.INT32),
        _float_qtype("float8e4m3fn", T.FLOAT8E4M3FN),
        _float_qtype("float8e4m3fnuz", T.FLOAT8E4M3FNUZ),
        _float_qtype("float8e5m2", T.FLOAT8E5M2),
        _float_qtype("float8e5m2fnuz", T.FLOAT8E5M2FNUZ),
        _float_qtype("float4e2m1", T.FLOAT4E2M1),
        _float_qtype("float6e2m3", T.FLOAT6E2M3),
        _float_qtype("float6e3m2", T.FLOAT6E3M2),
    )
}
_QTYPE_OF_NP = {q.dtype: q for q in QTYPES.values()}


def qtype(dtype_or_proto) -> QType:
    """The :class:`QType` of a numpy dtype or TensorProto enum (KeyError if not quantized)."""
    if isinstance(dtype_or_proto, (int, np.integer)) and not isinstance(dtype_or_proto, bool):
        return QTYPES[int(dtype_or_proto)]
    return _QTYPE_OF_NP[np.dtype(dtype_or_proto)]
