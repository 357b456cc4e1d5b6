"""The divergence classifier: each rule recognises its case and rejects a near miss."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import numpy_helper

import refquant
from refquant.backends.divergence import classify, load_divergences
from refquant.errors import RefquantError

from tests.helpers import single_node_model

# acc = 50 * 41 = 2050 with multiplier 0.02f * 0.05f / 0.1f:
# float32: 2050f * 0.01f = 20.500001907 -> 21;  float64: 20.499999542 -> 20
SCALES = dict(a_s=np.float32(0.02), b_s=np.float32(0.05), y_s=np.float32(0.1))


def qmatmul_tie_case():
    init = {
        "a_s": np.array(SCALES["a_s"]), "a_zp": np.array(0, np.uint8),
        "b": np.array([[41, 2]], np.int8), "b_s": np.array(SCALES["b_s"]), "b_zp": np.array(0, np.int8),
        "y_s": np.array(SCALES["y_s"]), "y_zp": np.array(0, np.uint8),
    }
    inputs = {"a": (T.UINT8, [2, 1]), **init}
    model = single_node_model("QLinearMatMul", inputs, {"y": T.UINT8}, opset=13, initializers=init)
    return model, {"a": np.array([[50], [3]], np.uint8)}


def test_premise_float32_and_float64_requantization_differ():
    model, feeds = qmatmul_tie_case()
    spec = refquant.Session(model).run(None, feeds)[0]
    ort_like = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0]
    assert spec[0, 0] == 20 and ort_like[0, 0] == 21
    assert (spec.ravel()[1:] == ort_like.ravel()[1:]).all()


def test_exact_agreement_is_exact():
    model, feeds = qmatmul_tie_case()
    spec = refquant.Session(model).run(None, feeds)[0]
    (report,) = classify(model, feeds, "ort-cpu", {"y": spec})
    assert report.status == "exact" and report.exact == spec.size and report.max_abs_diff == 0


def test_float32_requantization_explains_ort_tie():
    model, feeds = qmatmul_tie_case()
    backend = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0]
    (report,) = classify(model, feeds, "ort-cpu", {"y": backend})
    assert report.status == "explained"
    assert report.explained == {"float32-requantization": 1} and report.unexplained == 0
    assert report.max_abs_diff == 1.0
    assert report.worst == [{"index": [0, 0], "reference": 20, "backend": 21, "class": "explained:float32-requantization"}]


def test_near_miss_off_by_one_elsewhere_is_unexplained():
    model, feeds = qmatmul_tie_case()
    backend = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0].copy()
    backend[1, 1] += 1  # not a tie: no profile reproduces it
    (report,) = classify(model, feeds, "ort-cpu", {"y": backend})
    assert report.status == "unexplained" and report.unexplained == 1
    assert report.worst[0]["class"] == "unexplained" and report.worst[0]["index"] == [1, 1]


def test_divergence_applies_only_to_its_backends():
    model, feeds = qmatmul_tie_case()
    backend = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0]
    # not "openvino": its FakeQuantize lowering (openvino-qlinear-fake-quantize) lands on the same 23.5 tie, 21
    # (measured on openvino 2026.4), so a backend no divergence names is the one left unexplained
    (report,) = classify(model, feeds, "tflite", {"y": backend})
    assert report.status == "unexplained"


def test_int32_cast_explains_onnx_reference_wrap_and_rejects_near_miss():
    x = np.array([1e10, 1.0], np.float32)
    init = {"s": np.array(1, np.float32), "zp": np.array(0, np.uint8)}
    model = single_node_model("QuantizeLinear", {"x": x, **init}, {"y": T.UINT8}, opset=13, initializers=init)
    feeds = {"x": x}
    (report,) = classify(model, feeds, "onnx-reference", {"y": np.array([0, 1], np.uint8)})
    assert report.explained == {"int32-indefinite-cast": 1} and report.status == "explained"
    (report,) = classify(model, feeds, "onnx-reference", {"y": np.array([7, 1], np.uint8)})
    assert report.status == "unexplained"


def test_nan_refused_by_spec_is_explained_only_by_a_divergence():
    x = np.array([np.nan, 2.0], np.float32)
    init = {"s": np.array(1, np.float32), "zp": np.array(5, np.uint8)}
    model = single_node_model("QuantizeLinear", {"x": x, **init}, {"y": T.UINT8}, opset=13, initializers=init)
    (report,) = classify(model, {"x": x}, "ort-cpu", {"y": np.array([0, 7], np.uint8)})
    assert report.reference_error and "NaN" in report.reference_error
    assert report.explained == {"nan-to-qmin": 2} and report.exact == 0
    (report,) = classify(model, {"x": x}, "ort-cpu", {"y": np.array([5, 7], np.uint8)})  # NaN -> zero point
    assert report.unexplained == 1


def test_dtype_or_shape_mismatch_is_a_problem():
    model, feeds = qmatmul_tie_case()
    (report,) = classify(model, feeds, "ort-cpu", {"y": np.zeros((2, 2), np.int8)})
    assert report.status == "unexplained" and "int8" in report.problem


def test_shipped_divergences_load_and_are_valid():
    divergences = load_divergences()
    assert {d.name for d in divergences} >= {"float32-requantization", "int32-indefinite-cast", "nan-to-qmin"}
    for d in divergences:
        assert d.evidence and d.summary and d.backends
        d.profile()  # options are real profile options


@pytest.mark.parametrize(
    "text, match",
    [
        ('[[divergence]]\nname = "x"\n', "lacks"),
        ('[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\noptions={ rounding = "up" }\n', "unknown profile option"),
        ('[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\noptions={}\n' * 2, "repeat"),
        ("not toml [", "cannot read divergences file"),
    ],
)
def test_bad_divergence_files(tmp_path, text, match):
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(RefquantError, match=match):
        load_divergences(path)


def _maxpool_model(dilations):
    model = single_node_model(
        "MaxPool", {"x": (T.UINT8, [1, 1, 7, 6])}, {"y": T.UINT8}, opset=13,
        attrs=dict(auto_pad="SAME_UPPER", kernel_shape=[3, 3], strides=[1, 1], dilations=dilations),
    )
    return model, {"x": np.arange(42, dtype=np.uint8).reshape(1, 1, 7, 6)}


def test_defect_rule_recognises_its_node_and_rejects_near_misses():
    model, feeds = _maxpool_model([1, 2])
    assert refquant.Session(model).run(None, feeds)[0].shape == (1, 1, 7, 6)  # ceil(input / stride)
    wrong_shape = np.zeros((1, 1, 7, 4), np.uint8)  # what onnxruntime 1.32 returns
    (report,) = classify(model, feeds, "ort-cpu", {"y": wrong_shape})
    assert report.status == "attributed" and report.attributed == {"ort-same-padding-ignores-dilation": 28}
    (report,) = classify(model, feeds, "openvino", {"y": wrong_shape})
    assert report.status == "unexplained"
    undilated, feeds = _maxpool_model([1, 1])
    (report,) = classify(undilated, feeds, "ort-cpu", {"y": wrong_shape})
    assert report.status == "unexplained"


def test_a_divergence_may_name_a_whole_profile(tmp_path):
    (combined,) = [d for d in load_divergences() if d.name == "onnxruntime-arithmetic"]
    assert combined.options["requantize_precision"] == "float32" and "name" not in combined.options
    assert combined.profile().requantize_precision == "float32"
    path = tmp_path / "d.toml"
    path.write_text('[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\nprofile="nonesuch"\n')
    with pytest.raises(RefquantError, match="unknown profile 'nonesuch'"):
        load_divergences(path)


def test_a_backend_optimized_graph_divergence_replays_the_graph_the_backend_gives():
    """The tie case's QLinearMatMul, with the backend's "rewritten" graph a QLinearMatMul whose y_scale
    is doubled: its 2050 * 0.005 -> 10 (spec 20) is explained only by replaying that graph."""
    model, feeds = qmatmul_tie_case()
    rewritten, _ = qmatmul_tie_case()
    rewritten.graph.initializer[5].CopyFrom(numpy_helper.from_array(np.array(SCALES["y_s"] * 2), "y_s"))
    backend = refquant.Session(rewritten, profile="onnxruntime").run(None, feeds)[0]
    (graph_divergence,) = [d for d in load_divergences() if d.graph == "backend-optimized"]
    calls = []

    def optimized():
        calls.append(1)
        return rewritten

    (report,) = classify(model, feeds, "ort-cpu-opt", {"y": backend}, optimized_model=optimized)
    assert report.explained[graph_divergence.name] >= 1
    assert report.unexplained == 0 and calls == [1]
    (report,) = classify(model, feeds, "ort-cpu-opt", {"y": backend})  # no graph given: nothing to replay
    assert report.status == "unexplained"
    (report,) = classify(model, feeds, "ort-cpu", {"y": backend}, optimized_model=optimized)  # not its backend
    assert report.status == "unexplained"
    spec = refquant.Session(model).run(None, feeds)[0]
    classify(model, feeds, "ort-cpu-opt", {"y": spec}, optimized_model=optimized)
    assert calls == [1]  # nothing differs: the graph is never asked for


def test_graph_must_be_known_and_defects_replay_nothing(tmp_path):
    path = tmp_path / "d.toml"
    entry = '[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\n'
    path.write_text(entry + 'options={}\ngraph="compiled"\n')
    with pytest.raises(RefquantError, match="graph must be one of model, backend-optimized"):
        load_divergences(path)
    path.write_text(entry + 'when={ ceil_mode = [1] }\ngraph="backend-optimized"\n')
    with pytest.raises(RefquantError, match="a defect's is the model"):
        load_divergences(path)


# -- verdicts that cannot hide a bug: local defects, attributed not explained, falsifiable profiles -----------------

import ml_dtypes  # noqa: E402
from onnx import helper  # noqa: E402

from refquant import arith  # noqa: E402
from refquant.backends.conditions import CONDITIONS, condition_for  # noqa: E402
from refquant.backends.divergence import replay  # noqa: E402

F32 = np.float32


def _with_neighbours(model, output="y"):
    """``model`` plus Identity(output) -> "down" (downstream of its node) and Relu(u) -> "w_out" (independent)."""
    model = _copy(model)
    graph = model.graph
    graph.node.append(helper.make_node("Identity", [output], ["down"]))
    graph.node.append(helper.make_node("Relu", ["u"], ["w_out"]))
    graph.input.append(helper.make_tensor_value_info("u", T.FLOAT, [4]))
    graph.output.append(helper.make_tensor_value_info("down", graph.output[0].type.tensor_type.elem_type, None))
    graph.output.append(helper.make_tensor_value_info("w_out", T.FLOAT, None))
    return model


def _copy(model):
    copy = type(model)()
    copy.CopyFrom(model)
    return copy


def _perturb(array: np.ndarray) -> np.ndarray:
    """``array`` with its first element changed to some other value of its type."""
    out = np.array(array, copy=True)
    flat = out.reshape(-1)
    value = float(np.asarray(flat[0]).astype(np.float64))
    for candidate in (value + 1, value - 1, value + 16, value - 16, 1.0, 2.0, 0.0):
        flat[0] = np.asarray(candidate).astype(out.dtype)
        if not _same_value(flat[0], array.reshape(-1)[0]):
            return out
    raise AssertionError(f"cannot perturb {array!r}")


def _same_value(a, b) -> bool:
    a, b = float(np.asarray(a).astype(np.float64)), float(np.asarray(b).astype(np.float64))
    return a == b or (np.isnan(a) and np.isnan(b))


def _reports(model, feeds, backend, outputs):
    return {r.name: r for r in classify(model, feeds, backend, outputs)}


def _per_channel_qlinearconv(x_shape, kernel, channels_w=None):
    channels = x_shape[1]
    init = {
        "xs": F32(0.5), "xz": np.uint8(0), "w": np.ones((channels, 1, *kernel), np.uint8),
        "ws": np.linspace(0.25, 0.5, channels).astype(F32), "wz": np.zeros(channels, np.uint8),
        "ys": F32(1), "yz": np.uint8(0),
    }
    inputs = {"x": (T.UINT8, list(x_shape)), **init}
    attrs = {"group": channels, "kernel_shape": list(kernel)}
    model = single_node_model("QLinearConv", inputs, {"y": T.UINT8}, opset=13, attrs=attrs, initializers=init)
    return model, {"x": np.full(x_shape, 8, np.uint8)}


def _q(x, scale, zero_point, out, opset=21):
    init = {"s": np.asarray(scale), "z": np.asarray(zero_point)}
    model = single_node_model("QuantizeLinear", {"x": np.asarray(x), **init}, {"y": out}, opset=opset, initializers=init)
    return model, {"x": np.asarray(x)}


def _pool(length, dtype=T.FLOAT, **attrs):
    model = single_node_model("MaxPool", {"x": (dtype, [1, 1, length])}, {"y": dtype}, opset=13, attrs=attrs)
    return model, {"x": np.arange(length, dtype=F32).reshape(1, 1, length) ** 2}


def _crop_resize():
    init = {"roi": np.float32([0, 0, 0, 0.25, 1, 1, 1, 0.75]), "scales": np.float32([1, 1, 1, 1.5])}
    inputs = {"x": (T.FLOAT, [1, 1, 1, 8]), **init}
    attrs = {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}
    model = single_node_model("Resize", inputs, {"y": T.FLOAT}, opset=18, attrs=attrs, initializers=init)
    return model, {"x": np.arange(8, dtype=F32).reshape(1, 1, 1, 8)}


def _qlinear_matmul(scale_type, b_scale):
    """QLinearMatMul-21 u8, a [1, 3] (zp 13) and b [3, 1] fed, scales 1, b_scale, 32 / 255 of scale_type, y_zp 0."""
    init = {"as": scale_type(1), "az": np.uint8(13), "bs": scale_type(b_scale), "bz": np.uint8(0),
            "ys": scale_type(32 / 255), "yz": np.uint8(0)}
    inputs = {"a": (T.UINT8, [1, 3]), "as": init["as"], "az": init["az"], "b": (T.UINT8, [3, 1]), "bs": init["bs"],
              "bz": init["bz"], "ys": init["ys"], "yz": init["yz"]}
    model = single_node_model("QLinearMatMul", inputs, {"y": T.UINT8}, opset=21, initializers=init)
    return model, {"a": np.full((1, 3), 17, np.uint8), "b": np.full((3, 1), 12, np.uint8)}


def _qdq_u8s8_matmul():
    """DequantizeLinear(x_q uint8 [1, 2], zp 128) and DequantizeLinear(w int8 [2, 1] = 107) -> MatMul -> y: the pair
    200 * 107 + 200 * 107 = 42800 leaves int16."""
    init = {"xs": F32(1), "xz": np.uint8(128), "w_q": np.full((2, 1), 107, np.int8), "ws": F32(1), "wz": np.int8(0)}
    nodes = [helper.make_node("DequantizeLinear", ["x_q", "xs", "xz"], ["x"]),
             helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["w"]),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x_q", T.UINT8, [1, 2])],
                              [helper.make_tensor_value_info("y", T.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, {"x_q": np.uint8([[200, 200]])}


def _int8_qlinearconv(x, x_zero_point, w, attrs, y_type=T.INT8):
    """QLinearConv with scales 1 and zero points 0 but x's (spec/backends.md "OpenVINO's int8 kernels")."""
    y_zero_point = np.int8(0) if y_type == T.INT8 else np.uint8(0)
    init = {"xs": F32(1), "xz": x_zero_point, "w": w, "ws": F32(1), "wz": np.int8(0), "ys": F32(1), "yz": y_zero_point}
    inputs = {"x": (T.INT8 if x.dtype == np.int8 else T.UINT8, list(x.shape)), **init}
    model = single_node_model("QLinearConv", inputs, {"y": y_type}, opset=13, attrs=attrs, initializers=init)
    return model, {"x": x}


