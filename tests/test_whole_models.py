"""Whole models quantized by onnxruntime.quantization run bit-identical on refquant and onnxruntime CPU.

Three float models built with onnx.helper (a residual CNN, a MobileNet-style inverted
residual block with Clip(0, 6), a transformer block with activation @ activation MatMuls,
Softmax and LayerNormalization) are quantized by quantize_static (QDQ and QOperator) and
quantize_dynamic, then run by ``refquant.Session(profile="onnxruntime")`` and by an
onnxruntime InferenceSession (CPUExecutionProvider, ORT_DISABLE_ALL, one intra-op thread: the
profile's mlas_threads). Outputs must be bit-identical, including where quantize_dynamic and the
QOperator format leave float MatMul, Softmax and LayerNormalization (profile option
float_pipeline="mlas-float32", refquant.mlas).

Variants: every model x format x type pair (U8U8, U8S8, S8S8) x per_channel runs with
MinMax calibration; Entropy and Percentile calibration run on one type pair per model
and format (U8S8, per-channel), as calibration only changes the quantization parameters;
quantize_dynamic runs per model (U8 and S8 weights).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.backends.divergence import classify

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

Q = quantization.QuantType
TYPE_PAIRS = {"U8U8": (Q.QUInt8, Q.QUInt8), "U8S8": (Q.QUInt8, Q.QInt8), "S8S8": (Q.QInt8, Q.QInt8)}
OPSET = 17  # LayerNormalization exists from 17


def _model(name, nodes, x_shape, y_shape, weights) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", T.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", T.FLOAT, y_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def residual_cnn() -> onnx.ModelProto:
    """Conv-Relu-Conv-Add(skip)-Relu-GlobalAveragePool-Flatten-Gemm."""
    rng = np.random.default_rng(11)
    weights = {
        "w1": rng.normal(0, 0.3, (8, 8, 3, 3)), "b1": rng.normal(0, 0.1, 8),
        "w2": rng.normal(0, 0.3, (8, 8, 3, 3)), "b2": rng.normal(0, 0.1, 8),
        "wf": rng.normal(0, 0.3, (10, 8)), "bf": rng.normal(0, 0.1, 10),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["s"], name="skip"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return _model("residual_cnn", nodes, [1, 8, 8, 8], [1, 10], weights)


def mobilenet_block() -> onnx.ModelProto:
    """Conv 1x1 - Clip(0, 6) - depthwise Conv 3x3 - Clip(0, 6) - Conv 1x1 - Add(skip)."""
    rng = np.random.default_rng(12)
    weights = {
        "w1": rng.normal(0, 0.4, (16, 8, 1, 1)), "b1": rng.normal(0, 0.1, 16),
        "wd": rng.normal(0, 0.4, (16, 1, 3, 3)), "bd": rng.normal(0, 0.1, 16),
        "w2": rng.normal(0, 0.3, (8, 16, 1, 1)), "b2": rng.normal(0, 0.1, 8),
        "lo": np.array(0.0), "hi": np.array(6.0),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["e"], name="expand"),
        helper.make_node("Clip", ["e", "lo", "hi"], ["e6"], name="clip1"),
        helper.make_node("Conv", ["e6", "wd", "bd"], ["d"], name="depthwise", group=16, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d", "lo", "hi"], ["d6"], name="clip2"),
        helper.make_node("Conv", ["d6", "w2", "b2"], ["p"], name="project"),
        helper.make_node("Add", ["p", "x"], ["y"], name="skip"),
    ]
    return _model("mobilenet_block", nodes, [1, 8, 8, 8], [1, 8, 8, 8], weights)


def transformer_block() -> onnx.ModelProto:
    """Q/K/V = x W, softmax(Q K^T) V, residual Add, LayerNormalization (one head, scaled weights)."""
    rng = np.random.default_rng(13)
    d = 16
    weights = {
        "wq": rng.normal(0, 0.25 / np.sqrt(d), (d, d)), "wk": rng.normal(0, 1 / np.sqrt(d), (d, d)),
        "wv": rng.normal(0, 1 / np.sqrt(d), (d, d)), "wo": rng.normal(0, 1 / np.sqrt(d), (d, d)),
        "gamma": 1 + rng.normal(0, 0.1, d), "beta": rng.normal(0, 0.1, d),
    }  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="k_transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["attention"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attention", "v"], ["context"], name="context"),
        helper.make_node("MatMul", ["context", "wo"], ["o"], name="o_proj"),
        helper.make_node("Add", ["o", "x"], ["s"], name="residual"),
        helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], name="norm", axis=-1),
    ]
    return _model("transformer_block", nodes, [1, 12, d], [1, 12, d], weights)


MODELS = {"residual_cnn": residual_cnn, "mobilenet_block": mobilenet_block, "transformer_block": transformer_block}


def _inputs(model: onnx.ModelProto, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


class Reader(quantization.CalibrationDataReader):
    def __init__(self, batches):
        self._batches = iter(batches)

    def get_next(self):
        return next(self._batches, None)


STATIC = [
    (name, form, pair, per_channel, "MinMax")
    for name in MODELS
    for form in ("QDQ", "QOperator")
    for pair in TYPE_PAIRS
    for per_channel in (False, True)
] + [(name, form, "U8S8", True, method) for name in MODELS for form in ("QDQ", "QOperator") for method in ("Entropy", "Percentile")]
DYNAMIC = [(name, weight) for name in MODELS for weight in ("U8", "S8")]

def _ort_run(path, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _assert_bit_identical(path, feeds_list):
    """profile "onnxruntime": bit-identical to ort-cpu; profile "spec": every difference classified explained."""
    session = refquant.Session(str(path), profile="onnxruntime")
    model = onnx.load(path)
    for feeds in feeds_list:
        (want,) = _ort_run(path, feeds)
        (got,) = session.run(None, feeds)
        assert got.dtype == want.dtype and got.shape == want.shape
        differ = got.view(np.uint32) != want.view(np.uint32)
        assert not differ.any(), (
            f"{int(differ.sum())} of {differ.size} outputs differ; largest |diff| "
            f"{float(np.abs(got.astype(np.float64) - want).max())}"
        )
        (report,) = classify(model, feeds, "ort-cpu", {model.graph.output[0].name: want})
        assert report.status in ("exact", "explained") and report.unexplained == 0


def _param(variant):
    return pytest.param(*variant, id="-".join(str(v) for v in variant))


@pytest.mark.parametrize("name, form, pair, per_channel, method", [_param(v) for v in STATIC])
def test_static_quantized_model_is_bit_identical_to_onnxruntime(tmp_path, name, form, pair, per_channel, method):
    model = MODELS[name]()
    float_path, quant_path = tmp_path / "float.onnx", tmp_path / "quant.onnx"
    onnx.save(model, float_path)
    activation, weight = TYPE_PAIRS[pair]
    quantization.quantize_static(
        str(float_path),
        str(quant_path),
        Reader(_inputs(model, 8, seed=1)),
        quant_format=getattr(quantization.QuantFormat, form),
        activation_type=activation,
        weight_type=weight,
        per_channel=per_channel,
        calibrate_method=getattr(quantization.CalibrationMethod, method),
    )
    _assert_bit_identical(quant_path, _inputs(model, 3, seed=2))


@pytest.mark.parametrize("name, weight", [_param(v) for v in DYNAMIC])
def test_dynamic_quantized_model_is_bit_identical_to_onnxruntime(tmp_path, name, weight):
    model = MODELS[name]()
    float_path, quant_path = tmp_path / "float.onnx", tmp_path / "quant.onnx"
    onnx.save(model, float_path)
    quantization.quantize_dynamic(
        str(float_path), str(quant_path), weight_type=Q.QUInt8 if weight == "U8" else Q.QInt8
    )
    _assert_bit_identical(quant_path, _inputs(model, 3, seed=2))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("form", ["QDQ", "QOperator", "dynamic"])
def test_every_intermediate_tensor_is_explained(tmp_path, name, form):
    """compare --all-tensors against ort-cpu: every tensor of the quantized graph, float Conv, MatMul,
    Softmax and LayerNormalization outputs included, is exact or explained (the onnxruntime profile
    replays MLAS's float kernels), so the first unexplained tensor would name a real divergence."""
    from refquant.backends import conformance

    model = MODELS[name]()
    float_path, quant_path = tmp_path / "float.onnx", tmp_path / "quant.onnx"
    onnx.save(model, float_path)
    if form == "dynamic":
        quantization.quantize_dynamic(str(float_path), str(quant_path), weight_type=Q.QInt8)
    else:
        quantization.quantize_static(
            str(float_path), str(quant_path), Reader(_inputs(model, 8, seed=1)),
            quant_format=getattr(quantization.QuantFormat, form), activation_type=Q.QUInt8, weight_type=Q.QInt8,
            per_channel=True,
        )
    (feeds,) = _inputs(model, 1, seed=3)
    (result,) = conformance.compare(str(quant_path), feeds, ["ort-cpu"], all_tensors=True)
    quant = onnx.load(quant_path)
    assert result.status == "ok" and {o.name for o in quant.graph.output} < {r.name for r in result.reports}
    assert result.first_unexplained() is None, result.first_unexplained()
