"""com.microsoft elementwise quantized ops: refquant/ops/contrib_elementwise.py (QLinearAdd, QLinearMul,
QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearConcat, QLinearWhere; spec/ops/contrib.md).

Expected values come from onnxruntime's CPU kernels (graph optimizations off), on hypothesis-drawn inputs:
- the "onnxruntime" profile reproduces ort-cpu bit for bit;
- wherever the "spec" profile differs from ort-cpu, a named divergence reproduces the difference, given the
  integer kernels of this host (SPEC_HERE: avx2_u8s8_saturation as the "onnxruntime" profile has it);
- in one test per op family, inputs where spec and ort-cpu differ, and the one profile option
  (qlinear_pipeline) that turns spec's answer into ort's;
and from hand-derived values for the documented choices and errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T

from refquant.dtypes import proto_of
from refquant.errors import AttributeValueError, DTypeError, QuantParamError, ShapeError

from .contrib_helpers import (
    EIGHT_BIT,
    MLAS,
    X8,
    add_inputs,
    assert_differences_explained,
    assert_mlas_conversion_beyond_int32_gives_qmin,
    assert_omitted_zero_points_are_zero,
    compare,
    full_range,
    run_spec,
    scalar,
    scales,
    values,
)

# -- QLinearAdd, QLinearMul ---------------------------------------------------------------


@pytest.mark.parametrize("op_type", ["QLinearAdd", "QLinearMul"])
@given(data=st.data())
def test_binary_ops_match_onnxruntime(op_type, data):
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=5))
    a, b = (values(data.draw, dtype, shape) for shape in shapes.input_shapes)
    a_scale, b_scale, c_scale = (data.draw(scales()) for _ in range(3))
    if op_type == "QLinearMul":
        c_scale = np.float32(c_scale * data.draw(scales()))
    zero_points = [scalar(data.draw, dtype) for _ in range(3)]
    inputs = [("a", a), ("as", a_scale), ("az", zero_points[0]), ("b", b), ("bs", b_scale), ("bz", zero_points[1]),
              ("cs", c_scale), ("cz", zero_points[2])]
    compare(op_type, inputs, proto_of(dtype))


def _binary_tie_cases(dtype, c_factor=1.0):
    """All 256 x values of A against a shuffled B, scales that are multiples of one base (ties)."""
    a = full_range(dtype)
    b = np.random.default_rng(0).permutation(a)
    zero = np.zeros((), dtype)
    shifted = np.array(7 if dtype == np.uint8 else -9, dtype)
    cases = []
    for base in (0.1, 0.03, 1 / 3):
        for ka, kb, kc in ((1, 2, 3), (3, 1, 2), (2, 3, 5)):
            s = [np.float32(base * k) for k in (ka, kb, kc)]
            cases.append([("a", a), ("as", s[0]), ("az", shifted), ("b", b), ("bs", s[1]), ("bz", zero),
                          ("cs", np.float32(s[2] * c_factor)), ("cz", shifted)])
    return cases


@pytest.mark.parametrize("dtype", EIGHT_BIT)
def test_elementwise_differences_are_the_mlas_pipeline(dtype):
    """QLinearAdd/Mul round float32 (fused) multiply-adds with the zero point already added:
    qlinear_pipeline="mlas-float32" alone reproduces every difference from spec."""
    assert_differences_explained("QLinearAdd", _binary_tie_cases(dtype), proto_of(dtype), MLAS)
    assert_differences_explained("QLinearMul", _binary_tie_cases(dtype, 0.1), proto_of(dtype), MLAS)


@pytest.mark.parametrize("op_type", ["QLinearAdd", "QLinearMul"])
def test_mlas_conversion_beyond_int32_gives_qmin(op_type):
    assert_mlas_conversion_beyond_int32_gives_qmin(op_type)


def test_leaky_relu_differences_are_the_mlas_pipeline():
    """float32 dequantization, alpha * v and the division by y_scale each round (found by search)."""
    x = full_range(np.int8)
    cases = [[("x", x), ("xs", np.float32(s)), ("xz", np.int8(3)), ("ys", np.float32(s)), ("yz", np.int8(-5))]
             for s in (0.1779063, 0.24634568)]
    assert_differences_explained("QLinearLeakyRelu", cases, T.INT8, MLAS, alpha=0.1)


def test_add_operand_order_follows_onnxruntime_broadcasting():
    """MLAS takes B as its first operand when A is a scalar per span; fused multiply-adds do not
    commute, so onnxruntime's A + B and B + A differ somewhere, and the profile reproduces both."""
    rng = np.random.default_rng(1)
    b = full_range(np.uint8).reshape(16, 16)
    first, second = (np.float32(0.09), np.uint8(7)), (np.float32(0.03), np.uint8(0))
    asymmetric = 0
    for a_shape in [(1,), (16, 1), (1, 16), (16, 16)]:
        a = rng.integers(0, 256, a_shape).astype(np.uint8)
        out = [("cs", np.float32(0.06)), ("cz", np.uint8(7))]
        ab, _ = compare("QLinearAdd", [("a", a), ("as", first[0]), ("az", first[1]), ("b", b), ("bs", second[0]),
                                       ("bz", second[1]), *out], T.UINT8)
        ba, _ = compare("QLinearAdd", [("a", b), ("as", second[0]), ("az", second[1]), ("b", a), ("bs", first[0]),
                                       ("bz", first[1]), *out], T.UINT8)
        asymmetric += int((ab != ba).sum())
    assert asymmetric > 0


