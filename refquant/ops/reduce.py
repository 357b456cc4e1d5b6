"""ReduceMin, ReduceMax, ReduceSum and ReduceMean, every version.

    ReduceMin:  Y = min of data over ``axes``   (empty set: +inf, or T's largest value)
    ReduceMax:  Y = max of data over ``axes``   (empty set: -inf, or T's lowest value)
    ReduceSum:  Y = sum of data over ``axes``   (empty set: 0)
    ReduceMean: Y = ReduceSum / count           (empty set: NaN for floats)

Min and max are exact: the result is one of the inputs. NaN propagates.
Float sums and means are computed in float64 (exact products are not involved;
the float64 sum of n float32 values errs by at most (n - 1) * 2**-53 * sum|x|)
and rounded once to T. Integer sums wrap (two's complement); integer means are
the exact mean truncated toward zero. ``axes`` is an attribute before the
version that makes it an optional int64 input (ReduceSum 13, the others 18);
from that version ``noop_with_empty_axes`` decides what an empty or missing
``axes`` means.

spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..errors import AttributeValueError, NonFiniteError, ShapeError
from ..node import Node
from ..registry import register
from .common import normalize_axis, require_dtype, types_at
from .elementwise import FLOATS, WIDE_INTS

VERSIONS = (1, 11, 12, 13, 18, 20)

#: element types by the version that added them
REDUCE_TYPES = {1: FLOATS + WIDE_INTS, 12: (T.INT8, T.UINT8), 13: (T.BFLOAT16,), 20: (T.BOOL,)}


#: the version from which ``axes`` is an input rather than an attribute
AXES_INPUT_SINCE = {"ReduceSum": 13}


def _axes(node: Node, data: np.ndarray, axes_input) -> tuple[int, ...]:
    """The axes to reduce, normalized; () means the reduction is the identity."""
    rank = data.ndim
    if node.version >= AXES_INPUT_SINCE.get(node.op_type, 18):
        if axes_input is not None:
            require_dtype(axes_input, {T.INT64}, "axes")
            if axes_input.ndim != 1:
                raise ShapeError(f"axes must be a 1-D tensor, got shape {axes_input.shape}")
        axes = [] if axes_input is None else [int(a) for a in axes_input]
        if not axes and node.attr("noop_with_empty_axes", 0, int):
            return ()
    else:
        axes = node.attr_ints("axes", [])
    if not axes:
        return tuple(range(rank))
    if node.version < 11 and any(a < 0 for a in axes):
        raise AttributeValueError(f"axes {axes}: negative axes are allowed from opset 11")
    normalized = tuple(normalize_axis(a, rank, "axes value") for a in axes)
    if len(set(normalized)) != len(normalized):
        raise AttributeValueError(f"axes {axes} name an axis twice (rank {rank})")
    return normalized


def _empty_set_value(dtype: np.dtype, largest: bool):
    """The result of a reduction over no values: +-inf, or T's largest / lowest value."""
    if dtype == np.bool_:
        return largest
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.max if largest else info.min
    return np.inf if largest else -np.inf


def _reduce(ufunc: np.ufunc, for_empty_set_largest: bool):
    def kernel(node: Node, data, axes=None):
        require_dtype(data, types_at(REDUCE_TYPES, node.version), "data")
        reduced = _axes(node, data, axes)
        if not reduced:
            return (data,)
        keepdims = bool(node.attr("keepdims", 1, int))
        extra = {}
        if data.size == 0:
            extra["initial"] = _empty_set_value(data.dtype, for_empty_set_largest)
        return (np.asarray(ufunc.reduce(data, axis=reduced, keepdims=keepdims, **extra), dtype=data.dtype),)

    return kernel


register("ReduceMin", since=VERSIONS)(_reduce(np.minimum, for_empty_set_largest=True))
register("ReduceMax", since=VERSIONS)(_reduce(np.maximum, for_empty_set_largest=False))


SUM_VERSIONS = (1, 11, 13)
MEAN_VERSIONS = (1, 11, 13, 18)
#: element types by the version that added them (ReduceSum and ReduceMean)
SUM_TYPES = {1: FLOATS + WIDE_INTS, 13: (T.BFLOAT16,)}


def _sum_and_count(node: Node, data: np.ndarray, axes) -> tuple[np.ndarray, int] | None:
    """(sum over the reduced axes in float64, or in wrapping 64-bit integers; element count), or None for identity."""
    require_dtype(data, types_at(SUM_TYPES, node.version), "data")
    reduced = _axes(node, data, axes)
    if not reduced:
        return None
    keepdims = bool(node.attr("keepdims", 1, int))
    wide = {"i": np.int64, "u": np.uint64}.get(data.dtype.kind, np.float64)
    total = np.sum(data.astype(wide), axis=reduced, keepdims=keepdims)
    return total, int(np.prod([data.shape[a] for a in reduced]))


@register("ReduceSum", since=SUM_VERSIONS)
def reduce_sum(node: Node, data, axes=None):
    result = _sum_and_count(node, data, axes)
    if result is None:
        return (data,)
    total, _ = result
    if data.dtype.kind in "iu":
        return (np.asarray(total).astype(data.dtype),)  # two's complement wrap
    return (np.asarray(arith.narrow(total, data.dtype)),)


@register("ReduceMean", since=MEAN_VERSIONS)
def reduce_mean(node: Node, data, axes=None):
    if data.dtype.kind in "iu":
        return _integer_mean(node, data, axes)
    result = _sum_and_count(node, data, axes)
    if result is None:
        return (data,)
    total, count = result
    with np.errstate(invalid="ignore"):
        return (np.asarray(arith.narrow(total / count, data.dtype)),)


def _integer_mean(node: Node, data: np.ndarray, axes) -> tuple[np.ndarray]:
    """The exact integer mean, truncated toward zero (Python integers: no overflow)."""
    require_dtype(data, types_at(SUM_TYPES, node.version), "data")
    reduced = _axes(node, data, axes)
    if not reduced:
        return (data,)
    count = int(np.prod([data.shape[a] for a in reduced]))
    if count == 0:
        raise NonFiniteError("the integer mean of no values is undefined")
    total = np.sum(data.astype(object), axis=reduced, keepdims=bool(node.attr("keepdims", 1, int)))
    mean = np.vectorize(lambda t: abs(t) // count * (1 if t >= 0 else -1), otypes=[object])(total)
    return (np.asarray(mean.astype(data.dtype)),)
