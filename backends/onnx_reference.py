"""onnx.reference.ReferenceEvaluator: ONNX's own Python implementation of the operators."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto

from .base import Availability, Backend, BackendError, Capabilities, UnsupportedOnBackend, node_outputs

__all__ = ["OnnxReference"]


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
            notes=(
                "requantizes in float64 and accumulates in int32 without overflow checks",
                "QuantizeLinear casts to int32 before clipping: |x / scale| >= 2**31 wraps",
            ),
        )

    def _prepare(self, model: ModelProto, intermediates: bool):
        from onnx.reference import ReferenceEvaluator

        try:
            evaluator = ReferenceEvaluator(model)
        except NotImplementedError as exc:
            raise UnsupportedOnBackend(self.name, str(exc)) from None
        except Exception as exc:  # the evaluator raises whatever its op classes raise
            raise BackendError(self.name, f"cannot load the model: {type(exc).__name__}: {exc}") from None
        return evaluator, node_outputs(model) if intermediates else None

    def _execute(self, prepared, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        evaluator, exposed = prepared
        try:
            with np.errstate(all="ignore"):
                if exposed is None:
                    return dict(zip(evaluator.output_names, evaluator.run(None, feeds), strict=True))
                values = evaluator.run(None, feeds, intermediate=True)
        except NotImplementedError as exc:
            raise UnsupportedOnBackend(self.name, str(exc)) from None
        except Exception as exc:
            raise BackendError(self.name, f"run failed: {type(exc).__name__}: {exc}") from None
        return {name: np.asarray(values[name]) for name in exposed if name in values}
