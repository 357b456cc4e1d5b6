"""ai.onnx transformer-layer operators: Attention, RotaryEmbedding, TensorScatter, SwiGLU.

    Attention:       S = scale * Q_h @ K_g(h)^T                   (K, V: past concatenated; g(h) = h // (Nq / Nkv))
                     C = softcap * tanh(S / softcap)              (softcap > 0; else C = S)
                     P = softmax(C + bias)                        bias: attn_mask, causal, window, nonpad (+/-inf)
                     Y = P @ V_g(h); a query row whose bias is -inf everywhere: P row = 0, Y row = 0
    RotaryEmbedding: x1, x2 = halves (or even/odd elements) of the first rotary_embedding_dim of each head
                     y1 = cos x1 - sin x2, y2 = sin x1 + cos x2; the rest of the head copied
    TensorScatter:   present = past; present[b, ..., (w[b] + s) (mod M), ...] = update[b, ..., s, ...]
    SwiGLU:          Y = A sigmoid(alpha A) B

Floats: everything in float64 from the exact inputs, each output rounded once to its type (``arith.narrow``);
copies (present_key/value, TensorScatter, RotaryEmbedding's unrotated part) are exact.
spec/ops/attention.md states every choice these kernels make.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import flag, require_dtype, require_same_type
from ..dtypes import IEEE_FLOATS, dtype_name, types_at
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register
from .float_functions import sigmoid64, softmax64
from .transformer_math import merge_heads, split_heads

ATTENTION_TYPES = {23: IEEE_FLOATS + (T.BFLOAT16,)}
#: attn_mask (U): bool, every integer, every float of T1/T2
MASK_TYPES = {23: (T.BOOL, T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64)
              + IEEE_FLOATS + (T.BFLOAT16,)}
ROTARY_TYPES = {23: (T.FLOAT, T.FLOAT16, T.BFLOAT16)}
SWIGLU_TYPES = {28: IEEE_FLOATS + (T.BFLOAT16,)}
SOFTMAX_PRECISIONS = (T.FLOAT, T.FLOAT16, T.DOUBLE, T.BFLOAT16)


# ----------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------


def _positive_attr(node: Node, name: str):
    value = node.attr(name, None, int)
    if value is not None and value < 1:
        raise AttributeValueError(f"{name} must be >= 1, got {value}")
    return value


def _to_heads(x: np.ndarray, heads: int, what: str, attr: str) -> np.ndarray:
    """(B, S, N * H) -> (B, N, S, H)."""
    if x.shape[2] % heads:
        raise ShapeError(f"{what} has hidden size {x.shape[2]}, not divisible by {attr} {heads}")
    return split_heads(x, heads)


def _qkv4(node: Node, q, k, v):
    """Q (B, Nq, S, H), K (B, Nkv, L, H), V (B, Nkv, L, Hv) in the input types, from 3-D or 4-D inputs."""
    if q.ndim not in (3, 4) or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ShapeError(f"Q, K and V must all be 3-D or all be 4-D, got shapes {q.shape}, {k.shape}, {v.shape}")
    q_heads, kv_heads = _positive_attr(node, "q_num_heads"), _positive_attr(node, "kv_num_heads")
    if q.ndim == 3:
        if q_heads is None or kv_heads is None:
            raise AttributeValueError("3-D Q, K and V need the q_num_heads and kv_num_heads attributes")
        q = _to_heads(q, q_heads, "Q", "q_num_heads")
        k = _to_heads(k, kv_heads, "K", "kv_num_heads")
        v = _to_heads(v, kv_heads, "V", "kv_num_heads")
    else:
        if q_heads is not None and q_heads != q.shape[1]:
            raise ShapeError(f"q_num_heads {q_heads} differs from the heads of 4-D Q {q.shape}")
        if kv_heads is not None and kv_heads != k.shape[1]:
            raise ShapeError(f"kv_num_heads {kv_heads} differs from the heads of 4-D K {k.shape}")
    if not q.shape[0] == k.shape[0] == v.shape[0]:
        raise ShapeError(f"Q, K and V have different batch sizes: {q.shape[0]}, {k.shape[0]}, {v.shape[0]}")
    if k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ShapeError(f"K {k.shape} and V {v.shape} (B, N, L, H) must have the same heads and sequence length")
    if q.shape[3] != k.shape[3]:
        raise ShapeError(f"Q's head size {q.shape[3]} differs from K's {k.shape[3]}")
    if q.shape[1] % k.shape[1]:
        raise ShapeError(f"q_num_heads {q.shape[1]} is not a multiple of kv_num_heads {k.shape[1]}")
    return q, k, v


def _with_past(k, v, past_key, past_value):
    """present_key, present_value: past concatenated before K, V along the sequence (exact copies)."""
    if (past_key is None) != (past_value is None):
        raise ShapeError("past_key and past_value must be given together")
    if past_key is None:
        return k, v
    b, n, _, h = k.shape
    if past_key.ndim != 4 or past_key.shape[:2] != (b, n) or past_key.shape[3] != h:
        raise ShapeError(f"past_key has shape {past_key.shape}; it must be ({b}, {n}, past_sequence_length, {h})")
    if past_value.ndim != 4 or past_value.shape != past_key.shape[:3] + (v.shape[3],):
        raise ShapeError(f"past_value has shape {past_value.shape}; it must be {past_key.shape[:3] + (v.shape[3],)}")
    return np.concatenate([past_key, k], axis=2), np.concatenate([past_value, v], axis=2)


def _mask_bias64(mask: np.ndarray, full: tuple[int, int, int, int]) -> np.ndarray:
    """attn_mask as an additive float64 bias broadcasting to (B, Nq, S, T): bool True -> 0, False -> -inf;
    numbers as they are; a last axis shorter than T padded with False / -inf."""
    total = full[3]
    if not 1 <= mask.ndim <= 4:
        raise ShapeError(f"attn_mask has shape {mask.shape}; it must have rank 1 to 4")
    if mask.shape[-1] > total:
        raise ShapeError(f"attn_mask has {mask.shape[-1]} key positions, more than the {total} keys")
    if mask.dtype == np.bool_:
        bias = np.where(mask, 0.0, -np.inf)
    else:
        bias = mask.astype(np.float64)
    if mask.shape[-1] < total:
        pad = [(0, 0)] * (mask.ndim - 1) + [(0, total - mask.shape[-1])]
        bias = np.pad(bias, pad, constant_values=-np.inf)
    try:
        broadcast = np.broadcast_shapes(bias.shape, full)
    except ValueError:
        broadcast = None
    if broadcast != full:
        raise ShapeError(f"attn_mask has shape {mask.shape}; it must broadcast to (batch, q_num_heads, "
                         f"q_sequence_length, total_sequence_length) = {full}")
    return bias


def _offsets(batch: int, seq: int, past_length: int | None, nonpad) -> np.ndarray:
    """The count of valid keys before each batch's query block: past_sequence_length, nonpad_kv_seqlen - S, or 0."""
    if past_length is not None:
        return np.full(batch, past_length, np.int64)
    if nonpad is not None:
        return nonpad.astype(np.int64) - seq
    return np.zeros(batch, np.int64)


