"""Indexing by value: GatherND, ScatterND, ScatterElements (and the deprecated Scatter), OneHot, NonZero,
Compress, ReverseSequence, Unique.

    GatherND:        Y[b, i] = data[b, indices[b, i]]   (the first batch_dims axes shared)
    ScatterND:       Y = data; Y[indices[i]] = updates[i]  (or combined by ``reduction``), in index order
    ScatterElements: Y = data; Y[i with i[axis] = indices[i]] = updates[i]  (or combined by ``reduction``)
    OneHot:          Y[..., j, ...] = on_value where j == indices[...], off_value elsewhere (new axis ``axis``)
    NonZero:         Y = int64 (rank, count) coordinates of the non-zero elements, in row-major order
    Compress:        Y = the slices of input along ``axis`` where condition is True (flattened without axis)
    ReverseSequence: Y[b, :len[b]] = reversed X[b, :len[b]] along ``time_axis``, the rest copied
    Unique:          Y, indices, inverse_indices, counts of the unique elements (sorted or first-occurrence order)

Indices are int32 or int64; negative indices count from the end (each op's ONNX text allows it); an index
outside [-s, s - 1] is a ShapeError naming the input and the axis (OneHot: outside [-depth, depth - 1] gives
an all-off row, the ONNX text's rule). Nothing is computed except ScatterND / ScatterElements reductions,
which combine values as T's operations do (add and mul: integers wrap, floats round once per update in
index order, as the ONNX pseudocode applies them).

spec/ops/tensor.md states every choice these kernels make.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto as T

from ..checks import normalize_axis, require_dtype
from ..dtypes import BASIC_TYPES, IEEE_FLOATS, NARROW_INTS, WIDE_INTS, dtype_name, types_at
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register

__all__ = ["nonzero_bound"]

#: element types of the data-moving ops by the version that added them (GatherND, ScatterND, ...)
INDEXED_TYPES = {1: BASIC_TYPES, 13: (T.BFLOAT16,)}
INDEX_TYPES = frozenset({T.INT32, T.INT64})


def _in_range(indices: np.ndarray, size: int, what: str) -> np.ndarray:
    """int64 indices in [0, size): negative values count from the end; others raise ShapeError naming ``what``."""
    if indices.size and (np.any(indices < -size) or np.any(indices >= size)):
        bad = indices[(indices < -size) | (indices >= size)].reshape(-1)[0]
        raise ShapeError(f"index {int(bad)} is outside [{-size}, {size - 1}] ({what})")
    return indices.astype(np.int64) % max(size, 1)


# ----------------------------------------------------------------------------
# GatherND, ScatterND
# ----------------------------------------------------------------------------


def _nd_positions(data_shape: tuple[int, ...], indices: np.ndarray, batch_dims: int, what: str) -> np.ndarray:
    """indices' last axis checked and normalized against data's axes batch_dims .. batch_dims + k - 1."""
    k = indices.shape[-1]
    if k > len(data_shape) - batch_dims:
        raise ShapeError(f"indices' last axis ({k}) exceeds data's rank {len(data_shape)} less batch_dims {batch_dims}")
    columns = [
        _in_range(indices[..., j], data_shape[batch_dims + j], f"{what}, axis {batch_dims + j} of data {data_shape}")
        for j in range(k)
    ]
    return np.stack(columns, axis=-1) if columns else np.zeros(indices.shape, np.int64)


@register("GatherND", since=(11, 12, 13))
def gather_nd(node: Node, data, indices):
    """indices' last axis (length k <= rank - batch_dims) indexes data's axes after the batch_dims shared ones."""
    require_dtype(data, types_at(INDEXED_TYPES, node.version), "data")
    require_dtype(indices, {T.INT64}, "indices")
    batch_dims = node.attr("batch_dims", 0, int) if node.version >= 12 else 0
    if data.ndim < 1 or indices.ndim < 1:
        raise ShapeError(f"data {data.shape} and indices {indices.shape} must have rank >= 1")
    if not 0 <= batch_dims < min(data.ndim, indices.ndim):
        raise AttributeValueError(f"batch_dims {batch_dims} must lie in [0, min(rank(data), rank(indices)) - 1]")
    if data.shape[:batch_dims] != indices.shape[:batch_dims]:
        raise ShapeError(f"the first {batch_dims} axes of data {data.shape} and indices {indices.shape} differ")
    positions = _nd_positions(data.shape, indices, batch_dims, "indices")
    k = positions.shape[-1]
    batch = math.prod(data.shape[:batch_dims])
    flat_data = data.reshape((batch,) + data.shape[batch_dims:])
    flat_positions = positions.reshape(batch, -1, k)
    rows = np.arange(batch)[:, None]
    gathered = flat_data[(rows,) + tuple(flat_positions[..., j] for j in range(k))]
    return (gathered.reshape(indices.shape[:-1] + data.shape[batch_dims + k :]),)


SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _reduction(node: Node, data: np.ndarray) -> str:
    if node.version < 16:
        return "none"
    reduction = node.attr("reduction", "none", str)
    allowed = SCATTER_REDUCTIONS if node.version >= 18 else SCATTER_REDUCTIONS[:3]
    if reduction not in allowed:
        raise AttributeValueError(f"reduction {reduction!r} is not one of {allowed} at opset {node.version}")
    if reduction != "none" and data.dtype in (np.dtype(object),):
        raise DTypeError(f"reduction {reduction!r} needs numbers, data is {dtype_name(data.dtype)}")
    if reduction in ("add", "mul") and data.dtype == np.bool_:
        raise DTypeError(f"reduction {reduction!r} is not defined for bool data")
    return reduction


def _scatter(output: np.ndarray, targets: tuple, updates: np.ndarray, reduction: str) -> None:
    """output[targets[i]] = updates[i] combined by ``reduction``, one update after another in index order.

    numpy's unbuffered ufunc.at applies duplicate targets one at a time, in order; plain assignment keeps
    the last update of a duplicated target, as the ONNX pseudocode's loop does."""
    if reduction == "none":
        output[targets] = updates
        return
    ufunc = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction]
    if output.dtype.kind in "biuf":
        ufunc.at(output, targets, updates)
        return
    # ml_dtypes floats (bfloat16): combine in float64, one update at a time, each rounded to T
    wide = output.astype(np.float64)
    flat_targets = [np.broadcast_to(t, updates.shape[: t.ndim]).reshape(-1) for t in targets]
    flat_updates = updates.reshape((len(flat_targets[0]),) + updates.shape[targets[0].ndim :]).astype(np.float64)
    for i, update in enumerate(flat_updates):
        where = tuple(int(t[i]) for t in flat_targets)
        wide[where] = np.asarray(ufunc(wide[where], update)).astype(output.dtype).astype(np.float64)
    output[...] = wide.astype(output.dtype)


