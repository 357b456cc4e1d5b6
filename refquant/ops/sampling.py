"""GridSample and AffineGrid (spec/ops/image.md).

    GridSample: Y[n, c, o...] = X[n, c] interpolated at grid[n, o...] (normalized to [-1, 1], last axis in
                reverse dimension order: x = width first), modes nearest / linear / cubic (Keys, alpha -0.75),
                padding_mode zeros / border / reflection
    AffineGrid: grid[n, h, w] = theta[n] @ (x_w, y_h, 1) over the normalized base coordinates of ``size``

Coordinates, weights and sums are float64; each output is rounded once to its type.
"""

from __future__ import annotations

import itertools

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype
from ..dtypes import FLOAT_TYPES, IEEE_FLOATS, NARROW_INTS, WIDE_INTS, proto_of, types_at
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register

GRID_SAMPLE_X_TYPES = {16: IEEE_FLOATS + WIDE_INTS + NARROW_INTS + (T.BOOL,), 22: (T.BFLOAT16,)}
GRID_SAMPLE_GRID_TYPES = {16: IEEE_FLOATS, 22: (T.BFLOAT16,)}
AFFINE_GRID_TYPES = {20: IEEE_FLOATS + (T.BFLOAT16,)}

#: GridSample-16's mode names and their names from 20
_MODES_16 = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}
_MODES_20 = ("linear", "nearest", "cubic")
_PADDING_MODES = ("zeros", "border", "reflection")
CUBIC_ALPHA = -0.75


def denormalize(n: np.ndarray, length: int, align_corners: bool) -> np.ndarray:
    """A normalized coordinate in [-1, 1] as a pixel coordinate: -1 and 1 are the corner pixels' centres
    (align_corners) or the image's outer edges."""
    if align_corners:
        return (n + 1) / 2 * (length - 1)
    return ((n + 1) * length - 1) / 2


def reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """x reflected by the nearer border until within [low, high] (onnx.reference's _gs_reflect); a zero span
    (align_corners, length 1) gives ``low``."""
    span = high - low
    if span <= 0:
        return np.where(np.isfinite(x), low, x)
    out = x.copy()
    for below in (True, False):
        mask = x < low if below else x > high
        if not mask.any():
            continue
        d = (low - x[mask]) if below else (x[mask] - high)
        k = np.trunc(d / span)
        r = d - k * span
        even = np.mod(k, 2) == 0
        if below:
            out[mask] = np.where(even, low + r, high - r)
        else:
            out[mask] = np.where(even, high - r, low + r)
    return out


def cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """Keys' cubic convolution weights (alpha -0.75) of the taps at floor - 1 .. floor + 2, t = x - floor(x)."""
    a = CUBIC_ALPHA

    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _mode(node: Node) -> str:
    if node.version < 20:
        mode = node.attr("mode", "bilinear", str)
        if mode not in _MODES_16:
            raise AttributeValueError(f"mode must be one of {sorted(_MODES_16)} at version {node.version}, got {mode!r}")
        return _MODES_16[mode]
    mode = node.attr("mode", "linear", str)
    if mode not in _MODES_20:
        raise AttributeValueError(f"mode must be one of {list(_MODES_20)}, got {mode!r}")
    return mode


