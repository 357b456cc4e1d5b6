"""Data movement: Transpose, Concat, Split, Slice, Squeeze, Unsqueeze, Gather, GatherElements, Shape, Expand,
ConstantOfShape, Pad.

    Transpose:       Y = X with axes permuted by ``perm`` (default: reversed)
    Concat:          Y = inputs joined along ``axis``
    Split:           outputs = X cut along ``axis`` into ``split`` sizes (default: equal parts)
    Slice:           Y = X[starts:ends:steps] along ``axes`` (indices clamped as numpy does)
    Squeeze:         Y = X without the listed size-1 axes (default: all size-1 axes)
    Unsqueeze:       Y = X with size-1 axes inserted at ``axes`` (positions in the output)
    Gather:          Y = take(data, indices, axis)  (negative indices count from the end)
    GatherElements:  Y[i] = data[i with i[axis] replaced by indices[i]]  (Y has indices' shape)
    Shape:           Y = int64 shape of X[start:end]
    Expand:          Y = X broadcast with ``shape`` (multidirectional broadcasting)
    ConstantOfShape: Y = ``value`` (default float32 0) repeated to ``shape``
    Pad:             Y = X padded by ``pads`` (constant, reflect, edge, wrap)

No arithmetic: every output element is an input element or a given constant.
spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from ..broadcast import broadcast_shapes
from ..checks import normalize_axis, require_dtype, require_input
from ..dtypes import BASIC_TYPES, FLATTEN_TYPES, IEEE_FLOATS, TENSOR_TYPES, dtype_name, types_at
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register

#: element types by the version that added them
MOVE_TYPES = {1: BASIC_TYPES, 13: (T.BFLOAT16,)}
CONSTANT_OF_SHAPE_TYPES = {
    9: tuple(t for t in BASIC_TYPES if t != T.STRING),
    20: (T.BFLOAT16, T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ),
    21: (T.INT4, T.UINT4),
    23: (T.FLOAT4E2M1,),
    24: (T.FLOAT8E8M0,),
    25: (T.INT2, T.UINT2),
}
PAD_TYPES = {
    2: IEEE_FLOATS,
    11: tuple(t for t in BASIC_TYPES if t not in (T.BOOL, T.STRING, T.FLOAT16, T.FLOAT, T.DOUBLE)),
    13: (T.BFLOAT16, T.BOOL, T.STRING),
} | {v: types for v, types in FLATTEN_TYPES.items() if v >= 21}
INDEX_TYPES = {T.INT32, T.INT64}


def _int_list(value: np.ndarray, what: str, allowed=frozenset({T.INT64})) -> list[int]:
    """A 1-D integer input as a list of ints."""
    require_dtype(value, allowed, what)
    if value.ndim != 1:
        raise ShapeError(f"{what} must be a 1-D tensor, got shape {value.shape}")
    return [int(v) for v in value]


def _axes(axes: list[int], rank: int, what: str = "axes") -> list[int]:
    """Normalized, distinct axes."""
    normalized = [normalize_axis(a, rank, f"{what} value") for a in axes]
    if len(set(normalized)) != len(normalized):
        raise AttributeValueError(f"{what} {axes} name an axis twice (rank {rank})")
    return normalized


def _axes_operand(node: Node, axes_input, since: int) -> list[int] | None:
    """``axes``: an attribute before version ``since``, an optional int64 input from it."""
    if node.version >= since:
        if axes_input is None:
            return None
        # a 0-d axes is one axis, as onnx.reference reads it (the Loop node case test_loop13_seq feeds one)
        return _int_list(axes_input.reshape(1) if np.ndim(axes_input) == 0 else axes_input, "axes")
    return node.attr_ints("axes", None)


@register("Transpose", since=(1, 13, 21, 23, 24, 25))
def transpose(node: Node, data):
    require_dtype(data, types_at(FLATTEN_TYPES, node.version), "data")
    perm = node.attr_ints("perm", list(reversed(range(data.ndim))))
    if sorted(perm) != list(range(data.ndim)):
        raise AttributeValueError(f"perm {perm} is not a permutation of the {data.ndim} axes")
    return (np.transpose(data, perm),)


@register("Concat", since=(4, 11, 13))
def concat(node: Node, *inputs):
    if not inputs or any(x is None for x in inputs):
        raise ShapeError("needs one or more inputs (missing inputs are not allowed)")
    for i, x in enumerate(inputs):
        require_dtype(x, types_at(MOVE_TYPES, node.version), f"inputs[{i}]")
    if len({x.dtype for x in inputs}) > 1 or len({x.ndim for x in inputs}) > 1:
        raise DTypeError(f"inputs must share one type and rank, got {[(dtype_name(x.dtype), x.shape) for x in inputs]}")
    rank = inputs[0].ndim
    axis = node.attr("axis", kind=int)
    if node.version < 11 and axis < 0:
        raise AttributeValueError(f"axis {axis}: negative axes are allowed from opset 11")
    axis = normalize_axis(axis, rank)
    others = {x.shape[:axis] + x.shape[axis + 1 :] for x in inputs}
    if len(others) > 1:
        raise ShapeError(f"shapes {[x.shape for x in inputs]} differ outside axis {axis}")
    return (np.concatenate(inputs, axis=axis),)


def _split_sizes(node: Node, length: int, split_input, outputs: int) -> list[int]:
    """The part sizes: ``split`` (attribute before 13, input from 13), else equal parts (the last smaller, from 18)."""
    split = node.attr_ints("split", None) if node.version < 13 else (
        None if split_input is None else _int_list(split_input, "split")
    )
    if split is not None:
        if sum(split) != length or any(s < 0 for s in split) or len(split) != outputs:
            raise ShapeError(f"split {split} must be {outputs} sizes >= 0 summing to {length}")
        return split
    if node.version >= 18:
        parts = node.attr("num_outputs", kind=int)
        if parts != outputs:
            raise AttributeValueError(f"num_outputs={parts} but the node has {outputs} outputs")
        size = -(-length // parts)
        sizes = [min(size, max(length - i * size, 0)) for i in range(parts)]
        if sizes[-1] == 0 and length:
            raise ShapeError(f"{length} elements cannot make {parts} parts of size {size}")
        return sizes
    if length % outputs:
        raise ShapeError(f"axis length {length} does not split into {outputs} equal parts")
    return [length // outputs] * outputs


@register("Split", since=(2, 11, 13, 18))
def split(node: Node, x, split_input=None):
    require_dtype(x, types_at(MOVE_TYPES, node.version), "input")
    axis = node.attr("axis", 0, int)
    if node.version < 11 and axis < 0:
        raise AttributeValueError(f"axis {axis}: negative axes are allowed from opset 11")
    axis = normalize_axis(axis, x.ndim)
    sizes = _split_sizes(node, x.shape[axis], split_input, len(node.proto.output))
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@register("Slice", since=(10, 11, 13))
def slice_(node: Node, data, starts, ends, axes=None, steps=None):
    require_dtype(data, types_at(MOVE_TYPES, node.version), "data")
    if starts.dtype != ends.dtype or (axes is not None and axes.dtype != starts.dtype) or (
        steps is not None and steps.dtype != starts.dtype
    ):
        raise DTypeError("starts, ends, axes and steps must share one type (Tind)")
    starts, ends = _int_list(starts, "starts", INDEX_TYPES), _int_list(ends, "ends", INDEX_TYPES)
    axes = list(range(len(starts))) if axes is None else _int_list(axes, "axes", INDEX_TYPES)
    steps = [1] * len(starts) if steps is None else _int_list(steps, "steps", INDEX_TYPES)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have one length")
    if 0 in steps:
        raise AttributeValueError(f"steps {steps}: a step cannot be 0")
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(_axes(axes, data.ndim), starts, ends, steps):
        index[axis] = slice(start, end, step)  # Python slicing clamps exactly as ONNX Slice does
    return (data[tuple(index)],)


@register("Squeeze", since=(1, 11, 13, 21, 23, 24, 25))
def squeeze(node: Node, data, axes_input=None):
    require_dtype(data, types_at(FLATTEN_TYPES, node.version), "data")
    axes = _axes_operand(node, axes_input, since=13)
    if axes is None:
        return (np.squeeze(data),)
    axes = _axes(axes, data.ndim)
    if any(data.shape[a] != 1 for a in axes):
        raise ShapeError(f"axes {axes} of shape {data.shape}: only size-1 axes can be squeezed")
    return (np.squeeze(data, axis=tuple(axes)),)


@register("Unsqueeze", since=(1, 11, 13, 21, 23, 24, 25))
def unsqueeze(node: Node, data, axes_input=None):
    require_dtype(data, types_at(FLATTEN_TYPES, node.version), "data")
    axes = _axes_operand(node, axes_input, since=13)
    if axes is None:
        raise ShapeError("axes is required")
    axes = _axes(axes, data.ndim + len(axes))
    return (np.expand_dims(data, tuple(axes)),)


def _checked_indices(indices: np.ndarray, size: int, what: str) -> np.ndarray:
    """int64 ``indices`` in [0, size): negative values count from the end; others raise ShapeError."""
    require_dtype(indices, INDEX_TYPES, "indices")
    if np.any((indices < -size) | (indices >= size)):
        raise ShapeError(f"indices must lie in [{-size}, {size - 1}] ({what})")
    return indices.astype(np.int64) % max(size, 1)


@register("Gather", since=(1, 11, 13))
def gather(node: Node, data, indices):
    require_dtype(data, types_at(MOVE_TYPES, node.version), "data")
    axis = normalize_axis(node.attr("axis", 0, int), data.ndim)
    positions = _checked_indices(indices, data.shape[axis], f"axis {axis} of shape {data.shape}")
    return (np.take(data, positions, axis=axis),)


@register("GatherElements", since=(11, 13))
def gather_elements(node: Node, data, indices):
    """Each indices axis other than ``axis`` may be shorter than data's, never longer."""
    require_dtype(data, types_at(MOVE_TYPES, node.version), "data")
    if data.ndim == 0 or indices.ndim != data.ndim:
        raise ShapeError(f"data {data.shape} and indices {indices.shape} must have one rank >= 1")
    axis = normalize_axis(node.attr("axis", 0, int), data.ndim)
    if any(i > d for a, (i, d) in enumerate(zip(indices.shape, data.shape)) if a != axis):
        raise ShapeError(f"indices {indices.shape} exceeds data {data.shape} on an axis other than {axis}")
    positions = _checked_indices(indices, data.shape[axis], f"axis {axis} of shape {data.shape}")
    window = tuple(slice(0, n) if a != axis else slice(None) for a, n in enumerate(indices.shape))
    return (np.take_along_axis(data[window], positions, axis=axis),)


