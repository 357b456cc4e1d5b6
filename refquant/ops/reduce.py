"""Reductions and scans along axes: ReduceMin, ReduceMax, ReduceSum, ReduceMean, ArgMax, TopK, CumSum, CumProd.

    ReduceMin:  Y = min of data over ``axes``   (empty set: +inf, or T's largest value)
    ReduceMax:  Y = max of data over ``axes``   (empty set: -inf, or T's lowest value)
    ReduceSum:  Y = sum of data over ``axes``   (empty set: 0)
    ReduceMean: Y = ReduceSum / count           (empty set: NaN for floats)
    ArgMax:     Y = index of the first (or last) maximum along ``axis``
    TopK:       Values, Indices = the K largest (smallest) elements along ``axis``, lower index first on ties
    CumSum:     y = prefix sums along ``axis`` (exclusive, reverse)
    CumProd:    y = prefix products along ``axis`` (exclusive, reverse)

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

import math
from collections.abc import Callable

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import normalize_axis, require_dtype
from ..dtypes import IEEE_FLOATS, NARROW_INTS, WIDE_INTS, dtype_name, types_at
from ..errors import AttributeValueError, NonFiniteError, ShapeError
from ..node import Node
from ..registry import register

VERSIONS = (1, 11, 12, 13, 18, 20)

#: element types by the version that added them
REDUCE_TYPES = {1: IEEE_FLOATS + WIDE_INTS, 12: (T.INT8, T.UINT8), 13: (T.BFLOAT16,), 20: (T.BOOL,)}


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
SUM_TYPES = {1: IEEE_FLOATS + WIDE_INTS, 13: (T.BFLOAT16,)}


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


# ----------------------------------------------------------------------------
# ArgMax, TopK, CumSum
#
# Order: floats compare as IEEE values (-0.0 == +0.0), widened exactly to float64
# first (ml_dtypes' bfloat16 sorts NaN wrongly); NaN counts as larger than
# every number, numpy's sort order.
# ----------------------------------------------------------------------------

NUMERIC = IEEE_FLOATS + WIDE_INTS + NARROW_INTS
ARGMAX_TYPES = {1: NUMERIC, 13: (T.BFLOAT16,)}
TOPK_TYPES = {10: IEEE_FLOATS, 11: WIDE_INTS + NARROW_INTS, 24: (T.BFLOAT16,)}
CUMSUM_TYPES = {11: (T.FLOAT, T.DOUBLE, T.INT32, T.INT64, T.UINT32, T.UINT64), 14: (T.FLOAT16, T.BFLOAT16)}


def _order_keys(x: np.ndarray) -> np.ndarray:
    """Values that numpy orders as ONNX orders x: integers as they are, floats widened to float64."""
    return x if x.dtype.kind in "iu" else x.astype(np.float64)


def _axis_attribute(node: Node, rank: int, default: int, negative_since: int) -> int:
    axis = node.attr("axis", default, int)
    if node.version < negative_since and axis < 0:
        raise AttributeValueError(f"axis {axis}: negative axes are allowed from opset {negative_since}")
    return normalize_axis(axis, rank)


def _arg_extreme(find: Callable[..., np.ndarray], extreme: str):
    """Kernel: index of the first ``extreme`` along ``axis`` (the last with select_last_index, 12+), found by
    numpy's ``find`` (argmax / argmin), which takes NaN as that extreme."""

    def kernel(node: Node, data):
        require_dtype(data, types_at(ARGMAX_TYPES, node.version), "data")
        if data.ndim == 0:
            raise ShapeError("data must have rank >= 1")
        axis = _axis_attribute(node, data.ndim, 0, negative_since=11)
        if data.shape[axis] == 0:
            raise ShapeError(f"axis {axis} of shape {data.shape} is empty: it has no {extreme}")
        last = node.version >= 12 and bool(node.attr("select_last_index", 0, int))
        keys = _order_keys(data)
        if last:
            index = data.shape[axis] - 1 - find(np.flip(keys, axis), axis=axis)
        else:
            index = find(keys, axis=axis)
        if node.attr("keepdims", 1, int):
            index = np.expand_dims(index, axis)
        return (np.asarray(index, dtype=np.int64),)

    return kernel


