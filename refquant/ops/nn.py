"""Float Conv, ConvTranspose, MaxPool, GlobalMaxPool and DeformConv (1-D, 2-D, 3-D, ...), every registered version.

    Conv:          Y[n, m, j] = B[m] + sum_{c, t} W[m, c, t] * Xpad[n, g(m) * C/group + c, j * s + t * d]
    ConvTranspose: Y[n, m, o] = B[m] + sum_{c, i, t: i * s + t * d = o + pad_begin} X[n, c, i] * W[c, m', t]
                   (c in m's group, m' = m mod M/group)
    MaxPool:       Y[n, c, j] = max_{t, j*s + t*d not in the padding} X[n, c, j*s + t*d - pad_begin]
    GlobalMaxPool: Y[n, c] = max of X[n, c, ...]
    DeformConv:    Conv whose tap t of output j reads X at j * s + t * d - pad + offset[n, g, t, :, j], interpolated
                   multilinearly (0 outside X), times mask[n, g, t, j]

Geometry (pads, auto_pad, strides, dilations, ceil_mode) lives in refquant.window;
spec/ops/nn.md states every choice these kernels make.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod

import numpy as np
from onnx import TensorProto as T

from .. import arith, mlas
from ..checks import is_integer, require_dtype, require_same_type
from ..dtypes import IEEE_FLOATS, dtype_name, types_at
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..kernel_options import FloatPipelineOptions
from ..node import Node
from ..registry import register
from ..window import (
    AUTO_PADS,
    Window,
    kernel_shape,
    per_axis,
    conv_bias,
    conv_columns,
    conv_output,
    conv_window,
    grouped_weights,
    pad,
    tap_coordinates,
)
from .pooling import is_positive_zero, taps_inside, window_max, zero_sign_of_max

CONV_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}
MAXPOOL_TYPES = {1: IEEE_FLOATS, 12: (T.INT8, T.UINT8), 22: (T.BFLOAT16,)}
GLOBAL_MAXPOOL_TYPES = CONV_TYPES


@register("Conv", since=(1, 11, 22), options=FloatPipelineOptions)
def conv(node: Node, x, w, b=None):
    """Sums in float64, then one rounding to X's type (products of float32 and narrower are exact in float64)."""
    require_dtype(x, types_at(CONV_TYPES, node.version), "X")
    require_same_type(w, x, "W")
    require_same_type(b, x, "B")
    window, group = conv_window(node, x.shape, w.shape)
    options: FloatPipelineOptions = node.options
    y = _mlas_conv(x, w, b, window, group, options.threads) if options.replays_mlas_float32(x.dtype) else None
    if y is not None:
        return (y,)
    if options.replays_numpy_float32(x.dtype):
        return (_numpy_conv(x, w, b, window, group),)
    bias = None if b is None else conv_bias(b.astype(np.float64), w.shape[0], len(window.kernel))
    columns = conv_columns(pad(x.astype(np.float64), window, 0.0), window, group)
    y = conv_output(np.matmul(grouped_weights(w.astype(np.float64), group), columns), window)
    if bias is not None:
        y += bias
    return (arith.narrow(y, x.dtype),)


