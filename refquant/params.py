"""Quantization parameters from a real range: onnxruntime's rule, bit for bit.

    asymmetric: scale = (rmax - rmin) / (qmax - qmin),        zero_point = round(qmin - rmin / scale)
    symmetric:  scale = 2 * max(|rmin|, |rmax|) / (qmax - qmin), zero_point = round((qmin + qmax) / 2)

after widening the range to hold zero (rmin <= 0 <= rmax), so that zero is
exactly representable. spec/calibration.md states every step and where it
comes from (onnxruntime's ``compute_scale_zp`` / ``get_qmin_qmax_for_qType``).
The newest onnxruntime release's rules by default; an older release's with
``onnxruntime_version`` (the releases and their differences: refquant.ort_releases).
"""

from __future__ import annotations

import numpy as np

from . import arith, ort_releases
from .dtypes import QTYPES, QType, qtype as _qtype_of
from .errors import DTypeError, QuantParamError
from .qparams import broadcast_params, check_params

__all__ = [
    "qrange",
    "compute_scale_zero_point",
    "float8_scale_zero_point",
    "quantize",
    "dequantize",
    "FLOAT8_E4M3FN_STD",
]

#: (full, symmetric, reduce_range) integer ranges, onnxruntime's tables.
#: reduce_range wins over symmetric; the symmetric range drops the lone most
#: negative value only for int8 and int16.
_RANGES = {
    "uint8": ((0, 255), (0, 255), (0, 127)),
    "int8": ((-128, 127), (-127, 127), (-64, 64)),
    "uint16": ((0, 65535), (0, 65535), (0, 32767)),
    "int16": ((-32768, 32767), (-32767, 32767), (-16384, 16384)),
    "uint4": ((0, 15), (0, 15), (0, 7)),
    "int4": ((-8, 7), (-8, 7), (-4, 3)),
}
_BY_NAME = {q.name: q for q in QTYPES.values()}


def _resolve(qtype) -> QType:
    """A QType from a name ("int8"), a TensorProto enum or a numpy dtype."""
    if isinstance(qtype, QType):
        return qtype
    if isinstance(qtype, str) and qtype in _BY_NAME:
        return _BY_NAME[qtype]
    try:
        return _qtype_of(qtype)
    except (KeyError, TypeError):
        raise DTypeError(f"{qtype!r} is not a quantized type; use one of {sorted(_BY_NAME)}") from None


def _integer_type(qtype) -> QType:
    qt = _resolve(qtype)
    if qt.name not in _RANGES:
        raise DTypeError(f"no integer quantization range for {qt.name}; supported: {', '.join(_RANGES)}")
    return qt


def qrange(qtype, *, symmetric: bool = False, reduce_range: bool = False) -> tuple[int, int]:
    """(qmin, qmax) for ``qtype``; ``reduce_range`` wins over ``symmetric``."""
    full, sym, reduced = _RANGES[_integer_type(qtype).name]
    return reduced if reduce_range else sym if symmetric else full


# ----------------------------------------------------------------------------
# scale and zero point
# ----------------------------------------------------------------------------


def _as_range_values(value, what: str) -> np.ndarray:
    """A float array; Python numbers and lists count as float32 (the calibrators' type)."""
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "f":
        array = np.asarray(value)
    else:
        array = np.asarray(value, dtype=np.float32)
    if array.dtype not in (np.float16, np.float32, np.float64):
        raise DTypeError(f"{what} must be float16, float32 or float64, got {array.dtype}")
    if not np.isfinite(array).all():
        raise QuantParamError(f"{what} must be finite, got {array[~np.isfinite(array)].flat[0]!r}")
    return array


def _round_half_even(values: np.ndarray, qt: QType) -> np.ndarray:
    """round_half_even(values) in ``qt`` (arith's rounding: values / 1 in float64)."""
    return arith.quantize_values(values, np.float64(1.0), None, qt, precision=np.float64)