register("ArgMax", since=(1, 11, 12, 13))(_arg_extreme(np.argmax, "maximum"))
register("ArgMin", since=(1, 11, 12, 13))(_arg_extreme(np.argmin, "minimum"))


def _k_of(k_input: np.ndarray, length: int) -> int:
    require_dtype(k_input, {T.INT64}, "K")
    if k_input.size != 1:
        raise ShapeError(f"K must hold one value, got shape {k_input.shape}")
    k = int(k_input.reshape(()))
    if not 0 <= k <= length:
        raise ShapeError(f"K = {k} must lie in [0, {length}], the length of the axis")
    return k


def _descending_stable(keys: np.ndarray, axis: int) -> np.ndarray:
    """Indices sorting ``keys`` in descending order along ``axis``, equal keys by ascending index.

    A stable ascending sort of the reversed axis, reversed back: equal keys come out in
    ascending order of their original index.
    """
    n = keys.shape[axis]
    order = np.argsort(np.flip(keys, axis), axis=axis, kind="stable")
    return n - 1 - np.flip(order, axis)


@register("TopK", since=(10, 11, 24))
def top_k(node: Node, x, k_input):
    """The K largest (or, with largest=0 from 11, smallest) elements along ``axis``, and their indices.

    Equal values: the lower index first (the spec's tie rule). Always sorted, also for sorted=0
    (whose order ONNX leaves undefined).
    """
    require_dtype(x, types_at(TOPK_TYPES, node.version), "X")
    if x.ndim == 0:
        raise ShapeError("X must have rank >= 1")
    axis = normalize_axis(node.attr("axis", -1, int), x.ndim)
    k = _k_of(k_input, x.shape[axis])
    largest = node.version < 11 or bool(node.attr("largest", 1, int))
    keys = _order_keys(x)
    order = _descending_stable(keys, axis) if largest else np.argsort(keys, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64)


def _scalar_axis(axis_input: np.ndarray, rank: int) -> int:
    require_dtype(axis_input, {T.INT32, T.INT64}, "axis")
    if axis_input.size != 1 or axis_input.ndim > 1:
        raise ShapeError(f"axis must be a scalar (0-D tensor), got shape {axis_input.shape}")
    return normalize_axis(int(axis_input.reshape(())), rank)


@register("CumSum", since=(11, 14))
def cum_sum(node: Node, x, axis_input):
    """y[j] = sum of x[i] for i <= j (i < j with exclusive; i >= j, i > j with reverse) along ``axis``.

    Floats: float64 prefix sums (error <= (n - 1) * 2**-53 * sum|x| each), each rounded once to T.
    Integers: wrap (two's complement).
    """
    require_dtype(x, types_at(CUMSUM_TYPES, node.version), "x")
    return (_scan(node, x, axis_input, np.cumsum, 0),)


#: CumProd: CumSum's types at 14
CUMPROD_TYPES = {26: IEEE_FLOATS + (T.BFLOAT16, T.INT32, T.INT64, T.UINT32, T.UINT64)}


@register("CumProd", since=(26,))
def cum_prod(node: Node, x, axis_input):
    """y[j] = product of x[i] for i <= j (i < j with exclusive, y[0] = 1; i >= j, i > j with reverse) along
    ``axis``. Floats: float64 prefix products, each rounded once to T. Integers: wrap (two's complement)."""
    require_dtype(x, types_at(CUMPROD_TYPES, node.version), "x")
    return (_scan(node, x, axis_input, np.cumprod, 1),)