@register("ScatterND", since=(11, 13, 16, 18))
def scatter_nd(node: Node, data, indices, updates):
    """Y = copy of data; for each index tuple of indices (in row-major order) the slice it names is replaced
    by (or, 16+, combined with: add, mul; 18+: max, min) the matching slice of updates. Duplicate index
    tuples: with reduction 'none' the last update wins (ONNX leaves it undefined)."""
    require_dtype(data, types_at(INDEXED_TYPES, node.version), "data")
    require_dtype(indices, {T.INT64}, "indices")
    if updates.dtype != data.dtype:
        raise DTypeError(f"updates has type {dtype_name(updates.dtype)}, it must match data ({dtype_name(data.dtype)})")
    reduction = _reduction(node, data)
    if data.ndim < 1 or indices.ndim < 1:
        raise ShapeError(f"data {data.shape} and indices {indices.shape} must have rank >= 1")
    positions = _nd_positions(data.shape, indices, 0, "indices")
    k = positions.shape[-1]
    expected = indices.shape[:-1] + data.shape[k:]
    if updates.shape != expected:
        raise ShapeError(f"updates has shape {updates.shape}; data {data.shape} and indices {indices.shape} need {expected}")
    output = data.copy()
    tuples = positions.reshape(-1, k)
    slices = updates.reshape((len(tuples),) + data.shape[k:])
    if reduction == "none":
        for position, value in zip(tuples, slices):
            output[tuple(position)] = value
        return (output,)
    targets = tuple(tuples[:, j] for j in range(k))
    _scatter(output, targets, slices, reduction)
    return (output,)