def _mlas_conv(x: np.ndarray, w: np.ndarray, b, window: Window, group: int, threads: int) -> np.ndarray | None:
    """onnxruntime's float32 Conv (MlasConv): im2col, the algorithm MlasConvPrepare picks, bias added last;
    None for the one algorithm refquant.mlas does not replay (the exact sum is used there)."""
    filters = w.shape[0] // group
    algorithm = mlas.conv_algorithm(window, x.shape[2:], x.shape[1] // group, filters, group)
    if algorithm == "depthwise-multiplier2":
        return None
    columns = conv_columns(pad(x, window, np.float32(0)), window, group)
    bias = None if b is None else b.reshape(group, filters)
    return conv_output(mlas.conv(grouped_weights(w, group), columns, bias, algorithm, threads), window)


def _numpy_conv(x: np.ndarray, w: np.ndarray, b, window: Window, group: int) -> np.ndarray:
    """onnx.reference's float32 Conv: a dilated kernel is materialized with zeros between its taps, im2col
    puts K = (input channel, tap) in rows and (image, output point) in columns, one float32 numpy product
    per group, then + B in float32."""
    if any(d > 1 for d in window.dilations):
        dilated = np.zeros(w.shape[:2] + window.extent, w.dtype)
        dilated[(slice(None), slice(None), *(slice(None, None, d) for d in window.dilations))] = w
        w, window = dilated, replace(window, kernel=window.extent, dilations=(1,) * len(window.kernel))
    columns = conv_columns(pad(x, window, np.float32(0)), window, group)  # (N, group, K, points)
    n, _, k, points = columns.shape
    rows = np.ascontiguousarray(columns.transpose(1, 2, 0, 3)).reshape(group, k, n * points)
    products = grouped_weights(w, group) @ rows  # (group, M/group, N * points)
    y = products.reshape(group, -1, n, points).transpose(2, 0, 1, 3).reshape(n, w.shape[0], *window.output)
    if b is not None:
        y = y + (b if b.size == 1 else b.reshape((1, -1) + (1,) * len(window.kernel)))
    return y


def _argmax_indices(view, y, inside, taps, x_shape, column_major: bool) -> np.ndarray:
    """Flat input index of the first input element (row-major kernel order) equal to each maximum.

    Index = (n * C + c) * prod(D) + the spatial coordinates raveled row-major,
    or column-major when storage_order is 1. A NaN maximum points at the first NaN.
    """
    rank = len(taps)
    kernel = tuple(coords.shape[1] for coords in taps)
    chosen = np.zeros(y.shape, np.intp)
    y_is_nan = None if is_integer(y) else np.isnan(y)
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
    window, view, y = window_max(node, x, ceil_mode=bool(ceil_mode))
    taps = tap_coordinates(window)
    inside = taps_inside(taps, window, x.shape[2:])  # raises where a window pools padding only
    if not (len(node.proto.output) > 1 and node.proto.output[1]):
        return (y,)
    return y, _argmax_indices(view, y, inside, taps, x.shape, column_major=bool(storage_order))


@register("GlobalMaxPool", since=(1, 22))
def global_max_pool(node: Node, x):
    """Maximum over the spatial axes, kept as size 1 (exact; NaN propagates; +0 above -0)."""
    require_dtype(x, types_at(GLOBAL_MAXPOOL_TYPES, node.version), "X")
    if x.ndim < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    if 0 in x.shape[2:]:
        raise ShapeError(f"X has shape {x.shape}: an empty spatial axis has no maximum")
    spatial, wide = tuple(range(2, x.ndim)), x.astype(np.float64)  # exact both ways
    positive_zero = is_positive_zero(wide).any(axis=spatial, keepdims=True)
    return (zero_sign_of_max(np.max(wide, axis=spatial, keepdims=True), positive_zero).astype(x.dtype),)


# ----------------------------------------------------------------------------
# ConvTranspose
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransposedWindow:
    """ConvTranspose geometry per spatial axis: the full scatter length s * (D - 1) + e, the
    position of output 0 in it (pad_begin, may be negative), and the output length."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    full: tuple[int, ...]
    begin: tuple[int, ...]
    output: tuple[int, ...]


def _split_padding(total: int, auto_pad: str) -> int:
    """pad_begin of a total padding: total // 2 for SAME_UPPER, total - total // 2 otherwise (the ONNX text).

    A negative total (output_shape beyond the full result) begins at 0: the extra outputs go at the end.
    """
    if total < 0:
        return 0
    return total // 2 if auto_pad == "SAME_UPPER" else total - total // 2


def transposed_window(node: Node, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> tuple[TransposedWindow, int]:
    """(geometry, group) of a ConvTranspose of x (N, C, D...) by w (C, M/group, k...), validated.

    full = s * (D - 1) + (k - 1) * d + 1; the output is full + output_padding - pad_begin - pad_end,
    with pads from ``pads`` (NOTSET), none (VALID), or split from total = full + output_padding - out
    where out is ``output_shape`` or, under SAME_*, D * s.
    """
    if len(x_shape) < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {len(x_shape)} {tuple(x_shape)}")
    if len(w_shape) != len(x_shape):
        raise ShapeError(f"W has rank {len(w_shape)} {tuple(w_shape)}, X has rank {len(x_shape)}: they must match")
    group = node.attr("group", 1, int)
    if group < 1 or x_shape[1] % group:
        raise AttributeValueError(f"group {group} must be >= 1 and divide the input channels ({x_shape[1]})")
    if w_shape[0] != x_shape[1]:
        raise ShapeError(f"W has {w_shape[0]} input channels (its first axis), X has {x_shape[1]}")
    rank, spatial = len(x_shape) - 2, tuple(x_shape[2:])
    kernel = kernel_shape(node, rank, tuple(w_shape[2:]))
    strides = per_axis(node, "strides", rank, 1, 1)
    dilations = per_axis(node, "dilations", rank, 1, 1)
    extra = per_axis(node, "output_padding", rank, 0, 0)
    if any(p >= max(s, d) for p, s, d in zip(extra, strides, dilations)):
        raise AttributeValueError(f"output_padding {list(extra)} must be less than the stride or the dilation of each axis")
    auto_pad = node.attr("auto_pad", "NOTSET", str)
    if auto_pad not in AUTO_PADS:
        raise AttributeValueError(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got {auto_pad!r}")
    pads = node.attr_ints("pads", None) or [0] * (2 * rank)
    if len(pads) != 2 * rank or min(pads) < 0:
        raise AttributeValueError(f"pads {pads} must be {2 * rank} values >= 0 (begin and end per spatial axis)")
    if auto_pad != "NOTSET" and any(pads):
        raise AttributeValueError(f"pads {pads} cannot be used with auto_pad {auto_pad}")
    full = tuple(s * (size - 1) + (k - 1) * d + 1 for s, size, k, d in zip(strides, spatial, kernel, dilations))
    requested = node.attr_ints("output_shape", None)
    if requested is not None and len(requested) != rank:
        raise AttributeValueError(f"output_shape has {len(requested)} values, expected {rank} (the spatial axes only)")
    if requested is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        requested = [size * s for size, s in zip(spatial, strides)]
    if requested is not None:
        begin = [_split_padding(f + p - out, auto_pad) for f, p, out in zip(full, extra, requested)]
        output = list(requested)
    elif auto_pad == "VALID":
        begin, output = [0] * rank, [f + p for f, p in zip(full, extra)]
    else:
        begin = list(pads[:rank])
        output = [f + p - b - e for f, p, b, e in zip(full, extra, pads[:rank], pads[rank:])]
    if min(output) < 1:
        raise ShapeError(f"the output would have spatial shape {output}: every length must be >= 1")
    return TransposedWindow(kernel, strides, dilations, full, tuple(begin), tuple(output)), group


def _scatter_taps(columns: np.ndarray, window: TransposedWindow) -> np.ndarray:
    """col2im: (N, M, prod(kernel), *D) products -> (N, M, *full), tap t of input i added at i * s + t * d."""
    full = np.zeros(columns.shape[:2] + window.full, columns.dtype)
    spatial = columns.shape[3:]
    for j, tap in enumerate(np.ndindex(*window.kernel)):
        positions = tuple(
            slice(t * d, t * d + (size - 1) * s + 1, s) for t, d, size, s in zip(tap, window.dilations, spatial, window.strides)
        )
        full[(Ellipsis, *positions)] += columns[:, :, j]
    return full


def _crop(full: np.ndarray, window: TransposedWindow) -> np.ndarray:
    """Output o of each axis is full[o + begin]; outputs outside the full result are 0."""
    y = np.zeros(full.shape[:2] + window.output, full.dtype)
    source, target = [], []
    for f, b, out in zip(window.full, window.begin, window.output):
        low, high = max(0, -b), min(out, f - b)
        target.append(slice(low, max(low, high)))
        source.append(slice(low + b, max(low, high) + b))
    y[(Ellipsis, *target)] = full[(Ellipsis, *source)]
    return y


@register("ConvTranspose", since=(1, 11, 22))
def conv_transpose(node: Node, x, w, b=None):
    """Products W^T X per group in float64 (exact for float32 and narrower), scattered, summed in float64,
    the bias added, then one rounding to X's type."""
    require_dtype(x, types_at(CONV_TYPES, node.version), "X")
    require_same_type(w, x, "W")
    require_same_type(b, x, "B")
    window, group = transposed_window(node, x.shape, w.shape)
    n, channels = x.shape[:2]
    out_channels, taps = w.shape[1] * group, prod(window.kernel)
    weights = w.astype(np.float64).reshape(group, channels // group, -1).transpose(0, 2, 1)  # (g, M/g * K, C/g)
    inputs = x.astype(np.float64).reshape(n, group, channels // group, -1)  # (N, g, C/g, prod(D))
    columns = np.matmul(weights, inputs).reshape(n, out_channels, taps, *x.shape[2:])
    y = _crop(_scatter_taps(columns, window), window)
    if b is not None:
        y += conv_bias(b.astype(np.float64), out_channels, len(window.kernel))
    return (arith.narrow(y, x.dtype),)


# ----------------------------------------------------------------------------
# DeformConv
# ----------------------------------------------------------------------------

DEFORM_CONV_TYPES = {19: IEEE_FLOATS, 22: (T.BFLOAT16,)}


def _sample(image: np.ndarray, positions: list[np.ndarray]) -> np.ndarray:
    """Multilinear interpolation of ``image`` (C, D1, ..., Dn) at float64 ``positions`` (n arrays of one shape
    P): (C, *P). Each of the 2^n corners weighs prod(1 - frac or frac); a corner outside the image reads 0."""
    spatial = image.shape[1:]
    floors = [np.floor(p) for p in positions]
    fracs = [p - f for p, f in zip(positions, floors)]
    total = np.zeros(image.shape[:1] + positions[0].shape)
    for corner in np.ndindex(*(2,) * len(spatial)):
        weight = np.ones(positions[0].shape)
        inside = np.ones(positions[0].shape, bool)
        index = []
        for axis, bit in enumerate(corner):
            i = floors[axis] + bit
            weight = weight * (fracs[axis] if bit else 1.0 - fracs[axis])
            inside &= (i >= 0) & (i < spatial[axis])  # NaN positions are outside
            index.append(i)
        values = image[(slice(None), *(np.where(inside, i, 0).astype(np.int64) for i in index))]
        total += np.where(inside, weight * values, 0.0)
    return total


@register("DeformConv", since=(19, 22))
def deform_conv(node: Node, x, w, offset, b=None, mask=None):
    """Y[n, m, j] = B[m] + sum_{c, t} W[m, c, t] * mask[n, g, t, j] * X[n, c](j * s - pad + t * d + offset[n, g, t, :, j]),
    X read by multilinear interpolation (0 outside the image), g the offset group of channel c; float64, one
    rounding to X's type."""
    require_dtype(x, types_at(DEFORM_CONV_TYPES, node.version), "X")
    for value, name in ((w, "W"), (offset, "offset"), (b, "B"), (mask, "mask")):
        require_same_type(value, x, name)
    window, group = conv_window(node, x.shape, w.shape)
    rank, (n, channels) = len(window.kernel), x.shape[:2]
    offset_group = node.attr("offset_group", 1, int)
    if offset_group < 1 or channels % offset_group:
        raise AttributeValueError(f"offset_group {offset_group} must be >= 1 and divide the input channels ({channels})")
    taps = prod(window.kernel)
    expected = (n, offset_group * taps * rank, *window.output)
    if offset.shape != expected:
        raise ShapeError(f"offset has shape {offset.shape}, expected {expected} "
                         f"(N, offset_group * prod(kernel) * {rank}, *output)")
    if mask is not None and mask.shape != (n, offset_group * taps, *window.output):
        raise ShapeError(f"mask has shape {mask.shape}, expected {(n, offset_group * taps, *window.output)}")
    bias = None if b is None else conv_bias(b.astype(np.float64), w.shape[0], rank)
    # base coordinates per axis, (taps, *output): j * s - pad_begin + t * d
    grids = np.meshgrid(*[np.arange(k) for k in window.kernel], indexing="ij")
    base = []
    for axis, coords in enumerate(tap_coordinates(window)):  # (output, kernel) along this axis
        shape = [1] * (1 + rank)
        shape[1 + axis] = window.output[axis]
        base.append(coords[:, grids[axis].ravel()].T.reshape([taps] + shape[1:]))
    shifts = offset.astype(np.float64).reshape(n, offset_group, taps, rank, *window.output)
    weights = None if mask is None else mask.astype(np.float64).reshape(n, offset_group, taps, *window.output)
    per_offset_group = channels // offset_group
    x64 = x.astype(np.float64)
    columns = np.empty((n, channels, taps, *window.output))
    for image in range(n):
        for g in range(offset_group):
            positions = [base[axis] + shifts[image, g, :, axis] for axis in range(rank)]
            block = _sample(x64[image, g * per_offset_group : (g + 1) * per_offset_group], positions)
            columns[image, g * per_offset_group : (g + 1) * per_offset_group] = (
                block if weights is None else block * weights[image, g]
            )
    cols = columns.reshape(n, group, channels // group * taps, prod(window.output))
    y = conv_output(np.matmul(grouped_weights(w.astype(np.float64), group), cols), window)
    if bias is not None:
        y += bias
    return (np.asarray(arith.narrow(y, x.dtype)),)
