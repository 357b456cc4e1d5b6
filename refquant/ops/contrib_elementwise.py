"""com.microsoft QLinear elementwise ops (as onnxruntime defines them), 8-bit, per-tensor parameters.

    QLinearAdd:       C = quantize_C(dequantize_A(A) + dequantize_B(B))            (numpy broadcasting)
    QLinearMul:       C = quantize_C(dequantize_A(A) * dequantize_B(B))
    QLinearSigmoid:   Y = quantize_Y(1 / (1 + exp(-dequantize_X(X))))
    QLinearLeakyRelu: Y = quantize_Y(v if v >= 0 else alpha * v),   v = dequantize_X(X)
    QLinearSoftmax:   Y = quantize_Y(exp(v - max v) / sum exp(v - max v)),   v = dequantize_X(X)
    QLinearConcat:    Y = concat_i(quantize_Y(dequantize_i(X_i)), axis)
    QLinearWhere:     Z = where(condition, quantize_Z(dequantize_X(X)), quantize_Z(dequantize_Y(Y)))

Profile option qlinear_pipeline (QLinearElementwiseOptions.mlas_float32): ``"exact"`` evaluates the
function in float64 on the exact dequantized values and rounds once; ``"mlas-float32"`` replays
onnxruntime's MLAS kernels. spec/ops/contrib.md gives both, with the evidence.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto as T

from .. import arith, lowerings
from ..broadcast import broadcast_shapes
from ..checks import normalize_axis, require_dtype, require_input, require_same_type
from ..dtypes import EIGHT_BIT_INTS
from ..errors import ShapeError
from ..kernel_options import QLinearElementwiseOptions
from ..node import Node
from ..qparams import QParams, per_tensor_params
from ..registry import MS_DOMAIN, register
from .mlas_rounding import round_float32


# ----------------------------------------------------------------------------
# QLinearAdd, QLinearMul
# ----------------------------------------------------------------------------


def _binary_operands(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point):
    """(A, B, C) parameters; A and B of one 8-bit type, shapes that broadcast."""
    require_input(a, "A")
    require_input(b, "B")
    require_dtype(a, EIGHT_BIT_INTS, "A")
    require_same_type(b, a, "B", "A")
    broadcast_shapes({"A": a.shape, "B": b.shape})
    return per_tensor_params(a_scale, a_zero_point, a, "A"), per_tensor_params(b_scale, b_zero_point, b, "B"), per_tensor_params(c_scale, c_zero_point, a, "C")


def _a_is_scalar_per_span(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> bool:
    """onnxruntime's broadcaster treats A as a scalar when it is constant along the innermost
    output axis longer than 1 (or the output has one element); MLAS then takes B as its first operand."""
    out = np.broadcast_shapes(a_shape, b_shape)
    a_full = (1,) * (len(out) - len(a_shape)) + tuple(a_shape)
    for size, a_size in zip(reversed(out), reversed(a_full)):
        if size > 1:
            return a_size == 1
    return True


def _mlas_add(a, pa: QParams, b, pb: QParams, pc: QParams) -> np.ndarray:
    """MLAS QLinearAdd (AVX2), for the first operand v and the second w (A and B, swapped when A is
    a scalar per span): r_x = float32(scale_x / scale_C), fixed = zp_C - fma(r_v, zp_v, r_w * zp_w),
    C = saturate(round_half_even(fma(v, r_v, fma(w, r_w, fixed)))): the zero point is added before rounding;
    a sum beyond int32 (or NaN) converts to INT32_MIN, so qmin."""
    (v, pv), (w, pw) = ((b, pb), (a, pa)) if _a_is_scalar_per_span(a.shape, b.shape) else ((a, pa), (b, pb))
    r_v, r_w = pv.scale.astype(np.float32) / pc.scale, pw.scale.astype(np.float32) / pc.scale
    zp_v, zp_w, zp_c = (p.zero_point.astype(np.float32) for p in (pv, pw, pc))
    fixed = zp_c - lowerings.fma_float32(r_v, zp_v, r_w * zp_w)
    total = lowerings.fma_float32(v.astype(np.float32), r_v, lowerings.fma_float32(w.astype(np.float32), r_w, fixed))
    return round_float32(total, pc.qtype, overflow="int32-indefinite")


@register("QLinearAdd", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_add(node: Node, a, a_scale=None, a_zero_point=None, b=None, b_scale=None, b_zero_point=None,
                c_scale=None, c_zero_point=None):
    """C = quantize_C(A_scale * (A - A_zero_point) + B_scale * (B - B_zero_point))."""
    pa, pb, pc = _binary_operands(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    if node.options.mlas_float32:
        return (_mlas_add(a, pa, b, pb, pc),)
    return (pc.quantize(pa.dequantize(a) + pb.dequantize(b)),)


@register("QLinearMul", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_mul(node: Node, a, a_scale=None, a_zero_point=None, b=None, b_scale=None, b_zero_point=None,
                c_scale=None, c_zero_point=None):
    """C = quantize_C((A - A_zero_point) * (B - B_zero_point) * A_scale * B_scale).

    mlas-float32 (MLAS QLinearMul, SSE2): the product of the centered integers is exact
    (|p| <= 2**16), then C = saturate(round_half_even(float32(p) * r + zp_C)),
    r = float32(float32(A_scale * B_scale) / C_scale); beyond int32 (or NaN): qmin, as in QLinearAdd.
    """
    pa, pb, pc = _binary_operands(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    if node.options.mlas_float32:
        product = (a.astype(np.int32) - pa.zero_point.astype(np.int32)) * (b.astype(np.int32) - pb.zero_point.astype(np.int32))
        ratio = pa.scale.astype(np.float32) * pb.scale / pc.scale
        total = product.astype(np.float32) * ratio + pc.zero_point.astype(np.float32)
        return (round_float32(total, pc.qtype, overflow="int32-indefinite"),)
    return (pc.quantize(pa.dequantize(a) * pb.dequantize(b)),)


# ----------------------------------------------------------------------------
# QLinearSigmoid, QLinearLeakyRelu (onnxruntime: 256-entry lookup tables)
# ----------------------------------------------------------------------------


def _unary_params(x, x_scale, x_zero_point, y_scale, y_zero_point, *, y_zero_point_required=False):
    require_input(x, "X")
    require_dtype(x, EIGHT_BIT_INTS, "X")
    return per_tensor_params(x_scale, x_zero_point, x, "X"), per_tensor_params(
        y_scale, y_zero_point, x, "Y", zero_point_required=y_zero_point_required
    )


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-v)) in float64 without overflow: e = exp(-|v|), 1/(1+e) for v >= 0, e/(1+e) below."""
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0, e) / (1.0 + e)


