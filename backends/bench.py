"""``refquant bench``: the speed of refquant next to the engines it checks.

    refquant bench [--ops ...] [--models ...] [--backends ...] [--repeat N] [--json FILE] [--plot FILE] [--quick]

Each case is a model with feeds: single-node models of the integer products
and of quantization (weights as initializers, as in real models), whole models
(a CNN and an MLP quantized by onnxruntime.quantization and the bundled example,
or --models files), and a fuzz run. Every engine is prepared once per case (session
built, model compiled); a call is one ``_execute`` of the prepared model, timed
after a warm-up call, in sweeps over all cases one engine at a time (see
:func:`run`); the table shows the median per engine and case.

A speed table is only as good as the machine was quiet: the table records the
load average, and OpenBLAS's threads slow down sharply when other processes
hold the cores (``OPENBLAS_NUM_THREADS=1`` trades that for single-core speed).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import itertools
import logging
import os
import platform
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from math import prod
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper, numpy_helper

import refquant
from refquant.dtypes import proto_of
from refquant.feeds import random_feeds

from . import conformance, create
from .base import BackendError, load_model

__all__ = [
    "BenchCase",
    "Row",
    "Result",
    "DEFAULT_BACKENDS",
    "OPS",
    "cases",
    "run",
    "fuzz_throughput",
    "quantized_models",
    "machine",
    "table",
    "plot",
]

#: engines timed by default, the reference first (the ratios divide by it or into it)
DEFAULT_BACKENDS = ("reference", "ort-cpu", "onnx-reference", "openvino")
#: what --ops selects from: the operators, the whole models and the fuzz run
OPS = (
    "QLinearConv",
    "ConvInteger",
    "QLinearMatMul",
    "MatMulInteger",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "models",
    "fuzz",
)
INTEGER_PRODUCTS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger")
QUANTIZATION = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
#: the bundled example model, benchmarked when no --models are given
EXAMPLE_MODELS = (Path(refquant.__file__).parent / "examples" / "qcnn.onnx",)
#: seconds an engine may spend on one case before it stops short of --repeat (three calls at least)
BUDGET_S = 2.0
OPSET = 21


@dataclass(frozen=True)
class BenchCase(conformance.ConformanceCase):
    """A conformance case timed by the bench: ``op`` is its --ops name, ``types`` its operand types
    ("u8s8": u8 x/a, s8 w/b)."""

    types: str = ""
    #: convolutions: input + output + im2col bytes (refquant's float32 column matrix), the memory target's unit
    memory_unit_bytes: int = 0


@dataclass
class Row:
    """One case: median ms per engine (None where it did not run, with the reason), the fastest call, peak
    memory of the reference."""

    case: str
    op: str
    types: str
    ms: dict[str, float | None] = field(default_factory=dict)
    fastest_ms: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    peak_bytes: int | None = None
    memory_limit_bytes: int | None = None

    def busy(self, backend: str) -> bool:
        """Whether the median is more than twice the fastest call: the machine was busy during the calls."""
        median, fastest = self.ms.get(backend), self.fastest_ms.get(backend)
        return median is not None and fastest is not None and median > 2 * fastest

    def ratio(self, slower: str, faster: str) -> float | None:
        a, b = self.ms.get(slower), self.ms.get(faster)
        return a / b if a is not None and b else None

    def targets(self) -> list[tuple[str, bool]]:
        """The issue's targets that apply to this case: (description, met); unmeasurable ones are left out."""
        checks = []
        to_ort = self.ratio("reference", "ort-cpu")
        if self.op in INTEGER_PRODUCTS:
            if to_ort is not None and self.types in ("u8s8", "u8u8"):
                checks.append(("<=3x ort-cpu", to_ort <= 3))
            if to_ort is not None and self.types == "s8s8":
                checks.append(("faster than ort-cpu", to_ort < 1))
            over_onnx = self.ratio("onnx-reference", "reference")
            if over_onnx is not None:
                checks.append((">=40x onnx-reference", over_onnx >= 40))
        elif self.op in QUANTIZATION and to_ort is not None:
            checks.append(("<=2x ort-cpu", to_ort <= 2))
        elif self.op == "models" and to_ort is not None:
            checks.append(("<=5x ort-cpu", to_ort <= 5))
        if self.peak_bytes is not None and self.memory_limit_bytes:
            checks.append(("memory <=3x", self.peak_bytes <= self.memory_limit_bytes))
        return checks


