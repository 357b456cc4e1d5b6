"""QLinearConv, ConvInteger, QLinearMatMul and MatMulInteger, every version.

    acc           = sum_k (a[k] - a_zero_point) * (b[k] - b_zero_point)       exact, int64
    MatMulInteger = ConvInteger = int32(acc)                                  (profile int32_overflow)
    QLinearMatMul = QLinearConv = saturate(round_half_even(acc * (a_scale * b_scale / y_scale)) + y_zero_point)

QLinearConv adds its int32 bias B to acc before requantizing. The exact accumulators and QLinearConv's
body, which com.microsoft's products share, are in refquant/ops/integer_products.py.
spec/ops/integer.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_input
from ..dtypes import EIGHT_BIT_INTS, FLOAT8_TYPES, dtype_name, qtype, types_at
from ..errors import DTypeError
from ..kernel_options import IntegerProductOptions, RequantizeOptions
from ..node import Node
from ..qparams import check_scale, matmul_param, operand_params, scalar_param, zero_point_of
from ..registry import register
from ..window import conv_window
from . import qlinear_lowered
from .integer_products import (
    INT32,
    as_integers,
    as_matrices,
    check_matmul_shapes,
    conv_accumulator,
    exact_integer_matmul,
    int32_result,
    matmul_accumulator,
    quantized_conv,
    squeeze_axes,
    warn_if_beyond_int32,
)

#: QLinearMatMul's a, b and y, and its scales, by version
QMATMUL_TYPES = {10: EIGHT_BIT_INTS, 21: FLOAT8_TYPES}
QMATMUL_SCALE_TYPES = {10: (T.FLOAT,), 21: (T.FLOAT16, T.BFLOAT16)}


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


@register("MatMulInteger", since=(10,), options=IntegerProductOptions)
def matmul_integer(node: Node, a, b, a_zero_point=None, b_zero_point=None):
    """Y = (A - a_zero_point) @ (B - b_zero_point) as int32; a_zero_point per row, b_zero_point per column."""
    require_dtype(a, EIGHT_BIT_INTS, "A")
    require_dtype(b, EIGHT_BIT_INTS, "B")
    a_zp = matmul_param(zero_point_of(a_zero_point, a, "a"), a.shape, per_row=True, what="a_zero_point")
    b_zp = matmul_param(zero_point_of(b_zero_point, b, "b"), b.shape, per_row=False, what="b_zero_point")
    check_matmul_shapes(a, b)
    a2, b2, squeeze = as_matrices(a, b)
    options: IntegerProductOptions = node.options
    acc, bound = matmul_accumulator(node, a2, a_zp, b2, b_zp, b_zero_point, saturate_pairs=options.saturate_u8s8_pairs)
    return (int32_result(node, squeeze_axes(acc, squeeze), bound, options.int32_overflow),)


@register("QLinearMatMul", since=(10, 21), options=RequantizeOptions)
def qlinear_matmul(node: Node, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """y = saturate(round_half_even(((a - a_zp) @ (b - b_zp)) * (a_scale * b_scale / y_scale)) + y_zp).

    float8 operands (opset 21) are integers times a power of two, so the
    same exact accumulator serves them.
    """
    v = node.version
    for value, what in ((a_zero_point, "a_zero_point"), (b_zero_point, "b_zero_point"), (y_zero_point, "y_zero_point")):
        require_input(value, what)
    allowed, scale_types = types_at(QMATMUL_TYPES, v), types_at(QMATMUL_SCALE_TYPES, v)
    for value, what in ((a, "a"), (b, "b"), (y_zero_point, "y_zero_point")):
        require_dtype(value, allowed, what)
    for value, what in ((a_scale, "a_scale"), (b_scale, "b_scale"), (y_scale, "y_scale")):
        require_dtype(value, scale_types, what)
        check_scale(value, what)
    if not a_scale.dtype == b_scale.dtype == y_scale.dtype:
        raise DTypeError(
            f"a_scale, b_scale and y_scale have types {dtype_name(a_scale.dtype)}, {dtype_name(b_scale.dtype)}, "
            f"{dtype_name(y_scale.dtype)}: they must share one type"
        )
    a_zp, b_zp = zero_point_of(a_zero_point, a, "a"), zero_point_of(b_zero_point, b, "b")
    a_scale, a_zp = operand_params(a_scale, a_zp, a.shape, per_row=True, what="a")
    b_scale, b_zp = operand_params(b_scale, b_zp, b.shape, per_row=False, what="b")
    check_matmul_shapes(a, b)
    a2, b2, squeeze = as_matrices(a, b)
    options: RequantizeOptions = node.options
    if options.fake_quantize_lowering:  # OpenVINO's lowering, where it reproduces it
        lowered = qlinear_lowered.lowered_matmul(
            a2, a_scale, a_zp, b2, b_scale, b_zp, y_scale, y_zero_point, qtype(y_zero_point.dtype)
        )
        if lowered is not None:
            return (squeeze_axes(lowered, squeeze),)
    if a2.dtype.kind in "iu":
        acc, bound = matmul_accumulator(
            node, a2, a_zp, b2, b_zp, b_zero_point, saturate_pairs=options.saturate_u8s8_pairs
        )
        if bound > INT32.qmax:
            warn_if_beyond_int32(node, acc)
    else:  # float8: integers times a power of two, back to real units, exact while |acc| < 2**53
        a_int, a_granule = as_integers(a2, a_zp, "a")
        b_int, b_granule = as_integers(b2, b_zp, "b")
        acc = exact_integer_matmul(a_int, b_int).astype(np.float64) * (a_granule * b_granule)
    y = arith.requantize_integer(
        acc,
        a_scale,
        b_scale,
        scalar_param(y_scale, "y_scale"),
        scalar_param(y_zero_point, "y_zero_point"),
        qtype(y_zero_point.dtype),
        precision=options.precision,
        zero_point_first=options.zero_point_first,
    )
    return (squeeze_axes(y, squeeze),)


@register("ConvInteger", since=(10,), options=IntegerProductOptions)
def conv_integer(node: Node, x, w, x_zero_point=None, w_zero_point=None):
    """y = conv(x - x_zero_point, w - w_zero_point) as int32; w_zero_point per tensor or per output channel."""
    require_dtype(x, EIGHT_BIT_INTS, "x")
    require_dtype(w, EIGHT_BIT_INTS, "w")
    x_zp = scalar_param(zero_point_of(x_zero_point, x, "x"), "x_zero_point")
    window, group = conv_window(node, x.shape, w.shape)
    options: IntegerProductOptions = node.options
    acc, bound = conv_accumulator(
        node, x, x_zp, w, w_zero_point, window, group, mlas_a="w", saturate_pairs=options.saturate_u8s8_pairs
    )
    return (int32_result(node, acc, bound, options.int32_overflow),)


@register("QLinearConv", since=(10,), options=RequantizeOptions)
def qlinear_conv(node: Node, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None):
    """y = saturate(round_half_even((conv(x - x_zp, w - w_zp) + B) * (x_scale * w_scale / y_scale)) + y_zp).

    w_scale and w_zero_point: per tensor or per output channel; B: int32, one per output channel.
    """
    y = quantized_conv(
        node, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B, options=node.options
    )
    return (y,)