@register("ScatterElements", since=(11, 13, 16, 18))
def scatter_elements(node: Node, data, indices, updates):
    """Y = copy of data; Y[i with i[axis] = indices[i]] = updates[i] (or combined: add, mul from 16; max, min
    from 18), in row-major order of indices. indices and updates share a shape, of data's rank, no longer
    than data on any axis other than ``axis``."""
    require_dtype(data, types_at(INDEXED_TYPES, node.version), "data")
    require_dtype(indices, INDEX_TYPES, "indices")
    if updates.dtype != data.dtype:
        raise DTypeError(f"updates has type {dtype_name(updates.dtype)}, it must match data ({dtype_name(data.dtype)})")
    reduction = _reduction(node, data)
    if data.ndim == 0 or indices.ndim != data.ndim or updates.shape != indices.shape:
        raise ShapeError(
            f"data {data.shape}, indices {indices.shape} and updates {updates.shape}: indices and updates must "
            "share one shape of data's rank >= 1"
        )
    axis = normalize_axis(node.attr("axis", 0, int), data.ndim)
    if any(i > d for a, (i, d) in enumerate(zip(indices.shape, data.shape)) if a != axis):
        raise ShapeError(f"indices {indices.shape} exceeds data {data.shape} on an axis other than {axis}")
    positions = _in_range(indices, data.shape[axis], f"indices, axis {axis} of data {data.shape}")
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = positions
    targets = tuple(np.broadcast_to(g, indices.shape).reshape(-1) for g in grid)
    output = data.copy()
    _scatter(output, targets, updates.reshape(-1), reduction)
    return (output,)


#: Scatter (9; deprecated at 11 in favour of ScatterElements) is ScatterElements-11 under its old name
register("Scatter", since=(9, 11))(scatter_elements)


# ----------------------------------------------------------------------------
# OneHot, NonZero, Compress
# ----------------------------------------------------------------------------

ONE_HOT_INDEX_TYPES = IEEE_FLOATS + WIDE_INTS + NARROW_INTS
ONE_HOT_VALUE_TYPES = {9: BASIC_TYPES, 28: (T.BFLOAT16,)}


