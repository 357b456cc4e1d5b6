"""com.microsoft SkipLayerNormalization, SkipSimplifiedLayerNormalization, EmbedLayerNormalization, QEmbedLayerNormalization
(as onnxruntime's contrib documentation and CPU kernels define them).

    SkipLayerNormalization:           s = input + skip (+ bias);  output = LayerNorm(s) * gamma (+ beta)
    SkipSimplifiedLayerNormalization: s = input + skip (+ bias);  output = s / sqrt(mean(s^2) + epsilon) * gamma
    EmbedLayerNormalization:          e = word[input_ids] + position[position_ids] (+ segment[segment_ids])
                                      output = LayerNorm(e) * gamma + beta;  mask_index[b] = #{s: mask[b, s] == 1}
    QEmbedLayerNormalization:         the same on the tables dequantized exactly, (q - zero_point) * scale

Normalizations run over the last axis, in float64 from the exact inputs (the sums included), each output
rounded once (mean and inv_std_var to float32, the schemas' U). spec/ops/contrib.md states every choice.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_input, require_same_type
from ..dtypes import EIGHT_BIT_INTS
from ..errors import ShapeError
from ..node import Node
from ..qparams import per_tensor_params
from ..registry import MS_DOMAIN, register
from .transformer_math import layer_norm64, rms_norm64

SKIP_NORM_TYPES = (T.FLOAT, T.FLOAT16, T.BFLOAT16)
EMBED_TYPES = (T.FLOAT, T.FLOAT16)


def _epsilon(node: Node) -> float:
    """The ``epsilon`` attribute as the float32 value stored in the model (default 1e-12)."""
    return float(np.float32(node.attr("epsilon", 1e-12, float)))


def _vector(value, hidden: int, what: str) -> None:
    if value is not None and value.shape != (hidden,):
        raise ShapeError(f"{what} has shape {value.shape}; it must be 1-D of length {hidden} (the hidden size)")


def _skip_sum(x, skip, bias, gamma, extra=()) -> np.ndarray:
    """input + skip (+ bias) in float64, after onnxruntime's shape checks (skip_layer_norm_helper.h): input is
    (B, S, H) or (S, H); skip has input's shape, or its last two dimensions (with a leading 1 or not)."""
    require_input(skip, "skip")
    require_input(gamma, "gamma")
    require_dtype(x, SKIP_NORM_TYPES, "input")
    for what, value in (("skip", skip), ("gamma", gamma), ("bias", bias), *extra):
        require_same_type(value, x, what, "input")
    if x.ndim not in (2, 3):
        raise ShapeError(f"input must be 3-D (batch, sequence, hidden) or 2-D, got shape {x.shape}")
    broadcastable = skip.shape == x.shape[-2:] or (x.ndim == 3 and skip.shape == (1,) + x.shape[-2:])
    if skip.shape != x.shape and not broadcastable:
        raise ShapeError(f"skip has shape {skip.shape}; it must be input's {x.shape}, or its last two dimensions {x.shape[-2:]} (a leading 1 allowed)")
    hidden = x.shape[-1]
    _vector(gamma, hidden, "gamma")
    _vector(bias, hidden, "bias")
    for what, value in extra:
        _vector(value, hidden, what)
    s = x.astype(np.float64) + skip.astype(np.float64)
    if bias is not None:
        s = s + bias.astype(np.float64)
    return s


@register("SkipLayerNormalization", since=(1,), domain=MS_DOMAIN)
def skip_layer_normalization(node: Node, x, skip=None, gamma=None, beta=None, bias=None):
    """Outputs: output (T), mean and inv_std_var (float32, shape input.shape[:-1] + (1,)), input_skip_bias_sum (T)."""
    s = _skip_sum(x, skip, bias, gamma, extra=(("beta", beta),))
    y, mean, inv_std = layer_norm64(s, gamma.astype(np.float64), None if beta is None else beta.astype(np.float64), _epsilon(node))
    return (arith.narrow(y, x.dtype), arith.narrow(mean, np.float32), arith.narrow(inv_std, np.float32), arith.narrow(s, x.dtype))


@register("SkipSimplifiedLayerNormalization", since=(1,), domain=MS_DOMAIN)
def skip_simplified_layer_normalization(node: Node, x, skip=None, gamma=None, bias=None):
    """Outputs: output (T), mean (float32 zeros: RMS normalization subtracts no mean), inv_std_var (float32),
    input_skip_bias_sum (T)."""
    s = _skip_sum(x, skip, bias, gamma)
    y, inv_std = rms_norm64(s, gamma.astype(np.float64), _epsilon(node))
    mean = np.zeros(inv_std.shape, np.float32)
    return (arith.narrow(y, x.dtype), mean, arith.narrow(inv_std, np.float32), arith.narrow(s, x.dtype))


def _rows(table: np.ndarray, ids: np.ndarray, what: str, table_name: str) -> np.ndarray:
    """table[ids] in float64; every id in [0, rows) (onnxruntime: "input index out of range"), else ShapeError."""
    rows = table.shape[0]
    if np.any((ids < 0) | (ids >= rows)):
        bad = ids[(ids < 0) | (ids >= rows)].ravel()[0]
        raise ShapeError(f"{what} holds {int(bad)}, outside [0, {rows - 1}] (the rows of {table_name} {table.shape})")
    return table.astype(np.float64)[ids.astype(np.int64)]


