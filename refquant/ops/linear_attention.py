"""ai.onnx recurrent-state sequence operators: LinearAttention and CausalConvWithState.

    LinearAttention:     per token t, per key/value head (state S: d_k x d_v, from past_state or zeros)
                         linear:      S = S + k_t v_t^T
                         gated:       S = exp(g_t) S + k_t v_t^T
                         delta:       S = S + beta_t k_t (v_t - S^T k_t)^T
                         gated_delta: S = exp(g_t) S; then as delta
                         o_t = scale * q_t^T S (query head h reads KV head h // (Nq / Nkv))
    CausalConvWithState: P = concat(past_state or zeros (B, C, k - 1), input) along the length
                         output[b, c, t] = sum_j weight[c, 0, j] P[b, c, t + j] + bias[c]   (then x sigmoid(x)
                         for activation silu / swish); present_state = the last k - 1 positions of P

Floats: the recurrence and the convolution in float64 from the exact inputs, each output rounded once to its
type (``arith.narrow``); present_state of CausalConvWithState is an exact copy.
spec/ops/attention.md states every choice these kernels make.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_same_type
from ..dtypes import types_at
from ..errors import AttributeValueError, ShapeError
from ..node import Node
from ..registry import register
from .float_functions import sigmoid64

STATE_FLOATS = (T.FLOAT, T.FLOAT16, T.BFLOAT16)
LINEAR_ATTENTION_TYPES = {27: STATE_FLOATS}
CAUSAL_CONV_TYPES = {27: STATE_FLOATS}
UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


def _heads(node: Node, name: str) -> int:
    value = node.attr(name, None, int)
    if value is None:
        raise AttributeValueError(f"required attribute '{name}' is missing")
    if value < 1:
        raise AttributeValueError(f"{name} must be >= 1, got {value}")
    return value


def _unpack(x: np.ndarray, heads: int, what: str, attr: str) -> np.ndarray:
    """(B, T, N * D) -> (B, N, T, D) in float64."""
    if x.shape[2] % heads:
        raise ShapeError(f"{what} has last dimension {x.shape[2]}, not divisible by {attr} {heads}")
    b, t, d = x.shape
    return x.astype(np.float64).reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def _gate(value, name: str, batch: int, steps: int, widths: tuple[int, ...]):
    """decay or beta (B, T, w) -> float64 (B, H, T, d) for w = H * d, H = widths[0] (kv_num_heads), d = 1
    or d_k; beta's width 1 is (B, 1, T, 1), shared by every head."""
    if value.ndim != 3 or value.shape[:2] != (batch, steps) or value.shape[2] not in widths:
        raise ShapeError(f"{name} has shape {value.shape}; it must be ({batch}, {steps}, w) with w in {sorted(set(widths))}")
    heads = 1 if value.shape[2] == 1 else widths[0]
    return value.astype(np.float64).reshape(batch, steps, heads, -1).transpose(0, 2, 1, 3)


