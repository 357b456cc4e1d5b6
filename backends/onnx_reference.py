"""onnx.reference.ReferenceEvaluator: ONNX's own Python implementation of the operators."""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import ModelProto, TensorProto

from .base import (
    Availability,
    Backend,
    BackendError,
    Capabilities,
    Unsupported,
    UnsupportedOnBackend,
    input_type,
    node_outputs,
    tensor_infos,
)

__all__ = ["OnnxReference", "UNSUPPORTED"]

_FLOAT8 = {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ}


def _shape(node, infos, index: int) -> tuple | None:
    info = infos.get(node.input[index]) if index < len(node.input) and node.input[index] else None
    return info.shape if info is not None else None


def _float8_operand(node, infos) -> bool:
    """QLinearMatMul with a float8 a, b or y (inputs 0, 3, 7)."""
    return any(input_type(node, infos, i) in _FLOAT8 for i in (0, 3, 7))


def _per_channel_w_scale_unbroadcastable(node, infos) -> bool:
    """QLinearConv with a w_scale of M > 1 values and either three spatial axes (x of rank 5) or one
    spatial axis with a batch N other than 1 and M: (1, M, 1, 1) does not broadcast against the result."""
    x, w_scale = _shape(node, infos, 0), _shape(node, infos, 4)
    if x is None or w_scale is None or len(w_scale) != 1 or w_scale[0] == 1:
        return False
    return len(x) == 5 or (len(x) == 3 and x[0] not in (1, w_scale[0]))


def _vector_w_zero_point_not_2d(node, infos) -> bool:
    """ConvInteger with a 1-D w_zero_point and one or three spatial axes."""
    x, w_zero_point = _shape(node, infos, 0), _shape(node, infos, 3)
    return x is not None and w_zero_point is not None and len(w_zero_point) == 1 and len(x) != 4


def _per_row_a_zero_point(node, infos) -> bool:
    """MatMulInteger with an a_zero_point of several values."""
    a_zero_point = _shape(node, infos, 2)
    return a_zero_point is not None and any(d != 1 for d in a_zero_point)