@register("Shape", since=(1, 13, 15, 19, 21, 23, 24, 25))
def shape(node: Node, data):
    require_dtype(data, types_at(TENSOR_TYPES, node.version), "data")
    start, end = 0, data.ndim
    if node.version >= 15:
        start, end = node.attr("start", 0, int), node.attr("end", data.ndim, int)
    return (np.array(data.shape[slice(start, end)], dtype=np.int64),)  # clamped, as ONNX Shape-15 says


@register("Expand", since=(8, 13))
def expand(node: Node, x, shape_input):
    require_dtype(x, types_at(MOVE_TYPES, node.version), "input")
    target = broadcast_shapes({"input": x.shape, "shape": tuple(_int_list(shape_input, "shape"))})
    return (np.broadcast_to(x, target).copy(),)


@register("ConstantOfShape", since=(9, 20, 21, 23, 24, 25))
def constant_of_shape(node: Node, shape_input):
    dims = _int_list(shape_input, "input")
    if any(d < 0 for d in dims):
        raise ShapeError(f"shape {dims} has a negative dimension")
    value = node.attr("value", np.zeros(1, np.float32), np.ndarray)
    if value.size != 1:
        raise AttributeValueError(f"value must hold one element, got shape {value.shape}")
    require_dtype(value, types_at(CONSTANT_OF_SHAPE_TYPES, node.version), "value")
    return (np.full(dims, value.reshape(()), dtype=value.dtype),)


PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad_operands(node: Node, data, pads_input, value_input, axes_input) -> tuple[list[int], object]:
    """(pads as 2 * rank begin/end amounts, the constant value)."""
    rank = data.ndim
    if node.version < 11:
        pads = node.attr_ints("pads")
        value = node.attr("value", 0.0, float)
        axes = list(range(rank))
    else:
        pads = _int_list(require_input(pads_input, "pads"), "pads")
        value = 0 if value_input is None or value_input.size == 0 else value_input.reshape(())
        if value_input is not None and value_input.size and value_input.dtype != data.dtype:
            raise DTypeError(f"constant_value has type {dtype_name(value_input.dtype)}, it must match data")
        axes = list(range(rank)) if axes_input is None else _axes(_int_list(axes_input, "axes", INDEX_TYPES), rank)
    if len(pads) != 2 * len(axes):
        raise ShapeError(f"pads {pads} must hold 2 * {len(axes)} values")
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
    return full, value


@register("Pad", since=(2, 11, 13, 18, 19, 21, 23, 24, 25))
def pad(node: Node, data, pads_input=None, value_input=None, axes_input=None):
    """Negative pads crop. reflect needs each padded axis longer than its pad; wrap exists from 19."""
    require_dtype(data, types_at(PAD_TYPES, node.version), "data")
    mode = node.attr("mode", "constant", str)
    if mode not in PAD_MODES or (mode == "wrap" and node.version < 19):
        raise AttributeValueError(f"mode {mode!r} is not a Pad mode at opset {node.version}")
    pads, value = pad_operands(node, data, pads_input, value_input, axes_input)
    rank = data.ndim
    crop = tuple(slice(max(-b, 0), data.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(pads[:rank], pads[rank:])))
    cropped = data[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(pads[:rank], pads[rank:])]
    if mode == "constant":
        return (np.pad(cropped, widths, mode="constant", constant_values=np.asarray(value).astype(data.dtype)),)
    for axis, (b, e) in enumerate(widths):
        if (b or e) and (cropped.shape[axis] == 0 or (mode == "reflect" and max(b, e) >= cropped.shape[axis])):
            raise ShapeError(f"mode {mode!r} cannot pad axis {axis} of size {cropped.shape[axis]} by {b}, {e}")
    return (np.pad(cropped, widths, mode=PAD_MODES[mode]),)