#: MLAS's logistic (Eigen's rational approximation): clamp to [-18, 18], p(v) / q(v) + 0.5, clamped below at 0
_LOGISTIC_RANGE = (np.float32(-18.0), np.float32(18.0))
_LOGISTIC_P = tuple(map(np.float32, (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03, 2.48287947061529e-01)))
_LOGISTIC_Q = tuple(map(np.float32, (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03, 1.16817656904453e-01, 9.93151921023180e-01)))


def _horner_float32(coefficients: tuple, v2: np.ndarray) -> np.ndarray:
    """c0 * v2^n + ... + cn by Horner's rule with fused multiply-adds (MLAS's FMA3 kernel)."""
    acc = lowerings.fma_float32(v2, coefficients[0], coefficients[1])
    for c in coefficients[2:]:
        acc = lowerings.fma_float32(v2, acc, c)
    return acc


def _mlas_logistic(v: np.ndarray) -> np.ndarray:
    """MlasComputeLogistic as its FMA3 kernel computes it, in float32."""
    v = np.clip(v, *_LOGISTIC_RANGE)
    v2 = v * v
    p = v * _horner_float32(_LOGISTIC_P, v2)
    q = _horner_float32(_LOGISTIC_Q, v2)
    return np.maximum(p / q + np.float32(0.5), np.float32(0.0))