def _one_axis_pool_unstrided_crashes(node, infos) -> bool:
    """MaxPool over one spatial axis with every stride and dilation 1 where the CommonPool path fails: auto_pad
    SAME_*, or an explicit begin pad without ceil_mode (IndexError), or no begin pad and fewer elements than
    the kernel (it sizes the output without the end pad: RuntimeError, output shape 0)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    x = _shape(node, infos, 0)
    if x is None or len(x) != 3 or any(v != 1 for v in (*attrs.get("strides", []), *attrs.get("dilations", []))):
        return False
    if attrs.get("auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER"):
        return True
    begin = (attrs.get("pads") or [0, 0])[0]
    kernel = (attrs.get("kernel_shape") or [1])[0]
    return (begin > 0 and not attrs.get("ceil_mode", 0)) or (begin == 0 and isinstance(x[2], int) and x[2] < kernel)


#: what onnx 1.23's evaluator does not implement (its op sources, onnx/reference/ops/; spec/backends.md)
UNSUPPORTED = (
    Unsupported(
        "QLinearMatMul",
        "float8 a, b or y: op_qlinear_matmul.py casts a and b to int32 and takes np.iinfo of the output type "
        "(ValueError: Invalid integer data type)",
        _float8_operand,
    ),
    Unsupported(
        "QLinearConv",
        "per-channel w_scale with three spatial axes, or with one and a batch other than 1 and M: "
        "op_qlinear_conv.py expands w_scale to (1, M, 1, 1), which does not broadcast against the result (ValueError)",
        _per_channel_w_scale_unbroadcastable,
    ),
    Unsupported(
        "ConvInteger",
        "1-D w_zero_point with one or three spatial axes: op_conv_integer.py expands it to (M, 1, 1, 1) "
        "(ValueError: non-broadcastable output operand)",
        _vector_w_zero_point_not_2d,
    ),
    Unsupported(
        "MatMulInteger",
        "per-row a_zero_point: op_matmul_integer.py subtracts it along a's last axis, not its rows "
        "(ValueError where the shapes clash, wrong values where they happen to broadcast)",
        _per_row_a_zero_point,
    ),
    Unsupported(
        "MaxPool",
        "one spatial axis, every stride and dilation 1, and auto_pad SAME_* or a begin pad without ceil_mode "
        "(op_pool_common.py's CommonPool path raises IndexError), or fewer elements than the kernel and no begin "
        "pad (it sizes the output without the end pad: RuntimeError)",
        _one_axis_pool_unstrided_crashes,
    ),
)


#: what the evaluator raises where it has no implementation of a node's op (onnx/reference/ops/_op_list.py
#: load_op, reference_evaluator.py _load_impl): a RuntimeError for an op version older than its oldest
#: implementation or without a default one, RuntimeContextError (a RuntimeError) for a context-dependent
#: function it cannot expand; NotImplementedError (unknown op or domain) is a refusal by its type
_NO_IMPLEMENTATION = re.compile(r"^No (?:default )?implementation (?:for operator|was found for node type) ")
_NO_VERSION = re.compile(r"^No implementation for operator '([^']+)' domain '([^']*)' and version (\d+), found ([^.]*)\.")


def _refusal(exc: Exception) -> str | None:
    """The reason, where ``exc`` is the evaluator saying it has no implementation for an op; else None."""
    text = str(exc).strip()
    if isinstance(exc, NotImplementedError):
        return text
    if not isinstance(exc, RuntimeError) or not _NO_IMPLEMENTATION.match(text):
        return None
    match = _NO_VERSION.match(text)
    if match is None:
        return text
    op, domain, version, found = match.groups()
    versions = ", ".join(v for v in found.split(", ") if v != "None")
    return (
        f"onnx {onnx.__version__}'s evaluator has no {op} for {domain or 'ai.onnx'} opset {version}; "
        f"it implements versions {versions} ({text})"
    )


class OnnxReference(Backend):
    """onnx.reference.ReferenceEvaluator (no com.microsoft ops)."""

    name = "onnx-reference"

    @property
    def version(self) -> str:
        return onnx.__version__

    def availability(self) -> Availability:
        return Availability(True)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            ir_version=onnx.IR_VERSION,
            opset=onnx.defs.onnx_opset_version(),
            unsupported=UNSUPPORTED,
            notes=(
                "requantizes in float64 and accumulates in int32 without overflow checks",
                "QuantizeLinear casts to int32 before clipping: |x / scale| >= 2**31 wraps",
            ),
        )

    def _error(self, exc: Exception, stage: str) -> BackendError:
        """No implementation of an op (at the model's opset) is a refusal; anything else is a failure."""
        reason = _refusal(exc)
        if reason is not None:
            return UnsupportedOnBackend(self.name, f"{stage}: {reason}")
        return BackendError(self.name, f"{stage}: {type(exc).__name__}: {exc}")

    def _prepare(self, model: ModelProto, intermediates: bool):
        from onnx.reference import ReferenceEvaluator

        self.check_supported(model, tensor_infos(model))
        try:
            evaluator = ReferenceEvaluator(model)
        except Exception as exc:  # the evaluator raises whatever its op classes raise
            raise self._error(exc, "cannot load the model") from None
        return evaluator, node_outputs(model) if intermediates else None

    def _execute(self, prepared, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        evaluator, exposed = prepared
        try:
            with np.errstate(all="ignore"):
                if exposed is None:
                    return dict(zip(evaluator.output_names, evaluator.run(None, feeds), strict=True))
                values = evaluator.run(None, feeds, intermediate=True)
        except Exception as exc:
            raise self._error(exc, "run failed") from None
        return {name: np.asarray(values[name]) for name in exposed if name in values}
