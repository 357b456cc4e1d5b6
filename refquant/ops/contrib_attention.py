"""com.microsoft Attention and QAttention (as onnxruntime's contrib documentation and CPU kernels define them;
MultiHeadAttention: query/key/value formats below).

    Attention:  [Q | K | V] = input @ weights + bias                       (B, S, D + D + D_v)
                K, V        = concat(past[0], K), concat(past[1], V)      along the sequence, per head
                P           = softmax(scale * Q_h @ K_h^T + attention_bias + mask, causal keys excluded)
                output      = concat_h(P @ V_h)                           (B, S, D_v);  present = (K, V)
    QAttention: the same with [Q | K | V] = (input - input_zp) @ (weight - weight_zp) * input_scale *
                weight_scale + bias, the integer product exact

scale defaults to 1 / sqrt(head_size) (also when the attribute is 0, as onnxruntime reads it). mask: the
formats of transformer_math.attention_mask64, mask_filter_value (default -10000) added to masked scores.
Everything in float64 from the exact inputs; each output rounded once to T. spec/ops/contrib.md.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto as T

from .. import arith, exact_products
from ..checks import flag, require_dtype, require_input, require_same_type
from ..dtypes import EIGHT_BIT_INTS
from ..errors import AttributeValueError, QuantParamError, ShapeError
from ..node import Node
from ..qparams import check_scale, scalar_param, zero_point_of
from ..registry import MS_DOMAIN, register
from .integer_products import minus_zero_point
from .transformer_math import attention_mask64, merge_heads, scaled_dot_product_attention64, split_heads

ATTENTION_TYPES = (T.FLOAT, T.FLOAT16, T.BFLOAT16)
QATTENTION_FLOAT_TYPES = (T.FLOAT, T.FLOAT16)


def _num_heads(node: Node) -> int:
    heads = node.attr("num_heads", None, int)
    if heads is None:
        raise AttributeValueError("required attribute 'num_heads' is missing")
    if heads < 1:
        raise AttributeValueError(f"num_heads must be >= 1, got {heads}")
    return heads


def _scale(node: Node, head_size: int) -> float:
    """The ``scale`` attribute (its float32 value); absent or 0: 1 / sqrt(head_size) in float64."""
    scale = float(np.float32(node.attr("scale", 0.0, float)))
    return scale if scale != 0.0 else 1.0 / math.sqrt(head_size)


def _filter_value(node: Node) -> float:
    return float(np.float32(node.attr("mask_filter_value", -10000.0, float)))


def _refuse_unsupported(node: Node, names: tuple[str, ...]) -> None:
    for name in names:
        if node.attr(name, 0, int) != 0:
            raise AttributeValueError(f"{name}={node.attr(name, 0, int)} is not supported (refquant implements {name}=0)")


def _qkv_sizes(node: Node, width: int, heads: int) -> tuple[int, int, int]:
    """(D, D, D_v): qkv_hidden_sizes, or width / 3 each; each divisible by num_heads, Q's and K's equal."""
    sizes = node.attr_ints("qkv_hidden_sizes", None)
    if sizes is None:
        if width % 3:
            raise ShapeError(f"weights have {width} columns, not divisible by 3 (give qkv_hidden_sizes)")
        sizes = [width // 3] * 3
    if len(sizes) != 3:
        raise AttributeValueError(f"qkv_hidden_sizes must have 3 elements, got {sizes}")
    if sizes[0] != sizes[1]:
        raise AttributeValueError(f"qkv_hidden_sizes: Q's and K's hidden sizes must be equal, got {sizes}")
    if any(s <= 0 or s % heads for s in sizes):
        raise AttributeValueError(f"qkv_hidden_sizes {sizes}: each must be a positive multiple of num_heads {heads}")
    if sum(sizes) != width:
        raise ShapeError(f"weights have {width} columns, qkv_hidden_sizes {sizes} sum to {sum(sizes)}")
    return tuple(sizes)


def _check_projection(x: np.ndarray, weights: np.ndarray, bias, what_w: str) -> None:
    if x.ndim != 3:
        raise ShapeError(f"input must be 3-D (batch, sequence, input_hidden), got shape {x.shape}")
    if weights.ndim != 2 or weights.shape[0] != x.shape[2]:
        raise ShapeError(f"{what_w} has shape {weights.shape}; it must be ({x.shape[2]}, D + D + D_v)")
    if bias is not None and bias.shape != (weights.shape[1],):
        raise ShapeError(f"bias has shape {bias.shape}; it must be ({weights.shape[1]},)")


def _self_attention(node: Node, qkv: np.ndarray, sizes, heads: int, mask_index, past, attention_bias, dtype):
    """Attention's body after the projection: qkv (B, S, D + D + D_v) float64 -> (output, present)."""
    batch, seq, _ = qkv.shape
    d, _, dv = sizes
    q = split_heads(qkv[..., :d], heads)
    k = split_heads(qkv[..., d : 2 * d], heads)
    v = split_heads(qkv[..., 2 * d :], heads)
    past_length = 0
    if past is not None:
        require_same_type(past, np.empty(0, dtype), "past", "the float inputs")
        head = d // heads
        if d != dv:
            raise ShapeError(f"past needs equal K and V hidden sizes, got {d} and {dv}")
        if past.ndim != 5 or past.shape[:3] != (2, batch, heads) or past.shape[4] != head:
            raise ShapeError(f"past has shape {past.shape}; it must be (2, {batch}, {heads}, past_sequence, {head})")
        past_length = past.shape[3]
        k = np.concatenate([past[0].astype(np.float64), k], axis=2)
        v = np.concatenate([past[1].astype(np.float64), v], axis=2)
    total = past_length + seq
    additive = None
    if mask_index is not None:
        require_dtype(mask_index, (T.INT32,), "mask_index")
        additive = attention_mask64(mask_index, batch, seq, total, past_length, _filter_value(node))
    if attention_bias is not None:
        require_same_type(attention_bias, np.empty(0, dtype), "attention_bias", "the float inputs")
        if attention_bias.ndim != 4 or attention_bias.shape[0] not in (1, batch) or attention_bias.shape[1] not in (1, heads) \
                or attention_bias.shape[2:] != (seq, total):
            raise ShapeError(f"attention_bias has shape {attention_bias.shape}; it must be ({batch} or 1, {heads} or 1, {seq}, {total})")
        bias64 = attention_bias.astype(np.float64)
        additive = bias64 if additive is None else additive + bias64
    causal = flag(node, "unidirectional")
    context = scaled_dot_product_attention64(q, k, v, _scale(node, d // heads), additive, causal)
    output = arith.narrow(merge_heads(context), dtype)
    present = arith.narrow(np.stack([k, v]), dtype) if d == dv else None
    return output, present


def _outputs(node: Node, output, present):
    if present is None and len(node.proto.output) > 1 and node.proto.output[1]:
        raise ShapeError("present needs equal K and V hidden sizes")
    return (output, present) if present is not None else (output,)


@register("Attention", since=(1,), domain=MS_DOMAIN)
def attention(node: Node, x, weights=None, bias=None, mask_index=None, past=None, attention_bias=None,
              past_sequence_length=None):
    require_input(weights, "weights")
    require_dtype(x, ATTENTION_TYPES, "input")
    require_same_type(weights, x, "weights", "input")
    require_same_type(bias, x, "bias", "input")
    _refuse_unsupported(node, ("do_rotary", "past_present_share_buffer"))
    heads = _num_heads(node)
    _check_projection(x, weights, bias, "weights")
    sizes = _qkv_sizes(node, weights.shape[1], heads)
    qkv = np.matmul(x.astype(np.float64), weights.astype(np.float64))
    if bias is not None:
        qkv = qkv + bias.astype(np.float64)
    return _outputs(node, *_self_attention(node, qkv, sizes, heads, mask_index, past, attention_bias, x.dtype))


@register("QAttention", since=(1,), domain=MS_DOMAIN)
def qattention(node: Node, x, weight=None, bias=None, input_scale=None, weight_scale=None, mask_index=None,
               input_zero_point=None, weight_zero_point=None, past=None):
    """[Q | K | V] = (input - input_zero_point) @ (weight - weight_zero_point) * input_scale * weight_scale + bias:
    the integer product exact (int64), the scaling and bias in float64; input_scale, input_zero_point: scalars;
    weight_scale, weight_zero_point: scalars or one per column (D + D + D_v)."""
    for value, what in ((weight, "weight"), (bias, "bias"), (input_scale, "input_scale"), (weight_scale, "weight_scale")):
        require_input(value, what)
    require_dtype(x, EIGHT_BIT_INTS, "input")
    require_dtype(weight, EIGHT_BIT_INTS, "weight")
    require_dtype(bias, QATTENTION_FLOAT_TYPES, "bias")
    require_same_type(input_scale, bias, "input_scale", "bias")
    require_same_type(weight_scale, bias, "weight_scale", "bias")
    _refuse_unsupported(node, ("do_rotary", "past_present_share_buffer"))
    heads = _num_heads(node)
    _check_projection(x, weight, bias, "weight")
    sizes = _qkv_sizes(node, weight.shape[1], heads)
    columns = weight.shape[1]
    check_scale(input_scale, "input_scale")
    check_scale(weight_scale, "weight_scale")
    a_scale = scalar_param(input_scale, "input_scale").astype(np.float64)
    a_zp = scalar_param(zero_point_of(input_zero_point, x, "input"), "input_zero_point")
    b_zp = zero_point_of(weight_zero_point, weight, "weight")
    for param, what in ((weight_scale, "weight_scale"), (b_zp, "weight_zero_point")):
        if param.size != 1 and param.shape != (columns,):
            raise QuantParamError(f"{what} has shape {param.shape}; it must be a scalar or ({columns},): one per column")
    b_scale = weight_scale.reshape(()) if weight_scale.size == 1 else weight_scale
    b_zp = b_zp.reshape(()) if b_zp.size == 1 else b_zp
    rows = x.reshape(-1, x.shape[2])
    acc = exact_products.exact_matmul(minus_zero_point(rows, a_zp), minus_zero_point(weight, b_zp))
    qkv = (acc.astype(np.float64) * (a_scale * b_scale.astype(np.float64)) + bias.astype(np.float64))
    qkv = qkv.reshape(x.shape[0], x.shape[1], columns)
    return _outputs(node, *_self_attention(node, qkv, sizes, heads, mask_index, past, None, bias.dtype))


def _mha_qkv(query, key, value, bias, heads: int):
    """MultiHeadAttention's Q (B, N, S, H), K (B, N, L, H), V (B, N, L, H_v) in float64 and whether K/V came
    as (B, N, L, H) (cross attention: no past allowed). Formats of onnxruntime's multihead_attention_helper.h."""
    batch, seq = query.shape[:2]
    bnsh = False
    if query.ndim == 5:  # packed QKV (B, S, N, 3, H)
        if key is not None or value is not None:
            raise ShapeError("packed QKV query (B, S, N, 3, H) takes no key or value")
        if query.shape[2] != heads or query.shape[3] != 3:
            raise ShapeError(f"packed QKV query has shape {query.shape}; it must be ({batch}, {seq}, {heads}, 3, H)")
        if bias is not None:
            raise ShapeError("bias with packed QKV is not supported")
        q64 = query.astype(np.float64)
        return (q64[:, :, :, 0].transpose(0, 2, 1, 3), q64[:, :, :, 1].transpose(0, 2, 1, 3),
                q64[:, :, :, 2].transpose(0, 2, 1, 3), False)
    if query.ndim != 3:
        raise ShapeError(f"query has shape {query.shape}; it must be (B, S, D) or packed QKV (B, S, N, 3, H)")
    d = query.shape[2]
    if d % heads:
        raise ShapeError(f"query hidden size {d} is not divisible by num_heads {heads}")
    head = d // heads
    if key is None:
        raise ShapeError("key is required unless query is packed QKV (B, S, N, 3, H)")
    if key.ndim == 5:  # packed KV (B, L, N, 2, H)
        if value is not None:
            raise ShapeError("packed KV key (B, L, N, 2, H) takes no value")
        if key.shape[0] != batch or key.shape[2:] != (heads, 2, head):
            raise ShapeError(f"packed KV key has shape {key.shape}; it must be ({batch}, L, {heads}, 2, {head})")
        if bias is not None:
            raise ShapeError("bias with packed KV is not supported")
        k64 = key.astype(np.float64)
        k, v = k64[:, :, :, 0].transpose(0, 2, 1, 3), k64[:, :, :, 1].transpose(0, 2, 1, 3)
        return split_heads(query.astype(np.float64), heads), k, v, False
    require_input(value, "value")
    if key.ndim == 3:
        if key.shape != (batch, key.shape[1], d) or value.ndim != 3 or value.shape[:2] != key.shape[:2] \
                or value.shape[2] % heads:
            raise ShapeError(f"key {key.shape} and value {value.shape} must be ({batch}, L, {d}) and ({batch}, L, N * H_v)")
    elif key.ndim == 4:  # cross attention, already projected (B, N, L, H)
        if key.shape[:2] != (batch, heads) or key.shape[3] != head or value.ndim != 4 \
                or value.shape[:3] != key.shape[:3]:
            raise ShapeError(f"key {key.shape} and value {value.shape} must be ({batch}, {heads}, L, {head}) and "
                             f"({batch}, {heads}, L, H_v)")
        bnsh = True
    else:
        raise ShapeError(f"key has shape {key.shape}; it must be (B, L, D), packed KV (B, L, N, 2, H) or (B, N, L, H)")
    q, k, v = query.astype(np.float64), key.astype(np.float64), value.astype(np.float64)
    if bias is not None:
        dv = value.shape[2] if value.ndim == 3 else value.shape[1] * value.shape[3]
        if bias.shape != (2 * d + dv,):
            raise ShapeError(f"bias has shape {bias.shape}; it must be ({2 * d + dv},)")
        b64 = bias.astype(np.float64)
        q = q + b64[:d]
        if bnsh:  # onnxruntime adds only Q's bias when key/value are (B, N, L, H)
            pass
        else:
            k, v = k + b64[d : 2 * d], v + b64[2 * d :]
    if not bnsh:
        k, v = split_heads(k, heads), split_heads(v, heads)
    return split_heads(q, heads), k, v, bnsh


def _key_padding_mask64(mask, batch: int, seq: int, total: int, filter_value: float):
    """key_padding_mask (int32) -> additive (B, 1, S, T): (B) valid key lengths, (B, T) with 0 masking a key,
    (B, S, T) per query (onnxruntime's CPU kernel refuses (B, L) with a past, and the (3B + 2) form is refused)."""
    require_dtype(mask, (T.INT32,), "key_padding_mask")
    if mask.ndim == 1 and mask.shape != (batch,) or mask.ndim == 2 and mask.shape != (batch, total) or mask.ndim == 4:
        raise ShapeError(f"key_padding_mask has shape {mask.shape}; it must be ({batch},), ({batch}, {total}) or "
                         f"({batch}, {seq}, {total}) (the (3 * batch + 2) form is not supported)")
    return attention_mask64(mask, batch, seq, total, 0, filter_value)


@register("MultiHeadAttention", since=(1,), domain=MS_DOMAIN)
def multi_head_attention(node: Node, query, key=None, value=None, bias=None, key_padding_mask=None,
                         attention_bias=None, past_key=None, past_value=None, past_sequence_length=None,
                         cache_indirection=None):
    require_dtype(query, ATTENTION_TYPES, "query")
    for other, what in ((key, "key"), (value, "value"), (bias, "bias"), (attention_bias, "attention_bias"),
                        (past_key, "past_key"), (past_value, "past_value")):
        require_same_type(other, query, what, "query")
    if past_sequence_length is not None or cache_indirection is not None:
        raise ShapeError("past_sequence_length and cache_indirection (beam-search decoding) are not supported")
    if len(node.proto.output) > 3 and node.proto.output[3]:
        raise ShapeError("output qk is not supported")
    heads = _num_heads(node)
    q, k, v, bnsh = _mha_qkv(query, key, value, bias, heads)
    batch, _, seq, head = q.shape
    kv = k.shape[2]  # L
    if (past_key is None) != (past_value is None):
        raise ShapeError("past_key and past_value must be given together")
    if past_key is not None:
        if bnsh:
            raise ShapeError("past_key/past_value with key/value in (B, N, L, H) are not supported")
        if past_key.ndim != 4 or past_key.shape[:2] != (batch, heads) or past_key.shape[3] != head \
                or past_value.shape != past_key.shape[:3] + (v.shape[3],):
            raise ShapeError(f"past_key {past_key.shape} / past_value {past_value.shape} must be "
                             f"({batch}, {heads}, P, {head}) / ({batch}, {heads}, P, {v.shape[3]})")
        k = np.concatenate([past_key.astype(np.float64), k], axis=2)
        v = np.concatenate([past_value.astype(np.float64), v], axis=2)
    total = k.shape[2]
    additive = None
    if key_padding_mask is not None:
        additive = _key_padding_mask64(key_padding_mask, batch, seq, total, _filter_value(node))
    if attention_bias is not None:
        if attention_bias.ndim != 4 or attention_bias.shape[0] not in (1, batch) or attention_bias.shape[1] not in (1, heads) \
                or attention_bias.shape[2:] != (seq, total):
            raise ShapeError(f"attention_bias has shape {attention_bias.shape}; it must be ({batch} or 1, {heads} or 1, {seq}, {total})")
        bias64 = attention_bias.astype(np.float64)
        additive = bias64 if additive is None else additive + bias64
    causal = flag(node, "unidirectional")
    if causal and kv != seq:  # onnxruntime's CPU output is not the causal softmax there (measured, 1.32)
        raise ShapeError(f"unidirectional=1 needs key sequence length {kv} equal to the query's {seq}")
    context = scaled_dot_product_attention64(q, k, v, _scale(node, head), additive, causal)
    dtype = query.dtype
    return arith.narrow(merge_heads(context), dtype), arith.narrow(k, dtype), arith.narrow(v, dtype)
