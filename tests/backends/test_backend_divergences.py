"""Backend divergences (spec/backends.md): each OpenVINO profile option reproduces a hand-derived value and
the backend's own, each defect and unsupported rule recognises its case, and each rejects a near miss."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, reject
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant.backends as backends
import refquant
from refquant.backends.base import BackendError, UnsupportedOnBackend, tensor_infos
from refquant import lowerings
from refquant.backends import strategies as rqs
from refquant.backends.divergence import Divergence, classify, load_divergences, same_padding_kinds
from refquant.dtypes import qtype
from refquant.errors import QuantParamError, RefquantError
from refquant.profiles import OPENVINO, PROFILES, Profile

from tests.helpers import assert_bit_exact, single_node_model

U8, S8 = T.UINT8, T.INT8


@pytest.fixture(scope="module")
def openvino():
    pytest.importorskip("openvino")
    return backends.get("openvino")


def _quantize(x, scale, zero_point=None, *, attrs=None, out=None):
    """QuantizeLinear-21 with x fed and the parameters as initializers."""
    init = {"s": np.asarray(scale)}
    if zero_point is not None:
        init["z"] = np.asarray(zero_point)
    out = out or (helper.np_dtype_to_tensor_dtype(init["z"].dtype) if zero_point is not None else U8)
    inputs = {"x": np.asarray(x), **init}
    return single_node_model("QuantizeLinear", inputs, {"y": out}, opset=21, attrs=attrs, initializers=init)


def _dequantize(x, scale, zero_point=None):
    init = {"s": np.asarray(scale)}
    if zero_point is not None:
        init["z"] = np.asarray(zero_point)
    out = helper.np_dtype_to_tensor_dtype(init["s"].dtype)
    return single_node_model("DequantizeLinear", {"x": np.asarray(x), **init}, {"y": out}, opset=21, initializers=init)


def _dynamic(x):
    outputs = {"y": U8, "y_scale": T.FLOAT, "y_zero_point": U8}
    return single_node_model("DynamicQuantizeLinear", {"x": np.asarray(x)}, outputs, opset=11)


def _run(model, x, profile="spec"):
    return refquant.Session(model, profile=profile).run(None, {"x": x})


def _classify(model, feeds, backend, outputs):
    return {report.name: report for report in classify(model, feeds, backend, outputs)}


# -- profile options ------------------------------------------------------------------------------------------------


def test_new_options_are_validated_and_the_openvino_profile_is_registered():
    assert PROFILES["openvino"] is OPENVINO
    for option, bad in [
        ("quantize_formula", "round-after"),
        ("dequantize_formula", "fma"),
        ("dequantize_subnormals", "ftz"),
        ("dynamic_quantize_formula", "reciprocals"),
    ]:
        with pytest.raises(RefquantError, match=option):
            Profile(**{option: bad})


def test_fake_quantize_rounds_after_the_zero_point():
    # il = 0.5 * (0 - 3) = -1.5, ih = 0.5 * 252 = 126, isc = 255 / 127.5 = 2, ish = il * isc = -3:
    # 2.25 -> round(4.5 + 3) = 8 and 2.75 -> round(5.5 + 3) = 8; the spec rounds first: 4 + 3 = 7, 6 + 3 = 9
    x = np.array([2.25, 2.75, -1.0], np.float32)
    model = _quantize(x, np.float32(0.5), np.uint8(3))
    assert _run(model, x)[0].tolist() == [7, 9, 1]
    assert _run(model, x, "openvino")[0].tolist() == [8, 8, 1]


def test_fake_quantize_takes_the_short_path_for_int8_with_zero_point_zero():
    # scale 1: isc = 1, ish = -128. x = 0.50000006: the general path rounds 128.50000006 to 128.5 in float32
    # (ulp 2**-16), which ties to 128 -> 0; OpenVINO's aligned int8 path rounds x * isc itself -> 1
    x = np.array([np.nextafter(np.float32(0.5), np.float32(1))], np.float32)
    assert _run(_quantize(x, np.float32(1), np.int8(0)), x, "openvino")[0].tolist() == [1]
    # zero point 1 is not aligned: 0.50000006 + 129 rounds to 129.5 -> 130, minus 128 -> 2 (= spec 0.5.. -> 1, + 1)
    assert _run(_quantize(x, np.float32(1), np.int8(1)), x, "openvino")[0].tolist() == [2]


def test_fake_quantize_refuses_a_range_that_overflows_float32():
    with pytest.raises(QuantParamError, match="overflows float32"):
        lowerings.fake_quantize(np.zeros(2, np.float32), np.float32(3e38), np.int8(0), qtype(S8))
    with pytest.raises(QuantParamError, match="overflows float32"):
        lowerings.fake_quantize(np.zeros(2, np.float32), np.float32(1e-39), np.int8(0), qtype(S8))


def test_fake_quantize_explains_openvino_and_rejects_a_near_miss(openvino):
    # test_quantizelinear_uint16: 3 / 2 + 32767 = 32768.5 -> 32768 after the zero point, 32769 in the spec
    x = np.array([0, 3, -3, 2.9, 101], np.float32)
    model = _quantize(x, np.float32(2), np.uint16(32767))
    got = openvino.run(model, {"x": x})["y"]
    assert got.tolist() == [32767, 32768, 32766, 32768, 32818]
    assert_bit_exact(got, _run(model, x, "openvino")[0])
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.explained == {"openvino-fake-quantize": 3} and report.unexplained == 0  # 3, -3 and 101 are ties
    near = got.copy()
    near[3] += 1  # 2.9 / 2 = 1.45 is no tie: nothing explains a step there
    assert _classify(model, {"x": x}, "openvino", {"y": near})["y"].unexplained == 1


@pytest.mark.parametrize(
    "zero_point, axis",
    [(np.uint8(7), None), (np.int8(-3), None), (np.int8(0), None), (np.uint16(40000), None), (np.int16(-5), None),
     (ml_dtypes.int4(2), None), (ml_dtypes.uint4(9), None), (np.array([0, 5, -128], np.int8), 1)],
)
def test_fake_quantize_reproduces_openvino_on_ties(openvino, zero_point, axis):
    """Values on, just off and between x / scale + zp ties, for every integer type OpenVINO quantizes to."""
    rng = np.random.default_rng(7)
    scale = np.float32(rng.uniform(0.003, 3)) if axis is None else rng.uniform(0.003, 3, 3).astype(np.float32)
    k = rng.integers(-70, 70, (4, 3, 50))
    along = scale if axis is None else scale.reshape(1, 3, 1)
    x = (k * 0.5 * along).astype(np.float32)
    x[..., ::3] = np.nextafter(x[..., ::3], np.float32(np.inf))
    model = _quantize(x, scale, zero_point, attrs=None if axis is None else {"axis": axis})
    assert_bit_exact(openvino.run(model, {"x": x})["y"], _run(model, x, "openvino")[0])


def test_openvino_maps_nan_to_qmin(openvino):
    x = np.array([np.nan, 1.0], np.float32)
    model = _quantize(x, np.float32(0.5), np.int8(3))
    assert openvino.run(model, {"x": x})["y"].tolist() == [-128, 5]
    assert _run(model, x, "openvino")[0].tolist() == [-128, 5]


def test_fake_quantize_float8_goes_through_float16(openvino):
    # x = 1.0001 * 2**-10 (scale 1): float16 rounds it to 2**-10 exactly, half the smallest float8e4m3fn
    # subnormal, a tie that goes to 0; rounded once (the spec) it lies above the tie -> 2**-9.
    # saturate=0 is not honoured: 1e6 saturates to 448 where the spec gives NaN
    x = np.array([2.0**-10 * 1.0001, 1e6], np.float32)
    model = _quantize(x, np.float32(1), ml_dtypes.float8_e4m3fn(0), attrs={"saturate": 0})
    spec = _run(model, x)[0].astype(np.float64)
    assert spec[0] == 2.0**-9 and np.isnan(spec[1])
    lowered = _run(model, x, "openvino")[0]
    assert lowered.astype(np.float64).tolist() == [0.0, 448.0]
    assert_bit_exact(openvino.run(model, {"x": x})["y"], lowered)


def test_fake_quantize_16bit_identity_range_truncates_and_wraps(openvino):
    # scale 1, zero point 0: il = qmin, ih = qmax, OpenVINO drops the FakeQuantize and its bare Convert
    # truncates (5.5 -> 5, spec 6) and wraps (-2.5 -> -2 -> 65534, spec 0)
    x = np.array([5.5, -2.5, 70000.0], np.float32)
    model = _quantize(x, np.float32(1), np.uint16(0))
    assert _run(model, x)[0].tolist() == [6, 0, 65535]
    lowered = _run(model, x, "openvino")[0]
    assert lowered.tolist() == [5, 65534, 70000 - 65536]
    assert_bit_exact(openvino.run(model, {"x": x})["y"], lowered)
    with_zero_point = _quantize(x, np.float32(1), np.uint16(1))  # not the identity range: rounds and saturates
    assert _run(with_zero_point, x, "openvino")[0].tolist() == [6, 0, 65535]


def test_quantize_division_in_float32_explains_onnxruntime():
    ort_cpu = backends.get("ort-cpu")
    # 1901 / 56.75 = 33.4978 in float32 -> 33; float16(33.4978) = 33.5 -> 34 (the spec divides in float16)
    x = np.array([1901, 1900], np.float16)
    model = _quantize(x, np.float16(56.75), np.uint16(0))
    assert _run(model, x)[0].tolist() == [34, 33]
    assert _run(model, x, "onnxruntime")[0].tolist() == [33, 33]
    got = ort_cpu.run(model, {"x": x})["y"]
    assert got.tolist() == [33, 33]
    assert _classify(model, {"x": x}, "ort-cpu", {"y": got})["y"].explained == {"float16-quantize-in-float32": 1}
    assert _classify(model, {"x": x}, "ort-cpu", {"y": np.uint16([34, 32])})["y"].unexplained == 1


def _qdq_add(y_scale):
    """DequantizeLinear(x) + DequantizeLinear(y) -> QuantizeLinear, int8, with the scales refquant check --seed 4 drew."""
    init = {"xs": np.float32(9.536743e-07), "xz": np.int8(0), "ys": np.float32(y_scale), "yz": np.int8(-128),
            "os": np.float32(2.6226044e-07), "oz": np.int8(0)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["y", "ys", "yz"], ["yf"]),
             helper.make_node("Add", ["xf", "yf"], ["sum"]),
             helper.make_node("QuantizeLinear", ["sum", "os", "oz"], ["z"])]
    graph = helper.make_graph(
        nodes, "qdq_add", [helper.make_tensor_value_info(name, T.INT8, [4]) for name in "xy"],
        [helper.make_tensor_value_info("z", T.INT8, [4])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_onnxruntime_fusion_is_explained_by_replaying_its_optimized_graph():
    """ORT_ENABLE_ALL fuses the pair into QLinearAdd, whose sums beyond int32 (1024 * 166 / 2.62e-7 =
    6.5e11) give qmin, -128, where the spec and the unfused graph saturate to 127; x = -24 alone gives
    -24 * 9.54e-7 / 2.62e-7 = -87.3 -> -87 in both. Replaying the saved graph explains the -128s."""
    pytest.importorskip("onnxruntime")
    from refquant.backends import conformance

    feeds = {"x": np.int8([-24, -24, 5, 100]), "y": np.int8([38, -128, -127, 0])}
    model = _qdq_add(1024.0)
    optimized = backends.get("ort-cpu-opt").optimized_model(model, feeds)
    assert [node.op_type for node in optimized.graph.node] == ["QLinearAdd"]
    assert backends.get("ort-cpu").optimized_model(model, feeds) is None  # no rewrites: nothing to replay
    (result,) = conformance.compare(model, feeds, ["ort-cpu-opt"])
    assert result.outputs["z"].tolist() == [-128, -87, -128, -128]
    assert refquant.Session(model).run(None, feeds)[0].tolist() == [127, -87, 127, 127]
    assert result.reports[0].explained == {"ort-graph-optimization": 3} and result.reports[0].unexplained == 0
    near_miss = np.int8([-128, -87, -128, 0])  # 0 where the fused graph gives -128 and the spec 127
    (report,) = classify(model, feeds, "ort-cpu-opt", {"z": near_miss}, optimized_model=lambda: optimized)
    assert report.explained == {"ort-graph-optimization": 2} and report.unexplained == 1


def test_onnxruntime_unsaturated_float8e4m3fn_480_defect_is_recognised():
    """ONNX: without saturation, values beyond 464 (448 plus half a step) are NaN; onnxruntime 1.32 gives 448 on [480, 496)."""
    ort_cpu = backends.get("ort-cpu")
    x = np.array([464.0, 465.0, 479.9, 480.0, 495.9, 496.0, -490.0], np.float32)
    model = single_node_model("Cast", {"x": (T.FLOAT, [7])}, {"y": T.FLOAT8E4M3FN}, opset=21,
                              attrs=dict(to=T.FLOAT8E4M3FN, saturate=0))  # fmt: skip
    want = np.array([448, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan], np.float32)
    (got,) = refquant.Session(model).run(None, {"x": x})
    assert_bit_exact(got.astype(np.float32), want)
    backend = ort_cpu.run(model, {"x": x})["y"]
    assert backend.astype(np.float32).tolist()[3:5] == [448.0, 448.0] and backend.astype(np.float32)[6] == -448.0
    (report,) = classify(model, {"x": x}, "ort-cpu", {"y": backend})
    assert report.attributed == {"ort-float8e4m3fn-unsaturated-480": 3} and report.unexplained == 0
    saturating = single_node_model("Cast", {"x": (T.FLOAT, [7])}, {"y": T.FLOAT8E4M3FN}, opset=21,
                                   attrs=dict(to=T.FLOAT8E4M3FN, saturate=1))  # fmt: skip
    (report,) = classify(saturating, {"x": x}, "ort-cpu", {"y": backend})
    assert report.unexplained > 0  # the rule needs saturate = 0


def test_distributed_dequantize_golden_and_openvino(openvino):
    # zs = float32(7 * 0.1f) = 0.699999988079071; x = 7: 7 * 0.1f - zs = 0.700000010430812 - 0.699999988079071
    # = 3 * 2**-27 exactly (one fused multiply-add); the spec gives (7 - 7) * 0.1f = 0
    x = np.array([0, 7, 200], np.uint8)
    model = _dequantize(x, np.float32(0.1), np.uint8(7))
    assert _run(model, x)[0][1] == 0
    lowered = _run(model, x, "openvino")[0]
    assert lowered[1] == np.float32(3 * 2.0**-27)
    got = openvino.run(model, {"x": x})["y"]
    assert_bit_exact(got, lowered)
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.explained == {"openvino-distributed-dequantize": 1} and report.unexplained == 0
    near = got.copy()
    near[1] = np.nextafter(near[1], np.float32(1))
    assert _classify(model, {"x": x}, "openvino", {"y": near})["y"].unexplained == 1


def test_distributed_dequantize_rounds_the_zero_point_to_float16_first(openvino):
    # float16 scale s = 0.0111541748046875: zp -18934 becomes -18928 in float16, zs = f16(-18928 * s) = -211.125,
    # and x = -18934 gives f16(-18934 * s + 211.125), where the spec gives (x - zp) * s = 0
    x = np.array([-18934, -32768, 0], np.int16)
    scale = np.float16(0.0111541748046875)
    zs = np.float16(float(Fraction(-18928) * Fraction(float(scale))))
    assert float(zs) == -211.125
    expected = [np.float16(float(Fraction(int(v)) * Fraction(float(scale)) - Fraction(float(zs)))) for v in x]
    model = _dequantize(x, scale, np.int16(-18934))
    lowered = _run(model, x, "openvino")[0]
    assert lowered.tolist() == [float(v) for v in expected] and lowered[0] != 0
    assert_bit_exact(openvino.run(model, {"x": x})["y"], lowered)


def test_flushed_subnormals_golden_and_openvino(openvino):
    # 1 * 1e-40 and 8 * 1e-40 lie below float32's smallest normal (1.18e-38): OpenVINO's 4-bit and float8
    # path flushes them to 0; 8-bit integers keep them
    scale = np.float32(1e-40)
    x4 = np.array([1, 8], ml_dtypes.uint4)
    model = _dequantize(x4, scale)
    assert _run(model, x4)[0].tolist() == [float(scale), 8 * float(scale)]  # subnormal multiples of 2**-149: exact
    assert _run(model, x4, "openvino")[0].tolist() == [0.0, 0.0]
    got = openvino.run(model, {"x": x4})["y"]
    assert got.tolist() == [0.0, 0.0]
    report = _classify(model, {"x": x4}, "openvino", {"y": got})["y"]
    assert report.explained == {"openvino-flush-dequantize-subnormals": 2}
    assert _classify(model, {"x": x4}, "openvino", {"y": np.float32([0, 1e-41])})["y"].unexplained == 1
    x8 = np.array([1, 8], np.uint8)
    wide = _dequantize(x8, scale)
    assert_bit_exact(_run(wide, x8, "openvino")[0], _run(wide, x8)[0])
    assert_bit_exact(openvino.run(wide, {"x": x8})["y"], _run(wide, x8)[0])


@pytest.mark.parametrize(
    "x, axis, expected", [([[7, 2], [3, 4]], 1, [[0.0, 2.0], [0.0, 4.0]]), ([7, 2], 0, [0.0, 2.0])], ids=["2-D", "1-D"]
)
def test_per_axis_dequantize_flushes_subnormal_scales(openvino, x, axis, expected):
    # a per-axis scale of 8-bit x: 7 * 1e-40 would be 7e-40; OpenVINO counts the subnormal scale as 0,
    # which a per-tensor scale it does not; a 1-D x too, where the scale keeps its own shape
    x = np.array(x, np.uint8)
    model = single_node_model("DequantizeLinear", {"x": x, "s": np.float32([1e-40, 1.0])}, {"y": T.FLOAT}, opset=21,
                              attrs={"axis": axis}, initializers={"s": np.float32([1e-40, 1.0])})
    assert _run(model, x)[0].ravel()[0] != 0
    lowered = _run(model, x, "openvino")[0]
    assert lowered.tolist() == expected
    assert_bit_exact(openvino.run(model, {"x": x})["y"], lowered)


def test_reciprocal_dynamic_quantize_golden_and_openvino(openvino):
    # test_dynamicquantizelinear: span 5, scale = 5 * f32(1/255), zp = round(3 * f32(1/scale)) = 153;
    # x = -2.5: round(f32(-637.5 * f32(1/5))) = round(-127.5) = -128 -> 25, where the spec's -2.5 / scale =
    # -127.4999... -> -127 -> 26
    x = np.array([0, 2, -3, -2.5, 1.34, 0.5], np.float32)
    model = _dynamic(x)
    assert _run(model, x)[0][3] == 26
    y, scale, zero_point = _run(model, x, "openvino")
    assert y[3] == 25 and zero_point == 153 and scale == np.float32(np.float32(5) * (np.float32(1) / np.float32(255)))
    got = dict(zip(["y", "y_scale", "y_zero_point"], openvino.run(model, {"x": x}).values()))
    assert_bit_exact(got["y"], y)
    reports = _classify(model, {"x": x}, "openvino", got)
    assert reports["y"].explained == {"openvino-reciprocal-dynamic-quantize": 1}
    near = dict(got, y=got["y"] + np.uint8(1))
    assert _classify(model, {"x": x}, "openvino", near)["y"].unexplained == 5


def test_reciprocal_dynamic_quantize_gives_scale_zero_for_zeros(openvino):
    x = np.zeros(3, np.float32)
    model = _dynamic(x)
    assert [v.tolist() for v in _run(model, x)] == [[0, 0, 0], 1.0, 0]
    assert [v.tolist() for v in _run(model, x, "openvino")] == [[0, 0, 0], 0.0, 0]
    got = dict(zip(["y", "y_scale", "y_zero_point"], openvino.run(model, {"x": x}).values()))
    assert got["y_scale"] == 0
    report = _classify(model, {"x": x}, "openvino", got)["y_scale"]
    assert report.explained == {"openvino-reciprocal-dynamic-quantize": 1}


# -- defects ---------------------------------------------------------------------------------------------------------


def _matmul_integer(a_shape, b_shape):
    inputs = {"a": (U8, list(a_shape)), "b": (U8, list(b_shape))}
    return single_node_model("MatMulInteger", inputs, {"y": T.INT32}, opset=13)


def test_matmul_integer_1d_shape_is_recognised_and_a_2d_a_is_not(openvino):
    feeds = {"a": np.full(2, 3, np.uint8), "b": np.ones((2, 6), np.uint8)}
    model = _matmul_integer((2,), (2, 6))
    got = openvino.run(model, feeds)["y"]
    assert got.shape == (1, 6) and (got == 6).all()
    assert _classify(model, feeds, "openvino", {"y": got})["y"].attributed == {"openvino-matmulinteger-1d-shape": 6}
    feeds2 = {"a": np.full((1, 2), 3, np.uint8), "b": feeds["b"]}
    wrong = np.full((1, 1, 6), 6, np.int32)  # an extra axis on a 2-D a: not this defect
    assert _classify(_matmul_integer((1, 2), (2, 6)), feeds2, "openvino", {"y": wrong})["y"].status == "unexplained"


def _qdq_matmul(x_shape):
    """x_q -> DequantizeLinear -> MatMul with per-column weights -> QuantizeLinear (distinct column scales:
    equal ones are folded to one per-tensor scale, and the shape comes out right)."""
    nodes = [
        helper.make_node("DequantizeLinear", ["x_q", "s", "z"], ["x"]),
        helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["w"], axis=1),
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "s", "z"], ["y"]),
    ]
    init = [numpy_helper.from_array(np.float32(0.5), "s"), numpy_helper.from_array(np.int8(0), "z"),
            numpy_helper.from_array(np.ones((4, 6), np.int8), "w_q"),
            numpy_helper.from_array(np.arange(1, 7, dtype=np.float32) / 4, "ws"),
            numpy_helper.from_array(np.zeros(6, np.int8), "wz")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x_q", S8, list(x_shape))],
                              [helper.make_tensor_value_info("y", S8, None)], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_qdq_matmul_1d_shape_is_recognised_and_a_2d_x_is_not(openvino):
    feeds = {"x_q": np.arange(4, dtype=np.int8)}
    model = _qdq_matmul((4,))
    got = openvino.run(model, feeds)["y"]
    assert got.shape == (1, 6)
    assert _classify(model, feeds, "openvino", {"y": got})["y"].attributed == {"openvino-qdq-matmul-1d-shape": 6}
    feeds2 = {"x_q": np.arange(4, dtype=np.int8).reshape(1, 4)}
    assert _classify(_qdq_matmul((1, 4)), feeds2, "openvino", {"y": got.reshape(1, 1, 6)})["y"].status == "unexplained"


@pytest.mark.parametrize(
    "zero_point, scale, name",
    [(np.int8(0), 3e38, "openvino-fake-quantize-overflow-8bit"),
     (np.uint8(0), 1e-39, "openvino-fake-quantize-overflow-8bit"),
     (np.int16(0), 3e38, "openvino-fake-quantize-overflow-16bit"),
     (ml_dtypes.int4(0), 3e38, "openvino-fake-quantize-overflow-4bit")],
)
def test_fake_quantize_overflow_is_recognised(openvino, zero_point, scale, name):
    x = np.array([-3e38, -1, 0, 1, 3e38], np.float32)
    model = _quantize(x, np.float32(scale), zero_point)
    got = openvino.run(model, {"x": x})["y"]
    assert len(set(got.tolist())) == 1  # one constant: the converted NaN of 0 * inf or inf - inf
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.unexplained == 0 and set(report.attributed) == {name}


def test_fake_quantize_overflow_bounds_depend_on_the_type():
    # 1e34 overflows scale * 65535 but not scale * 255: a wrong int8 value there stays unexplained
    x = np.array([1e35, 0], np.float32)
    model = _quantize(x, np.float32(1e34), np.int8(0))
    assert _run(model, x, "openvino")[0].tolist() == [10, 0]
    assert _classify(model, {"x": x}, "openvino", {"y": np.int8([-128, -128])})["y"].unexplained == 2


def test_float16_max_scale_is_recognised_and_its_neighbour_is_not(openvino):
    x = np.array(-1, np.float16)  # a 0-d tensor
    model = _quantize(x, np.float16(65504), np.int8(0))
    got = openvino.run(model, {"x": x})["y"]
    assert got.tolist() == -128 and _run(model, x)[0].tolist() == 0
    assert _classify(model, {"x": x}, "openvino", {"y": got})["y"].attributed == {"openvino-float16-max-scale": 1}
    neighbour = _quantize(x, np.float16(65472), np.int8(0))
    assert openvino.run(neighbour, {"x": x})["y"].tolist() == 0
    assert _classify(neighbour, {"x": x}, "openvino", {"y": got})["y"].unexplained == 1


def test_bfloat16_dequantize_is_recognised_and_float32_scales_are_not(openvino):
    # zp * scale = 175 * 0.0152587890625 = 2.6702880859375 is used as 2.65625 (toward zero; nearest: 2.671875)
    x = np.array([0, 255], np.uint8)
    model = _dequantize(x, ml_dtypes.bfloat16(0.0152587890625), np.uint8(175))
    got = openvino.run(model, {"x": x})["y"]
    assert got[0] == ml_dtypes.bfloat16(-2.65625)
    for profile in ("spec", "openvino"):
        assert _run(model, x, profile)[0][0] == ml_dtypes.bfloat16(-2.671875)
    assert set(_classify(model, {"x": x}, "openvino", {"y": got})["y"].attributed) == {"openvino-bfloat16-dequantize"}
    f32 = _dequantize(x, np.float32(0.0152587890625), np.uint8(175))
    assert _classify(f32, {"x": x}, "openvino", {"y": got.astype(np.float32)})["y"].unexplained == 2


def test_bfloat16_float8_quantize_is_recognised_and_float32_is_not(openvino):
    # -0.00567626953125 / 4 = -0.00142 lies above half the smallest float8e4m3fn subnormal (2**-10): every
    # rounding gives -2**-9; OpenVINO's bfloat16 route gives 0 (and -0.0039 for 2 * 2**-9, x = -0.9609375 / 300)
    x = np.array([-0.00567626953125, 1.0], ml_dtypes.bfloat16)
    model = _quantize(x, ml_dtypes.bfloat16(4), ml_dtypes.float8_e4m3fn(0))
    got = openvino.run(model, {"x": x})["y"]
    assert got.astype(np.float64).tolist() == [0.0, 0.25]
    for profile in ("spec", "openvino"):
        assert _run(model, x, profile)[0].astype(np.float64).tolist() == [-2.0**-9, 0.25]
    assert _classify(model, {"x": x}, "openvino", {"y": got})["y"].attributed == {"openvino-bfloat16-float8-quantize": 1}
    x32 = x.astype(np.float32)
    model32 = _quantize(x32, np.float32(4), ml_dtypes.float8_e4m3fn(0))
    assert_bit_exact(openvino.run(model32, {"x": x32})["y"], _run(model32, x32, "openvino")[0])
    assert _classify(model32, {"x": x32}, "openvino", {"y": got})["y"].unexplained == 1


def test_qlinearconv_per_channel_axis_is_recognised_and_per_tensor_is_not(openvino):
    # group 2, w [2, 2, 3, 1]: w.shape[1] equals the 2 channels, so OpenVINO's axis-1 dequantization converts
    rng = np.random.default_rng(0)
    init = {"xs": np.float32(1024), "xz": np.uint8(175), "w": rng.integers(0, 256, (2, 2, 3, 1)).astype(np.uint8),
            "ws": np.float32([667.1668, 1024.0]), "wz": np.uint8([175, 175]), "ys": np.float32(6.442451e9),
            "yz": np.int8(-34)}
    model = single_node_model("QLinearConv", {"x": (U8, [1, 4, 6, 1]), **init}, {"y": S8}, opset=13,
                              attrs={"group": 2, "kernel_shape": [3, 1]}, initializers=init)
    x = rng.integers(0, 256, (1, 4, 6, 1)).astype(np.uint8)
    got = openvino.run(model, {"x": x})["y"]
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.unexplained == 0 and set(report.attributed) == {"openvino-qlinearconv-per-channel-axis"}
    per_tensor = single_node_model("QLinearConv", {"x": (U8, [1, 4, 6, 1]), **init, "ws": np.float32(1024)}, {"y": S8},
                                   opset=13, attrs={"group": 2, "kernel_shape": [3, 1]},
                                   initializers=dict(init, ws=np.float32(1024), wz=np.uint8(175)))
    assert _classify(per_tensor, {"x": x}, "openvino", {"y": got})["y"].unexplained > 0


def _max_pool(length, **attrs):
    return single_node_model("MaxPool", {"x": (T.FLOAT, [1, 1, length])}, {"y": T.FLOAT}, opset=22, attrs=attrs)


def test_maxpool_ceil_mode_window_is_recognised_and_floor_mode_is_not(openvino):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 6)
    model = _max_pool(6, kernel_shape=[2], strides=[3], pads=[0, 1], ceil_mode=1)
    got = openvino.run(model, {"x": x})["y"]
    assert got.shape == (1, 1, 3) and _run(model, x)[0].shape == (1, 1, 2)
    assert _classify(model, {"x": x}, "openvino", {"y": got})["y"].attributed == {
        "openvino-maxpool-ceil-mode-padding-window": 3
    }
    floor = _max_pool(6, kernel_shape=[2], strides=[3], pads=[0, 1])
    assert _classify(floor, {"x": x}, "openvino", {"y": got})["y"].status == "unexplained"


def _qlinear_conv_per_channel(x_shape, kernel):
    channels = x_shape[1]
    init = {
        "xs": np.float32(0.5), "xz": np.uint8(0), "w": np.ones((channels, 1, *kernel), np.uint8),
        "ws": np.full(channels, 0.25, np.float32), "wz": np.zeros(channels, np.uint8),
        "ys": np.float32(1), "yz": np.uint8(0),
    }
    inputs = {"x": (U8, list(x_shape)), **init}
    attrs = {"group": channels, "kernel_shape": list(kernel)}
    return single_node_model("QLinearConv", inputs, {"y": U8}, opset=13, attrs=attrs, initializers=init)


def test_onnx_reference_1d_per_channel_qlinearconv_shape_is_recognised_and_2d_is_not():
    onnx_reference = backends.get("onnx-reference")
    x = np.full((1, 3, 4), 8, np.uint8)
    model = _qlinear_conv_per_channel(x.shape, [1])
    got = onnx_reference.run(model, {"x": x})["y"]
    assert got.shape == (1, 3, 3, 4) and _run(model, x)[0].shape == (1, 3, 4)
    report = _classify(model, {"x": x}, "onnx-reference", {"y": got})["y"]
    assert report.attributed == {"onnx-reference-qlinearconv-1d-per-channel-shape": got.size}
    x2 = x.reshape(1, 3, 4, 1)
    model2 = _qlinear_conv_per_channel(x2.shape, [1, 1])
    assert_bit_exact(onnx_reference.run(model2, {"x": x2})["y"], _run(model2, x2)[0])
    assert _classify(model2, {"x": x2}, "onnx-reference", {"y": got})["y"].status == "unexplained"


def test_onnx_reference_negative_same_padding_is_recognised_and_a_stride_within_the_kernel_is_not():
    """Kernel 1, stride 4 over 6: SAME total (2 - 1) * 4 + 1 - 6 = -1; onnx.reference starts at x[1]."""
    onnx_reference = backends.get("onnx-reference")
    x = np.float32([0, 1, 4, 9, 16, 25]).reshape(1, 1, 6)
    model = _max_pool(6, kernel_shape=[1], strides=[4], auto_pad="SAME_UPPER")
    got = onnx_reference.run(model, {"x": x})["y"]
    assert got.ravel().tolist() == [1, 25] and _run(model, x)[0].ravel().tolist() == [0, 16]
    assert _classify(model, {"x": x}, "onnx-reference", {"y": got})["y"].attributed == {
        "onnx-reference-pool-negative-same-padding": 2
    }
    within = _max_pool(6, kernel_shape=[2], strides=[4], auto_pad="SAME_UPPER")  # total 0: windows [0, 1], [16, 25]
    assert_bit_exact(onnx_reference.run(within, {"x": x})["y"], _run(within, x)[0])
    shifted = np.float32([4, 25]).reshape(1, 1, 2)
    assert _classify(within, {"x": x}, "onnx-reference", {"y": shifted})["y"].status == "unexplained"


def test_onnx_reference_same_lower_maxpool_is_recognised_and_an_even_total_is_not():
    """Kernel 3, stride 2 over 4: ONNX pads one at the start ([-inf, x0, x1], [x1, x2, x3]); onnx.reference at the end."""
    onnx_reference = backends.get("onnx-reference")
    x = np.float32([5, 1, 4, 2]).reshape(1, 1, 4)
    model = _max_pool(4, kernel_shape=[3], strides=[2], auto_pad="SAME_LOWER")
    got = onnx_reference.run(model, {"x": x})["y"]
    assert got.ravel().tolist() == [5, 4] and _run(model, x)[0].ravel().tolist() == [5, 4]  # same maxima by chance
    x = np.float32([1, 5, 4, 2]).reshape(1, 1, 4)
    got = onnx_reference.run(model, {"x": x})["y"]
    assert got.ravel().tolist() == [5, 4] and _run(model, x)[0].ravel().tolist() == [5, 5]
    assert _classify(model, {"x": x}, "onnx-reference", {"y": got})["y"].attributed == {"onnx-reference-maxpool-same-lower": 1}
    even = _max_pool(4, kernel_shape=[2], dilations=[2], auto_pad="SAME_LOWER")  # total 2, 4 % 1 = 0
    assert_bit_exact(onnx_reference.run(even, {"x": x})["y"], _run(even, x)[0])
    wrong = np.float32([4, 5, 4, 5]).reshape(1, 1, 4)
    assert _classify(even, {"x": x}, "onnx-reference", {"y": wrong})["y"].status == "unexplained"


def test_onnx_reference_unit_stride_maxpool_padding_is_recognised_and_symmetric_padding_is_not():
    """Kernel 2, stride 1 over [1, 2, 3, 4] with pads [0, 1]: ONNX's windows [1, 2], [2, 3], [3, 4], [4, pad] give
    [2, 3, 4, 4]; onnx.reference's unit-stride path drops the last window (refquant fuzz --seed 9003 found the
    ceil_mode form). With stride 2 (op_max_pool.py's own path) it pads right: a planted error there stays unexplained."""
    onnx_reference = backends.get("onnx-reference")
    x = np.float32([1, 2, 3, 4]).reshape(1, 1, 4)
    model = _max_pool(4, kernel_shape=[2], pads=[0, 1])
    got = onnx_reference.run(model, {"x": x})["y"]
    assert got.ravel().tolist() == [2, 3, 4] and _run(model, x)[0].ravel().tolist() == [2, 3, 4, 4]
    report = _classify(model, {"x": x}, "onnx-reference", {"y": got})["y"]
    assert report.status == "attributed" and set(report.attributed) == {"onnx-reference-maxpool-unit-stride-padding"}
    strided = _max_pool(4, kernel_shape=[2], strides=[2], pads=[1, 1])  # windows [pad, 1], [2, 3], [4, pad]
    assert_bit_exact(onnx_reference.run(strided, {"x": x})["y"], _run(strided, x)[0])
    wrong = np.float32([1, 3, 5]).reshape(1, 1, 3)
    assert _classify(strided, {"x": x}, "onnx-reference", {"y": wrong})["y"].status == "unexplained"
    # the reproducer: ceil_mode, kernel [2, 1], pads [1, 0, 0, 0] over one row: one window [pad, x], not two
    ceil = single_node_model("MaxPool", {"x": (T.FLOAT, [1, 1, 1, 1])}, {"y": T.FLOAT}, opset=22,
                             attrs={"kernel_shape": [2, 1], "pads": [1, 0, 0, 0], "ceil_mode": 1})
    one = np.float32([[[[7]]]])
    got = onnx_reference.run(ceil, {"x": one})["y"]
    assert got.shape == (1, 1, 2, 1) and _run(ceil, one)[0].shape == (1, 1, 1, 1)
    assert _classify(ceil, {"x": one}, "onnx-reference", {"y": got})["y"].status == "attributed"


@pytest.mark.parametrize(
    "length, attrs, kinds",
    [
        (6, {"kernel_shape": [1], "strides": [4]}, {"negative", "uneven"}),  # total -1, 6 % 4
        (4, {"kernel_shape": [1], "strides": [2]}, {"negative"}),  # total (2 - 1) * 2 + 1 - 4 = -1
        (4, {"kernel_shape": [3], "strides": [2]}, {"odd"}),  # total 1
        (5, {"kernel_shape": [2], "strides": [2], "dilations": [2]}, {"uneven"}),  # total 2 * 2 + 3 - 5 = 2
        (5, {"kernel_shape": [3]}, set()),  # total 2
    ],
)
def test_same_padding_kinds(length, attrs, kinds):
    node = helper.make_node("MaxPool", ["x"], ["y"], auto_pad="SAME_UPPER", **attrs)
    values = {"x": np.zeros((1, 1, length), np.float32)}
    node_attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert same_padding_kinds(node, node_attrs, values) == kinds
    conv = helper.make_node("Conv", ["x", "w"], ["y"], strides=attrs.get("strides", [1]))
    w = np.zeros((1, 1, attrs["kernel_shape"][0] if "dilations" not in attrs else 3), np.float32)
    assert same_padding_kinds(conv, {"strides": attrs.get("strides", [1])}, {**values, "w": w}) == kinds
    assert same_padding_kinds(node, node_attrs, {}) == set()  # unknown geometry meets nothing


def test_same_padding_kinds_are_validated(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text('[[divergence]]\nname="d"\nsummary="s"\nbackends=["b"]\nevidence="e"\nwhen={ same_padding = ["lopsided"] }\n')
    with pytest.raises(RefquantError, match="same_padding kinds are"):
        load_divergences(path)


def _crop_resize(use_sizes: bool):
    """Resize(tf_crop_and_resize, linear) of a length-8 row, roi [1/4, 3/4], scale 1.5 or sizes 6."""
    init = {"roi": np.float32([0, 0, 0, 0.25, 1, 1, 1, 0.75])}
    if use_sizes:
        init["sizes"] = np.int64([1, 1, 1, 6])
        inputs = {"x": (T.FLOAT, [1, 1, 1, 8]), "roi": init["roi"], "": None, "sizes": init["sizes"]}
    else:
        init["scales"] = np.float32([1, 1, 1, 1.5])
        inputs = {"x": (T.FLOAT, [1, 1, 1, 8]), "roi": init["roi"], "scales": init["scales"]}
    attrs = {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}
    return single_node_model("Resize", inputs, {"y": T.FLOAT}, opset=18, attrs=attrs, initializers=init)


@pytest.mark.parametrize("backend", ["ort-cpu", "onnx-reference"])
def test_tf_crop_and_resize_scales_ignoring_the_roi_is_recognised_and_sizes_agree(backend):
    pytest.importorskip("onnxruntime")
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 1, 8)
    model = _crop_resize(use_sizes=False)
    got = backends.get(backend).run(model, {"x": x})["y"]
    want = _run(model, x)[0]
    assert got.shape == (1, 1, 1, 12) and want.shape == (1, 1, 1, 6)  # floor(8 * 1.5) against floor(8 * 0.5 * 1.5)
    assert _classify(model, {"x": x}, backend, {"y": got})["y"].attributed == {"resize-tf-crop-scales-ignore-roi": 12}
    sized = _crop_resize(use_sizes=True)
    np.testing.assert_array_equal(backends.get(backend).run(sized, {"x": x})["y"], want)
    assert _classify(sized, {"x": x}, backend, {"y": got})["y"].status == "unexplained"


# -- the condition vocabulary of defects -----------------------------------------------------------------------------


_NODE = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
_VALUES = {"x": np.zeros(3, np.float16), "s": np.float16([1.0, 65504.0, 2.0]), "z": np.zeros(3, np.int8),
           "y": np.zeros(3, np.int8)}


@pytest.mark.parametrize(
    "when, meets",
    [
        ({"input_rank": {"0": [1]}}, True), ({"input_rank": {"0": [2, 3]}}, False),
        ({"input_type": {"1": ["float16"]}}, True), ({"input_type": {"1": ["bfloat16"]}}, False),
        ({"input_min_size": {"1": 3}}, True), ({"input_min_size": {"1": 4}}, False),
        ({"input_outside": {"1": [0.5, 1000]}}, True), ({"input_outside": {"1": [1, 65504]}}, False),
        ({"input_equals": {"1": [65504.0]}}, True), ({"input_equals": {"1": [65472.0]}}, False),
        ({"output_type": {"0": ["int8"]}}, True), ({"output_type": {"0": ["uint8"]}}, False),
        ({"input_rank": {"3": [1]}}, False),  # no such input
        ({"input_type": {"1": ["float16"]}, "input_equals": {"1": [3.0]}}, False),  # all conditions must hold
    ],
)
def test_tensor_conditions(when, meets):
    divergence = Divergence("d", "s", ("openvino",), ("QuantizeLinear",), {}, "e", when)
    assert divergence.applies_to("openvino", [_NODE], _VALUES) is meets
    assert not divergence.applies_to("openvino", [_NODE], {})  # unknown tensors meet no tensor condition


def test_tensor_conditions_must_name_indices(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text('[[divergence]]\nname="d"\nsummary="s"\nbackends=["b"]\nevidence="e"\nwhen={ input_rank = [1] }\n')
    with pytest.raises(RefquantError, match="input_rank must map tensor indices"):
        load_divergences(path)


# -- unsupported rules -----------------------------------------------------------------------------------------------


def _refused(backend, model) -> str | None:
    try:
        backend.check_supported(model, tensor_infos(model))
    except UnsupportedOnBackend as exc:
        return exc.message
    return None


def _matmul_integer_with_zero_points(a_shape, b_shape, a_zp=None, b_zp=None):
    """MatMulInteger with the given zero points as initializers ("" for an omitted a_zero_point)."""
    init = {name: np.asarray(v, np.uint8) for name, v in (("a_zp", a_zp), ("b_zp", b_zp)) if v is not None}
    inputs = {"a": (U8, list(a_shape)), "b": (U8, list(b_shape))}
    if a_zp is not None or b_zp is not None:
        inputs["a_zp" if a_zp is not None else ""] = init.get("a_zp")
    if b_zp is not None:
        inputs["b_zp"] = init["b_zp"]
    return single_node_model("MatMulInteger", inputs, {"y": T.INT32}, opset=13, initializers=init)


def test_openvino_refuses_an_omitted_input_before_a_given_one():
    # the documented rule (backends/openvino.py UNSUPPORTED) needs no openvino package: create(), not get()
    openvino_adapter = backends.create("openvino")
    model = _matmul_integer_with_zero_points((2, 3), (3, 2), b_zp=3)
    assert list(model.graph.node[0].input) == ["a", "b", "", "b_zp"]
    assert "NullNode" in _refused(openvino_adapter, model)
    assert _refused(openvino_adapter, _matmul_integer_with_zero_points((2, 3), (3, 2), a_zp=1, b_zp=3)) is None


def test_openvino_refuses_the_omitted_input_for_real(openvino):
    model = _matmul_integer_with_zero_points((2, 3), (3, 2), b_zp=3)
    feeds = {"a": np.full((2, 3), 2, np.uint8), "b": np.ones((3, 2), np.uint8)}
    with pytest.raises(UnsupportedOnBackend, match="NullNode"):
        openvino.run(model, feeds)
    model = _matmul_integer_with_zero_points((2, 3), (3, 2), a_zp=1, b_zp=3)
    assert openvino.run(model, feeds)["y"].tolist() == [[-6, -6], [-6, -6]]


def test_openvino_no_suitable_implementation_is_unsupported(openvino):
    # int8 x, uint8 w, kernel 1
    init = {"xs": np.float32(1), "xz": np.int8(-128), "w": np.zeros((1, 1, 1), np.uint8), "ws": np.float32(1),
            "wz": np.uint8(0), "ys": np.float32(1), "yz": np.uint8(0)}
    model = single_node_model("QLinearConv", {"x": (S8, [1, 1, 1]), **init}, {"y": U8}, opset=13,
                              attrs={"kernel_shape": [1]}, initializers=init)
    with pytest.raises(UnsupportedOnBackend, match="No suitable implementations"):
        openvino.run(model, {"x": np.zeros((1, 1, 1), np.int8)})
    other = openvino._error(RuntimeError("Exception from src/x.cpp:1:\nout of memory"), "run failed")
    assert type(other) is BackendError and other.message == "run failed: out of memory"


def test_openvino_per_channel_fake_quantize_refusal_is_unsupported(openvino):
    x = np.ones((4, 4, 2), ml_dtypes.bfloat16)
    scale = np.array([3.38953e38, 7.01168e37], ml_dtypes.bfloat16)
    model = _quantize(x, scale, np.uint16([65535, 0]), attrs={"axis": 2})
    with pytest.raises(UnsupportedOnBackend, match="doesn't support non per-tensor quantization"):
        openvino.run(model, {"x": x})


def test_onnx_reference_rules_recognise_their_case_and_not_a_neighbour():
    onnx_reference = backends.get("onnx-reference")
    per_row = _matmul_integer_with_zero_points((3, 3), (3, 2), a_zp=[1, 2, 3])
    per_tensor = _matmul_integer_with_zero_points((3, 3), (3, 2), a_zp=[1])
    assert "per-row a_zero_point" in _refused(onnx_reference, per_row)
    assert _refused(onnx_reference, per_tensor) is None
    conv3d = _qlinear_conv_per_channel((1, 2, 3, 3, 3), [1, 1, 1])
    conv2d = _qlinear_conv_per_channel((1, 2, 3, 3), [1, 1])
    assert "three spatial axes" in _refused(onnx_reference, conv3d)
    assert _refused(onnx_reference, conv2d) is None
    conv1d_batch2 = _qlinear_conv_per_channel((2, 3, 4), [1])
    assert "a batch other than 1 and M" in _refused(onnx_reference, conv1d_batch2)
    assert _refused(onnx_reference, _qlinear_conv_per_channel((1, 3, 4), [1])) is None  # the wrong-shape defect
    assert _refused(onnx_reference, _qlinear_conv_per_channel((3, 3, 4), [1])) is None
    same_1d = _max_pool(5, kernel_shape=[2], auto_pad="SAME_UPPER")
    assert "CommonPool" in _refused(onnx_reference, same_1d)
    assert _refused(onnx_reference, _max_pool(5, kernel_shape=[2], strides=[2], auto_pad="SAME_UPPER")) is None
    assert "CommonPool" in _refused(onnx_reference, _max_pool(5, kernel_shape=[2], pads=[1, 0]))  # IndexError
    assert _refused(onnx_reference, _max_pool(5, kernel_shape=[2], pads=[1, 0], ceil_mode=1)) is None  # runs
    assert _refused(onnx_reference, _max_pool(5, kernel_shape=[2], pads=[0, 1])) is None  # runs (a defect)


def test_onnx_reference_fails_where_the_rules_say():
    """Bypassing the rules: onnx.reference crashes, or silently subtracts a per-row zero point per column."""
    from onnx.reference import ReferenceEvaluator

    a = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    b = np.ones((3, 2), np.uint8)
    model = _matmul_integer_with_zero_points((3, 3), (3, 2), a_zp=[1, 2, 3])
    got = ReferenceEvaluator(model).run(None, {"a": a, "b": b})[0]
    assert got[:, 0].tolist() == [0, 9, 18]  # row sums of a - [1, 2, 3] (per column)
    assert refquant.Session(model).run(None, {"a": a, "b": b})[0][:, 0].tolist() == [3, 9, 15]  # per row
    x = np.ones((1, 2, 3, 3, 3), np.uint8)
    with pytest.raises(ValueError):
        ReferenceEvaluator(_qlinear_conv_per_channel(x.shape, [1, 1, 1])).run(None, {"x": x})
    x = np.ones((2, 3, 4), np.uint8)
    with pytest.raises(ValueError, match="broadcast"):
        ReferenceEvaluator(_qlinear_conv_per_channel(x.shape, [1])).run(None, {"x": x})
    with pytest.raises(IndexError):
        ReferenceEvaluator(_max_pool(5, kernel_shape=[2], auto_pad="SAME_UPPER")).run(None, {"x": np.ones((1, 1, 5), np.float32)})


def test_onnxruntime_rules_recognise_their_case_and_not_a_neighbour():
    ort = pytest.importorskip("onnxruntime")
    ort_cpu = backends.get("ort-cpu")
    batched = _matmul_integer_with_zero_points((2, 3), (1, 3, 2), b_zp=[1, 2])
    flat = _matmul_integer_with_zero_points((2, 3), (3, 2), b_zp=[1, 2])
    assert "per-column b_zero_point needs a 2-D b" in _refused(ort_cpu, batched)
    assert _refused(ort_cpu, flat) is None
    session = ort.InferenceSession(batched.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="B zero point is not valid"):
        session.run(None, {"a": np.ones((2, 3), np.uint8), "b": np.ones((1, 3, 2), np.uint8)})
    one_block = _quantize(np.ones(1, np.float32), np.float32([2]), np.int8([0]), attrs={"axis": -1, "block_size": 1})
    blocks = {"axis": -1, "block_size": 1}
    two_blocks = _quantize(np.ones(2, np.float32), np.float32([2, 2]), np.int8([0, 0]), attrs=blocks)
    assert "one-element scale" in _refused(ort_cpu, one_block)
    assert _refused(ort_cpu, two_blocks) is None
    session = ort.InferenceSession(one_block.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="block_size must be 0"):
        session.run(None, {"x": np.ones(1, np.float32)})


# -- the whole profile on drawn models -------------------------------------------------------------------------------


def _assert_explained(backend, case):
    """Every differing element explained; a case the backend refuses is rejected, so a property whose cases
    the backend all refuses fails as Unsatisfiable instead of passing without running anything."""
    try:
        outputs = backend.run(case.model, case.feeds)
    except UnsupportedOnBackend:
        reject()
    for report in classify(case.model, case.feeds, backend.name, outputs):
        assert report.status != "unexplained", report.to_dict()


@given(rqs.quantize_linear_models())
def test_every_openvino_quantize_difference_is_explained(openvino, case):
    _assert_explained(openvino, case)


@given(rqs.dequantize_linear_models())
def test_every_openvino_dequantize_difference_is_explained(openvino, case):
    _assert_explained(openvino, case)


@given(rqs.dynamic_quantize_linear_models())
def test_every_openvino_dynamic_quantize_difference_is_explained(openvino, case):
    _assert_explained(openvino, case)


# -- int32 DequantizeLinear through float32; onnx.reference's bfloat16 QuantizeLinear cast --------------------------


@pytest.mark.parametrize("backend_name", ["ort-cpu", "ort-cpu-opt", "onnx-reference"])
def test_int32_dequantize_reproducer_is_explained_by_float32_first(backend_name):
    """refquant fuzz --seed 23: x = 31843145, scale 10.0. Spec 318431456 (the exact 318431450 rounded once);
    the backends round x to float32 first (31843144) and the product again (318431440 ties to 318431424)."""
    backend = backends.get(backend_name)
    # 2**24 + 1 -> 2**24 in float32, times 10 = 167772160 exactly; spec 167772170 -> 167772176 (spacing 16)
    x = np.array([31843145, 5, 2**24 + 1], np.int32)
    model = _dequantize(x, np.float32(10.0))
    outputs = backend.run(model, {"x": x})
    np.testing.assert_array_equal(outputs["y"], np.array([318431424, 50, 167772160], np.float32))
    (report,) = classify(model, {"x": x}, backend.name, outputs)
    assert report.status == "explained", report.to_dict()
    assert sum(report.explained.values()) == 2  # 5 is exact: only the two beyond 2**24 differ
    only = [d for d in load_divergences() if d.name == "int32-dequantize-float32-first"]
    (report,) = classify(model, {"x": x}, backend.name, outputs, divergences=only)
    assert report.explained == {"int32-dequantize-float32-first": 2}, report.to_dict()


def test_onnx_reference_bfloat16_quantize_cast_is_explained():
    """bfloat16 x and scale (per-axis), as refquant fuzz --seed 24 saved it: x = 22 (bfloat16 0x41B0) with scale
    bits [0x3F80, 0x322C, 0x3F80] and zero points [0, 128, 0]. The middle quotient 22 / 1.0012e-8 = 2.2e9 is
    beyond int32: ml_dtypes' cast gives 0, + 128 = 128 where the spec saturates to 255."""
    onnx_reference = backends.get("onnx-reference")
    x = np.array([0x41B0] * 3, np.uint16).view(ml_dtypes.bfloat16)
    scale = np.array([0x3F80, 0x322C, 0x3F80], np.uint16).view(ml_dtypes.bfloat16)
    model = _quantize(x, scale, np.array([0, 128, 0], np.uint8), attrs={"axis": 0})
    outputs = onnx_reference.run(model, {"x": x})
    np.testing.assert_array_equal(outputs["y"], [22, 128, 22])
    (report,) = classify(model, {"x": x}, onnx_reference.name, outputs)
    assert report.status == "explained", report.to_dict()
    assert report.explained == {"int32-indefinite-cast": 1}


# -- OpenVINO's QLinear lowering, its float32 MatMulInteger and its int8 QDQ GEMM (refquant fuzz --seed 5101) --------


def _qlinear_conv_tie():
    """QLinearConv u8: x [1, 1], w [128, 127] with w_zp 128 (centered [0, -1]), y_scale 2, y_zp 255, SAME_UPPER,
    kernel 2, stride 2: one output, acc = -1."""
    init = {"xs": np.float32(1), "xz": np.uint8(0), "w": np.array([[[128, 127]]], np.uint8), "ws": np.float32(1),
            "wz": np.uint8(128), "ys": np.float32(2), "yz": np.uint8(255)}
    x = np.array([[[1, 1]]], np.uint8)
    inputs = {"x": x, "xs": init["xs"], "xz": init["xz"], "w": init["w"], "ws": init["ws"], "wz": init["wz"],
              "ys": init["ys"], "yz": init["yz"]}
    attrs = {"auto_pad": "SAME_UPPER", "kernel_shape": [2], "strides": [2]}
    return single_node_model("QLinearConv", inputs, {"y": U8}, opset=10, attrs=attrs, initializers=init), x


def _qlinear_matmul_float16(y_scale):
    """QLinearMatMul-21, float16 scales 100 and 10, a = 0 (1x1), b = [0, 0], zero points 0, y_zp 128."""
    init = {"as": np.float16(100), "az": np.uint8(0), "bs": np.float16(10), "bz": np.uint8(0),
            "ys": np.float16(y_scale), "yz": np.uint8(128)}
    a, b = np.zeros((1, 1), np.uint8), np.zeros((1, 2), np.uint8)
    inputs = {"a": a, "as": init["as"], "az": init["az"], "b": b, "bs": init["bs"], "bz": init["bz"],
              "ys": init["ys"], "yz": init["yz"]}
    return single_node_model("QLinearMatMul", inputs, {"y": U8}, opset=21, initializers=init), {"a": a, "b": b}


def test_qlinear_fake_quantize_golden_and_openvino(openvino):
    """Hand: il = 2 * (0 - 255) = -510, ih = 0, isc = 255 / 510 = 0.5, ish = 510 * 255 / 510 = 255;
    fma(-1, 0.5, 255) = 254.5 rounds (half to even) to 254. The spec: round(-0.5) = -0, + 255 = 255."""
    model, x = _qlinear_conv_tie()
    assert _run(model, x)[0].ravel().tolist() == [255]
    assert _run(model, x, "openvino")[0].ravel().tolist() == [254]
    got = openvino.run(model, {"x": x})["y"]
    assert got.ravel().tolist() == [254]  # measured: openvino 2026.4 CPU
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.explained == {"openvino-qlinear-fake-quantize": 1} and report.unexplained == 0
    near = np.full_like(got, 253)
    assert _classify(model, {"x": x}, "openvino", {"y": near})["y"].unexplained == 1


def test_qlinear_fake_quantize_float16_range_overflow_gives_qmin(openvino):
    """y_scale 1000 (float16): il = 1000 * (0 - 128) = -128000 is -inf in float16 (max 65504), so isc = 0 and
    ish = NaN: every element qmin = 0 (measured), where the spec gives 0 * (100 * 10 / 1000) + 128 = 128.
    Near miss: y_scale 500 keeps the range finite (-64000, 63500): isc = 255 / 127500 = 0.002,
    ish = 64000 * 255 / 127500 = 128, so y = 128 as in the spec."""
    model, feeds = _qlinear_matmul_float16(1000)
    session = refquant.Session(model, profile="openvino")
    assert session.run(None, feeds)[0].tolist() == [[0, 0]]
    assert refquant.Session(model).run(None, feeds)[0].tolist() == [[128, 128]]
    got = openvino.run(model, feeds)["y"]
    assert got.tolist() == [[0, 0]]
    report = _classify(model, feeds, "openvino", {"y": got})["y"]
    assert report.explained == {"openvino-qlinear-fake-quantize": 2}
    model, feeds = _qlinear_matmul_float16(500)
    assert refquant.Session(model, profile="openvino").run(None, feeds)[0].tolist() == [[128, 128]]
    assert openvino.run(model, feeds)["y"].tolist() == [[128, 128]]


def test_qlinear_fake_quantize_leaves_the_spec_where_float32_accumulation_may_round():
    """a_scale 0.1: the dequantized a values carry bits down to 2**-27, so 3 * max|a| * max|b| exceeds
    2**24 times the smallest bit weight: the emulation is not applied (None) and the kernel keeps the spec."""
    from refquant.ops import qlinear_lowered

    a = np.array([[200, 3, 7]], np.uint8)
    b = np.array([[1], [2], [3]], np.uint8)
    qt = qtype(U8)
    args = (np.float32(0.1), np.uint8(5), b, np.float32(1), np.uint8(1), np.float32(0.2), np.uint8(9), qt)
    assert qlinear_lowered.lowered_matmul(a, *args) is None
    # scale 0.5: every value a multiple of 0.5, 3 * 195 * 0.5 * 2 far below 2**24 * 0.5: applied
    exact = qlinear_lowered.lowered_matmul(a, np.float32(0.5), np.uint8(5), b, np.float32(1), np.uint8(1),
                                           np.float32(0.25), np.uint8(9), qt)
    # (195 * 0 + (-2) * 1 + 2 * 2) * 0.5 = 1; range [-2.25, 61.5], isc = 255 / 63.75 = 4, ish = 9: 4 + 9 = 13
    assert exact.tolist() == [[13]]


def _matmul_integer_model(a, b):
    return single_node_model("MatMulInteger", {"a": a, "b": b}, {"y": T.INT32}, opset=10)


def test_matmul_integer_float32_accumulation_is_attributed_only_beyond_2_24(openvino):
    """K = 33025, a = b = 255: exact 33025 * 65025 = 2147450625; OpenVINO sums in float32: 2147420032
    (measured). K = 258: 258 * 65025 = 16776450 < 2**24, every partial sum an exact float32: no defect."""
    a, b = np.full((1, 33025), 255, np.uint8), np.full((33025, 1), 255, np.uint8)
    model = _matmul_integer_model(a, b)
    got = openvino.run(model, {"a": a, "b": b})["y"]
    assert got.tolist() == [[2147420032]]
    report = _classify(model, {"a": a, "b": b}, "openvino", {"y": got})["y"]
    assert report.attributed == {"openvino-matmulinteger-float32-accumulation": 1}
    a, b = np.full((1, 258), 255, np.uint8), np.full((258, 1), 255, np.uint8)
    model = _matmul_integer_model(a, b)
    assert openvino.run(model, {"a": a, "b": b})["y"].tolist() == [[16776450]]
    report = _classify(model, {"a": a, "b": b}, "openvino", {"y": np.array([[16776449]], np.int32)})["y"]
    assert report.unexplained == 1 and not report.attributed


def _qdq_matmul_u8s8(w_value):
    """DequantizeLinear(x_q uint8 [1, 6], scale 1, zp 128), DequantizeLinear(w int8 [6, 1], scale 1, zp 0) ->
    MatMul -> QuantizeLinear(scale 1, zp 0, uint8)."""
    nodes = [
        helper.make_node("DequantizeLinear", ["x_q", "xs", "xz"], ["x"]),
        helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["z"]),
        helper.make_node("QuantizeLinear", ["z", "os", "oz"], ["z_q"]),
    ]
    init = {"xs": np.float32(1), "xz": np.uint8(128), "w_q": np.full((6, 1), w_value, np.int8), "ws": np.float32(1),
            "wz": np.int8(0), "os": np.float32(1), "oz": np.uint8(0)}
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x_q", U8, [1, 6])],
                              [helper.make_tensor_value_info("z_q", U8, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_qdq_u8s8_pair_saturation_is_attributed_and_unsaturated_pairs_are_not(openvino):
    """x_q = [0, 154, 154, 154, 154, 154], w = 107: exact (x - 128) . w = -128 * 107 + 5 * 26 * 107 = 214.
    The stored bytes in adjacent pairs: 0 + 16478, 32956 -> 32767, 32956 -> 32767: 82012, less the
    compensation 128 * 642 = 82176: -164 -> 0 (what OpenVINO gives on AVX2). w = 100: pairs of 30800 fit
    int16, so the condition does not hold."""
    x = np.array([[0, 154, 154, 154, 154, 154]], np.uint8)
    model = _qdq_matmul_u8s8(107)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[214]]
    outputs = {"z_q": np.array([[0]], np.uint8)}
    report = _classify(model, {"x_q": x}, "openvino", outputs)["z_q"]
    assert report.attributed == {"openvino-qdq-u8s8-pair-saturation": 1}
    from refquant import host

    if host.u8s8_pairs_saturate():  # measured on an AVX2 host; VNNI hosts run the exact int8 dot product
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == [[0]]
    model = _qdq_matmul_u8s8(100)  # exact: -12800 + 5 * 26 * 100 = 200
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[200]]
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": np.array([[0]], np.uint8)})["z_q"]
    assert report.unexplained == 1 and not report.attributed




def _qdq_graph(op, x, x_zero_point, w, w_zero_point, out_scale, out_zero_point, *, w_scale=1.0, w_axis=None, attrs=None):
    """DequantizeLinear(x_q, scale 1) and DequantizeLinear(w_q) -> ``op`` -> QuantizeLinear(out_scale), opset 19."""
    dq_w = {} if w_axis is None else {"axis": w_axis}
    nodes = [
        helper.make_node("DequantizeLinear", ["x_q", "xs", "xz"], ["x"]),
        helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["w"], **dq_w),
        helper.make_node(op, ["x", "w"], ["z"], **(attrs or {})),
        helper.make_node("QuantizeLinear", ["z", "os", "oz"], ["z_q"]),
    ]
    init = {"xs": np.float32(1), "xz": x_zero_point, "w_q": w, "ws": np.asarray(w_scale, np.float32),
            "wz": w_zero_point, "os": np.float32(out_scale), "oz": out_zero_point}
    out_type = helper.np_dtype_to_tensor_dtype(np.asarray(out_zero_point).dtype)
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x_q", helper.np_dtype_to_tensor_dtype(x.dtype), list(x.shape))],
                              [helper.make_tensor_value_info("z_q", out_type, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model


def _avx2_int8():
    from refquant import host

    return host.u8s8_pairs_saturate()  # an AVX2 host without VNNI: the host these were measured on


def test_qdq_int8_x_pair_saturation_is_attributed(openvino):
    """refquant fuzz --seed 8002: int8 x_q 63 (zp -128), w 86 [6, 5], w scales [1, 1, 1, 1, 1000], out_scale 1000,
    zp -128. Exact: 6 * 191 * 86 = 98556 -> rint(98.556) - 128 = -29. OpenVINO shifts x to x + 128 = 191: pairs
    191 * 86 * 2 = 32852 -> 32767, 3 * 32767 = 98301 -> -30. w 85: pairs 32470 fit int16 (no condition), exact
    6 * 191 * 85 = 97410 -> -31; a planted -32 stays unexplained."""
    x = np.full((1, 6), 63, np.int8)
    scales = np.float32([1, 1, 1, 1, 1000])
    model = _qdq_graph("MatMul", x, np.int8(-128), np.full((6, 5), 86, np.int8), np.zeros(5, np.int8), 1000,
                       np.int8(-128), w_scale=scales, w_axis=1)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[-29, -29, -29, -29, 127]]
    got = np.array([[-30, -30, -30, -30, 127]], np.int8)
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == got.tolist()
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": got})["z_q"]
    assert report.attributed == {"openvino-qdq-u8s8-pair-saturation": 4} and not report.unexplained
    model = _qdq_graph("MatMul", x, np.int8(-128), np.full((6, 5), 85, np.int8), np.zeros(5, np.int8), 1000,
                       np.int8(-128), w_scale=scales, w_axis=1)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[-31, -31, -31, -31, 127]]
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": np.array([[-32, -31, -31, -31, 127]], np.int8)})["z_q"]
    assert report.unexplained == 1 and not report.attributed