def _attention_bias64(node: Node, mask, full, past_length, nonpad) -> np.ndarray:
    """The additive bias (B or 1, 1 or Nq, S, T): mask, causal frontier, sliding window, nonpad padding."""
    batch, _, seq, total = full
    bias = np.zeros((1, 1, seq, total))
    if mask is not None:
        bias = bias + _mask_bias64(mask, full)
    offsets = _offsets(batch, seq, past_length, nonpad)[:, None, None, None]
    # (B, 1, S, T): the absolute position of query i minus key j
    diff = offsets + np.arange(seq)[None, None, :, None] - np.arange(total)[None, None, None, :]
    allowed = np.ones(diff.shape, bool)
    if flag(node, "is_causal"):
        allowed &= diff >= 0
    left, right = node.attr("left_window_size", -1, int), node.attr("right_window_size", -1, int)
    for name, size in (("left_window_size", left), ("right_window_size", right)):
        if size < -1:
            raise AttributeValueError(f"{name} must be -1 or >= 0, got {size}")
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    if nonpad is not None:
        allowed &= np.arange(total)[None, None, None, :] < nonpad.astype(np.int64)[:, None, None, None]
    if not allowed.all():
        bias = bias + np.where(allowed, 0.0, -np.inf)
    return bias


@register("Attention", since=(23, 24, 25))
def attention(node: Node, q, k, v, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
    allowed = types_at(ATTENTION_TYPES, node.version)
    require_dtype(q, allowed, "Q")
    require_same_type(k, q, "K", "Q")
    require_dtype(v, allowed, "V")
    require_same_type(past_key, q, "past_key", "Q")
    require_same_type(past_value, v, "past_value", "V")
    if attn_mask is not None:
        require_dtype(attn_mask, types_at(MASK_TYPES, node.version), "attn_mask")
    input_rank = q.ndim
    q4, k4, v4 = _qkv4(node, q, k, v)
    batch, q_heads, seq, head = q4.shape
    present_key, present_value = _with_past(k4, v4, past_key, past_value)
    total = present_key.shape[2]
    if nonpad_kv_seqlen is not None:
        require_dtype(nonpad_kv_seqlen, (T.INT64,), "nonpad_kv_seqlen")
        if past_key is not None:
            raise ShapeError("nonpad_kv_seqlen (an external cache) cannot be used with past_key and past_value")
        if nonpad_kv_seqlen.shape != (batch,):
            raise ShapeError(f"nonpad_kv_seqlen has shape {nonpad_kv_seqlen.shape}; it must be ({batch},)")
        if (nonpad_kv_seqlen < 0).any() or (nonpad_kv_seqlen > total).any():
            raise ShapeError(f"nonpad_kv_seqlen {nonpad_kv_seqlen.tolist()} must lie in 0..{total} (the keys)")
    softmax_precision = node.attr("softmax_precision", None, int)
    if softmax_precision is not None and softmax_precision not in SOFTMAX_PRECISIONS:
        raise AttributeValueError(f"softmax_precision must be one of {list(SOFTMAX_PRECISIONS)}, got {softmax_precision}")
    mode = node.attr("qk_matmul_output_mode", 0, int)
    if mode not in (0, 1, 2, 3):
        raise AttributeValueError(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode}")
    softcap = float(np.float32(node.attr("softcap", 0.0, float)))
    if softcap < 0 or math.isnan(softcap):
        raise AttributeValueError(f"softcap must be >= 0 (0: no soft cap), got {softcap}")
    scale = node.attr("scale", None, float)
    scale = 1.0 / math.sqrt(head) if scale is None else float(np.float32(scale))

    full = (batch, q_heads, seq, total)
    past_length = None if past_key is None else past_key.shape[2]
    bias = np.broadcast_to(_attention_bias64(node, attn_mask, full, past_length, nonpad_kv_seqlen), full)
    group = q_heads // present_key.shape[1]
    keys = np.repeat(present_key.astype(np.float64), group, axis=1)
    values = np.repeat(present_value.astype(np.float64), group, axis=1)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        qk = scale * np.matmul(q4.astype(np.float64), np.swapaxes(keys, -1, -2))
        capped = softcap * np.tanh(qk / softcap) if softcap > 0 else qk
        scores = capped + bias
        # a row with no attendable key (its bias -inf everywhere) gets probabilities 0 and output 0
        dead = np.isneginf(np.max(bias, axis=-1, keepdims=True, initial=-np.inf))
        probs = np.where(dead, 0.0, softmax64(np.where(dead, 0.0, scores), (-1,)) if total else scores)
        y = np.matmul(probs, values)
    if input_rank == 3:
        y = merge_heads(y)
    debug = (qk, capped, scores, probs)[mode]
    return (arith.narrow(y, q.dtype), present_key, present_value, arith.narrow(debug, q.dtype))


# ----------------------------------------------------------------------------
# RotaryEmbedding
# ----------------------------------------------------------------------------


def _rotary_caches(cos_cache, sin_cache, position_ids, batch: int, seq: int, half: int):
    """cos and sin (B, S, rotary_dim / 2) in float64: gathered at position_ids from (P, rotary_dim / 2) caches,
    or the (B, S, rotary_dim / 2) caches themselves."""
    if cos_cache.shape != sin_cache.shape:
        raise ShapeError(f"cos_cache {cos_cache.shape} and sin_cache {sin_cache.shape} must have the same shape")
    if position_ids is not None:
        require_dtype(position_ids, (T.INT64,), "position_ids")
        if position_ids.shape != (batch, seq):
            raise ShapeError(f"position_ids has shape {position_ids.shape}; it must be ({batch}, {seq})")
        if cos_cache.ndim != 2 or cos_cache.shape[1] != half:
            raise ShapeError(f"cos_cache has shape {cos_cache.shape}; with position_ids it must be "
                             f"(max_position_id_plus_1, {half})")
        positions = cos_cache.shape[0]
        if position_ids.size and (position_ids.min() < 0 or position_ids.max() >= positions):
            raise ShapeError(f"position_ids must lie in 0..{positions - 1} (the rows of cos_cache and sin_cache), "
                             f"got {position_ids.min()}..{position_ids.max()}")
        return cos_cache[position_ids].astype(np.float64), sin_cache[position_ids].astype(np.float64)
    if cos_cache.shape != (batch, seq, half):
        raise ShapeError(f"cos_cache has shape {cos_cache.shape}; without position_ids it must be ({batch}, {seq}, {half})")
    return cos_cache.astype(np.float64), sin_cache.astype(np.float64)


@register("RotaryEmbedding", since=(23,))
def rotary_embedding(node: Node, x, cos_cache, sin_cache, position_ids=None):
    require_dtype(x, types_at(ROTARY_TYPES, node.version), "X")
    require_same_type(cos_cache, x, "cos_cache")
    require_same_type(sin_cache, x, "sin_cache")
    heads = node.attr("num_heads", 0, int)
    if heads < 0:
        raise AttributeValueError(f"num_heads must be >= 1, got {heads}")
    if x.ndim == 4:
        if heads and heads != x.shape[1]:
            raise ShapeError(f"num_heads {heads} differs from the heads of 4-D X {x.shape}")
        bsnh = x.transpose(0, 2, 1, 3)
    elif x.ndim == 3:
        if not heads:
            raise AttributeValueError("3-D X needs the num_heads attribute")
        if x.shape[2] % heads:
            raise ShapeError(f"X has hidden size {x.shape[2]}, not divisible by num_heads {heads}")
        bsnh = x.reshape(x.shape[0], x.shape[1], heads, x.shape[2] // heads)
    else:
        raise ShapeError(f"X has shape {x.shape}; it must be (B, N, S, H) or (B, S, N * H)")
    batch, seq, _, head = bsnh.shape
    dim = node.attr("rotary_embedding_dim", 0, int) or head
    if dim < 0 or dim > head or dim % 2:
        raise AttributeValueError(f"rotary_embedding_dim {dim} must be even and at most the head size {head}")
    cos, sin = _rotary_caches(cos_cache, sin_cache, position_ids, batch, seq, dim // 2)
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    wide = bsnh.astype(np.float64)
    rotate = wide[..., :dim]
    if flag(node, "interleaved"):
        x1, x2 = rotate[..., 0::2], rotate[..., 1::2]
    else:
        x1, x2 = rotate[..., : dim // 2], rotate[..., dim // 2 :]
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    out = wide.copy()
    if flag(node, "interleaved"):
        out[..., 0:dim:2], out[..., 1:dim:2] = real, imag
    else:
        out[..., : dim // 2], out[..., dim // 2 : dim] = real, imag
    y = np.array(arith.narrow(out, x.dtype))
    y[..., dim:] = bsnh[..., dim:]  # the unrotated part, copied exactly
    return (y.transpose(0, 2, 1, 3) if x.ndim == 4 else y.reshape(x.shape),)


# ----------------------------------------------------------------------------
# TensorScatter
# ----------------------------------------------------------------------------


@register("TensorScatter", since=(24,))
def tensor_scatter(node: Node, past_cache, update, write_indices=None):
    if update.dtype != past_cache.dtype:
        raise DTypeError(f"update has type {dtype_name(update.dtype)}, it must match past_cache "
                         f"({dtype_name(past_cache.dtype)})")
    mode = node.attr("mode", "linear", str)
    if mode not in ("linear", "circular"):
        raise AttributeValueError(f"mode must be 'linear' or 'circular', got {mode!r}")
    rank = past_cache.ndim
    axis = node.attr("axis", -2, int)
    if rank < 2 or not -rank <= axis < rank or axis % rank == 0:
        raise AttributeValueError(f"axis {axis} must name a sequence axis other than the batch axis 0 "
                                  f"of the rank-{rank} past_cache")
    axis %= rank
    if update.ndim != rank or any(update.shape[i] != past_cache.shape[i] for i in range(rank) if i != axis) \
            or update.shape[axis] > past_cache.shape[axis]:
        raise ShapeError(f"update has shape {update.shape}; it must equal past_cache's {past_cache.shape} except "
                         f"along axis {axis}, where it must be at most {past_cache.shape[axis]}")
    batch, length, capacity = past_cache.shape[0], update.shape[axis], past_cache.shape[axis]
    if write_indices is None:
        starts = np.zeros(batch, np.int64)
    else:
        require_dtype(write_indices, (T.INT64,), "write_indices")
        if write_indices.shape != (batch,):
            raise ShapeError(f"write_indices has shape {write_indices.shape}; it must be ({batch},)")
        starts = write_indices.astype(np.int64)
    if mode == "linear" and ((starts < 0).any() or (starts + length > capacity).any()):
        raise ShapeError(f"linear mode needs 0 <= write_indices and write_indices + {length} (the update's "
                         f"sequence length) <= {capacity} (max_sequence_length), got write_indices {starts.tolist()}")
    present = past_cache.copy()
    if length == 0 or present.size == 0:
        return (present,)
    target, source = np.moveaxis(present, axis, 1), np.moveaxis(update, axis, 1)  # views: writes reach present
    for b in range(batch):
        rows = starts[b] + np.arange(length)
        target[b, rows % capacity if mode == "circular" else rows] = source[b]
    return (present,)


# ----------------------------------------------------------------------------
# SwiGLU
# ----------------------------------------------------------------------------


@register("SwiGLU", since=(28,))
def swiglu(node: Node, a, b):
    require_dtype(a, types_at(SWIGLU_TYPES, node.version), "A")
    require_same_type(b, a, "B", "A")
    if a.shape != b.shape:
        raise ShapeError(f"A {a.shape} and B {b.shape} must have the same shape (SwiGLU does not broadcast)")
    alpha = float(np.float32(node.attr("alpha", 1.0, float)))
    a64 = a.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        y = a64 * sigmoid64(alpha * a64) * b.astype(np.float64)
    return (np.asarray(arith.narrow(y, a.dtype)),)
