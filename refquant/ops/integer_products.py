"""The integer products' shared parts: exact accumulators, their int32 results, and QLinearConv's body.

    acc = sum_k (a[k] - a_zero_point) * (b[k] - b_zero_point)       exact, int64

Used by the kernels of ai.onnx's integer products (refquant/ops/integer.py: MatMulInteger, QLinearMatMul,
ConvInteger, QLinearConv) and com.microsoft's (refquant/ops/contrib_linear.py: QGemm, MatMulIntegerToFloat,
DynamicQuantizeMatMul, QLinearConv with channels_last). Products run through float BLAS only where
exact_products.exact_float_matmul's bound proves them exact. spec/ops/integer.md states every choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import TensorProto as T

from .. import arith, exact_products, lowerings
from ..checks import frozen, require_dtype, require_input
from ..dtypes import EIGHT_BIT_INTS, qtype
from ..errors import AccumulatorOverflowError, AccumulatorOverflowWarning, NonFiniteError, ShapeError
from ..kernel_options import RequantizeOptions
from ..node import Node
from ..profiles import Int32Overflow
from ..qparams import channel_param, check_same_shape, check_scale, scalar_param, zero_point_of
from ..window import blank_padded, conv_bias, conv_columns, conv_output, conv_window, grouped_weights, pad, tap_views
from . import qlinear_lowered

INT32 = qtype(T.INT32)


# ----------------------------------------------------------------------------
# Exact accumulators
# ----------------------------------------------------------------------------


def minus_zero_point(q: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """q - zero_point, exact: int16 for 8-bit integers (|q - zp| <= 255)."""
    return q.astype(np.int16) - zero_point.astype(np.int16)


def _granule(dtype: np.dtype) -> float:
    """A power of two that divides every value of ``dtype`` and every difference of two: 1 for integers,
    the smallest subnormal for float8."""
    return 1.0 if dtype.kind in "iu" else float(ml_dtypes.finfo(dtype).smallest_subnormal)


def as_integers(q: np.ndarray, zero_point: np.ndarray, what: str) -> tuple[np.ndarray, float]:
    """(n, g) with q - zero_point == n * g exactly: n int64, g a power of two."""
    if q.dtype.kind in "iu":
        return minus_zero_point(q, zero_point), 1.0
    # exact: both are multiples of the granule, and |q - zp| < 2**34 granules fits float64's 53 bits
    centered = q.astype(np.float64) - zero_point.astype(np.float64)
    if not np.isfinite(centered).all():
        raise NonFiniteError(f"{what} or {what}_zero_point holds NaN or infinity; the product would not be a number")
    granule = _granule(q.dtype)
    return (centered / granule).astype(np.int64), granule


def exact_integer_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b of int64 arrays, exact: int64 when |a @ b| provably < 2**63, else Python integers."""
    k = a.shape[-1]
    if k * int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) < 2**63:
        return exact_products.exact_matmul(a, b)
    return np.matmul(a.astype(object), b.astype(object))


