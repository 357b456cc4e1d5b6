"""Sequence and Optional values (spec/ops/sequence.md).

Representation (spec/model.md, "Sequence and optional values"): a sequence is a Python ``list`` of numpy
arrays, every element of one dtype; an optional is ``None`` (no element) or its element itself (an array or
a list). An empty list carries no element type. Kernels never modify a sequence they are given: SequenceInsert
and SequenceErase return a new list.
"""

from __future__ import annotations

import numpy as np

from ..checks import normalize_axis
from ..dtypes import np_dtype
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register

__all__ = [
    "sequence_empty", "sequence_construct", "sequence_insert", "sequence_at", "sequence_erase", "sequence_length",
    "split_to_sequence", "concat_from_sequence", "sequence_map", "optional", "optional_has_element",
    "optional_get_element",
]  # fmt: skip


def _sequence(value, what: str = "input_sequence") -> list:
    if not isinstance(value, list):
        kind = "nothing (absent or an empty optional)" if value is None else f"a {type(value).__name__}"
        raise DTypeError(f"{what} must be a sequence, got {kind}")
    return value


def _tensor(value, what: str) -> np.ndarray:
    if value is None or isinstance(value, list):
        raise DTypeError(f"{what} must be a tensor, got {'nothing' if value is None else 'a sequence'}")
    return np.asarray(value)


def _same_dtype(seq: list, tensor: np.ndarray, what: str) -> None:
    if seq and seq[0].dtype != tensor.dtype:
        raise DTypeError(f"{what} has dtype {tensor.dtype}; the sequence's elements have dtype {seq[0].dtype}")


def _position(value, n: int, high: int, what: str = "position") -> int:
    """An int32/int64 scalar position in [-n, high]; negative ones count from the back."""
    array = _tensor(value, what)
    if array.dtype not in (np.int32, np.int64) or array.size != 1:
        raise DTypeError(f"{what} must be one int32 or int64 element, got {array.dtype} of shape {list(array.shape)}")
    position = int(array.reshape(-1)[0])
    if not -n <= position <= high:
        raise ShapeError(f"{what} {position} is out of range [{-n}, {high}] for a sequence of length {n}")
    return position + n if position < 0 else position


@register("SequenceEmpty", since=(11,))
def sequence_empty(node: Node):
    """An empty sequence. ``dtype`` (default float) is checked to be a tensor type; the value, [], does not
    carry it (spec/ops/sequence.md)."""
    dtype = node.attr("dtype", 1, int)
    try:
        np_dtype(dtype)
    except KeyError:
        raise AttributeValueError(f"dtype {dtype} is not a tensor element type refquant knows") from None
    return ([],)


@register("SequenceConstruct", since=(11,))
def sequence_construct(node: Node, *inputs):
    """The inputs, in order, as one sequence; they must share one dtype (shapes may differ)."""
    if not inputs:
        raise ShapeError("SequenceConstruct takes at least one input")
    tensors = [_tensor(x, f"input {i}") for i, x in enumerate(inputs)]
    dtypes = sorted({str(t.dtype) for t in tensors})
    if len(dtypes) > 1:
        raise DTypeError(f"the inputs have dtypes {dtypes}; a sequence's elements share one dtype")
    return (tensors,)


@register("SequenceInsert", since=(11,))
def sequence_insert(node: Node, seq, tensor, position=None):
    """A new sequence with ``tensor`` inserted before ``position`` (in [-n, n]; absent: at the end)."""
    seq, tensor = _sequence(seq), _tensor(tensor, "tensor")
    _same_dtype(seq, tensor, "tensor")
    at = len(seq) if position is None else _position(position, len(seq), len(seq))
    return ([*seq[:at], tensor, *seq[at:]],)


@register("SequenceAt", since=(11,))
def sequence_at(node: Node, seq, position):
    """The element at ``position`` (in [-n, n-1])."""
    seq = _sequence(seq)
    return (seq[_position(position, len(seq), len(seq) - 1)],)


@register("SequenceErase", since=(11,))
def sequence_erase(node: Node, seq, position=None):
    """A new sequence without the element at ``position`` (in [-n, n-1]; absent: the last)."""
    seq = _sequence(seq)
    if not seq:
        raise ShapeError("cannot erase from an empty sequence")
    at = len(seq) - 1 if position is None else _position(position, len(seq), len(seq) - 1)
    return ([*seq[:at], *seq[at + 1:]],)


@register("SequenceLength", since=(11,))
def sequence_length(node: Node, seq):
    """The number of elements, an int64 scalar."""
    return (np.array(len(_sequence(seq)), np.int64),)