def test_int8_conv_halved_weights_are_attributed_and_even_weights_are_not(openvino):
    """refquant fuzz --seed 8004: QDQ Conv, int8 x [1, 1, 1] (zp 0), w [1, 1], dilation 2, SAME_UPPER (pads 1, 1),
    out zp -128: exact sums [1, 2, 1] -> [-127, -126, -127]; OpenVINO's s8 x s8 kernel uses 2 * rint(1 / 2) = 0 for
    each weight: [-128, -128, -128]. --seed 8003: QLinearConv x 1, w 1 (group 2), y_zp -128: -128 for -127.
    w [2, 2] (even, halved exactly): no condition, a planted error stays unexplained."""
    x = np.ones((1, 1, 3), np.int8)
    attrs = {"auto_pad": "SAME_UPPER", "dilations": [2], "kernel_shape": [2]}
    model = _qdq_graph("Conv", x, np.int8(0), np.ones((1, 1, 2), np.int8), np.int8(0), 1, np.int8(-128), attrs=attrs)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[[-127, -126, -127]]]
    got = np.full((1, 1, 3), -128, np.int8)
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == got.tolist()
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": got})["z_q"]
    assert report.attributed == {"openvino-int8-conv-halved-weights": 3} and not report.unexplained
    init = {"xs": np.float32(1), "xz": np.int8(0), "w": np.ones((2, 1, 1), np.int8), "ws": np.float32(1),
            "wz": np.int8(0), "ys": np.float32(1), "yz": np.int8(-128)}
    xq = np.ones((1, 2, 1), np.int8)
    qconv = single_node_model("QLinearConv", {"x": xq, **init}, {"y": S8}, opset=10,
                              attrs={"auto_pad": "SAME_UPPER", "group": 2, "kernel_shape": [1]}, initializers=init)
    assert refquant.Session(qconv).run(None, {"x": xq})[0].tolist() == [[[-127], [-127]]]
    report = _classify(qconv, {"x": xq}, "openvino", {"y": np.full((1, 2, 1), -128, np.int8)})["y"]
    assert report.attributed == {"openvino-int8-conv-halved-weights": 2}
    model = _qdq_graph("Conv", x, np.int8(0), np.full((1, 1, 2), 2, np.int8), np.int8(0), 1, np.int8(-128), attrs=attrs)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[[-126, -124, -126]]]
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == [[[-126, -124, -126]]]
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": np.array([[[-127, -124, -126]]], np.int8)})["z_q"]
    assert report.unexplained == 1 and not report.attributed


