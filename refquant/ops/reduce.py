"""ReduceMin and ReduceMax, every version.

    ReduceMin: Y = min of data over ``axes``   (empty set: +inf, or T's largest value)
    ReduceMax: Y = max of data over ``axes``   (empty set: -inf, or T's lowest value)

Exact: the result is one of the inputs. NaN propagates. ``axes`` is an
attribute up to version 13 and an optional int64 input from version 18, where
``noop_with_empty_axes`` decides what an empty or missing ``axes`` means.

spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from ..errors import AttributeValueError, ShapeError
from ..node import Node
from ..registry import register
from .common import normalize_axis, require_dtype, types_at
from .elementwise import FLOATS, WIDE_INTS

VERSIONS = (1, 11, 12, 13, 18, 20)

#: element types by the version that added them
REDUCE_TYPES = {1: FLOATS + WIDE_INTS, 12: (T.INT8, T.UINT8), 13: (T.BFLOAT16,), 20: (T.BOOL,)}


def _axes(node: Node, data: np.ndarray, axes_input) -> tuple[int, ...]:
    """The axes to reduce, normalized; () means the reduction is the identity."""
    rank = data.ndim
    if node.version >= 18:
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
