"""OpenVINO runtime (PyPI ``openvino``) on its CPU device, reading the ONNX model directly.

OpenVINO's ONNX frontend loads any IR version and opset (it runs the newest
version of each op it knows); its outputs of sub-byte and float8 types come
back as raw bytes, so such outputs travel through exact Casts.
"""

from __future__ import annotations

import re

import numpy as np
from onnx import ModelProto

from .base import (
    Availability,
    Backend,
    BackendError,
    BackendUnavailable,
    Capabilities,
    UnsupportedOnBackend,
    import_optional,
    node_outputs,
    tensor_infos,
)
from .lowering import Binding, BindingError, expose

__all__ = ["OpenVino"]

INSTALL = "pip install openvino"

_LOCATION = re.compile(r"^(?:Exception from |Check '.*' failed at )\S+:\d+:\n", re.MULTILINE)


def _ov(backend: str):
    return import_optional("openvino", backend, INSTALL)


class OpenVino(Backend):
    """OpenVINO on ``device`` ("CPU") with ``precision`` as INFERENCE_PRECISION_HINT.

    The default "f32" keeps float arithmetic in float32 where the CPU plugin
    would otherwise choose bf16 on hardware that has it.
    """

    name = "openvino"

    def __init__(self, *, device: str = "CPU", precision: str = "f32", name: str | None = None):
        super().__init__()
        self.device = device
        self.precision = precision
        self.name = name or "openvino"

    @property
    def version(self) -> str | None:
        try:
            return _ov(self.name).__version__
        except BackendUnavailable:
            return None

    def availability(self) -> Availability:
        try:
            ov = _ov(self.name)
            devices = ov.Core().available_devices
        except BackendUnavailable as exc:
            return Availability(False, exc.message)
        except Exception as exc:  # a broken install raises from Core()
            return Availability(False, f"OpenVINO cannot start: {exc}")
        if self.device not in devices:
            return Availability(
                False, f"OpenVINO has no {self.device} device here (it has {', '.join(devices) or 'none'})"
            )
        return Availability(True)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            ir_version=None,
            opset=None,
            notes=(
                "loads any opset and runs the newest version of each op it knows",
                "QuantizeLinear rounds after adding the zero point (round_half_even(x / scale + zp))",
                "DequantizeLinear computes x * scale - zp * scale with one rounding, not (x - zp) * scale",
            ),
        )

    def _error(self, exc: Exception, stage: str) -> BackendError:
        """A conversion failure (no translator for the op, or one that refuses the node) is a known limit."""
        message = _LOCATION.sub("", str(exc)).strip()
        refused = ("OpConversionFailure", "Unsupported data type")  # documented limits, not failures
        if any(text in message for text in refused) or type(exc).__name__ in ("OpConversionFailure", "NotImplementedFailure"):
            return UnsupportedOnBackend(self.name, f"{stage}: {message}")
        return BackendError(self.name, f"{stage}: {message}")

    def _compile(self, model: ModelProto):
        ov = _ov(self.name)
        core = ov.Core()
        try:
            read = core.read_model(model=model.SerializeToString(), weights=None)
            return core.compile_model(read, self.device, {"INFERENCE_PRECISION_HINT": self.precision})
        except Exception as exc:  # RuntimeError and OpenVINO's *Failure types
            raise self._error(exc, "cannot load the model") from None

    def _prepare(self, model: ModelProto, intermediates: bool) -> tuple[Binding, object | None]:
        if intermediates:
            model = expose(model, node_outputs(model), tensor_infos(model))
        binding = Binding.of(model)
        return binding, None if binding.inline else self._compile(binding.model)

    def _execute(self, prepared, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding, compiled = prepared
        if binding.inline:
            try:
                model, feeds = binding.split(feeds)
            except BindingError as exc:
                raise BackendError(self.name, str(exc)) from None
            compiled = self._compile(model)
        try:
            values = compiled.create_infer_request().infer(feeds)
        except Exception as exc:  # RuntimeError and OpenVINO's *Failure types
            raise self._error(exc, "run failed") from None
        wanted = [o.name for o in binding.model.graph.output]
        by_name = {name: value for port, value in values.items() for name in port.get_names() if name in wanted}
        return binding.restore((name, by_name[name]) for name in wanted if name in by_name)