def _qdq_grouped_conv_u8_output(x_value=0, x_zero_point=255, w_value=-65, out_scale=1):
    """DequantizeLinear(x_q uint8 0, zp 255), DequantizeLinear(w int8 -65) -> Conv(group 2) -> QuantizeLinear(1, 0)
    -> y: the level 2 * 255 * 65 = 33150 (openvino-int8-gemm-output-wrap); with x_q 217, zp 0, w 76, out_scale
    192 a pair 217 * 76 * 2 = 32984 beyond int16 (openvino-int8-conv-pair-saturation)."""
    init = {"xs": F32(1), "xz": np.uint8(x_zero_point), "w_q": np.full((2, 2, 1), w_value, np.int8), "ws": F32(1),
            "wz": np.int8(0), "os": F32(out_scale), "oz": np.uint8(0)}
    nodes = [helper.make_node("DequantizeLinear", ["x_q", "xs", "xz"], ["x"]),
             helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["z"], group=2, kernel_shape=[1]),
             helper.make_node("QuantizeLinear", ["z", "os", "oz"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x_q", T.UINT8, [1, 4, 1])],
                              [helper.make_tensor_value_info("y", T.UINT8, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model, {"x_q": np.full((1, 4, 1), x_value, np.uint8)}


#: defect -> (a backend it concerns, a one-node model whose node matches it, with its feeds)
DEFECT_CASES = {
    "openvino-matmulinteger-float32-accumulation": ("openvino", lambda: (
        single_node_model("MatMulInteger", {"a": (T.UINT8, [1, 300]), "b": (T.UINT8, [300, 1])}, {"y": T.INT32}, opset=13),
        {"a": np.full((1, 300), 255, np.uint8), "b": np.full((300, 1), 255, np.uint8)})),
    "openvino-qdq-u8s8-pair-saturation": ("openvino", _qdq_u8s8_matmul),
    "openvino-qlinear-float32-accumulation": ("openvino", lambda: _qlinear_matmul(np.float32, 1 / 255)),
    "openvino-qlinearmatmul-bfloat16-scales": ("openvino", lambda: _qlinear_matmul(ml_dtypes.bfloat16, 1)),
    "openvino-int8-conv-halved-weights": ("openvino", lambda: _int8_qlinearconv(
        np.int8([[[5, 7, 9, 11, 13]]]), np.int8(0), np.int8([[[3, -2]]]), {"kernel_shape": [2]})),
    "openvino-int8-gemm-output-wrap": ("openvino", _qdq_grouped_conv_u8_output),
    "openvino-int8-conv-pair-saturation": ("openvino", lambda: _qdq_grouped_conv_u8_output(217, 0, 76, 192)),
    "openvino-int8-gemm-conv3d-padding": ("openvino", lambda: _int8_qlinearconv(
        np.zeros((1, 2, 1, 1, 2), np.uint8), np.uint8(128), np.full((4, 1, 1, 1, 2), -1, np.int8),
        {"auto_pad": "SAME_UPPER", "group": 2, "kernel_shape": [1, 1, 2], "strides": [2, 1, 1]}, T.UINT8)),
    "ort-same-padding-ignores-dilation": ("ort-cpu", lambda: _maxpool_model([1, 2])),
    "ort-float8e4m3fn-unsaturated-480": ("ort-cpu", lambda: (
        single_node_model("Cast", {"x": (T.FLOAT, [3])}, {"y": T.FLOAT8E4M3FN}, opset=21,
                          attrs=dict(to=T.FLOAT8E4M3FN, saturate=0)), {"x": F32([1, 480, 490])})),
    "openvino-matmulinteger-1d-shape": ("openvino", lambda: (
        single_node_model("MatMulInteger", {"a": (T.UINT8, [2]), "b": (T.UINT8, [2, 3])}, {"y": T.INT32}, opset=13),
        {"a": np.uint8([1, 2]), "b": np.ones((2, 3), np.uint8)})),
    "openvino-qdq-matmul-1d-shape": ("openvino", lambda: (
        single_node_model("MatMul", {"a": (T.FLOAT, [2]), "b": (T.FLOAT, [2, 3])}, {"y": T.FLOAT}, opset=13),
        {"a": F32([1, 2]), "b": np.ones((2, 3), F32)})),
    "openvino-fake-quantize-overflow-8bit": ("openvino", lambda: _q(F32([-1, 0, 3e38]), F32(3e38), np.int8(0), T.INT8)),
    "openvino-fake-quantize-overflow-16bit": ("openvino", lambda: _q(F32([-1, 0, 3e38]), F32(3e38), np.int16(0), T.INT16)),
    "openvino-fake-quantize-overflow-4bit": ("openvino", lambda: _q(F32([-1, 0, 3e38]), F32(3e38), ml_dtypes.int4(0), T.INT4)),
    "openvino-float16-max-scale": ("openvino", lambda: _q(np.float16([-1, 0, 1]), np.float16(65504), np.int8(0), T.INT8)),
    "openvino-bfloat16-float8-quantize": ("openvino", lambda: _q(
        np.array([-0.5, 0.25, 3], ml_dtypes.bfloat16), ml_dtypes.bfloat16(4), ml_dtypes.float8_e4m3fn(0), T.FLOAT8E4M3FN)),
    "openvino-bfloat16-dequantize": ("openvino", lambda: (
        single_node_model("DequantizeLinear", {"x": (T.UINT8, [3]), "s": ml_dtypes.bfloat16(0.5), "z": np.uint8(3)},
                          {"y": T.BFLOAT16}, opset=21,
                          initializers={"s": np.asarray(ml_dtypes.bfloat16(0.5)), "z": np.uint8(3)}),
        {"x": np.uint8([0, 5, 255])})),
    "openvino-qlinearconv-per-channel-axis": ("openvino", lambda: _per_channel_qlinearconv((1, 2, 3, 3), [1, 1])),
    "openvino-maxpool-ceil-mode-padding-window": ("openvino", lambda: _pool(6, kernel_shape=[2], strides=[3], pads=[0, 1], ceil_mode=1)),
    "resize-tf-crop-scales-ignore-roi": ("onnx-reference", _crop_resize),
    "onnx-reference-qlinearconv-1d-per-channel-shape": ("onnx-reference", lambda: _per_channel_qlinearconv((1, 3, 4), [1])),
    "onnx-reference-pool-negative-same-padding": ("onnx-reference", lambda: _pool(6, kernel_shape=[1], strides=[4], auto_pad="SAME_UPPER")),
    "onnx-reference-maxpool-same-lower": ("onnx-reference", lambda: _pool(4, kernel_shape=[3], strides=[2], auto_pad="SAME_LOWER")),
    "onnx-reference-maxpool-unit-stride-padding": ("onnx-reference", lambda: _pool(4, kernel_shape=[2], pads=[0, 1])),
}


def test_every_defect_has_a_locality_case():
    defects = {d.name for d in load_divergences() if d.is_defect}
    assert defects == set(DEFECT_CASES), "add a case to DEFECT_CASES for each defect"


@pytest.mark.parametrize("name", sorted(DEFECT_CASES))
def test_a_defect_attributes_what_depends_on_its_node_and_nothing_else(name):
    (defect,) = [d for d in load_divergences() if d.name == name]
    backend, build = DEFECT_CASES[name]
    model, feeds = build()
    model = _with_neighbours(model)
    feeds = {**feeds, "u": F32([-1, 0, 1, 2])}
    ref = refquant.Session(model).run_all(feeds)
    outputs = {"y": ref["y"], "down": ref["down"], "w_out": ref["w_out"]}
    assert defect.applies_to(backend, model.graph.node, ref)
    # a planted difference in a tensor computed from the matching node: attributed, never explained
    reports = _reports(model, feeds, backend, {**outputs, "down": _perturb(ref["down"])})
    assert reports["down"].status == "attributed" and reports["down"].attributed == {name: 1}
    assert reports["down"].explained == {} and reports["down"].worst[0]["class"] == f"attributed:{name}"
    assert reports["w_out"].status == "exact"
    # the same difference in an independent output: unexplained
    reports = _reports(model, feeds, backend, {**outputs, "w_out": _perturb(ref["w_out"])})
    assert reports["w_out"].status == "unexplained" and reports["down"].status == "exact"
    # the node's own values: only a defect documented to change values
    own = _reports(model, feeds, backend, {**outputs, "y": _perturb(ref["y"])})["y"]
    assert own.status == ("attributed" if "values" in defect.affects else "unexplained")
    # a wrong shape: attributed only to a shape defect of the node that produces it
    wrong = {**outputs, "y": ref["y"].reshape(1, *ref["y"].shape), "w_out": ref["w_out"].reshape(2, 2)}
    reports = _reports(model, feeds, backend, wrong)
    assert reports["y"].status == ("attributed" if "shape" in defect.affects else "unexplained")
    assert reports["w_out"].status == "unexplained" and reports["w_out"].attributed == {}
    # and not on another backend
    reports = _reports(model, feeds, "nonesuch", {**outputs, "down": _perturb(ref["down"])})
    assert reports["down"].status == "unexplained"


def _qlinearconv_beside_quantize():
    """(a) a per-channel QLinearConv (openvino-qlinearconv-per-channel-axis) beside an unrelated QuantizeLinear."""
    conv, conv_feeds = _per_channel_qlinearconv((1, 2, 3, 3), [1, 1])
    graph = conv.graph
    graph.node.append(helper.make_node("QuantizeLinear", ["f", "qs", "qz"], ["q"]))
    graph.input.append(helper.make_tensor_value_info("f", T.FLOAT, [4]))
    graph.initializer.extend([numpy_helper.from_array(F32(1), "qs"), numpy_helper.from_array(np.uint8(0), "qz")])
    graph.output.append(helper.make_tensor_value_info("q", T.UINT8, None))
    return conv, {**conv_feeds, "f": F32([1, 2, 3, 4])}


def test_planted_unrelated_error_beside_a_matching_openvino_defect_is_unexplained():
    model, feeds = _qlinearconv_beside_quantize()
    ref = refquant.Session(model).run_all(feeds)
    bad = ref["q"].copy()
    bad[1] += 57
    reports = _reports(model, feeds, "openvino", {"y": ref["y"], "q": bad})
    assert reports["q"].status == "unexplained" and reports["q"].unexplained == 1 and not reports["q"].attributed
    assert reports["q"].max_abs_diff == 57
    wrong_conv = ref["y"].copy()
    wrong_conv.reshape(-1)[0] += 57  # in the conv's own output: the defect accounts for it, without reproducing it
    reports = _reports(model, feeds, "openvino", {"y": wrong_conv, "q": ref["q"]})
    assert reports["y"].status == "attributed" and reports["q"].status == "exact"


def test_planted_shape_mismatch_beside_a_ceil_mode_maxpool_is_unexplained():
    model, feeds = _pool(6, kernel_shape=[2], strides=[3], pads=[0, 1], ceil_mode=1)
    model = _with_neighbours(model)
    feeds = {**feeds, "u": F32([-1, 0, 1, 2])}
    ref = refquant.Session(model).run_all(feeds)
    assert ref["w_out"].shape == (4,)
    reports = _reports(model, feeds, "openvino", {"y": ref["y"], "w_out": np.zeros(7, F32)})
    assert reports["w_out"].status == "unexplained" and "[7]" in reports["w_out"].problem
    assert reports["y"].status == "exact"
    wide = np.zeros((1, 1, 3), F32)  # the defect itself: one window too many
    assert _reports(model, feeds, "openvino", {"y": wide})["y"].attributed == {"openvino-maxpool-ceil-mode-padding-window": 3}


def test_planted_large_error_beside_a_bfloat16_dequantize_is_not_explained():
    _, build = DEFECT_CASES["openvino-bfloat16-dequantize"]
    model, feeds = build()
    model = _with_neighbours(model)
    feeds = {**feeds, "u": F32([-1, 0, 1, 2])}
    ref = refquant.Session(model).run_all(feeds)
    bad = ref["w_out"].copy()
    bad[2] += 1000.5
    reports = _reports(model, feeds, "openvino", {"y": ref["y"], "w_out": bad})
    assert reports["w_out"].status == "unexplained" and reports["w_out"].max_abs_diff == 1000.5
    own = ref["y"].copy()
    own[2] = ml_dtypes.bfloat16(float(own[2]) + 1000.5)
    report = _reports(model, feeds, "openvino", {"y": own})["y"]
    assert report.status == "attributed" and report.explained == {}  # accounted for, never reproduced


def _half_away_from_zero(values, zero_point, qt):
    values = np.sign(values) * np.floor(np.abs(values) + 0.5)
    if zero_point is not None:
        values += np.asarray(zero_point).astype(values.dtype)
    return np.clip(values, qt.qmin, qt.qmax).astype(qt.dtype)


def _quantize_model(x, scale=1.0, zero_point=0):
    init = {"s": np.array(scale, F32), "zp": np.array(zero_point, np.uint8)}
    model = single_node_model("QuantizeLinear", {"x": x, **init}, {"y": T.UINT8}, opset=13, initializers=init)
    return model, {"x": x}


def test_planted_rounding_bug_is_not_hidden_by_the_int32_cast_profile(monkeypatch):
    x = np.array([0.5, 1e10, 2.0], F32)
    model, feeds = _quantize_model(x)
    onnx_reference = np.array([0, 0, 2], np.uint8)  # rint(0.5) = 0; 1e10 -> INT32_MIN -> clipped to 0
    (report,) = classify(model, feeds, "onnx-reference", {"y": onnx_reference})
    assert report.explained == {"int32-indefinite-cast": 1} and report.unexplained == 0
    monkeypatch.setattr(arith, "_clip_round", _half_away_from_zero)  # the bug: 0.5 -> 1 in the spec path
    assert refquant.Session(model).run(None, feeds)[0].tolist() == [1, 255, 2]
    (report,) = classify(model, feeds, "onnx-reference", {"y": onnx_reference})
    assert report.unexplained == 1 and report.explained == {"int32-indefinite-cast": 1}
    assert report.worst[0] == {"index": [0], "reference": 1, "backend": 0, "class": "unexplained"}


def test_each_option_is_explained_only_where_its_condition_holds():
    """The float32 requantization explains the tie element; an element it cannot change stays unexplained
    even where the replayed value happens to equal the backend's."""
    model, feeds = qmatmul_tie_case()
    result = replay(model, {"requantize_precision": "float32"}, feeds)
    assert result.allowed("y").tolist() == [[True, False], [False, False]]
    assert result.tainted == {"y"}


def test_the_spec_refusing_a_node_leaves_the_rest_of_the_graph_comparable():
    """NaN into one QuantizeLinear: the spec refuses that node only; a parallel one is still compared exactly."""
    model, feeds = _quantize_model(np.array([np.nan, 2.0], F32))
    graph = model.graph
    graph.node.append(helper.make_node("QuantizeLinear", ["w", "s", "zp"], ["q"]))
    graph.input.append(helper.make_tensor_value_info("w", T.FLOAT, [2]))
    graph.output.append(helper.make_tensor_value_info("q", T.UINT8, None))
    feeds = {**feeds, "w": F32([1, 3])}
    reports = _reports(model, feeds, "ort-cpu", {"y": np.uint8([0, 2]), "q": np.uint8([1, 4])})
    assert reports["y"].explained == {"nan-to-qmin": 2} and reports["y"].reference_error
    assert reports["q"].reference_error is None and reports["q"].unexplained == 1 and reports["q"].exact == 1


# -- the property: where an option's condition does not hold, its emulation is the spec ------------------------------

from dataclasses import fields as _fields  # noqa: E402

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402

from refquant.backends import strategies as rqs  # noqa: E402
from refquant.backends.divergence import _same  # noqa: E402
from refquant.profiles import Profile  # noqa: E402

#: (option, a value other than the spec's, the cases it acts on)
OPTION_CASES = [
    ("quantize_overflow", "int32-indefinite", rqs.quantize_linear_models),
    ("nan", "qmin", rqs.quantize_linear_models),
    ("nan", "zero_point", rqs.dynamic_quantize_linear_models),
    ("quantize_division", "float32", rqs.quantize_linear_models),
    ("quantize_formula", "fake-quantize", rqs.quantize_linear_models),
    ("dynamic_zero_range_scale", 1 / 255, rqs.dynamic_quantize_linear_models),
    ("dynamic_scale_out_of_range", "float32", rqs.dynamic_quantize_linear_models),
    ("dynamic_quantize_formula", "reciprocal", rqs.dynamic_quantize_linear_models),
    ("requantize_precision", "float32", rqs.qlinear_matmul_models),
    ("requantize_precision", "mixed", rqs.qlinear_conv_models),
    ("requantize_zero_point", "before-rounding", rqs.qlinear_conv_models),
    ("qlinear_requantize", "fake-quantize", rqs.qlinear_conv_models),
    ("qlinear_requantize", "fake-quantize", rqs.qlinear_matmul_models),
    ("dequantize_formula", "distributed", rqs.dequantize_linear_models),
    ("dequantize_subnormals", "flush", rqs.dequantize_linear_models),
    ("dequantize_int32", "float32-first", rqs.dequantize_linear_models),
    ("dequantize_int32", "float32-input", rqs.dequantize_linear_models),
    ("int32_overflow", "saturate", rqs.matmul_integer_models),
    ("avx2_u8s8_saturation", True, rqs.qlinear_matmul_models),
    ("float_pipeline", "mlas-float32", rqs.qdq_models),
    ("mlas_threads", 4, rqs.qdq_models),
    ("qlinear_pipeline", "mlas-float32", rqs.qdq_models),
]
OPTIONS = [f.name for f in _fields(Profile) if f.name != "name"]


def test_every_profile_option_has_a_condition_and_a_property_case():
    assert set(OPTIONS) <= set(CONDITIONS), "state where each option acts: backends/conditions.py CONDITIONS"
    assert set(OPTIONS) <= {option for option, _, _ in OPTION_CASES}
    assert condition_for("no-such-option").where is None and condition_for("no-such-option").ops is None


@pytest.mark.parametrize("option, value, cases", [c for c in OPTION_CASES if c[0] in OPTIONS],
                         ids=[f"{o}={v}" for o, v, _ in OPTION_CASES if o in OPTIONS])
def test_where_an_options_condition_does_not_hold_its_emulation_is_the_spec(option, value, cases):
    """So a spec bug cannot hide behind a profile: outside its condition an option changes nothing."""

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(cases())
    def check(case):
        try:
            spec = refquant.Session(case.model).run_all(case.feeds)
            replayed = replay(case.model, {option: value}, case.feeds)
        except RefquantError:
            assume(False)  # the spec refuses the case (a refusal marks the whole node) or the option does
        for output in case.model.graph.output:
            name = output.name
            want, got = spec[name], replayed.values[name]
            assert got.shape == want.shape and got.dtype == want.dtype
            allowed = np.broadcast_to(replayed.allowed(name), want.shape)
            outside = ~allowed & ~_same(got, want)
            assert not outside.any(), f"{option}={value!r} changes {name} at {np.argwhere(outside)[:3].tolist()} outside its condition"

    check()
