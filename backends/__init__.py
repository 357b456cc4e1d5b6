"""Backends: run one ONNX model on refquant and on other engines through one interface.

>>> import refquant.backends as backends
>>> backends.available()["reference"]
Availability(available=True, reason=None)
>>> ort = backends.get("ort-cpu")                                # doctest: +SKIP
>>> outputs = ort.run("model.onnx", {"x": x})                    # doctest: +SKIP

Names:

- ``reference``: refquant, profile "spec".
- ``reference-ort``: refquant, profile "onnxruntime" (refquant's emulation of onnxruntime).
- ``onnx-reference``: onnx.reference.ReferenceEvaluator.
- ``ort-cpu`` / ``ort-cpu-opt``: onnxruntime CPU, graph optimizations disabled / all.
- ``ort-cuda``, ``ort-tensorrt``: onnxruntime-gpu's CUDA and TensorRT providers.
- ``openvino``: the OpenVINO runtime, CPU device.

Every adapter is a :class:`~refquant.backends.base.Backend`; options passed to
:func:`get` go to its constructor (e.g. ``get("ort-tensorrt", int8=True)``).
"""

from __future__ import annotations

import importlib

if __name__ == "backends":  # this folder imported from a checkout under its old top-level name
    raise ImportError(
        "refquant's backends are the package refquant.backends since 0.2 (the folder backends/ is installed under "
        "that name): write `import refquant.backends as backends`; the pytest plugin is refquant.backends.pytest_plugin"
    )

from .base import (
    Availability,
    Backend,
    BackendError,
    BackendUnavailable,
    Capabilities,
    Unsupported,
    UnsupportedOnBackend,
)

__all__ = [
    "get",
    "create",
    "available",
    "names",
    "Backend",
    "Availability",
    "Capabilities",
    "Unsupported",
    "BackendError",
    "BackendUnavailable",
    "UnsupportedOnBackend",
]

#: name -> (module, class, default options)
_ADAPTERS: dict[str, tuple[str, str, dict]] = {
    "reference": ("reference", "Reference", {"profile": "spec"}),
    "reference-ort": ("reference", "Reference", {"profile": "onnxruntime", "name": "reference-ort"}),
    "onnx-reference": ("onnx_reference", "OnnxReference", {}),
    "ort-cpu": ("onnxruntime", "OnnxRuntime", {"optimization": "disabled"}),
    "ort-cpu-opt": ("onnxruntime", "OnnxRuntime", {"optimization": "all"}),
    "ort-cuda": ("onnxruntime", "OrtCuda", {}),
    "ort-tensorrt": ("onnxruntime", "OrtTensorRT", {}),
    "openvino": ("openvino", "OpenVino", {}),
}


def names() -> list[str]:
    """Every backend name, available or not."""
    return list(_ADAPTERS)


def create(name: str, **options) -> Backend:
    """The adapter for ``name``, whether or not it can run here."""
    try:
        module, cls, defaults = _ADAPTERS[name]
    except KeyError:
        raise BackendError(name, f"unknown backend; known: {', '.join(_ADAPTERS)}") from None
    adapter = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return adapter(**{**defaults, **options})


def get(name: str, **options) -> Backend:
    """The adapter for ``name``, or :class:`BackendUnavailable` saying why it cannot run here."""
    backend = create(name, **options)
    backend.require_available()
    return backend


def available() -> dict[str, Availability]:
    """Every backend name with whether it can run here and, if not, why."""
    return {name: create(name).availability() for name in _ADAPTERS}
