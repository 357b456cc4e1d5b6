"""Quantization parameters, one home: parse, check and broadcast a scale and a zero point.

    val_fp32 = scale * (val_q - zero_point)
    q = saturate(round_half_even(x / scale) + zero_point)

A scale is finite and > 0 (:func:`check_scale`); a zero point has the quantized tensor's type
(:func:`zero_point_of`). A parameter is per tensor (one value), per axis (1-D along ``axis``) or
blocked (same rank as x, ceil(D / block_size) along ``axis``): :func:`broadcast_param`, which
QuantizeLinear and DequantizeLinear read from their attributes (:func:`qdq_params`,
:func:`contrib_qdq_params`); per output channel of a convolution (:func:`channel_param`); per row
of a matmul's a or per column of its b (:func:`matmul_param`, :func:`operand_params`). Every
kernel, :mod:`refquant.debug` and :mod:`refquant.params` take their parameters from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto as T

from . import arith
from .checks import require_dtype, require_input
from .dtypes import QType, dtype_name, qtype
from .errors import DTypeError, QuantParamError
from .window import channel_column

__all__ = [
    "check_scale",
    "broadcast_param",
    "check_params",
    "broadcast_params",
    "qdq_params",
    "contrib_qdq_params",
    "check_dequantize_zero_point",
    "zero_point_of",
    "scalar_param",
    "check_same_shape",
    "channel_param",
    "matmul_param",
    "operand_params",
    "QParams",
    "per_tensor_params",
]


# ----------------------------------------------------------------------------
# Scales; per tensor, per axis, blocked
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


def broadcast_param(
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


def check_params(scale, zero_point) -> None:
    """A valid scale (:func:`check_scale`) and, when given, a zero point of the scale's shape
    (one value each counts as the same shape)."""
    check_scale(scale, "scale")
    if zero_point is not None and np.shape(zero_point) != np.shape(scale) and not (
        np.size(zero_point) == 1 and np.size(scale) == 1
    ):
        raise QuantParamError(f"zero point has shape {np.shape(zero_point)}, scale has {np.shape(scale)}: they must match")


def broadcast_params(scale, zero_point, x_shape, *, axis: int | None, block_size: int = 0):
    """(scale, zero_point), each :func:`broadcast_param` against ``x_shape`` (the zero point None when absent)."""
    scale = broadcast_param(scale, x_shape, axis=axis, block_size=block_size, what="scale")
    if zero_point is not None:
        zero_point = broadcast_param(zero_point, x_shape, axis=axis, block_size=block_size, what="zero point")
    return scale, zero_point


# ----------------------------------------------------------------------------
# QuantizeLinear and DequantizeLinear: ai.onnx and com.microsoft
# ----------------------------------------------------------------------------


def qdq_params(node, x, scale, zero_point, *, axis_allowed: bool):
    """Validated (scale, zero_point) broadcast against x, for ai.onnx QuantizeLinear and DequantizeLinear alike:
    the ``axis`` attribute (default 1) where ``axis_allowed`` (opset 13 on), ``block_size`` from opset 21."""
    check_params(scale, zero_point)
    axis = node.attr("axis", 1, int) if axis_allowed else None
    block_size = node.attr("block_size", 0, int) if node.version >= 21 else 0
    return broadcast_params(scale, zero_point, x.shape, axis=axis, block_size=block_size)


def contrib_qdq_params(node, x: np.ndarray, scale: np.ndarray, zero_point, what: str):
    """com.microsoft QuantizeLinear / DequantizeLinear: (scale, zero point) broadcast against x, per tensor
    without the ``axis`` attribute, per axis with it."""
    if not node.has("axis") and np.size(scale) > 1:
        raise QuantParamError(
            f"{what}_scale has shape {np.shape(scale)}: without the 'axis' attribute the parameters are per tensor (one value)"
        )
    return qdq_params(node, x, scale, zero_point, axis_allowed=node.has("axis"))


def check_dequantize_zero_point(x: np.ndarray, x_zero_point: np.ndarray | None) -> None:
    """x_zero_point has x's type; int32 x takes none (or zero): the spec defines no int32 zero point."""
    if x_zero_point is None:
        return
    if x_zero_point.dtype != x.dtype:
        raise DTypeError(
            f"x_zero_point has type {dtype_name(x_zero_point.dtype)}, it must match x ({dtype_name(x.dtype)})"
        )
    if x.dtype == np.int32 and np.any(x_zero_point != 0):
        raise QuantParamError("int32 input takes no zero point (or zero): the spec defines none for it")


# ----------------------------------------------------------------------------
# Zero points; per tensor, per output channel, per row or column of a matmul
# ----------------------------------------------------------------------------


def zero_point_of(zero_point: np.ndarray | None, tensor: np.ndarray, what: str) -> np.ndarray:
    """The zero point, checked to share ``tensor``'s type; 0 when absent."""
    if zero_point is None:
        return np.zeros((), tensor.dtype)
    if zero_point.dtype != tensor.dtype:
        raise DTypeError(
            f"{what}_zero_point has type {dtype_name(zero_point.dtype)}, "
            f"it must match {what} ({dtype_name(tensor.dtype)})"
        )
    return zero_point