def test_int8_gemm_conv_pair_saturation_is_attributed_and_a_pair_inside_int16_is_not(openvino):
    """refquant fuzz --seed 1203002: QDQ Conv, group 2 with two input channels per group (OpenVINO's GEMM int8
    kernel), uint8 x 217 (zp 0), int8 w 76 (zp 0), out_scale 192: exact 217 * 76 * 2 = 32984 -> rint(171.79) = 172;
    the pair saturates to 32767 -> rint(170.66) = 171. w 75: 32550 fits int16, no condition, and a planted 171
    stays unexplained."""
    x = np.full((1, 4, 1), 217, np.uint8)
    attrs = {"group": 2, "kernel_shape": [1]}
    model = _qdq_graph("Conv", x, np.uint8(0), np.full((2, 2, 1), 76, np.int8), np.int8(0), 192, np.uint8(0), attrs=attrs)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[[172], [172]]]
    got = np.full((1, 2, 1), 171, np.uint8)
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == got.tolist()
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": got})["z_q"]
    assert report.attributed == {"openvino-int8-conv-pair-saturation": 2} and not report.unexplained
    model = _qdq_graph("Conv", x, np.uint8(0), np.full((2, 2, 1), 75, np.int8), np.int8(0), 192, np.uint8(0), attrs=attrs)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[[170], [170]]]  # 32550 / 192 = 169.53
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == [[[170], [170]]]
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": np.array([[[171], [170]]], np.uint8)})["z_q"]
    assert report.unexplained == 1 and not report.attributed