@register("QLinearSigmoid", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_sigmoid(node: Node, x, x_scale=None, x_zero_point=None, y_scale=None, y_zero_point=None):
    """Y = quantize_Y(sigmoid(dequantize_X(X))); mlas-float32: float32 dequantization, MLAS's logistic,
    float32 QuantizeLinear (x / y_scale rounded, then + y_zero_point)."""
    px, py = _unary_params(x, x_scale, x_zero_point, y_scale, y_zero_point)
    if node.options.mlas_float32:
        return (py.quantize(_mlas_logistic(px.dequantize(x, np.float32)), precision=np.float32),)
    return (py.quantize(_sigmoid(px.dequantize(x))),)


@register("QLinearLeakyRelu", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_leaky_relu(node: Node, x, x_scale=None, x_zero_point=None, y_scale=None, y_zero_point=None):
    """Y = quantize_Y(v >= 0 ? v : alpha * v), v = dequantize_X(X); mlas-float32: each step in float32."""
    px, py = _unary_params(x, x_scale, x_zero_point, y_scale, y_zero_point)
    alpha = node.attr("alpha", 0.01, float)
    precision = np.dtype(np.float32 if node.options.mlas_float32 else np.float64)
    v = px.dequantize(x, precision)
    return (py.quantize(np.where(v >= 0, v, precision.type(alpha) * v), precision=precision),)


# ----------------------------------------------------------------------------
# QLinearSoftmax
# ----------------------------------------------------------------------------


def _softmax_rows(x: np.ndarray, node: Node) -> tuple[np.ndarray, callable]:
    """(rows, restore): the (N, D) rows softmax normalizes, and the map back to x's shape.

    Attribute ``opset`` (required) selects the Softmax semantics: < 13 coerces x to 2-D at
    ``axis`` (default 1), >= 13 normalizes along ``axis`` alone (default -1).
    """
    opset = node.attr("opset", kind=int)
    if x.ndim == 0:
        raise ShapeError("X must have rank >= 1")
    axis = normalize_axis(node.attr("axis", 1 if opset < 13 else -1, int), x.ndim)
    if opset < 13:
        return x.reshape(math.prod(x.shape[:axis]), -1), lambda rows: rows.reshape(x.shape)
    moved = np.moveaxis(x, axis, -1)
    return moved.reshape(-1, x.shape[axis]), lambda rows: np.moveaxis(rows.reshape(moved.shape), -1, axis)


def _mlas_softmax(rows: np.ndarray, px: QParams, py: QParams) -> np.ndarray:
    """onnxruntime's QLinearSoftmax (MlasComputeQSoftmax), row by row, x_zero_point cancelling:

        s   = max(0, logf(float32(FLT_MAX / D)) - 5) / x_scale          (float32 log, the rest float64)
        e_i = float32(exp((x_i - max x + s) * x_scale))                  (its 256-entry table)
        y_i = saturate(round_half_even(e_i * float32(floor(1 / y_scale) / sum e)) + y_zero_point)

    with sum e in float32 in element order (MLAS's vector kernels add lane by lane from 16/32
    elements on: the same sum unless a float32 addition rounds differently).
    """
    length = rows.shape[1]
    log_range = float(arith.narrow(np.log(np.float64(np.finfo(np.float32).max / np.float32(length))), np.float32))
    shift = max(0.0, log_range - 5.0) / float(px.scale)
    offsets = (rows.astype(np.float64) - rows.max(axis=1, keepdims=True)) + shift
    exps = arith.narrow(np.exp(offsets * float(px.scale)), np.float32)
    total = np.zeros(rows.shape[0], np.float32)
    for column in exps.T:
        total += column
    scale = np.floor(np.float32(1.0) / py.scale) / total
    return round_float32(exps * scale[:, None], py.qtype, py.zero_point)


@register("QLinearSoftmax", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_softmax(node: Node, x, x_scale=None, x_zero_point=None, y_scale=None, y_zero_point=None):
    """Y = quantize_Y(softmax(dequantize_X(X))) along ``axis`` (attribute ``opset`` picks the semantics)."""
    px, py = _unary_params(x, x_scale, x_zero_point, y_scale, y_zero_point, y_zero_point_required=True)
    rows, restore = _softmax_rows(x, node)
    if rows.size == 0:
        return (np.empty(x.shape, x.dtype),)
    if node.options.mlas_float32:
        return (restore(_mlas_softmax(rows, px, py)),)
    v = px.dequantize(rows)
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return (restore(py.quantize(e / e.sum(axis=1, keepdims=True))),)


# ----------------------------------------------------------------------------
# QLinearConcat, QLinearWhere: requantization to the output's parameters
# ----------------------------------------------------------------------------


def _requantize(q: np.ndarray, source: QParams, target: QParams, *, mlas_float32: bool) -> np.ndarray:
    """quantize_target(dequantize_source(q)). mlas_float32 (onnxruntime's lookup table): a copy when
    scale and zero point are equal, else float32 dequantization then float32 QuantizeLinear."""
    if mlas_float32:
        if source.same_as(target):
            return q.copy()
        return target.quantize(source.dequantize(q, np.float32), precision=np.float32)
    return target.quantize(source.dequantize(q))


@register("QLinearConcat", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_concat(node: Node, y_scale, y_zero_point=None, *inputs):
    """Y = concat(requantize(X_i), axis); inputs after Y's parameters are (X, X_scale, X_zero_point) triples."""
    require_input(y_zero_point, "Y_zero_point")
    require_dtype(y_zero_point, EIGHT_BIT_INTS, "Y_zero_point")
    py = per_tensor_params(y_scale, y_zero_point, y_zero_point, "Y")
    if not inputs or len(inputs) % 3:
        raise ShapeError(f"inputs after Y_scale and Y_zero_point must be (X, X_scale, X_zero_point) triples, got {len(inputs)}")
    tensors = []
    for i in range(0, len(inputs), 3):
        x, x_scale, x_zero_point = inputs[i : i + 3]
        what = f"X{i // 3}"
        require_input(x, what)
        require_same_type(x, y_zero_point, what, "Y_zero_point")
        params = per_tensor_params(x_scale, x_zero_point, x, what, zero_point_required=True)
        tensors.append(_requantize(x, params, py, mlas_float32=node.options.mlas_float32))
    rank = tensors[0].ndim
    axis = normalize_axis(node.attr("axis", kind=int), rank)
    shapes = [t.shape for t in tensors]
    for k, shape in enumerate(shapes):
        if len(shape) != rank or any(s != r for d, (s, r) in enumerate(zip(shape, shapes[0])) if d != axis):
            raise ShapeError(f"inputs must agree on every axis but {axis}: shapes {shapes} (input {k} differs)")
    return (np.concatenate(tensors, axis=axis),)


@register("QLinearWhere", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_where(node: Node, condition, x=None, x_scale=None, x_zero_point=None, y=None, y_scale=None,
                  y_zero_point=None, z_scale=None, z_zero_point=None):
    """Z = where(condition, requantize(X), requantize(Y)), multidirectional broadcasting."""
    for value, what in ((condition, "condition"), (x, "X"), (y, "Y")):
        require_input(value, what)
    require_dtype(condition, {T.BOOL}, "condition")
    require_dtype(x, EIGHT_BIT_INTS, "X")
    require_same_type(y, x, "Y", "X")
    px = per_tensor_params(x_scale, x_zero_point, x, "x", zero_point_required=True)
    py = per_tensor_params(y_scale, y_zero_point, x, "y", zero_point_required=True)
    pz = per_tensor_params(z_scale, z_zero_point, x, "z", zero_point_required=True)
    broadcast_shapes({"condition": condition.shape, "X": x.shape, "Y": y.shape})
    mlas_float32 = node.options.mlas_float32
    z_from_x = _requantize(x, px, pz, mlas_float32=mlas_float32)
    return (np.where(condition, z_from_x, _requantize(y, py, pz, mlas_float32=mlas_float32)),)

