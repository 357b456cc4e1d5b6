"""Where quantization loses accuracy: a float model against its quantized version, tensor by tensor.

Tensors are matched by name as onnxruntime's ``qdq_loss_debug`` matches them:

- weights: a quantized initializer ``<w>_quantized`` (the input of a DequantizeLinear in QDQ models,
  or of a QLinear op in QOperator models with ``<w>_scale`` / ``<w>_zero_point``) is dequantized and
  compared with the float model's initializer ``<w>``;
- activations: in QDQ models, among the float inputs and outputs of nodes (no initializers), the
  pairs ``<a>_QuantizeLinear_Input`` (before the QDQ pair) and ``<a>`` (after it), or ``<a>`` (before)
  and ``<a>_DequantizeLinear_Output`` or ``<a>_DequantizeLinear_Output_1`` (after); in QOperator models
  (refquant's addition) the quantized ``<a>_quantized`` dequantized with ``<a>_scale`` /
  ``<a>_zero_point``; each compared with the float model's ``<a>``.

Per tensor: SQNR = 20 log10(|x| / |x - y|) (onnxruntime's formula and epsilon), max |x - y|, and the
cosine similarity of x and y. Both models run on the reference interpreter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from onnx import ModelProto, numpy_helper

from . import arith
from .calibration.data import select_tensors
from .model import load_model
from .session import Session

__all__ = ["TensorError", "sqnr", "weight_errors", "activation_errors", "debug"]

QUANT_INPUT_SUFFIX = "_QuantizeLinear_Input"
DEQUANT_OUTPUT_SUFFIXES = ("_DequantizeLinear_Output", "_DequantizeLinear_Output_1")
QUANTIZED_SUFFIX = "_quantized"


def sqnr(x: Sequence[np.ndarray] | np.ndarray, y: Sequence[np.ndarray] | np.ndarray) -> float:
    """20 log10(max(|x|, eps) / max(|x - y|, eps)) over all tensors concatenated (eps of float64)."""
    left = np.concatenate([np.ravel(a) for a in ([x] if isinstance(x, np.ndarray) else x)])
    right = np.concatenate([np.ravel(a) for a in ([y] if isinstance(y, np.ndarray) else y)])
    eps = np.finfo(float).eps
    return 20 * math.log10(max(np.linalg.norm(left), eps) / max(np.linalg.norm(left - right), eps))


@dataclass
class TensorError:
    """How far a quantized tensor is from its float counterpart."""

    name: str
    kind: str  # "weight", "activation" (float model vs quantized model) or "qdq" (before vs after a QDQ pair)
    sqnr: float
    max_abs_error: float
    cosine: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _error(name: str, kind: str, x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> TensorError:
    left = np.concatenate([np.ravel(a) for a in x]).astype(np.float64)
    right = np.concatenate([np.ravel(a) for a in y]).astype(np.float64)
    norms = np.linalg.norm(left) * np.linalg.norm(right)
    cosine = float(left @ right / norms) if norms else float(np.array_equal(left, right))
    max_error = float(np.abs(left - right).max()) if left.size else 0.0
    return TensorError(name, kind, sqnr(list(x), list(y)), max_error, cosine)


def _dequantized_initializer(initializers: Mapping[str, np.ndarray], base: str) -> np.ndarray | None:
    """``<base>_quantized`` dequantized with ``<base>_scale`` and ``<base>_zero_point`` (QOperator naming).

    A per-channel scale applies along the first axis of matching length (Conv weights: output
    channels, axis 0; MatMul weights: columns, the last axis)."""
    q = initializers.get(base + QUANTIZED_SUFFIX)
    scale = initializers.get(base + "_scale")
    if q is None or scale is None:
        return None
    axis = next((i for i, n in enumerate(q.shape) if n == np.size(scale)), None) if np.size(scale) > 1 else None
    if np.size(scale) > 1 and axis is None:
        return None
    return _dequantize(q, scale, initializers.get(base + "_zero_point"), axis)


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point, axis: int | None) -> np.ndarray:
    per_axis = np.size(scale) > 1
    scale = arith.param_for(scale, q.shape, axis=axis if per_axis else None, what="scale")
    if zero_point is not None:
        zero_point = arith.param_for(zero_point, q.shape, axis=axis if per_axis else None, what="zero point")
    return arith.dequantize(q, scale, zero_point, np.float32)


def weight_errors(float_model, quant_model) -> list[TensorError]:
    """Every quantized weight of ``quant_model`` against the float model's initializer of the same name."""
    float_model, quant_model = load_model(float_model), load_model(quant_model)
    floats = {t.name: numpy_helper.to_array(t) for t in float_model.graph.initializer}
    quants = {t.name: numpy_helper.to_array(t) for t in quant_model.graph.initializer}
    results = {}
    for node in quant_model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in quants:  # QDQ
            name = node.input[0]
            if not name.endswith(QUANTIZED_SUFFIX):
                continue
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zero_point = quants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            dequantized = _dequantize(quants[name], quants[node.input[1]], zero_point, axis)
        else:  # QOperator: weights of QLinearConv / QLinearMatMul / ... by naming convention
            name = next((i for i in node.input if i.endswith(QUANTIZED_SUFFIX) and i in quants), None)
            if name is None:
                continue
            dequantized = _dequantized_initializer(quants, name[: -len(QUANTIZED_SUFFIX)])
        base = name[: -len(QUANTIZED_SUFFIX)]
        if dequantized is not None and base in floats and base not in results:
            results[base] = _error(base, "weight", [floats[base]], [dequantized])
    return list(results.values())


