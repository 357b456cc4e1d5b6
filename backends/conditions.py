"""Where a profile option can change a value: one condition per option, element by element.

A profile divergence explains an element only where its option's condition holds (and the
emulation equals the backend). The condition is computed from the node's inputs, so an option
cannot cover a difference it has nothing to do with: ``quantize_overflow="int32-indefinite"``
only concerns elements with |x / scale| at the edge of int32 or beyond, NaN or inf, never a
rounding of 0.5. ``tests/backends/test_divergence.py`` checks, for every option, that where its condition
does not hold the option's emulation equals the spec, so a bug in the spec path cannot hide
behind a profile either.

Each entry of :data:`CONDITIONS` names the operators the option acts in and either

- ``where(node, inputs, outputs)``: the elements it can change, as one boolean mask per output
  (broadcastable to that output; fewer masks than outputs leave the rest False), computed from
  the bound :class:`~refquant.node.Node` and the arrays it was run on; or
- no ``where`` (``None``): "the node's value under the option differs from the spec's value on
  the same inputs", found by running the node both ways (refquant.backends.divergence does it). That is
  for options with no simpler element-wise rule (whole pipelines: float_pipeline, qlinear_pipeline,
  OpenVINO's formulas, the requantization precision).

An option with no entry gets the second kind on every operator. Adding an option's condition is
one line, e.g. ``CONDITIONS["my_option"] = OptionCondition({"DequantizeLinear"}, _my_where)``.
spec/profiles.md lists each option's condition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["OptionCondition", "CONDITIONS", "condition_for", "INT32_EDGE"]

#: |x / scale| from which a quotient may round out of int32, whatever type the division is done in:
#: 2**31 less a bfloat16 rounding of it (2**31 * 2**-8), a margin over every division precision used
INT32_EDGE = 2.0**31 - 2.0**23

Mask = np.ndarray | bool
Where = Callable[[object, Sequence[np.ndarray | None], Sequence[np.ndarray]], Sequence[Mask]]


@dataclass(frozen=True)
class OptionCondition:
    """Operators an option acts in (None: any) and, per element, where it can change the value."""

    ops: frozenset[str] | None = None
    where: Where | None = None  # None: where the node's value under the option differs from the spec's

    def __init__(self, ops: Iterable[str] | None = None, where: Where | None = None):
        object.__setattr__(self, "ops", None if ops is None else frozenset(ops))
        object.__setattr__(self, "where", where)

    def concerns(self, op_type: str) -> bool:
        return self.ops is None or op_type in self.ops


#: what an option without an entry gets: any operator, where its value differs from the spec's
DIFFERS_ANYWHERE = OptionCondition()


def _quant_params(node, x: np.ndarray, scale: np.ndarray, zero_point=None):
    """(scale, zero_point) broadcast against x as the node's kernel does it."""
    if node.domain == "com.microsoft":
        from refquant.qparams import contrib_qdq_params

        return contrib_qdq_params(node, x, scale, zero_point, "y")
    from refquant.qparams import qdq_params

    return qdq_params(node, x, scale, zero_point, axis_allowed=node.version >= 13)


def _quotients(node, x: np.ndarray, scale: np.ndarray) -> list[np.ndarray]:
    """x / scale in float64 and in every type the kernel may divide in (the ONNX rule's, float32)."""
    from refquant.ops.quantize import named_division_precision

    broadcast, _ = _quant_params(node, x, scale)
    broadcast = np.asarray(broadcast)
    types = {np.dtype(np.float64), np.dtype(np.float32)}
    if node.domain != "com.microsoft":
        types.add(named_division_precision(node, x, scale))
    else:
        types.add(scale.dtype)
    with np.errstate(all="ignore"):
        return [(x.astype(t) / broadcast.astype(t)).astype(np.float64) for t in types]


def _int32_overflow(node, inputs, outputs) -> list[Mask]:
    """QuantizeLinear: |x / scale| >= 2**31 (less a rounding margin), or x / scale NaN or infinite, in
    float64 or in the type the division is done in (a float16 quotient overflows long before 2**31)."""
    x, scale = inputs[0], inputs[1]
    if outputs[0].dtype.kind not in "iu" and "int" not in outputs[0].dtype.name:
        return [False]
    masks = [~np.isfinite(q) | (np.abs(q) >= INT32_EDGE) for q in _quotients(node, x, scale)]
    return [np.logical_or.reduce(masks)]


def _nan_input(node, inputs, outputs) -> list[Mask]:
    """QuantizeLinear / DynamicQuantizeLinear: the x element is NaN (y only; a refusal of the whole
    tensor by the spec is handled by the classifier)."""
    return [np.isnan(inputs[0].astype(np.float64))]


