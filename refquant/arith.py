"""Exact arithmetic primitives shared by every operator.

This is the only module that rounds or saturates. Each function states its
formula; where a float computation stands in for an exact one, the bound that
makes it exact is written next to it.
"""

from __future__ import annotations

import numpy as np

from .dtypes import QType
from .errors import NonFiniteError, QuantParamError

__all__ = [
    "narrow",
    "quantize",
    "dequantize",
    "requantize",
    "saturate_int",
    "wrap_int32",
    "exact_matmul",
    "param_for",
    "check_scale",
]


# ----------------------------------------------------------------------------
# Correctly rounded narrowing of float64 values
# ----------------------------------------------------------------------------

_NATIVE = {np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16)}


def _round_to_odd_f32(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounding to odd: truncate, and set the last bit when inexact.

    Rounding to odd into 24 bits, then to nearest-even into p <= 22 bits,
    equals a single rounding to nearest-even (Boldo & Melquiond, 2008).
    """
    f = x.astype(np.float32)
    inexact = np.isfinite(x) & (f.astype(np.float64) != x)
    if inexact.any():
        f_in = f[inexact]
        even = (f_in.view(np.uint32) & 1) == 0
        toward = np.where(x[inexact] > f_in, np.float32(np.inf), np.float32(-np.inf))
        f[inexact] = np.where(even, np.nextafter(f_in, toward), f_in)
    return f


def narrow(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` (float64) rounded once to nearest-even in ``dtype``.

    numpy rounds float64 to float32/float16 directly; ml_dtypes goes through
    float32, which would round twice, so those types take a round-to-odd step.
    """
    dtype = np.dtype(dtype)
    x = np.asarray(x, dtype=np.float64)
    if dtype in _NATIVE:
        return x.astype(dtype)
    return _round_to_odd_f32(x).astype(dtype)


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, e) with p = fl(a*b) and p + e == a*b exactly (Dekker; no overflow assumed)."""
    p = a * b
    split = 134217729.0  # 2**27 + 1
    ca, cb = split * a, split * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _product_round_to_odd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a*b rounded to odd in float64, so that a later narrow() rounds only once."""
    p, e = _two_product(a, b)
    inexact = (e != 0) & np.isfinite(p)
    if inexact.any():
        p_in = p[inexact]
        even = (p_in.view(np.uint64) & 1) == 0
        toward = np.where(e[inexact] > 0, np.inf, -np.inf)
        p[inexact] = np.where(even, np.nextafter(p_in, toward), p_in)
    return p


# ----------------------------------------------------------------------------
# Quantization parameters: validation and broadcasting
# ----------------------------------------------------------------------------


def check_scale(scale: np.ndarray, what: str) -> None:
    """Scales must be finite and > 0; anything else is an error, never garbage."""
    s = np.asarray(scale).astype(np.float64)
    bad = ~(np.isfinite(s) & (s > 0))
    if bad.any():
        first = float(s[bad].flat[0])
        raise QuantParamError(
            f"{what} must be finite and > 0, got {first!r}"
            + (f" ({int(bad.sum())} of {s.size} values are invalid)" if s.size > 1 else "")
        )


