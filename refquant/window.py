"""Geometry of N-d sliding windows: Conv, ConvInteger, QLinearConv, MaxPool.

An input of shape (N, C, D1, ..., Dn) is padded, then a window of
``kernel_shape`` points spaced ``dilations`` apart slides over D1..Dn with
``strides``. Along spatial axis i, with extent e = (k - 1) * d + 1:

    NOTSET:      out = floor((D + pad_begin + pad_end - e) / s) + 1
                 (ceil instead of floor under MaxPool's ceil_mode, minus the
                 last window when it would start in the end padding)
    VALID:       out = floor((D - e) / s) + 1, no padding
    SAME_UPPER:  out = ceil(D / s), total = max(0, (out - 1) * s + e - D),
                 pad_begin = floor(total / 2), pad_end = total - pad_begin
    SAME_LOWER:  as SAME_UPPER with pad_begin = ceil(total / 2)

Output point j of axis i reads padded positions j * s + t * d, t < k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from .errors import AttributeValueError, ShapeError
from .node import Node

__all__ = [
    "Window",
    "resolve_window",
    "conv_window",
    "pad",
    "blank_padded",
    "windows",
    "tap_views",
    "conv_columns",
    "grouped_weights",
    "conv_output",
    "channel_column",
    "conv_bias",
    "tap_coordinates",
    "kernel_shape",
    "per_axis",
    "same_total",
]

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


@dataclass(frozen=True)
class Window:
    """Resolved window over the spatial axes: every attribute explicit, one entry per axis."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    output: tuple[int, ...]

    @property
    def extent(self) -> tuple[int, ...]:
        """Span of one dilated window: (k - 1) * d + 1."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    @property
    def padded(self) -> bool:
        return any(self.pads_begin) or any(self.pads_end)


def per_axis(node: Node, name: str, rank: int, default: int, minimum: int) -> tuple[int, ...]:
    """Attribute ``name``: one int per spatial axis, each >= ``minimum`` (``default`` on every axis when absent)."""
    values = node.attr_ints(name, None)
    if values is None:
        return (default,) * rank
    if len(values) != rank:
        raise AttributeValueError(f"{name} has {len(values)} values, the input has {rank} spatial axes")
    if any(v < minimum for v in values):
        raise AttributeValueError(f"{name} must be >= {minimum} on every axis, got {values}")
    return tuple(values)


def kernel_shape(node: Node, rank: int, weight_kernel: tuple[int, ...] | None) -> tuple[int, ...]:
    """The window's spatial shape: ``kernel_shape``, which must equal the weight's spatial shape when there is a weight."""
    if weight_kernel is None:
        if not node.has("kernel_shape"):
            raise AttributeValueError("required attribute 'kernel_shape' is missing")
        return per_axis(node, "kernel_shape", rank, 1, 1)
    kernel = per_axis(node, "kernel_shape", rank, 1, 1) if node.has("kernel_shape") else weight_kernel
    if kernel != weight_kernel:
        raise ShapeError(f"kernel_shape {list(kernel)} disagrees with the weight's spatial shape {list(weight_kernel)}")
    if min(kernel, default=1) < 1:
        raise ShapeError(f"the weight's spatial shape {list(kernel)} has an empty axis")
    return kernel


def _explicit_output(size: int, begin: int, end: int, extent: int, stride: int, ceil_mode: bool) -> int:
    span = size + begin + end - extent
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + begin:  # the last window would start in the end padding
        out -= 1
    return out


def resolve_window(
    node: Node,
    spatial_shape: tuple[int, ...],
    weight_kernel: tuple[int, ...] | None = None,
    *,
    ceil_mode: bool = False,
) -> Window:
    """Resolve kernel_shape, strides, dilations, pads and auto_pad against ``spatial_shape``.

    ``weight_kernel`` is the weight's spatial shape (convolutions), which
    kernel_shape, when given, must equal. Under ``ceil_mode`` the end padding
    grows to cover the last window; the extra positions count as padding.
    """
    rank = len(spatial_shape)
    if rank == 0:
        raise ShapeError("the input needs at least one spatial axis: (N, C, D1, ...)")
    kernel = kernel_shape(node, rank, weight_kernel)
    strides = per_axis(node, "strides", rank, 1, 1)
    dilations = per_axis(node, "dilations", rank, 1, 1)
    auto_pad = node.attr("auto_pad", "NOTSET", str)
    if auto_pad not in AUTO_PADS:
        raise AttributeValueError(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got {auto_pad!r}")
    pads = node.attr_ints("pads", None)
    if pads is not None:
        if len(pads) != 2 * rank:
            raise AttributeValueError(
                f"pads has {len(pads)} values, expected {2 * rank} (begin and end per spatial axis)"
            )
        if min(pads) < 0:
            raise AttributeValueError(f"pads must be >= 0, got {pads}")
        if auto_pad != "NOTSET" and any(pads):
            raise AttributeValueError(f"pads {pads} cannot be used with auto_pad {auto_pad}")
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]

    begin, end, output = [], [], []
    for i, (size, extent, stride) in enumerate(zip(spatial_shape, extents, strides)):
        if auto_pad == "NOTSET":
            b, e = (pads[i], pads[i + rank]) if pads is not None else (0, 0)
            out = _explicit_output(size, b, e, extent, stride, ceil_mode)
        elif auto_pad == "VALID":
            b, e = 0, 0
            out = _explicit_output(size, 0, 0, extent, stride, False)
        else:
            out = -(-size // stride)
            total = max(0, same_total(size, extent, stride))
            b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            e = total - b
        if out < 1:
            raise ShapeError(
                f"window extent {extent} (kernel {kernel[i]}, dilation {dilations[i]}) exceeds the "
                f"padded input ({size} + {b} + {e}) along spatial axis {i}"
            )
        e = max(e, (out - 1) * stride + extent - size - b)  # ceil_mode: the last window may pass the end padding
        begin.append(b)
        end.append(e)
        output.append(out)
    return Window(kernel, strides, dilations, tuple(begin), tuple(end), tuple(output))


def same_total(size: int, extent: int, stride: int) -> int:
    """ONNX's SAME padding along one axis, before refquant clamps it at 0: (ceil(D / s) - 1) * s + e - D."""
    return (-(-size // stride) - 1) * stride + extent - size


def conv_window(node: Node, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> tuple[Window, int]:
    """(window, group) of a convolution of x (N, C, D...) by w (M, C/group, k...), validated."""
    if len(x_shape) < 3:
        raise ShapeError(f"x must have shape (N, C, D1, ...), got rank {len(x_shape)} {tuple(x_shape)}")
    if len(w_shape) != len(x_shape):
        raise ShapeError(f"w has rank {len(w_shape)} {tuple(w_shape)}, x has rank {len(x_shape)}: they must match")
    group = node.attr("group", 1, int)
    channels, out_channels, group_channels = x_shape[1], w_shape[0], w_shape[1]
    if group < 1:
        raise AttributeValueError(f"group must be >= 1, got {group}")
    if channels % group or out_channels % group:
        raise AttributeValueError(
            f"group {group} must divide both the input channels ({channels}) "
            f"and the output channels ({out_channels})"
        )
    if group_channels * group != channels:
        raise ShapeError(
            f"w has {group_channels} input channels per group, expected {channels} / {group} = {channels // group}"
        )
    return resolve_window(node, tuple(x_shape[2:]), tuple(w_shape[2:])), group


def blank_padded(shape: tuple[int, ...], window: Window, dtype, value) -> tuple[np.ndarray, np.ndarray]:
    """A new array of ``shape`` with its spatial axes padded, the padding set to ``value``, and the
    view of its interior, where an array of ``shape`` goes (left for the caller to fill)."""
    lead = len(shape) - len(window.kernel)
    padded = shape[:lead] + tuple(s + b + e for s, b, e in zip(shape[lead:], window.pads_begin, window.pads_end))
    out = np.full(padded, value, dtype) if window.padded else np.empty(shape, dtype)
    inner = tuple(slice(b, b + s) for b, s in zip(window.pads_begin, shape[lead:]))
    return out, out[(Ellipsis, *inner)]


def pad(x: np.ndarray, window: Window, value) -> np.ndarray:
    """x with its spatial axes padded by ``value`` (x itself when there is no padding)."""
    if not window.padded:
        return x
    out, interior = blank_padded(x.shape, window, x.dtype, value)
    interior[...] = x
    return out


def windows(padded: np.ndarray, window: Window) -> np.ndarray:
    """View (..., *output, *kernel) of a padded array: element [..., j, t] is padded[..., j*s + t*d]. No copy."""
    rank = len(window.kernel)
    axes = tuple(range(padded.ndim - rank, padded.ndim))
    view = sliding_window_view(padded, window.extent, axis=axes)
    starts = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(window.output, window.strides))
    taps = tuple(slice(None, None, d) for d in window.dilations)
    return view[(Ellipsis, *starts, *taps)]


def tap_views(padded: np.ndarray, window: Window) -> tuple[list[np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """Per kernel tap (in the weight's order), the view of ``padded`` (..., *spatial) that holds what each
    output point reads at that tap; and ``finish``, which takes an array computed element-wise from the
    views to (..., *output).

    Unit strides: output point o reads the flattened padded input at sum_i (o_i + t_i * d_i) * E_i, E_i
    the spatial strides in elements, so every view is one contiguous run of length
    L = sum_i (o_i - 1) * E_i + 1 ("wide grid": the points between output rows come along, and
    ``finish`` drops them), and element-wise loops run long. Other strides: windows()[..., t].
    """
    taps = list(np.ndindex(*window.kernel))
    if any(s != 1 for s in window.strides):
        view = windows(padded, window)
        return [view[(Ellipsis, *t)] for t in taps], lambda grid: grid
    rank = len(window.kernel)
    steps = [prod(padded.shape[padded.ndim - rank + i + 1 :]) for i in range(rank)]
    length = sum((o - 1) * e for o, e in zip(window.output, steps)) + 1
    flat = padded.reshape(padded.shape[:-rank] + (-1,))
    offsets = [sum(t_i * d * e for t_i, d, e in zip(t, window.dilations, steps)) for t in taps]

    def finish(grid: np.ndarray) -> np.ndarray:
        strides = grid.strides[:-1] + tuple(e * grid.itemsize for e in steps)
        return as_strided(grid, grid.shape[:-1] + window.output, strides, writeable=False)

    return [flat[..., offset : offset + length] for offset in offsets], finish


def conv_columns(padded: np.ndarray, window: Window, group: int) -> np.ndarray:
    """im2col: (N, group, C/group * prod(kernel), prod(output)), the one copy a convolution makes.

    Row (c, t) of group g holds channel g * C/group + c at kernel tap t, for every output point.
    """
    rank = len(window.kernel)
    view = windows(padded, window)  # (N, C, *output, *kernel)
    n, channels = view.shape[:2]
    order = (0, 1, *range(2 + rank, 2 + 2 * rank), *range(2, 2 + rank))
    return view.transpose(order).reshape(n, group, channels // group * prod(window.kernel), prod(window.output))


def grouped_weights(w: np.ndarray, group: int) -> np.ndarray:
    """w (M, C/group, *kernel) as (group, M/group, C/group * prod(kernel)), matching conv_columns' rows."""
    return w.reshape(group, w.shape[0] // group, -1)


def conv_output(products: np.ndarray, window: Window) -> np.ndarray:
    """(N, group, M/group, prod(output)) products of grouped_weights @ conv_columns -> (N, M, *output)."""
    n, group, per_group = products.shape[:3]
    return products.reshape(n, group * per_group, *window.output)


def channel_column(values: np.ndarray, rank: int) -> np.ndarray:
    """A per-output-channel vector (M,) as (M, 1, ..., 1): broadcasts against (N, M, *output) of ``rank`` axes."""
    return values.reshape((-1,) + (1,) * rank)


def conv_bias(bias: np.ndarray, channels: int, rank: int) -> np.ndarray:
    """The bias B, checked to hold one value per output channel, as a channel_column."""
    if bias.shape != (channels,):
        raise ShapeError(f"B has shape {bias.shape}, expected ({channels},): one value per output channel")
    return channel_column(bias, rank)


def tap_coordinates(window: Window) -> list[np.ndarray]:
    """Per spatial axis, the (output, kernel) array of unpadded input coordinates j*s - pad_begin + t*d.

    A coordinate outside [0, D) lies in the padding.
    """
    return [
        np.arange(out)[:, None] * s - b + np.arange(k)[None, :] * d
        for out, s, b, k, d in zip(window.output, window.strides, window.pads_begin, window.kernel, window.dilations)
    ]
