"""One table of tensor element types: ONNX enum, numpy dtype, quantized range.

A dtype is data here, never a branch in an operator: kernels look up
:func:`qtype` and use ``qmin``/``qmax``/``is_float``.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import TensorProto

__all__ = ["QType", "QTYPES", "qtype", "np_dtype", "proto_of", "type_name", "FLOAT_TYPES"]


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
        return TensorProto.DataType.Name(proto).lower()
    except ValueError:
        return f"<element type {proto}>"


_NP_OF_PROTO = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.BOOL: np.dtype(np.bool_),
    TensorProto.STRING: np.dtype(object),
    TensorProto.UINT4: np.dtype(ml_dtypes.uint4),
    TensorProto.INT4: np.dtype(ml_dtypes.int4),
    TensorProto.UINT2: np.dtype(ml_dtypes.uint2),
    TensorProto.INT2: np.dtype(ml_dtypes.int2),
    TensorProto.FLOAT8E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    TensorProto.FLOAT8E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    TensorProto.FLOAT8E5M2: np.dtype(ml_dtypes.float8_e5m2),
    TensorProto.FLOAT8E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    TensorProto.FLOAT8E8M0: np.dtype(ml_dtypes.float8_e8m0fnu),
    TensorProto.FLOAT4E2M1: np.dtype(ml_dtypes.float4_e2m1fn),
    TensorProto.FLOAT6E2M3: np.dtype(ml_dtypes.float6_e2m3fn),
    TensorProto.FLOAT6E3M2: np.dtype(ml_dtypes.float6_e3m2fn),
}
_PROTO_OF_NP = {dt: proto for proto, dt in _NP_OF_PROTO.items()}

#: Element types that hold real numbers for scales and float tensors.
FLOAT_TYPES = frozenset(
    {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
)


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
        _int_qtype("uint8", TensorProto.UINT8),
        _int_qtype("int8", TensorProto.INT8),
        _int_qtype("uint16", TensorProto.UINT16),
        _int_qtype("int16", TensorProto.INT16),
        _int_qtype("uint4", TensorProto.UINT4),
        _int_qtype("int4", TensorProto.INT4),
        _int_qtype("uint2", TensorProto.UINT2),
        _int_qtype("int2", TensorProto.INT2),
        _int_qtype("int32", TensorProto.INT32),
        _float_qtype("float8e4m3fn", TensorProto.FLOAT8E4M3FN),
        _float_qtype("float8e4m3fnuz", TensorProto.FLOAT8E4M3FNUZ),
        _float_qtype("float8e5m2", TensorProto.FLOAT8E5M2),
        _float_qtype("float8e5m2fnuz", TensorProto.FLOAT8E5M2FNUZ),
        _float_qtype("float4e2m1", TensorProto.FLOAT4E2M1),
        _float_qtype("float6e2m3", TensorProto.FLOAT6E2M3),
        _float_qtype("float6e3m2", TensorProto.FLOAT6E3M2),
    )
}
_QTYPE_OF_NP = {q.dtype: q for q in QTYPES.values()}


def qtype(dtype_or_proto) -> QType:
    """The :class:`QType` of a numpy dtype or TensorProto enum (KeyError if not quantized)."""
    if isinstance(dtype_or_proto, (int, np.integer)) and not isinstance(dtype_or_proto, bool):
        return QTYPES[int(dtype_or_proto)]
    return _QTYPE_OF_NP[np.dtype(dtype_or_proto)]
