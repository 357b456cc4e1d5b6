"""Resize (10, 11, 13, 18, 19) and Upsample (10): nearest, (N-)linear and (N-)cubic interpolation, antialiasing, crop.

Along each resized axis of input length D and output length L, output index y reads the
input coordinate x = transform(y), computed exactly (as a fraction) from the scale:

    half_pixel:           x = (y + 1/2) / scale - 1/2
    pytorch_half_pixel:   x = (y + 1/2) / scale - 1/2, or 0 when L == 1
    half_pixel_symmetric: x = D/2 (1 - L / (scale D)) + (y + 1/2) / scale - 1/2
    align_corners:        x = y (D - 1) / (L - 1), or 0 when L == 1
    asymmetric:           x = y / scale
    tf_half_pixel_for_nn: x = (y + 1/2) / scale           (Resize-11 only)
    tf_crop_and_resize:   x = start (D - 1) + y (end - start) (D - 1) / (L - 1),
                          or (start + end) / 2 (D - 1) when L == 1   (start, end: the axis' roi)

scale is the ``scales`` value (a float32, taken exactly) or, with ``sizes``, L / D. L is
floor(D scale), floor(D (end - start) scale) for tf_crop_and_resize, or ``sizes``.

    nearest: Y = X at the nearest index to x (``nearest_mode``), clamped to [0, D - 1]
    linear, cubic: a kernel K of radius R, stretched by 1 / s:

        Y = sum_i w_i X[clamp(i, 0, D - 1)],   w_i = K((i - x) s) / sum_j K((j - x) s)

        over the integers i, j with |i - x| s < R (with exclude_outside, only those in [0, D - 1])
        linear: K(t) = 1 - |t|                                           R = 1
        cubic:  K(t) = (a + 2) |t|^3 - (a + 3) |t|^2 + 1   for |t| <= 1    R = 2
                K(t) = a |t|^3 - 5a |t|^2 + 8a |t| - 4a    for 1 < |t| < 2   (Keys, a = cubic_coeff_a)
        s = min(scale, 1) with antialias (Resize-18+), else 1

    Without antialias both kernels are partitions of unity (sum_j K(j - x) = 1 for every x), so the
    division changes nothing and linear is (1 - r) X[i] + r X[i + 1], i = floor(x), r = x - i.
    Each weight is an exact fraction (taps clamped to the same index added), rounded once to
    float64; Y sums the non-zero terms in float64 in increasing index order, axis after axis (in
    the order of ``axes``), and is rounded once to T (integers: half to even, saturated).
    tf_crop_and_resize: Y = extrapolation_value (rounded to T) where x lies outside [0, D - 1] on
    any resized axis.

Resize-10 is Resize-11 with ``asymmetric`` and, for nearest, ``floor`` (ONNX's
Resize 10 -> 11 version converter). Upsample-10 is Resize-10 with scales >= 1.
spec/ops/nn.md states every choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import flag, normalize_axis, require_dtype, require_input
from ..dtypes import BASIC_TYPES, IEEE_FLOATS, dtype_name, types_at
from ..errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from ..node import Node
from ..registry import register

RESIZE_TYPES = {10: BASIC_TYPES, 13: (T.BFLOAT16,)}
ROI_TYPES = IEEE_FLOATS

MODES = ("nearest", "linear", "cubic")  # Resize-10: nearest and linear
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
#: coordinate_transformation_mode values refquant implements, by the versions that have them
TRANSFORMS = {
    "half_pixel": (11, None),
    "pytorch_half_pixel": (11, None),
    "align_corners": (11, None),
    "asymmetric": (11, None),
    "tf_half_pixel_for_nn": (11, 12),
    "tf_crop_and_resize": (11, None),
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


def _crops(roi, count: int) -> list[tuple[Fraction, Fraction]]:
    """tf_crop_and_resize's exact (start, end) per resized axis, from roi [start..., end...]."""
    if roi is None or roi.size == 0:
        raise ShapeError(
            f"coordinate_transformation_mode 'tf_crop_and_resize' needs roi: {2 * count} values, "
            "a start and an end per resized axis"
        )
    require_dtype(roi, ROI_TYPES, "roi")
    if roi.ndim != 1 or roi.size != 2 * count:
        raise ShapeError(f"roi has shape {roi.shape}, expected ({2 * count},): every start, then every end, one per resized axis")
    values = roi.astype(np.float64).tolist()  # float16 / float32 / float64 values, exactly
    if not all(math.isfinite(v) for v in values):
        raise NonFiniteError(f"roi {values} must be finite")
    exact = [Fraction(v) for v in values]
    return list(zip(exact[:count], exact[count:]))