def check_matmul_shapes(a: np.ndarray, b: np.ndarray) -> None:
    """numpy.matmul's rules: a (..., M, K) or (K,), b (..., K, N) or (K,), batch dimensions broadcast."""
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul operands must have rank >= 1, got shapes {a.shape} and {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ShapeError(f"a has shape {a.shape} and b {b.shape}: inner dimensions {k_a} and {k_b} differ")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ShapeError(f"batch dimensions of a {a.shape} and b {b.shape} do not broadcast") from None


def as_matrices(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(a2, b2, squeeze): 1-D operands promoted as numpy.matmul does; squeeze undoes it on the product."""
    squeeze = ()
    if b.ndim == 1:
        b, squeeze = b[:, None], (-1,)
    if a.ndim == 1:
        a, squeeze = a[None, :], (-2,) + squeeze
    return a, b, squeeze


def squeeze_axes(product: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The product without the axes :func:`as_matrices` added for 1-D operands."""
    return product.squeeze(axis=axes) if axes else product


# ----------------------------------------------------------------------------
# Fast exact accumulators for 8-bit operands: float BLAS under a bound, constants prepared once
# ----------------------------------------------------------------------------
#
# Every accumulator below is a float array holding the exact integer sums, with
# a bound of its magnitude: max|x - x_zp| times the largest sum of |w - w_zp|
# over one dot product (<= 255 * 255 * K < 2**53 for any K that fits memory).


@dataclass(frozen=True)
class _Operand:
    """A centered integer operand as float32 (exact: |q - zp| <= 255), with the bounds of its terms:
    max |v| and the largest sum of |v| along the reduced axis."""

    values: np.ndarray
    max_abs: int
    max_l1: int

    @classmethod
    def of(cls, values: np.ndarray, axis: int) -> _Operand:
        magnitudes = np.abs(values)
        return cls(values, int(magnitudes.max(initial=0)), int(magnitudes.sum(axis=axis, dtype=np.float64).max(initial=0)))


def _cached(node: Node, key: str, sources: tuple, prepare):
    """prepare(), kept in node.cache while ``sources`` are the same frozen arrays; prepared afresh otherwise."""
    if not all(source is None or frozen(source) for source in sources):
        return prepare()
    entry = node.cache.get(key)
    if entry is None or any(kept is not source for kept, source in zip(entry[0], sources)):
        entry = node.cache[key] = (sources, prepare())
    return entry[1]


def _centered_max(q: np.ndarray, zero_point: np.ndarray) -> int:
    """A bound of max |q - zero_point| from the extremes of each (no pass over q - zero_point)."""
    if q.size == 0:
        return 0
    return max(int(q.max()) - int(zero_point.min()), int(zero_point.max()) - int(q.min()), 0)


def _centered_float(q: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """q - zero_point as float32, exact (|q - zp| <= 255)."""
    return np.subtract(q, zero_point, dtype=np.float32)


def _conv_weights(w: np.ndarray, w_zero_point: np.ndarray, group: int) -> _Operand:
    """(w - w_zp) as grouped_weights (group, M/group, C/group * prod(kernel)), float32."""
    w_zp = channel_param(w_zero_point, w.shape[0], w.ndim - 1, "w_zero_point")  # (M, 1, 1, ...) against w
    return _Operand.of(grouped_weights(_centered_float(w, w_zp), group), axis=-1)


def _tap_sum(padded: np.ndarray, weights: np.ndarray, window, dtype) -> np.ndarray:
    """Convolution with one input channel per group (depthwise, times a multiplier d): for each output
    channel, the sum over kernel taps of weight times shifted input, element-wise in ``dtype``.

    ``weights``: grouped_weights (C, d, prod(kernel)); ``padded``: (N, C, *padded spatial).
    """
    views, finish = tap_views(padded, window)
    n, channels, grid = padded.shape[0], padded.shape[1], views[0].shape[2:]
    columns = weights.astype(dtype, copy=False).reshape(weights.shape + (1,) * len(grid))
    acc = np.multiply(views[0][:, :, None], columns[:, :, 0], dtype=dtype)  # (N, C, d, *grid)
    term = np.empty_like(acc)
    for tap in range(1, len(views)):
        np.multiply(views[tap][:, :, None], columns[:, :, tap], out=term)
        acc += term
    return finish(acc.reshape(n, channels * weights.shape[1], *grid))


def conv_accumulator(
    node: Node, x, x_zero_point, w, w_zero_point, window, group, *, mlas_a: str, saturate_pairs: bool
) -> tuple[np.ndarray, int]:
    """(acc, bound): conv(x - x_zp, w - w_zp) as a float array (N, M, *output) of exact integers, |acc| <= bound.

    ``w_zero_point`` is the node's input (None when absent): with w, the key of the prepared weights.
    One input channel per group sums taps element-wise; otherwise im2col and one product per group.
    ``mlas_a``: the operand onnxruntime makes MLAS's A of its GEMM, where AVX2 pair saturation may apply
    when A is uint8 and B int8: ``"x"`` (QLinearConv: K ordered kernel tap, then input channel) or ``"w"``
    (ConvInteger: im2col's K, input channel then kernel tap; conv_integer.cc passes W as A).
    ``saturate_pairs``: whether it does (the options' saturate_u8s8_pairs).
    """
    w_zp = zero_point_of(w_zero_point, w, "w")
    weights = _cached(node, "conv weights", (w, w_zero_point), lambda: _conv_weights(w, w_zp, group))
    padded, interior = blank_padded(x.shape, window, np.float32, 0)  # the padding holds x_zp: 0 once centered
    np.subtract(x, x_zero_point, out=interior, dtype=np.float32)
    x_max = _centered_max(x, x_zero_point)
    term, bound = x_max * weights.max_abs, x_max * weights.max_l1
    if w.shape[1] == 1:
        acc = _tap_sum(padded, weights.values, window, np.float32 if bound < 2**24 else np.float64)
    else:
        products = exact_products.exact_float_matmul(weights.values, conv_columns(padded, window, group), term=term, bound=bound)
        acc = conv_output(products, window)
    # MLAS's depthwise kernels multiply in int32 (exact); they take one weight zero point, so onnxruntime
    # runs a depthwise convolution whose per-channel zero points differ as a GEMM (measured on 1.32)
    depthwise = w.shape[1] == 1 and w.shape[0] == group and np.unique(w_zp).size <= 1
    excess = None
    if saturate_pairs and not (mlas_a == "x" and depthwise):
        raw = pad(x, window, x_zero_point)  # the stored bytes MLAS multiplies, the padding holding the zero point
        if mlas_a == "x" and _pairs_may_saturate(raw, w):  # K in MLAS's order: tap, then channel
            columns, weights_k = _mlas_conv_operands(raw, w, window, group)
            excess = u8s8_pair_excess(weights_k, columns, transposed=True)
        elif mlas_a == "w" and _pairs_may_saturate(w, raw):  # K in im2col's order: channel, then tap
            excess = u8s8_pair_excess(grouped_weights(w, group), conv_columns(raw, window, group))
    if excess is not None:
        return acc + conv_output(excess, window), _UNBOUNDED
    return acc, bound


def _mlas_conv_operands(padded: np.ndarray, w: np.ndarray, window, group: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, weights) of a grouped convolution with K ordered as onnxruntime's QLinearConv orders it:
    kernel tap outer, input channel inner (NHWC im2col and the K1..Kn C M weight reorder of
    qlinearconv.cc; MlasConvSymPackW packs the symmetric kernel's filter the same way).

    columns: (N, group, taps * C/group, prod(output)); weights: (group, M/group, taps * C/group).
    """
    taps = int(np.prod(window.kernel))
    columns = conv_columns(padded, window, group)
    n, groups, k, points = columns.shape
    columns = columns.reshape(n, groups, k // taps, taps, points).swapaxes(2, 3).reshape(n, groups, k, points)
    weights = grouped_weights(w, group)
    per_group = weights.shape[1]
    weights = weights.reshape(groups, per_group, k // taps, taps).swapaxes(2, 3).reshape(groups, per_group, k)
    return columns, weights


def matmul_accumulator(
    node: Node, a, a_zero_point, b, b_zero_point, b_input, *, saturate_pairs: bool
) -> tuple[np.ndarray, int]:
    """(acc, bound): (a - a_zp) @ (b - b_zp) of 8-bit matrices as a float array of exact integers, |acc| <= bound.

    ``b_input``: the node's b zero point input (None when absent), with b the key of the prepared b.
    ``saturate_pairs``: add onnxruntime's pair saturation (the options' saturate_u8s8_pairs; MLAS's A is a).
    """
    weights = _cached(node, "b", (b, b_input), lambda: _Operand.of(_centered_float(b, b_zero_point), axis=-2))
    a_max = _centered_max(a, a_zero_point)
    term = a_max * weights.max_abs
    bound = min(a.shape[-1] * term, a_max * weights.max_l1)
    acc = exact_products.exact_float_matmul(_centered_float(a, a_zero_point), weights.values, term=term, bound=bound)
    excess = u8s8_pair_excess(a, b) if saturate_pairs else None
    if excess is not None:
        return acc + excess, _UNBOUNDED
    return acc, bound


def _pairs_may_saturate(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether onnxruntime's pair saturation can change a product of a and b: uint8 a, int8 b, and some
    pair a0 b0 + a1 b1 leaves int16 by the extremes."""
    if not (a.dtype == np.uint8 and b.dtype == np.int8):
        return False
    if a.size == 0 or b.size == 0:
        return False
    a_max = int(a.max())
    return 2 * a_max * int(b.max()) > 2**15 - 1 or 2 * a_max * int(b.min()) < -(2**15)


def u8s8_pair_excess(a: np.ndarray, b: np.ndarray, *, transposed: bool = False) -> np.ndarray | None:
    """What onnxruntime's U8S8 kernels without VNNI add to the exact ``a @ b`` of stored bytes, as int64,
    or None where nothing can change (not uint8 a x int8 b, or no pair can leave int16). Shared by every
    op onnxruntime runs through a U8S8 GEMM, called where the options' saturate_u8s8_pairs holds.

    ``a`` holds the uint8 operand (K its last axis) and ``b`` the int8 one (K its second-to-last axis);
    ``transposed=True`` swaps the roles: ``a`` int8 (..., M, K) and ``b`` uint8 (..., K, N), as a
    convolution's weights times its columns. Pairs are consecutive elements along K
    (lowerings.pairwise_saturation_excess: MLAS packs K in groups of four and VPMADDUBSW sums pairs).
    """
    unsigned, signed = (b, a) if transposed else (a, b)
    if not _pairs_may_saturate(unsigned, signed):
        return None
    return lowerings.pairwise_saturation_excess(a, b)


#: a bound that proves nothing: the int32 result is checked element by element
_UNBOUNDED = 2**63


def int32_result(node: Node, acc: np.ndarray, bound: int, rule: Int32Overflow) -> np.ndarray:
    """int32(acc) directly when |acc| <= bound fits; else _int32_output's check and ``rule``."""
    return acc.astype(np.int32) if bound <= INT32.qmax else _int32_output(node, acc, rule)


def _int32_output(node: Node, acc: np.ndarray, rule: Int32Overflow) -> np.ndarray:
    """int32(acc); where acc does not fit, ``rule`` (the options' int32_overflow), with a warning."""
    outside = (acc < INT32.qmin) | (acc > INT32.qmax)
    if not outside.any():
        return acc.astype(np.int32)
    message = (
        f"{int(outside.sum())} of {acc.size} outputs do not fit int32 "
        f"(exact values span [{int(acc.min())}, {int(acc.max())}])"
    )
    if rule == "error":
        raise AccumulatorOverflowError(message + " (profile option int32_overflow='error')")
    node.warn(
        message + f"; rule int32_overflow={rule!r}: "
        + ("two's complement wrap" if rule == "wrap" else "clipped to [-2**31, 2**31 - 1]"),
        AccumulatorOverflowWarning,
    )
    if rule == "wrap":
        return arith.wrap_int32(acc)
    return arith.saturate_int(acc, INT32)


def warn_if_beyond_int32(node: Node, acc: np.ndarray) -> None:
    """QLinear accumulators stay exact; warn where an int32-accumulating backend would wrap."""
    if acc.size and (acc.min() < INT32.qmin or acc.max() > INT32.qmax):
        node.warn(
            f"accumulator reaches [{int(acc.min())}, {int(acc.max())}], outside int32; refquant keeps it exact "
            "(int64), a backend accumulating in int32 would wrap",
            AccumulatorOverflowWarning,
        )


# ----------------------------------------------------------------------------
# QLinearConv (ai.onnx's, and com.microsoft's once channels first)
# ----------------------------------------------------------------------------


def quantized_conv(
    node: Node, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
    options: RequantizeOptions,
) -> np.ndarray:
    """QLinearConv's y = saturate(round_half_even((conv(x - x_zp, w - w_zp) + B) * (x_scale * w_scale / y_scale)) + y_zp)
    for x of shape (N, C, D1, ...): ai.onnx QLinearConv, and com.microsoft QLinearConv once its layout is channels first.

    w_scale and w_zero_point: per tensor or per output channel; B: int32, one per output channel.
    ``options``: the requantizing family's (the kernel's node.options).
    """
    for value, what in (
        (x_zero_point, "x_zero_point"),
        (w_zero_point, "w_zero_point"),
        (y_zero_point, "y_zero_point"),
    ):
        require_input(value, what)
    for value, what in ((x, "x"), (w, "w"), (y_zero_point, "y_zero_point")):
        require_dtype(value, EIGHT_BIT_INTS, what)
    for value, what in ((x_scale, "x_scale"), (w_scale, "w_scale"), (y_scale, "y_scale")):
        require_dtype(value, {T.FLOAT}, what)
        check_scale(value, what)
    x_zp, w_zp = zero_point_of(x_zero_point, x, "x"), zero_point_of(w_zero_point, w, "w")
    check_same_shape(w_scale, w_zp, "w")
    window, group = conv_window(node, x.shape, w.shape)
    channels, rank = w.shape[0], len(window.kernel)
    w_scale = channel_param(w_scale, channels, rank, "w_scale")
    bias = None
    if B is not None:
        require_dtype(B, {T.INT32}, "B")
        bias = conv_bias(B, channels, rank)
    if options.fake_quantize_lowering:  # OpenVINO's lowering, where it reproduces it
        lowered = qlinear_lowered.lowered_conv(
            x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zero_point, qtype(y_zero_point.dtype), window, group, B
        )
        if lowered is not None:
            return lowered
    acc, bound = conv_accumulator(
        node, x, scalar_param(x_zp, "x_zero_point"), w, w_zero_point, window, group, mlas_a="x",
        saturate_pairs=options.saturate_u8s8_pairs,
    )
    if bias is not None:
        bound += exact_products.max_abs(B)
    if bound > INT32.qmax:
        warn_if_beyond_int32(node, acc if bias is None else np.add(acc, bias, dtype=np.float64))
    y = arith.requantize_integer(
        acc,
        scalar_param(x_scale, "x_scale"),
        w_scale,
        scalar_param(y_scale, "y_scale"),
        scalar_param(y_zero_point, "y_zero_point"),
        qtype(y_zero_point.dtype),
        precision=options.precision,
        zero_point_first=options.zero_point_first,
        bias=bias,
    )
    return y
