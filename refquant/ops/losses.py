"""Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

    NegativeLogLikelihoodLoss: loss[n, d...] = -input[n, c, d...] * weight[c], c = target[n, d...]
                               (0 where target == ignore_index; weight 1 without ``weight``)
    SoftmaxCrossEntropyLoss:   the same loss of log_prob = log_softmax(scores) over axis 1;
                               optional second output log_prob

reduction "none" gives the loss tensor (N, d...); "sum" its sum; "mean" its sum divided by the sum of the
applied weights (weight[c] of every sample not ignored; without ``weight`` the count of those samples).
Everything is computed in float64 from the exact inputs and rounded once to T.
spec/ops/losses.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_same_type
from ..dtypes import IEEE_FLOATS, types_at
from ..errors import AttributeValueError, ShapeError
from ..node import Node
from ..registry import register
from .float_functions import log_softmax64

#: bfloat16 arrives at NegativeLogLikelihoodLoss 22 and SoftmaxCrossEntropyLoss 13
NLL_TYPES = {12: IEEE_FLOATS, 22: (T.BFLOAT16,)}
SCE_TYPES = {12: IEEE_FLOATS, 13: (T.BFLOAT16,)}
INDEX_TYPES = (T.INT32, T.INT64)
REDUCTIONS = ("none", "sum", "mean")


def _weighted_loss(node: Node, log_prob: np.ndarray, target: np.ndarray, weight, *, names: tuple[str, str, str]):
    """The reduced (or not) loss in float64 of float64 ``log_prob`` (N, C, d...) and ``target`` (N, d...)."""
    what, target_name, weight_name = names
    if log_prob.ndim < 2:
        raise ShapeError(f"{what} must have shape (N, C, d1, ...), got rank {log_prob.ndim} {log_prob.shape}")
    require_dtype(target, INDEX_TYPES, target_name)
    expected = log_prob.shape[:1] + log_prob.shape[2:]
    if target.shape != expected:
        raise ShapeError(f"{target_name} has shape {target.shape}, expected {expected} ({what} is {log_prob.shape})")
    classes = log_prob.shape[1]
    if weight is not None and weight.shape != (classes,):
        raise ShapeError(f"{weight_name} has shape {weight.shape}, expected ({classes},) (one per class)")
    reduction = node.attr("reduction", "mean", str)
    if reduction not in REDUCTIONS:
        raise AttributeValueError(f"reduction {reduction!r} is not one of {REDUCTIONS}")
    ignore_index = node.attr("ignore_index", None, int)
    target = target.astype(np.int64)
    kept = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    outside = kept & ((target < 0) | (target >= classes))
    if outside.any():
        raise ShapeError(
            f"{target_name} value {int(target[outside].flat[0])} is outside [0, {classes - 1}]"
            + ("" if ignore_index is None else f" and is not ignore_index {ignore_index}")
        )
    c = np.where(kept, target, 0)
    picked = np.take_along_axis(log_prob, c[:, None], axis=1)[:, 0]
    applied = np.ones(target.shape) if weight is None else weight.astype(np.float64)[c]
    applied = np.where(kept, applied, 0.0)
    loss = np.where(kept, -picked * applied, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.sum(loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(loss) / np.sum(applied)  # no sample applied: 0 / 0 = NaN


@register("NegativeLogLikelihoodLoss", since=(12, 13, 22))
def negative_log_likelihood_loss(node: Node, x, target, weight=None):
    require_dtype(x, types_at(NLL_TYPES, node.version), "input")
    require_same_type(weight, x, "weight", "input")
    loss = _weighted_loss(node, x.astype(np.float64), target, weight, names=("input", "target", "weight"))
    return (np.asarray(arith.narrow(loss, x.dtype)),)


@register("SoftmaxCrossEntropyLoss", since=(12, 13))
def softmax_cross_entropy_loss(node: Node, scores, labels, weights=None):
    require_dtype(scores, types_at(SCE_TYPES, node.version), "scores")
    require_same_type(weights, scores, "weights", "scores")
    if scores.ndim < 2:
        raise ShapeError(f"scores must have shape (N, C, d1, ...), got rank {scores.ndim} {scores.shape}")
    log_prob = log_softmax64(scores.astype(np.float64), (1,))
    loss = _weighted_loss(node, log_prob, labels, weights, names=("scores", "labels", "weights"))
    return np.asarray(arith.narrow(loss, scores.dtype)), np.asarray(arith.narrow(log_prob, scores.dtype))