@register("OneHot", since=(9, 11, 28))
def one_hot(node: Node, indices, depth, values):
    """indices (numeric; floats truncated toward zero, as the text's "casted to int64"), depth (a numeric
    one-element tensor, its value truncated; >= 1), values = [off_value, on_value]. Indices outside
    [-depth, depth - 1] make an all-off row; negative ones count from the end (from 11; 9 too, the texts agree)."""
    require_dtype(indices, ONE_HOT_INDEX_TYPES, "indices")
    require_dtype(depth, ONE_HOT_INDEX_TYPES, "depth")
    require_dtype(values, types_at(ONE_HOT_VALUE_TYPES, node.version), "values")
    if depth.size != 1:
        raise ShapeError(f"depth must hold one value, got shape {depth.shape}")
    if values.shape != (2,):
        raise ShapeError(f"values must be [off_value, on_value], got shape {values.shape}")
    depth_value = float(depth.reshape(()).astype(np.float64))
    if not math.isfinite(depth_value) or int(depth_value) < 1:
        raise ShapeError(f"depth must be >= 1, got {depth.reshape(())}")
    n = int(depth_value)
    rank = indices.ndim
    axis = node.attr("axis", -1, int)
    if not -rank - 1 <= axis <= rank:
        raise AttributeValueError(f"axis {axis} is out of range [{-rank - 1}, {rank}] for indices of rank {rank}")
    axis = axis % (rank + 1)
    with np.errstate(invalid="ignore"):
        wide = indices.astype(np.float64) if indices.dtype.kind == "f" else indices
        if indices.dtype.kind == "f" and not np.all(np.isfinite(wide)):
            raise ShapeError("indices must be finite")
        whole = np.trunc(wide).astype(np.int64) if indices.dtype.kind == "f" else wide.astype(np.int64)
    if indices.dtype == np.uint64 and np.any(indices > np.iinfo(np.int64).max):
        whole = np.where(indices > np.iinfo(np.int64).max, n, whole)  # beyond any depth: all off
    valid = (whole >= -n) & (whole < n)
    position = np.where(valid, whole % n, -1)
    hot = np.expand_dims(position, axis) == np.arange(n).reshape((n,) + (1,) * (rank - axis))
    return (np.where(hot, values[1], values[0]),)


NON_ZERO_TYPES = {9: BASIC_TYPES, 13: (T.BFLOAT16,)}


def nonzero_bound(x_shape: tuple[int, ...]) -> tuple[int, int]:
    """NonZero's output shape at most: (rank, number of elements)."""
    return len(x_shape), math.prod(x_shape)


@register("NonZero", since=(9, 13))
def non_zero(node: Node, x):
    """int64 (rank, n) coordinates of the n non-zero elements in row-major order. A rank-0 input gives
    shape (0, n) (numpy's convention for scalars: 0 coordinates). NaN is non-zero; -0.0 is zero; for
    strings the non-empty ones."""
    require_dtype(x, types_at(NON_ZERO_TYPES, node.version), "X")
    if x.dtype == object:
        mask = np.vectorize(lambda s: len(s) > 0, otypes=[np.bool_])(x) if x.size else np.zeros(x.shape, np.bool_)
    elif x.dtype.kind in "biuf":
        mask = x != 0
    else:  # ml_dtypes floats
        mask = x.astype(np.float64) != 0
    if x.ndim == 0:
        return (np.zeros((0, int(mask)), dtype=np.int64),)
    return (np.array(np.nonzero(mask), dtype=np.int64).reshape(x.ndim, -1),)


COMPRESS_TYPES = {9: BASIC_TYPES, 28: (T.BFLOAT16,)}


@register("Compress", since=(9, 11, 28))
def compress(node: Node, x, condition):
    """The slices along ``axis`` (negative from 11) whose condition is True; without ``axis``, the flattened
    input's elements. condition (bool, 1-D) may be shorter than the axis (missing entries are False), never
    longer (numpy.compress's rule)."""
    require_dtype(x, types_at(COMPRESS_TYPES, node.version), "input")
    require_dtype(condition, {T.BOOL}, "condition")
    if condition.ndim != 1:
        raise ShapeError(f"condition must be 1-D, got shape {condition.shape}")
    if not node.has("axis"):
        source, axis = x.reshape(-1), 0
    else:
        axis = node.attr("axis", kind=int)
        if node.version < 11 and axis < 0:
            raise AttributeValueError(f"axis {axis}: negative axes are allowed from opset 11")
        source, axis = x, normalize_axis(axis, x.ndim)
    if condition.size > source.shape[axis]:
        raise ShapeError(f"condition has {condition.size} values, the axis {source.shape[axis]}")
    return (np.compress(condition, source, axis=axis),)


# ----------------------------------------------------------------------------
# ReverseSequence, Unique
# ----------------------------------------------------------------------------

REVERSE_TYPES = {10: BASIC_TYPES, 28: (T.BFLOAT16,)}