def _half_precision_division(node, inputs, outputs) -> list[Mask]:
    """QuantizeLinear: the ONNX rule divides in float16 or bfloat16 (every element of the node)."""
    from refquant.ops.quantize import named_division_precision

    return [named_division_precision(node, inputs[0], inputs[1]).itemsize == 2]


def _zero_range(node, inputs, outputs) -> list[Mask]:
    """DynamicQuantizeLinear: the range [min(x, 0), max(x, 0)] is [0, 0] (every output, every element)."""
    x = inputs[0].astype(np.float64)
    finite = x[~np.isnan(x)]
    zero = not finite.size or (finite.max() <= 0 and finite.min() >= 0)
    return [zero] * len(outputs)


def _scale_out_of_range(node, inputs, outputs) -> list[Mask]:
    """DynamicQuantizeLinear: the range is not [0, 0] but float32((max - min) / 255) is 0 or inf (every output,
    every element)."""
    x = inputs[0][~np.isnan(inputs[0])]
    high, low = np.float32(max(0.0, x.max(initial=0.0))), np.float32(min(0.0, x.min(initial=0.0)))
    with np.errstate(over="ignore"):
        scale = (high - low) / np.float32(255)
    return [bool(high != low and not 0 < scale < np.inf)] * len(outputs)


def _int32_dequantize(node, inputs, outputs) -> list[Mask]:
    """DequantizeLinear of int32 x: x or x - zp not exact in float32, or (any element) a 2-byte float output."""
    x = inputs[0]
    if x.dtype != np.int32:
        return [False]
    if outputs[0].dtype.itemsize == 2:
        return [True]
    zero_point = inputs[2] if len(inputs) > 2 else None
    _, zero_point = _quant_params(node, x, inputs[1], zero_point)
    diff = x.astype(np.int64) - (0 if zero_point is None else np.asarray(zero_point).astype(np.int64))
    def inexact(values):
        return values.astype(np.float32).astype(np.int64) != values

    return [inexact(diff) | inexact(x.astype(np.int64))]


REQUANTIZING = {"QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
U8S8_GEMMS = {"MatMulInteger", "QLinearMatMul", "QLinearConv", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
QLINEAR_CONTRIB = {
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearConcat",
    "QLinearWhere", "QLinearAveragePool", "QLinearGlobalAveragePool",
}

#: option -> its condition (spec/profiles.md, column "changes an element only where")
CONDITIONS: dict[str, OptionCondition] = {
    "requantize_precision": OptionCondition(REQUANTIZING),  # float32 / mixed vs float64 requantization differ
    "requantize_zero_point": OptionCondition({"QLinearConv", "QLinearMatMul"}),  # at ties, with an odd zero point
    "quantize_overflow": OptionCondition({"QuantizeLinear"}, _int32_overflow),
    "nan": OptionCondition({"QuantizeLinear", "DynamicQuantizeLinear"}, _nan_input),
    "int32_overflow": OptionCondition({"MatMulInteger", "ConvInteger"}),
    "avx2_u8s8_saturation": OptionCondition(U8S8_GEMMS),
    "dynamic_zero_range_scale": OptionCondition({"DynamicQuantizeLinear"}, _zero_range),
    "dynamic_scale_out_of_range": OptionCondition({"DynamicQuantizeLinear"}, _scale_out_of_range),
    "qlinear_pipeline": OptionCondition(QLINEAR_CONTRIB),
    "quantize_formula": OptionCondition({"QuantizeLinear"}),
    "dequantize_formula": OptionCondition({"DequantizeLinear"}),
    "dequantize_subnormals": OptionCondition({"DequantizeLinear"}),
    "dynamic_quantize_formula": OptionCondition({"DynamicQuantizeLinear"}),
    "quantize_division": OptionCondition({"QuantizeLinear"}, _half_precision_division),
    "float_pipeline": OptionCondition(),  # any float op that runs MLAS's kernels
    "mlas_threads": OptionCondition(),  # with float_pipeline: a GEMM's thread split
    "dequantize_int32": OptionCondition({"DequantizeLinear"}, _int32_dequantize),
    # OpenVINO's lowering (ops/qlinear_lowered.py), applied by the kernel only where it is a reproduction
    "qlinear_requantize": OptionCondition({"QLinearConv", "QLinearMatMul"}),
}


def condition_for(option: str) -> OptionCondition:
    """The option's condition (:data:`DIFFERS_ANYWHERE` for an option with no entry)."""
    return CONDITIONS.get(option, DIFFERS_ANYWHERE)