@dataclass
class Result:
    """A bench run: the machine, the engines in column order, one row per case, the fuzz run."""

    machine: dict
    backends: list[str]
    rows: list[Row]
    fuzz: dict | None = None

    def to_dict(self) -> dict:
        return {
            "machine": self.machine,
            "backends": self.backends,
            "rows": [asdict(r) | {"targets": [{"target": t, "met": met} for t, met in r.targets()]} for r in self.rows],
            "fuzz": self.fuzz,
        }


# -- cases -------------------------------------------------------------------------------------------


def _single_node_model(op_type: str, inputs: dict, initializers: dict, outputs: dict, attrs: dict | None = None):
    """A model of one node: ``inputs`` (graph inputs) then ``initializers``, in the op's input order;
    ``outputs`` maps output names to TensorProto types."""
    names = [*inputs, *initializers]
    graph = helper.make_graph(
        [helper.make_node(op_type, names, list(outputs), **(attrs or {}))],
        op_type.lower(),
        [helper.make_tensor_value_info(n, proto_of(a.dtype), a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
        [numpy_helper.from_array(a, n) for n, a in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model


_TYPES = {"u8": np.uint8, "s8": np.int8}


def _uniform(rng, dtype, shape) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def _middle(dtype) -> np.ndarray:
    """The zero point of a symmetric range: 128 for uint8, 0 for int8."""
    return np.array(128 if dtype == np.uint8 else 0, dtype)


def _conv_case(rng, types: str, x_shape, w_shape, group: int = 1, integer: bool = False) -> BenchCase:
    """QLinearConv (or ConvInteger) of full-range operands, 3x3 kernel, pad 1, zero points mid-range."""
    x_type, w_type = _TYPES[types[:2]], _TYPES[types[2:]]
    x, w = _uniform(rng, x_type, x_shape), _uniform(rng, w_type, w_shape)
    attrs = {"pads": [1, 1, 1, 1], "group": group}
    points = x_shape[0] * prod(x_shape[2:])  # output points: 3x3, pad 1, stride 1 keep the spatial size
    k = w_shape[1] * prod(w_shape[2:])
    name = f"{'ConvInteger' if integer else 'QLinearConv'} {types} {'x'.join(map(str, x_shape))}*{'x'.join(map(str, w_shape))}"
    if group > 1:
        name += f" group {group}"
    output_bytes = points * w_shape[0] * (4 if integer else x.itemsize)
    unit = x.nbytes + output_bytes + group * k * points * 4
    if integer:
        model = _single_node_model(
            "ConvInteger", {"x": x}, {"w": w, "x_zero_point": _middle(x_type), "w_zero_point": _middle(w_type)},
            {"y": TensorProto.INT32}, attrs,
        )
        return BenchCase(name, "ConvInteger", model, {"x": x}, types, unit)
    constants = {
        "x_scale": np.array(0.02, np.float32),
        "x_zero_point": _middle(x_type),
        "w": w,
        "w_scale": np.array(0.005, np.float32),
        "w_zero_point": _middle(w_type),
        "y_scale": np.array(0.1 * np.sqrt(k), np.float32),
        "y_zero_point": _middle(x_type),
        "B": rng.integers(-5000, 5000, w_shape[0]).astype(np.int32),
    }
    model = _single_node_model("QLinearConv", {"x": x}, constants, {"y": proto_of(np.dtype(x_type))}, attrs)
    return BenchCase(name, "QLinearConv", model, {"x": x}, types, unit)


def _matmul_case(rng, op: str, types: str, m: int, k: int, n: int) -> BenchCase:
    """QLinearMatMul or MatMulInteger of full-range operands, b an initializer, zero points mid-range."""
    a_type, b_type = _TYPES[types[:2]], _TYPES[types[2:]]
    a, b = _uniform(rng, a_type, (m, k)), _uniform(rng, b_type, (k, n))
    name = f"{op} {types} {m}x{k} @ {k}x{n}"
    if op == "MatMulInteger":
        model = _single_node_model(
            op, {"a": a}, {"b": b, "a_zero_point": _middle(a_type), "b_zero_point": _middle(b_type)},
            {"y": TensorProto.INT32},
        )
        return BenchCase(name, op, model, {"a": a}, types)
    constants = {
        "a_scale": np.array(0.02, np.float32),
        "a_zero_point": _middle(a_type),
        "b": b,
        "b_scale": np.array(0.005, np.float32),
        "b_zero_point": _middle(b_type),
        "y_scale": np.array(0.1 * np.sqrt(k), np.float32),
        "y_zero_point": _middle(a_type),
    }
    model = _single_node_model(op, {"a": a}, constants, {"y": proto_of(np.dtype(a_type))})
    return BenchCase(name, op, model, {"a": a}, types)


def _quantization_cases(rng) -> list[BenchCase]:
    image = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    matrix = rng.standard_normal((64, 1024)).astype(np.float32)
    u8 = TensorProto.UINT8
    per_tensor = {"scale": np.array(0.02, np.float32), "zero_point": np.array(128, np.uint8)}
    per_axis = {
        "scale": rng.uniform(0.01, 0.05, 64).astype(np.float32),
        "zero_point": rng.integers(100, 156, 64).astype(np.uint8),
    }
    q_image = _uniform(rng, np.uint8, image.shape)
    q_matrix = _uniform(rng, np.uint8, matrix.shape)
    axis0 = {"axis": 0}
    return [
        BenchCase("QuantizeLinear f32->u8 1x3x224x224 per-tensor", "QuantizeLinear",
                  _single_node_model("QuantizeLinear", {"x": image}, per_tensor, {"y": u8}), {"x": image}),
        BenchCase("QuantizeLinear f32->u8 64x1024 per-axis", "QuantizeLinear",
                  _single_node_model("QuantizeLinear", {"x": matrix}, per_axis, {"y": u8}, axis0), {"x": matrix}),
        BenchCase("DequantizeLinear u8->f32 1x3x224x224 per-tensor", "DequantizeLinear",
                  _single_node_model("DequantizeLinear", {"x": q_image}, per_tensor, {"y": TensorProto.FLOAT}),
                  {"x": q_image}),
        BenchCase("DequantizeLinear u8->f32 64x1024 per-axis", "DequantizeLinear",
                  _single_node_model("DequantizeLinear", {"x": q_matrix}, per_axis, {"y": TensorProto.FLOAT}, axis0),
                  {"x": q_matrix}),
        BenchCase("DynamicQuantizeLinear f32 1x3x224x224", "DynamicQuantizeLinear",
                  _single_node_model("DynamicQuantizeLinear", {"x": image}, {},
                                    {"y": u8, "y_scale": TensorProto.FLOAT, "y_zero_point": u8}),
                  {"x": image}),
    ]  # fmt: skip


def _model_case(name: str, model: ModelProto, seed: int) -> BenchCase:
    return BenchCase(f"model {name}", "models", model, random_feeds(refquant.Session(model).inputs, seed=seed))


def _float_model(name: str, nodes, x_shape, weights) -> ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _float_models(rng) -> dict[str, tuple[ModelProto, tuple[int, ...]]]:
    """A residual CNN (1x16x56x56, two 3x3 convolutions of 32 channels, a 1x1 back to 16, skip Add,
    GlobalAveragePool, Gemm) and an MLP (32x256 -> 512 -> Relu -> 10), with their input shapes."""
    make = helper.make_node
    cnn = {
        "w1": rng.normal(0, 0.1, (32, 16, 3, 3)), "b1": rng.normal(0, 0.1, 32),
        "w2": rng.normal(0, 0.06, (32, 32, 3, 3)), "b2": rng.normal(0, 0.1, 32),
        "w3": rng.normal(0, 0.2, (16, 32, 1, 1)), "b3": rng.normal(0, 0.1, 16),
        "wf": rng.normal(0, 0.3, (10, 16)), "bf": rng.normal(0, 0.1, 10),
    }  # fmt: skip
    cnn_nodes = [
        make("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), make("Relu", ["c1"], ["r1"]),
        make("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), make("Relu", ["c2"], ["r2"]),
        make("Conv", ["r2", "w3", "b3"], ["c3"]), make("Add", ["c3", "x"], ["s"]), make("Relu", ["s"], ["r3"]),
        make("GlobalAveragePool", ["r3"], ["g"]), make("Flatten", ["g"], ["f"]),
        make("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]  # fmt: skip
    mlp = {"w1": rng.normal(0, 0.06, (256, 512)), "b1": rng.normal(0, 0.1, 512), "w2": rng.normal(0, 0.05, (512, 10))}
    mlp_nodes = [
        make("MatMul", ["x", "w1"], ["h"]), make("Add", ["h", "b1"], ["hb"]), make("Relu", ["hb"], ["r"]),
        make("MatMul", ["r", "w2"], ["y"]),
    ]  # fmt: skip
    return {
        "residual_cnn": (_float_model("residual_cnn", cnn_nodes, (1, 16, 56, 56), cnn), (1, 16, 56, 56)),
        "mlp": (_float_model("mlp", mlp_nodes, (32, 256), mlp), (32, 256)),
    }


def quantized_models(seed: int = 0) -> dict[str, ModelProto]:
    """The CNN and MLP above quantized as users do, by onnxruntime.quantization.quantize_static
    (QOperator, U8S8, per-channel weights, MinMax on 4 random batches); {} without onnxruntime."""
    try:
        from onnxruntime import quantization
    except ImportError:
        return {}
    import tempfile

    class Batches(quantization.CalibrationDataReader):
        def __init__(self, shape):
            self._batches = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self._batches, None)

    rng = np.random.default_rng(seed)
    quantized = {}
    logging.disable(logging.WARNING)  # quantize_static advises pre-processing on the root logger
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, (model, shape) in _float_models(rng).items():
                source, target = Path(folder) / f"{name}.onnx", Path(folder) / f"{name}.q.onnx"
                onnx.save(model, source)
                quantization.quantize_static(
                    str(source), str(target), Batches(shape), quant_format=quantization.QuantFormat.QOperator,
                    activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                    per_channel=True,
                )  # fmt: skip
                quantized[f"{name} (QOperator U8S8)"] = load_model(target, "bench")
    finally:
        logging.disable(logging.NOTSET)
    return quantized


def cases(ops: Iterable[str] = OPS, models: Sequence[os.PathLike | str] | None = None, *, seed: int = 0) -> list[BenchCase]:
    """The benchmark cases of the chosen --ops (without the fuzz run), the same ones for the same seed."""
    ops = set(ops)
    rng = np.random.default_rng(seed)
    chosen: list[BenchCase] = []
    if "QLinearConv" in ops:
        for types in ("u8s8", "u8u8", "s8s8"):
            chosen.append(_conv_case(rng, types, (1, 64, 56, 56), (64, 64, 3, 3)))
        chosen.append(_conv_case(rng, "u8s8", (1, 128, 56, 56), (128, 1, 3, 3), group=128))
        chosen.append(_conv_case(rng, "u8s8", (1, 256, 14, 14), (256, 256, 3, 3)))
    if "ConvInteger" in ops:
        chosen.append(_conv_case(rng, "u8u8", (1, 64, 56, 56), (64, 64, 3, 3), integer=True))
    if "QLinearMatMul" in ops:
        for types in ("u8s8", "u8u8", "s8s8"):
            chosen.append(_matmul_case(rng, "QLinearMatMul", types, 256, 512, 256))
        chosen.append(_matmul_case(rng, "QLinearMatMul", "u8s8", 1, 768, 3072))
    if "MatMulInteger" in ops:
        for types in ("u8s8", "u8u8", "s8s8"):
            chosen.append(_matmul_case(rng, "MatMulInteger", types, 256, 512, 256))
        chosen.append(_matmul_case(rng, "MatMulInteger", "u8s8", 1, 768, 3072))
    chosen += [case for case in _quantization_cases(rng) if case.op in ops]
    if "models" in ops:
        named = quantized_models(seed) if models is None else {}
        named |= {Path(path).name: load_model(os.fspath(path), "bench") for path in (EXAMPLE_MODELS if models is None else models)}
        chosen += [_model_case(name, model, seed) for name, model in named.items()]
    return chosen


# -- timing ------------------------------------------------------------------------------------------


def _prepared_call(name: str, case: BenchCase) -> Callable[[], object]:
    """A call that runs ``case`` on engine ``name``, prepared (sessions built) once; BackendError if it cannot.

    onnxruntime runs with its default threads (one per core), as deployed, not the adapters' one thread.
    """
    backend = create(name, **({"threads": None} if name.startswith("ort-") else {}))
    backend.require_available()
    prepared = backend._prepare(case.model, False)
    feeds = {k: np.asarray(v) for k, v in case.feeds.items()}
    return lambda: backend._execute(prepared, feeds)


#: timed calls per engine and case in one sweep over the cases; --repeat calls take several sweeps
CALLS_PER_SWEEP = 3


def _time_calls(call: Callable[[], object], count: int, samples: list[float], budget_s: float) -> None:
    """One untimed call (caches and BLAS threads go cold between sweeps), then the seconds of up to
    ``count`` calls appended to ``samples``; nothing once ``budget_s`` seconds are spent and three calls
    made (onnx.reference takes ~0.1 s a convolution)."""

    def spent() -> bool:
        return len(samples) >= 3 and sum(samples) > budget_s

    if spent():
        return
    call()
    for _ in range(count):
        if spent():
            return
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)


def _peak_bytes(call: Callable[[], object]) -> int:
    """Peak memory numpy and Python allocate during one call, above what was held before it (tracemalloc)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def run(
    ops: Iterable[str] = OPS,
    *,
    models: Sequence[os.PathLike | str] | None = None,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    repeat: int = 15,
    budget_s: float = BUDGET_S,
    fuzz_per_op: int = 10,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> Result:
    """Time every case on every engine (the reference is always included) and, when chosen, the fuzz run.

    Every engine prepares every case and makes one call; then sweeps of a warm-up and CALLS_PER_SWEEP
    timed calls per case, one engine after the other (onnxruntime's and OpenVINO's threads spin for a while
    after a call and would compete with OpenBLAS's in the next engine's), until ``repeat`` calls. A
    burst of load from another process falls in some sweeps; the median is that of all calls.
    """
    ops = list(ops)
    names = ["reference", *[b for b in backends if b != "reference"]]
    if "openvino" in names:
        create("openvino").availability()  # imports openvino through its adapter, which stops its telemetry
    chosen = cases(ops, models, seed=seed)
    info = machine()
    rows = [Row(case.name, case.op, case.types) for case in chosen]
    calls: dict[tuple[str, int], Callable[[], object]] = {}
    samples: dict[tuple[str, int], list[float]] = {}
    sweeps = -(-repeat // CALLS_PER_SWEEP)
    total = len(names) * len(chosen) * (1 + sweeps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step, (name, (index, case)) in enumerate(itertools.product(names, enumerate(chosen))):
            if progress:
                progress(step, total, f"{name}: {case.name}")
            try:
                call = _prepared_call(name, case)
                call()
                calls[name, index], samples[name, index] = call, []
            except BackendError as exc:
                rows[index].ms[name], rows[index].notes[name] = None, exc.message.splitlines()[0][:160]
        for sweep in range(sweeps):
            count = min(CALLS_PER_SWEEP, repeat - sweep * CALLS_PER_SWEEP)
            for step, (key, call) in enumerate(calls.items()):
                if progress:
                    progress(len(names) * len(chosen) * (1 + sweep) + step, total, f"{key[0]}: sweep {sweep + 1}")
                try:
                    _time_calls(call, count, samples[key], budget_s)
                except BackendError as exc:
                    rows[key[1]].notes[key[0]] = exc.message.splitlines()[0][:160]
        for (name, index), values in samples.items():
            row = rows[index]
            if name not in row.notes:
                row.ms[name], row.fastest_ms[name] = 1000 * statistics.median(values), 1000 * min(values)
                row.calls[name] = len(values)
            else:
                row.ms[name] = None
        for index, case in enumerate(chosen):
            if case.memory_unit_bytes and ("reference", index) in calls:
                rows[index].peak_bytes = _peak_bytes(calls["reference", index])
                rows[index].memory_limit_bytes = 3 * case.memory_unit_bytes
    calls.clear()
    if progress:
        progress(total, total, "done")
    fuzz = fuzz_throughput(per_op=fuzz_per_op, seed=seed) if "fuzz" in ops else None
    info["load_average_after"] = _load_average()
    return Result(info, names, rows, fuzz)


def fuzz_throughput(*, per_op: int = 10, seed: int = 0, ops: Sequence[str] = conformance.SUITE_OPS) -> dict:
    """Generated single-op cases per second through reference + ort-cpu, end to end: drawing the case,
    running both engines (a fresh onnxruntime session per case, as the fuzz loop does) and classifying."""
    start = time.perf_counter()
    suite = list(conformance.generated_suite(ops, per_op=per_op, seed=seed))
    drawn = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verdicts = [conformance.compare(case.model, case.feeds, ["ort-cpu"])[0].verdict for case in suite]
        compared = time.perf_counter()
        reference_s = 0.0
        for case in suite:
            begin = time.perf_counter()
            try:
                refquant.Session(case.model).run_all(case.feeds)
            except refquant.RefquantError:
                pass
            reference_s += time.perf_counter() - begin
    total = compared - start
    return {
        "cases": len(suite),
        "cases_per_s": len(suite) / total if total else None,
        "draw_s": drawn - start,
        "compare_s": compared - drawn,
        "reference_s": reference_s,
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
    }


# -- the machine -------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> list[str]:
    """The BLAS libraries numpy uses, with their threads (threadpoolctl), or why they are unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed (pip install 'refquant[bench]')"]
    return [
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture', '?')}, {p.get('num_threads')} threads)"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ] or ["no BLAS found by threadpoolctl"]


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _version(package: str) -> str | None:
    """The installed version, read without importing the package (importing openvino starts its telemetry)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """CPU model, cores, BLAS in use, library versions, thread settings, date and load average."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": usable,
        "blas": _blas(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("refquant", "numpy", "onnx", "onnxruntime", "openvino")},
        "threads_env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ},
        "load_average_before": _load_average(),
    }


# -- output ------------------------------------------------------------------------------------------

_RATIOS = (("reference", "ort-cpu"), ("onnx-reference", "reference"), ("reference", "openvino"))


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def table(result: Result) -> str:
    """Markdown: the machine, then one row per case (median ms, ratios, memory, targets), then the fuzz run."""
    m = result.machine
    lines = [
        f"{m['date']}; {m['cpu']}, {m['cores']} cores; BLAS: {'; '.join(m['blas'])}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + (f"; {', '.join(f'{k}={v}' for k, v in m['threads_env'].items())}" if m["threads_env"] else "")
        + f"; load average {m['load_average_before']} -> {m.get('load_average_after')}",
        "",
    ]
    ratios = [(a, b) for a, b in _RATIOS if a in result.backends and b in result.backends]
    header = ["case", *(f"{b} ms" for b in result.backends), *(f"{a}/{b}" for a, b in ratios), "peak mem", "targets"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows:
        memory = "-"
        if row.peak_bytes is not None and row.memory_limit_bytes:
            memory = f"{row.peak_bytes / 2**20:.1f} MiB ({row.peak_bytes / row.memory_limit_bytes * 3:.2f}x)"
        targets = ", ".join(f"{t} {'yes' if met else 'NO'}" for t, met in row.targets()) or "-"
        cells = [row.case, *(_ms(row.ms.get(b)) + ("*" if row.busy(b) else "") for b in result.backends)]
        cells += [_ratio(row.ratio(a, b)) for a, b in ratios] + [memory, targets]
        lines.append("| " + " | ".join(cells) + " |")
    if any(row.busy(b) for row in result.rows for b in result.backends):
        lines += ["", "\\* the median is more than twice the fastest call: other processes held the cores "
                  "(OpenBLAS's threads then wait for one)."]  # fmt: skip
    notes = [f"- {row.case}: {b}: {note}" for row in result.rows for b, note in row.notes.items()]
    if notes:
        lines += ["", "Not run:", *notes]
    if result.fuzz:
        f = result.fuzz
        lines += [
            "",
            f"Fuzz throughput (reference + ort-cpu, end to end): {f['cases']} generated cases, "
            f"{f['cases_per_s']:.1f} cases/s (drawing {f['draw_s']:.2f} s, running and classifying "
            f"{f['compare_s']:.2f} s, of which the reference about {f['reference_s']:.2f} s); verdicts {f['verdicts']}",
        ]
    return "\n".join(lines)


def plot(result: Result, path: os.PathLike | str) -> str:
    """A bar chart of median ms per case and engine (log scale) saved to ``path``; the message to print."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install 'refquant[bench]'); no plot written"
    rows = result.rows
    width = 0.8 / len(result.backends)
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.9), 6))
    for i, backend in enumerate(result.backends):
        values = [row.ms.get(backend) or np.nan for row in rows]
        ax.bar(np.arange(len(rows)) + i * width, values, width, label=backend)
    ax.set_yscale("log")
    ax.set_ylabel("median ms per call")
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, [row.case for row in rows], rotation=60, ha="right", fontsize=7)
    ax.legend()
    ax.set_title(f"{result.machine['cpu']}, {result.machine['cores']} cores, {result.machine['date']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"wrote {path}"