# ----------------------------------------------------------------------------
# Tile, DepthToSpace, SpaceToDepth, Size
# ----------------------------------------------------------------------------



CENTER_CROP_PAD_TYPES = {18: BASIC_TYPES + (T.BFLOAT16,)}


def center_crop_pad_shape(node: Node, data, shape_input) -> tuple[list[int], list[int]]:
    """CenterCropPad's normalized axes and their target lengths (``axes`` default: every axis)."""
    lengths = _int_list(shape_input, "shape", INDEX_TYPES)
    axes = _axes(node.attr_ints("axes", list(range(data.ndim))), data.ndim)
    if len(lengths) != len(axes):
        raise ShapeError(f"shape {lengths} must hold one length per axis of {axes}")
    if any(n < 0 for n in lengths):
        raise ShapeError(f"shape {lengths} must be >= 0")
    return axes, lengths


@register("CenterCropPad", since=(18,))
def center_crop_pad(node: Node, data, shape_input):
    """Each axis in ``axes`` cropped or padded (with zeros; '' for strings) to its length about the centre;
    an odd difference leaves the extra element at the end (crop starts at floor(d / 2))."""
    require_dtype(data, types_at(CENTER_CROP_PAD_TYPES, node.version), "input_data")
    axes, lengths = center_crop_pad_shape(node, data, shape_input)
    source = [slice(None)] * data.ndim
    target = [slice(None)] * data.ndim
    out_shape = list(data.shape)
    for axis, length in zip(axes, lengths):
        dim = data.shape[axis]
        out_shape[axis] = length
        if length < dim:
            start = (dim - length) // 2
            source[axis] = slice(start, start + length)
        elif length > dim:
            start = (length - dim) // 2
            target[axis] = slice(start, start + dim)
    fill = "" if data.dtype == object else 0
    out = np.full(out_shape, fill, data.dtype)
    out[tuple(target)] = data[tuple(source)]
    return (out,)


