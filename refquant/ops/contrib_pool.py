"""com.microsoft QLinearAveragePool, QLinearGlobalAveragePool, QLinearReduceMean (8-bit, per tensor).

    y = quantize_y(x_scale * sum_window(x - x_zero_point) / count)

Window sums of the centered integers are exact (int64). AveragePool counts the kernel
taps inside the input, or every tap (padding included) under count_include_pad;
GlobalAveragePool and ReduceMean average whole axes. channels_last=1 reads
(N, D1, ..., C). QLinearElementwiseOptions.mlas_float32 (profile option qlinear_pipeline="mlas-float32")
replays onnxruntime's kernels. spec/ops/contrib.md states both.
"""

from __future__ import annotations

import math

import numpy as np

from .. import arith
from ..checks import flag, normalize_axis, require_dtype, require_input
from ..dtypes import EIGHT_BIT_INTS
from ..errors import AttributeValueError, ShapeError
from ..kernel_options import QLinearElementwiseOptions
from ..node import Node
from ..qparams import QParams, per_tensor_params
from ..registry import MS_DOMAIN, register
from ..window import Window, pad, resolve_window, tap_coordinates, windows
from .mlas_rounding import round_float32
from .pooling import taps_inside, window_max


def _operand(x, x_scale, x_zero_point, y_scale, y_zero_point, names=("X", "x", "y"), *, zero_points_required=False):
    """(input params, output params) of an 8-bit input and its output of the same type; ``names``:
    the input tensor, then the prefixes of the input's and the output's parameters."""
    tensor, source, target = names
    require_input(x, tensor)
    require_dtype(x, EIGHT_BIT_INTS, tensor)
    return (
        per_tensor_params(x_scale, x_zero_point, x, source, zero_point_required=zero_points_required),
        per_tensor_params(y_scale, y_zero_point, x, target, zero_point_required=zero_points_required),
    )


def _channels_first(node: Node, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """x as (N, C, D1, ...): channels_last=1 moves the last axis to position 1."""
    channels_last = flag(node, "channels_last")
    if x.ndim < 3:
        layout = "(N, D1, ..., C)" if channels_last else "(N, C, D1, ...)"
        raise ShapeError(f"X must have shape {layout} with at least one spatial axis, got {x.shape}")
    return (np.moveaxis(x, -1, 1) if channels_last else x), channels_last


def _restore_layout(y: np.ndarray, channels_last: bool) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(y, 1, -1)) if channels_last else y


def _centered(x: np.ndarray, params: QParams) -> np.ndarray:
    """x - x_zero_point in int64, so that window and axis sums cannot wrap."""
    return x.astype(np.int64) - params.zero_point.astype(np.int64)


def _exact_mean(sums: np.ndarray, counts, px: QParams, py: QParams) -> np.ndarray:
    return py.quantize(arith.dequantize_values(sums, px.scale, None, np.float64) / counts)


def _mean(sums: np.ndarray, counts, px: QParams, py: QParams, *, mlas_float32: bool) -> np.ndarray:
    """quantize_y(x_scale * sums / counts), ``sums`` exact sums of x - x_zero_point.

    exact: x_scale * sums in float64 (exact), one division by the count, quantized in float64.
    mlas_float32 (MlasQLinearGlobalAveragePool): r = float32(x_scale / float32(y_scale * float32(count))),
    y = saturate(round_half_even(float32(float32(sums) * r)) + y_zero_point).
    """
    if not mlas_float32:
        return _exact_mean(sums, counts, px, py)
    ratio = px.scale.astype(np.float32) / (py.scale * np.asarray(counts, np.float32))
    return round_float32(arith.narrow(sums, np.float32) * ratio, py.qtype, py.zero_point)


# ----------------------------------------------------------------------------
# QLinearAveragePool
# ----------------------------------------------------------------------------


def _tap_counts(window: Window, spatial: tuple[int, ...], include_pad: bool):
    """Divisor per output point: every kernel tap, or (*output) counts of the taps inside the input."""
    if include_pad:
        return math.prod(window.kernel)
    inside = taps_inside(tap_coordinates(window), window, spatial)
    rank = len(spatial)
    return inside.sum(axis=tuple(range(rank, 2 * rank)))


def _window_sums(x: np.ndarray, window: Window) -> np.ndarray:
    """Sum over each window of x padded with 0, one tap at a time in row-major kernel order."""
    view = windows(pad(x, window, 0), window)
    taps = np.ndindex(window.kernel)
    total = view[(Ellipsis, *next(taps))].copy()
    for tap in taps:
        total += view[(Ellipsis, *tap)]
    return total


