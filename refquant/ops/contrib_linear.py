"""com.microsoft QGemm, MatMulIntegerToFloat, DynamicQuantizeMatMul and QLinearConv (as onnxruntime defines them).

    acc                  = sum_k (a[i, k] - a_zero_point) * (b[k, j] - b_zero_point)           exact, int64
    QGemm                = quantize_y(alpha * a_scale * b_scale[j] * (acc + C))  or, without y_scale, that real as float32
    MatMulIntegerToFloat = a_scale * b_scale[j] * acc + bias[j]                                 rounded once to float
    DynamicQuantizeMatMul= MatMulIntegerToFloat(DynamicQuantizeLinear(A), B)
    QLinearConv          = ai.onnx QLinearConv; channels_last=1 reads x and writes y as (N, D1, ..., C)

Products go through exact_products.exact_matmul (exact by its bound), plus AVX2's pair saturation where the
options ask for it (RequantizeOptions.saturate_u8s8_pairs, uint8 A x int8 B). The requantization and
the scaling to float follow RequantizeOptions.precision (profile option requantize_precision): "float64"
(spec) or onnxruntime's "float32" (spec/ops/contrib.md).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith, exact_products
from ..broadcast import check_unidirectional
from ..checks import flag, require_dtype, require_input
from ..dtypes import EIGHT_BIT_INTS, dtype_name, qtype
from ..errors import DTypeError, QuantParamError, ShapeError
from ..kernel_options import DynamicQuantizeMatMulOptions, RequantizeOptions
from ..node import Node
from ..profiles import RequantizePrecision
from ..qparams import check_scale, matmul_param, operand_params, scalar_param, zero_point_of
from ..registry import MS_DOMAIN, register
from .dynamic_quantization import dynamic_quantize
from .integer_products import (
    as_matrices,
    check_matmul_shapes,
    minus_zero_point,
    quantized_conv,
    squeeze_axes,
    u8s8_pair_excess,
    warn_if_beyond_int32,
)


def _scaled_to_float(acc: np.ndarray, scales: tuple, bias, out_dtype, precision: RequantizePrecision) -> np.ndarray:
    """acc * scales[0] * scales[1] * ... (+ bias), as ``out_dtype``.

    "float64": scale product, times acc, plus bias, all in float64 (relative errors of 2^-53),
    then one rounding to ``out_dtype``.
    "float32" (onnxruntime's MLAS output processor): the scale product in float32 left to
    right, float32(acc) times it in float32, then + bias in float32. "mixed": the scale
    product in float32, the rest as "float64".
    """
    if precision == "float32":
        multiplier = _product(scales, np.float32)
        y = arith.dequantize_values(arith.narrow(acc, np.float32), multiplier, None, np.float32)
        if bias is not None:
            y = y + bias.astype(np.float32)
        return arith.narrow(y, out_dtype)
    multiplier = _product(scales, np.float64 if precision == "float64" else np.float32)
    real = arith.dequantize_values(acc, multiplier, None, np.float64)
    if bias is not None:
        real = real + bias.astype(np.float64)
    return arith.narrow(real, out_dtype)


def _mlas_accumulator(a, a_zp, b, b_zp, *, saturate_pairs: bool) -> np.ndarray:
    """(a - a_zp) @ (b - b_zp) as int64, exact, plus, with ``saturate_pairs``, what onnxruntime's U8S8 GEMM
    without VNNI changes (these ops run MlasGemm with A = a, B = b)."""
    acc = exact_products.exact_matmul(minus_zero_point(a, a_zp), minus_zero_point(b, b_zp))
    excess = u8s8_pair_excess(a, b) if saturate_pairs else None
    return acc if excess is None else acc + excess


def _product(values: tuple, dtype) -> np.ndarray:
    result = np.asarray(values[0], dtype)
    for value in values[1:]:
        result = result * np.asarray(value, dtype)
    return result


# ----------------------------------------------------------------------------
# QGemm
# ----------------------------------------------------------------------------


def _gemm_operand(q, what: str, transposed: bool) -> np.ndarray:
    require_input(q, what)
    require_dtype(q, EIGHT_BIT_INTS, what)
    if q.ndim != 2:
        raise ShapeError(f"{what} must be 2-D, got shape {q.shape}")
    return q.T if transposed else q


@register("QGemm", since=(1,), domain=MS_DOMAIN, options=RequantizeOptions)
def qgemm(node: Node, a, a_scale=None, a_zero_point=None, b=None, b_scale=None, b_zero_point=None, c=None,
          y_scale=None, y_zero_point=None):
    """Y = alpha * a_scale * b_scale * ((A' - a_zp) @ (B' - b_zp) + C), A' = transA ? A^T : A (B' alike).

    a_scale, a_zero_point: scalars; b_scale, b_zero_point: scalars or one per column (N).
    C: int32, broadcasting to (M, N), in units of alpha * a_scale * b_scale. With y_scale and
    y_zero_point, Y is quantized to y_zero_point's type; without them Y is float32.
    """
    a2 = _gemm_operand(a, "A", flag(node, "transA"))
    b2 = _gemm_operand(b, "B", flag(node, "transB"))
    alpha = node.attr("alpha", 1.0, float)
    for value, what in ((a_scale, "a_scale"), (a_zero_point, "a_zero_point"), (b_scale, "b_scale"), (b_zero_point, "b_zero_point")):
        require_input(value, what)
    for value, what in ((a_scale, "a_scale"), (b_scale, "b_scale")):
        require_dtype(value, {T.FLOAT}, what)
        check_scale(value, what)
    if a2.shape[1] != b2.shape[0]:
        raise ShapeError(f"A' has shape {a2.shape} and B' {b2.shape}: inner dimensions {a2.shape[1]} and {b2.shape[0]} differ")
    a_zp = scalar_param(zero_point_of(a_zero_point, a, "a"), "a_zero_point")
    if b_scale.ndim > 1 or b_zero_point.ndim > 1:
        raise QuantParamError(f"b_scale and b_zero_point must be scalars or 1-D (one per column), got shapes {b_scale.shape}, {b_zero_point.shape}")
    b_scale, b_zp = operand_params(b_scale, zero_point_of(b_zero_point, b, "b"), b2.shape, per_row=False, what="b")
    options: RequantizeOptions = node.options
    acc = _mlas_accumulator(a2, a_zp, b2, b_zp, saturate_pairs=options.saturate_u8s8_pairs)
    if c is not None:
        require_dtype(c, {T.INT32}, "C")
        check_unidirectional(c.shape, acc.shape, "C")
        acc = acc + c.astype(np.int64)
    a_scale = np.float64(alpha) * scalar_param(a_scale, "a_scale")  # exact: two float32 factors
    precision = options.precision
    if (y_scale is None) != (y_zero_point is None):
        raise QuantParamError("y_scale and y_zero_point come together: both for a quantized Y, neither for float Y")
    if y_scale is None:
        return (_scaled_to_float(acc, (a_scale, b_scale), None, np.float32, precision),)
    require_dtype(y_scale, {T.FLOAT}, "y_scale")
    require_dtype(y_zero_point, EIGHT_BIT_INTS, "y_zero_point")
    check_scale(y_scale, "y_scale")
    warn_if_beyond_int32(node, acc)
    y = arith.requantize(
        acc, a_scale, b_scale, scalar_param(y_scale, "y_scale"), scalar_param(y_zero_point, "y_zero_point"),
        qtype(y_zero_point.dtype), precision=precision,
    )
    return (y,)


# ----------------------------------------------------------------------------
# MatMulIntegerToFloat, DynamicQuantizeMatMul
# ----------------------------------------------------------------------------


def _matmul_params(scale, zero_point, q, *, per_row: bool, what: str):
    """(scale, zero point), each broadcasting against the product: a scalar, per row of A
    ([..., M, 1]) or per column of B (1-D [N] or [..., 1, N]); an absent zero point is 0."""
    require_dtype(scale, {T.FLOAT, T.FLOAT16}, f"{what}_scale")
    check_scale(scale, f"{what}_scale")
    if per_row and scale.ndim == 1 and scale.size > 1:
        raise QuantParamError(
            f"{what}_scale has shape {scale.shape}: a 1-D scale of A cannot be factored out of the dot products; "
            "per-row scales have shape [..., M, 1]"
        )
    zero_point = zero_point_of(zero_point, q, what)
    return (
        matmul_param(scale, q.shape, per_row=per_row, what=f"{what}_scale"),
        matmul_param(zero_point, q.shape, per_row=per_row, what=f"{what}_zero_point"),
    )


def _integer_matmul_to_float(
    options: RequantizeOptions, a, a_scale, a_zp, b, b_scale, b_zp, bias, out_dtype
) -> np.ndarray:
    """a_scale * b_scale * ((a - a_zp) @ (b - b_zp)) + bias, numpy.matmul shapes, as ``out_dtype``."""
    check_matmul_shapes(a, b)
    a2, b2, squeeze = as_matrices(a, b)
    acc = _mlas_accumulator(a2, a_zp, b2, b_zp, saturate_pairs=options.saturate_u8s8_pairs)
    if bias is not None:
        require_dtype(bias, {T.FLOAT, T.FLOAT16}, "bias")
        if bias.dtype != out_dtype:
            raise DTypeError(f"bias has type {dtype_name(bias.dtype)}, it must match the scales ({dtype_name(out_dtype)})")
        if bias.shape != (b2.shape[-1],):
            raise ShapeError(f"bias has shape {bias.shape}, expected ({b2.shape[-1]},): one value per column of B")
    y = _scaled_to_float(acc, (a_scale, b_scale), bias, out_dtype, options.precision)
    return squeeze_axes(y, squeeze)


@register("MatMulIntegerToFloat", since=(1,), domain=MS_DOMAIN, options=RequantizeOptions)
def matmul_integer_to_float(node: Node, a, b=None, a_scale=None, b_scale=None, a_zero_point=None,
                            b_zero_point=None, bias=None):
    """Y = ((A - a_zero_point) @ (B - b_zero_point)) * a_scale * b_scale + bias, Y of the scales' type.

    a parameters: scalars or per row ([..., M, 1]); b parameters: scalars or per column ([N] or [..., 1, N]).
    """
    for value, what in ((a, "A"), (b, "B"), (a_scale, "a_scale"), (b_scale, "b_scale")):
        require_input(value, what)
    require_dtype(a, EIGHT_BIT_INTS, "A")
    require_dtype(b, EIGHT_BIT_INTS, "B")
    if a_scale.dtype != b_scale.dtype:
        raise DTypeError(f"a_scale has type {dtype_name(a_scale.dtype)} and b_scale {dtype_name(b_scale.dtype)}: they must match")
    a_scale, a_zp = _matmul_params(a_scale, a_zero_point, a, per_row=True, what="a")
    b_scale, b_zp = _matmul_params(b_scale, b_zero_point, b, per_row=False, what="b")
    return (_integer_matmul_to_float(node.options, a, a_scale, a_zp, b, b_scale, b_zp, bias, a_scale.dtype),)


@register("DynamicQuantizeMatMul", since=(1,), domain=MS_DOMAIN, options=DynamicQuantizeMatMulOptions)
def dynamic_quantize_matmul(node: Node, a, b=None, b_scale=None, b_zero_point=None, bias=None):
    """Y = MatMulIntegerToFloat(A_q, B, a_scale, b_scale, a_zp, b_zero_point, bias) with
    (A_q, a_scale, a_zp) = DynamicQuantizeLinear(A) (uint8; its profile options apply: options.quantize_a)."""
    for value, what in ((b, "B"), (b_scale, "b_scale")):
        require_input(value, what)
    require_dtype(a, {T.FLOAT}, "A")
    require_dtype(b, EIGHT_BIT_INTS, "B")
    require_dtype(b_scale, {T.FLOAT}, "b_scale")
    options: DynamicQuantizeMatMulOptions = node.options
    a_q, a_scale, a_zp = dynamic_quantize(a, options.quantize_a)
    b_scale, b_zp = _matmul_params(b_scale, b_zero_point, b, per_row=False, what="b")
    return (_integer_matmul_to_float(options.product, a_q, a_scale, a_zp, b, b_scale, b_zp, bias, np.float32),)


# ----------------------------------------------------------------------------
# QLinearConv (channels_last)
# ----------------------------------------------------------------------------


@register("QLinearConv", since=(1,), domain=MS_DOMAIN, options=RequantizeOptions)
def qlinear_conv_channels_last(node: Node, x, x_scale=None, x_zero_point=None, w=None, w_scale=None,
                               w_zero_point=None, y_scale=None, y_zero_point=None, B=None):
    """ai.onnx QLinearConv; with channels_last=1, x is (N, D1, ..., C) and y (N, D1, ..., M) (w stays (M, C/group, k...))."""
    channels_last = flag(node, "channels_last")
    for value, what in ((x, "x"), (x_scale, "x_scale"), (w, "w"), (w_scale, "w_scale"), (y_scale, "y_scale")):
        require_input(value, what)
    if channels_last:
        if x.ndim < 3:
            raise ShapeError(f"x must have shape (N, D1, ..., C) with channels_last=1, got {x.shape}")
        x = np.moveaxis(x, -1, 1)
    y = quantized_conv(
        node, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B, options=node.options
    )
    return (np.ascontiguousarray(np.moveaxis(y, 1, -1)) if channels_last else y,)
