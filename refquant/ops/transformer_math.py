"""Float64 bodies shared by the com.microsoft transformer kernels (contrib_normalization, contrib_attention):
layer and RMS normalization over the last axis, softmax over the last axis, and multi-head scaled dot-product attention with onnxruntime's mask formats.

Every function takes and returns float64 arrays; the kernels round once to the output type
(``arith.narrow``). spec/ops/contrib.md states the formulas and each choice. No kernel is registered here.
"""

from __future__ import annotations


import numpy as np

from ..errors import ShapeError
from .float_functions import softmax64

__all__ = [
    "layer_norm64",
    "rms_norm64",
    "softmax_last64",
    "attention_mask64",
    "causal_exclusion",
    "scaled_dot_product_attention64",
    "split_heads",
    "merge_heads",
]

def layer_norm64(x: np.ndarray, gamma: np.ndarray, beta, epsilon: float):
    """((x - mean) / sqrt(var + epsilon)) * gamma + beta over the last axis; (y, mean, inv_std), the
    statistics with the last axis kept as 1. var is the population variance mean((x - mean)^2)."""
    mean = np.mean(x, axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(np.mean((x - mean) ** 2, axis=-1, keepdims=True) + epsilon)
    y = (x - mean) * inv_std * gamma
    if beta is not None:
        y = y + beta
    return y, mean, inv_std


def rms_norm64(x: np.ndarray, gamma: np.ndarray, epsilon: float):
    """x / sqrt(mean(x^2) + epsilon) * gamma over the last axis; (y, inv_std)."""
    inv_std = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + epsilon)
    return x * inv_std * gamma, inv_std


def softmax_last64(scores: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """exp(s - max) / sum exp(s - max) over the last axis; ``excluded`` positions (boolean, broadcasting)
    get weight exactly 0 (a row keeps at least one position: the caller guarantees it)."""
    if excluded is not None:
        scores = np.where(excluded, -np.inf, scores)
    return softmax64(scores, (-1,))


def attention_mask64(mask_index: np.ndarray | None, batch: int, seq: int, total: int, past: int,
                     filter_value: float) -> np.ndarray | None:
    """The additive mask (B, 1, S, T) of Attention's ``mask_index`` (int32), or None.

    1-D (B): key positions >= mask_index[b] get ``filter_value`` (right padding); 1-D (2B): also positions
    < mask_index[B + b] (left padding; the start clipped to T); 2-D (B, T): 0 where mask > 0, else
    ``filter_value``; (B, 1) or (1, 1): no mask (onnxruntime's "dummy" mask); 3-D (B, S, T): per query;
    4-D (B, 1, M, M), M >= T: the rows past .. past + S - 1 and columns 0 .. T - 1 (Megatron's layout).
    """
    if mask_index is None:
        return None
    m = mask_index.astype(np.int64)
    shape = m.shape
    positions = np.arange(total)
    if m.ndim == 1 and shape[0] in (batch, 2 * batch):
        masked = positions[None, :] >= m[:batch, None]
        if shape[0] == 2 * batch:
            masked |= positions[None, :] < np.minimum(m[batch:, None], total)
        masked = np.broadcast_to(masked[:, None, :], (batch, seq, total))
    elif m.ndim == 2 and shape == (batch, total):
        masked = np.broadcast_to((m <= 0)[:, None, :], (batch, seq, total))
    elif m.ndim == 2 and shape[1] == 1 and shape[0] in (1, batch):
        return None
    elif m.ndim == 3 and shape == (batch, seq, total):
        masked = m <= 0
    elif m.ndim == 4 and shape[0] == batch and shape[1] == 1 and shape[2] == shape[3] and shape[2] >= past + seq:
        masked = m[:, 0, past : past + seq, :total] <= 0
    else:
        raise ShapeError(
            f"mask_index has shape {shape}; with batch {batch}, sequence {seq} and total sequence {total} it must be "
            f"({batch},), ({2 * batch},), ({batch}, {total}), ({batch}, 1), (1, 1), ({batch}, {seq}, {total}) or "
            f"({batch}, 1, M, M) with M >= {past + seq}"
        )
    return np.where(masked, float(filter_value), 0.0)[:, None, :, :]


def causal_exclusion(seq: int, total: int) -> np.ndarray:
    """(S, T) boolean: query s (at absolute position T - S + s) does not see keys after itself."""
    return np.arange(total)[None, :] > (total - seq + np.arange(seq))[:, None]


def scaled_dot_product_attention64(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                                   additive: np.ndarray | None, causal: bool) -> np.ndarray:
    """softmax(scale * q @ k^T + additive, causal positions excluded) @ v for q (B, N, S, H), k (B, N, T, H),
    v (B, N, T, H_v); returns (B, N, S, H_v), float64 throughout."""
    scores = scale * np.matmul(q, np.swapaxes(k, -1, -2))
    if additive is not None:
        scores = scores + additive
    excluded = causal_exclusion(q.shape[2], k.shape[2]) if causal else None
    return np.matmul(softmax_last64(scores, excluded), v)


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(B, S, N * H) -> (B, N, S, H)."""
    b, s, d = x.shape
    return x.reshape(b, s, heads, d // heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, N, S, H) -> (B, S, N * H)."""
    b, n, s, h = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, n * h)
