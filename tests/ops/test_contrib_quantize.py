"""com.microsoft QuantizeLinear and DequantizeLinear: refquant/ops/contrib_quantize.py (spec/ops/contrib.md).

Expected values come from onnxruntime's CPU kernels (graph optimizations off), on hypothesis-drawn inputs
(8- and 16-bit, per tensor and per axis) and for a 4-bit round trip inside one graph:
- the "onnxruntime" profile reproduces ort-cpu bit for bit;
- wherever the "spec" profile differs from ort-cpu, a named divergence reproduces the difference;
from the formula clip(rint(x / scale) + zero_point) for the 4-bit round trip; and from hand-derived
values for errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx import helper

from refquant.dtypes import proto_of
from refquant.errors import DTypeError, QuantParamError

from ..helpers import assert_bit_exact
from .contrib_helpers import (
    X8,
    assert_omitted_zero_points_are_zero,
    compare,
    ms_model,
    run_ort,
    run_ref,
    run_spec,
    values,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@given(data=st.data())
def test_quantize_and_dequantize_match_onnxruntime(dtype, data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-3e4, 3e4, width=32)))
    per_axis = data.draw(st.booleans())
    axis = data.draw(st.integers(-len(shape), len(shape) - 1)) if per_axis else None
    param_shape = (shape[axis],) if per_axis else ()
    scale = data.draw(hnp.arrays(np.float32, param_shape, elements=st.floats(2.0**-4, 64.0, width=32)))
    zp = values(data.draw, dtype, param_shape)
    attrs = {"axis": axis} if per_axis else {}
    compare("QuantizeLinear", [("x", x), ("s", scale), ("z", zp)], proto_of(dtype), **attrs)
    compare("DequantizeLinear", [("q", values(data.draw, dtype, shape)), ("s", scale), ("z", zp)], T.FLOAT, **attrs)


@pytest.mark.parametrize("proto", [T.INT4, T.UINT4])
def test_four_bit_quantize_dequantize_round_trip_matches_onnxruntime(proto):
    """onnxruntime cannot feed or return int4: quantize then dequantize inside one graph."""
    from refquant.dtypes import np_dtype

    x = np.linspace(-9, 17, 40, dtype=np.float32)
    zero_point = np.array(1 if proto == T.INT4 else 3, np_dtype(proto))
    inputs = [("x", x), ("s", np.float32(1.5)), ("z", zero_point)]
    dq = helper.make_node("DequantizeLinear", ["t", "s", "z"], ["out"], domain="com.microsoft")
    model = ms_model("QuantizeLinear", inputs, T.FLOAT, initializers=("s", "z"), extra_nodes=[dq])
    expected = run_ort(model, {"x": x})
    assert_bit_exact(run_ref(model, {"x": x}, "onnxruntime"), expected)
    assert_bit_exact(run_ref(model, {"x": x}), expected)
    low, high = (-8, 7) if proto == T.INT4 else (0, 15)
    np.testing.assert_array_equal(expected, (np.clip(np.rint(x / 1.5) + int(zero_point), low, high) - int(zero_point)) * 1.5)


@pytest.mark.parametrize(
    "op_type, inputs, attrs, error, match",
    [
        ("QuantizeLinear", [("x", np.zeros((2, 3), np.float32)), ("s", np.ones(3, np.float32)), ("z", np.zeros(3, np.uint8))], {},
         QuantParamError, "without the 'axis' attribute"),
        ("QuantizeLinear", [("x", np.zeros((2, 3), np.float32)), ("s", np.ones(3, np.float32)), ("z", np.zeros(3, np.uint8))],
         {"axis": 2}, QuantParamError, "axis 2 is out of range"),
        ("DequantizeLinear", [("x", np.zeros(3, np.uint16)), ("s", np.float32(1)), ("z", np.int16(0))], {}, DTypeError,
         "x_zero_point has type int16"),
    ],
)
def test_invalid_linear_inputs_raise_clear_errors(op_type, inputs, attrs, error, match):
    with pytest.raises(error, match=match):
        run_spec(op_type, inputs, T.FLOAT, **attrs)


@pytest.mark.parametrize(
    "op_type, inputs, attrs",
    [
        ("QuantizeLinear", [("x", np.linspace(-3, 300, 11, dtype=np.float32)), ("s", np.float32(0.7)), ("z", np.uint8(0))], {}),
        ("DequantizeLinear", [("x", X8), ("s", np.float32(0.7)), ("z", np.uint8(0))], {}),
    ],
)
@pytest.mark.parametrize("profile", ["spec", "onnxruntime"])
def test_omitted_zero_points_are_zero(op_type, inputs, attrs, profile):
    assert_omitted_zero_points_are_zero(op_type, inputs, attrs, profile)