def test_ungrouped_int8_conv_pair_saturation_is_attributed(openvino):
    """refquant fuzz --seed 1203003, reduced: ungrouped QDQ Conv (jit_avx2_I8), x 254 (zp 255), w -65, two channels,
    1x1 kernel: exact (-1)(-65) * 2 = 130; the stored bytes pair 254 * -65 * 2 = -33020 -> -32768, plus the
    zero-point term 255 * 130: 382 -> 255. w -64: -32512 fits int16, no condition, a planted error stays unexplained."""
    x = np.full((1, 2, 1, 1), 254, np.uint8)
    model = _qdq_graph("Conv", x, np.uint8(255), np.full((1, 2, 1, 1), -65, np.int8), np.int8(0), 1, np.uint8(0))
    assert refquant.Session(model).run(None, {"x_q": x})[0].item() == 130
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].item() == 255
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": np.full((1, 1, 1, 1), 255, np.uint8)})["z_q"]
    assert report.attributed == {"openvino-int8-conv-pair-saturation": 1}
    model = _qdq_graph("Conv", x, np.uint8(255), np.full((1, 2, 1, 1), -64, np.int8), np.int8(0), 1, np.uint8(0))
    assert refquant.Session(model).run(None, {"x_q": x})[0].item() == 128
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].item() == 128
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": np.full((1, 1, 1, 1), 129, np.uint8)})["z_q"]
    assert report.unexplained == 1 and not report.attributed


