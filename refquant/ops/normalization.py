"""Softmax, LogSoftmax, normalizations (LRN included), average and Lp pools.

    Softmax:            Y = exp(x - max) / sum exp(x - max)   over ``axis`` (before 13: the
                        flattened axes axis..n-1)
    LogSoftmax:         Y = (x - max) - log(sum exp(x - max)) over the same axes
    LayerNormalization: Y = (X - mean) / sqrt(var + epsilon) * Scale + B over axes axis..n-1;
                        optional Mean and InvStdDev = 1 / sqrt(var + epsilon)
    BatchNormalization: Y = (X - mean[c]) / sqrt(var[c] + epsilon) * scale[c] + B[c]  (inference)
    InstanceNormalization: Y = (X - mean) / sqrt(var + epsilon) * scale[c] + B[c], mean and var
                        over the spatial axes of each (n, c)
    GlobalAveragePool:  Y[n, c] = mean of X[n, c, ...]
    AveragePool:        Y[n, c, j] = sum of the window / its count (padding counted with
                        count_include_pad, never the ceil_mode overhang)
    LpPool, GlobalLpPool: Y = (sum over the window, or all spatial axes, of |x|^p)^(1/p)
    LRN:                Y = X / (bias + alpha / size * sum of X^2 over nearby channels)^beta

Each output is computed in float64 from the exact inputs and rounded once to
its type; var is the population variance mean((X - mean)^2). Float64 sums of
n terms err by at most ~n * 2**-53 relative, far below float32's 2**-24.
spec/ops/nn.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith, mlas
from ..checks import normalize_axis, require_dtype, require_same_type
from ..dtypes import IEEE_FLOATS, types_at
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..kernel_options import FloatPipelineOptions
from ..node import Node
from ..registry import register
from ..window import pad, resolve_window, tap_coordinates, windows
from .float_functions import log_softmax64, softmax64

SOFTMAX_TYPES = {1: IEEE_FLOATS, 13: (T.BFLOAT16,)}
LAYER_NORM_TYPES = {17: IEEE_FLOATS + (T.BFLOAT16,)}
BATCH_NORM_TYPES = {9: IEEE_FLOATS, 14: (T.BFLOAT16,)}
POOL_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}
INSTANCE_NORM_TYPES = {6: IEEE_FLOATS, 22: (T.BFLOAT16,)}


def _epsilon(node: Node, default: float) -> float:
    """The ``epsilon`` attribute: the float32 value stored in the model."""
    return float(np.float32(node.attr("epsilon", default, float)))


def _softmax_axes(node: Node, rank: int) -> tuple[int, ...]:
    """Softmax-13: the one ``axis`` (default -1); before: axes ``axis``..n-1 (default 1), as one 2-D row."""
    if node.version >= 13:
        return (normalize_axis(node.attr("axis", -1, int), rank),)
    axis = normalize_axis(node.attr("axis", 1, int), rank)
    return tuple(range(axis, rank))


def _mlas_softmax(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """refquant.mlas.softmax over ``axes``: they are moved last and flattened into rows."""
    moved = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim))
    rows = moved.reshape(-1, int(np.prod(moved.shape[x.ndim - len(axes) :], dtype=np.int64)))
    y = mlas.softmax(rows).reshape(moved.shape)
    return np.moveaxis(y, range(x.ndim - len(axes), x.ndim), axes)


def _softmax_family(function, mlas_function=None):
    def kernel(node: Node, x):
        require_dtype(x, types_at(SOFTMAX_TYPES, node.version), "input")
        if x.ndim == 0:
            raise ShapeError("input must have rank >= 1")
        axes = _softmax_axes(node, x.ndim)
        if mlas_function is not None and node.options.replays_mlas_float32(x.dtype) and x.size:
            return (np.ascontiguousarray(mlas_function(x, axes)),)
        with np.errstate(invalid="ignore"):
            y = function(x.astype(np.float64), axes)
        return (np.asarray(arith.narrow(y, x.dtype)),)

    return kernel


register("Softmax", since=(1, 11, 13), options=FloatPipelineOptions)(_softmax_family(softmax64, _mlas_softmax))
register("LogSoftmax", since=(1, 11, 13))(_softmax_family(log_softmax64))


def _stash_dtype(node: Node, x: np.ndarray) -> np.dtype:
    """Type of Mean and InvStdDev: float32 for stash_type 1 (the default), else X's type."""
    stash = node.attr("stash_type", 1, int)
    return np.dtype(np.float32) if stash == T.FLOAT else x.dtype