def param_for(
    param: np.ndarray,
    x_shape: tuple[int, ...],
    *,
    axis: int | None,
    block_size: int = 0,
    what: str,
) -> np.ndarray:
    """Reshape a scale or zero point so that it broadcasts against ``x_shape``.

    - per-tensor: a scalar (or a one-element 1-D tensor);
    - per-axis (``axis`` given, ``block_size`` 0): 1-D of length ``x_shape[axis]``;
    - blocked (``block_size`` > 0): same rank as x, ``ceil(x_shape[axis] / block_size)``
      along ``axis`` and equal to x elsewhere; each value repeats over its block.
    ``axis=None`` means only per-tensor is allowed (opset 10 QuantizeLinear).
    """
    param = np.asarray(param)
    rank = len(x_shape)
    if param.ndim == 0 or (param.ndim == 1 and param.size == 1 and not block_size):
        return param.reshape(())
    if axis is None:
        raise QuantParamError(f"{what} must be a scalar at this opset version, got shape {param.shape}")
    if not -rank <= axis < rank:
        raise QuantParamError(f"axis {axis} is out of range for input of rank {rank}")
    axis %= rank
    if not block_size:
        if param.ndim != 1 or param.shape[0] != x_shape[axis]:
            raise QuantParamError(
                f"{what} has shape {param.shape}, expected a scalar or a 1-D tensor of "
                f"length {x_shape[axis]} (input dimension {axis})"
            )
        shape = [1] * rank
        shape[axis] = x_shape[axis]
        return param.reshape(shape)
    if block_size < 0:
        raise QuantParamError(f"block_size must be >= 0, got {block_size}")
    expected = list(x_shape)
    expected[axis] = -(-x_shape[axis] // block_size)
    if list(param.shape) != expected:
        raise QuantParamError(
            f"{what} has shape {param.shape}, expected {tuple(expected)} for blocked "
            f"quantization of shape {tuple(x_shape)} along axis {axis} with block_size {block_size}"
        )
    return np.repeat(param, block_size, axis=axis).take(np.arange(x_shape[axis]), axis=axis)


# ----------------------------------------------------------------------------
# Quantize, dequantize, requantize
# ----------------------------------------------------------------------------


def _apply_nan_policy(values: np.ndarray, shifted: np.ndarray, zero_point, qt: QType, nan: str) -> np.ndarray:
    """Where ``values`` is NaN, give ``shifted`` (values + zero point) the profile's NaN result.

    ``nan="error"`` raises; ``"qmin"`` gives qmin; ``"zero_point"`` gives the zero point.
    """
    nans = np.isnan(values)
    if not nans.any():
        return shifted
    if nan == "error":
        raise NonFiniteError(
            f"input has {int(nans.sum())} NaN value(s); {qt.name} has no NaN "
            "(profile option nan='error'; use 'qmin' or 'zero_point' to map them)"
        )
    fill = qt.qmin if nan == "qmin" else zero_point
    return np.where(nans, fill, shifted)


def saturate_int(values: np.ndarray, qt: QType) -> np.ndarray:
    """Clip integral float64 (or int64) ``values`` to [qmin, qmax] and cast to ``qt``."""
    return np.clip(values, qt.qmin, qt.qmax).astype(qt.dtype)


def _to_qtype(
    values: np.ndarray, zero_point, qt: QType, *, saturate: bool, nan: str, overflow: str = "saturate"
) -> np.ndarray:
    """``values + zero_point`` -> ``qt``; integer types round half to even first.

    integer: q = clip(rint(v) + zp, qmin, qmax); +-inf saturate; NaN per ``nan``;
             ``overflow="int32-indefinite"`` emulates an x86 int32 cast (NaN included) before the clip.
    float:   q = cast(v + zp), clipped to +-max finite first when ``saturate``.
    """
    zp = 0.0 if zero_point is None else np.asarray(zero_point).astype(np.float64)
    if qt.is_float:
        shifted = values + zp
        no_specials = qt.bits < 8  # float4/float6 encode neither inf nor NaN: always saturate
        if saturate or no_specials:
            shifted = np.clip(shifted, qt.qmin, qt.qmax)
        if no_specials:
            shifted = _apply_nan_policy(values, shifted, zp, qt, nan)
        return narrow(shifted, qt.dtype)
    if overflow == "int32-indefinite":  # the emulated cast decides NaN too
        return saturate_int(_int32_indefinite_shift(values, zp), qt)
    return saturate_int(_apply_nan_policy(values, np.rint(values) + zp, zp, qt, nan), qt)


def _int32_indefinite_shift(values: np.ndarray, zero_point) -> np.ndarray:
    """int32(rint(v)) + zp as x86 computes it: out-of-range and NaN casts give INT32_MIN
    (the "integer indefinite" of cvtss2si), and the int32 addition wraps."""
    rounded = np.rint(values)
    fits = np.abs(rounded) < 2.0**31  # False for NaN and inf
    as_int = np.where(fits, rounded, -(2.0**31)).astype(np.int64)
    return wrap_int32(as_int + np.asarray(zero_point).astype(np.int64)).astype(np.float64)


def wrap_int32(values: np.ndarray) -> np.ndarray:
    """int64 ``values`` modulo 2**32 into [-2**31, 2**31): two's complement int32."""
    return ((values + 2**31) % 2**32 - 2**31).astype(np.int32)


def quantize(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point,
    qt: QType,
    *,
    precision,
    saturate: bool = True,
    nan: str = "error",
    overflow: str = "saturate",
) -> np.ndarray:
    """q = saturate(round_half_even(x / scale) + zero_point).

    The division is one IEEE division in ``precision`` (the ONNX rule: the
    scale's type, or the ``precision`` attribute). numpy divides float16 and
    bfloat16 in float32 and rounds back; float32 has >= 2p+2 bits for both,
    so that double rounding is innocuous (Figueroa, 1995).
    """
    precision = np.dtype(precision)
    quotient = (x.astype(precision) / scale.astype(precision)).astype(np.float64)
    return _to_qtype(quotient, zero_point, qt, saturate=saturate, nan=nan, overflow=overflow)


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point, out_dtype) -> np.ndarray:
    """y = (q - zero_point) * scale, rounded once to ``out_dtype``.

    ``q - zero_point`` is exact (int64, or float64 for float8/4/6 types). The
    product is exact in float64 when |q - zp| < 2**29 and the scale has at
    most 24 significant bits (every type but int32); otherwise it is formed
    exactly as hi + lo and rounded to odd, so the final rounding is still single.
    """
    if q.dtype.kind in "iu":
        diff = q.astype(np.int64) - (0 if zero_point is None else np.asarray(zero_point).astype(np.int64))
        exact_in_f64 = diff.size == 0 or int(np.abs(diff).max()) < 2**29
        diff = diff.astype(np.float64)
    else:
        diff = q.astype(np.float64) - (0.0 if zero_point is None else np.asarray(zero_point).astype(np.float64))
        exact_in_f64 = True
    scale64 = np.asarray(scale).astype(np.float64)
    if exact_in_f64:
        product = diff * scale64
    else:
        product = _product_round_to_odd(*np.broadcast_arrays(diff, scale64))
    return narrow(product, out_dtype)