def compute_scale_zero_point(
    rmin,
    rmax,
    qtype,
    *,
    symmetric: bool = False,
    reduce_range: bool = False,
    min_real_range: float | None = None,
    onnxruntime_version: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero_point) for the range [rmin, rmax], elementwise for per-channel arrays.

    1. rmin = min(rmin, 0), rmax = max(rmax, 0), in the inputs' float type;
    2. rmax = max(rmax, rmin + min_real_range) when ``min_real_range`` is given;
    3. symmetric: rmin, rmax = -m, m with m = max(|rmin|, |rmax|);
    4. scale64 = (f64(rmax) - f64(rmin)) / (qmax - qmin);
    5. a degenerate scale gives scale 1, zero point 0: float32 ranges: scale64 < tiny
       (float32's smallest normal); float16 ranges: float16(scale64) == 0 (onnxruntime
       >= 1.32), or scale64 < 2**-14, float16's smallest normal (1.31);
    6. zero point: symmetric round((qmin + qmax) / 2), else round(qmin - rmin / scale64),
       half to even;
    7. scale = scale64 rounded to the input type (float32, or float16 for float16 inputs).

    ``onnxruntime_version``: the release whose rules to follow ("1.31", "1.32";
    None: the newest, :data:`refquant.ort_releases.LATEST`).
    """
    release = ort_releases.rules(onnxruntime_version)
    qt = _integer_type(qtype)
    qmin, qmax = qrange(qt, symmetric=symmetric, reduce_range=reduce_range)
    lo, hi = _as_range_values(rmin, "rmin"), _as_range_values(rmax, "rmax")
    dtype = np.result_type(lo, hi)
    lo, hi = np.broadcast_arrays(lo.astype(dtype), hi.astype(dtype))
    lo = np.minimum(lo, dtype.type(0))
    hi = np.maximum(hi, dtype.type(0))
    if min_real_range is not None:
        floor = lo + np.asarray(min_real_range, dtype=dtype)
        hi = np.where(floor > hi, floor, hi)
    if symmetric:
        absmax = np.maximum(np.abs(lo), np.abs(hi))
        lo, hi = -absmax, absmax
    lo64 = lo.astype(np.float64)
    scale64 = (hi.astype(np.float64) - lo64) / (np.float64(qmax) - np.float64(qmin))
    stored = arith.narrow(scale64, dtype)
    if dtype == np.float16 and release.fp16_degenerate_scale == "rounds-to-zero":
        degenerate = stored < np.finfo(np.float16).smallest_subnormal
    else:
        degenerate = scale64 < np.finfo(dtype).tiny
    if symmetric:
        zero_point = _round_half_even(np.full(scale64.shape, (qmin + qmax) / 2.0), qt)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.float64(qmin) - lo64 / np.where(degenerate, 1.0, scale64)
        zero_point = _round_half_even(offset, qt)
    scale = np.where(degenerate, dtype.type(1.0), stored).astype(dtype)
    zero_point = np.where(degenerate, np.zeros((), qt.dtype), zero_point).astype(qt.dtype)
    return scale, zero_point


def _finite_values(dtype) -> np.ndarray:
    every = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
    return every[np.isfinite(every)]


#: std of the 254 finite float8 E4M3FN values, computed in float32 (about 100.0577)
FLOAT8_E4M3FN_STD = np.std(_finite_values(_resolve("float8e4m3fn").dtype))


def float8_scale_zero_point(std, qtype="float8e4m3fn") -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero_point) = (std / std_f8, 0) for float8 E4M3FN.

    ``std`` is the data's standard deviation in its own float type (numpy.std);
    the division is one float32 operation, the result is rounded to std's type.
    """
    qt = _resolve(qtype)
    if qt.name != "float8e4m3fn":
        raise DTypeError(f"the std-based float8 rule is defined for float8e4m3fn only, not {qt.name}")
    std = np.asarray(std)
    if std.dtype not in (np.float16, np.float32):
        raise DTypeError(f"std must be float16 or float32, got {std.dtype}")
    quotient = np.asarray(std.astype(np.float32) / FLOAT8_E4M3FN_STD, dtype=np.float64)
    return arith.narrow(quotient, std.dtype), np.zeros(std.shape, qt.dtype)


# ----------------------------------------------------------------------------
# quantize / dequantize with given parameters (the interpreter's kernels)
# ----------------------------------------------------------------------------


def _checked_params(x_shape, scale, zero_point, axis, block_size):
    """(scale, zero_point) checked and broadcast against ``x_shape`` as QuantizeLinear does it
    (refquant.qparams), the scale a float16, float32 or float64 array."""
    scale = np.asarray(scale)
    if scale.dtype not in (np.float16, np.float32, np.float64):
        raise DTypeError(f"scale must be float16, float32 or float64, got {scale.dtype}")
    zero_point = None if zero_point is None else np.asarray(zero_point)
    check_params(scale, zero_point)
    for value, name in ((axis, "axis"), (block_size, "block_size")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise QuantParamError(f"{name} must be an integer, got {value!r}")
    return broadcast_params(scale, zero_point, x_shape, axis=axis, block_size=block_size or 0)


def quantize(x, scale, zero_point, qtype, axis: int | None = None, block_size: int | None = None) -> np.ndarray:
    """q = saturate(round_half_even(x / scale) + zero_point), divided in the scale's type.

    Per-tensor (scalar scale), per-axis (``axis``) or blocked (``axis`` and
    ``block_size``), exactly as QuantizeLinear. NaN input is an error.
    """
    qt = _resolve(qtype)
    x = np.asarray(x)
    scale, zero_point = _checked_params(x.shape, scale, zero_point, axis, block_size)
    if zero_point is not None:
        values = zero_point.astype(np.float64)
        if not ((values >= qt.qmin) & (values <= qt.qmax)).all():
            raise QuantParamError(
                f"zero point {values[(values < qt.qmin) | (values > qt.qmax)].flat[0]} is outside {qt.name}"
            )
        zero_point = zero_point.astype(qt.dtype)
    return arith.quantize_values(x, scale, zero_point, qt, precision=scale.dtype)


def dequantize(q, scale, zero_point, axis: int | None = None, block_size: int | None = None) -> np.ndarray:
    """x = (q - zero_point) * scale, rounded once to the scale's type (DequantizeLinear)."""
    q = np.asarray(q)
    scale, zero_point = _checked_params(q.shape, scale, zero_point, axis, block_size)
    return arith.dequantize_values(q, scale, zero_point, scale.dtype)
