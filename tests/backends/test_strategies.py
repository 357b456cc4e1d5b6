"""refquant.backends.strategies: valid models, values on the rounding decisions, parameters in range."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from onnx import TensorProto as T
from onnx import defs

import refquant
from refquant.backends import strategies as rqs
from refquant.dtypes import qtype

MODEL_STRATEGIES = {
    "quantize_linear": rqs.quantize_linear_models(),
    "quantize_linear_opset13": rqs.quantize_linear_models(opset=13),
    "quantize_linear_opset25": rqs.quantize_linear_models(opset=25),
    "dequantize_linear": rqs.dequantize_linear_models(),
    "dequantize_linear_opset10": rqs.dequantize_linear_models(opset=10),
    "dynamic_quantize_linear": rqs.dynamic_quantize_linear_models(),
    "qlinear_conv": rqs.qlinear_conv_models(),
    "qlinear_matmul": rqs.qlinear_matmul_models(),
    "matmul_integer": rqs.matmul_integer_models(),
    "conv_integer": rqs.conv_integer_models(),
    "qdq": rqs.qdq_models(),
}


@pytest.mark.parametrize("name", sorted(MODEL_STRATEGIES))
def test_models_are_valid_and_run_on_refquant(name):
    @given(MODEL_STRATEGIES[name])
    def check(case):
        onnx.checker.check_model(case.model, full_check=True)
        graph_inputs = {i.name for i in case.model.graph.input}
        assert set(case.feeds) == graph_inputs
        outputs = refquant.Session(case.model).run(None, case.feeds)
        assert len(outputs) == len(case.model.graph.output)

    check()


@given(rqs.qdq_models(ops=["Conv"], flavors=["U8S8"], per_channel=True))
def test_qdq_options_are_honoured(case):
    ops = [n.op_type for n in case.model.graph.node]
    assert "Conv" in ops and ops[-1] == "QuantizeLinear"
    weights = {t.name: t for t in case.model.graph.initializer}
    assert weights["w_q"].data_type == T.INT8 and case.feeds["x_q"].dtype == np.uint8
    assert len(weights["w_scale"].dims) == 1, "per-channel weight scale"


@given(rqs.conv_geometries(spatial_ranks=(3,), depthwise=True))
def test_depthwise_geometry(geometry):
    group = geometry.attrs.get("group", 1)
    assert len(geometry.x_shape) == 5 and geometry.w_shape[1] == 1 and geometry.x_shape[1] == group


def test_opset_too_low_is_an_invalid_argument():
    @given(rqs.dynamic_quantize_linear_models(opset=10))
    def draw(case):
        pass

    with pytest.raises(InvalidArgument, match="DynamicQuantizeLinear needs opset >= 11"):
        draw()


@pytest.mark.parametrize("opset", [10, 19, 21, 23, 25])
def test_quantized_types_follow_the_schema(opset):
    schema = defs.get_schema("QuantizeLinear", opset, "")
    (output_types,) = [
        c.allowed_type_strs for c in schema.type_constraints if c.type_param_str == schema.outputs[0].type_str
    ]

    @given(rqs.quantized_types(opset))
    def check(element_type):
        assert f"tensor({T.DataType.Name(element_type).lower()})" in output_types

    check()


@given(
    st.sampled_from([np.float32, np.float16, ml_dtypes.bfloat16]).flatmap(
        lambda d: st.tuples(st.just(d), rqs.scales(d))
    )
)
def test_scales_are_positive_finite_values_of_their_type(dtype_and_scale):
    dtype, scale = dtype_and_scale
    assert np.asarray(scale).dtype == np.dtype(dtype) and np.isfinite(scale) and scale > 0


@given(
    st.sampled_from([T.UINT8, T.INT8, T.INT4, T.UINT16, T.FLOAT8E4M3FN]).flatmap(
        lambda t: st.tuples(st.just(t), rqs.zero_points(t))
    )
)
def test_zero_points_lie_in_their_type(type_and_zero_point):
    element_type, zero_point = type_and_zero_point
    qt = qtype(element_type)
    assert np.asarray(zero_point).dtype == qt.dtype and qt.qmin <= float(zero_point) <= qt.qmax


def test_tie_tensors_hit_half_way_points():
    """Most x / scale land exactly on k + 0.5 (computed in float32), including with decimal scales."""
    fractions = []

    @given(
        rqs.scales(np.float32, min_value=1e-3, max_value=10).flatmap(
            lambda s: st.tuples(st.just(s), rqs.tie_tensors((64,), s, np.uint8(3), T.UINT8))
        )
    )
    def collect(scale_and_x):
        scale, x = scale_and_x
        quotient = (x / scale).astype(np.float64)
        fractions.append(np.mean(quotient - np.floor(quotient) == 0.5))

    collect()
    assert np.mean(fractions) > 0.4


def test_requantization_ties_are_exact_or_float32_only_with_odd_zero_points():
    """QLinearMatMul's ties (values="ties"): real = acc * a_scale * b_scale / y_scale lands on k + 1/2
    exactly (as a rational, so in float64 too) in some cases, and only after float32 rounding in others,
    and y's zero point is odd, so adding it before or after rounding the tie differs."""
    from fractions import Fraction

    exact_ties, float32_only_ties = [], []

    @given(rqs.qlinear_matmul_models(13, values="ties"))
    def collect(case):
        params = {i.name: onnx.numpy_helper.to_array(i) for i in case.model.graph.initializer}
        a = case.feeds["a"].astype(np.int64) - int(params["a_zero_point"])
        b = case.feeds["b"].astype(np.int64) - int(params["b_zero_point"])
        assert int(params["y_zero_point"]) % 2 == 1
        multiplier = Fraction(float(params["a_scale"])) * Fraction(float(params["b_scale"])) / Fraction(
            float(params["y_scale"])
        )
        multiplier32 = np.float32(params["a_scale"]) * np.float32(params["b_scale"]) / np.float32(params["y_scale"])
        for acc in np.atleast_1d(np.matmul(a, b)).ravel().tolist():
            real = acc * multiplier
            real32 = float(np.float32(acc) * multiplier32)
            exact_ties.append(real.denominator == 2)
            float32_only_ties.append(real.denominator != 2 and real32 % 1 == 0.5)

    collect()
    assert sum(exact_ties) > 0 and sum(float32_only_ties) > 0


def test_decimal_scale_ties_exist_only_in_float32():
    """0.25 / float32(0.1) is 2.5 in float32 but 2.4999999627 exactly: tie_tensors finds such x."""
    scale = np.float32(0.1)
    float32_only = []

    @given(rqs.tie_tensors((64,), scale, None, T.UINT8))
    def collect(x):
        quotient32 = (x / scale).astype(np.float64)
        exact = x.astype(np.float64) / np.float64(scale)
        float32_only.append(np.sum((quotient32 - np.floor(quotient32) == 0.5) & (exact != quotient32)))

    collect()
    assert sum(float32_only) > 0