def test_int8_gemm_uint8_output_wrap_is_attributed_below_32768_not(openvino):
    """refquant fuzz --seed 8003: QDQ Conv, group 2, dilation 2, uint8 x 0 (zp 255), w -65, scales 1: each output
    2 * 255 * 65 = 33150 -> 255 (spec); OpenVINO's GEMM kernel packs 33150 through int16: 0. w -64: 32640, below
    32768, OpenVINO gives 255 and a planted 0 stays unexplained."""
    x = np.zeros((1, 4, 1), np.uint8)
    attrs = {"auto_pad": "SAME_UPPER", "dilations": [2], "group": 2, "kernel_shape": [1]}
    model = _qdq_graph("Conv", x, np.uint8(255), np.full((2, 2, 1), -65, np.int8), np.int8(0), 1, np.uint8(0), attrs=attrs)
    assert refquant.Session(model).run(None, {"x_q": x})[0].tolist() == [[[255], [255]]]
    got = np.zeros((1, 2, 1), np.uint8)
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == got.tolist()
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": got})["z_q"]
    assert report.attributed == {"openvino-int8-gemm-output-wrap": 2} and not report.unexplained
    model = _qdq_graph("Conv", x, np.uint8(255), np.full((2, 2, 1), -64, np.int8), np.int8(0), 1, np.uint8(0), attrs=attrs)
    if _avx2_int8():
        assert openvino.run(model, {"x_q": x})["z_q"].tolist() == [[[255], [255]]]
    report = _classify(model, {"x_q": x}, "openvino", {"z_q": np.array([[[0], [255]]], np.uint8)})["z_q"]
    assert report.unexplained == 1 and not report.attributed


