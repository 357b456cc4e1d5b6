"""onnxruntime: the CPU provider (with or without graph optimizations), CUDA and TensorRT.

``ort-cpu`` runs with graph optimizations disabled, ``ort-cpu-opt`` with all
of them: the optimizer fuses DequantizeLinear -> op -> QuantizeLinear into
QLinear kernels, a different code path. The GPU adapters put their provider
first and keep CUDA/CPU as fallbacks for the nodes it does not take.

A model is lowered (:mod:`refquant.backends.lowering`) where onnxruntime loads only an
older IR version/opset or has no kernel for an op's newest version; tensors
the numpy binding cannot pass (float8, int4, ...) travel as initializers and
through exact Casts.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper

from .base import (
    Availability,
    Backend,
    BackendError,
    BackendUnavailable,
    Capabilities,
    TensorInfo,
    Unsupported,
    UnsupportedOnBackend,
    import_optional,
    input_type,
    load_model,
    node_outputs,
    output_type,
    tensor_infos,
)
from .lowering import Binding, BindingError, Limits, LoweringError, expose, lower

__all__ = ["OnnxRuntime", "OrtCuda", "OrtTensorRT", "OPTIMIZATION_LEVELS", "CPU_UNSUPPORTED"]

INSTALL = "pip install onnxruntime, or onnxruntime-gpu for CUDA and TensorRT"

#: option value -> onnxruntime.GraphOptimizationLevel member
OPTIMIZATION_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

_OPEN_ENDED = 2**31 - 1


def _ort(backend: str):
    return import_optional("onnxruntime", backend, INSTALL)


# -- combinations onnxruntime's CPU provider does not run ------------------------------------------
# From shared/facts/onnxruntime-quantization.md and onnxruntime 1.32's kernel registry
# (onnxruntime.capi._pybind_state.get_all_opkernel_def()); checked by tests/backends/test_adapters.py.

_U8, _S8 = TensorProto.UINT8, TensorProto.INT8
#: (x/a, w/b, y) types of the QLinearConv and QLinearMatMul CPU kernels
QLINEAR_KERNEL_TYPES = frozenset({(_U8, _U8, _U8), (_U8, _S8, _U8), (_S8, _S8, _S8)})


def _qlinear_types_missing(node, infos) -> bool:
    found = tuple(input_type(node, infos, i) for i in (0, 3, 7))
    return None not in found and found not in QLINEAR_KERNEL_TYPES


def _more_than_one(index: int):
    """A test: does input ``index`` hold more than one value (per-channel/per-row rather than per-tensor)?"""

    def applies(node, infos) -> bool:
        present = len(node.input) > index and node.input[index]
        info: TensorInfo | None = infos.get(node.input[index]) if present else None
        return info is not None and info.shape is not None and any(d != 1 for d in info.shape)

    return applies


def _same_padding_with_dilation(node, infos) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return attrs.get("auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER") and any(
        d != 1 for d in attrs.get("dilations", ())
    )


def _per_column_b_zero_point_with_batched_b(node, infos) -> bool:
    """MatMulInteger: a 1-D b_zero_point of several values with b of a rank other than 2."""
    b = infos.get(node.input[1]) if len(node.input) > 1 else None
    zero_point = infos.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if b is None or zero_point is None or b.shape is None or zero_point.shape is None:
        return False
    return len(zero_point.shape) == 1 and zero_point.shape[0] != 1 and len(b.shape) != 2


def _blocked_with_one_scale(node, infos) -> bool:
    """QuantizeLinear/DequantizeLinear with block_size > 0 and a scale of one element (one block)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    scale = infos.get(node.input[1]) if len(node.input) > 1 else None
    if not attrs.get("block_size") or scale is None or scale.shape is None:
        return False
    return all(d == 1 for d in scale.shape)


def _float4(node, infos) -> bool:
    return TensorProto.FLOAT4E2M1 in (input_type(node, infos, 0), input_type(node, infos, 2), output_type(node, infos))