@register("LinearAttention", since=(27,))
def linear_attention(node: Node, query, key, value, past_state=None, decay=None, beta=None):
    allowed = types_at(LINEAR_ATTENTION_TYPES, node.version)
    require_dtype(query, allowed, "query")
    require_same_type(key, query, "key", "query")
    require_same_type(value, query, "value", "query")
    require_same_type(decay, query, "decay", "query")
    require_same_type(beta, query, "beta", "query")
    if past_state is not None:
        require_dtype(past_state, allowed, "past_state")
    rule = node.attr("update_rule", "gated_delta", str)
    if rule not in UPDATE_RULES:
        raise AttributeValueError(f"update_rule must be one of {list(UPDATE_RULES)}, got {rule!r}")
    q_heads, kv_heads = _heads(node, "q_num_heads"), _heads(node, "kv_num_heads")
    if q_heads % kv_heads:
        raise AttributeValueError(f"q_num_heads {q_heads} is not a multiple of kv_num_heads {kv_heads}")
    if node.attr("chunk_size", 64, int) < 1:
        raise AttributeValueError(f"chunk_size must be >= 1, got {node.attr('chunk_size', 64, int)}")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    for needed, given, name in ((gated, decay, "decay"), (delta, beta, "beta")):
        if needed and given is None:
            raise ShapeError(f"update_rule '{rule}' needs the {name} input")
        if not needed and given is not None:
            raise ShapeError(f"update_rule '{rule}' takes no {name} input")
    for x, what in ((query, "query"), (key, "key"), (value, "value")):
        if x.ndim != 3:
            raise ShapeError(f"{what} has shape {x.shape}; it must be 3-D (B, T, heads * head_size)")
    batch, steps = query.shape[:2]
    if key.shape[:2] != (batch, steps) or value.shape[:2] != (batch, steps):
        raise ShapeError(f"query {query.shape}, key {key.shape} and value {value.shape} must share (B, T)")
    q = _unpack(query, q_heads, "query", "q_num_heads")
    k = _unpack(key, kv_heads, "key", "kv_num_heads")
    v = _unpack(value, kv_heads, "value", "kv_num_heads")
    d_k, d_v = q.shape[3], v.shape[3]
    if k.shape[3] != d_k:
        raise ShapeError(f"key's head size {k.shape[3]} differs from query's {d_k}")
    g = _gate(decay, "decay", batch, steps, (kv_heads, kv_heads * d_k)) if gated else None
    b = _gate(beta, "beta", batch, steps, (kv_heads, 1)) if delta else None
    shape = (batch, kv_heads, d_k, d_v)
    if past_state is not None and past_state.shape != shape:
        raise ShapeError(f"past_state has shape {past_state.shape}; it must be {shape}")
    state = np.zeros(shape) if past_state is None else past_state.astype(np.float64)
    scale = float(np.float32(node.attr("scale", 0.0, float)))
    scale = scale if scale != 0.0 else 1.0 / math.sqrt(d_k)
    group = q_heads // kv_heads
    out = np.empty((batch, q_heads, steps, d_v))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            k_t, v_t = k[:, :, t, :], v[:, :, t, :]
            if gated:
                state = state * np.exp(g[:, :, t, :])[..., None]
            if delta:
                v_t = b[:, :, t, :] * (v_t - np.einsum("bhdm,bhd->bhm", state, k_t))
            state = state + k_t[..., :, None] * v_t[..., None, :]
            out[:, :, t, :] = scale * np.einsum("bhd,bhdm->bhm", q[:, :, t, :], np.repeat(state, group, axis=1))
    output = arith.narrow(out.transpose(0, 2, 1, 3).reshape(batch, steps, q_heads * d_v), query.dtype)
    state_dtype = query.dtype if past_state is None else past_state.dtype
    return output, arith.narrow(state, state_dtype)


@register("CausalConvWithState", since=(27,))
def causal_conv_with_state(node: Node, x, weight, bias=None, past_state=None):
    require_dtype(x, types_at(CAUSAL_CONV_TYPES, node.version), "input")
    for other, what in ((weight, "weight"), (bias, "bias"), (past_state, "past_state")):
        require_same_type(other, x, what, "input")
    activation = node.attr("activation", "none", str)
    if activation not in ("none", "silu", "swish"):
        raise AttributeValueError(f"activation must be 'none', 'silu' or 'swish', got {activation!r}")
    if x.ndim != 3:
        raise ShapeError(f"input has shape {x.shape}; it must be 3-D (batch_size, channels, length)")
    batch, channels, length = x.shape
    if weight.ndim != 3 or weight.shape[:2] != (channels, 1) or weight.shape[2] < 1:
        raise ShapeError(f"weight has shape {weight.shape}; it must be ({channels}, 1, k) with k >= 1")
    k = weight.shape[2]
    if bias is not None and bias.shape != (channels,):
        raise ShapeError(f"bias has shape {bias.shape}; it must be ({channels},)")
    carry = (batch, channels, k - 1)
    if past_state is None:
        past_state = np.zeros(carry, x.dtype)
    elif past_state.shape != carry:
        raise ShapeError(f"past_state has shape {past_state.shape}; it must be {carry} (k - 1 = {k - 1})")
    padded = np.concatenate([past_state, x], axis=2)
    wide = padded.astype(np.float64)
    taps = weight[:, 0, :].astype(np.float64)  # (C, k)
    y = np.zeros((batch, channels, length))
    for j in range(k):
        y = y + taps[None, :, j, None] * wide[:, :, j : j + length]
    if bias is not None:
        y = y + bias.astype(np.float64)[None, :, None]
    if activation != "none":
        with np.errstate(over="ignore", invalid="ignore"):
            y = y * sigmoid64(y)
    return arith.narrow(y, x.dtype), padded[:, :, padded.shape[2] - (k - 1) :]
