"""The spec's arithmetic: round half to even, saturate, narrow, quantize, dequantize, requantize.

    q = saturate(round_half_even(x / scale) + zero_point),    x = (q - zero_point) * scale

as the ONNX operators define them, each result rounded once. The profile options that only choose a
precision or a special-value rule (requantization precision, NaN, int32 overflow) are parameters here;
a backend's different formula is a lowering (refquant/lowerings.py), and exact integer products are in
refquant/exact_products.py. Each function states its formula; where a float computation stands in for
an exact one, the bound that makes it exact is written next to it.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from .dtypes import QType
from .errors import NonFiniteError

__all__ = [
    "narrow",
    "quantize_values",
    "dequantize_values",
    "requantize",
    "saturate_int",
    "apply_nan_policy",
    "wrap_int32",
    "requantize_integer",
    "add_round_to_odd",
    "float64_for_narrowing",
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
    with np.errstate(over="ignore"):  # beyond float32: inf, which the step below turns into +-FLT_MAX (odd)
        f = x.astype(np.float32)
    inexact = np.isfinite(x) & (f.astype(np.float64) != x)
    if inexact.any():
        f_in = f[inexact]
        even = (f_in.view(np.uint32) & 1) == 0
        toward = np.where(x[inexact] > f_in, np.float32(np.inf), np.float32(-np.inf))
        f[inexact] = np.where(even, np.nextafter(f_in, toward), f_in)
    return f


#: what a value that rounds beyond +-max becomes, per ml_dtypes float type (ONNX Cast: "+/- infinity if OOR";
#: float8 with saturate=0: the Cast operator's second table; float4/float6: float4.md / float6.md, saturate)
_OVERFLOW = {
    np.dtype(ml_dtypes.bfloat16): "inf",
    np.dtype(ml_dtypes.float8_e5m2): "inf",
    np.dtype(ml_dtypes.float8_e4m3fn): "nan",
    np.dtype(ml_dtypes.float8_e4m3fnuz): "nan",
    np.dtype(ml_dtypes.float8_e5m2fnuz): "nan",
    np.dtype(ml_dtypes.float4_e2m1fn): "max",
    np.dtype(ml_dtypes.float6_e2m3fn): "max",
    np.dtype(ml_dtypes.float6_e3m2fn): "max",
}
_NO_NEGATIVE_ZERO = frozenset({np.dtype(ml_dtypes.float8_e4m3fnuz), np.dtype(ml_dtypes.float8_e5m2fnuz)})


def _rounds_beyond_max(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Where [x], x rounded to nearest-even at ``dtype``'s precision with no upper exponent limit, exceeds max.

    max = m * ulp with m the largest significand; max + ulp / 2 rounds up (out of range) exactly when m is
    odd. Infinities count; NaN does not.
    """
    info = ml_dtypes.finfo(dtype)
    largest = float(info.max)
    ulp = 2.0 ** (math.frexp(largest)[1] - 1 - info.nmant)
    halfway = largest + ulp / 2
    return np.abs(x) >= halfway if int(largest / ulp) % 2 else np.abs(x) > halfway