_QLINEAR_TYPES = "CPU kernels take uint8 {x} with uint8/int8 {w} and uint8 y, or int8 {x}, {w} and y (NOT_IMPLEMENTED)"
_DILATED_SAME = "dilations with auto_pad SAME_UPPER/SAME_LOWER are not supported (INVALID_ARGUMENT)"

CPU_UNSUPPORTED = (
    Unsupported("QLinearConv", _QLINEAR_TYPES.format(x="x", w="w"), _qlinear_types_missing),
    Unsupported("QLinearMatMul", _QLINEAR_TYPES.format(x="a", w="b"), _qlinear_types_missing),
    Unsupported("ConvInteger", "per-channel w_zero_point is not supported (only per-tensor)", _more_than_one(3)),
    Unsupported("MatMulInteger", "per-row a_zero_point is not supported (only per-tensor)", _more_than_one(2)),
    Unsupported(
        "MatMulInteger",
        "a 1-D per-column b_zero_point needs a 2-D b; with a batched or 1-D b the run fails "
        "(FAIL: IsBQuantParamSupported ... B zero point is not valid; b_zero_point of b's rank, [..., 1, N], is accepted)",
        _per_column_b_zero_point_with_batched_b,
    ),
    Unsupported("QuantizeLinear", "no CPU kernel for float4e2m1 (NOT_IMPLEMENTED)", _float4),
    *(
        Unsupported(
            op,
            "block_size > 0 with a one-element scale (a single block) is taken for per-tensor quantization and "
            "refused at run time (FAIL: block_size must be 0 for per-tensor quantization)",
            _blocked_with_one_scale,
        )
        for op in ("QuantizeLinear", "DequantizeLinear")
    ),
    Unsupported("DequantizeLinear", "no CPU kernel for float4e2m1 (NOT_IMPLEMENTED)", _float4),
    *(Unsupported(op, _DILATED_SAME, _same_padding_with_dilation) for op in ("Conv", "ConvInteger", "QLinearConv")),
)


# -- what this onnxruntime build accepts ---------------------------------------------------------


def _probe_model(ir_version: int) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=ir_version)
    return model.SerializeToString()


def _quiet_options(ort):
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return options


@functools.cache
def _max_ir_version(version: str) -> int:
    """The newest IR version (up to onnx's) this onnxruntime loads, found by trying."""
    ort = _ort("onnxruntime")
    for ir_version in range(onnx.IR_VERSION, 6, -1):
        try:
            ort.InferenceSession(_probe_model(ir_version), _quiet_options(ort), providers=["CPUExecutionProvider"])
        except Exception:
            continue
        return ir_version
    return 6


@functools.cache
def _max_opset(version: str) -> int:
    """The newest ai.onnx opset this onnxruntime knows (it refuses models importing a newer one)."""
    from onnxruntime.capi import _pybind_state as C

    return max(s.since_version for s in C.get_all_operator_schema() if s.domain in ("", "ai.onnx"))


@functools.cache
def _kernel_ranges(version: str, providers: tuple[str, ...]) -> dict[str, tuple[tuple[int, int], ...]]:
    """ai.onnx op -> version ranges of the kernels the given providers register."""
    from onnxruntime.capi import _pybind_state as C

    ranges = defaultdict(set)
    for kernel in C.get_all_opkernel_def():
        if kernel.domain in ("", "ai.onnx") and kernel.provider in providers:
            ranges[kernel.op_name].add(tuple(kernel.version_range))
    return {op: tuple(sorted(found)) for op, found in ranges.items()}


def _serves(version_range: tuple[int, int], since: int) -> bool:
    """onnxruntime's rule: a kernel [start, end] serves ``since`` if start == since, or start < since <= end
    for a closed range; an open-ended kernel serves only its own start version."""
    start, end = version_range
    return start == since or start < since <= end != _OPEN_ENDED


def _has_kernel(ranges: Mapping[str, tuple[tuple[int, int], ...]], op_type: str, since: int) -> bool:
    return any(_serves(version_range, since) for version_range in ranges.get(op_type, ()))


