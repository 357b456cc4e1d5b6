"""QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger: independent formulas, bounds, errors.

Expected values come from direct definitions written here (loops over output
positions, broadcast-multiply-and-sum in int64), never from exact_products.exact_matmul.
The ONNX backend node cases of these ops run in test_node_cases.py.
"""

from __future__ import annotations

import itertools
import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx.reference import ReferenceEvaluator

import refquant
from refquant import exact_products
from refquant.ops import integer_products
from refquant.errors import (
    AccumulatorOverflowWarning,
    AttributeValueError,
    DTypeError,
    AccumulatorOverflowError,
    NonFiniteError,
    QuantParamError,
    ShapeError,
)

from tests.helpers import single_node_model

from .conv_cases import conv_cases, naive_conv

QLINEARCONV_INPUTS = ("x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point", "B")
QLINEARMATMUL_INPUTS = ("a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale", "y_zero_point")
INT8 = (np.uint8, np.int8)


def run(op_type, names, arrays, out_type, *, opset=10, profile="spec", **attrs):
    """Run a one-node model whose inputs are ``arrays``; None leaves that input out (an empty name)."""
    feeds = {n: a for n, a in zip(names, arrays) if a is not None}
    model = single_node_model(op_type, feeds, {"y": out_type}, opset=opset, attrs=attrs)
    node_inputs = [n if a is not None else "" for n, a in zip(names, arrays)]
    while not node_inputs[-1]:
        node_inputs.pop()
    del model.graph.node[0].input[:]
    model.graph.node[0].input.extend(node_inputs)
    return refquant.Session(model, profile=profile).run(None, feeds)[0]


def qtype_values(draw, dtype, shape):
    info = np.iinfo(dtype)
    return draw(hnp.arrays(dtype, shape, elements=st.integers(int(info.min), int(info.max))))


def proto(dtype) -> int:
    return refquant.dtypes.proto_of(np.dtype(dtype))


# -- independent definitions ----------------------------------------------------------



def naive_matmul(a, b):
    """(..., M, K) @ (..., K, N) by broadcast multiply and sum over K, int64."""
    return (a.astype(np.int64)[..., :, :, None] * b.astype(np.int64)[..., None, :, :]).sum(axis=-2)


def requantized(acc, multiplier, y_zero_point, dtype):
    """clip(round_half_even(acc * multiplier) + zp) with Python's round() on float64."""
    info = np.iinfo(dtype)
    real = np.asarray(acc, np.float64) * multiplier
    rounded = np.vectorize(round, otypes=[np.int64])(real)
    return np.clip(rounded + int(y_zero_point), info.min, info.max).astype(dtype)


# -- strategies -----------------------------------------------------------------------



@st.composite
def matmul_shapes(draw):
    """Shapes of a and b that numpy.matmul accepts, 1-D operands and broadcast batches included."""
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    batch = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    a_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))) :]
    b_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))) :]
    a_shape = (k,) if draw(st.integers(0, 5)) == 0 else (*a_batch, m, k)
    b_shape = (k,) if draw(st.integers(0, 5)) == 0 else (*b_batch, k, n)
    return a_shape, b_shape


def row_param_shape(draw, shape, per_row: bool):
    """A per-tensor, per-row (of a) or per-column (of b) parameter shape, 1-D or N-D."""
    if len(shape) < 2 or draw(st.booleans()):
        return ()
    axis = -2 if per_row else -1
    if draw(st.booleans()):
        return (shape[axis],)
    full = list(shape)
    full[-1 if per_row else -2] = 1
    return tuple(d if draw(st.booleans()) else 1 for d in full[:-2]) + tuple(full[-2:])


# -- QLinearConv and ConvInteger ------------------------------------------------------


@given(case=conv_cases(), types=st.tuples(*[st.sampled_from(INT8)] * 3), data=st.data())
def test_qlinearconv_equals_direct_definition(case, types, data):
    x_shape, w_shape, attrs, (group, strides, dilations, pads) = case
    x_type, w_type, y_type = types
    m = w_shape[0]
    x = qtype_values(data.draw, x_type, x_shape)
    w = qtype_values(data.draw, w_type, w_shape)
    per_channel = data.draw(st.booleans())
    channel_shape = (m,) if per_channel else ()
    x_zp = qtype_values(data.draw, x_type, ())
    w_zp = qtype_values(data.draw, w_type, channel_shape)
    y_zp = qtype_values(data.draw, y_type, ())
    positive = st.floats(2.0**-13, 1.0, width=32)
    x_scale, y_scale = (np.array(data.draw(positive), np.float32) for _ in range(2))
    w_scale = data.draw(hnp.arrays(np.float32, channel_shape, elements=positive))
    bias = data.draw(st.none() | hnp.arrays(np.int32, (m,), elements=st.integers(-(2**20), 2**20)))

    got = run("QLinearConv", QLINEARCONV_INPUTS, (x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias), proto(y_type), **attrs)

    w_centered = w.astype(np.int64) - w_zp.astype(np.int64).reshape((-1,) + (1,) * (w.ndim - 1))
    acc = naive_conv(x.astype(np.int64) - int(x_zp), w_centered, group, strides, dilations, pads)
    if bias is not None:
        acc += bias.astype(np.int64).reshape((m,) + (1,) * (acc.ndim - 2))
    multiplier = np.float64(x_scale) * w_scale.astype(np.float64).reshape((-1,) + (1,) * (acc.ndim - 2)) / np.float64(y_scale)
    expected = requantized(acc, multiplier, y_zp, y_type)
    assert got.dtype == y_type
    np.testing.assert_array_equal(got, expected)