def _scan(node: Node, x: np.ndarray, axis_input, scan, first) -> np.ndarray:
    """CumSum / CumProd: ``scan`` (np.cumsum, np.cumprod) along the axis input, ``exclusive`` shifting by one
    (``first`` in front), ``reverse`` from the end; floats in float64, rounded once to T."""
    if x.ndim == 0:
        raise ShapeError("x must have rank >= 1")
    axis = _scalar_axis(axis_input, x.ndim)
    exclusive = bool(node.attr("exclusive", 0, int))
    reverse = bool(node.attr("reverse", 0, int))
    wide = x if x.dtype.kind in "iu" else x.astype(np.float64)
    if reverse:
        wide = np.flip(wide, axis)
    with np.errstate(over="ignore", invalid="ignore"):
        sums = scan(wide, axis=axis, dtype=wide.dtype)  # integers: wraps in T
    if exclusive:  # shift by one along the axis, ``first`` in front
        along = np.moveaxis(sums, axis, 0)
        shifted = np.full_like(along, first)
        shifted[1:] = along[:-1]
        sums = np.moveaxis(shifted, 0, axis)
    if reverse:
        sums = np.flip(sums, axis)
    if x.dtype.kind in "iu":
        return np.ascontiguousarray(sums)
    return np.asarray(arith.narrow(np.ascontiguousarray(sums), x.dtype))


# ----------------------------------------------------------------------------
# ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp, ArgMin
#
# Floats: the reduction in float64, rounded once to T (as ReduceSum). Integers: ReduceProd, ReduceL1 and
# ReduceSumSquare wrap (two's complement, the product or sum mod 2**64 reduced to T); ReduceL2 is the
# exact floor(sqrt(sum of squares)); ReduceLogSum and ReduceLogSumExp of integers (opsets 1 to 27) are
# the float64 value truncated toward zero.
# ----------------------------------------------------------------------------

#: the axes rules of ReduceMin: ``axes`` becomes an input at 18 (AXES_INPUT_SINCE's default)
OTHER_REDUCE_VERSIONS = (1, 11, 13, 18)
LOG_REDUCE_VERSIONS = (1, 11, 13, 18, 28)
#: ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, and ReduceLogSum / ReduceLogSumExp before 28
OTHER_REDUCE_TYPES = {1: IEEE_FLOATS + WIDE_INTS, 13: (T.BFLOAT16,)}


def log_reduce_types(version: int) -> frozenset[int]:
    """ReduceLogSum and ReduceLogSumExp: OTHER_REDUCE_TYPES, without the integers from 28 (the schema drops them)."""
    allowed = types_at(OTHER_REDUCE_TYPES, version)
    return allowed - set(WIDE_INTS) if version >= 28 else allowed


def _reduced_operands(node: Node, data: np.ndarray, axes_input, allowed) -> tuple | None:
    """(axes, keepdims), or None when the reduction is the identity."""
    require_dtype(data, allowed, "data")
    reduced = _axes(node, data, axes_input)
    if not reduced:
        return None
    return reduced, bool(node.attr("keepdims", 1, int))


def _wrapping(data: np.ndarray) -> np.ndarray:
    """data widened to the 64-bit integer of its signedness (numpy wraps mod 2**64 there)."""
    return data.astype(np.uint64 if data.dtype.kind == "u" else np.int64)


def _float64_reduction(combine):
    """A float reduction: ``combine(float64 data, axes, keepdims)`` rounded once to T."""

    def kernel(node: Node, data, axes=None):
        operands = _reduced_operands(node, data, axes, types_at(OTHER_REDUCE_TYPES, node.version))
        if operands is None:
            return (data,)
        reduced, keepdims = operands
        if data.dtype.kind in "iu":
            return (np.asarray(combine.integer(data, reduced, keepdims)),)
        with np.errstate(all="ignore"):
            wide = combine.real(data.astype(np.float64), reduced, keepdims)
        return (np.asarray(arith.narrow(np.asarray(wide), data.dtype)),)

    return kernel