@functools.cache
def _kernel_types(version: str, providers: tuple[str, ...], op_type: str, since: int) -> str:
    """The type combinations of the kernels for ``op_type`` at ``since``, e.g. "T1=uint8 T2=int8|uint8; ..."."""
    from onnxruntime.capi import _pybind_state as C

    combos = [
        " ".join(
            f"{name}={'|'.join(t[len('tensor(') : -1] for t in types)}"
            for name, types in sorted(kernel.type_constraints.items())
        )
        for kernel in C.get_all_opkernel_def()
        if kernel.op_name == op_type and kernel.provider in providers and _serves(kernel.version_range, since)
    ]
    return "; ".join(combos)


# -- errors ----------------------------------------------------------------------------------------

_MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\)")
#: a node whose op onnxruntime does not know in its domain (FAIL status): a refusal, like NOT_IMPLEMENTED
_UNKNOWN_OP = re.compile(r"\S+\(-?\d+\) is not a registered function/op")
_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : (\w+) : ")
_SOURCE = re.compile(r"\S+\.(?:cc|cpp|h):\d+ (?:\S[^\n]*?\)(?: const)? )?")


def _clean(text: str) -> tuple[str, str]:
    """(status, message) of an onnxruntime error, without the C++ file and function names."""
    match = _STATUS.match(text)
    status = match.group(1) if match else "ERROR"
    return status, _SOURCE.sub("", text[match.end() :] if match else text).strip()


# -- the adapters ----------------------------------------------------------------------------------