@register("SplitToSequence", since=(11, 24))
def split_to_sequence(node: Node, x, split=None):
    """Split ``x`` along ``axis``: into pieces of length 1 (``split`` absent; squeezed unless keepdims=1), of
    length ``split`` (a scalar; the last piece shorter), or of the lengths ``split`` lists (summing to the axis)."""
    x = _tensor(x, "input")
    if x.ndim == 0:
        raise ShapeError("input must have rank >= 1")
    axis = normalize_axis(node.attr("axis", 0, int), x.ndim)
    length = x.shape[axis]
    if split is None:
        pieces = [np.take(x, [i], axis=axis) for i in range(length)]
        if not node.attr("keepdims", 1, int):
            pieces = [np.squeeze(p, axis=axis) for p in pieces]
        return (pieces,)
    split = _tensor(split, "split")
    if split.dtype not in (np.int32, np.int64):
        raise DTypeError(f"split must be int32 or int64, got {split.dtype}")
    if split.ndim == 0:
        size = int(split)
        if size <= 0:
            raise ShapeError(f"split {size} must be > 0")
        sizes = [size] * (length // size) + ([length % size] if length % size else [])
    elif split.ndim == 1:
        sizes = [int(s) for s in split]
        if any(s < 0 for s in sizes) or sum(sizes) != length:
            raise ShapeError(f"split {sizes} must be non-negative lengths summing to {length} (axis {axis})")
    else:
        raise ShapeError(f"split must be a scalar or 1-D, got shape {list(split.shape)}")
    bounds = np.cumsum([0, *sizes])
    index = [slice(None)] * x.ndim
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        index[axis] = slice(int(start), int(stop))
        pieces.append(x[tuple(index)].copy())
    return (pieces,)


@register("ConcatFromSequence", since=(11,))
def concat_from_sequence(node: Node, seq):
    """The elements concatenated along ``axis`` (new_axis=1: stacked on a new axis, axis in [-r-1, r])."""
    seq = _sequence(seq)
    if not seq:
        raise ShapeError("the sequence is empty: there is nothing to concatenate (its element type is unknown)")
    if not node.has("axis"):
        raise AttributeValueError("required attribute 'axis' is missing")
    dtypes = sorted({str(t.dtype) for t in seq})
    if len(dtypes) > 1:
        raise DTypeError(f"the sequence's elements have dtypes {dtypes}")
    new_axis = node.attr("new_axis", 0, int)
    if new_axis not in (0, 1):
        raise AttributeValueError(f"new_axis must be 0 or 1, got {new_axis}")
    rank = seq[0].ndim
    axis = normalize_axis(node.attr("axis", kind=int), rank + new_axis)
    if new_axis:
        shapes = sorted({t.shape for t in seq})
        if len(shapes) > 1:
            raise ShapeError(f"new_axis=1 stacks elements of one shape; got shapes {[list(s) for s in shapes]}")
        return (np.stack(seq, axis=axis),)
    if rank == 0:
        raise ShapeError("the elements are scalars: concatenate them with new_axis=1")
    ranks = sorted({t.ndim for t in seq})
    if len(ranks) > 1:
        raise ShapeError(f"the sequence's elements have ranks {ranks}")
    for t in seq:
        if t.shape[:axis] + t.shape[axis + 1:] != seq[0].shape[:axis] + seq[0].shape[axis + 1:]:
            raise ShapeError(f"element shapes {list(seq[0].shape)} and {list(t.shape)} differ outside axis {axis}")
    return (np.concatenate(seq, axis=axis),)


@register("SequenceMap", since=(17,))
def sequence_map(node: Node, seq, *additional):
    """body applied to each position i: body(seq[i], then each additional input: its [i] if a sequence (of
    the same length), else the tensor itself); each body output collected into one output sequence."""
    seq = _sequence(seq)
    body = node.subgraph("body")
    if len(body.input_names) != 1 + len(additional):
        raise ShapeError(f"body takes {len(body.input_names)} input(s); SequenceMap gives it {1 + len(additional)}")
    for index, extra in enumerate(additional):
        if isinstance(extra, list) and len(extra) != len(seq):
            raise ShapeError(f"additional input {index} is a sequence of length {len(extra)}; input_sequence has "
                             f"length {len(seq)}")
    outputs: list[list] = [[] for _ in body.output_names]
    for i, element in enumerate(seq):
        body.count_iterations(i + 1)
        results = body([element, *(extra[i] if isinstance(extra, list) else extra for extra in additional)])
        for collected, value in zip(outputs, results):
            collected.append(_tensor(value, "a body output"))
    return tuple(outputs)


@register("Optional", since=(15, 28))
def optional(node: Node, value=None):
    """An optional holding ``value`` (a tensor or a sequence), or empty (None) when the input is absent; the
    ``type`` attribute is needed then and is not otherwise read (an empty optional carries no type)."""
    if value is None and not node.has("type"):
        raise AttributeValueError("an Optional without input needs the 'type' attribute")
    return (value,)


@register("OptionalHasElement", since=(15, 18, 28))
def optional_has_element(node: Node, value=None):
    """True (a bool scalar) when the input is present and holds an element; false for an empty optional or
    (opset 18+) an absent input."""
    return (np.array(value is not None),)


@register("OptionalGetElement", since=(15, 18, 28))
def optional_get_element(node: Node, value=None):
    """The optional's element; a tensor or sequence passes through (opset 18+; at 15 too: values carry no
    optional wrapper). An empty optional is an error."""
    if value is None:
        raise ShapeError("the optional is empty: it has no element to get")
    return (value,)