def test_int8_gemm_conv3d_padding_is_attributed_and_unpadded_is_not(openvino):
    """refquant fuzz --seed 8005: QLinearConv, group 2, x [1, 2, 1, 1, 2] of 0 (zp 128), w -1 [4, 1, 1, 1, 2],
    SAME_UPPER (one pad at the end of the last axis), scales 1: the last output has one tap, (0 - 128) * -1 = 128;
    OpenVINO counts the padded tap as the byte 0 as well: 256 -> 255. With VALID padding (no pad) there is no
    condition, and a planted error stays unexplained."""
    init = {"xs": np.float32(1), "xz": np.uint8(128), "w": np.full((4, 1, 1, 1, 2), -1, np.int8), "ws": np.float32(1),
            "wz": np.int8(0), "ys": np.float32(1), "yz": np.uint8(0)}
    x = np.zeros((1, 2, 1, 1, 2), np.uint8)
    attrs = {"auto_pad": "SAME_UPPER", "group": 2, "kernel_shape": [1, 1, 2], "strides": [2, 1, 1]}
    model = single_node_model("QLinearConv", {"x": x, **init}, {"y": U8}, opset=10, attrs=attrs, initializers=init)
    assert refquant.Session(model).run(None, {"x": x})[0].reshape(4, 2).tolist() == [[255, 128]] * 4
    got = np.full((1, 4, 1, 1, 2), 255, np.uint8)
    if _avx2_int8():
        assert openvino.run(model, {"x": x})["y"].tolist() == got.tolist()
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.attributed == {"openvino-int8-gemm-conv3d-padding": 4} and not report.unexplained
    attrs = {"auto_pad": "VALID", "group": 2, "kernel_shape": [1, 1, 2], "strides": [2, 1, 1]}
    model = single_node_model("QLinearConv", {"x": x, **init}, {"y": U8}, opset=10, attrs=attrs, initializers=init)
    assert refquant.Session(model).run(None, {"x": x})[0].ravel().tolist() == [255] * 4
    report = _classify(model, {"x": x}, "openvino", {"y": np.array([[[[[254]]], [[[255]]], [[[255]]], [[[255]]]]], np.uint8)})["y"]
    assert report.unexplained == 1 and not report.attributed