def _one_per_axis(values: np.ndarray, proto: int, what: str, count: int) -> list:
    require_dtype(values, {proto}, what)
    if values.ndim != 1 or values.size != count:
        raise ShapeError(f"{what} has shape {values.shape}, expected ({count},): one value per resized axis")
    return values.tolist()


def _geometry(node: Node, shape: tuple[int, ...], axes: list[int], scales, sizes, crops) -> tuple[list[int], list[Fraction]]:
    """(output lengths of the resized axes, their exact scales); ``crops``: (start, end) or None per axis."""
    inputs = [shape[a] for a in axes]
    if scales is not None:
        values = _one_per_axis(scales, T.FLOAT, "scales", len(axes))
        if not all(math.isfinite(s) and s > 0 for s in values):
            raise NonFiniteError(f"scales {values} must be finite and > 0")
        exact = [Fraction(s) for s in values]  # float32 values, exactly
        spans = [1 if crop is None else crop[1] - crop[0] for crop in crops]
        lengths = [math.floor(d * span * s) for d, span, s in zip(inputs, spans, exact)]
        for axis, length, span in zip(axes, lengths, spans):
            if length < 0:
                raise ShapeError(
                    f"tf_crop_and_resize with scales: axis {axis} would have length floor(D (end - start) scale) = "
                    f"{length} < 0 (roi end - start = {float(span)}); give sizes to flip an axis"
                )
        return lengths, exact
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


def _coordinates(transform: str, length: int, size: int, scale: Fraction, crop) -> list[Fraction]:
    """Exact input coordinate of each output index 0..length-1 along one axis."""
    half = Fraction(1, 2)
    if transform == "tf_crop_and_resize":
        start, end = crop
        if length == 1:
            return [(start + end) / 2 * (size - 1)]
        return [start * (size - 1) + Fraction(y * (size - 1), length - 1) * (end - start) for y in range(length)]
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


def _is_identity(transform: str, length: int, size: int, scale: Fraction, crop) -> bool:
    """True when every output index y maps to input coordinate y."""
    if length != size or transform == "tf_half_pixel_for_nn":
        return False
    if transform == "tf_crop_and_resize":
        return size == 1 or crop == (0, 1)
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


# ----------------------------------------------------------------------------
# linear and cubic: exact weights per output index, then one weighted sum per axis
# ----------------------------------------------------------------------------


def _linear_kernel(t: Fraction) -> Fraction:
    return max(1 - abs(t), Fraction(0))


def _cubic_kernel(a: Fraction) -> Callable[[Fraction], Fraction]:
    """Keys' cubic convolution kernel (1981, equation 4) with coefficient ``a``."""

    def kernel(t: Fraction) -> Fraction:
        t = abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        if t < 2:
            return a * (t - 1) * (t - 2) ** 2  # = a t^3 - 5a t^2 + 8a t - 4a
        return Fraction(0)

    return kernel


@dataclass
class _Filter:
    """An interpolation kernel of ``radius`` and how it meets the axis' ends and scale."""

    name: str
    kernel: Callable[[Fraction], Fraction]
    radius: int
    antialias: bool
    exclude_outside: bool
    #: per axis, by the fractional part of x: the kernel's non-zero taps (offset from floor(x), exact
    #: weight) and, for an x whose taps all lie inside the axis, their normalised float64 weights
    cache: dict = field(default_factory=dict)