@register("LayerNormalization", since=(17,), options=FloatPipelineOptions)
def layer_normalization(node: Node, x, scale, b=None):
    require_dtype(x, types_at(LAYER_NORM_TYPES, node.version), "X")
    require_same_type(scale, x, "Scale")
    require_same_type(b, x, "B")
    if x.ndim == 0:
        raise ShapeError("X must have rank >= 1")
    axis = normalize_axis(node.attr("axis", -1, int), x.ndim)
    axes = tuple(range(axis, x.ndim))
    for name, value in (("Scale", scale), ("B", b)):
        if value is not None and np.broadcast_shapes(value.shape, x.shape[axis:]) != x.shape[axis:]:
            raise ShapeError(f"{name} has shape {value.shape}, which does not broadcast to {x.shape[axis:]}")
    stash = _stash_dtype(node, x)
    if node.options.replays_mlas_float32(x.dtype) and stash == np.float32 and x.size:
        return _mlas_layer_norm(node, x, scale, b, axis)
    x64 = x.astype(np.float64)
    mean = np.mean(x64, axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(np.mean((x64 - mean) ** 2, axis=axes, keepdims=True) + _epsilon(node, 1e-5))
    y = (x64 - mean) * inv_std * scale.astype(np.float64)
    if b is not None:
        y = y + b.astype(np.float64)
    return np.asarray(arith.narrow(y, x.dtype)), arith.narrow(mean, stash), arith.narrow(inv_std, stash)


def _mlas_layer_norm(node: Node, x: np.ndarray, scale: np.ndarray, b, axis: int):
    """refquant.mlas.layer_norm on the rows of X flattened from ``axis``."""
    row = x.shape[axis:]
    n = int(np.prod(row, dtype=np.int64))
    flat = [None if v is None else np.broadcast_to(v, row).reshape(n) for v in (scale, b)]
    y, mean, inv_std = mlas.layer_norm(x.reshape(-1, n), flat[0], flat[1], _epsilon(node, 1e-5))
    stats = x.shape[:axis] + (1,) * len(row)
    return y.reshape(x.shape), mean.reshape(stats), inv_std.reshape(stats)


@register("BatchNormalization", since=(9, 14, 15))
def batch_normalization(node: Node, x, scale, b, mean, var):
    """Inference mode only (training_mode=1 updates running statistics: not supported)."""
    require_dtype(x, types_at(BATCH_NORM_TYPES, node.version), "X")
    if node.version >= 14 and node.attr("training_mode", 0, int):
        raise AttributeValueError("training_mode=1 is not supported; refquant runs inference graphs")
    if x.ndim < 2:
        raise ShapeError(f"X must have shape (N, C, ...), got {x.shape}")
    channels = x.shape[1]
    named = {"scale": scale, "B": b, "input_mean": mean, "input_var": var}
    for name, value in named.items():
        if value.shape != (channels,):
            raise ShapeError(f"{name} has shape {value.shape}, expected ({channels},)")
        require_dtype(value, types_at(BATCH_NORM_TYPES, 14), name)
    # one type for all (9), scale and B as X (14), or two pairs (15: T1, T2)
    pairs = [("scale", "B", "input_mean", "input_var")] if node.version < 14 else [("scale", "B"), ("input_mean", "input_var")]
    for pair in pairs:
        if len({named[n].dtype for n in pair}) > 1:
            raise DTypeError(f"{', '.join(pair)} must share one type")
    if node.version < 15:
        require_same_type(scale, x, "scale")

    def column(value):
        return value.astype(np.float64).reshape((channels,) + (1,) * (x.ndim - 2))

    inv_std = 1.0 / np.sqrt(column(var) + _epsilon(node, 1e-5))
    y = (x.astype(np.float64) - column(mean)) * inv_std * column(scale) + column(b)
    return (np.asarray(arith.narrow(y, x.dtype)),)


@register("InstanceNormalization", since=(6, 22))
def instance_normalization(node: Node, x, scale, b):
    """Per (n, c): Y = (X - mean) / sqrt(var + epsilon) * scale[c] + B[c] over the spatial axes."""
    require_dtype(x, types_at(INSTANCE_NORM_TYPES, node.version), "input")
    require_same_type(scale, x, "scale")
    require_same_type(b, x, "B")
    if x.ndim < 3:
        raise ShapeError(f"input must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    channels = x.shape[1]
    for name, value in (("scale", scale), ("B", b)):
        if value.shape != (channels,):
            raise ShapeError(f"{name} has shape {value.shape}, expected ({channels},)")
    spatial = tuple(range(2, x.ndim))
    x64 = x.astype(np.float64)
    mean = np.mean(x64, axis=spatial, keepdims=True)
    inv_std = 1.0 / np.sqrt(np.mean((x64 - mean) ** 2, axis=spatial, keepdims=True) + _epsilon(node, 1e-5))

    def column(value):
        return value.astype(np.float64).reshape((channels,) + (1,) * len(spatial))

    y = (x64 - mean) * inv_std * column(scale) + column(b)
    return (np.asarray(arith.narrow(y, x.dtype)),)


@register("GlobalAveragePool", since=(1, 22), options=FloatPipelineOptions)
def global_average_pool(node: Node, x):
    require_dtype(x, types_at(POOL_TYPES, node.version), "X")
    if x.ndim < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    keep = x.shape[:2] + (1,) * (x.ndim - 2)
    if node.options.replays_mlas_float32(x.dtype) and x.size:
        return (mlas.mean(x.reshape(x.shape[:2] + (-1,))).reshape(keep),)
    y = np.mean(x.astype(np.float64), axis=tuple(range(2, x.ndim)), keepdims=True)
    return (np.asarray(arith.narrow(y, x.dtype)),)


def _counts(node: Node, window, spatial: tuple[int, ...]) -> np.ndarray:
    """Number of taps each output divides by: inside X, or inside X plus its declared pads."""
    include_pad = bool(node.attr("count_include_pad", 0, int))
    declared = node.attr_ints("pads", None) or [0] * (2 * len(spatial))
    rank = len(spatial)
    count = np.ones((), np.int64)
    for axis, coords in enumerate(tap_coordinates(window)):
        low, high = 0, spatial[axis]
        if include_pad:
            explicit = node.attr("auto_pad", "NOTSET", str) == "NOTSET"
            low = -window.pads_begin[axis]
            high += declared[rank + axis] if explicit else window.pads_end[axis]
        per_output = ((coords >= low) & (coords < high)).sum(axis=1)
        count = np.multiply.outer(count, per_output)
    return count


@register("AveragePool", since=(10, 11, 19, 22))
def average_pool(node: Node, x):
    require_dtype(x, types_at(POOL_TYPES, node.version), "X")
    if x.ndim < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    if node.version < 19 and node.has("dilations"):
        raise AttributeValueError("dilations exist from AveragePool-19")
    ceil_mode = node.attr("ceil_mode", 0, int)
    if ceil_mode not in (0, 1):
        raise AttributeValueError(f"ceil_mode must be 0 or 1, got {ceil_mode}")
    spatial = x.shape[2:]
    window = resolve_window(node, spatial, ceil_mode=bool(ceil_mode))
    view = windows(pad(x.astype(np.float64), window, 0.0), window)
    total = np.sum(view, axis=tuple(range(view.ndim - len(spatial), view.ndim)))
    counts = _counts(node, window, spatial)
    if np.any(counts == 0):
        raise AttributeValueError("some output window covers padding only")
    return (np.asarray(arith.narrow(total / counts, x.dtype)),)


# -- GroupNormalization, RMSNormalization, LpNormalization, MeanVarianceNormalization, Hardmax ------------------

FLOATS_AND_BFLOAT16 = {1: IEEE_FLOATS + (T.BFLOAT16,)}
LP_NORM_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}
MVN_TYPES = {9: IEEE_FLOATS, 13: (T.BFLOAT16,)}
HARDMAX_TYPES = {1: IEEE_FLOATS, 13: (T.BFLOAT16,)}


@register("GroupNormalization", since=(18, 21))
def group_normalization(node: Node, x, scale, bias):
    """Y = (X - mean) / sqrt(var + epsilon) * scale + bias, mean and var over each group of C / num_groups
    channels and the spatial axes; scale and bias per group (18) or per channel (21)."""
    require_dtype(x, types_at(FLOATS_AND_BFLOAT16, node.version), "X")
    require_same_type(scale, x, "scale")
    require_same_type(bias, x, "bias")
    if x.ndim < 2:
        raise ShapeError(f"X must have shape (N, C, ...), got {x.shape}")
    groups = node.attr("num_groups", None, int)
    if groups is None:
        raise AttributeValueError("num_groups is required")
    channels = x.shape[1]
    if groups <= 0 or channels % groups:
        raise AttributeValueError(f"num_groups {groups} must be positive and divide C = {channels}")
    width = groups if node.version < 21 else channels
    for name, value in (("scale", scale), ("bias", bias)):
        if value.shape != (width,):
            raise ShapeError(f"{name} has shape {value.shape}, expected ({width},)")
    x64 = x.astype(np.float64)
    grouped = x64.reshape((x.shape[0], groups, -1))
    mean = np.mean(grouped, axis=2, keepdims=True)
    var = np.mean((grouped - mean) ** 2, axis=2, keepdims=True)
    normalized = ((grouped - mean) / np.sqrt(var + _epsilon(node, 1e-5))).reshape(x.shape)
    shape = (channels,) + (1,) * (x.ndim - 2)
    if node.version < 21:
        per_channel = [np.repeat(v.astype(np.float64), channels // groups) for v in (scale, bias)]
    else:
        per_channel = [v.astype(np.float64) for v in (scale, bias)]
    y = normalized * per_channel[0].reshape(shape) + per_channel[1].reshape(shape)
    return (np.asarray(arith.narrow(y, x.dtype)),)


@register("RMSNormalization", since=(23,))
def rms_normalization(node: Node, x, scale):
    """Y = X / sqrt(mean(X^2) + epsilon) * scale, the mean over axes axis..n-1; Y has X's type."""
    types = types_at(FLOATS_AND_BFLOAT16, node.version)
    require_dtype(x, types, "X")
    require_dtype(scale, types, "scale")
    if x.ndim == 0:
        raise ShapeError("X must have rank >= 1")
    stash = node.attr("stash_type", 1, int)
    if stash not in (T.FLOAT, T.DOUBLE, T.FLOAT16, T.BFLOAT16):
        raise AttributeValueError(f"stash_type {stash} is not a float type")
    axis = normalize_axis(node.attr("axis", -1, int), x.ndim)
    if np.broadcast_shapes(scale.shape, x.shape[axis:]) != x.shape[axis:]:
        raise ShapeError(f"scale has shape {scale.shape}, which does not broadcast to {x.shape[axis:]}")
    x64 = x.astype(np.float64)
    mean_square = np.mean(x64 * x64, axis=tuple(range(axis, x.ndim)), keepdims=True)
    y = x64 / np.sqrt(mean_square + _epsilon(node, 1e-5)) * scale.astype(np.float64)
    return (np.asarray(arith.narrow(y, x.dtype)),)


@register("LpNormalization", since=(1, 22))
def lp_normalization(node: Node, x):
    """Y = X / (sum |X|^p)^(1/p) along ``axis``, p 1 or 2; a zero norm gives 0 (onnx.reference)."""
    require_dtype(x, types_at(LP_NORM_TYPES, node.version), "input")
    if x.ndim == 0:
        raise ShapeError("input must have rank >= 1")
    p = node.attr("p", 2, int)
    if p not in (1, 2):
        raise AttributeValueError(f"p must be 1 or 2, got {p}")
    axis = normalize_axis(node.attr("axis", -1, int), x.ndim)
    x64 = x.astype(np.float64)
    if p == 1:
        norm = np.sum(np.abs(x64), axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.sum(x64 * x64, axis=axis, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(norm == 0, 0.0, x64 / np.where(norm == 0, 1.0, norm))
    return (np.asarray(arith.narrow(y, x.dtype)),)


@register("MeanVarianceNormalization", since=(9, 13))
def mean_variance_normalization(node: Node, x):
    """Y = (X - mean) / (sqrt(var) + 1e-9) over ``axes`` (default [0, 2, 3]), as ONNX's function body."""
    require_dtype(x, types_at(MVN_TYPES, node.version), "X")
    axes = node.attr_ints("axes", None)
    axes = [0, 2, 3] if axes is None else list(axes)
    axes = tuple(sorted({normalize_axis(a, x.ndim) for a in axes}))
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.mean(x64, axis=axes, keepdims=True)
        std = np.sqrt(np.mean((x64 - mean) ** 2, axis=axes, keepdims=True))
        y = (x64 - mean) / (std + 1e-9)
    return (np.asarray(arith.narrow(y, x.dtype)),)


@register("Hardmax", since=(1, 11, 13))
def hardmax(node: Node, x):
    """1 at the first maximum of each row (a NaN counts as the maximum: np.argmax), 0 elsewhere; the row is the
    one ``axis`` (13) or the flattened axes axis..n-1 (before 13), as Softmax."""
    require_dtype(x, types_at(HARDMAX_TYPES, node.version), "input")
    if x.ndim == 0:
        raise ShapeError("input must have rank >= 1")
    axes = _softmax_axes(node, x.ndim)
    y = np.zeros(x.shape, x.dtype)
    if x.size == 0:
        return (y,)
    moved = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim))
    rows = moved.reshape(-1, int(np.prod(moved.shape[x.ndim - len(axes) :], dtype=np.int64)))
    hot = np.zeros(rows.shape, x.dtype)
    hot[np.arange(rows.shape[0]), np.argmax(rows, axis=1)] = 1
    y = np.moveaxis(hot.reshape(moved.shape), range(x.ndim - len(axes), x.ndim), axes)
    return (np.ascontiguousarray(y),)


LP_POOL_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}


@register("LpPool", since=(1, 2, 11, 18, 22))
def lp_pool(node: Node, x):
    """Y = (sum over the window of |x|^p)^(1/p); padding adds 0 (also under ceil_mode)."""
    require_dtype(x, types_at(LP_POOL_TYPES, node.version), "X")
    if x.ndim < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    if node.version < 18 and (node.has("dilations") or node.has("ceil_mode")):
        raise AttributeValueError("dilations and ceil_mode exist from LpPool-18")
    ceil_mode = node.attr("ceil_mode", 0, int) if node.version >= 18 else 0
    if ceil_mode not in (0, 1):
        raise AttributeValueError(f"ceil_mode must be 0 or 1, got {ceil_mode}")
    p = float(node.attr("p", 2.0 if node.version < 2 else 2))
    if not p > 0:
        raise AttributeValueError(f"p must be positive, got {p}")
    window = resolve_window(node, x.shape[2:], ceil_mode=bool(ceil_mode))
    view = windows(pad(np.abs(x.astype(np.float64)), window, 0.0), window)
    y = _lp_norm(view, p, tuple(range(view.ndim - (x.ndim - 2), view.ndim)), keepdims=False)
    return (np.asarray(arith.narrow(y, x.dtype)),)


def _lp_norm(magnitudes: np.ndarray, p: float, axes: tuple[int, ...], *, keepdims: bool) -> np.ndarray:
    """(sum of |x|^p over ``axes``)^(1/p) of float64 ``magnitudes`` (|x|); p = 2 through sqrt."""
    with np.errstate(over="ignore"):
        total = np.sum(magnitudes * magnitudes if p == 2 else magnitudes**p, axis=axes, keepdims=keepdims)
        return np.sqrt(total) if p == 2 else total ** (1.0 / p)


@register("GlobalLpPool", since=(2, 22))
def global_lp_pool(node: Node, x):
    """Y[n, c] = (sum of |X[n, c, ...]|^p)^(1/p) over all spatial axes (LpPool with the whole image as window)."""
    require_dtype(x, types_at(LP_POOL_TYPES, node.version), "X")
    if x.ndim < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    p = node.attr("p", 2, int)
    if p <= 0:
        raise AttributeValueError(f"p must be positive, got {p}")
    y = _lp_norm(np.abs(x.astype(np.float64)), p, tuple(range(2, x.ndim)), keepdims=True)
    return (np.asarray(arith.narrow(y, x.dtype)),)


LRN_TYPES = {1: IEEE_FLOATS, 13: (T.BFLOAT16,)}


@register("LRN", since=(1, 13))
def lrn(node: Node, x):
    """Y = X / (bias + alpha / size * square_sum)^beta, square_sum over channels c - floor((size - 1) / 2) ..
    c + ceil((size - 1) / 2) inside [0, C); in float64, rounded once to T."""
    require_dtype(x, types_at(LRN_TYPES, node.version), "X")
    if x.ndim < 3:
        raise ShapeError(f"X must have shape (N, C, D1, ...), got rank {x.ndim} {x.shape}")
    size = node.attr("size", kind=int)
    if size <= 0:
        raise AttributeValueError(f"size must be positive, got {size}")
    alpha = node.attr("alpha", 0.0001, float)
    beta = node.attr("beta", 0.75, float)
    bias = node.attr("bias", 1.0, float)
    x64 = x.astype(np.float64)
    squares = x64 * x64
    below, above = (size - 1) // 2, -(-(size - 1) // 2)
    # channels outside [0, C) add 0: pad the channel axis, then add the size shifted slices in channel order
    channels = x.shape[1]
    widths = [(0, 0)] * x.ndim
    widths[1] = (below, above)
    padded = np.pad(squares, widths)
    square_sum = np.zeros_like(squares)
    for offset in range(size):
        square_sum += padded[:, offset : offset + channels]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = x64 / (bias + alpha / size * square_sum) ** beta
    return (np.asarray(arith.narrow(y, x.dtype)),)