def narrow(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` (float64) rounded once to nearest-even in ``dtype``.

    numpy rounds float64 to float32/float16 directly. For the ml_dtypes types,
    a round-to-odd step into float32 leaves ml_dtypes one in-range rounding to
    nearest-even, which is then the only one (its own float64 path rounded
    twice before 0.7). Values that round beyond +-max get the type's rule here
    (``_OVERFLOW``), and -0 becomes +0 in the fnuz types, whatever the
    installed ml_dtypes does with them. NaN stays NaN where the type has one;
    for float4/float6 the caller decides NaN first.
    """
    dtype = np.dtype(dtype)
    x = np.asarray(x, dtype=np.float64)
    if dtype in _NATIVE:
        return x.astype(dtype)
    if dtype in _NO_NEGATIVE_ZERO:  # every x that rounds to zero (half the smallest subnormal ties to 0) -> +0
        x = np.where(np.abs(x) <= float(ml_dtypes.finfo(dtype).smallest_subnormal) / 2, 0.0, x)
    result = _round_to_odd_f32(x).astype(dtype)
    rule = _OVERFLOW.get(dtype)
    if rule is not None:
        over = _rounds_beyond_max(x, dtype)
        if over.any():
            value = {"inf": np.inf, "nan": np.nan, "max": float(ml_dtypes.finfo(dtype).max)}[rule]
            result = np.where(over, np.copysign(value, x), result.astype(np.float64)).astype(dtype)
    return result


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, e) with p = fl(a*b) and p + e == a*b exactly (Dekker; no overflow assumed)."""
    p = np.asarray(a * b)  # a 0-d product is a numpy scalar, which the caller could not write into
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


def add_round_to_odd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b of float64 values rounded to odd: the sum when exact, else its float64 neighbour with an
    odd last bit, toward the exact sum. Rounding this to a type of <= 51 significant bits rounds the
    exact sum once (Boldo & Melquiond, 2008). Knuth's two-sum gives the exact error; non-finite sums
    stay as they are."""
    total = np.asarray(a + b)
    b_virtual = total - a
    error = (a - (total - b_virtual)) + (b - b_virtual)
    to_odd = np.isfinite(total) & (error != 0) & ((total.view(np.uint64) & 1) == 0)
    return np.where(to_odd, np.nextafter(total, np.copysign(np.inf, error)), total)


def float64_for_narrowing(x: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------
# Quantize, dequantize, requantize
# ----------------------------------------------------------------------------


def apply_nan_policy(values: np.ndarray, shifted: np.ndarray, zero_point, qt: QType, nan: str) -> np.ndarray:
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
            shifted = apply_nan_policy(values, shifted, zp, qt, nan)
        return narrow(shifted, qt.dtype)
    if overflow == "int32-indefinite":  # the emulated cast decides NaN too
        return saturate_int(_int32_indefinite_shift(values, zp), qt)
    return saturate_int(apply_nan_policy(values, np.rint(values) + zp, zp, qt, nan), qt)


def _int32_indefinite_shift(values: np.ndarray, zero_point, out_of_range: float = -(2.0**31)) -> np.ndarray:
    """int32(rint(v)) + zp as x86 computes it: out-of-range and NaN casts give INT32_MIN
    (the "integer indefinite" of cvtss2si), and the int32 addition wraps.
    ``out_of_range=0``: ml_dtypes' cast of a bfloat16 to int32, which gives 0 for NaN, +-inf
    and values outside [-2**31, 2**31) (-2**31 itself converts)."""
    rounded = np.rint(values)
    fits = (rounded >= -(2.0**31)) & (rounded < 2.0**31)  # False for NaN and inf
    as_int = np.where(fits, rounded, out_of_range).astype(np.int64)
    return wrap_int32(as_int + np.asarray(zero_point).astype(np.int64)).astype(np.float64)


def wrap_int32(values: np.ndarray) -> np.ndarray:
    """int64 ``values`` modulo 2**32 into [-2**31, 2**31): two's complement int32."""
    return ((values + 2**31) % 2**32 - 2**31).astype(np.int32)


def _quantize_general(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point,
    qt: QType,
    *,
    precision,
    saturate: bool,
    nan: str,
    overflow: str,
) -> np.ndarray:
    """:func:`quantize` for every type, precision and profile option.

    The division is one IEEE division in ``precision`` (the ONNX rule: the
    scale's type, or the ``precision`` attribute). numpy divides float16 and
    bfloat16 in float32 and rounds back; float32 has >= 2p+2 bits for both,
    so that double rounding is innocuous (Figueroa, 1995).
    """
    precision = np.dtype(precision)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # inf / NaN quotients: the rules below
        quotient = (x.astype(precision) / scale.astype(precision)).astype(np.float64)
    if overflow == "int32-indefinite" and precision == _BF16 and not qt.is_float:
        # onnx.reference: np.rint(bfloat16 quotient).astype(np.int32) is ml_dtypes' cast, not x86's
        return saturate_int(_int32_indefinite_shift(quotient, 0 if zero_point is None else zero_point, 0.0), qt)
    return _to_qtype(quotient, zero_point, qt, saturate=saturate, nan=nan, overflow=overflow)


_BF16 = np.dtype(ml_dtypes.bfloat16)


def _dequantize_general(q: np.ndarray, scale: np.ndarray, zero_point, out_dtype) -> np.ndarray:
    """:func:`dequantize` for every type: (q - zero_point) * scale, rounded once to ``out_dtype``.

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
    zero_point_first: bool = False,
) -> np.ndarray:
    """y = saturate(round_half_even(acc * (a_scale * b_scale / y_scale)) + y_zero_point).

    ``precision="float64"``: multiplier and product in float64 (|acc| < 2**53
    so float64(acc) is exact). ``"float32"``: onnxruntime's
    rint(float32(acc) * float32(a_scale * b_scale / y_scale)). ``"mixed"``:
    onnx.reference's multiplier in the scales' type, product in float64.
    ``zero_point_first``: onnx.reference's saturate(round_half_even(real + y_zero_point)),
    the sum in the product's type, cast by numpy: a NaN (0 times a multiplier that overflowed
    the scales' type) goes through x86's float -> int32 cast, INT32_MIN, whose low 8 or 16 bits are 0.
    """
    multiplier, product_type = _requantize_multiplier(a_scale, b_scale, y_scale, precision)
    with np.errstate(invalid="ignore"):
        real = acc.astype(product_type) * multiplier
    if zero_point_first:
        real, y_zero_point = _add_zero_point(real, y_zero_point), None
        real = np.where(np.isnan(real), 0.0, real)
    return _to_qtype(real.astype(np.float64), y_zero_point, qt, saturate=True, nan="error")


def _add_zero_point(real: np.ndarray, zero_point) -> np.ndarray:
    """real + zero_point in real's float type (in place where real is an array of that type already)."""
    if zero_point is None:
        return real
    real = np.asarray(real)
    return np.add(real, np.asarray(zero_point).astype(real.dtype), out=real if real.ndim else None)


def _requantize_multiplier(a_scale, b_scale, y_scale, precision: str) -> tuple[np.ndarray, type]:
    """(a_scale * b_scale / y_scale in the precision's multiplier type, widened to its product type; that type)."""
    multiplier_type, product_type = _REQUANTIZE_TYPES[precision]
    multiplier = (
        np.asarray(a_scale, multiplier_type) * np.asarray(b_scale, multiplier_type) / np.asarray(y_scale, multiplier_type)
    )
    return multiplier.astype(product_type), product_type


# ----------------------------------------------------------------------------
# The same values in fewer passes: float32 and in-place forms of the above
# ----------------------------------------------------------------------------


def _float32_friendly(qt: QType) -> bool:
    """numpy's 8- and 16-bit integer types: qmin, qmax, zero points and their sums are exact in float32."""
    return not qt.is_float and qt.dtype.kind in "iu" and qt.dtype.itemsize <= 2


def _clip_round(values: np.ndarray, zero_point, qt: QType) -> np.ndarray:
    """clip(rint(values) + zp, qmin, qmax) as ``qt`` (8- or 16-bit), in place in ``values``' float type.

    rint is exact. Where the exact sum rint(v) + zp lies in [qmin, qmax], both terms
    are at most 2**17 in magnitude and the float sum is exact; elsewhere the float
    sum may round, but rounding is monotone and qmin - 1, qmax + 1 are floats, so
    it stays outside and saturates to the same end. ``values`` (no NaN) is overwritten.
    """
    np.rint(values, out=values)
    if zero_point is not None:
        values += np.asarray(zero_point).astype(values.dtype)
    np.clip(values, qt.qmin, qt.qmax, out=values)
    return values.astype(qt.dtype)


def quantize_values(
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
    """q = saturate(round_half_even(x / scale) + zero_point), the division in ``precision``.

    float32 x divided in float32 into an 8- or 16-bit integer type under
    overflow "saturate" stays in float32 throughout: the quotient is the same
    float32 division, and :func:`_clip_round` is exact in float32. Everything
    else, and a NaN quotient (the profile's NaN rule), takes
    :func:`_quantize_general`.
    """
    if x.dtype == np.float32 and np.dtype(precision) == np.float32 and overflow == "saturate" and _float32_friendly(qt):
        quotient = np.asarray(np.divide(x, np.asarray(scale).astype(np.float32)))  # 0-d stays an array
        if not np.isnan(quotient.min(initial=0)):
            return _clip_round(quotient, zero_point, qt)
    return _quantize_general(x, scale, zero_point, qt, precision=precision, saturate=saturate, nan=nan, overflow=overflow)


def dequantize_values(q: np.ndarray, scale: np.ndarray, zero_point, out_dtype) -> np.ndarray:
    """y = (q - zero_point) * scale, rounded once to ``out_dtype``.

    8- and 16-bit integer q with float32 scale and output stays in float32: q - zp is
    exact in float32 (|q - zp| < 2**17), and one float32 multiplication rounds
    the exact product once, as narrow() of the exact float64 product does.
    """
    scale = np.asarray(scale)
    if q.dtype.kind in "iu" and q.dtype.itemsize <= 2 and scale.dtype == np.float32 and np.dtype(out_dtype) == np.float32:
        y = q.astype(np.float32) if zero_point is None else np.asarray(np.subtract(q, zero_point, dtype=np.float32))
        y *= scale
        return y
    return _dequantize_general(q, scale, zero_point, out_dtype)


def requantize_integer(
    acc: np.ndarray,
    a_scale: np.ndarray,
    b_scale: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point,
    qt: QType,
    *,
    precision: str,
    bias: np.ndarray | None = None,
    zero_point_first: bool = False,
) -> np.ndarray:
    """requantize(acc + bias, ...) in fewer passes, for an 8- or 16-bit integer ``qt``.

    ``acc`` holds integers (in an integer or float type), ``bias`` too; their
    sum is formed in float64 (exact below 2**53). The product is the same as
    requantize()'s, in place, and :func:`_clip_round` does the rest. Other
    types, or a multiplier that overflowed, go to requantize().
    """
    multiplier, product_type = _requantize_multiplier(a_scale, b_scale, y_scale, precision)
    real = acc.astype(product_type if bias is None else np.float64)  # a copy: the steps below run in place
    if bias is not None:
        real += bias
        real = real.astype(product_type, copy=False)
    if not _float32_friendly(qt) or not np.isfinite(multiplier).all():
        return requantize(
            real, a_scale, b_scale, y_scale, y_zero_point, qt, precision=precision, zero_point_first=zero_point_first
        )
    real *= multiplier
    if zero_point_first:
        real, y_zero_point = _add_zero_point(real, y_zero_point), None
    return _clip_round(real, y_zero_point, qt)