@register("Tile", since=(6, 13))
def tile(node: Node, x, repeats):
    """Y = X repeated ``repeats[i]`` times along axis i (repeats: int64, one value >= 0 per axis)."""
    require_dtype(x, types_at(MOVE_TYPES, node.version), "input")
    counts = _int_list(repeats, "repeats")
    if len(counts) != x.ndim:
        raise ShapeError(f"repeats {counts} must hold one value per axis of input {x.shape}")
    if any(c < 0 for c in counts):
        raise ShapeError(f"repeats {counts} must be >= 0")
    return (np.tile(x, counts) if x.ndim else x.copy(),)


def _blocks(node: Node, x: np.ndarray, since_mode: int) -> tuple[int, str]:
    """(blocksize, mode) of DepthToSpace / SpaceToDepth for a rank-4 input."""
    if x.ndim != 4:
        raise ShapeError(f"input must have rank 4 (N, C, H, W), got shape {x.shape}")
    blocksize = node.attr("blocksize", kind=int)
    if blocksize < 1:
        raise AttributeValueError(f"blocksize must be >= 1, got {blocksize}")
    mode = node.attr("mode", "DCR", str) if node.version >= since_mode else "DCR"
    if mode not in ("DCR", "CRD"):
        raise AttributeValueError(f"mode must be DCR or CRD, got {mode!r}")
    return blocksize, mode


@register("DepthToSpace", since=(1, 11, 13, 28))
def depth_to_space(node: Node, x):
    """The ONNX text's reshape-transpose-reshape: DCR (default) or, from 11, CRD."""
    require_dtype(x, types_at(MOVE_TYPES, node.version), "input")
    b, mode = _blocks(node, x, since_mode=11)
    n, c, h, w = x.shape
    if c % (b * b):
        raise ShapeError(f"channels {c} are not a multiple of blocksize**2 = {b * b}")
    if mode == "DCR":
        tmp = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        tmp = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return (tmp.reshape(n, c // (b * b), h * b, w * b),)


@register("SpaceToDepth", since=(1, 13, 28))
def space_to_depth(node: Node, x):
    """The inverse of DepthToSpace: DCR order, or from 28 ``mode`` CRD."""
    require_dtype(x, types_at(MOVE_TYPES, node.version), "input")
    b, mode = _blocks(node, x, since_mode=28)
    n, c, h, w = x.shape
    if h % b or w % b:
        raise ShapeError(f"height {h} and width {w} must be multiples of blocksize {b}")
    order = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)
    tmp = x.reshape(n, c, h // b, b, w // b, b).transpose(order)
    return (tmp.reshape(n, c * b * b, h // b, w // b),)


@register("Size", since=(1, 13, 19, 21, 23, 24, 25))
def size(node: Node, data):
    """int64 scalar: the number of elements of data."""
    require_dtype(data, types_at(TENSOR_TYPES, node.version), "data")
    return (np.array(data.size, dtype=np.int64),)