def check_same_shape(scale: np.ndarray, zero_point: np.ndarray, what: str) -> None:
    """QuantParamError unless ``what``'s scale and zero point have one shape (one value each counts as one)."""
    if scale.shape != zero_point.shape and not (scale.size == 1 and zero_point.size == 1):
        raise QuantParamError(
            f"{what}_scale has shape {scale.shape} and {what}_zero_point {zero_point.shape}: they must match"
        )


def scalar_param(param: np.ndarray, what: str) -> np.ndarray:
    """``param`` as a 0-d array; a per-tensor parameter must hold exactly one value."""
    if param.size != 1:
        raise QuantParamError(f"{what} must be a scalar (per tensor), got shape {param.shape}")
    return param.reshape(())


def channel_param(param: np.ndarray, channels: int, rank: int, what: str) -> np.ndarray:
    """Per tensor (one value) or per output channel (1-D of length M, as a channel_column of ``rank`` axes)."""
    if param.size == 1:
        return param.reshape(())
    if param.shape != (channels,):
        raise QuantParamError(
            f"{what} has shape {param.shape}, expected a scalar or ({channels},): one value per output channel"
        )
    return channel_column(param, rank)


def matmul_param(param: np.ndarray, shape: tuple[int, ...], *, per_row: bool, what: str) -> np.ndarray:
    """A matmul operand's scale or zero point, shaped to broadcast against the (..., M, N) product.

    Per tensor: one value. Per row of a (``per_row``): M values, as 1-D [M] or
    N-D [..., M, 1]. Per column of b: N values, as 1-D [N] or N-D [..., 1, N].
    The reduced axis (K) must have size 1: the formula needs one scale per dot product.
    """
    if param.size == 1:
        return param.reshape(())
    kind, axis = ("row", -2) if per_row else ("column", -1)
    if len(shape) < 2:
        raise QuantParamError(f"{what} must be a scalar for a 1-D operand, got shape {param.shape}")
    if param.ndim == 1:
        if param.shape[0] != shape[axis]:
            raise QuantParamError(f"{what} has {param.shape[0]} values, expected one per {kind} ({shape[axis]})")
        return param.reshape(-1, 1) if per_row else param
    reduced = -1 if per_row else -2
    try:
        fits = np.broadcast_shapes(param.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if param.ndim > len(shape) or param.shape[reduced] != 1 or not fits:
        expected = "[..., M, 1]" if per_row else "[..., 1, N]"
        raise QuantParamError(
            f"{what} has shape {param.shape}; per-{kind} parameters of an operand of shape {tuple(shape)} "
            f"have shape {expected}"
        )
    return param


def operand_params(scale, zero_point, shape, *, per_row: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A matmul operand's (scale, zero_point): one shape, each a matmul_param."""
    check_same_shape(scale, zero_point, what)
    return (
        matmul_param(scale, shape, per_row=per_row, what=f"{what}_scale"),
        matmul_param(zero_point, shape, per_row=per_row, what=f"{what}_zero_point"),
    )


# ----------------------------------------------------------------------------
# Per-tensor parameters as one value (the com.microsoft quantized ops)
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QParams:
    """Per-tensor quantization parameters: a float32 scale and a zero point (0-d arrays)."""

    scale: np.ndarray
    zero_point: np.ndarray

    @property
    def qtype(self) -> QType:
        return qtype(self.zero_point.dtype)

    def dequantize(self, q: np.ndarray, dtype=np.float64) -> np.ndarray:
        """(q - zero_point) * scale: exact in float64, one rounding in float32 (MLAS's dequantization)."""
        return arith.dequantize_values(q, self.scale, self.zero_point, dtype)

    def quantize(self, real: np.ndarray, precision=np.float64) -> np.ndarray:
        """saturate(round_half_even(real / scale) + zero_point), the division in ``precision``."""
        return arith.quantize_values(real, self.scale, self.zero_point, self.qtype, precision=precision)

    def same_as(self, other: QParams) -> bool:
        return bool(self.scale == other.scale and self.zero_point == other.zero_point)


def per_tensor_params(scale, zero_point, like: np.ndarray, what: str, *, zero_point_required: bool = False) -> QParams:
    """Validated per-tensor parameters of the tensor ``what`` whose values have ``like``'s type.

    scale: one float32 value, finite and > 0; zero point: one value of ``like``'s type (0 when absent).
    """
    require_input(scale, f"{what}_scale")
    if zero_point_required:
        require_input(zero_point, f"{what}_zero_point")
    require_dtype(scale, {T.FLOAT}, f"{what}_scale")
    check_scale(scale, f"{what}_scale")
    zero_point = zero_point_of(zero_point, like, what)
    return QParams(scalar_param(scale, f"{what}_scale"), scalar_param(zero_point, f"{what}_zero_point"))