@given(case=conv_cases(), types=st.tuples(*[st.sampled_from(INT8)] * 2), data=st.data())
def test_convinteger_equals_int64_numpy(case, types, data):
    x_shape, w_shape, attrs, (group, strides, dilations, pads) = case
    x = qtype_values(data.draw, types[0], x_shape)
    w = qtype_values(data.draw, types[1], w_shape)
    x_zp = data.draw(st.none() | st.just(qtype_values(data.draw, types[0], ())))
    w_zp = data.draw(st.none() | st.just(qtype_values(data.draw, types[1], data.draw(st.sampled_from([(), (w_shape[0],)])))))
    got = run("ConvInteger", ("x", "w", "x_zero_point", "w_zero_point"), (x, w, x_zp, w_zp), T.INT32, **attrs)
    x_c = x.astype(np.int64) - (0 if x_zp is None else int(x_zp))
    w_c = w.astype(np.int64) - (0 if w_zp is None else w_zp.astype(np.int64).reshape((-1,) + (1,) * (w.ndim - 1)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, naive_conv(x_c, w_c, group, strides, dilations, pads))


def test_depthwise_qlinearconv_by_hand():
    """3 channels, group 3, 1x2 kernels: each output channel sees only its own input channel."""
    x = np.array([[[[10, 20, 30]], [[1, 2, 3]], [[5, 5, 5]]]], np.uint8)
    w = np.array([[[[1, 1]]], [[[2, -1]]], [[[0, 3]]]], np.int8)
    zeros = (np.uint8(0), np.int8(0), np.uint8(0))
    one = np.float32(1)
    got = run("QLinearConv", QLINEARCONV_INPUTS, (x, one, zeros[0], w, one, zeros[1], one, zeros[2], None), T.UINT8, group=3)
    np.testing.assert_array_equal(got, [[[[30, 50]], [[0, 1]], [[15, 15]]]])  # 2*1-2 = 0, 2*2-3 = 1


def test_qlinearconv_per_channel_zero_point_by_hand():
    """w_zero_point per output channel: channel 0 subtracts 1, channel 1 subtracts -2."""
    x = np.array([[[[3]]]], np.uint8)
    w = np.array([[[[4]]], [[[4]]]], np.int8)
    args = (x, np.float32(1), np.uint8(1), w, np.array([1, 0.5], np.float32), np.array([1, -2], np.int8))
    got = run("QLinearConv", QLINEARCONV_INPUTS, (*args, np.float32(1), np.uint8(0), np.array([1, 1], np.int32)), T.UINT8)
    np.testing.assert_array_equal(got.ravel(), [(2 * 3 + 1) * 1, round((2 * 6 + 1) * 0.5)])  # 7, 6.5 -> 6


# -- QLinearMatMul and MatMulInteger --------------------------------------------------


@given(shapes=matmul_shapes(), types=st.tuples(*[st.sampled_from(INT8)] * 2), data=st.data())
def test_matmulinteger_equals_int64_numpy(shapes, types, data):
    a_shape, b_shape = shapes
    a = qtype_values(data.draw, types[0], a_shape)
    b = qtype_values(data.draw, types[1], b_shape)
    a_zp = qtype_values(data.draw, types[0], row_param_shape(data.draw, a_shape, per_row=True))
    b_zp = qtype_values(data.draw, types[1], row_param_shape(data.draw, b_shape, per_row=False))
    got = run("MatMulInteger", ("A", "B", "a_zero_point", "b_zero_point"), (a, b, a_zp, b_zp), T.INT32)
    a_zp64 = a_zp.astype(np.int64).reshape(-1, 1) if a_zp.ndim == 1 else a_zp.astype(np.int64)
    expected = np.matmul(a.astype(np.int64) - a_zp64, b.astype(np.int64) - b_zp.astype(np.int64))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


@given(shapes=matmul_shapes(), types=st.tuples(*[st.sampled_from(INT8)] * 3), opset=st.sampled_from([10, 21]), data=st.data())
def test_qlinearmatmul_equals_direct_definition(shapes, types, opset, data):
    a_shape, b_shape = shapes
    a_type, b_type, y_type = types
    scale_type = np.float32 if opset == 10 else data.draw(st.sampled_from([np.float32, np.float16, ml_dtypes.bfloat16]))
    positive = st.floats(2.0**-10, 1.0, width=16).map(lambda v: np.asarray(v).astype(scale_type))
    a_param, b_param = row_param_shape(data.draw, a_shape, True), row_param_shape(data.draw, b_shape, False)
    a = qtype_values(data.draw, a_type, a_shape)
    b = qtype_values(data.draw, b_type, b_shape)
    a_zp, b_zp = qtype_values(data.draw, a_type, a_param), qtype_values(data.draw, b_type, b_param)
    a_scale, b_scale = (
        data.draw(hnp.arrays(np.float32, shape, elements=st.floats(2.0**-10, 1.0, width=16))).astype(scale_type)
        for shape in (a_param, b_param)
    )
    y_scale, y_zp = data.draw(positive), qtype_values(data.draw, y_type, ())
    arrays = (a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp)
    got = run("QLinearMatMul", QLINEARMATMUL_INPUTS, arrays, proto(y_type), opset=opset)

    def rows(p):  # a 1-D per-row parameter is a column
        return p.reshape(-1, 1) if p.ndim == 1 else p

    # numpy.matmul's 1-D rule: a (K,) acts as (1, K), b (K,) as (K, 1), and those axes are dropped
    a_centered = (a.astype(np.int64) - rows(a_zp).astype(np.int64)).reshape(a.shape if a.ndim > 1 else (1, -1))
    b_centered = (b.astype(np.int64) - b_zp.astype(np.int64)).reshape(b.shape if b.ndim > 1 else (-1, 1))
    multiplier = rows(a_scale).astype(np.float64) * b_scale.astype(np.float64) / np.float64(y_scale.astype(np.float64))
    expected = requantized(naive_matmul(a_centered, b_centered), multiplier, y_zp, y_type)
    if b.ndim == 1:
        expected = expected[..., 0]
    if a.ndim == 1:
        expected = expected[..., 0, :] if b.ndim > 1 else expected[..., 0]
    assert got.dtype == y_type
    np.testing.assert_array_equal(got, expected)


def test_qlinearmatmul_per_row_and_per_column_by_hand():
    a = np.array([[1, 2], [3, 4]], np.uint8)
    b = np.array([[1, 0], [0, 1]], np.int8)
    a_scale, a_zp = np.array([1.0, 2.0], np.float32), np.array([0, 1], np.uint8)  # rows
    b_scale, b_zp = np.array([1.0, 0.5], np.float32), np.array([0, -1], np.int8)  # columns
    arrays = (a, a_scale, a_zp, b, b_scale, b_zp, np.float32(1), np.uint8(0))
    got = run("QLinearMatMul", QLINEARMATMUL_INPUTS, arrays, T.UINT8)
    # (a - zp_row) = [[1, 2], [2, 3]]; (b - zp_col) = [[1, 1], [0, 2]]; acc = [[1, 5], [2, 8]]
    np.testing.assert_array_equal(got, [[1, round(5 * 0.5)], [2 * 2, 8 * 2 * 0.5]])


@pytest.mark.parametrize(
    "float8", [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz]
)
@given(data=st.data())
def test_qlinearmatmul_float8_operands_are_exact(float8, data):
    """float8 a and b, int8 y: equals the exact rational product, rounded once (power-of-two scales keep it exact)."""
    finite = np.array([v for v in np.arange(256, dtype=np.uint8).view(float8) if np.isfinite(float(v))], float8)
    m, k, n = (data.draw(st.integers(1, 3)) for _ in range(3))
    a = finite[data.draw(hnp.arrays(np.int64, (m, k), elements=st.integers(0, finite.size - 1)))]
    b = finite[data.draw(hnp.arrays(np.int64, (k, n), elements=st.integers(0, finite.size - 1)))]
    exponents = [data.draw(st.integers(-12, 12)) for _ in range(3)]
    a_scale, b_scale, y_scale = (np.float32(2.0**e) for e in exponents)
    y_zp = np.int8(data.draw(st.integers(-128, 127)))
    zero = np.zeros((), float8)
    arrays = (a, a_scale, zero, b, b_scale, zero, y_scale, y_zp)
    got = run("QLinearMatMul", QLINEARMATMUL_INPUTS, arrays, T.INT8, opset=21)
    scale = Fraction(float(a_scale)) * Fraction(float(b_scale)) / Fraction(float(y_scale))
    for i, j in itertools.product(range(m), range(n)):
        exact = sum(Fraction(float(a[i, t])) * Fraction(float(b[t, j])) for t in range(k)) * scale
        assert got[i, j] == min(max(round(exact) + int(y_zp), -128), 127)


def test_qlinearmatmul_float8_output_by_hand():
    """e4m3fn . e4m3fn -> e4m3fn: (1.5 * 3 + 0.25 * -2) / 0.5 = 8; / 2**-10 = 4096 saturates to 448."""
    f8 = ml_dtypes.float8_e4m3fn
    a, b = np.array([[1.5, 0.25]], f8), np.array([[3.0], [-2.0]], f8)
    one, zero = np.float32(1), np.zeros((), f8)
    got = run("QLinearMatMul", QLINEARMATMUL_INPUTS, (a, one, zero, b, one, zero, np.float32(0.5), zero), T.FLOAT8E4M3FN, opset=21)
    assert got.dtype == f8 and float(got[0, 0]) == 8.0
    big = run("QLinearMatMul", QLINEARMATMUL_INPUTS, (a, one, zero, b, one, zero, np.float32(2.0**-10), zero), T.FLOAT8E4M3FN, opset=21)
    assert float(big[0, 0]) == 448.0  # saturates to the largest finite value


def test_qlinearmatmul_float8_nan_is_an_error():
    f8 = ml_dtypes.float8_e4m3fn
    a, b = np.array([[np.nan]], f8), np.array([[1.0]], f8)
    one, zero = np.float32(1), np.zeros((), f8)
    with pytest.raises(NonFiniteError, match="NaN"):
        run("QLinearMatMul", QLINEARMATMUL_INPUTS, (a, one, zero, b, one, zero, one, np.int8(0)), T.INT8, opset=21)


# -- requantization and accumulator bounds --------------------------------------------

#: a float32 tie: float32(15900) * float32(xs * ws / ys) == 34.5, while the float64 product is 34.500004
TIE_SCALES = (np.float32(0.068950824), np.float32(0.057845093), np.float32(1.8381628))


@pytest.mark.parametrize("precision, expected", [("float64", 35), ("float32", 34)])
def test_requantize_precision_profile(precision, expected):
    xs, ws, ys = TIE_SCALES
    assert np.float32(15900) * (xs * ws / ys) == np.float32(34.5)
    a, b = np.array([[150]], np.uint8), np.array([[106]], np.uint8)  # acc = 15900
    profile = refquant.get_profile("spec").with_options(requantize_precision=precision)
    arrays = (a, xs, np.uint8(0), b, ws, np.uint8(0), ys, np.uint8(0))
    assert run("QLinearMatMul", QLINEARMATMUL_INPUTS, arrays, T.UINT8, profile=profile)[0, 0] == expected


def test_the_spec_profile_requantizes_in_float64():
    """The spec's default (spec/ops/integer.md): 15900 * (xs * ws / ys) in float64 is 34.500004, so 35; a
    float32 requantization would land on the tie 34.5 and round to 34."""
    xs, ws, ys = TIE_SCALES
    assert 15900 * (float(xs) * float(ws) / float(ys)) > 34.5
    a, b = np.array([[150]], np.uint8), np.array([[106]], np.uint8)
    arrays = (a, xs, np.uint8(0), b, ws, np.uint8(0), ys, np.uint8(0))
    assert run("QLinearMatMul", QLINEARMATMUL_INPUTS, arrays, T.UINT8)[0, 0] == 35


def test_onnx_reference_profile_reproduces_its_float32_multiplier():
    """onnx.reference rounds x_scale * w_scale / y_scale to float32: 95988 * m is 46.49999777 in float64
    but 46.50000026 with the float32 multiplier. The "onnx-reference" profile reproduces it."""
    a, b = np.array([[255, 255, 108]], np.uint8), np.array([[188], [188], [1]], np.uint8)  # acc = 95988
    arrays = (a, np.float32(0.06469306), np.uint8(0), b, np.float32(0.011219731), np.uint8(0), np.float32(1.4983186), np.uint8(0))
    feeds = dict(zip(QLINEARMATMUL_INPUTS, arrays))
    model = single_node_model("QLinearMatMul", feeds, {"y": T.UINT8}, opset=10)
    assert ReferenceEvaluator(model).run(None, feeds)[0][0, 0] == 47
    assert refquant.Session(model, profile="onnx-reference").run(None, feeds)[0][0, 0] == 47
    assert refquant.Session(model).run(None, feeds)[0][0, 0] == 46


@pytest.mark.parametrize("op", ["QLinearConv", "QLinearMatMul"])
def test_onnx_reference_adds_the_zero_point_before_rounding(op):
    """onnx.reference computes rint(acc * multiplier + y_zero_point): at a tie an odd zero point rounds the
    other way. acc = 1 * (127 - 128) = -1, multiplier 1 * 1 / 2: the spec's rint(-0.5) + 255 = 255,
    onnx.reference's rint(254.5) = 254 (refquant fuzz --seed 5101). Profile option requantize_zero_point."""
    x, w = np.array([[[1]]], np.uint8), np.array([[[127]]], np.uint8)
    if op == "QLinearMatMul":
        x, w = x[0], w[0]
    one = np.float32(1)
    arrays = (x, one, np.uint8(0), w, one, np.uint8(128), np.float32(2), np.uint8(255))
    names = QLINEARCONV_INPUTS[:8] if op == "QLinearConv" else QLINEARMATMUL_INPUTS
    feeds = dict(zip(names, arrays))
    model = single_node_model(op, feeds, {"y": T.UINT8}, opset=10)
    assert ReferenceEvaluator(model).run(None, feeds)[0].item() == 254
    assert refquant.Session(model, profile="onnx-reference").run(None, feeds)[0].item() == 254
    before = refquant.get_profile("spec").with_options(requantize_zero_point="before-rounding")
    assert refquant.Session(model, profile=before).run(None, feeds)[0].item() == 254
    assert refquant.Session(model).run(None, feeds)[0].item() == 255
    # no tie, or an even zero point: the two orders agree (rint(-0.5 + 254) = 254 = rint(-0.5) + 254)
    feeds["y_zero_point"] = np.uint8(254)
    model = single_node_model(op, feeds, {"y": T.UINT8}, opset=10)
    assert refquant.Session(model, profile=before).run(None, feeds)[0].item() == 254
    assert refquant.Session(model).run(None, feeds)[0].item() == 254


@pytest.mark.parametrize("y_zero_point", [np.uint8(128), np.int8(-128)])
def test_onnx_reference_casts_a_nan_requantization_to_zero(y_zero_point):
    """float16 scales: a_scale * b_scale = 64 * 1024 = 65536 overflows float16 to inf, / 65504 stays inf;
    acc = 0 (a = b = 0), 0 * inf = NaN, and numpy's x86 cast of NaN gives 0 (refquant fuzz --seed 5105).
    The spec's float64 multiplier is 1.0004885: y = y_zero_point."""
    zero = np.zeros((), y_zero_point.dtype)
    a, b = np.array([0], y_zero_point.dtype), np.array([0], y_zero_point.dtype)
    arrays = (a, np.float16(64), zero, b, np.float16(1024), zero, np.float16(65504), y_zero_point)
    feeds = dict(zip(QLINEARMATMUL_INPUTS, arrays))
    out_type = T.UINT8 if y_zero_point.dtype == np.uint8 else T.INT8
    model = single_node_model("QLinearMatMul", feeds, {"y": out_type}, opset=21)
    with np.errstate(all="ignore"):  # onnx.reference's float16 multiplier overflows, then 0 * inf
        assert ReferenceEvaluator(model).run(None, feeds)[0].item() == 0
    assert refquant.Session(model, profile="onnx-reference").run(None, feeds)[0].item() == 0
    assert refquant.Session(model).run(None, feeds)[0].item() == y_zero_point


def test_rounding_is_half_to_even():
    a = np.array([[1, 3, 5, 7]], np.uint8).T  # acc * 0.5 = 0.5, 1.5, 2.5, 3.5
    arrays = (a, np.float32(0.5), np.uint8(0), np.array([[1]], np.uint8), np.float32(1), np.uint8(0), np.float32(1), np.uint8(10))
    got = run("QLinearMatMul", QLINEARMATMUL_INPUTS, arrays, T.UINT8)
    np.testing.assert_array_equal(got.ravel(), [10, 12, 12, 14])


@pytest.mark.parametrize(
    "k, a_value, b_value, b_last, too_narrow",
    [
        (514, 255, -128, -127, None),  # 514 * 255 * 128 < 2**24: float32 BLAS
        (515, 255, -128, -127, np.float32),  # just past: float64; the odd sum beyond 2**24 defeats float32
        (8193, 2**20 + 1, 2**20 + 1, 2**20 + 1, np.float64),  # k * |a| * |b| > 2**53: chunked float64
        (3, 2**30 + 1, 2**31 - 1, 2**31 - 1, np.float64),  # one product > 2**53: Python integers
    ],
)
def test_exact_matmul_at_its_bounds(k, a_value, b_value, b_last, too_narrow):
    a = np.array([[a_value] * k, [-a_value] * k], np.int64)
    b = np.array([[b_value]] * (k - 1) + [[b_last]], np.int64)
    row = sum(a_value * int(v) for v in b.ravel())
    got = exact_products.exact_matmul(a, b)
    assert got.dtype == np.int64
    assert got.ravel().tolist() == [row, -row]
    if too_narrow is not None:  # the bound matters: one plain float matmul would be wrong here
        assert int(np.matmul(a.astype(too_narrow), b.astype(too_narrow))[0, 0]) != row


def test_qlinear_accumulator_stays_exact_beyond_int32_and_warns():
    """K = 70000 of 255 * 127 = 2.27e9 > 2**31: exact int64, requantized, with a warning."""
    k = 70000
    a, b = np.full((1, k), 255, np.uint8), np.full((k, 1), 127, np.int8)
    y_scale = np.float32(2.0**25)  # acc / 2**25 = 67.7 -> 68
    arrays = (a, np.float32(1), np.uint8(0), b, np.float32(1), np.int8(0), y_scale, np.uint8(0))
    with pytest.warns(AccumulatorOverflowWarning, match=r"QLinearMatMul .*outside int32.*exact"):
        got = run("QLinearMatMul", QLINEARMATMUL_INPUTS, arrays, T.UINT8)
    assert got[0, 0] == round(k * 255 * 127 / 2**25)


OVERFLOW_K = 70000
OVERFLOW_EXACT = OVERFLOW_K * 255 * 127  # 2_266_950_000 > 2**31 - 1


@pytest.mark.parametrize(
    "rule, expected",
    [("wrap", OVERFLOW_EXACT - 2**32), ("saturate", 2**31 - 1)],
)
@pytest.mark.parametrize("op", ["MatMulInteger", "ConvInteger"])
def test_int32_overflow_rules_warn(op, rule, expected):
    profile = refquant.get_profile("spec").with_options(int32_overflow=rule)
    with pytest.warns(AccumulatorOverflowWarning, match=rf"{op} .*do not fit int32.*int32_overflow='{rule}'"):
        got = overflowing(op, profile)
    assert got.dtype == np.int32 and int(got.ravel()[0]) == expected


@pytest.mark.parametrize("op", ["MatMulInteger", "ConvInteger"])
def test_int32_overflow_error_rule(op):
    profile = refquant.get_profile("spec").with_options(int32_overflow="error")
    with pytest.raises(AccumulatorOverflowError, match=rf"{op} '#0': 1 of 1 outputs do not fit int32.*int32_overflow='error'"):
        overflowing(op, profile)


def overflowing(op, profile):
    a, b = np.full((1, OVERFLOW_K), 255, np.uint8), np.full((OVERFLOW_K, 1), 127, np.int8)
    if op == "MatMulInteger":
        return run(op, ("A", "B"), (a, b), T.INT32, profile=profile)
    return run(op, ("x", "w"), (a.reshape(1, OVERFLOW_K, 1), b.reshape(1, OVERFLOW_K, 1)), T.INT32, profile=profile)


def test_no_warning_within_int32():
    a, b = np.full((1, 1000), 255, np.uint8), np.full((1000, 1), 127, np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run("MatMulInteger", ("A", "B"), (a, b), T.INT32)[0, 0] == 1000 * 255 * 127


# -- errors ---------------------------------------------------------------------------


def qconv_args(**overrides):
    """A valid QLinearConv (x 1x2x3x3 u8, w 4x2x1x1 s8) with some inputs replaced."""
    args = dict(
        x=np.ones((1, 2, 3, 3), np.uint8),
        x_scale=np.float32(0.1),
        x_zero_point=np.uint8(1),
        w=np.ones((4, 2, 1, 1), np.int8),
        w_scale=np.full(4, 0.1, np.float32),
        w_zero_point=np.zeros(4, np.int8),
        y_scale=np.float32(0.1),
        y_zero_point=np.uint8(0),
        B=np.zeros(4, np.int32),
    )
    args.update(overrides)
    return tuple(args[n] for n in QLINEARCONV_INPUTS)


@pytest.mark.parametrize(
    "overrides, attrs, error, message",
    [
        ({"w_scale": np.full(3, 0.1, np.float32), "w_zero_point": np.zeros(3, np.int8)}, {}, QuantParamError, r"w_scale has shape \(3,\).*\(4,\)"),
        ({"w_zero_point": np.zeros(2, np.int8)}, {}, QuantParamError, r"w_scale has shape \(4,\) and w_zero_point \(2,\)"),
        ({"x_zero_point": np.int8(1)}, {}, DTypeError, r"x_zero_point has type int8, it must match x \(uint8\)"),
        ({"w_zero_point": np.zeros(4, np.uint8)}, {}, DTypeError, r"w_zero_point has type uint8, it must match w \(int8\)"),
        ({"x_scale": np.float32(0)}, {}, QuantParamError, r"x_scale must be finite and > 0, got .*0\.0"),
        ({"y_scale": np.float32(np.nan)}, {}, QuantParamError, r"y_scale must be finite and > 0"),
        ({"w_scale": np.array([0.1, -1, 0.1, 0.1], np.float32)}, {}, QuantParamError, r"w_scale .*1 of 4 values"),
        ({"x_scale": np.float64(0.1)}, {}, DTypeError, r"x_scale has type double"),
        ({"B": np.zeros(3, np.int32)}, {}, ShapeError, r"B has shape \(3,\), expected \(4,\)"),
        ({"B": np.zeros(4, np.int64)}, {}, DTypeError, r"B has type int64"),
        ({"x_zero_point": np.array([1, 1], np.uint8)}, {}, QuantParamError, r"x_zero_point must be a scalar"),
        ({}, {"group": 3}, AttributeValueError, r"group 3 must divide both the input channels \(2\)"),
        ({}, {"group": 2}, ShapeError, r"w has 2 input channels per group, expected 2 / 2 = 1"),
        ({}, {"group": 0}, AttributeValueError, r"group must be >= 1"),
        ({}, {"kernel_shape": [2, 2]}, ShapeError, r"kernel_shape \[2, 2\] disagrees with the weight's spatial shape \[1, 1\]"),
        ({}, {"strides": [1]}, AttributeValueError, r"strides has 1 values, the input has 2 spatial axes"),
        ({}, {"strides": [0, 1]}, AttributeValueError, r"strides must be >= 1"),
        ({}, {"pads": [1, 1]}, AttributeValueError, r"pads has 2 values, expected 4"),
        ({}, {"pads": [0, -1, 0, 0]}, AttributeValueError, r"pads must be >= 0"),
        ({}, {"auto_pad": "SAME"}, AttributeValueError, r"auto_pad must be one of"),
        ({}, {"auto_pad": "VALID", "pads": [1, 0, 0, 0]}, AttributeValueError, r"pads \[1, 0, 0, 0\] cannot be used with auto_pad VALID"),
        ({"w": np.ones((4, 2, 5, 1), np.int8)}, {}, ShapeError, r"window extent 5 .* exceeds the padded input"),
        ({"x": np.ones((2, 3, 3), np.uint8)}, {}, ShapeError, r"w has rank 4 .* x has rank 3"),
        ({"x": np.ones((1, 2, 3, 3), np.int16)}, {}, DTypeError, r"x has type int16"),
    ],
)
def test_qlinearconv_errors(overrides, attrs, error, message):
    args = qconv_args(**overrides)
    with pytest.raises(error, match=r"QLinearConv '#0': " + message):
        run("QLinearConv", QLINEARCONV_INPUTS, args, T.UINT8, **attrs)


def test_qlinearconv_zero_point_is_required():
    args = list(qconv_args())
    args[QLINEARCONV_INPUTS.index("x_zero_point")] = None
    with pytest.raises(ShapeError, match="QLinearConv '#0': required input 'x_zero_point' is missing"):
        run("QLinearConv", QLINEARCONV_INPUTS, args, T.UINT8)


def qmatmul_args(**overrides):
    args = dict(
        a=np.ones((2, 3), np.uint8),
        a_scale=np.float32(0.1),
        a_zero_point=np.uint8(0),
        b=np.ones((3, 4), np.int8),
        b_scale=np.float32(0.1),
        b_zero_point=np.int8(0),
        y_scale=np.float32(0.1),
        y_zero_point=np.uint8(0),
    )
    args.update(overrides)
    return tuple(args[n] for n in QLINEARMATMUL_INPUTS)


F16 = np.float16(0.1)


@pytest.mark.parametrize(
    "opset, overrides, error, message",
    [
        (10, {"b": np.ones((2, 4), np.int8)}, ShapeError, r"a has shape \(2, 3\) and b \(2, 4\): inner dimensions 3 and 2 differ"),
        (10, {"a": np.ones((2, 2, 3), np.uint8), "b": np.ones((3, 3, 4), np.int8)}, ShapeError, r"batch dimensions"),
        (10, {"a_scale": np.full(3, 0.1, np.float32), "a_zero_point": np.zeros(3, np.uint8)}, QuantParamError, r"a_scale has 3 values, expected one per row \(2\)"),
        (10, {"b_scale": np.full((3, 1), 0.1, np.float32), "b_zero_point": np.zeros((3, 1), np.int8)}, QuantParamError, r"b_scale has shape \(3, 1\); per-column .* \[\.\.\., 1, N\]"),
        (10, {"a_scale": np.full(2, 0.1, np.float32)}, QuantParamError, r"a_scale has shape \(2,\) and a_zero_point \(\)"),
        (10, {"y_scale": np.full(4, 0.1, np.float32)}, QuantParamError, r"y_scale must be a scalar"),
        (10, {"b_zero_point": np.uint8(0)}, DTypeError, r"b_zero_point has type uint8, it must match b \(int8\)"),
        (10, {"a_scale": F16, "b_scale": F16, "y_scale": F16}, DTypeError, r"a_scale has type float16; allowed at this opset: float"),
        (21, {"a_scale": F16}, DTypeError, r"a_scale, b_scale and y_scale have types float16, float, float"),
        (10, {"a": np.ones((2, 3), ml_dtypes.float8_e4m3fn)}, DTypeError, r"a has type float8e4m3fn"),
        (10, {"b_scale": np.float32(-1)}, QuantParamError, r"b_scale must be finite and > 0, got .*-1\.0"),
    ],
)
def test_qlinearmatmul_errors(opset, overrides, error, message):
    with pytest.raises(error, match=r"QLinearMatMul '#0': " + message):
        run("QLinearMatMul", QLINEARMATMUL_INPUTS, qmatmul_args(**overrides), T.UINT8, opset=opset)


@pytest.mark.parametrize(
    "arrays, error, message",
    [
        ((np.ones((2, 3), np.uint8), np.ones((3, 4), np.int8), np.uint8(0), np.uint8(0)), DTypeError, r"b_zero_point has type uint8"),
        ((np.ones((2, 3), np.uint8), np.ones((3, 4), np.int8), np.zeros(3, np.uint8), None), QuantParamError, r"a_zero_point has 3 values, expected one per row \(2\)"),
        ((np.ones((2, 3), np.uint16), np.ones((3, 4), np.int8), None, None), DTypeError, r"A has type uint16"),
        ((np.ones(3, np.uint8), np.ones((3, 4), np.int8), np.zeros(3, np.uint8), None), QuantParamError, r"a_zero_point must be a scalar for a 1-D operand"),
    ],
)
def test_matmulinteger_errors(arrays, error, message):
    with pytest.raises(error, match=r"MatMulInteger '#0': " + message):
        run("MatMulInteger", ("A", "B", "a_zero_point", "b_zero_point"), arrays, T.INT32)


def test_convinteger_per_channel_zero_point_length():
    x, w = np.ones((1, 2, 3, 3), np.uint8), np.ones((4, 2, 1, 1), np.uint8)
    with pytest.raises(QuantParamError, match=r"ConvInteger '#0': w_zero_point has shape \(3,\), expected a scalar or \(4,\)"):
        run("ConvInteger", ("x", "w", "x_zero_point", "w_zero_point"), (x, w, np.uint8(0), np.zeros(3, np.uint8)), T.INT32)


# -- the shared helpers of refquant/ops/integer_products.py, directly ------------------


class _Warner:
    """A node stand-in for the helpers: its warn() issues the warning as it is."""

    def warn(self, message, category):
        warnings.warn(message, category, stacklevel=2)


@pytest.mark.parametrize("rule", ["wrap", "saturate", "error"])
def test_int32_result_keeps_both_ends_of_int32(rule):
    """-2**31 and 2**31 - 1 fit int32: no warning, no error, whatever the rule (bound 2**63 proves nothing)."""
    acc = np.array([-(2**31), 2**31 - 1], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = integer_products.int32_result(_Warner(), acc, 2**63, rule)
    assert got.dtype == np.int32 and got.tolist() == [-(2**31), 2**31 - 1]


@pytest.mark.parametrize(
    "rule, tail, expected",
    [
        ("wrap", r"; rule int32_overflow='wrap': two's complement wrap$", [-(2**31), 2**31 - 1]),  # 2**31 - 2**32
        ("saturate", r"; rule int32_overflow='saturate': clipped to \[-2\*\*31, 2\*\*31 - 1\]$", [2**31 - 1, -(2**31)]),
    ],
)
def test_int32_result_overflow_messages(rule, tail, expected):
    """[2**31, -2**31 - 1]: both outside int32; wrap: +-2**32, saturate: the int32 ends."""
    acc = np.array([2**31, -(2**31) - 1], np.float64)
    with pytest.warns(AccumulatorOverflowWarning, match=r"^2 of 2 outputs do not fit int32 \(exact values span \[-2147483649, 2147483648\]\)" + tail):
        got = integer_products.int32_result(_Warner(), acc, 2**63, rule)
    assert got.dtype == np.int32 and got.tolist() == expected


def test_int32_result_error_message_ends_with_the_option():
    with pytest.raises(AccumulatorOverflowError, match=r"^1 of 1 outputs do not fit int32 \(exact values span \[2147483648, 2147483648\]\) \(profile option int32_overflow='error'\)$"):
        integer_products.int32_result(_Warner(), np.array([2.0**31]), 2**63, "error")


def test_warn_if_beyond_int32_at_the_ends_and_empty():
    """The ends of int32 and an empty accumulator warn of nothing; 2**31 warns with the full message."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        integer_products.warn_if_beyond_int32(_Warner(), np.array([-(2**31), 2**31 - 1], np.float64))
        integer_products.warn_if_beyond_int32(_Warner(), np.zeros((0, 3), np.float64))
    with pytest.warns(AccumulatorOverflowWarning, match=r"^accumulator reaches \[0, 2147483648\], outside int32; refquant keeps it exact \(int64\), a backend accumulating in int32 would wrap$"):
        integer_products.warn_if_beyond_int32(_Warner(), np.array([0.0, 2.0**31]))


@pytest.mark.parametrize(
    "a, b",
    [
        ([[255, 255]], [[64], [64]]),  # 2 * 255 * 64 = 32640 <= 32767
        ([[255, 255]], [[-64], [-64]]),  # -32640 >= -32768
        ([[128, 128]], [[-128], [-128]]),  # -32768: exactly int16's minimum, no saturation
        ([[3, 1]], [[2], [-1]]),  # small values
    ],
)
def test_u8s8_pair_excess_none_within_int16(a, b):
    """No pair a0 b0 + a1 b1 can leave int16 by the extremes: nothing to add (None)."""
    assert integer_products.u8s8_pair_excess(np.array(a, np.uint8), np.array(b, np.int8)) is None


@pytest.mark.parametrize("a_shape, b_shape", [((0, 2), (2, 1)), ((1, 0), (0, 1)), ((1, 2), (2, 0))])
def test_u8s8_pair_excess_none_for_empty_operands(a_shape, b_shape):
    a, b = np.full(a_shape, 255, np.uint8), np.full(b_shape, 127, np.int8)
    assert integer_products.u8s8_pair_excess(a, b) is None


def test_u8s8_pair_excess_of_a_saturating_pair_by_hand():
    """255 * 127 + 255 * 127 = 64770 saturates to 32767 (VPMADDUBSW): excess 32767 - 64770 = -32003."""
    a, b = np.full((1, 2), 255, np.uint8), np.full((2, 1), 127, np.int8)
    assert np.asarray(integer_products.u8s8_pair_excess(a, b)).ravel().tolist() == [-32003]


def test_exact_integer_matmul_at_2_63():
    """K * max|a| * max|b| = 2 * 2**31 * 2**31 = 2**63 does not fit int64: Python integers, exact."""
    a, b = np.full((1, 1, 2), 2**31, np.int64), np.full((2, 1), 2**31, np.int64)
    got = integer_products.exact_integer_matmul(a, b)
    assert got.shape == (1, 1, 1) and [int(v) for v in got.ravel()] == [2**63]


def test_exact_integer_matmul_beyond_float64():
    """2 * (2**31 + 1)**2 = 2**63 + 2**33 + 2: Python integers (float64 would drop the + 2)."""
    v = 2**31 + 1
    a, b = np.full((1, 1, 2), v, np.int64), np.full((2, 1), v, np.int64)
    got = integer_products.exact_integer_matmul(a, b).ravel().tolist()
    assert got == [2 * v * v] and all(type(x) is int for x in got)


@pytest.mark.parametrize("a_shape, b_shape", [((0, 2), (2, 3)), ((2, 0), (0, 3))])
def test_exact_integer_matmul_empty(a_shape, b_shape):
    got = integer_products.exact_integer_matmul(np.ones(a_shape, np.int64), np.ones(b_shape, np.int64))
    assert got.shape == (a_shape[0], b_shape[1]) and not got.any()


def test_as_integers_of_float8_by_hand():
    """float8_e4m3fn 1.0 and 2.0 minus 0.5: 0.5 and 1.5, in granules 2**-9 (its smallest subnormal): 256, 768."""
    q = np.array([1.0, 2.0], ml_dtypes.float8_e4m3fn)
    n, granule = integer_products.as_integers(q, np.array(0.5, ml_dtypes.float8_e4m3fn), "a")
    assert granule == 2.0**-9
    assert n.dtype == np.int64 and n.tolist() == [256, 768]


def test_check_matmul_shapes_rank_zero_operand():
    with pytest.raises(ShapeError, match=r"^matmul operands must have rank >= 1, got shapes \(\) and \(3,\)$"):
        integer_products.check_matmul_shapes(np.zeros(()), np.zeros(3))


def test_matmulinteger_2d_a_with_batched_b():
    """a (4, 5) against b (3, 5, 6): a has no batch axes, b's batch (3,) broadcasts."""
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    b = rng.integers(-128, 128, (3, 5, 6), dtype=np.int8)
    got = run("MatMulInteger", ("A", "B"), (a, b), T.INT32)
    np.testing.assert_array_equal(got, naive_matmul(a, b))


@pytest.mark.parametrize("a_shape, b_shape", [((2, 0), (0, 3)), ((2, 3), (3, 0))])
def test_matmulinteger_empty(a_shape, b_shape):
    got = run("MatMulInteger", ("A", "B"), (np.ones(a_shape, np.uint8), np.ones(b_shape, np.int8)), T.INT32)
    assert got.shape == (a_shape[0], b_shape[1]) and not got.any()


@pytest.mark.parametrize(
    "name, value, error, message",
    [
        ("w_zero_point", None, ShapeError, r"required input 'w_zero_point' is missing"),
        ("y_zero_point", None, ShapeError, r"required input 'y_zero_point' is missing"),
        ("w", np.ones((4, 2, 1, 1), np.int16), DTypeError, r"w has type int16"),
        ("y_zero_point", np.int16(0), DTypeError, r"y_zero_point has type int16"),
        ("x_scale", np.full(2, 0.1, np.float32), QuantParamError, r"x_scale must be a scalar"),
        ("y_scale", np.full(2, 0.1, np.float32), QuantParamError, r"y_scale must be a scalar"),
        ("y_zero_point", np.zeros(2, np.uint8), QuantParamError, r"y_zero_point must be a scalar"),
    ],
)
def test_qlinearconv_names_the_input(name, value, error, message):
    args = list(qconv_args())
    args[QLINEARCONV_INPUTS.index(name)] = value
    if args[-1] is None:
        args[-1] = np.zeros(4, np.int32)
    with pytest.raises(error, match=r"QLinearConv '#0': " + message):
        run("QLinearConv", QLINEARCONV_INPUTS, args, T.UINT8)


def test_minus_zero_point_is_int16_by_hand():
    """int8 -128 - 127 = -255 and uint8 255 - 0 = 255: both need int16, and stay integers."""
    got = integer_products.minus_zero_point(np.array([-128, 127], np.int8), np.array([127, -128], np.int8))
    assert got.dtype == np.int16 and got.tolist() == [-255, 255]


def test_depthwise_convinteger_beyond_float32_by_hand():
    """One channel, 259 taps of (255 - 0) * (127 - -128) = 65025: 16 841 475, odd and > 2**24 (float32 would round)."""
    x, w = np.full((1, 1, 259), 255, np.uint8), np.full((1, 1, 259), 127, np.int8)
    got = run("ConvInteger", ("x", "w", "x_zero_point", "w_zero_point"), (x, w, np.uint8(0), np.int8(-128)), T.INT32)
    assert got.ravel().tolist() == [259 * 255 * 255]


def test_qlinearconv_s8u8_has_no_pair_saturation():
    """x int8, w uint8 is not MLAS's U8S8: with avx2_u8s8_saturation on, 127 * 255 * 2 = 64770 stays exact,
    64770 / 1024 = 63.25 -> 63 (a saturated pair would give 32767 / 1024 -> 32)."""
    profile = refquant.get_profile("spec").with_options(avx2_u8s8_saturation=True)
    args = qconv_args(
        x=np.full((1, 2, 1, 1), 127, np.int8), x_zero_point=np.int8(0), x_scale=np.float32(1),
        w=np.full((1, 2, 1, 1), 255, np.uint8), w_zero_point=np.uint8(0), w_scale=np.float32(1),
        y_scale=np.float32(1024), B=None,
    )
    assert run("QLinearConv", QLINEARCONV_INPUTS, args, T.UINT8, profile=profile).ravel().tolist() == [63]


def test_matmulinteger_batched_a_overflow_warns():
    """a (1, 1, K): the bound counts K = 70000 terms, not the 1 row: 2 266 950 000 is found beyond int32."""
    profile = refquant.get_profile("spec").with_options(int32_overflow="saturate")
    a, b = np.full((1, 1, OVERFLOW_K), 255, np.uint8), np.full((OVERFLOW_K, 1), 127, np.int8)
    with pytest.warns(AccumulatorOverflowWarning, match=r"do not fit int32"):
        got = run("MatMulInteger", ("A", "B"), (a, b), T.INT32, profile=profile)
    assert got.ravel().tolist() == [2**31 - 1]


def test_qlinearconv_bias_takes_the_accumulator_beyond_int32():
    """K = 66311 channels of 255 * 127: acc = 2 147 481 735 <= 2**31 - 1, plus B = 2**30 beyond it: a warning;
    (acc + B) / 2**25 = 3 221 223 559 / 33 554 432 = 95.99994 -> 96."""
    k = 66311
    args = qconv_args(
        x=np.full((1, k, 1, 1), 255, np.uint8), x_zero_point=np.uint8(0), x_scale=np.float32(1),
        w=np.full((1, k, 1, 1), 127, np.int8), w_zero_point=np.int8(0), w_scale=np.float32(1),
        y_scale=np.float32(2.0**25), B=np.array([2**30], np.int32),
    )
    with pytest.warns(AccumulatorOverflowWarning, match=r"QLinearConv .*accumulator reaches \[3221223559, 3221223559\], outside int32"):
        got = run("QLinearConv", QLINEARCONV_INPUTS, args, T.UINT8)
    assert got.ravel().tolist() == [96]


def test_convinteger_w_zero_point_type_is_named():
    x, w = np.ones((1, 2, 3, 3), np.uint8), np.ones((4, 2, 1, 1), np.int8)
    with pytest.raises(DTypeError, match=r"ConvInteger '#0': w_zero_point has type uint8, it must match w \(int8\)"):
        run("ConvInteger", ("x", "w", "x_zero_point", "w_zero_point"), (x, w, np.uint8(0), np.uint8(0)), T.INT32)
