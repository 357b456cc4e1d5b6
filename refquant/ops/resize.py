"""Resize (10, 11, 13, 18, 19): nearest and (N-)linear interpolation.

Along each resized axis of input length D and output length L, output index y reads the
input coordinate x = transform(y), computed exactly (as a fraction) from the scale:

    half_pixel:           x = (y + 1/2) / scale - 1/2
    pytorch_half_pixel:   x = (y + 1/2) / scale - 1/2, or 0 when L == 1
    half_pixel_symmetric: x = D/2 (1 - L / (scale D)) + (y + 1/2) / scale - 1/2
    align_corners:        x = y (D - 1) / (L - 1), or 0 when L == 1
    asymmetric:           x = y / scale
    tf_half_pixel_for_nn: x = (y + 1/2) / scale           (Resize-11 only)

scale is the ``scales`` value (a float32, taken exactly) or, with ``sizes``, L / D.

    nearest: Y = X at the nearest index to x (``nearest_mode``), clamped to [0, D - 1]
    linear:  Y = (1 - r) X[i] + r X[i + 1], i = floor(x), r = x - i, indices clamped to
             [0, D - 1]; axis after axis, in float64 (weights rounded once from the exact r),
             rounded once to T (integers: half to even)

Resize-10 is Resize-11 with ``asymmetric`` and, for nearest, ``floor`` (ONNX's
Resize 10 -> 11 version converter). spec/ops/nn.md states every choice.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from ..node import Node
from ..registry import register
from .common import dtype_name, normalize_axis, require_dtype, require_input, types_at
from .elementwise import ANY_TYPES

RESIZE_TYPES = {10: ANY_TYPES, 13: (T.BFLOAT16,)}

MODES = ("nearest", "linear")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
#: coordinate_transformation_mode values refquant implements, by the versions that have them
TRANSFORMS = {
    "half_pixel": (11, None),
    "pytorch_half_pixel": (11, None),
    "align_corners": (11, None),
    "asymmetric": (11, None),
    "tf_half_pixel_for_nn": (11, 12),
    "half_pixel_symmetric": (19, None),
}
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _choice(node: Node, name: str, default: str, allowed) -> str:
    value = node.attr(name, default, str)
    if value not in allowed:
        raise AttributeValueError(f"{name} {value!r} is not supported; refquant implements {', '.join(allowed)}")
    return value


def _transform_name(node: Node) -> str:
    if node.version < 11:
        return "asymmetric"
    name = node.attr("coordinate_transformation_mode", "half_pixel", str)
    first, last = TRANSFORMS.get(name, (None, None))
    if first is None or node.version < first or (last is not None and node.version > last):
        known = ", ".join(n for n, (f, l) in TRANSFORMS.items() if f <= node.version and (l is None or node.version <= l))
        raise AttributeValueError(
            f"coordinate_transformation_mode {name!r} is not supported at opset {node.version}; refquant implements {known}"
        )
    return name


def _axes(node: Node, rank: int) -> list[int]:
    axes = node.attr_ints("axes", None) if node.version >= 18 else None
    if axes is None:
        return list(range(rank))
    normalized = [normalize_axis(a, rank, "axes value") for a in axes]
    if len(set(normalized)) != len(normalized):
        raise AttributeValueError(f"axes {axes} name an axis twice (rank {rank})")
    return normalized


def _scales_and_sizes(node: Node, roi, scales, sizes):
    """(scales, sizes) as given; exactly one of them is a non-empty tensor."""
    if node.version < 11:
        return require_input(scales, "scales"), None
    if node.version < 13:
        require_input(roi, "roi")
        require_input(scales, "scales")
    given_scales = scales is not None and scales.size > 0
    given_sizes = sizes is not None and sizes.size > 0
    if given_scales == given_sizes:
        raise ShapeError("exactly one of scales and sizes must be given (non-empty)")
    return (scales, None) if given_scales else (None, sizes)


def _one_per_axis(values: np.ndarray, proto: int, what: str, count: int) -> list:
    require_dtype(values, {proto}, what)
    if values.ndim != 1 or values.size != count:
        raise ShapeError(f"{what} has shape {values.shape}, expected ({count},): one value per resized axis")
    return values.tolist()


def _geometry(node: Node, shape: tuple[int, ...], axes: list[int], scales, sizes) -> tuple[list[int], list[Fraction]]:
    """(output lengths of the resized axes, their exact scales)."""
    inputs = [shape[a] for a in axes]
    if scales is not None:
        values = _one_per_axis(scales, T.FLOAT, "scales", len(axes))
        if not all(math.isfinite(s) and s > 0 for s in values):
            raise NonFiniteError(f"scales {values} must be finite and > 0")
        exact = [Fraction(s) for s in values]  # float32 values, exactly
        return [math.floor(d * s) for d, s in zip(inputs, exact)], exact
    lengths = _one_per_axis(sizes, T.INT64, "sizes", len(axes))
    if min(lengths) < 0:
        raise ShapeError(f"sizes {lengths} must be >= 0")
    if 0 in inputs:
        raise ShapeError(f"cannot resize the empty axes of {shape} to sizes {lengths}")
    exact = [Fraction(n, d) for n, d in zip(lengths, inputs)]
    policy = _choice(node, "keep_aspect_ratio_policy", "stretch", ASPECT_POLICIES) if node.version >= 18 else "stretch"
    if policy == "stretch":
        return lengths, exact
    scale = min(exact) if policy == "not_larger" else max(exact)
    return [math.floor(scale * d + Fraction(1, 2)) for d in inputs], [scale] * len(inputs)  # round half up


def _coordinates(transform: str, length: int, size: int, scale: Fraction) -> list[Fraction]:
    """Exact input coordinate of each output index 0..length-1 along one axis."""
    half = Fraction(1, 2)
    if transform == "align_corners" or (transform == "pytorch_half_pixel" and length == 1):
        return [Fraction(0) if length == 1 else Fraction(y * (size - 1), length - 1) for y in range(length)]
    if transform == "asymmetric":
        return [y / scale for y in range(length)]
    if transform == "tf_half_pixel_for_nn":
        return [(y + half) / scale for y in range(length)]
    offset = -half
    if transform == "half_pixel_symmetric":
        offset += Fraction(size, 2) * (1 - length / (scale * size))
    return [(y + half) / scale + offset for y in range(length)]


def _is_identity(transform: str, length: int, size: int, scale: Fraction) -> bool:
    """True when every output index y maps to input coordinate y."""
    if length != size or transform == "tf_half_pixel_for_nn":
        return False
    return scale == 1 or transform == "align_corners"


def _nearest(x: Fraction, mode: str) -> int:
    below = math.floor(x)
    fraction = x - below
    if mode == "floor" or fraction == 0:
        return below
    if mode == "ceil":
        return below + 1
    if fraction == Fraction(1, 2):
        return below + (mode == "round_prefer_ceil")
    return below + (fraction > Fraction(1, 2))


def _resize_nearest(x: np.ndarray, axis: int, coords: list[Fraction], mode: str) -> np.ndarray:
    size = x.shape[axis]
    index = np.clip([_nearest(c, mode) for c in coords], 0, size - 1).astype(np.intp)
    return np.take(x, index, axis=axis)


def _resize_linear(x64: np.ndarray, axis: int, coords: list[Fraction]) -> np.ndarray:
    """(1 - r) X[i] + r X[i + 1] along ``axis``; x clamped to [0, D - 1] first (same as clamping the indices)."""
    size = x64.shape[axis]
    clamped = [min(max(c, Fraction(0)), Fraction(size - 1)) for c in coords]
    low = np.array([math.floor(c) for c in clamped], dtype=np.intp)
    high = np.minimum(low + 1, size - 1)
    weight = np.array([float(c - math.floor(c)) for c in clamped])  # each rounded once to float64
    shape = [1] * x64.ndim
    shape[axis] = len(coords)
    weight = weight.reshape(shape)
    below, above = np.take(x64, low, axis=axis), np.take(x64, high, axis=axis)
    with np.errstate(invalid="ignore"):
        mixed = (1.0 - weight) * below + weight * above
    return np.where(weight == 0, below, mixed)  # on a sample point, that sample alone (0 * inf is NaN)


@register("Resize", since=(10, 11, 13, 18, 19))
def resize(node: Node, x, roi=None, scales=None, sizes=None):
    if node.version < 11:  # Resize-10: (X, scales)
        roi, scales, sizes = None, roi, None
    require_dtype(x, types_at(RESIZE_TYPES, node.version), "X")
    mode = _choice(node, "mode", "nearest", MODES)
    if node.version >= 18 and node.attr("antialias", 0, int):
        raise AttributeValueError("antialias=1 is not supported")
    transform = _transform_name(node)
    nearest_mode = "floor" if node.version < 11 else _choice(node, "nearest_mode", "round_prefer_floor", NEAREST_MODES)
    if mode == "linear" and x.dtype.kind not in "fiu" and x.dtype.name != "bfloat16":
        raise DTypeError(f"linear Resize needs numbers; X has type {dtype_name(x.dtype)}")
    if x.ndim == 0:
        raise ShapeError("X must have rank >= 1")
    axes = _axes(node, x.ndim)
    scales, sizes = _scales_and_sizes(node, roi, scales, sizes)
    lengths, exact_scales = _geometry(node, x.shape, axes, scales, sizes)
    y = x if mode == "nearest" else x.astype(np.float64)
    for axis, length, scale in zip(axes, lengths, exact_scales):
        if _is_identity(transform, length, x.shape[axis], scale):
            continue
        if x.shape[axis] == 0:
            raise ShapeError(f"axis {axis} of X {x.shape} is empty: there is nothing to resize to length {length}")
        coords = _coordinates(transform, length, x.shape[axis], scale)
        if mode == "nearest":
            y = _resize_nearest(y, axis, coords, nearest_mode)
        else:
            y = _resize_linear(y, axis, coords)
    if mode == "nearest":
        return (np.ascontiguousarray(y),)
    if x.dtype.kind in "iu":  # a convex combination: its rounding lies within X's range
        return (np.rint(y).astype(x.dtype),)
    return (np.asarray(arith.narrow(y, x.dtype)),)
