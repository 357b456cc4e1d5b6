"""Backends' lowerings: how an engine computes a step differently from the spec, replayed exactly.

A profile option (refquant/profiles.py, spec/backends.md) selects each function here in place of the
spec's arithmetic (refquant/arith.py): OpenVINO's QuantizeLinear as a FakeQuantize, its distributed and
flushing DequantizeLinear and its DynamicQuantizeLinear by reciprocals, onnxruntime's float32 path for
int32 DequantizeLinear, AVX2's int16 pair saturation, and the float32 fused multiply-add that emulated
kernels (refquant/mlas.py, refquant/ops/qlinear_lowered.py) are built from. Each docstring states the
engine's formula, step by step, and each float step is rounded exactly as the engine rounds it.
"""

from __future__ import annotations

import numpy as np

from .arith import add_round_to_odd, apply_nan_policy, dequantize_values, narrow, saturate_int, wrap_int32
from .dtypes import QType
from .errors import QuantParamError

__all__ = [
    "fma_float32",
    "fake_quantize",
    "dequantize_lowered",
    "dequantize_int32_via_float32",
    "dynamic_quantize_reciprocal",
    "pairwise_saturation_excess",
]

_F32 = np.float32


# ----------------------------------------------------------------------------
# A fused multiply-add in float32
# ----------------------------------------------------------------------------