class _Prod:
    @staticmethod
    def real(x, axes, keepdims):
        return np.prod(x, axis=axes, keepdims=keepdims)

    @staticmethod
    def integer(data, axes, keepdims):
        return np.prod(_wrapping(data), axis=axes, keepdims=keepdims).astype(data.dtype)


class _L1:
    @staticmethod
    def real(x, axes, keepdims):
        return np.sum(np.abs(x), axis=axes, keepdims=keepdims)

    @staticmethod
    def integer(data, axes, keepdims):
        return np.sum(np.abs(_wrapping(data)), axis=axes, keepdims=keepdims).astype(data.dtype)


class _SumSquare:
    @staticmethod
    def real(x, axes, keepdims):
        return np.sum(x * x, axis=axes, keepdims=keepdims)

    @staticmethod
    def integer(data, axes, keepdims):
        wide = _wrapping(data)
        return np.sum(wide * wide, axis=axes, keepdims=keepdims).astype(data.dtype)


class _L2:
    @staticmethod
    def real(x, axes, keepdims):
        return np.sqrt(np.sum(x * x, axis=axes, keepdims=keepdims))

    @staticmethod
    def integer(data, axes, keepdims):
        exact = data.astype(object)
        squares = np.sum(exact * exact, axis=axes, keepdims=keepdims, initial=0)
        roots = np.vectorize(math.isqrt, otypes=[object])(np.asarray(squares))
        return _wrap_to(roots, data.dtype)


def _wrap_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Python integers reduced mod 2**bits into the integer type ``dtype`` (two's complement)."""
    modulus = 1 << np.iinfo(dtype).bits
    values = np.asarray(values, dtype=object)
    wrapped = np.array([int(v) % modulus for v in values.reshape(-1)], dtype=np.uint64).reshape(values.shape)
    return wrapped.astype(dtype)


register("ReduceProd", since=OTHER_REDUCE_VERSIONS)(_float64_reduction(_Prod))
register("ReduceL1", since=OTHER_REDUCE_VERSIONS)(_float64_reduction(_L1))
register("ReduceL2", since=OTHER_REDUCE_VERSIONS)(_float64_reduction(_L2))
register("ReduceSumSquare", since=OTHER_REDUCE_VERSIONS)(_float64_reduction(_SumSquare))


def _log_sum_exp(x: np.ndarray, axes, keepdims) -> np.ndarray:
    """log(sum(exp(x))) in float64, shifted by the maximum so that no exp overflows; -inf for no values."""
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdims))
    peak = np.max(x, axis=axes, keepdims=True)
    shift = np.where(np.isfinite(peak), peak, 0.0)  # an infinite or NaN maximum decides the result unshifted
    total = np.log(np.sum(np.exp(x - shift), axis=axes, keepdims=True)) + shift
    return total if keepdims else np.squeeze(total, axis=axes)


def _log_reduction(log_of):
    def kernel(node: Node, data, axes=None):
        operands = _reduced_operands(node, data, axes, log_reduce_types(node.version))
        if operands is None:
            return (data,)
        reduced, keepdims = operands
        with np.errstate(all="ignore"):
            wide = np.asarray(log_of(data.astype(np.float64), reduced, keepdims))
        if data.dtype.kind not in "iu":
            return (np.asarray(arith.narrow(wide, data.dtype)),)
        info = np.iinfo(data.dtype)
        if not np.all(np.isfinite(wide) & (wide > float(info.min) - 1) & (wide < float(info.max) + 1)):
            raise NonFiniteError(f"{node.op_type} of {dtype_name(data.dtype)} data is not finite or not in the type")
        return (np.trunc(wide).astype(data.dtype),)

    return kernel


register("ReduceLogSum", since=LOG_REDUCE_VERSIONS)(
    _log_reduction(lambda x, axes, keepdims: np.log(np.sum(x, axis=axes, keepdims=keepdims)))
)
register("ReduceLogSumExp", since=LOG_REDUCE_VERSIONS)(_log_reduction(_log_sum_exp))
