"""com.microsoft weight-only quantization (onnxruntime's MatMulNBits quantizer, language models).

    MatMulNBits: Y = A @ W^T (+ bias)      A (..., K); W (N, K) = (q - zero_point) * scale, per block of
                 block_size along K; q packed in B (N, n_blocks, blob_size) uint8, blob_size =
                 block_size * bits / 8, codes low bits first; scales N * n_blocks; zero_points packed
                 uint8 (N rows of ceil(n_blocks * bits / 8) bytes) or of A's type (N * n_blocks); absent:
                 2^(bits - 1); g_idx (K,) int32: block of each k (default k // block_size)
    GatherBlockQuantized: output = take((data - zero_points) * scales, indices, gather_axis), the block-wise
                 parameters repeated block_size times along quantize_axis; data int4/uint4, or uint8 with
                 bits 2/4/8 (codes packed low bits first along the last axis)

Floats: W exactly in float64 (the dequantization), products and sums in float64, plus bias, one rounding to
T (MatMul's rule); spec/ops/contrib.md "Weight-only quantization".
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import normalize_axis, require_dtype, require_input, require_same_type
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import MS_DOMAIN, register

FLOAT_TYPES = (T.FLOAT, T.FLOAT16, T.BFLOAT16)


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first ``count`` codes along the last axis of uint8 ``packed``, ``bits`` each, low bits first."""
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    codes = (packed[..., :, None] >> shifts) & np.uint8((1 << bits) - 1)
    codes = codes.reshape(packed.shape[:-1] + (packed.shape[-1] * per_byte,))
    return codes[..., :count]


def _positive(node: Node, name: str, default=None) -> int:
    if default is None and not node.has(name):
        raise AttributeValueError(f"required attribute '{name}' is missing")
    value = node.attr(name, default, int)
    if value < 1:
        raise AttributeValueError(f"{name} must be >= 1, got {value}")
    return value