# -- OpenVINO QLinear: the bias, inexact float32 accumulations, bfloat16 scales (refquant fuzz --seed 8001, 8002) --


def _qlinear_conv_bias(bias, x_scale=1.0, w_scale=1.0, y_scale=4.0, y_zero_point=1, x=0, w=0):
    """QLinearConv u8 (refquant fuzz --seed 8001): x [1, 1, 1], w [1, 1, 1], zero points 0, dilations [2], B [bias]."""
    init = {"xs": np.float32(x_scale), "xz": np.uint8(0), "w": np.full((1, 1, 1), w, np.uint8),
            "ws": np.float32(w_scale), "wz": np.uint8(0), "ys": np.float32(y_scale), "yz": np.uint8(y_zero_point),
            "B": np.int32([bias])}
    xv = np.full((1, 1, 1), x, np.uint8)
    attrs = {"dilations": [2], "kernel_shape": [1]}
    return single_node_model("QLinearConv", {"x": xv, **init}, {"y": U8}, opset=10, attrs=attrs, initializers=init), xv


def test_qlinear_conv_bias_is_added_after_the_accumulation_and_explained(openvino):
    """Hand: s = 1, B dequantized 2 (folded: fl(2 * fl(1 / 1)) = 2); v = 0 + 2. Range [-4, 1016], isc = 0.25,
    ish = 1: fma(2, 0.25, 1) = 1.5 -> 2 (the zero point added before rounding). Spec: round(0.5) + 1 = 1."""
    model, x = _qlinear_conv_bias(2)
    assert _run(model, x)[0].ravel().tolist() == [1]
    assert _run(model, x, "openvino")[0].ravel().tolist() == [2]
    got = openvino.run(model, {"x": x})["y"]
    assert got.ravel().tolist() == [2]  # measured: openvino 2026.4 CPU
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.explained == {"openvino-qlinear-fake-quantize": 1} and report.unexplained == 0
    assert _classify(model, {"x": x}, "openvino", {"y": np.full_like(got, 3)})["y"].unexplained == 1


