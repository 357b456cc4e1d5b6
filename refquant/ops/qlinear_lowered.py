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

A QLinearConv bias B is dequantized as fl(B * fl(x_scale * w_scale)) and added after the accumulation
(in the folded route as fl(fl(B * s) * fl(1 / s)), used where it equals fl(B * s) / s), where that
dequantization is exact.

The emulation is used only where it is a reproduction (spec/backends.md "## openvino"): per-tensor
scales and zero points, 8-bit integer or float8 (e4m3fn, e5m2) operands, float32 or float16 scales, a bias
B * s exact in float32, not an int8 y when every operand zero point is 0 (OpenVINO's int8 route there is
not reproduced), and a float32 accumulation
that is exact in any order: every term a multiple of g (the product of the operands' smallest bit weights)
and K * max|a| * max|b| <= 2**24 * g, so every partial sum is a float32. Elsewhere the kernels keep the
spec's value (:func:`lowered_matmul` / :func:`lowered_conv` return None); where only the accumulation's
exactness fails, :func:`float32_accumulation_inexact` says so (the defect ``openvino-qlinear-float32-accumulation``).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .. import lowerings
from ..dtypes import QType, qtype
from ..window import blank_padded, conv_columns, conv_output, grouped_weights

__all__ = ["fake_quantize_node", "lowered_matmul", "lowered_conv", "float32_accumulation_inexact"]

_MODELLED_SCALES = (np.dtype(np.float32), np.dtype(np.float16))


def fake_quantize_node(values: np.ndarray, low, high, qt: QType) -> np.ndarray:
    """OpenVINO CPU's FakeQuantize node on float32 ``values`` with the range [low, high] (float32), into ``qt``."""
    levels = np.float32(qt.qmax - qt.qmin)
    low, high = np.float32(low), np.float32(high)
    with np.errstate(all="ignore"):
        isc = levels / (high - low)
        ish = np.float32(-low * levels) / (high - low)
        clipped = np.minimum(np.maximum(np.asarray(values, np.float32), low), high)
        shape = clipped.shape
        rounded = np.rint(lowerings.fma_float32(clipped, np.full(shape, isc, np.float32), np.full(shape, ish, np.float32)))
    rounded = rounded.astype(np.float64) + qt.qmin
    rounded = np.where(np.isnan(rounded), qt.qmin, np.clip(rounded, qt.qmin, qt.qmax))
    return rounded.astype(qt.dtype)


def _range(y_scale, y_zero_point, qt: QType) -> tuple[np.float32, np.float32]:
    """(il, ih): y_scale * (qmin - zp), y_scale * (qmax - zp), each rounded to the scale's type."""
    kind = np.asarray(y_scale).dtype.type
    s, zp = np.asarray(y_scale).reshape(()), np.asarray(y_zero_point).astype(kind).reshape(())
    with np.errstate(all="ignore"):
        return np.float32(s * (kind(qt.qmin) - zp)), np.float32(s * (kind(qt.qmax) - zp))


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
    return (centered * np.asarray(scale).astype(np.float64).reshape(())).astype(np.float32)


#: operand types OpenVINO dequantizes exactly to float32 before its product: 8-bit integers, and the float8
#: types it reads (QLinearMatMul-21; the fnuz variants it refuses)
_MODELLED_OPERANDS = frozenset(np.dtype(t) for t in (np.uint8, np.int8, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2))


def _modelled(qt: QType, q_types, scales, zero_operands: bool) -> bool:
    if qt.is_float or qt.dtype.itemsize != 1 or any(np.dtype(t) not in _MODELLED_OPERANDS for t in q_types):
        return False
    if {np.asarray(s).dtype for s in scales} - set(_MODELLED_SCALES) or len({np.asarray(s).dtype for s in scales}) != 1:
        return False
    return not (zero_operands and qt.name == "int8")


def _finish(values, a_scale, b_scale, y_scale, y_zero_point, qt: QType, zero_operands: bool) -> np.ndarray:
    low, high = _range(y_scale, y_zero_point, qt)
    if zero_operands:
        multiplier = np.float32(np.asarray(a_scale).astype(np.float32).reshape(()) * np.asarray(b_scale).astype(np.float32).reshape(()))
        with np.errstate(all="ignore"):
            low, high = np.float32(low / multiplier), np.float32(high / multiplier)
    return fake_quantize_node(values, low, high, qt)


def _matmul_operands(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zero_point, qt: QType):
    """(da, db, k, zero_operands, None): the float32 operands OpenVINO multiplies, or None where not modelled."""
    if not _per_tensor(a_scale, a_zp, b_scale, b_zp):
        return None
    zero_operands = not np.any(a_zp) and not np.any(b_zp)
    if not _modelled(qt, (a.dtype, b.dtype), (a_scale, b_scale, y_scale), zero_operands):
        return None
    if zero_operands:
        return a.astype(np.float32), b.astype(np.float32), a.shape[-1], True, None
    return _operand(a, a_zp, a_scale), _operand(b, b_zp, b_scale), a.shape[-1], False, None


def _bias_term(bias, x_scale, w_scale, zero_operands: bool):
    """QLinearConv's B as OpenVINO adds it after the accumulation (a post-op of the convolution), or None where
    ``fl(B * s)``, s = fl(x_scale * w_scale), is not exact (the rounded bias is not reproduced).

    The frontend dequantizes B as ``fl(float32(B) * s)``; where every operand zero point is 0 the scale folds
    into the FakeQuantize range and the bias into the accumulator's units as ``fl(fl(B * s) * fl(1 / s))``
    (measured: 2 114 of 2 114 elements, spec/backends.md) or, with one output channel, as ``fl(B * s) / s``:
    used only where the two agree."""
    s = np.float32(np.asarray(x_scale).astype(np.float32).reshape(()) * np.asarray(w_scale).astype(np.float32).reshape(()))
    exact = np.asarray(bias).astype(np.float64) * float(s)
    dequantized = exact.astype(np.float32)
    if not np.isfinite(dequantized).all() or (dequantized.astype(np.float64) != exact).any():
        return None
    if not zero_operands:
        return dequantized
    with np.errstate(all="ignore"):
        folded, divided = dequantized * (np.float32(1) / s), dequantized / s
    # several output channels: fl(B * s) * fl(1 / s) measured; one channel: x_scale 3, w_scale 5, B -198 keeps -198
    # (fl(B * s) / s): used only where the two agree
    return folded if np.array_equal(folded, divided) else None


def _conv_operands(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zero_point, qt: QType, bias):
    """(dx, dw, k, zero_operands, bias term or None), or None where not modelled ("inexact" where only the bias
    dequantization rounds)."""
    if not _per_tensor(x_scale, x_zp, w_scale, w_zp):
        return None
    zero_operands = not np.any(x_zp) and not np.any(w_zp)
    if not _modelled(qt, (x.dtype, w.dtype), (x_scale, w_scale, y_scale), zero_operands):
        return None
    term = None
    if bias is not None:
        term = _bias_term(bias, x_scale, w_scale, zero_operands)
        if term is None:
            return "inexact"
    k = int(np.prod(w.shape[1:]))
    if zero_operands:
        return x.astype(np.float32), w.astype(np.float32), k, True, term
    return _operand(x, x_zp, x_scale), _operand(w, w_zp, w_scale), k, False, term


def _exact(operands) -> bool:
    """Whether the float32 accumulation (and, with nonzero zero points, the bias added to it) is exact in any order."""
    da, db, k, zero_operands, term = operands
    if not _exact_in_float32(da, db, k):
        return False
    if term is None or zero_operands or not np.any(term):
        return True  # with zero operand zero points: the integer accumulator plus the folded bias, one rounding
    granule = min(_lsb(da) * _lsb(db), _lsb(term))
    top = k * float(np.max(np.abs(da.astype(np.float64)))) * float(np.max(np.abs(db.astype(np.float64))))
    return top + float(np.max(np.abs(term.astype(np.float64)))) <= 2.0**24 * granule


def float32_accumulation_inexact(op_type: str, inputs) -> bool:
    """True where OpenVINO's lowering of a QLinearMatMul / QLinearConv (``inputs``: the node's arrays in ONNX
    order, None for an omitted one) is modelled but its float32 accumulation, bias included, may round in an
    order not reproduced: :func:`lowered_matmul` / :func:`lowered_conv` return None for that reason alone."""
    inputs = list(inputs) + [None] * (9 - len(inputs))
    if any(value is None for value in inputs[:8]):
        return False
    arrays = [np.asarray(value) for value in inputs[:8]]
    try:
        qt = qtype(arrays[7].dtype)
        if op_type == "QLinearMatMul":
            operands = _matmul_operands(*arrays, qt)
        elif op_type == "QLinearConv":
            bias = None if inputs[8] is None else np.asarray(inputs[8])
            operands = _conv_operands(*arrays, qt, bias)
        else:
            return False
    except (TypeError, ValueError, IndexError, KeyError):
        return False
    if operands is None:
        return False
    return isinstance(operands, str) or not _exact(operands)


def lowered_matmul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zero_point, qt: QType) -> np.ndarray | None:
    """OpenVINO's QLinearMatMul on 2-D (or stacked) a and b, or None where the emulation is not a reproduction."""
    operands = _matmul_operands(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zero_point, qt)
    if operands is None or not _exact(operands):
        return None
    da, db, _, zero_operands, _ = operands
    values = np.matmul(da.astype(np.float64), db.astype(np.float64)).astype(np.float32)  # exact, so any order
    return _finish(values, a_scale, b_scale, y_scale, y_zero_point, qt, zero_operands)


def lowered_conv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zero_point, qt: QType, window, group, bias) -> np.ndarray | None:
    """OpenVINO's QLinearConv, or None where the emulation is not a reproduction (per-channel w, a bias whose
    dequantization rounds, a float32 accumulation that may round)."""
    operands = _conv_operands(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zero_point, qt, bias)
    if operands is None or isinstance(operands, str) or not _exact(operands):
        return None
    dx, dw, _, zero_operands, term = operands
    padded, interior = blank_padded(x.shape, window, np.float64, 0.0)  # float padding: 0, x_zp dequantized
    interior[...] = dx
    products = np.matmul(grouped_weights(dw.astype(np.float64), group), conv_columns(padded, window, group))
    values = conv_output(products, window).astype(np.float32)  # exact, so any order
    if term is not None:  # a post-op: one float32 addition after the accumulation
        values = values + term.reshape((1, -1) + (1,) * (values.ndim - 2)).astype(np.float32)
    return _finish(values, x_scale, w_scale, y_scale, y_zero_point, qt, zero_operands)
