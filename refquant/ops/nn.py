"""Float Conv and MaxPool (1-D, 2-D, 3-D, ...), every registered version.

    Conv:    Y[n, m, j] = B[m] + sum_{c, t} W[m, c, t] * Xpad[n, g(m) * C/group + c, j * s + t * d]
    MaxPool: Y[n, c, j] = max_{t, j*s + t*d not in the padding} X[n, c, j*s + t*d - pad_begin]

Geometry (pads, auto_pad, strides, dilations, ceil_mode) lives in refquant.window;
spec/ops/nn.md states every choice these kernels make.
"""

from __future__ import annotations

from math import prod

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register
from ..window import (
    Window,
    conv_bias,
    conv_columns,
    conv_output,
    conv_window,
    grouped_weights,
    pad,
    resolve_window,
    tap_coordinates,
    windows,
)
from .common import dtype_name, require_dtype, types_at

CONV_TYPES = {1: (T.FLOAT16, T.FLOAT, T.DOUBLE), 22: (T.BFLOAT16,)}
MAXPOOL_TYPES = {1: (T.FLOAT16, T.FLOAT, T.DOUBLE), 12: (T.INT8, T.UINT8), 22: (T.BFLOAT16,)}


def _same_type(value: np.ndarray | None, x: np.ndarray, what: str) -> None:
    if value is not None and value.dtype != x.dtype:
        raise DTypeError(f"{what} has type {dtype_name(value.dtype)}, it must match X ({dtype_name(x.dtype)})")


@register("Conv", since=(1, 11, 22))
def conv(node: Node, x, w, b=None):
    """Sums in float64, then one rounding to X's type (products of float32 and narrower are exact in float64)."""
    require_dtype(x, types_at(CONV_TYPES, node.version), "X")
    _same_type(w, x, "W")
    _same_type(b, x, "B")
    window, group = conv_window(node, x.shape, w.shape)
    bias = None if b is None else conv_bias(b.astype(np.float64), w.shape[0], len(window.kernel))
    columns = conv_columns(pad(x.astype(np.float64), window, 0.0), window, group)
    y = conv_output(np.matmul(grouped_weights(w.astype(np.float64), group), columns), window)
    if bias is not None:
        y += bias
    return (arith.narrow(y, x.dtype),)


def _is_integer(dtype: np.dtype) -> bool:
    return dtype.kind in "iu"


def _inside(taps: list[np.ndarray], window: Window, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Boolean (*output, *kernel): True where the tap reads the input, False in the padding.

    Raises when some output would pool padding only.
    """
    rank = len(spatial_shape)
    mask = np.ones((1,) * 2 * rank, dtype=bool)
    for axis, (coords, size) in enumerate(zip(taps, spatial_shape)):
        inside = (coords >= 0) & (coords < size)
        empty = ~inside.any(axis=1)
        if empty.any():
            raise AttributeValueError(
                f"output {int(np.argmax(empty))} along spatial axis {axis} would pool padding only "
                f"(padding {window.pads_begin[axis]} + {window.pads_end[axis]}, kernel {window.kernel[axis]}, "
                f"dilation {window.dilations[axis]})"
            )
        shape = [1] * 2 * rank
        shape[axis], shape[rank + axis] = inside.shape
        mask = mask & inside.reshape(shape)
    return mask


def _window_max(view: np.ndarray, kernel: tuple[int, ...]) -> np.ndarray:
    """Maximum over the trailing kernel axes of a window view, one np.maximum per tap (NaN propagates)."""
    taps = np.ndindex(kernel)
    y = view[(Ellipsis, *next(taps))].copy()
    for tap in taps:
        np.maximum(y, view[(Ellipsis, *tap)], out=y)
    return y


def _argmax_indices(view, y, inside, taps, x_shape, column_major: bool) -> np.ndarray:
    """Flat input index of the first input element (row-major kernel order) equal to each maximum.

    Index = (n * C + c) * prod(D) + the spatial coordinates raveled row-major,
    or column-major when storage_order is 1. A NaN maximum points at the first NaN.
    """
    rank = len(taps)
    kernel = tuple(coords.shape[1] for coords in taps)
    chosen = np.zeros(y.shape, np.intp)
    y_is_nan = None if _is_integer(y.dtype) else np.isnan(y)
    for flat, tap in reversed(list(enumerate(np.ndindex(kernel)))):  # the first hit is written last
        values = view[(Ellipsis, *tap)]
        hit = values == y
        if y_is_nan is not None:
            hit |= np.isnan(values) & y_is_nan
        np.copyto(chosen, flat, where=hit & inside[(Ellipsis, *tap)])
    offsets = np.unravel_index(chosen, kernel)
    coordinates = [
        coords[np.arange(coords.shape[0]).reshape((-1,) + (1,) * (rank - 1 - axis)), offsets[axis]]
        for axis, coords in enumerate(taps)
    ]
    spatial = x_shape[2:]
    channel_base = np.arange(x_shape[0] * x_shape[1], dtype=np.int64).reshape(x_shape[:2] + (1,) * rank) * prod(spatial)
    return channel_base + np.ravel_multi_index(coordinates, spatial, order="F" if column_major else "C")


@register("MaxPool", since=(10, 11, 12, 22))
def max_pool(node: Node, x):
    """Maximum over each window, padding excluded; optional Indices (flat int64 positions in X)."""
    if x.dtype in (np.int8, np.uint8) and node.version < 12:
        raise DTypeError(f"X has type {dtype_name(x.dtype)}: 8-bit MaxPool needs opset >= 12")
    require_dtype(x, types_at(MAXPOOL_TYPES, node.version), "X")
    if x.ndim < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    ceil_mode = node.attr("ceil_mode", 0, int)
    storage_order = node.attr("storage_order", 0, int)
    for name, value in (("ceil_mode", ceil_mode), ("storage_order", storage_order)):
        if value not in (0, 1):
            raise AttributeValueError(f"{name} must be 0 or 1, got {value}")
    window = resolve_window(node, x.shape[2:], ceil_mode=bool(ceil_mode))
    taps = tap_coordinates(window)
    inside = _inside(taps, window, x.shape[2:])
    lowest = np.iinfo(x.dtype).min if _is_integer(x.dtype) else -np.inf  # never above a real element
    view = windows(pad(x, window, lowest), window)
    y = _window_max(view, window.kernel)
    wants_indices = len(node.proto.output) > 1 and node.proto.output[1]
    if not wants_indices:
        return (y,)
    return y, _argmax_indices(view, y, inside, taps, x.shape, column_major=bool(storage_order))
