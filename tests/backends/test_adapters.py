"""backends: availability, provider options, error mapping, and agreement with refquant."""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant.backends as backends
import refquant
from refquant.backends.base import BackendError, BackendUnavailable, UnsupportedOnBackend
from refquant.backends import strategies as rqs
from refquant.profiles import PROFILES
from tests.helpers import assert_bit_exact

U8, S8 = T.UINT8, T.INT8


def _model(nodes, inputs, outputs, initializers=(), *, opset=21):
    graph = helper.make_graph(
        nodes,
        "backend_test",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        list(initializers),
    )
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))


def _qdq_model(opset=21, element_type=U8, zero_point=3):
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Relu", ["d"], ["y"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(0.5, np.float32), "s"),
        helper.make_tensor("z", element_type, [], [zero_point]),
    ]
    return _model(nodes, [("x", T.FLOAT, [6])], [("y", T.FLOAT)], initializers, opset=opset)


X = np.array([-1, 2.25, 2.75, 0.25, 0.75, 100], np.float32)  # x / 0.5 ties at 4.5, 5.5, 0.5, 1.5


# -- the registry ------------------------------------------------------------------------------------------------


def test_available_names_every_backend_with_a_reason_when_unavailable():
    status = backends.available()
    assert list(status) == backends.names()
    assert set(status) >= {
        "reference",
        "reference-ort",
        "onnx-reference",
        "ort-cpu",
        "ort-cpu-opt",
        "ort-cuda",
        "ort-tensorrt",
        "openvino",
    }
    assert status["reference"] and status["onnx-reference"]
    for name, availability in status.items():
        assert bool(availability) == availability.available
        assert availability.available or availability.reason, f"{name} is unavailable without a reason"


def test_unknown_backend_and_bad_option_are_backend_errors():
    with pytest.raises(BackendError, match="unknown backend; known: reference"):
        backends.get("tvm")
    with pytest.raises(BackendError, match="optimization='fast' is not one of disabled, basic"):
        backends.create("ort-cpu", optimization="fast")


def test_onnxruntime_adapters_run_one_thread_unless_told():
    """One intra-op thread: the onnxruntime profile replays MLAS's float GEMM split for mlas_threads=1."""
    pytest.importorskip("onnxruntime")
    assert backends.create("ort-cpu").session_options().intra_op_num_threads == 1
    assert backends.create("ort-cpu", threads=3).session_options().intra_op_num_threads == 3
    assert backends.create("ort-cpu", threads=None).session_options().intra_op_num_threads == 0  # onnxruntime's default


def test_reference_ort_lights_up_with_the_onnxruntime_profile(monkeypatch):
    monkeypatch.delitem(PROFILES, "onnxruntime", raising=False)
    status = backends.create("reference-ort").availability()
    assert not status and status.reason == "refquant has no 'onnxruntime' profile yet"
    with pytest.raises(BackendUnavailable, match="reference-ort: refquant has no 'onnxruntime' profile yet"):
        backends.get("reference-ort")
    monkeypatch.setitem(PROFILES, "onnxruntime", refquant.Profile(name="onnxruntime", requantize_precision="float32"))
    assert backends.get("reference-ort").run(_qdq_model(), {"x": X})["y"].tolist() == [0, 2, 3, 0, 1, 100]