def _filter(node: Node, mode: str) -> _Filter:
    antialias = node.version >= 18 and flag(node, "antialias")
    exclude_outside = node.version >= 11 and flag(node, "exclude_outside")
    if mode == "linear":
        return _Filter("linear", _linear_kernel, 1, antialias, exclude_outside)
    a = node.attr("cubic_coeff_a", -0.75, float)
    if not math.isfinite(a):
        raise AttributeValueError(f"cubic_coeff_a must be finite, got {a}")
    return _Filter(f"cubic (cubic_coeff_a {a})", _cubic_kernel(Fraction(a)), 2, antialias, exclude_outside)


def _taps(filt: _Filter, fraction: Fraction, stretch: Fraction):
    """(non-zero taps (offset k from floor(x), exact weight K((k - r) s)), their float64 weights / their sum)."""
    key = (fraction, stretch)
    if key not in filt.cache:
        reach = filt.radius / stretch  # the taps: |k - r| < reach
        offsets = range(math.floor(fraction - reach) + 1, math.ceil(fraction + reach))
        taps = [(k, w) for k in offsets if (w := filt.kernel((k - fraction) * stretch)) != 0]
        total = sum(w for _, w in taps)
        filt.cache[key] = taps, (None if total == 0 else [float(w / total) for _, w in taps])
    return filt.cache[key]


def _weights(filt: _Filter, coords: list[Fraction], size: int, scale: Fraction, skipped: list[bool]):
    """(indices, weights), both (L, n): the input indices each output index reads along the axis and
    their float64 weights, padded with weight 0; ``skipped`` outputs (extrapolated) read nothing."""
    stretch = min(scale, Fraction(1)) if filt.antialias else Fraction(1)
    rows: list[tuple[list[int], list[float]]] = []
    for y, x in enumerate(coords):
        if skipped[y]:
            rows.append(([], []))
            continue
        below = math.floor(x)
        taps, inside = _taps(filt, x - below, stretch)
        if inside is not None and 0 <= below + taps[0][0] and below + taps[-1][0] < size:
            rows.append(([below + k for k, _ in taps], inside))
            continue
        merged: dict[int, Fraction] = {}
        for k, w in taps:
            i = below + k
            if not 0 <= i < size:
                if filt.exclude_outside:
                    continue
                i = min(max(i, 0), size - 1)
            merged[i] = merged.get(i, 0) + w
        total = sum(merged.values())
        if total == 0:
            raise AttributeValueError(
                f"the {filt.name} weights of output index {y} (input coordinate {float(x)}, axis length {size}) "
                "sum to 0: they cannot be normalised"
            )
        kept = sorted((i, w) for i, w in merged.items() if w != 0)
        rows.append(([i for i, _ in kept], [float(w / total) for _, w in kept]))
    width = max([1] + [len(index) for index, _ in rows])
    indices = np.zeros((len(rows), width), dtype=np.intp)
    weights = np.zeros((len(rows), width), dtype=np.float64)
    for row, (index, weight) in enumerate(rows):
        indices[row, : len(index)] = index
        weights[row, : len(weight)] = weight
    return indices, weights