def fma_float32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c for float32 a, b, c, rounded once to float32 (a fused multiply-add).

    a * b is exact in float64 (24 + 24 bits); the sum is rounded to odd, so narrowing
    to float32 rounds only once.
    """
    a, b, c = np.broadcast_arrays(*(np.asarray(v, _F32).astype(np.float64) for v in (a, b, c)))
    return add_round_to_odd(a * b, c).astype(_F32)


# ----------------------------------------------------------------------------
# Q/DQ as the backends lower them (profile options; spec/backends.md)
# ----------------------------------------------------------------------------


def fake_quantize(x: np.ndarray, scale: np.ndarray, zero_point, qt: QType, *, nan: str = "error") -> np.ndarray:
    """QuantizeLinear as OpenVINO lowers it: for integer types a FakeQuantize, every step in float32.

        il = scale * (qmin - zp), ih = scale * (qmax - zp)     (the input range)
        isc = (qmax - qmin) / (ih - il), ish = il * isc
        q = qmin + round_half_even(clip(x, il, ih) * isc - ish)

    The rounding comes after the zero point is added (round(x/scale + zp - qmin)),
    and isc is a rounded reciprocal of the scale. int8 with the range aligned on
    [-128, 127] (|il * isc + 128| and |ih * isc - 127| below 1e-4: zero point 0)
    takes OpenVINO's shorter path q = round_half_even(clip(x, il, ih) * isc).
    A 16-bit range equal to [qmin, qmax] (scale 1, zero point 0) makes OpenVINO drop
    the FakeQuantize: its bare Convert truncates toward zero and wraps (uint16: -2.5 -> 65534).
    Raises QuantParamError where the range or isc is not finite in float32
    (OpenVINO's output there follows no formula: spec/backends.md).
    Float types go through float16 (:func:`_float8_via_float16`).
    """
    if qt.is_float:
        return _float8_via_float16(x, scale, zero_point, qt)
    zp = np.asarray(0 if zero_point is None else zero_point).astype(_F32)
    s = np.asarray(scale).astype(_F32)
    with np.errstate(all="ignore"):
        low, high = s * (_F32(qt.qmin) - zp), s * (_F32(qt.qmax) - zp)
        isc = _F32(qt.qmax - qt.qmin) / (high - low)
        ish = low * isc
        if not (np.isfinite(low).all() and np.isfinite(high).all() and np.isfinite(isc).all()):
            raise QuantParamError(
                f"scale * (qmin - zero point), scale * (qmax - zero point) or its reciprocal range "
                f"overflows float32 for {qt.name}: the fake-quantize lowering is not defined there"
            )
        if qt.bits == 16 and (low == qt.qmin).all() and (high == qt.qmax).all():
            return _truncate_and_wrap(np.asarray(x).astype(_F32), qt)
        clipped = np.minimum(np.maximum(np.asarray(x).astype(_F32), low), high)
        aligned = qt.name == "int8" and bool(
            (np.abs(low * isc + 128) < 1e-4).all() and (np.abs(high * isc - 127) < 1e-4).all()
        )
        shifted = np.rint(clipped * isc) if aligned else np.rint(clipped * isc - ish) + _F32(qt.qmin)
    shifted = apply_nan_policy(np.asarray(x, np.float64), shifted.astype(np.float64), zero_point, qt, nan)
    return saturate_int(shifted, qt)


def _float8_via_float16(x: np.ndarray, scale: np.ndarray, zero_point, qt: QType) -> np.ndarray:
    """OpenVINO's QuantizeLinear to float8: float32 x * fl(1 / scale), rounded to float16, then to ``qt``,
    always saturating (``saturate=0`` is not honoured). With a scale of several values (per-axis, blocked)
    a subnormal 1 / scale (scale > 2**126) counts as zero; NaN (0 * inf where 1 / scale overflows) gives -max."""
    zp = 0.0 if zero_point is None else np.asarray(zero_point).astype(np.float64)
    with np.errstate(all="ignore"):
        reciprocal = _F32(1) / np.asarray(scale).astype(_F32)
        reciprocal = _flush_subnormals(reciprocal) if reciprocal.ndim else reciprocal
        half = (np.asarray(x).astype(_F32) * reciprocal).astype(np.float16).astype(np.float64)
    values = np.clip(half + zp, qt.qmin, qt.qmax)
    return narrow(np.where(np.isnan(values), qt.qmin, values), qt.dtype)


def _truncate_and_wrap(x: np.ndarray, qt: QType) -> np.ndarray:
    """x truncated toward zero and wrapped modulo 2**bits into ``qt`` (a bare float -> int16/uint16 Convert)."""
    span = 2**qt.bits
    whole = np.trunc(np.clip(np.nan_to_num(x.astype(np.float64)), -(2.0**62), 2.0**62)).astype(np.int64)
    return ((whole - qt.qmin) % span + qt.qmin).astype(qt.dtype)


def dequantize_lowered(q: np.ndarray, scale: np.ndarray, zero_point, out_dtype, *, formula: str, subnormals: str):
    """DequantizeLinear under the profile options ``dequantize_formula`` and ``dequantize_subnormals``.

    ``formula="distributed"`` (8-, 16- and 32-bit integer q; OpenVINO): the zero
    point is rounded to the scale's type, zs = zero_point * scale is rounded to
    it too, and y = q * scale - zs is one float32 fused multiply-add, then
    rounded to ``out_dtype``. Other q types keep the exact formula.
    ``subnormals="flush"`` (OpenVINO's flush-to-zero paths): for 4-bit and float q,
    results below float32's normal range become zero; for 8-, 16- and 32-bit
    integers with a scale of several values (per-axis, blocked), subnormal
    scale values count as zero. A per-tensor scale of wide integers is kept.
    """
    wide_integer = q.dtype.kind in "iu"
    if subnormals == "flush" and wide_integer and np.ndim(scale) > 0:
        scale = _flush_subnormals(np.asarray(scale))
    if formula == "distributed" and wide_integer:
        s = np.asarray(scale)
        s32 = s.astype(_F32)
        zp = np.asarray(0 if zero_point is None else zero_point).astype(np.float64)
        zp_rounded = narrow(zp, s.dtype).astype(_F32)
        with np.errstate(all="ignore"):
            zs = _round_in(zp_rounded * s32, s.dtype)
            y = fma_float32(q.astype(_F32), s32, -zs).astype(out_dtype)
    else:
        y = dequantize_values(q, scale, zero_point, out_dtype)
    if subnormals == "flush" and not wide_integer:
        y = _flush_subnormals(y)
    return y


def _flush_subnormals(y: np.ndarray) -> np.ndarray:
    """y with every value below float32's smallest normal magnitude replaced by a zero of its sign."""
    tiny = np.finfo(_F32).tiny
    small = np.abs(y.astype(np.float64)) < tiny
    return np.where(small, (y * 0).astype(y.dtype), y) if small.any() else y


def _round_in(values: np.ndarray, dtype) -> np.ndarray:
    """float32 ``values`` rounded to ``dtype`` (float32, float16 or bfloat16), back in float32."""
    return np.asarray(values, _F32).astype(dtype).astype(_F32)


def dequantize_int32_via_float32(q: np.ndarray, scale: np.ndarray, zero_point, out_dtype, *, product: str) -> np.ndarray:
    """DequantizeLinear of int32 ``q`` with x - zp first rounded to float32 (profile option ``dequantize_int32``).

    ``product="float32-first"`` (onnxruntime CPU, quantize_linear.cc:
    ``static_cast<OutT>(static_cast<float>(static_cast<int32_t>(x) - zp) * sc)``; onnx.reference without a
    zero-point input): y = out(f32(f32(x - zp) * f32(scale))), two roundings after the first.
    ``product="float32-input"`` (onnx.reference with a zero-point input: float64 arithmetic after
    ``x.astype(np.float32)``): y = out(f32(x - zp) * scale), the product exact in float64 (24 + 24 bits)
    and rounded once. The int32 subtraction wraps, as the C++ one does in practice (zero points of int32 x
    are 0 anyway). Only elements where x - zp is not a float32 can differ from :func:`dequantize`, plus, for
    "float32-first" with a float16/bfloat16 output, those whose float32 product is inexact.
    """
    diff = q.astype(np.int64) - (0 if zero_point is None else np.asarray(zero_point).astype(np.int64))
    diff32 = wrap_int32(diff).astype(_F32)
    scale = np.asarray(scale)
    with np.errstate(over="ignore", invalid="ignore"):
        if product == "float32-first":
            return narrow((diff32 * scale.astype(_F32)).astype(np.float64), out_dtype)
        if product == "float32-input":
            return narrow(diff32.astype(np.float64) * scale.astype(np.float64), out_dtype)
    raise ValueError(f"unknown dequantize_int32 product {product!r}")


def dynamic_quantize_reciprocal(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DynamicQuantizeLinear (uint8) with each division a product by a float32 reciprocal (OpenVINO).

        span = max(x, 0) - min(x, 0),  scale = span * fl(1/255)
        zp = clip(round_half_even(-min(x, 0) * fl(1/scale)), 0, 255)
        y = clip(round_half_even((x * 255) * fl(1/span)) + zp, 0, 255)

    every step rounded to float32. An all-zero x gives span 0, scale 0 and
    0 * inf = NaN, which converts to 0: y = 0, zp = 0, scale = 0.
    """
    x = np.asarray(x, _F32)
    x_max = np.maximum(_F32(0), x.max(initial=_F32(0)))
    x_min = np.minimum(_F32(0), x.min(initial=_F32(0)))
    with np.errstate(all="ignore"):
        span = _F32(x_max - x_min)
        scale = _F32(span * (_F32(1) / _F32(255)))
        zero_point = np.rint((_F32(0) - x_min) * (_F32(1) / scale))
        zero_point = _F32(0) if np.isnan(zero_point) else np.clip(zero_point, 0, 255)
        y = np.rint((x * _F32(255)) * (_F32(1) / span)) + zero_point
    y = np.where(np.isnan(y), 0, np.clip(y, 0, 255))
    return y.astype(np.uint8), np.asarray(scale, _F32), np.asarray(zero_point).astype(np.uint8)


# ----------------------------------------------------------------------------
# Integer products with AVX2's int16 pair saturation
# ----------------------------------------------------------------------------


def pairwise_saturation_excess(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What int16 pair saturation changes in ``a @ b`` (numpy matmul broadcasting), as int64.

        excess = sum_i [sat16(a[2i] b[2i] + a[2i+1] b[2i+1]) - (a[2i] b[2i] + a[2i+1] b[2i+1])]

    over K, the last axis of ``a`` and the second-to-last of ``b``: the error of AVX2's VPMADDUBSW,
    which multiplies unsigned bytes by signed bytes and adds adjacent pairs into int16 with
    saturation (onnxruntime issues #6004, #6545). A trailing odd element forms no pair (one product of
    a uint8 and an int8 fits int16).
    """
    a32, b32 = a.astype(np.int32), b.astype(np.int32)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    excess = np.zeros(shape, np.int64)
    for k in range(0, a.shape[-1] - 1, 2):
        pair = a32[..., :, k, None] * b32[..., k, None, :] + a32[..., :, k + 1, None] * b32[..., k + 1, None, :]
        excess += np.clip(pair, -(2**15), 2**15 - 1) - pair
    return excess