#: requantization precision -> (type of the multiplier, type of the product); None: the scales' own type
_REQUANTIZE_TYPES = {"float64": (np.float64, np.float64), "float32": (np.float32, np.float32), "mixed": (None, np.float64)}


def requantize(
    acc: np.ndarray,
    a_scale: np.ndarray,
    b_scale: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point,
    qt: QType,
    *,
    precision: str,
) -> np.ndarray:
    """y = saturate(round_half_even(acc * (a_scale * b_scale / y_scale)) + y_zero_point).

    ``precision="float64"``: multiplier and product in float64 (|acc| < 2**53
    so float64(acc) is exact). ``"float32"``: onnxruntime's
    rint(float32(acc) * float32(a_scale * b_scale / y_scale)). ``"mixed"``:
    onnx.reference's multiplier in the scales' type, product in float64.
    """
    multiplier_type, product_type = _REQUANTIZE_TYPES[precision]
    multiplier = (
        np.asarray(a_scale, multiplier_type) * np.asarray(b_scale, multiplier_type) / np.asarray(y_scale, multiplier_type)
    )
    real = (acc.astype(product_type) * multiplier.astype(product_type)).astype(np.float64)
    return _to_qtype(real, y_zero_point, qt, saturate=True, nan="error")


# ----------------------------------------------------------------------------
# Exact integer products through float BLAS
# ----------------------------------------------------------------------------

#: (dtype, limit): integers of magnitude < limit are exact in dtype, and so is
#: every partial sum of a dot product whose terms' magnitudes add up below it.
_EXACT_FLOATS = ((np.float32, 2**24), (np.float64, 2**53))


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for integer arrays (numpy matmul broadcasting), exact, as int64.

    Bound: every partial sum of a length-K dot product satisfies
    |s| <= K * max|a| * max|b|. When that is < 2**24 the float32 product is
    exact, when < 2**53 the float64 one is; otherwise K is cut into chunks
    that meet the float64 bound and the chunk results are added in int64.
    """
    k = a.shape[-1]
    term = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0))
    if term == 0 or k == 0:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return np.zeros(shape, np.int64)
    for dtype, limit in _EXACT_FLOATS:
        if k * term < limit:
            return np.matmul(a.astype(dtype), b.astype(dtype)).astype(np.int64)
    chunk = (2**53 - 1) // term
    if chunk == 0:  # a single product is not exact in float64: Python integers
        return np.matmul(a.astype(object), b.astype(object)).astype(np.int64)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    total = None
    for start in range(0, k, chunk):
        part = np.matmul(a64[..., start : start + chunk], b64[..., start : start + chunk, :]).astype(np.int64)
        total = part if total is None else total + part
    return total