def _apply(x64: np.ndarray, axis: int, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights[y, k] X[indices[y, k]] along ``axis``, in float64, k in increasing order.

    A zero weight contributes -0.0, the exact identity of +: so an infinite or NaN sample that
    a weight 0 leaves out stays out (0 * inf is NaN), and a sample point keeps its sign (-0.0).
    """
    shape = [1] * x64.ndim
    shape[axis] = len(indices)
    total = None
    with np.errstate(invalid="ignore", over="ignore"):
        for index, weight in zip(indices.T, weights.T):
            weight = weight.reshape(shape)
            term = np.where(weight == 0, -0.0, weight * np.take(x64, index, axis=axis))
            total = term if total is None else total + term
    return total


# ----------------------------------------------------------------------------
# the output type
# ----------------------------------------------------------------------------


def _round_to_integers(y: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """float64 ``y`` rounded half to even and saturated to the integer ``dtype``.

    The bounds are compared exactly: 2**63 - 1 and 2**64 - 1 have no float64 value, so values
    at or above the type's max + 1 (a power of two) take the max.
    """
    if np.isnan(y).any():
        raise NonFiniteError(f"{what} is NaN: it has no {dtype_name(dtype)} value")
    info = np.iinfo(dtype)
    rounded = np.rint(y)
    above = rounded >= 2.0 ** (info.bits - (info.min < 0))
    result = np.where(above, 0, np.maximum(rounded, info.min)).astype(dtype)
    result[above] = info.max
    return result


def _to_type(y: np.ndarray, dtype: np.dtype, what: str = "the result") -> np.ndarray:
    if dtype.kind in "iu":
        return _round_to_integers(y, dtype, what)
    return np.asarray(arith.narrow(y, dtype))


def _extrapolation_value(node: Node, dtype: np.dtype) -> np.ndarray:
    value = node.attr("extrapolation_value", 0.0, float)
    if dtype == np.bool_:
        return np.asarray(value != 0)  # as Cast float -> bool
    if dtype == object:
        raise DTypeError(f"tf_crop_and_resize extrapolates outputs of a string X: extrapolation_value {value} is no string")
    return _to_type(np.asarray(value, dtype=np.float64), dtype, f"extrapolation_value {value}")


@register("Resize", since=(10, 11, 13, 18, 19))
def resize(node: Node, x, roi=None, scales=None, sizes=None):
    if node.version < 11:  # Resize-10: (X, scales)
        roi, scales, sizes = None, roi, None
    require_dtype(x, types_at(RESIZE_TYPES, node.version), "X")
    mode = _choice(node, "mode", "nearest", MODES if node.version >= 11 else MODES[:2])
    if mode == "nearest" and node.version >= 18 and flag(node, "antialias"):
        raise AttributeValueError("antialias=1 applies to modes linear and cubic, not nearest")
    transform = _transform_name(node)
    nearest_mode = "floor" if node.version < 11 else _choice(node, "nearest_mode", "round_prefer_floor", NEAREST_MODES)
    if mode != "nearest" and x.dtype.kind not in "fiu" and x.dtype.name != "bfloat16":
        raise DTypeError(f"{mode} Resize needs numbers; X has type {dtype_name(x.dtype)}")
    if x.ndim == 0:
        raise ShapeError("X must have rank >= 1")
    axes = _axes(node, x.ndim)
    scales, sizes = _scales_and_sizes(node, roi, scales, sizes)
    crops = _crops(roi, len(axes)) if transform == "tf_crop_and_resize" else [None] * len(axes)
    lengths, exact_scales = _geometry(node, x.shape, axes, scales, sizes, crops)
    filt = None if mode == "nearest" else _filter(node, mode)
    y = x if mode == "nearest" else x.astype(np.float64)
    extrapolated = []  # (axis, per output index: x outside [0, D - 1])
    for axis, length, scale, crop in zip(axes, lengths, exact_scales, crops):
        size = x.shape[axis]
        if _is_identity(transform, length, size, scale, crop):
            continue
        if size == 0:
            raise ShapeError(f"axis {axis} of X {x.shape} is empty: there is nothing to resize to length {length}")
        coords = _coordinates(transform, length, size, scale, crop)
        outside = [crop is not None and not 0 <= c <= size - 1 for c in coords]
        if any(outside):
            extrapolated.append((axis, outside))
        if filt is None:
            y = _resize_nearest(y, axis, coords, nearest_mode)
        else:
            y = _apply(y, axis, *_weights(filt, coords, size, scale, outside))
    y = np.ascontiguousarray(y) if filt is None else _to_type(y, x.dtype)
    if extrapolated:
        mask = np.zeros(y.shape, dtype=bool)
        for axis, outside in extrapolated:
            shape = [1] * y.ndim
            shape[axis] = len(outside)
            mask |= np.reshape(outside, shape)
        y = np.where(mask, _extrapolation_value(node, x.dtype), y)
    return (y,)


@register("Upsample", since=(10,))
def upsample(node: Node, x, scales):
    """Upsample-10 (deprecated by ONNX for Resize): Resize-10 (asymmetric coordinates, nearest rounding down)
    with ``scales`` >= 1, L = floor(D * scale); mode nearest or linear."""
    require_input(scales, "scales")
    values = _one_per_axis(scales, T.FLOAT, "scales", x.ndim)
    if not all(math.isfinite(s) and s >= 1 for s in values):
        raise ShapeError(f"scales {values} must be finite and >= 1 (Upsample only enlarges)")
    return resize(node, x, scales)
