"""QLinearMatMul and QLinearConv as OpenVINO lowers them (profile option ``qlinear_requantize="fake-quantize"``).

OpenVINO's ONNX frontend builds both ops from DequantizeLinear -> MatMul / Convolution -> FakeQuantize,
the FakeQuantize range folded in the scales' type (float32 or float16):

    il = round_s(y_scale * (qmin - y_zp))        ih = round_s(y_scale * (qmax - y_zp))

and the CPU plugin runs the FakeQuantize node (jit FakeQuantize, or a post-op of the MatMul / Convolution)
in float32 as

    isc = (qmax - qmin) / (ih - il)     ish = (-il * (qmax - qmin)) / (ih - il)
    y   = qmin + round_half_even(fma(clip(v, il, ih), isc, ish))

(NaN, from a range that overflowed, gives qmin). v is

- where every zero point of a / x and b / w is 0: the integer accumulator, the range divided by
  float32(a_scale * b_scale) (the dequantizing multiplications folded into the FakeQuantize);
- otherwise: the float32 product of the dequantized operands, each float32((q - zp) * scale).

The emulation is used only where it is a reproduction (spec/backends.md "## openvino"): per-tensor
scales and zero points, 8-bit operands, float32 or float16 scales, no QLinearConv bias, not an int8 y when
every operand zero point is 0 (OpenVINO's int8 route there is not reproduced), and a float32 accumulation
that is exact in any order: every term a multiple of g (the product of the operands' smallest bit weights)
and K * max|a| * max|b| <= 2**24 * g, so every partial sum is a float32. Elsewhere the kernels keep the
spec's value (:func:`lowered_or_none` returns None).
"""

from __future__ import annotations

import numpy as np

from .. import arith
from ..dtypes import QType
from ..window import blank_padded, conv_columns, conv_output, grouped_weights

__all__ = ["fake_quantize_node", "lowered_matmul", "lowered_conv"]

_F32 = np.float32
_MODELLED_SCALES = (np.dtype(np.float32), np.dtype(np.float16))


def fake_quantize_node(values: np.ndarray, low, high, qt: QType) -> np.ndarray:
    """OpenVINO CPU's FakeQuantize node on float32 ``values`` with the range [low, high] (float32), into ``qt``."""
    levels = _F32(qt.qmax - qt.qmin)
    low, high = _F32(low), _F32(high)
    with np.errstate(all="ignore"):
        isc = levels / (high - low)
        ish = _F32(-low * levels) / (high - low)
        clipped = np.minimum(np.maximum(np.asarray(values, _F32), low), high)
        shape = clipped.shape
        rounded = np.rint(arith.fma_float32(clipped, np.full(shape, isc, _F32), np.full(shape, ish, _F32)))
    rounded = rounded.astype(np.float64) + qt.qmin
    rounded = np.where(np.isnan(rounded), qt.qmin, np.clip(rounded, qt.qmin, qt.qmax))
    return rounded.astype(qt.dtype)


def _range(y_scale, y_zero_point, qt: QType) -> tuple[np.float32, np.float32]:
    """(il, ih): y_scale * (qmin - zp), y_scale * (qmax - zp), each rounded to the scale's type."""
    kind = np.asarray(y_scale).dtype.type
    s, zp = np.asarray(y_scale).reshape(()), np.asarray(y_zero_point).astype(kind).reshape(())
    with np.errstate(all="ignore"):
        return _F32(s * (kind(qt.qmin) - zp)), _F32(s * (kind(qt.qmax) - zp))


def _lsb(values: np.ndarray) -> float:
    """The smallest bit weight of the nonzero float32 values (inf when there are none)."""
    nonzero = np.asarray(values, np.float64)
    nonzero = nonzero[nonzero != 0]
    if not nonzero.size:
        return np.inf
    mantissa, exponent = np.frexp(nonzero)  # value = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    integer = np.abs(mantissa * 2.0**24).astype(np.int64)  # a float32 value's 24-bit significand
    trailing = np.log2(integer & -integer).astype(np.int64)
    return float(np.min(np.ldexp(1.0, exponent - 24 + trailing)))


