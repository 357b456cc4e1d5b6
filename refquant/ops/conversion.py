"""ONNX Cast's conversion rules: ``cast_array``, shared by Cast and every kernel that converts like it.

Cast follows the rules of the Cast operator and of ONNX's float4/float6/int4/int2 pages:
- to a float type: the exact value rounded once to nearest-even. Out of range
  gives +-inf for float16/bfloat16/float32/float64; float8 types saturate to
  +-max when ``saturate`` (the default), else follow the spec's table (NaN, or
  inf for float8e5m2); float4/float6 always saturate and map NaN to +max;
  float8e8m0 rounds to a power of two per ``round_mode``.
- to an integer type: integers wrap (two's complement); floats truncate toward
  zero, except int4/uint4/int2/uint2, which round half to even and keep the
  low bits ("rounding to the nearest-even integer and truncating", ONNX
  int4.md / int2.md "Cast"). Where ONNX leaves the result undefined (NaN, inf,
  a value outside the type) refquant raises NonFiniteError.

Every out-of-range, NaN and overflow rule is computed here, explicitly: numpy /
ml_dtypes only ever convert a value the target type holds exactly, or round an
in-range value to nearest-even. Their own out-of-range conversions changed
between releases (ml_dtypes 0.5/0.6 keep an integer's low bits, 0.7 gives 0 and
maps NaN to -0 in float4) and are never relied on.
- to bool: x != 0. From bool: 0 or 1.

spec/ops/float.md (Cast) states every choice.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..dtypes import FLOAT8_TYPES, dtype_name, np_dtype
from ..errors import NonFiniteError

__all__ = ["cast_array", "ROUND_MODES"]

ROUND_MODES = ("up", "down", "nearest")

_SUB_BYTE_INTS = frozenset(np_dtype(t) for t in (T.UINT4, T.INT4, T.UINT2, T.INT2))
_FLOAT8 = frozenset(np_dtype(t) for t in FLOAT8_TYPES)
#: float types without inf or NaN: they always saturate
_FINITE_FLOATS = frozenset(np_dtype(t) for t in (T.FLOAT4E2M1, T.FLOAT6E2M3, T.FLOAT6E3M2))
_E8M0 = np_dtype(T.FLOAT8E8M0)
_E8M0_EXPONENTS = (-127, 127)


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


def _wrap_sub_byte(values: np.ndarray, target: np.dtype) -> np.ndarray:
    """int64 ``values`` reduced modulo 2**bits into int4/uint4/int2/uint2 (two's complement), as ``target``.

    The residue is formed here, so the final conversion only sees values the type holds.
    """
    info = ml_dtypes.iinfo(target)
    span = 1 << info.bits
    low = np.asarray(values, np.int64) & (span - 1)  # & on int64 is two's complement: the low bits
    if info.min < 0:
        low = np.where(low > info.max, low - span, low)
    return low.astype(target)


def _float_to_integer(values: np.ndarray, target: np.dtype) -> np.ndarray:
    """float64 ``values`` to an integer type.

    int4/uint4/int2/uint2: round half to even, keep the low bits (ONNX int4/int2 pages).
    Other types: truncate toward zero (C); the result must fit the type.
    """
    info = ml_dtypes.iinfo(target)
    if target in _SUB_BYTE_INTS:
        _require_defined(np.isfinite(values), values, target)
        # fmod is exact and keeps the value's residue mod 2**bits; the wrap does the rest
        return _wrap_sub_byte(np.fmod(np.rint(values), 2.0**info.bits).astype(np.int64), target)
    truncated = np.trunc(values)
    # info.min and info.max + 1 are powers of two, so both bounds are exact in float64
    _require_defined((truncated >= info.min) & (truncated < 2.0**info.bits + info.min), values, target)
    return truncated.astype(target)


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
    values = arith.float64_for_narrowing(x)
    if target == _E8M0:
        return _to_e8m0(values, saturate=saturate, round_mode=round_mode)
    largest = float(ml_dtypes.finfo(target).max)
    if target in _FINITE_FLOATS:
        values = np.where(np.isnan(values), largest, values)
    if target in _FINITE_FLOATS or (target in _FLOAT8 and saturate):
        # clipping before the rounding is exact: values beyond +-max round to +-max anyway
        values = np.clip(values, -largest, largest)
    return arith.narrow(values, target)  # one rounding; beyond +-max: +-inf (bfloat16, e5m2) or NaN (float8)


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
            # two's complement wrap, through int64 (numpy wraps; the sub-byte residue is formed explicitly)
            wide = x.astype(np.int64)
            return _wrap_sub_byte(wide, target) if target in _SUB_BYTE_INTS else wide.astype(target)
        return _float_to_integer(x.astype(np.float64), target)
    return _to_float(x, target, saturate=saturate, round_mode=round_mode)