@pytest.mark.parametrize(
    "name, module", [("ort-cpu", "onnxruntime"), ("ort-cuda", "onnxruntime"), ("openvino", "openvino")]
)
def test_missing_package_makes_the_backend_unavailable(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    backend = backends.create(name)
    status = backend.availability()
    assert not status and f"package '{module}' is not installed" in status.reason
    assert backend.version is None
    with pytest.raises(BackendUnavailable, match=f"{name}: package '{module}' is not installed"):
        backend.run(_qdq_model(), {"x": X})


def test_missing_execution_provider_is_named():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    status = backends.create("ort-cuda").availability()
    assert not status and "has no CUDAExecutionProvider" in status.reason and "onnxruntime-gpu" in status.reason


def test_provider_without_a_gpu_is_unavailable(monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    # pretend the provider is installed: onnxruntime then falls back to CPU (or refuses), as without a GPU
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    status = backends.create("ort-cuda").availability()
    assert not status and "CUDAExecutionProvider is installed but cannot run here" in status.reason


# -- provider options (no GPU needed) ------------------------------------------------------------------------------


def test_cuda_provider_options():
    assert backends.create("ort-cuda", device_id=1).provider_options() == [
        ("CUDAExecutionProvider", {"device_id": "1"}),
        ("CPUExecutionProvider", {}),
    ]


def test_tensorrt_provider_options(tmp_path):
    table = tmp_path / "calibration.flatbuffers"
    trt = backends.create("ort-tensorrt", int8=True, fp16=True, calibration_table=table, engine_cache_dir=tmp_path)
    providers = trt.provider_options()
    assert [p for p, _ in providers] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers[0][1] == {
        "device_id": "0",
        "trt_int8_enable": "True",
        "trt_fp16_enable": "True",
        "trt_int8_calibration_table_name": "calibration.flatbuffers",
        "trt_int8_use_native_calibration_table": "False",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path),
    }


def test_tensorrt_native_table_is_read_from_its_directory(tmp_path):
    table = tmp_path / "calibration.cache"
    options = backends.create(
        "ort-tensorrt", int8=True, calibration_table=table, native_calibration_table=True
    ).tensorrt_options()
    assert options == {
        "device_id": "0",
        "trt_int8_enable": "True",
        "trt_fp16_enable": "False",
        "trt_int8_calibration_table_name": "calibration.cache",
        "trt_int8_use_native_calibration_table": "True",
        "trt_engine_cache_path": str(tmp_path),
    }
    assert backends.create("ort-tensorrt").tensorrt_options() == {
        "device_id": "0",
        "trt_int8_enable": "False",
        "trt_fp16_enable": "False",
    }


def test_tensorrt_option_conflicts_are_refused(tmp_path):
    with pytest.raises(BackendError, match="calibration table is read only with int8=True"):
        backends.create("ort-tensorrt", calibration_table=tmp_path / "t.flatbuffers")
    with pytest.raises(BackendError, match="reads the calibration table from the engine cache directory"):
        backends.create(
            "ort-tensorrt", int8=True, calibration_table=tmp_path / "t.flatbuffers", engine_cache_dir=tmp_path / "cache"
        )


# -- onnxruntime: capabilities, lowering, unsupported combinations, errors --------------------------------------------


@pytest.fixture(scope="module")
def ort_cpu():
    pytest.importorskip("onnxruntime")
    return backends.get("ort-cpu")


def test_onnxruntime_capabilities_are_measured(ort_cpu):
    caps = ort_cpu.capabilities
    assert caps.ir_version >= 10 and caps.opset >= 21
    assert {rule.op_type for rule in caps.unsupported} >= {
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "QuantizeLinear",
    }


def test_opset_28_model_is_lowered_for_onnxruntime(ort_cpu):
    model = _qdq_model(opset=28)
    assert model.ir_version == 14
    expected = refquant.Session(model).run(None, {"x": X})[0]
    assert_bit_exact(ort_cpu.run(model, {"x": X})["y"], expected)


def test_changed_semantics_on_the_way_down_is_unsupported(ort_cpu):
    # onnxruntime has no QuantizeLinear-28 kernel; going down to 27 would cross Mod-28, which has no lowering rule
    model = _qdq_model(opset=28)
    model.graph.node.append(helper.make_node("Mod", ["y", "y"], ["m"], fmod=1))
    model.graph.output.append(helper.make_tensor_value_info("m", T.FLOAT, None))
    with pytest.raises(
        UnsupportedOnBackend, match="ort-cpu: cannot lower opset 28 to 27: Mod: Mod changed at opset 28"
    ):
        ort_cpu.run(model, {"x": X})


def _qlinear_matmul(a_type, b_type, y_type):
    names = ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale", "y_zero_point"]
    initializers = [
        numpy_helper.from_array(np.array(0.1, np.float32), "a_scale"),
        helper.make_tensor("a_zero_point", a_type, [], [1]),
        helper.make_tensor("b", b_type, [2, 2], [1, 2, 3, 4]),
        numpy_helper.from_array(np.array(0.2, np.float32), "b_scale"),
        helper.make_tensor("b_zero_point", b_type, [], [0]),
        numpy_helper.from_array(np.array(0.3, np.float32), "y_scale"),
        helper.make_tensor("y_zero_point", y_type, [], [0]),
    ]
    return _model(
        [helper.make_node("QLinearMatMul", names, ["y"])], [("a", a_type, [2, 2])], [("y", y_type)], initializers
    )


@pytest.mark.parametrize("types", [(S8, U8, S8), (S8, U8, U8), (U8, S8, S8)])
def test_documented_unsupported_combination_is_refused_before_loading(ort_cpu, types):
    with pytest.raises(UnsupportedOnBackend, match="QLinearMatMul: CPU kernels take uint8 a with uint8/int8 b"):
        ort_cpu.run(
            _qlinear_matmul(*types), {"a": np.ones((2, 2), np.dtype(helper.tensor_dtype_to_np_dtype(types[0])))}
        )


def test_documented_combinations_really_are_not_implemented():
    """The rules name what onnxruntime refuses: bypassing them, onnxruntime fails with NOT_IMPLEMENTED."""
    ort = pytest.importorskip("onnxruntime")
    for types in [(S8, U8, S8), (S8, U8, U8), (U8, S8, S8)]:
        with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
            ort.InferenceSession(_qlinear_matmul(*types).SerializeToString(), providers=["CPUExecutionProvider"])
    ort.InferenceSession(_qlinear_matmul(U8, S8, U8).SerializeToString(), providers=["CPUExecutionProvider"])


def test_not_implemented_at_load_time_is_unsupported_and_lists_the_kernels(ort_cpu):
    model = _model(
        [helper.make_node("DequantizeLinear", ["x", "s"], ["y"])],
        [("x", U8, [2])],
        [("y", T.BFLOAT16)],
        [numpy_helper.from_array(np.array(0.5, ml_dtypes.bfloat16), "s")],
    )
    with pytest.raises(UnsupportedOnBackend) as raised:
        ort_cpu.run(model, {"x": np.ones(2, np.uint8)})
    message = str(raised.value)
    assert message.startswith(
        "ort-cpu: cannot load the model: Could not find an implementation for DequantizeLinear(21)"
    )
    assert "its kernels take T1=uint8 T2=float|float16" in message
    assert "onnxruntime_src" not in message and ".cc:" not in message


def test_model_problems_are_backend_errors_without_onnxruntime_internals(ort_cpu):
    with pytest.raises(BackendError, match="ort-cpu: cannot load the model: .*protobuf|ort-cpu: cannot load the model"):
        ort_cpu.run(b"not a model", {})
    with pytest.raises(BackendError) as raised:
        ort_cpu.run(_qdq_model(), {"x": X.astype(np.float64)})
    assert str(raised.value).startswith("ort-cpu: run failed: INVALID_ARGUMENT") and "onnxruntime_src" not in str(
        raised.value
    )


def test_float8_and_int4_travel_through_the_binding(ort_cpu):
    x = np.array([1, -2, 448, -0.0625], ml_dtypes.float8_e4m3fn)
    dequantize = _model(
        [helper.make_node("DequantizeLinear", ["x", "s"], ["y"])],
        [("x", T.FLOAT8E4M3FN, [4])],
        [("y", T.FLOAT)],
        [numpy_helper.from_array(np.array(0.5, np.float32), "s")],
    )
    assert_bit_exact(ort_cpu.run(dequantize, {"x": x})["y"], np.array([0.5, -1, 224, -0.03125], np.float32))
    int4 = _qdq_model(element_type=T.INT4, zero_point=1)
    expected = refquant.Session(int4).run_all({"x": X})
    got = ort_cpu.run_all(int4, {"x": X})
    assert got["q"].dtype == np.dtype(ml_dtypes.int4)
    for name in ("q", "d", "y"):
        assert_bit_exact(got[name], expected[name], name)


def test_run_all_exposes_every_intermediate_in_node_order():
    model = _qdq_model()
    expected = backends.get("reference").run_all(model, {"x": X})
    assert list(expected) == ["q", "d", "y"]
    for name in ("onnx-reference", "ort-cpu", "ort-cpu-opt"):
        backend = backends.create(name)
        if not backend.availability():
            continue
        got = backend.run_all(model, {"x": X})
        assert list(got) == ["q", "d", "y"], name
        for tensor in got:
            assert_bit_exact(got[tensor], expected[tensor], f"{name} {tensor}")


# -- agreement with refquant where the arithmetic is the same -----------------------------------------------------

#: onnxruntime CPU's integer arithmetic on this host: float32 requantization (shared/facts), and the U8S8 pair saturation of
#: CPUs without VNNI where refquant.host finds one (the "onnxruntime" profile's own setting)
FLOAT32_REQUANTIZE = refquant.Profile(
    name="float32-requantize",
    requantize_precision="float32",
    avx2_u8s8_saturation=refquant.get_profile("onnxruntime").avx2_u8s8_saturation,
)
INTEGER_TYPES = [U8, S8, T.UINT16, T.INT16, T.UINT4, T.INT4]


def _assert_same_outputs(backend, case, reference):
    expected = reference.run(case.model, case.feeds)
    got = backend.run(case.model, case.feeds)
    assert list(got) == list(expected)
    for name in expected:
        assert_bit_exact(got[name], expected[name], f"{backend.name} {name}")


@given(
    rqs.quantize_linear_models(
        element_types=INTEGER_TYPES + [T.FLOAT8E4M3FN, T.FLOAT8E5M2], input_types=[T.FLOAT], blocked=False
    )
)
def test_quantize_linear_agrees(ort_cpu, case):
    _assert_same_outputs(ort_cpu, case, backends.get("reference"))


@given(
    rqs.dequantize_linear_models(
        element_types=INTEGER_TYPES + [T.INT32, T.FLOAT8E4M3FN], scale_types=[T.FLOAT], blocked=False
    )
)
def test_dequantize_linear_agrees(ort_cpu, case):
    """Both engines round an int32 x to float32 before the product (profile option dequantize_int32); the
    other types are exact in float32 arithmetic too."""
    profile = refquant.get_profile("spec").with_options(dequantize_int32="float32-first")
    reference = backends.create("reference", profile=profile)
    _assert_same_outputs(ort_cpu, case, reference)
    _assert_same_outputs(backends.get("onnx-reference"), case, reference)


@given(rqs.qlinear_matmul_models(element_types=[(U8, U8, U8), (U8, S8, U8), (S8, S8, S8)], scale_types=[T.FLOAT]))
def test_qlinear_matmul_agrees(ort_cpu, case):
    _assert_same_outputs(ort_cpu, case, backends.create("reference", profile=FLOAT32_REQUANTIZE))
    # onnx.reference forms the multiplier in the scales' own type (float32) and requantizes in float64
    _assert_same_outputs(backends.get("onnx-reference"), case, backends.create("reference", profile="onnx-reference"))


def _float_product_cases(count: int, seed: int):
    """Random float32 MatMul (2-D, 1-D A, batched A), Gemm (alpha, beta, transB) and grouped, dilated, padded
    Conv nodes with their feeds."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        if index % 3 == 0:
            k, m, n = (int(v) for v in rng.integers(1, 40, 3))
            shapes = [[[m, k], [k, n]], [[k], [k, n]], [[2, m, k], [k, n]]][index % 9 // 3]
            node, names = helper.make_node("MatMul", ["a", "b"], ["y"]), "ab"
        elif index % 3 == 1:
            m, k, n = (int(v) for v in rng.integers(1, 20, 3))
            alpha, beta = (float(rng.choice(values)) for values in ([1.0, 0.3], [1.0, 0.7]))
            node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=alpha, beta=beta, transB=1)
            shapes, names = [[m, k], [n, k], [n]], "abc"
        else:
            channels = int(rng.integers(1, 4))
            group = channels if index % 2 else 1
            kernel, side = [int(v) for v in rng.integers(1, 4, 2)], int(rng.integers(7, 10))
            node = helper.make_node("Conv", ["a", "b", "c"], ["y"], group=group, kernel_shape=kernel,
                                    dilations=[int(rng.integers(1, 3))] * 2, pads=[1, 0, 0, 1])
            shapes, names = [[2, channels, side, side + 1], [2 * group, channels // group, *kernel], [2 * group]], "abc"
        feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in zip(names, shapes)}
        yield _model([node], [(name, T.FLOAT, shape) for name, shape in zip(names, shapes)], [("y", T.FLOAT)]), feeds


def test_onnx_reference_float_products_are_numpys():
    """onnx.reference's float32 MatMul, Gemm and Conv are numpy's float32 products; the onnx-reference profile
    (float_pipeline="numpy-float32") reproduces them bit for bit, where the exact sum rounded once mostly differs."""
    onnx_reference, differs = backends.get("onnx-reference"), 0
    for model, feeds in _float_product_cases(60, seed=7):
        want = onnx_reference.run(model, feeds)["y"]
        assert_bit_exact(refquant.Session(model, profile="onnx-reference").run(None, feeds)[0], want)
        differs += not np.array_equal(refquant.Session(model).run(None, feeds)[0], want)
    assert differs > 30  # the cases exercise the order: float32 accumulation differs from one rounding


# -- openvino ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openvino():
    pytest.importorskip("openvino")
    return backends.get("openvino")


def test_openvino_dequantizes_with_a_fused_multiply_add(openvino):
    """OpenVINO computes x * scale - zero_point * scale (rounded once), not (x - zero_point) * scale."""
    x = np.array([0, 1, 7, 200, 255], np.uint8)
    scale, zero_point = np.float32(0.1), 7
    model = _model(
        [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])],
        [("x", U8, [5])],
        [("y", T.FLOAT)],
        [numpy_helper.from_array(np.array(scale), "s"), helper.make_tensor("z", U8, [], [zero_point])],
    )
    fused = (x * np.float64(scale) - np.float64(np.float32(zero_point * scale))).astype(np.float32)
    assert_bit_exact(openvino.run(model, {"x": x})["y"], fused)
    spec = refquant.Session(model).run(None, {"x": x})[0]
    assert spec[2] == 0 and fused[2] != 0, "the two formulas differ at x == zero point"


def test_openvino_int4_outputs_are_unpacked(openvino):
    got = openvino.run_all(
        _qdq_model(element_type=T.INT4, zero_point=1), {"x": np.array([-1, 1, 3, -4, 100, 0], np.float32)}
    )
    assert got["q"].dtype == np.dtype(ml_dtypes.int4)
    assert got["q"].tolist() == [-1, 3, 7, -7, 7, 1]


def test_openvino_conversion_failure_is_unsupported(openvino):
    model = _model([helper.make_node("ImageDecoder", ["x"], ["y"])], [("x", U8, [4])], [("y", U8)])
    with pytest.raises(
        UnsupportedOnBackend,
        match="(?s)openvino: cannot load the model: .*No conversion rule found for operations: ImageDecoder",
    ):
        openvino.run(model, {"x": np.zeros(4, np.uint8)})