@register("GridSample", since=(16, 20, 22))
def grid_sample(node: Node, x, grid):
    require_dtype(x, types_at(GRID_SAMPLE_X_TYPES, node.version), "X")
    require_dtype(grid, types_at(GRID_SAMPLE_GRID_TYPES, node.version), "grid")
    mode = _mode(node)
    padding_mode = node.attr("padding_mode", "zeros", str)
    if padding_mode not in _PADDING_MODES:
        raise AttributeValueError(f"padding_mode must be one of {list(_PADDING_MODES)}, got {padding_mode!r}")
    align_corners = bool(node.attr("align_corners", 0, int))
    r = x.ndim - 2
    if r < 1 or (node.version < 20 and r != 2):
        raise ShapeError(f"X must have rank {'4' if node.version < 20 else '>= 3'}, got shape {x.shape}")
    if grid.ndim != x.ndim or grid.shape[0] != x.shape[0] or grid.shape[-1] != r:
        raise ShapeError(f"grid must have shape (N, ..., {r}) with N = {x.shape[0]} and rank {x.ndim}, got {grid.shape}")
    if mode == "cubic" and r != 2 and node.version < 20:
        raise ShapeError("bicubic needs 4-D X")
    is_float = proto_of(x.dtype) in FLOAT_TYPES
    if mode != "nearest" and not is_float:
        raise DTypeError(f"{mode} GridSample of {x.dtype} X is not supported (refquant interpolates float types only)")
    n_batch, channels = x.shape[:2]
    dims = x.shape[2:]
    out_spatial = grid.shape[1:-1]
    y_shape = (n_batch, channels, *out_spatial)
    if 0 in y_shape:
        return (np.zeros(y_shape, x.dtype),)
    if 0 in dims:
        raise ShapeError(f"X has an empty spatial axis {dims} but the output {y_shape} is not empty")
    g = grid.astype(np.float64)
    coords = []  # pixel coordinate along each spatial axis of X, shape (N, out...)
    for k, length in enumerate(dims):
        c = denormalize(g[..., r - 1 - k], length, align_corners)
        if mode == "nearest":
            c = np.rint(c)
        low, high = (0.0, length - 1.0) if align_corners else (-0.5, length - 0.5)
        if padding_mode == "border":
            c = np.where((c < low) | (c > high), np.clip(c, 0, length - 1), c)
        elif padding_mode == "reflection":
            c = reflect(c, low, high)
        coords.append(c)
    finite = np.logical_and.reduce([np.isfinite(c) for c in coords])
    if not finite.all() and not is_float:
        raise ShapeError("a NaN grid coordinate has no value in an integer or bool X")
    coords = [np.where(finite, c, 0.0) for c in coords]
    xt = np.moveaxis(x, 1, -1)  # (N, dims..., C)
    batch = np.arange(n_batch).reshape((n_batch,) + (1,) * len(out_spatial))

    def pixels(indices):
        """X at integer ``indices`` per axis, with the padding mode's rule outside; (N, out..., C) float64."""
        inside = np.ones(indices[0].shape, bool)
        fixed = []
        for k, (i, length) in enumerate(zip(indices, dims)):
            if padding_mode == "zeros":
                inside &= (i >= 0) & (i < length)
                fixed.append(np.clip(i, 0, length - 1))
            elif padding_mode == "border":
                fixed.append(np.clip(i, 0, length - 1))
            else:
                low, high = (0.0, length - 1.0) if align_corners else (-0.5, length - 0.5)
                fixed.append(np.clip(np.trunc(reflect(i.astype(np.float64), low, high)).astype(np.int64), 0, length - 1))
        values = xt[(batch, *fixed)]
        if padding_mode == "zeros":
            values = np.where(inside[..., None], values, np.zeros((), values.dtype))
        return values

    if mode == "nearest":
        y = pixels([c.astype(np.int64) for c in coords])
        if not finite.all():
            y = y.astype(np.float64)
            y[~finite] = np.nan
    else:
        floors = [np.floor(c) for c in coords]
        if mode == "linear":
            offsets = (0, 1)
            weights = [[1 - (c - f), c - f] for c, f in zip(coords, floors)]
        else:
            offsets = (-1, 0, 1, 2)
            weights = [cubic_weights(c - f) for c, f in zip(coords, floors)]
        y = np.zeros(y_shape[:1] + tuple(out_spatial) + (channels,), np.float64)
        base = [f.astype(np.int64) for f in floors]
        for taps in itertools.product(range(len(offsets)), repeat=r):
            w = np.ones(base[0].shape, np.float64)
            for k, t in enumerate(taps):
                w = w * weights[k][t]
            values = pixels([b + offsets[t] for b, t in zip(base, taps)]).astype(np.float64)
            y += w[..., None] * values
        y[~finite] = np.nan
    y = np.moveaxis(y, -1, 1)
    if y.dtype == x.dtype:
        return (np.ascontiguousarray(y),)
    return (np.ascontiguousarray(arith.narrow(y, x.dtype)),)


def base_coordinates(length: int, align_corners: bool) -> np.ndarray:
    """AffineGrid's normalized coordinates of ``length`` pixels: -1 .. 1 through the corner centres
    (align_corners; a single pixel: -1, as onnx.reference) or the centres of ``length`` equal cells."""
    i = np.arange(length, dtype=np.float64)
    if align_corners:
        return -1 + 2 * i / (length - 1) if length > 1 else np.full(length, -1.0)
    return (2 * i + 1) / length - 1


@register("AffineGrid", since=(20,))
def affine_grid(node: Node, theta, size):
    require_dtype(theta, types_at(AFFINE_GRID_TYPES, node.version), "theta")
    require_dtype(size, (T.INT64,), "size")
    align_corners = bool(node.attr("align_corners", 0, int))
    if size.ndim != 1 or size.shape[0] not in (4, 5):
        raise ShapeError(f"size must be [N, C, H, W] or [N, C, D, H, W], got shape {size.shape}")
    n, _, *spatial = (int(v) for v in size)
    r = len(spatial)
    if theta.shape != (n, r, r + 1):
        raise ShapeError(f"theta must have shape ({n}, {r}, {r + 1}) for size {size.tolist()}, got {theta.shape}")
    if min(spatial + [n]) < 0:
        raise ShapeError(f"size must not be negative, got {size.tolist()}")
    axes = [base_coordinates(d, align_corners) for d in spatial]  # D, H, W (or H, W)
    mesh = np.meshgrid(*axes, indexing="ij")
    homo = np.stack([*mesh[::-1], np.ones(tuple(spatial))], axis=-1)  # (..., [x, y, (z), 1])
    grid = np.einsum("sk,nik->nsi", homo.reshape(-1, r + 1), theta.astype(np.float64))
    grid = grid.reshape((n, *spatial, r))
    return (np.ascontiguousarray(arith.narrow(grid, theta.dtype)),)