def _qdq_pair(name: str, saved: Mapping[str, np.ndarray]) -> tuple[str, str, str] | None:
    """(activation, tensor before the QDQ pair, tensor after it) that ``name`` stands for, as
    create_activation_matching reads the names: ``<a>_QuantizeLinear_Input`` is before and ``<a>`` after;
    ``<a>_DequantizeLinear_Output`` (or ``..._1``) is after and ``<a>`` before. Both must be saved."""
    if name.endswith(QUANT_INPUT_SUFFIX):
        base = name[: -len(QUANT_INPUT_SUFFIX)]
        pair = (base, name, base)
    else:
        suffix = next((s for s in DEQUANT_OUTPUT_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            return None
        base = name[: -len(suffix)]
        pair = (base, base, name)
    return pair if pair[1] in saved and pair[2] in saved else None


def _activation_pairs(tensors: Mapping[str, np.ndarray], saved: set[str], initializers: Mapping[str, np.ndarray]):
    """{activation name: (before QDQ or None, after QDQ / dequantized)} in one run of the quantized model.

    QDQ: among the ``saved`` tensors (those onnxruntime's debugger saves: float inputs and outputs of
    nodes, no initializers), as :func:`_qdq_pair` reads the names. QOperator (refquant's addition):
    ``<a>_quantized`` dequantized with ``<a>_scale`` / ``<a>_zero_point``.
    """
    visible = {name: value for name, value in tensors.items() if name in saved}  # graph order
    pairs = {}
    for name in visible:
        qdq = _qdq_pair(name, visible)
        if qdq is not None:
            base, before, after = qdq
            pairs[base] = (visible[before], visible[after])
    for name, value in tensors.items():
        if name.endswith(QUANTIZED_SUFFIX) and name not in initializers:
            base = name[: -len(QUANTIZED_SUFFIX)]
            dequantized = _dequantized_initializer({**initializers, name: value}, base)
            if dequantized is not None:
                pairs.setdefault(base, (None, dequantized))
    return pairs


def activation_errors(float_model, quant_model, batches, *, profile="spec") -> list[TensorError]:
    """Run both models on each feed dict of ``batches``; compare matched activations over all batches."""
    float_session = Session(float_model)
    quant_session = Session(quant_model, profile=profile)
    float_saved = set(select_tensors(float_session.model))
    quant_saved = set(select_tensors(quant_session.model))
    collected: dict[str, dict[str, list]] = {}
    for feeds in batches:
        floats = {name: value for name, value in float_session.run_all(feeds).items() if name in float_saved}
        quants = quant_session.run_all(feeds)
        for name, (before, after) in _activation_pairs(quants, quant_saved, quant_session.constants).items():
            slot = collected.setdefault(name, {"float": [], "before": [], "after": []})
            slot["after"].append(after)
            if before is not None:
                slot["before"].append(before)
            if name in floats:
                slot["float"].append(floats[name])
    results = []
    for name, slot in collected.items():
        if slot["float"]:
            results.append(_error(name, "activation", slot["float"], slot["after"]))
        if slot["before"]:
            results.append(_error(name, "qdq", slot["before"], slot["after"]))
    return results


def debug(float_model, quant_model, batches, *, profile="spec") -> list[TensorError]:
    """Weight and activation errors, worst (lowest SQNR) first."""
    float_model, quant_model = load_model(float_model), load_model(quant_model)
    errors = weight_errors(float_model, quant_model) + activation_errors(
        float_model, quant_model, batches, profile=profile
    )
    return sorted(errors, key=lambda e: e.sqnr)


def model_inputs(model: ModelProto) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]