def _embed(node: Node, input_ids, segment_ids, tables: dict, mask, position_ids):
    """EmbedLayerNormalization's body on float64 ``tables`` (word, position, segment or None, gamma, beta):
    (output float64, mask_index int32, embedding sum float64)."""
    word, position, segment, gamma, beta = (tables[k] for k in ("word_embedding", "position_embedding",
                                                                 "segment_embedding", "gamma", "beta"))
    require_dtype(input_ids, (T.INT32,), "input_ids")
    for value, what in ((segment_ids, "segment_ids"), (mask, "mask"), (position_ids, "position_ids")):
        if value is not None:
            require_dtype(value, (T.INT32,), what)
    if input_ids.ndim != 2:
        raise ShapeError(f"input_ids must be 2-D (batch, sequence), got shape {input_ids.shape}")
    batch, seq = input_ids.shape
    for what in ("word_embedding", "position_embedding", "segment_embedding"):
        if tables[what] is not None and tables[what].ndim != 2:
            raise ShapeError(f"{what} must be 2-D (rows, hidden), got shape {tables[what].shape}")
    hidden = word.shape[1]
    for what in ("position_embedding", "segment_embedding"):
        if tables[what] is not None and tables[what].shape[1] != hidden:
            raise ShapeError(f"{what} has hidden size {tables[what].shape[1]}, word_embedding {hidden}")
    _vector(gamma, hidden, "gamma")
    _vector(beta, hidden, "beta")
    if (segment_ids is None) != (segment is None):
        raise ShapeError("segment_ids and segment_embedding come together: both or neither")
    for value, what in ((segment_ids, "segment_ids"), (mask, "mask")):
        if value is not None and value.shape != input_ids.shape:
            raise ShapeError(f"{what} has shape {value.shape}; it must be input_ids' {input_ids.shape}")
    if position_ids is None:
        positions = np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq))
    elif position_ids.shape in ((batch, seq), (1, seq)):
        positions = np.broadcast_to(position_ids, (batch, seq))
    else:
        raise ShapeError(f"position_ids has shape {position_ids.shape}; it must be ({batch}, {seq}) or (1, {seq})")
    e = _rows(word, input_ids, "input_ids", "word_embedding")
    e = e + _rows(position, positions, "position_ids" if position_ids is not None else "a position", "position_embedding")
    if segment_ids is not None:
        e = e + _rows(segment, segment_ids, "segment_ids", "segment_embedding")
    y, _, _ = layer_norm64(e, gamma, beta, _epsilon(node))
    if mask is None:
        mask_index = np.zeros(batch, np.int32)
    else:
        mask_index = np.count_nonzero(mask == 1, axis=1).astype(np.int32)
    return y, mask_index, e


@register("EmbedLayerNormalization", since=(1,), domain=MS_DOMAIN)
def embed_layer_normalization(node: Node, input_ids, segment_ids=None, word_embedding=None, position_embedding=None,
                              segment_embedding=None, gamma=None, beta=None, mask=None, position_ids=None):
    """Outputs: output (B, S, H), mask_index (B,) int32, embedding_sum (B, S, H) (the sum before normalization)."""
    named = {"word_embedding": word_embedding, "position_embedding": position_embedding,
             "segment_embedding": segment_embedding, "gamma": gamma, "beta": beta}
    for what in ("word_embedding", "position_embedding", "gamma", "beta"):
        require_input(named[what], what)
    require_dtype(word_embedding, EMBED_TYPES, "word_embedding")
    for what, value in named.items():
        require_same_type(value, word_embedding, what, "word_embedding")
    tables = {k: None if v is None else v.astype(np.float64) for k, v in named.items()}
    y, mask_index, e = _embed(node, input_ids, segment_ids, tables, mask, position_ids)
    dtype = word_embedding.dtype
    return arith.narrow(y, dtype), mask_index, arith.narrow(e, dtype)


QEMBED_TABLES = ("word_embedding", "position_embedding", "segment_embedding", "gamma", "beta")


@register("QEmbedLayerNormalization", since=(1,), domain=MS_DOMAIN)
def qembed_layer_normalization(node: Node, input_ids, segment_ids=None, *rest):
    """EmbedLayerNormalization on the dequantized tables (q - zero_point) * scale, each exact in float64; scales
    float32 scalars, zero points scalars of the table's type (uint8 or int8). Outputs: layernorm_out (float32),
    mask_index_out (int32)."""
    rest = list(rest) + [None] * (16 - len(rest))
    quantized = dict(zip(QEMBED_TABLES, (rest[0], rest[1], rest[2], rest[3], rest[4])))
    mask = rest[5]
    scales = dict(zip(QEMBED_TABLES, rest[6:11]))
    zero_points = dict(zip(QEMBED_TABLES, rest[11:16]))
    tables = {}
    for what in QEMBED_TABLES:
        q = quantized[what]
        if q is None:
            if what != "segment_embedding":
                require_input(q, f"{what}_quant")
            tables[what] = None
            continue
        require_dtype(q, EIGHT_BIT_INTS, f"{what}_quant")
        params = per_tensor_params(scales[what], zero_points[what], q, what, zero_point_required=True)
        tables[what] = params.dequantize(q, np.float64)
    y, mask_index, _ = _embed(node, input_ids, segment_ids, tables, mask, None)
    return arith.narrow(y, np.float32), mask_index