# -- QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax -------------------------------------


@pytest.mark.parametrize("op_type", ["QLinearSigmoid", "QLinearLeakyRelu"])
@given(data=st.data())
def test_lookup_table_ops_match_onnxruntime(op_type, data):
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    x = full_range(dtype)
    y_scale = data.draw(scales(2.0**-10, 2.0**-5)) if op_type == "QLinearSigmoid" else data.draw(scales())
    inputs = [("x", x), ("xs", data.draw(scales(2.0**-9, 0.5))), ("xz", scalar(data.draw, dtype)),
              ("ys", y_scale), ("yz", scalar(data.draw, dtype))]
    attrs = {"alpha": data.draw(st.floats(0.0, 1.0, width=32))} if op_type == "QLinearLeakyRelu" else {}
    compare(op_type, inputs, proto_of(dtype), **attrs)


#: (x_scale, x_zero_point, y_scale) found by search where MLAS's logistic and the exact sigmoid round apart
_SIGMOID_CASES = [(0.16554223, -24, 0.008978978), (0.21933903, 68, 0.00093585433), (0.031358365, 118, 0.0057463506)]


def test_sigmoid_difference_is_mlas_logistic():
    """MLAS's rational logistic approximates sigmoid to ~1e-7: near a rounding boundary it lands on the
    other side (one output per case below)."""
    x = full_range(np.int8)
    cases = [[("x", x), ("xs", np.float32(xs)), ("xz", np.array(xz, np.int8)), ("ys", np.float32(ys)), ("yz", np.array(-128, np.int8))]
             for xs, xz, ys in _SIGMOID_CASES]
    assert_differences_explained("QLinearSigmoid", cases, T.INT8, MLAS)


@given(data=st.data())
def test_softmax_matches_onnxruntime(data):
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    x = values(data.draw, dtype, data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)))
    opset = data.draw(st.sampled_from([12, 13]))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    y_scale = np.float32(data.draw(st.sampled_from([1 / 256, 1 / 255, 0.01, 0.003, 0.02, 0.3])))
    inputs = [("x", x), ("xs", data.draw(scales(2.0**-8, 0.25))), ("xz", scalar(data.draw, dtype)),
              ("ys", y_scale), ("yz", scalar(data.draw, dtype))]
    compare("QLinearSoftmax", inputs, proto_of(dtype), axis=axis, opset=opset)


def test_softmax_uses_floor_of_inverse_y_scale_in_onnxruntime():
    """A single element has probability 1: spec gives round(1 / y_scale) = 65, onnxruntime floor(1 / y_scale) = 64."""
    inputs = [("x", np.array([58], np.uint8)), ("xs", np.float32(0.2)), ("xz", np.uint8(0)),
              ("ys", np.float32(1 / 64.95)), ("yz", np.uint8(131))]
    expected, spec = compare("QLinearSoftmax", inputs, T.UINT8, opset=13)
    assert (spec[0], expected[0]) == (131 + 65, 131 + 64)
    assert_differences_explained("QLinearSoftmax", [inputs], T.UINT8, MLAS, opset=13)


def test_sigmoid_is_stable_for_extreme_inputs():
    inputs = [("x", np.array([0, 255], np.uint8)), ("xs", np.float32(10.0)), ("xz", np.uint8(128)),
              ("ys", np.float32(1 / 256)), ("yz", np.uint8(0))]
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        np.testing.assert_array_equal(run_spec("QLinearSigmoid", inputs), [0, 255])


# -- QLinearConcat, QLinearWhere ---------------------------------------------------------


@given(data=st.data())
def test_concat_matches_onnxruntime(data):
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    y_scale, y_zp = data.draw(scales()), scalar(data.draw, dtype)
    inputs = [("ys", y_scale), ("yz", y_zp)]
    for i in range(data.draw(st.integers(1, 3))):
        part = list(shape)
        part[axis] = data.draw(st.integers(1, 3))
        same = data.draw(st.booleans())  # onnxruntime copies inputs that share Y's parameters
        inputs += [(f"x{i}", values(data.draw, dtype, tuple(part))), (f"s{i}", y_scale if same else data.draw(scales())),
                   (f"z{i}", y_zp if same else scalar(data.draw, dtype))]
    compare("QLinearConcat", inputs, proto_of(dtype), axis=axis)


