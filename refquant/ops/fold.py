"""Col2Im and MaxUnpool (spec/ops/image.md): values scattered back into an image.

    Col2Im:    Y[n, c, p] = sum of the columns input[n, c * K + k, l] whose block l puts tap k at p
               (the inverse of im2col: overlapping taps add; padding is cut off)
    MaxUnpool: Y = zeros(output shape); Y.flat[n, c][I[n, c, ...]] = X[n, c, ...]

Col2Im sums in float64 (floats) or int64 (integers), rounded or wrapped once to T; MaxUnpool moves values.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype
from ..dtypes import FLOAT_TYPES, IEEE_FLOATS, NARROW_INTS, WIDE_INTS, proto_of, types_at
from ..errors import AttributeValueError, ShapeError
from ..node import Node
from ..registry import register
from ..window import per_axis

COL2IM_TYPES = {18: IEEE_FLOATS + (T.BFLOAT16,) + WIDE_INTS + NARROW_INTS}


def col2im_geometry(node: Node, x_shape, image_shape, block_shape):
    """Col2Im's (image, block, dilations, strides, pads, blocks per axis), checked against the input's shape."""
    image = [int(v) for v in np.asarray(image_shape).reshape(-1)]
    block = [int(v) for v in np.asarray(block_shape).reshape(-1)]
    rank = len(image)
    if rank == 0 or len(block) != rank:
        raise ShapeError(f"image_shape {image} and block_shape {block} must have the same, non-zero length")
    if min(image) < 1 or min(block) < 1:
        raise ShapeError(f"image_shape {image} and block_shape {block} must be >= 1")
    dilations = per_axis(node, "dilations", rank, 1, 1)
    strides = per_axis(node, "strides", rank, 1, 1)
    pads = node.attr_ints("pads", [0] * (2 * rank))
    if len(pads) != 2 * rank or min(pads) < 0:
        raise AttributeValueError(f"pads must hold {2 * rank} values >= 0, got {pads}")
    blocks = []
    for i in range(rank):
        extent = (block[i] - 1) * dilations[i] + 1
        span = image[i] + pads[i] + pads[i + rank] - extent
        if span < 0:
            raise ShapeError(f"block {block[i]} (dilation {dilations[i]}) does not fit axis {i} of the padded image")
        blocks.append(span // strides[i] + 1)
    if len(x_shape) != 3 or x_shape[1] % math.prod(block) or x_shape[2] != math.prod(blocks):
        raise ShapeError(
            f"input must be (N, C * {math.prod(block)}, {math.prod(blocks)}) for image {image}, block {block}, "
            f"got {tuple(x_shape)}"
        )
    return image, block, dilations, strides, pads, blocks


@register("Col2Im", since=(18,))
def col2im(node: Node, x, image_shape, block_shape):
    require_dtype(x, types_at(COL2IM_TYPES, node.version), "input")
    require_dtype(image_shape, (T.INT64,), "image_shape")
    require_dtype(block_shape, (T.INT64,), "block_shape")
    image, block, dilations, strides, pads, blocks = col2im_geometry(node, x.shape, image_shape, block_shape)
    rank = len(image)
    n = x.shape[0]
    channels = x.shape[1] // math.prod(block)
    is_float = proto_of(x.dtype) in FLOAT_TYPES
    acc_dtype = np.float64 if is_float else np.int64
    cols = x.astype(acc_dtype).reshape(n, channels, *block, *blocks)
    padded = np.zeros((n, channels, *(image[i] + pads[i] + pads[i + rank] for i in range(rank))), acc_dtype)
    for tap in itertools.product(*(range(k) for k in block)):
        where = tuple(
            slice(tap[i] * dilations[i], tap[i] * dilations[i] + (blocks[i] - 1) * strides[i] + 1, strides[i])
            for i in range(rank)
        )
        padded[(slice(None), slice(None), *where)] += cols[(slice(None), slice(None), *tap)]
    y = padded[(slice(None), slice(None), *(slice(pads[i], pads[i] + image[i]) for i in range(rank)))]
    if is_float:
        return (np.ascontiguousarray(arith.narrow(y, x.dtype)),)
    return (np.ascontiguousarray(y.astype(x.dtype)),)  # wraps modulo 2**bits, as integer addition in T


MAX_UNPOOL_TYPES = {9: IEEE_FLOATS, 22: (T.BFLOAT16,)}


def max_unpool_shape(node: Node, x_shape, output_shape) -> tuple[int, ...]:
    """MaxUnpool's inferred shape, (in - 1) * stride - pads + kernel per axis, and the output's (``output_shape``
    when given, else the inferred one)."""
    rank = len(x_shape) - 2
    kernel = node.attr_ints("kernel_shape")
    if rank < 1 or len(kernel) != rank or min(kernel) < 1:
        raise ShapeError(f"kernel_shape {kernel} must hold one value >= 1 per spatial axis of X {tuple(x_shape)}")
    strides = per_axis(node, "strides", rank, 1, 1)
    pads = node.attr_ints("pads", [0] * (2 * rank))
    if len(pads) != 2 * rank or min(pads) < 0:
        raise AttributeValueError(f"pads must hold {2 * rank} values >= 0, got {pads}")
    inferred = tuple(x_shape[:2]) + tuple(
        (x_shape[2 + i] - 1) * strides[i] - pads[i] - pads[i + rank] + kernel[i] for i in range(rank)
    )
    if min(inferred) < 0:
        raise ShapeError(f"the inferred output shape {list(inferred)} is negative")
    if output_shape is None:
        return inferred, inferred
    require_dtype(output_shape, (T.INT64,), "output_shape")
    shape = tuple(int(v) for v in output_shape.reshape(-1))
    if len(shape) != len(x_shape) or any(s < i for s, i in zip(shape, inferred)):
        raise ShapeError(f"output_shape {list(shape)} must have X's rank and hold the inferred shape {list(inferred)}")
    return inferred, shape


@register("MaxUnpool", since=(9, 11, 22))
def max_unpool(node: Node, x, indices, output_shape=None):
    require_dtype(x, types_at(MAX_UNPOOL_TYPES, node.version), "X")
    require_dtype(indices, (T.INT64,), "I")
    if indices.shape != x.shape:
        raise ShapeError(f"I must have X's shape {x.shape}, got {indices.shape}")
    inferred, shape = max_unpool_shape(node, x.shape, output_shape)
    y = np.zeros(math.prod(inferred), x.dtype)
    flat = indices.reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= y.size):
        raise ShapeError(f"I must index the flattened output of {y.size} elements, got values in [{flat.min()}, {flat.max()}]")
    # a repeated index keeps the last X element written to it (onnx.reference's loop order)
    last = flat.size - 1 - np.unique(flat[::-1], return_index=True)[1]
    y[flat[last]] = x.reshape(-1)[last]
    out = np.zeros(shape, x.dtype)
    out[tuple(slice(0, d) for d in inferred)] = y.reshape(inferred)
    return (out,)