def nbits_weight(node: Node, b: np.ndarray, scales: np.ndarray, zero_points, g_idx, a_dtype) -> np.ndarray:
    """W (N, K) in float64, exactly (q - zero_point) * scale."""
    k = _positive(node, "K")
    n = _positive(node, "N")
    bits = node.attr("bits", 4, int)
    if bits not in (2, 4, 8):
        raise AttributeValueError(f"bits={bits} is not supported (refquant implements 2, 4 and 8)")
    block = _positive(node, "block_size")
    if block < 16 or block & (block - 1):
        raise AttributeValueError(f"block_size must be a power of 2 and >= 16, got {block}")
    if node.attr("weight_prepacked", 0, int) != 0:
        raise AttributeValueError("weight_prepacked=1 (an execution provider's own layout) is not supported")
    n_blocks = -(-k // block)
    blob = block * bits // 8
    require_dtype(b, (T.UINT8,), "B")
    if b.shape != (n, n_blocks, blob):
        raise ShapeError(f"B has shape {list(b.shape)}, expected [N, n_blocks, blob_size] = {[n, n_blocks, blob]}")
    require_same_type(scales, np.empty(0, a_dtype), "scales", "A")
    if scales.size != n * n_blocks:
        raise ShapeError(f"scales has {scales.size} elements, expected N * n_blocks = {n * n_blocks}")
    scale = scales.astype(np.float64).reshape(n, n_blocks)
    if zero_points is None:
        zp = np.full((n, n_blocks), float(1 << (bits - 1)))
    elif zero_points.dtype == np.uint8:
        row = -(-n_blocks * bits // 8)
        if zero_points.size != n * row:
            raise ShapeError(f"uint8 zero_points have {zero_points.size} elements, expected N * "
                             f"ceil(n_blocks * bits / 8) = {n * row}")
        zp = unpack_codes(zero_points.reshape(n, row), bits, n_blocks).astype(np.float64)
    elif zero_points.dtype == a_dtype:
        if zero_points.size != n * n_blocks:
            raise ShapeError(f"zero_points have {zero_points.size} elements, expected N * n_blocks = {n * n_blocks}")
        zp = zero_points.astype(np.float64).reshape(n, n_blocks)
    else:
        raise DTypeError(f"zero_points have dtype {zero_points.dtype}: uint8 (packed) or A's type {np.dtype(a_dtype)}")
    q = unpack_codes(b.reshape(n, n_blocks * blob), bits, k).astype(np.float64)
    if g_idx is None:
        group = np.arange(k) // block
    else:
        require_dtype(g_idx, (T.INT32,), "g_idx")
        if g_idx.shape != (k,):
            raise ShapeError(f"g_idx has shape {list(g_idx.shape)}, expected [K] = [{k}]")
        if g_idx.size and (g_idx.min() < 0 or g_idx.max() >= n_blocks):
            raise ShapeError(f"g_idx values must be in [0, {n_blocks - 1}], got {g_idx.min()} .. {g_idx.max()}")
        group = g_idx.astype(np.int64)
    return (q - zp[:, group]) * scale[:, group]


@register("MatMulNBits", since=(1,), domain=MS_DOMAIN)
def matmul_nbits(node: Node, a, b=None, scales=None, zero_points=None, g_idx=None, bias=None):
    require_input(b, "B")
    require_input(scales, "scales")
    require_dtype(a, FLOAT_TYPES, "A")
    if a.ndim < 1 or a.shape[-1] != node.attr("K", a.shape[-1] if a.ndim else -1, int):
        raise ShapeError(f"A has shape {list(a.shape)}: its last dimension must be K = {node.attr('K', None, int)}")
    w = nbits_weight(node, b, scales, zero_points, g_idx, a.dtype)
    y = np.matmul(a.astype(np.float64), w.T)
    if bias is not None:
        require_same_type(bias, a, "bias", "A")
        if bias.shape != (w.shape[0],):
            raise ShapeError(f"bias has shape {list(bias.shape)}, expected [N] = [{w.shape[0]}]")
        y = y + bias.astype(np.float64)
    return (arith.narrow(y, a.dtype),)


GATHER_DATA_TYPES = (T.INT4, T.UINT4, T.UINT8)


def _expand_blocks(params: np.ndarray, axis: int, block: int, length: int) -> np.ndarray:
    """Block-wise parameters repeated ``block`` times along ``axis``, cut to ``length``."""
    return np.take(np.repeat(params, block, axis=axis), np.arange(length), axis=axis)


@register("GatherBlockQuantized", since=(1,), domain=MS_DOMAIN)
def gather_block_quantized(node: Node, data, indices=None, scales=None, zero_points=None):
    require_input(indices, "indices")
    require_input(scales, "scales")
    require_dtype(indices, (T.INT32, T.INT64), "indices")
    require_dtype(scales, FLOAT_TYPES, "scales")
    require_dtype(data, GATHER_DATA_TYPES, "data")  # the float8/float4 variants: not implemented
    bits = node.attr("bits", 4, int)
    packed = data.dtype == np.uint8
    if packed and bits not in (2, 4, 8):
        raise AttributeValueError(f"bits={bits}: uint8 data takes 2, 4 or 8")
    if not packed and bits != 4:
        raise AttributeValueError(f"bits={bits}: int4/uint4 data takes 4")
    block = node.attr("block_size", 128, int)
    if block < 16 or block & (block - 1):
        raise AttributeValueError(f"block_size must be a power of 2 and >= 16, got {block}")
    rank = data.ndim
    if rank < 1:
        raise ShapeError("data must have rank >= 1")
    gather_axis = normalize_axis(node.attr("gather_axis", 0, int), rank, "gather_axis")
    quantize_axis = normalize_axis(node.attr("quantize_axis", 1, int), rank, "quantize_axis")
    per = 8 // bits if packed else 1
    if packed and per > 1 and quantize_axis != rank - 1:
        raise AttributeValueError(f"uint8 data packs {bits}-bit codes along the last axis: quantize_axis must "
                                  f"be {rank - 1}, got {quantize_axis}")
    if packed:
        q = unpack_codes(data, bits, data.shape[-1] * per) if per > 1 else data
    else:
        q = data
    q = q.astype(np.int64)
    n_blocks = -(-q.shape[quantize_axis] // block)
    want = tuple(n_blocks if i == quantize_axis else d for i, d in enumerate(q.shape))
    if scales.shape != want:
        raise ShapeError(f"scales have shape {list(scales.shape)}, expected {list(want)} (data's logical shape "
                         f"{list(q.shape)} with ceil(dim / block_size) along quantize_axis {quantize_axis})")
    if zero_points is None:
        zp = np.full(want, (1 << (bits - 1)) if packed else 0, np.int64)
    else:
        require_same_type(zero_points, data, "zero_points", "data")
        zwant = want[:-1] + (-(-n_blocks // per),) if packed and per > 1 else want
        if zero_points.shape != zwant:
            raise ShapeError(f"zero_points have shape {list(zero_points.shape)}, expected {list(zwant)}")
        zp = unpack_codes(zero_points, bits, n_blocks) if packed and per > 1 else zero_points
        zp = zp.astype(np.int64)
    length = q.shape[quantize_axis]
    real = (q - _expand_blocks(zp, quantize_axis, block, length)).astype(np.float64) * _expand_blocks(
        scales.astype(np.float64), quantize_axis, block, length)
    dim = q.shape[gather_axis]
    index = indices.astype(np.int64)
    if index.size and (index.min() < -dim or index.max() >= dim):
        raise ShapeError(f"indices must be in [{-dim}, {dim - 1}] (data's axis {gather_axis}), got "
                         f"{index.min()} .. {index.max()}")
    out = np.take(real, np.where(index < 0, index + dim, index), axis=gather_axis)
    return (arith.narrow(out, scales.dtype),)