@given(data=st.data())
def test_where_matches_onnxruntime(data):
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=4))
    condition = data.draw(hnp.arrays(np.bool_, shapes.input_shapes[0]))
    x, y = (values(data.draw, dtype, shape) for shape in shapes.input_shapes[1:])
    inputs = [("c", condition), ("x", x), ("xs", data.draw(scales())), ("xz", scalar(data.draw, dtype)),
              ("y", y), ("ys", data.draw(scales())), ("yz", scalar(data.draw, dtype)),
              ("zs", data.draw(scales())), ("zz", scalar(data.draw, dtype))]
    compare("QLinearWhere", inputs, proto_of(dtype))


# -- errors, omitted zero points -------------------------------------------------------


@pytest.mark.parametrize(
    "op_type, inputs, attrs, error, match",
    [
        ("QLinearAdd", add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.uint8), az=np.int8(0)), {}, DTypeError,
         "A_zero_point has type int8, it must match A"),
        ("QLinearAdd", add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.int8)), {}, DTypeError, "B has type int8"),
        ("QLinearAdd", add_inputs(np.zeros((2, 3), np.uint8), np.zeros(4, np.uint8)), {}, ShapeError, "do not broadcast"),
        ("QLinearMul", add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.uint8), cs=np.float32(0)), {}, QuantParamError,
         "C_scale must be finite and > 0"),
        ("QLinearMul", add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.uint8), bs=np.float32([0.1, 0.2])), {},
         QuantParamError, "B_scale must be a scalar"),
        ("QLinearAdd", add_inputs(np.zeros(3, np.uint16), np.zeros(3, np.uint16)), {}, DTypeError, "A has type uint16"),
        ("QLinearSoftmax", [("x", np.zeros((2, 3), np.uint8)), ("xs", np.float32(1)), ("xz", None), ("ys", np.float32(1)),
                            ("yz", np.uint8(0))], {"opset": 13, "axis": 2}, AttributeValueError, "axis 2 is out of range"),
        ("QLinearSoftmax", [("x", np.zeros((2, 3), np.uint8)), ("xs", np.float32(1)), ("xz", None), ("ys", np.float32(1)),
                            ("yz", np.uint8(0))], {}, AttributeValueError, "'opset' is missing"),
        ("QLinearConcat", [("ys", np.float32(1)), ("yz", np.uint8(0)), ("x0", np.zeros((2, 3), np.uint8)), ("s0", np.float32(1)),
                           ("z0", np.uint8(0)), ("x1", np.zeros((3, 3), np.uint8)), ("s1", np.float32(1)), ("z1", np.uint8(0))],
         {"axis": 1}, ShapeError, "must agree on every axis but 1"),
        ("QLinearConcat", [("ys", np.float32(1)), ("yz", np.uint8(0)), ("x0", np.zeros((2, 3), np.uint8)), ("s0", np.float32(1)),
                           ("z0", np.uint8(0))], {"axis": -3}, AttributeValueError, "axis -3 is out of range"),
        ("QLinearWhere", [("c", np.ones(3, bool)), ("x", np.zeros(3, np.uint8)), ("xs", np.float32(1)), ("xz", np.int8(0)),
                          ("y", np.zeros(3, np.uint8)), ("ys", np.float32(1)), ("yz", np.uint8(0)), ("zs", np.float32(1)),
                          ("zz", np.uint8(0))], {}, DTypeError, "x_zero_point has type int8"),
    ],
)
def test_invalid_inputs_raise_clear_errors(op_type, inputs, attrs, error, match):
    with pytest.raises(error, match=match):
        run_spec(op_type, inputs, **attrs)


@pytest.mark.parametrize(
    "op_type, inputs, attrs",
    [
        ("QLinearAdd", add_inputs(X8, X8[..., ::-1].copy()), {}),
        ("QLinearMul", add_inputs(X8, X8[..., ::-1].copy()), {}),
        ("QLinearSigmoid", [("x", X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(1 / 256)), ("yz", np.uint8(0))], {}),
        ("QLinearLeakyRelu", [("x", X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(0.1)), ("yz", np.uint8(0))], {}),
    ],
)
@pytest.mark.parametrize("profile", ["spec", "onnxruntime"])
def test_omitted_zero_points_are_zero(op_type, inputs, attrs, profile):
    assert_omitted_zero_points_are_zero(op_type, inputs, attrs, profile)