class OnnxRuntime(Backend):
    """onnxruntime with the providers in :attr:`providers`.

    ``optimization``: "disabled", "basic", "extended" or "all" (graph
    optimization level). ``threads``: intra-op threads, 1 by default: MLAS splits a large float
    GEMM between threads and the split changes its rounding, which the onnxruntime profile replays
    for one thread (profile option ``mlas_threads``); None: onnxruntime's default (one per core).
    """

    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def __init__(self, *, optimization: str = "disabled", threads: int | None = 1, name: str | None = None):
        super().__init__()
        if optimization not in OPTIMIZATION_LEVELS:
            raise BackendError(
                name or "onnxruntime",
                f"optimization={optimization!r} is not one of {', '.join(OPTIMIZATION_LEVELS)}",
            )
        self.optimization = optimization
        self.threads = threads
        self.name = name or self._default_name()

    def _default_name(self) -> str:
        return {"disabled": "ort-cpu", "all": "ort-cpu-opt"}.get(self.optimization, f"ort-cpu-{self.optimization}")

    # -- description ------------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        try:
            return _ort(self.name).__version__
        except BackendUnavailable:
            return None

    def availability(self) -> Availability:
        try:
            ort = _ort(self.name)
        except BackendUnavailable as exc:
            return Availability(False, exc.message)
        present = ort.get_available_providers()
        missing = [p for p in self.providers if p not in present]
        if missing:
            return Availability(
                False,
                f"onnxruntime {ort.__version__} has no {', '.join(missing)} (it has {', '.join(present)}; {INSTALL})",
            )
        return self._device_availability()

    def _device_availability(self) -> Availability:
        return Availability(True)

    @property
    def capabilities(self) -> Capabilities:
        version = self.version
        return Capabilities(
            ir_version=_max_ir_version(version) if version else None,
            opset=_max_opset(version) if version else None,
            domains=frozenset({"com.microsoft", "ai.onnx.ml"}),
            unsupported=CPU_UNSUPPORTED,
            notes=(
                "an op version without a kernel is run from an older opset where the op means the same",
                "float8/int4/bfloat16 inputs are passed as initializers (one session per feed)",
            ),
        )

    def limits(self) -> Limits:
        """IR/opset this onnxruntime loads and the kernels of this adapter's providers."""
        version = self.version
        ranges = _kernel_ranges(version, self.providers)
        return Limits(_max_ir_version(version), _max_opset(version), functools.partial(_has_kernel, ranges))

    def provider_options(self) -> list[tuple[str, dict[str, str]]]:
        """The ``providers`` argument of onnxruntime.InferenceSession."""
        return [(provider, {}) for provider in self.providers]

    def session_options(self):
        ort = _ort(self.name)
        options = _quiet_options(ort)
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[self.optimization])
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        return options

    # -- running -----------------------------------------------------------------------------------

    def _error(self, exc: Exception, stage: str) -> BackendError:
        status, message = _clean(str(exc))
        if status == "NOT_IMPLEMENTED" or _UNKNOWN_OP.search(message):
            return UnsupportedOnBackend(self.name, f"{stage}: {message}{self._kernels_of(message)}")
        return BackendError(self.name, f"{stage}: {status}: {message}")

    def _kernels_of(self, message: str) -> str:
        """'; kernels: ...' listing the type combinations onnxruntime has for the op a message names."""
        match = _MISSING_KERNEL.search(message)
        if not match:
            return ""
        combos = _kernel_types(self.version, self.providers, match.group(1), int(match.group(2)))
        return f"; its kernels take {combos}" if combos else f"; it has no kernel for {match.group(1)}"

    def _session(self, model: ModelProto):
        ort = _ort(self.name)
        try:
            return ort.InferenceSession(
                model.SerializeToString(), self.session_options(), providers=self.provider_options()
            )
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise self._error(exc, "cannot load the model") from None

    def _prepare(self, model: ModelProto, intermediates: bool) -> tuple[Binding, object | None]:
        infos = tensor_infos(model)
        self.check_supported(model, infos)
        try:
            model = lower(model, self.limits())
        except LoweringError as exc:
            raise UnsupportedOnBackend(self.name, str(exc)) from None
        if intermediates:
            model = expose(model, node_outputs(model), infos)
        binding = Binding.of(model)
        return binding, None if binding.inline else self._session(binding.model)

    def optimized_model(self, model, feeds: Mapping[str, np.ndarray]) -> ModelProto | None:
        """The graph onnxruntime's optimizer makes (SessionOptions.optimized_model_filepath), for a CPU
        adapter with optimizations on; None with them off, on GPU providers, or where loading fails."""
        if self.optimization == "disabled" or self.providers != OnnxRuntime.providers:
            return None
        try:
            binding, _ = self._prepare(load_model(model, self.name), intermediates=False)
            graph = binding.split(dict(feeds))[0] if binding.inline else binding.model
            with tempfile.TemporaryDirectory() as folder:
                options = self.session_options()
                options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
                _ort(self.name).InferenceSession(graph.SerializeToString(), options, providers=self.provider_options())
                return load_model(options.optimized_model_filepath, self.name)
        except Exception:  # whatever stops onnxruntime here also stopped run(): nothing to replay
            return None

    def _execute(self, prepared, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding, session = prepared
        if binding.inline:
            try:
                model, feeds = binding.split(feeds)
            except BindingError as exc:
                raise BackendError(self.name, str(exc)) from None
            session = self._session(model)
        try:
            values = session.run(None, feeds)
        except Exception as exc:
            raise self._error(exc, "run failed") from None
        names = [o.name for o in session.get_outputs()]
        # an output that is also an input may alias the feed (onnxruntime issue 21922): copy it
        values = [value.copy() if name in feeds else value for name, value in zip(names, values, strict=True)]
        return binding.restore(zip(names, values, strict=True))


class _Gpu(OnnxRuntime):
    """An onnxruntime GPU provider with CUDA and CPU behind it for the nodes it does not take."""

    default_name = "ort-gpu"

    def __init__(
        self, *, device_id: int = 0, optimization: str = "disabled", threads: int | None = 1, name: str | None = None
    ):
        self.device_id = device_id
        self._device_status: Availability | None = None
        super().__init__(optimization=optimization, threads=threads, name=name)

    def _default_name(self) -> str:
        return type(self).default_name

    def _device_availability(self) -> Availability:
        """Whether the provider really runs: onnxruntime silently falls back to CPU without a GPU."""
        if self._device_status is None:
            ort = _ort(self.name)
            primary = self.providers[0]
            try:
                with warnings.catch_warnings():  # onnxruntime warns when it falls back
                    warnings.simplefilter("ignore")
                    options = _quiet_options(ort)
                    session = ort.InferenceSession(_probe_model(7), options, providers=self.provider_options())
                used = session.get_providers()
            except Exception as exc:
                used, detail = [], _clean(str(exc))[1]
            else:
                detail = f"onnxruntime fell back to {', '.join(used)}"
            reason = (
                f"{primary} is installed but cannot run here (no GPU, or CUDA/TensorRT libraries missing): {detail}"
            )
            self._device_status = Availability(True) if primary in used else Availability(False, reason)
        return self._device_status


class OrtCuda(_Gpu):
    """onnxruntime-gpu's CUDA provider (``device_id``)."""

    default_name = "ort-cuda"
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider")

    def provider_options(self) -> list[tuple[str, dict[str, str]]]:
        return [("CUDAExecutionProvider", {"device_id": str(self.device_id)}), ("CPUExecutionProvider", {})]


def _flag(value: bool) -> str:
    return "True" if value else "False"


class OrtTensorRT(_Gpu):
    """onnxruntime-gpu's TensorRT provider.

    ``int8``/``fp16``: let TensorRT pick int8/fp16 kernels. ``calibration_table``:
    path of an int8 calibration table for models without Q/DQ nodes (the
    flatbuffers file onnxruntime writes, or TensorRT's own cache with
    ``native_calibration_table=True``); onnxruntime reads it from the engine
    cache directory, so it must lie in ``engine_cache_dir`` when both are
    given. ``engine_cache_dir``: cache built engines there.
    """

    default_name = "ort-tensorrt"
    providers = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

    def __init__(
        self,
        *,
        int8: bool = False,
        fp16: bool = False,
        calibration_table: str | os.PathLike | None = None,
        native_calibration_table: bool = False,
        engine_cache_dir: str | os.PathLike | None = None,
        device_id: int = 0,
        optimization: str = "disabled",
        threads: int | None = 1,
        name: str | None = None,
    ):
        self.int8, self.fp16 = int8, fp16
        self.calibration_table = Path(calibration_table) if calibration_table else None
        self.native_calibration_table = native_calibration_table
        self.engine_cache_dir = Path(engine_cache_dir) if engine_cache_dir else None
        super().__init__(device_id=device_id, optimization=optimization, threads=threads, name=name)
        if self.calibration_table and not int8:
            raise BackendError(self.name, "a calibration table is read only with int8=True")
        if self.native_calibration_table and not self.calibration_table:
            raise BackendError(self.name, "native_calibration_table=True needs calibration_table")
        table_dir = self.calibration_table.parent.resolve() if self.calibration_table else None
        if table_dir and self.engine_cache_dir and table_dir != self.engine_cache_dir.resolve():
            raise BackendError(
                self.name,
                f"onnxruntime reads the calibration table from the engine cache directory "
                f"'{self.engine_cache_dir}'; '{self.calibration_table}' is elsewhere",
            )

    def tensorrt_options(self) -> dict[str, str]:
        """Options of TensorrtExecutionProvider, under onnxruntime's names."""
        options = {
            "device_id": str(self.device_id),
            "trt_int8_enable": _flag(self.int8),
            "trt_fp16_enable": _flag(self.fp16),
        }
        if self.calibration_table:
            options["trt_int8_calibration_table_name"] = self.calibration_table.name
            options["trt_int8_use_native_calibration_table"] = _flag(self.native_calibration_table)
            options["trt_engine_cache_path"] = str(self.calibration_table.parent)
        if self.engine_cache_dir:
            options["trt_engine_cache_enable"] = "True"
            options["trt_engine_cache_path"] = str(self.engine_cache_dir)
        return options

    def provider_options(self) -> list[tuple[str, dict[str, str]]]:
        return [
            ("TensorrtExecutionProvider", self.tensorrt_options()),
            ("CUDAExecutionProvider", {"device_id": str(self.device_id)}),
            ("CPUExecutionProvider", {}),
        ]

    @property
    def capabilities(self) -> Capabilities:
        base = super().capabilities
        return dataclasses.replace(
            base,
            notes=base.notes
            + (
                "TensorRT takes QuantizeLinear/DequantizeLinear only with zero point 0; QLinearConv, "
                "QLinearMatMul, MatMulInteger, ConvInteger and DynamicQuantizeLinear run on CUDA/CPU",
            ),
        )
