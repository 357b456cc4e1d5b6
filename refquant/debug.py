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

A per-channel weight is dequantized along the axis its operator's definition gives it (DequantizeLinear's
``axis``; :data:`CHANNEL_RULES` for QLinearConv, QLinearMatMul, MatMulInteger, QGemm, ...), never along an
axis guessed from the lengths (a square MatMul weight has two).

Per tensor: SQNR = 20 log10(|x| / |x - y|) (onnxruntime's formula and epsilon), max |x - y|, and the
cosine similarity of x and y. Both models run on the reference interpreter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from onnx import ModelProto, NodeProto, numpy_helper

from . import arith
from .calibration.data import select_tensors
from .errors import QuantParamError
from .model import load_model
from .qparams import broadcast_param, broadcast_params, matmul_param
from .registry import canonical_domain
from .session import Session

__all__ = ["TensorError", "sqnr", "weight_errors", "activation_errors", "debug", "CHANNEL_RULES"]

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


# -- where a quantized operand's per-channel parameters lie --------------------------------------------
#
# A rule takes (node, operand shape, parameter, what) and returns the parameter shaped to broadcast against
# the operand, with the helpers the kernels use (refquant.qparams: broadcast_param, matmul_param). Per-tensor
# parameters (one value) need no rule; a parameter of several values on an operand no rule covers is not
# guessed (the weight is left out).


def _per_tensor(node: NodeProto | None, shape, param: np.ndarray, what: str) -> np.ndarray:
    """Any operand without a rule: one value (broadcast_param with no axis refuses several)."""
    return broadcast_param(param, shape, axis=None, what=what)


def _per_output_channel(node: NodeProto, shape, param: np.ndarray, what: str) -> np.ndarray:
    """w of a convolution, (M, C/group, k1, ...): one value per output channel M, axis 0."""
    return broadcast_param(param, shape, axis=0, what=what)


def _per_row(node: NodeProto, shape, param: np.ndarray, what: str) -> np.ndarray:
    """a of a matmul, (..., M, K): one value per row, 1-D [M] or N-D [..., M, 1] (axis -2)."""
    return matmul_param(param, tuple(shape), per_row=True, what=what)


def _per_column(node: NodeProto, shape, param: np.ndarray, what: str) -> np.ndarray:
    """b of a matmul, (..., K, N): one value per column, 1-D [N] or N-D [..., 1, N] (axis -1)."""
    return matmul_param(param, tuple(shape), per_row=False, what=what)


def _per_column_of_b_prime(node: NodeProto, shape, param: np.ndarray, what: str) -> np.ndarray:
    """B of QGemm: one value per column of B' = transB ? B^T : B, i.e. axis 0 of B with transB, else axis 1."""
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return broadcast_param(param, shape, axis=0 if trans_b else 1, what=what)


#: (domain, op_type, input index of the quantized operand) -> its per-channel rule, as the operator's
#: definition states it (the kernels of refquant/ops/integer.py and contrib_linear.py apply the same):
CHANNEL_RULES: dict[tuple[str, str, int], Callable] = {
    # ONNX QLinearConv: "w_scale ... per output channel ... its number of elements should be equal to the
    # number of output channels (M)"; w is (M x C/group x kH x kW). ConvInteger's w_zero_point: the same.
    ("", "QLinearConv", 3): _per_output_channel,
    ("", "ConvInteger", 1): _per_output_channel,
    # ONNX QLinearMatMul: "either scalar (per tensor) or N-D tensor (per row for 'a' and per column for 'b')";
    # MatMulInteger: a_zero_point "per row", b_zero_point "per col quantization" (N elements for [K, N]).
    ("", "QLinearMatMul", 0): _per_row,
    ("", "QLinearMatMul", 3): _per_column,
    ("", "MatMulInteger", 0): _per_row,
    ("", "MatMulInteger", 1): _per_column,
    # com.microsoft QLinearConv (channels_last or not, w stays (M, C/group, k...)): as ONNX QLinearConv.
    ("com.microsoft", "QLinearConv", 3): _per_output_channel,
    # com.microsoft QGemm: "b_scale ... per column", of B' (B transposed with transB).
    ("com.microsoft", "QGemm", 3): _per_column_of_b_prime,
    # com.microsoft MatMulIntegerToFloat / DynamicQuantizeMatMul: a per row, b per column.
    ("com.microsoft", "MatMulIntegerToFloat", 0): _per_row,
    ("com.microsoft", "MatMulIntegerToFloat", 1): _per_column,
    ("com.microsoft", "DynamicQuantizeMatMul", 1): _per_column,
}


def _channel_rule(node: NodeProto, index: int):
    return CHANNEL_RULES.get((canonical_domain(node.domain), node.op_type, index))


def _dequantized_initializer(
    initializers: Mapping[str, np.ndarray], base: str, node: NodeProto | None = None, index: int = -1
) -> np.ndarray | None:
    """``<base>_quantized`` dequantized with ``<base>_scale`` and ``<base>_zero_point`` (QOperator naming).

    Per-channel parameters lie where the operator that reads ``<base>_quantized`` as its input ``index``
    puts them (:data:`CHANNEL_RULES`); without a rule only per-tensor parameters are read (None otherwise)."""
    q = initializers.get(base + QUANTIZED_SUFFIX)
    scale = initializers.get(base + "_scale")
    if q is None or scale is None:
        return None
    zero_point = initializers.get(base + "_zero_point")
    rule = (_channel_rule(node, index) if node is not None else None) or _per_tensor
    try:
        scale = rule(node, q.shape, scale, f"{base}_scale")
        if zero_point is not None:
            zero_point = rule(node, q.shape, zero_point, f"{base}_zero_point")
    except QuantParamError:  # parameters that do not fit the operand: nothing to compare
        return None
    return arith.dequantize_values(q, scale, zero_point, np.float32)


def _dequantized_by(q: np.ndarray, scale: np.ndarray, zero_point, node: NodeProto) -> np.ndarray:
    """What the DequantizeLinear ``node`` computes from an initializer: its own ``axis`` (default 1) and
    ``block_size`` (default 0) place the parameters."""
    attrs = {a.name: a.i for a in node.attribute}
    axis, block_size = attrs.get("axis", 1), attrs.get("block_size", 0)
    per_axis = np.size(scale) > 1 or block_size
    scale, zero_point = broadcast_params(scale, zero_point, q.shape, axis=axis if per_axis else None, block_size=block_size)
    return arith.dequantize_values(q, scale, zero_point, np.float32)


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
            zero_point = quants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            dequantized = _dequantized_by(quants[name], quants[node.input[1]], zero_point, node)
            _add_weight(results, floats, name, dequantized)
            continue
        # QOperator: weights of QLinearConv / QLinearMatMul / ... by naming convention, per channel where
        # the operator's definition says (CHANNEL_RULES)
        for index, name in enumerate(node.input):
            if name.endswith(QUANTIZED_SUFFIX) and name in quants:
                base = name[: -len(QUANTIZED_SUFFIX)]
                if base in floats and base not in results:
                    _add_weight(results, floats, name, _dequantized_initializer(quants, base, node, index))
    return list(results.values())


def _add_weight(results: dict, floats: Mapping[str, np.ndarray], name: str, dequantized: np.ndarray | None) -> None:
    base = name[: -len(QUANTIZED_SUFFIX)]
    if dequantized is not None and base in floats and base not in results:
        results[base] = _error(base, "weight", [floats[base]], [dequantized])


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
