"""OpenVINO runtime (PyPI ``openvino``) on its CPU device, reading the ONNX model directly.

OpenVINO's ONNX frontend loads any IR version and opset (it runs the newest
version of each op it knows); its outputs of sub-byte and float8 types come
back as raw bytes, so such outputs travel through exact Casts.
"""

from __future__ import annotations

import functools

import re

import numpy as np
from onnx import ModelProto

from .base import (
    Availability,
    Backend,
    BackendError,
    BackendUnavailable,
    Capabilities,
    Unsupported,
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
    ov = import_optional("openvino", backend, INSTALL)
    _stop_telemetry()
    return ov


@functools.cache
def _stop_telemetry() -> None:
    """Let the telemetry event that importing openvino queues finish, then stop its sender.

    The sender forks a process from a thread; a fork while OpenBLAS computes on the main thread
    deadlocks in OpenBLAS's fork handler (seen here: a benchmark hung for good). Once per process.
    """
    try:
        from openvino_telemetry import Telemetry

        Telemetry().force_shutdown(1.0)
    except (ImportError, RuntimeError):  # no telemetry package, or none started: nothing to stop
        pass


def _omitted_before_given(node, infos) -> bool:
    """An optional input left out ("") while a later one is given (MatMulInteger's a_zero_point before b_zero_point)."""
    names = list(node.input)
    return any(not name and any(names[i + 1 :]) for i, name in enumerate(names))


_NULL_NODE = (
    "an omitted optional input followed by a given one (x/a_zero_point \"\" before w/b_zero_point): the frontend's "
    "NullNode for it fails to compile (\"CPU plug-in doesn't support NullNode operation with dynamic rank\")"
)

#: combinations OpenVINO 2026.4's CPU plugin fails on (spec/backends.md)
UNSUPPORTED = tuple(Unsupported(op, _NULL_NODE, _omitted_before_given) for op in ("MatMulInteger", "ConvInteger"))

#: error texts that are OpenVINO refusing the model (a known limit), not a failure
_REFUSALS = (
    "OpConversionFailure",  # the ONNX frontend has no translator for the op, or refuses the node
    "Unsupported data type",  # element types it does not have (int2, float8 fnuz, ...)
    "No suitable implementations",  # the CPU plugin has no kernel for the node's types/layout
    "doesn't support non per-tensor quantization",  # a FakeQuantize per channel along an axis it does not take
)


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
            unsupported=UNSUPPORTED,
            notes=(
                "loads any opset and runs the newest version of each op it knows",
                "QuantizeLinear is a float32 FakeQuantize: it rounds after adding the zero point "
                "(refquant profile 'openvino', quantize_formula='fake-quantize')",
                "DequantizeLinear computes x * scale - zp * scale with one rounding, not (x - zp) * scale "
                "(dequantize_formula='distributed')",
                "'No suitable implementations' (no CPU kernel for the node, e.g. QLinearConv int8 x with uint8 w, "
                "a QDQ Conv with uint8 weights) is reported as unsupported",
            ),
        )

    def _error(self, exc: Exception, stage: str) -> BackendError:
        """A conversion failure (no translator for the op, or one that refuses the node) is a known limit."""
        message = _LOCATION.sub("", str(exc)).strip()
        refused = type(exc).__name__ in ("OpConversionFailure", "NotImplementedFailure")
        if refused or any(text in message for text in _REFUSALS):
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
        infos = tensor_infos(model)
        self.check_supported(model, infos)
        if intermediates:
            model = expose(model, node_outputs(model), infos)
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