@register("ReverseSequence", since=(10, 28))
def reverse_sequence(node: Node, x, sequence_lens):
    """For each batch b, the first sequence_lens[b] steps along ``time_axis`` reversed, the rest copied.
    batch_axis and time_axis are 0 or 1 and differ; each length lies in [0, the time axis length]
    (ONNX is silent on 0: nothing is reversed)."""
    require_dtype(x, types_at(REVERSE_TYPES, node.version), "input")
    require_dtype(sequence_lens, {T.INT64}, "sequence_lens")
    batch_axis, time_axis = node.attr("batch_axis", 1, int), node.attr("time_axis", 0, int)
    if {batch_axis, time_axis} != {0, 1}:
        raise AttributeValueError(f"batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1")
    if x.ndim < 2:
        raise ShapeError(f"input must have rank >= 2, got shape {x.shape}")
    if sequence_lens.shape != (x.shape[batch_axis],):
        raise ShapeError(f"sequence_lens has shape {sequence_lens.shape}, the batch needs ({x.shape[batch_axis]},)")
    steps = x.shape[time_axis]
    if np.any((sequence_lens < 0) | (sequence_lens > steps)):
        raise ShapeError(f"sequence_lens {sequence_lens.tolist()} must lie in [0, {steps}]")
    y = x.copy()
    for b, length in enumerate(sequence_lens.tolist()):
        index = [slice(None)] * x.ndim
        index[batch_axis] = b
        index[time_axis] = slice(0, length)
        source = list(index)
        source[time_axis] = slice(length - 1, None, -1) if length else slice(0, 0)
        y[tuple(index)] = x[tuple(source)]
    return (y,)


UNIQUE_TYPES = {11: BASIC_TYPES, 28: (T.BFLOAT16,)}


@register("Unique", since=(11, 28))
def unique(node: Node, x):
    """Y: the unique elements (or slices along ``axis``), ascending (``sorted`` = 1, default) or in order of
    first occurrence; indices: the first occurrence of each in X; inverse_indices: each X element's (slice's)
    position in Y; counts. Floats compare as values (+0 == -0, the first occurrence's bits kept); NaNs are
    all one value, sorted last (numpy >= 1.21's rule)."""
    require_dtype(x, types_at(UNIQUE_TYPES, node.version), "X")
    sort = node.attr("sorted", 1, int)
    if node.has("axis"):
        axis = normalize_axis(node.attr("axis", kind=int), x.ndim)
        moved = np.moveaxis(x, axis, 0)
        rows = moved.reshape(moved.shape[0], -1)
    else:
        axis = None
        rows = x.reshape(-1, 1)
    keys = rows if rows.dtype.kind in "iub" or rows.dtype == object else rows.astype(np.float64)
    keys_list = [tuple(_key(v) for v in row) for row in keys.tolist()]
    first: dict = {}
    for i, key in enumerate(keys_list):
        first.setdefault(key, i)
    order = list(first)  # first-occurrence order
    if sort:
        order.sort(key=lambda key: tuple(_sort_key(v) for v in key))
    slot = {key: j for j, key in enumerate(order)}
    indices = np.array([first[key] for key in order], dtype=np.int64)
    inverse = np.array([slot[key] for key in keys_list], dtype=np.int64)
    counts = np.bincount(inverse, minlength=len(order)).astype(np.int64) if len(order) else np.zeros(0, np.int64)
    if axis is None:
        y = x.reshape(-1)[indices]
    else:
        y = np.moveaxis(np.take(moved, indices, axis=0), 0, axis)
    return y, indices, inverse, counts


_NAN = object()


def _key(value):
    """A hashable key that equates +0 with -0 and all NaNs."""
    if isinstance(value, float) and value != value:
        return _NAN
    return value


def _sort_key(value):
    """Numbers ascending with NaN last; strings ascending."""
    if value is _NAN:
        return (1, 0)
    return (0, value)