def _mlas_average_pool(x: np.ndarray, window: Window, counts, px: QParams, py: QParams) -> np.ndarray:
    """onnxruntime QLinearAveragePool: float32 dequantization, float32 window sum in row-major tap order
    (padding skipped), float32 division by the count, then saturate(round_half_even(float32(v / y_scale)
    + y_zero_point)): the zero point is added before rounding, and a value beyond int32 (or NaN) converts
    to INT32_MIN, so qmin. A kernel covering the whole unpadded input runs the QLinearGlobalAveragePool
    kernel instead."""
    if window.kernel == x.shape[2:] and not window.padded:
        spatial = tuple(range(2, x.ndim))
        sums = _centered(x, px).sum(axis=spatial, keepdims=True)
        return _mean(sums, math.prod(window.kernel), px, py, mlas_float32=True)
    mean = _window_sums(px.dequantize(x, np.float32), window) / np.asarray(counts, np.float32)
    return round_float32(mean / py.scale + py.zero_point.astype(np.float32), py.qtype, overflow="int32-indefinite")


@register("QLinearAveragePool", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_average_pool(node: Node, x, x_scale=None, x_zero_point=None, y_scale=None, y_zero_point=None):
    """y = quantize_y(average of dequantize_x(x) over each window); attributes as AveragePool's, plus channels_last."""
    px, py = _operand(x, x_scale, x_zero_point, y_scale, y_zero_point)
    x, channels_last = _channels_first(node, x)
    include_pad = flag(node, "count_include_pad")
    window = resolve_window(node, x.shape[2:], ceil_mode=flag(node, "ceil_mode"))
    counts = _tap_counts(window, x.shape[2:], include_pad)
    if node.options.mlas_float32:
        y = _mlas_average_pool(x, window, counts, px, py)
    else:
        y = _mean(_window_sums(_centered(x, px), window), counts, px, py, mlas_float32=False)
    return (_restore_layout(y, channels_last),)


# ----------------------------------------------------------------------------
# QLinearGlobalAveragePool, QLinearReduceMean
# ----------------------------------------------------------------------------


@register("QLinearGlobalAveragePool", since=(1,), domain=MS_DOMAIN, options=QLinearElementwiseOptions)
def qlinear_global_average_pool(node: Node, x, x_scale=None, x_zero_point=None, y_scale=None, y_zero_point=None):
    """y[n, c] = quantize_y(mean over every spatial position of dequantize_x(x[n, c])); spatial axes kept as 1."""
    px, py = _operand(x, x_scale, x_zero_point, y_scale, y_zero_point, zero_points_required=True)
    x, channels_last = _channels_first(node, x)
    spatial = tuple(range(2, x.ndim))
    sums = _centered(x, px).sum(axis=spatial, keepdims=True)
    y = _mean(sums, math.prod(x.shape[2:]), px, py, mlas_float32=node.options.mlas_float32)
    return (_restore_layout(y, channels_last),)


def _reduced_axes(node: Node, rank: int) -> tuple[int, ...]:
    axes = node.attr_ints("axes", None)
    if axes is None:
        return tuple(range(rank))
    normalized = tuple(normalize_axis(a, rank, "axes entry") for a in axes)
    if len(set(normalized)) != len(normalized):
        raise AttributeValueError(f"axes {axes} name an axis twice")
    return normalized


@register("QLinearReduceMean", since=(1,), domain=MS_DOMAIN)
def qlinear_reduce_mean(node: Node, data, data_scale=None, data_zero_point=None, reduced_scale=None,
                        reduced_zero_point=None):
    """reduced = quantize(mean of dequantize(data) over ``axes`` (all when absent)), ``keepdims`` (default 1).

    Exact in every profile: onnxruntime has no CPU kernel for it.
    """
    px, py = _operand(data, data_scale, data_zero_point, reduced_scale, reduced_zero_point, ("data", "data", "reduced"))
    axes = _reduced_axes(node, data.ndim)
    keepdims = flag(node, "keepdims") if node.has("keepdims") else True
    count = math.prod(data.shape[a] for a in axes)
    if count == 0:
        raise ShapeError(f"the mean over axes {list(axes)} of shape {data.shape} has no elements")
    return (_exact_mean(_centered(data, px).sum(axis=axes, keepdims=keepdims), count, px, py),)


@register("NhwcMaxPool", since=(1,), domain=MS_DOMAIN)
def nhwc_max_pool(node: Node, x):
    """MaxPool of an 8-bit (N, D1, ..., C) tensor, the layout onnxruntime's NHWC rewrite gives a quantized MaxPool:
    Y = moveaxis(MaxPool(moveaxis(X, -1, 1)), 1, -1), exact (a maximum of stored values needs no scale)."""
    require_dtype(x, EIGHT_BIT_INTS, "x")
    if x.ndim < 3:
        raise ShapeError(f"x must have shape (N, D1, ..., C) with at least one spatial axis, got {x.shape}")
    ceil_mode = node.attr("ceil_mode", 0, int)
    if ceil_mode not in (0, 1):
        raise AttributeValueError(f"ceil_mode must be 0 or 1, got {ceil_mode}")
    _, _, y = window_max(node, np.moveaxis(x, -1, 1), ceil_mode=bool(ceil_mode))
    return (_restore_layout(y, True),)