def test_qlinear_conv_bias_folding_that_rounds_is_attributed(openvino):
    """Zero operand zero points, x_scale 3, w_scale 5 (s = 15), y_scale 30, y_zp 135, x 3, w 1, B -198. Folded into
    the accumulator's units the bias is fl(fl(-198 * 15) * fl(1 / 15)) = -198.00002 (measured with 3 output
    channels: 37, from fma(-195.00002, 0.5, 135) = 37.49999) or fl(-2970) / 15 = -198 (one channel, measured: 38,
    from the tie 37.5): the two disagree, so the emulation is not applied and the defect attributes the element."""
    model, x = _qlinear_conv_bias(-198, x_scale=3, w_scale=5, y_scale=30, y_zero_point=135, x=3, w=1)
    assert np.float32(np.float32(-198 * 15) * (np.float32(1) / np.float32(15))) < -198
    assert _run(model, x)[0].ravel().tolist() == [37]  # round(-97.5) + 135
    assert _run(model, x, "openvino")[0].ravel().tolist() == [37]  # not applied: the spec's value
    got = openvino.run(model, {"x": x})["y"]
    assert got.ravel().tolist() == [38]
    report = _classify(model, {"x": x}, "openvino", {"y": got})["y"]
    assert report.attributed == {"openvino-qlinear-float32-accumulation": 1}


def test_qlinear_bias_that_rounds_is_left_to_the_defect():
    """B * s not a float32 (s = fl(0.1) * 1): the emulation is not applied and the condition holds;
    B * s exact (s = 0.5) it is applied and the condition does not hold."""
    from refquant.ops import qlinear_lowered

    rounded, _ = _qlinear_conv_bias(7, x_scale=0.1)
    exact, _ = _qlinear_conv_bias(7, x_scale=0.5)
    for model, inexact in ((rounded, True), (exact, False)):
        inputs = [numpy_helper.to_array(t) for t in model.graph.initializer]
        values = dict(zip([t.name for t in model.graph.initializer], inputs), x=np.zeros((1, 1, 1), np.uint8))
        arrays = [values[name] for name in model.graph.node[0].input]
        assert qlinear_lowered.float32_accumulation_inexact("QLinearConv", arrays) is inexact


def _qlinear_matmul_8002(b_scale):
    """refquant fuzz --seed 8002: QLinearMatMul u8, a [17, 17, 17] (scale 1, zp 13), b 12 (3 x 1, zp 0), both fed,
    y_scale 32 / 255, y_zp 0."""
    init = {"as": np.float32(1), "az": np.uint8(13), "bs": np.float32(b_scale), "bz": np.uint8(0),
            "ys": np.float32(32 / 255), "yz": np.uint8(0)}
    a, b = np.full((1, 3), 17, np.uint8), np.full((3, 1), 12, np.uint8)
    inputs = {"a": a, "as": init["as"], "az": init["az"], "b": b, "bs": init["bs"], "bz": init["bz"],
              "ys": init["ys"], "yz": init["yz"]}
    model = single_node_model("QLinearMatMul", inputs, {"y": U8}, opset=10, initializers=init)
    return model, {"a": a, "b": b}


def test_qlinear_float32_accumulation_defect_is_attributed_and_an_exact_one_is_not(openvino):
    """b_scale 1/255: 3 * 4 * 12 / 255 / (32 / 255) = 4.5 in the reals; the float32 b = fl(12 / 255) carries bits
    down to 2**-28, the accumulation is not exact in any order: OpenVINO 5 (measured), spec 4: attributed.
    A planted error next to b_scale 1/256 (an exact accumulation, emulated) stays unexplained."""
    model, feeds = _qlinear_matmul_8002(1 / 255)
    assert refquant.Session(model).run(None, feeds)[0].tolist() == [[4]]
    got = openvino.run(model, feeds)["y"]
    assert got.tolist() == [[5]]
    report = _classify(model, feeds, "openvino", {"y": got})["y"]
    assert report.attributed == {"openvino-qlinear-float32-accumulation": 1} and report.unexplained == 0
    model, feeds = _qlinear_matmul_8002(1 / 256)
    want = refquant.Session(model, profile="openvino").run(None, feeds)[0]
    assert_bit_exact(openvino.run(model, feeds)["y"], want)
    report = _classify(model, feeds, "openvino", {"y": want + 1})["y"]
    assert report.unexplained == 1 and not report.attributed


def _qlinear_matmul_bfloat16(scale_type):
    """refquant fuzz --seed 8001: QLinearMatMul-21, scales 1, 1, 2, a 0 (zp 255), b 1 (zp 0), y_zp 255."""
    init = {"as": scale_type(1), "az": np.uint8(255), "b": np.ones((1, 1), np.uint8), "bs": scale_type(1),
            "bz": np.uint8(0), "ys": scale_type(2), "yz": np.uint8(255)}
    a = np.zeros((1, 1), np.uint8)
    return single_node_model("QLinearMatMul", {"a": a, **init}, {"y": U8}, opset=21, initializers=init), {"a": a}


def test_float8_qlinear_matmul_is_lowered_like_the_integer_one(openvino):
    """refquant fuzz --seed 1203003: float8e4m3fn a = 0xD9 = -(1 + 1/8) * 2**4 = -18 (zero point 0), int8 b 0 (zero
    point -128), scales 1, 1, 512, uint8 y_zp 5: acc -18 * 128 = -2304, -2304 / 512 = -4.5; the spec rounds first,
    -4 + 5 = 1; OpenVINO's FakeQuantize adds the zero point first, rint(0.5) = 0. float8 operands dequantize exactly
    to float32, so the lowering applies (93 of 93 random float8 QLinearMatMul models matched). A planted 2 stays
    unexplained."""
    a = np.array([[0xD9]], np.uint8).view(ml_dtypes.float8_e4m3fn)
    init = {"as": np.float32(1), "az": np.zeros((), ml_dtypes.float8_e4m3fn), "b": np.zeros((1, 1), np.int8),
            "bs": np.float32(1), "bz": np.int8(-128), "ys": np.float32(512), "yz": np.uint8(5)}
    model = single_node_model("QLinearMatMul", {"a": a, **init}, {"y": T.UINT8}, opset=21, initializers=init)
    assert float(a.item()) == -18.0 and refquant.Session(model).run(None, {"a": a})[0].item() == 1
    assert refquant.Session(model, profile="openvino").run(None, {"a": a})[0].item() == 0
    if _avx2_int8():
        assert openvino.run(model, {"a": a})["y"].item() == 0
    assert _classify(model, {"a": a}, "openvino", {"y": np.array([[0]], np.uint8)})["y"].status == "explained"
    assert _classify(model, {"a": a}, "openvino", {"y": np.array([[2]], np.uint8)})["y"].status == "unexplained"


def test_qlinear_matmul_bfloat16_scales_defect_is_attributed_and_float32_scales_are_not(openvino):
    """v = -255, range [-510, 0]: fma(-255, 0.5, 255) = 127.5 -> 128 on OpenVINO (measured); spec
    round(-127.5) + 255 = 127. float32 scales: the emulation gives 128 (explained), a planted 126 is unexplained."""
    model, feeds = _qlinear_matmul_bfloat16(ml_dtypes.bfloat16)
    assert refquant.Session(model).run(None, feeds)[0].tolist() == [[127]]
    got = openvino.run(model, feeds)["y"]
    assert got.tolist() == [[128]]
    report = _classify(model, feeds, "openvino", {"y": got})["y"]
    assert report.attributed == {"openvino-qlinearmatmul-bfloat16-scales": 1}
    model, feeds = _qlinear_matmul_bfloat16(np.float32)
    assert refquant.Session(model, profile="openvino").run(None, feeds)[0].tolist() == [[128]]
    report = _classify(model, feeds, "openvino", {"y": np.array([[126]], np.uint8)})["y"]
    assert report.unexplained == 1 and not report.attributed