def _exact_in_float32(a: np.ndarray, b: np.ndarray, k: int) -> bool:
    """Whether a float32 sum of k products of a and b values is exact in any order (see the module docstring)."""
    if not a.size or not b.size:
        return True
    granule = _lsb(a) * _lsb(b)
    if not np.isfinite(granule):
        return True  # all products are zero
    top = float(np.max(np.abs(a.astype(np.float64)))) * float(np.max(np.abs(b.astype(np.float64))))
    return k * top <= 2.0**24 * granule


def _per_tensor(*params) -> bool:
    return all(np.asarray(p).size == 1 for p in params)


def _operand(q: np.ndarray, zero_point, scale) -> np.ndarray:
    """float32((q - zp) * scale): the dequantized operand (q - zp exact, one rounding of the product)."""
    centered = q.astype(np.float64) - np.asarray(zero_point).astype(np.float64).reshape(())
    return (centered * np.asarray(scale).astype(np.float64).reshape(())).astype(_F32)


def _modelled(qt: QType, q_types, scales, zero_operands: bool) -> bool:
    if qt.is_float or qt.dtype.itemsize != 1 or any(np.dtype(t).itemsize != 1 or np.dtype(t).kind not in "iu" for t in q_types):
        return False
    if {np.asarray(s).dtype for s in scales} - set(_MODELLED_SCALES) or len({np.asarray(s).dtype for s in scales}) != 1:
        return False
    return not (zero_operands and qt.name == "int8")


def _finish(values, a_scale, b_scale, y_scale, y_zero_point, qt: QType, zero_operands: bool) -> np.ndarray:
    low, high = _range(y_scale, y_zero_point, qt)
    if zero_operands:
        multiplier = _F32(np.asarray(a_scale).astype(_F32).reshape(()) * np.asarray(b_scale).astype(_F32).reshape(()))
        with np.errstate(all="ignore"):
            low, high = _F32(low / multiplier), _F32(high / multiplier)
    return fake_quantize_node(values, low, high, qt)


def lowered_matmul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zero_point, qt: QType) -> np.ndarray | None:
    """OpenVINO's QLinearMatMul on 2-D (or stacked) a and b, or None where the emulation is not a reproduction."""
    if not _per_tensor(a_scale, a_zp, b_scale, b_zp):
        return None
    zero_operands = not np.any(a_zp) and not np.any(b_zp)
    if not _modelled(qt, (a.dtype, b.dtype), (a_scale, b_scale, y_scale), zero_operands):
        return None
    if zero_operands:
        da, db = a.astype(_F32), b.astype(_F32)
    else:
        da, db = _operand(a, a_zp, a_scale), _operand(b, b_zp, b_scale)
    if not _exact_in_float32(da, db, a.shape[-1]):
        return None
    values = np.matmul(da.astype(np.float64), db.astype(np.float64)).astype(_F32)  # exact, so any order
    return _finish(values, a_scale, b_scale, y_scale, y_zero_point, qt, zero_operands)


def lowered_conv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zero_point, qt: QType, window, group, bias) -> np.ndarray | None:
    """OpenVINO's QLinearConv, or None where the emulation is not a reproduction (a bias, per-channel w)."""
    if bias is not None or not _per_tensor(x_scale, x_zp, w_scale, w_zp):
        return None
    zero_operands = not np.any(x_zp) and not np.any(w_zp)
    if not _modelled(qt, (x.dtype, w.dtype), (x_scale, w_scale, y_scale), zero_operands):
        return None
    if zero_operands:
        dx, dw = x.astype(_F32), w.astype(_F32)
    else:
        dx, dw = _operand(x, x_zp, x_scale), _operand(w, w_zp, w_scale)
    if not _exact_in_float32(dx, dw, int(np.prod(w.shape[1:]))):
        return None
    padded, interior = blank_padded(x.shape, window, np.float64, 0.0)  # float padding: 0, x_zp dequantized
    interior[...] = dx
    products = np.matmul(grouped_weights(dw.astype(np.float64), group), conv_columns(padded, window, group))
    values = conv_output(products, window).astype(_F32)  # exact, so any order
    return _finish(values, x_scale, w_scale, y_scale, y_zero_point, qt, zero_operands)
