"""com.microsoft quantized ops against onnxruntime's CPU kernels (graph optimizations off).

For every op onnxruntime implements, on hypothesis-drawn inputs:
- the "onnxruntime" profile reproduces ort-cpu bit for bit;
- the "spec" profile stays within one quantized step of it (float outputs: within float32 rounding),
  given the integer kernels of this host (SPEC_HERE: avx2_u8s8_saturation as the "onnxruntime" profile has it);
- in one test per op family, inputs where spec and ort-cpu differ, and the one profile option
  (qlinear_pipeline, or requantize_precision for float outputs) that turns spec's answer into ort's.
QLinearReduceMean has no onnxruntime CPU kernel: it is checked against exact rational arithmetic.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.divergence import classify
from refquant.dtypes import proto_of
from refquant.errors import AttributeValueError, DTypeError, QuantParamError, ShapeError
from refquant.profiles import SPEC

from .helpers import assert_bit_exact

ort = pytest.importorskip("onnxruntime")

EIGHT_BIT = (np.uint8, np.int8)
MLAS = SPEC.with_options(qlinear_pipeline="mlas-float32")
#: spec's arithmetic with the integer kernels onnxruntime runs on this host (AVX2 without VNNI: U8S8 pair
#: saturation, refquant.host): what "spec" means below wherever it is compared with ort-cpu
SPEC_HERE = SPEC.with_options(avx2_u8s8_saturation=refquant.get_profile("onnxruntime").avx2_u8s8_saturation)
FLOAT32_REQUANTIZE = SPEC_HERE.with_options(requantize_precision="float32")


# -- models and runners -----------------------------------------------------------------


def ms_model(op_type, inputs, out_type, *, initializers=(), extra_nodes=(), output="out", **attrs):
    """One com.microsoft node; ``inputs``: (name, array or None) pairs, None an omitted input.

    onnxruntime 1.32 cannot run omitted optional zero points (QLinearAdd, QLinearAveragePool, ... fail
    type inference; QLinearSigmoid/LeakyRelu abort on an assertion when the node lists 4 inputs), so
    the comparisons give every zero point; test_omitted_zero_points_are_zero covers the default.

    Arrays named in ``initializers`` become initializers, the others graph inputs.
    """
    names = [name if value is not None else "" for name, value in inputs]
    node = helper.make_node(op_type, names, [output if not extra_nodes else "t"], domain="com.microsoft", **attrs)
    graph = helper.make_graph(
        [node, *extra_nodes],
        op_type.lower(),
        [
            helper.make_tensor_value_info(name, proto_of(value.dtype), list(value.shape))
            for name, value in inputs
            if value is not None and name not in initializers
        ],
        [helper.make_tensor_value_info(output, out_type, None)],
        [numpy_helper.from_array(value, name) for name, value in inputs if name in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def feeds_of(inputs, initializers=()):
    return {name: np.asarray(value) for name, value in inputs if value is not None and name not in initializers}


def run_ort(model, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def run_ref(model, feeds, profile="spec"):
    return refquant.Session(model, profile=profile).run(None, feeds)[0]


def compare(op_type, inputs, out_type, *, initializers=(), **attrs):
    """(ort-cpu, spec) after asserting the onnxruntime profile equals ort-cpu and that every element where
    the spec differs from ort-cpu is explained: a named divergence reproduces it there (no tolerance)."""
    model = ms_model(op_type, inputs, out_type, initializers=initializers, **attrs)
    feeds = feeds_of(inputs, initializers)
    expected = run_ort(model, feeds)
    assert_bit_exact(run_ref(model, feeds, "onnxruntime"), expected, "onnxruntime profile")
    (report,) = classify(model, feeds, "ort-cpu", {model.graph.output[0].name: expected})
    assert report.status in ("exact", "explained"), report.to_dict()
    return expected, run_ref(model, feeds, SPEC_HERE)


def assert_differences_explained(op_type, cases, out_type, option_profile, **attrs):
    """Over ``cases`` (lists of inputs), spec differs from ort-cpu somewhere, and ``option_profile``
    (spec with one option changed) reproduces ort-cpu everywhere."""
    differing = 0
    for inputs in cases:
        model = ms_model(op_type, inputs, out_type, **attrs)
        feeds = feeds_of(inputs)
        expected = run_ort(model, feeds)
        differing += int((run_ref(model, feeds, SPEC_HERE) != expected).sum())
        assert_bit_exact(run_ref(model, feeds, option_profile), expected, "spec with the option switched")
    assert differing > 0, "these cases were chosen to make spec and onnxruntime differ"


# -- strategies ------------------------------------------------------------------------

#: scales that make real values land on rounding ties (multiples of one base), and arbitrary ones
_BASES = (0.1, 0.01, 0.03, 1 / 3, 0.007, 0.05, 0.125)


@st.composite
def scales(draw, low=2.0**-8, high=1.0):
    if draw(st.booleans()):
        return np.array(draw(st.sampled_from(_BASES)) * draw(st.integers(1, 8)), np.float32)
    return np.array(draw(st.floats(low, high, width=32)), np.float32)


def values(draw, dtype, shape):
    info = np.iinfo(dtype)
    return draw(hnp.arrays(dtype, shape, elements=st.integers(int(info.min), int(info.max))))


def scalar(draw, dtype):
    return values(draw, dtype, ())


def full_range(dtype):
    info = np.iinfo(dtype)
    return np.arange(int(info.min), int(info.max) + 1).astype(dtype)


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


def _overflow_inputs(op_type, big):
    """uint8, zero points 0, real value big * 2**24 in output steps (scale ratio 2**24)."""
    q, one, zero, tiny = np.array([127, 128 if big else 127], np.uint8), np.float32(1), np.uint8(0), np.float32(2.0**-24)
    if op_type == "QLinearAveragePool":
        return [("x", q.reshape(1, 1, 2)), ("xs", one), ("xz", zero), ("ys", tiny), ("yz", zero)]
    other = np.array([0, 0] if op_type == "QLinearAdd" else [1, 1], np.uint8)
    return [("a", q), ("as", one), ("az", zero), ("b", other), ("bs", one), ("bz", zero), ("cs", tiny), ("cz", zero)]


@pytest.mark.parametrize("op_type", ["QLinearAdd", "QLinearMul", "QLinearAveragePool"])
def test_mlas_conversion_beyond_int32_gives_qmin(op_type):
    """127 * 2**24 < 2**31 saturates to 255; 128 * 2**24 = 2**31 does not fit cvtps_epi32, whose
    INT32_MIN the saturating packs make 0 (qmin). The spec saturates both to 255."""
    attrs = {"kernel_shape": [1]} if op_type == "QLinearAveragePool" else {}
    for big, expected in ((False, [255, 255]), (True, [255, 0])):
        model = ms_model(op_type, _overflow_inputs(op_type, big), T.UINT8, **attrs)
        feeds = feeds_of(_overflow_inputs(op_type, big))
        got = run_ort(model, feeds).ravel().tolist()
        assert got == expected
        assert run_ref(model, feeds, "onnxruntime").ravel().tolist() == expected
        assert run_ref(model, feeds).ravel().tolist() == [255, 255]


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
        np.testing.assert_array_equal(_run_spec("QLinearSigmoid", inputs), [0, 255])


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


# -- QLinearAveragePool, QLinearGlobalAveragePool ----------------------------------------


@st.composite
def pool_cases(draw):
    rank = draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    kernel = [draw(st.integers(1, s)) for s in spatial]
    if draw(st.integers(0, 4)) == 0:
        kernel = list(spatial)  # onnxruntime then runs its global-average kernel
    attrs = {"kernel_shape": kernel, "strides": [draw(st.integers(1, 2)) for _ in spatial],
             "count_include_pad": draw(st.integers(0, 1)), "channels_last": draw(st.integers(0, 1)),
             "ceil_mode": draw(st.integers(0, 1)), "auto_pad": draw(st.sampled_from(["NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))}
    if attrs["auto_pad"] == "NOTSET" and draw(st.booleans()):
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel] * 2
    if attrs["auto_pad"] == "VALID":
        attrs["ceil_mode"] = 0  # onnxruntime applies ceil_mode under VALID too (spec/ops/contrib.md)
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial), attrs


def _channels_last(x, attrs):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if attrs.get("channels_last") else x


@given(case=pool_cases(), data=st.data())
def test_average_pool_matches_onnxruntime(case, data):
    shape, attrs = case
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    x = _channels_last(values(data.draw, dtype, shape), attrs)
    inputs = [("x", x), ("xs", data.draw(scales())), ("xz", scalar(data.draw, dtype)),
              ("ys", data.draw(scales())), ("yz", scalar(data.draw, dtype))]
    assume(inputs[1][1] / inputs[3][1] < 256)  # else onnxruntime's global kernel refuses ("out of computation range")
    compare("QLinearAveragePool", inputs, proto_of(dtype), **attrs)


@given(case=pool_cases(), data=st.data())
def test_global_average_pool_matches_onnxruntime(case, data):
    shape, attrs = case
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    x = _channels_last(values(data.draw, dtype, shape), attrs)
    inputs = [("x", x), ("xs", data.draw(scales())), ("xz", scalar(data.draw, dtype)),
              ("ys", data.draw(scales())), ("yz", scalar(data.draw, dtype))]
    assume(inputs[1][1] / inputs[3][1] < 256)  # else onnxruntime refuses ("out of computation range")
    compare("QLinearGlobalAveragePool", inputs, proto_of(dtype), channels_last=attrs["channels_last"])


def test_pool_differences_are_the_mlas_pipeline():
    """AveragePool adds y_zero_point before rounding in float32; GlobalAveragePool multiplies the
    exact sum by float32(x_scale / (y_scale * count)): qlinear_pipeline alone reproduces both."""
    x = np.random.default_rng(2).integers(0, 256, (1, 600, 2, 2)).astype(np.uint8)  # 600 sums of 4
    cases = [[("x", x), ("xs", np.float32(base * kx)), ("xz", np.uint8(17)), ("ys", np.float32(base * ky)), ("yz", np.uint8(100))]
             for base, kx, ky in ((0.1, 3, 2), (0.007, 1, 3), (1 / 3, 3, 2))]
    assert_differences_explained("QLinearAveragePool", cases, T.UINT8, MLAS, kernel_shape=[2, 1])
    assert_differences_explained("QLinearGlobalAveragePool", cases, T.UINT8, MLAS)


def test_average_pool_counts_taps_inside_the_input():
    """x = 1..4 in one row, kernel 3, pads 1: the first window holds 1, 2 (mean 1.5, or 1.0 with the pad counted)."""
    x = np.array([[[10, 20, 30, 40]]], np.uint8)
    inputs = [("x", x), ("xs", np.float32(1)), ("xz", np.uint8(0)), ("ys", np.float32(1)), ("yz", np.uint8(0))]
    for include_pad, expected in ((0, [15, 20, 30, 35]), (1, [10, 20, 30, 23])):
        got = _run_spec("QLinearAveragePool", inputs, kernel_shape=[3], pads=[1, 1], count_include_pad=include_pad)
        np.testing.assert_array_equal(got[0, 0], expected)


# -- QLinearReduceMean (no onnxruntime kernel: exact rationals) ---------------------------


@given(data=st.data())
def test_reduce_mean_equals_exact_rational_mean(data):
    dtype = data.draw(st.sampled_from(EIGHT_BIT))
    x = values(data.draw, dtype, data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)))
    axes = data.draw(st.lists(st.integers(-x.ndim, x.ndim - 1), min_size=1, max_size=x.ndim, unique_by=lambda a: a % x.ndim))
    keepdims = data.draw(st.integers(0, 1))
    xs, ys = data.draw(scales()), data.draw(scales())
    xz, yz = scalar(data.draw, dtype), scalar(data.draw, dtype)
    inputs = [("x", x), ("xs", xs), ("xz", xz), ("ys", ys), ("yz", yz)]
    model = ms_model("QLinearReduceMean", inputs, proto_of(dtype), axes=axes, keepdims=keepdims)
    got = run_ref(model, feeds_of(inputs))
    normalized = tuple(a % x.ndim for a in axes)
    sums = (x.astype(np.int64) - int(xz)).sum(axis=normalized, keepdims=bool(keepdims))
    count = int(np.prod([x.shape[a] for a in normalized]))
    info = np.iinfo(dtype)
    exact = [round(Fraction(float(xs)) * int(s) / count / Fraction(float(ys))) + int(yz) for s in sums.ravel()]
    np.testing.assert_array_equal(got, np.clip(exact, info.min, info.max).astype(dtype).reshape(sums.shape))
    assert_bit_exact(run_ref(model, feeds_of(inputs), "onnxruntime"), got)  # one answer in every profile


# -- QGemm, MatMulIntegerToFloat, DynamicQuantizeMatMul ------------------------------------

#: (A, B) types onnxruntime's CPU kernels accept
GEMM_TYPES = [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]


def _b_params(data, b_type, n):
    shape = data.draw(st.sampled_from([(), (n,)]))
    return (data.draw(hnp.arrays(np.float32, shape, elements=st.floats(2.0**-8, 1.0, width=32))),
            values(data.draw, b_type, shape))


@given(data=st.data())
def test_qgemm_matches_onnxruntime(data):
    a_type, b_type = data.draw(st.sampled_from(GEMM_TYPES))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    trans_a, trans_b = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))
    a = values(data.draw, a_type, (k, m) if trans_a else (m, k))
    b = values(data.draw, b_type, (n, k) if trans_b else (k, n))
    b_scale, b_zp = _b_params(data, b_type, n)
    c = data.draw(st.none() | hnp.arrays(np.int32, st.sampled_from([(n,), (m, n), (1, n)]), elements=st.integers(-5000, 5000)))
    quantized = data.draw(st.booleans())
    inputs = [("a", a), ("as", data.draw(scales())), ("az", scalar(data.draw, a_type)), ("b", b), ("bs", b_scale), ("bz", b_zp),
              ("c", c), ("ys", data.draw(scales()) if quantized else None), ("yz", scalar(data.draw, a_type) if quantized else None)]
    alpha = data.draw(st.sampled_from([1.0, 0.5, 1.7]))
    compare("QGemm", inputs, proto_of(a_type) if quantized else T.FLOAT, transA=trans_a, transB=trans_b, alpha=alpha)


@given(data=st.data())
def test_matmul_integer_to_float_matches_onnxruntime(data):
    a_type, b_type = data.draw(st.sampled_from(GEMM_TYPES))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    batch = data.draw(st.sampled_from([(), (2,)]))
    b_scale, b_zp = _b_params(data, b_type, n)
    inputs = [("a", values(data.draw, a_type, (*batch, m, k))), ("b", values(data.draw, b_type, (k, n))), ("as", data.draw(scales())),
              ("bs", b_scale), ("az", scalar(data.draw, a_type)), ("bz", b_zp),
              ("bias", data.draw(st.none() | hnp.arrays(np.float32, (n,), elements=st.floats(-4, 4, width=32))))]
    compare("MatMulIntegerToFloat", inputs, T.FLOAT)


@given(data=st.data())
def test_dynamic_quantize_matmul_matches_onnxruntime(data):
    b_type = data.draw(st.sampled_from(EIGHT_BIT))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    b_scale, b_zp = _b_params(data, b_type, n)
    inputs = [("a", data.draw(hnp.arrays(np.float32, (m, k), elements=st.floats(-100, 100, width=32)))),
              ("b", values(data.draw, b_type, (k, n))), ("bs", b_scale), ("bz", b_zp),
              ("bias", data.draw(st.none() | hnp.arrays(np.float32, (n,), elements=st.floats(-4, 4, width=32))))]
    compare("DynamicQuantizeMatMul", inputs, T.FLOAT)


def test_float_output_differences_are_float32_scaling():
    """onnxruntime scales float32(acc) by float32(a_scale * b_scale) in float32 and adds the bias in
    float32; spec rounds the exact real once. requantize_precision="float32" alone reproduces it."""
    rng = np.random.default_rng(3)
    cases = [[("a", rng.integers(0, 256, (4, 9)).astype(np.uint8)), ("b", rng.integers(-128, 128, (9, 5)).astype(np.int8)),
              ("as", np.float32(rng.uniform(0.01, 0.1))), ("bs", rng.uniform(0.01, 0.1, 5).astype(np.float32)),
              ("az", np.uint8(rng.integers(0, 256))), ("bz", np.zeros(5, np.int8)),
              ("bias", rng.uniform(-3, 3, 5).astype(np.float32))] for _ in range(4)]
    assert_differences_explained("MatMulIntegerToFloat", cases, T.FLOAT, FLOAT32_REQUANTIZE)


# -- QLinearConv (channels_last), QuantizeLinear / DequantizeLinear -------------------------


@given(data=st.data())
def test_qlinearconv_channels_last_matches_onnxruntime(data):
    x_type, w_type = data.draw(st.sampled_from(GEMM_TYPES))
    channels, out_channels, rank = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    spatial = [data.draw(st.integers(k, 5)) for k in kernel]
    channels_last = data.draw(st.integers(0, 1))
    x = values(data.draw, x_type, (1, *spatial, channels) if channels_last else (1, channels, *spatial))
    inputs = [("x", x), ("xs", data.draw(scales())), ("xz", scalar(data.draw, x_type)),
              ("w", values(data.draw, w_type, (out_channels, channels, *kernel))), ("ws", data.draw(scales())),
              ("wz", scalar(data.draw, w_type)), ("ys", data.draw(scales(0.5, 4.0))), ("yz", scalar(data.draw, x_type)),
              ("bias", data.draw(st.none() | hnp.arrays(np.int32, (out_channels,), elements=st.integers(-1000, 1000))))]
    compare("QLinearConv", inputs, proto_of(x_type), channels_last=channels_last,
            pads=[data.draw(st.integers(0, 1)) for _ in range(2 * rank)])


def test_qlinearconv_channels_last_is_the_transposed_channels_first():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 3, 5, 4)).astype(np.uint8)
    w = rng.integers(-128, 128, (4, 3, 2, 2)).astype(np.int8)
    params = [("xs", np.float32(0.02)), ("xz", np.uint8(128)), ("w", w), ("ws", np.float32(0.01)), ("wz", np.int8(0)),
              ("ys", np.float32(0.05)), ("yz", np.uint8(120))]
    first = _run_spec("QLinearConv", [("x", x), *params])
    last = _run_spec("QLinearConv", [("x", np.ascontiguousarray(np.moveaxis(x, 1, -1))), *params], channels_last=1)
    np.testing.assert_array_equal(last, np.moveaxis(first, 1, -1))


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


# -- errors ---------------------------------------------------------------------------


def _add_inputs(a, b, **overrides):
    inputs = {"a": a, "as": np.float32(0.1), "az": np.zeros((), a.dtype), "b": b, "bs": np.float32(0.1),
              "bz": np.zeros((), a.dtype), "cs": np.float32(0.1), "cz": np.zeros((), a.dtype)} | overrides
    return list(inputs.items())


def _run_spec(op_type, inputs, out_type=T.UINT8, **attrs):
    return run_ref(ms_model(op_type, inputs, out_type, **attrs), feeds_of(inputs))


@pytest.mark.parametrize(
    "op_type, inputs, attrs, error, match",
    [
        ("QLinearAdd", _add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.uint8), az=np.int8(0)), {}, DTypeError,
         "A_zero_point has type int8, it must match A"),
        ("QLinearAdd", _add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.int8)), {}, DTypeError, "B has type int8"),
        ("QLinearAdd", _add_inputs(np.zeros((2, 3), np.uint8), np.zeros(4, np.uint8)), {}, ShapeError, "do not broadcast"),
        ("QLinearMul", _add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.uint8), cs=np.float32(0)), {}, QuantParamError,
         "C_scale must be finite and > 0"),
        ("QLinearMul", _add_inputs(np.zeros(3, np.uint8), np.zeros(3, np.uint8), bs=np.float32([0.1, 0.2])), {},
         QuantParamError, "B_scale must be a scalar"),
        ("QLinearAdd", _add_inputs(np.zeros(3, np.uint16), np.zeros(3, np.uint16)), {}, DTypeError, "A has type uint16"),
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
        ("QLinearAveragePool", [("x", np.zeros((1, 1, 4), np.uint8)), ("xs", np.float32(1)), ("xz", None), ("ys", np.float32(1)),
                                ("yz", None)], {"kernel_shape": [2], "pads": [3, 0]}, AttributeValueError, "pool padding only"),
        ("QLinearGlobalAveragePool", [("x", np.zeros((1, 4), np.uint8)), ("xs", np.float32(1)), ("xz", np.uint8(0)),
                                      ("ys", np.float32(1)), ("yz", np.uint8(0))], {}, ShapeError, "at least one spatial axis"),
        ("QLinearReduceMean", [("x", np.zeros((2, 3), np.uint8)), ("xs", np.float32(1)), ("xz", None), ("ys", np.float32(1)),
                               ("yz", None)], {"axes": [1, -1], "keepdims": 1}, AttributeValueError, "name an axis twice"),
    ],
)
def test_invalid_inputs_raise_clear_errors(op_type, inputs, attrs, error, match):
    with pytest.raises(error, match=match):
        _run_spec(op_type, inputs, **attrs)


@pytest.mark.parametrize(
    "op_type, inputs, attrs, error, match",
    [
        ("QGemm", [("a", np.zeros((2, 3), np.uint8)), ("as", np.float32(1)), ("az", np.uint8(0)), ("b", np.zeros((3, 2), np.uint8)),
                   ("bs", np.float32(1)), ("bz", np.uint8(0)), ("c", None), ("ys", np.float32(1))], {}, QuantParamError,
         "y_scale and y_zero_point come together"),
        ("QGemm", [("a", np.zeros((2, 3), np.uint8)), ("as", np.float32(1)), ("az", np.uint8(0)), ("b", np.zeros((4, 2), np.uint8)),
                   ("bs", np.float32(1)), ("bz", np.uint8(0))], {}, ShapeError, "inner dimensions 3 and 4 differ"),
        ("QGemm", [("a", np.zeros((2, 3), np.uint8)), ("as", np.float32(1)), ("az", np.uint8(0)), ("b", np.zeros((3, 2), np.uint8)),
                   ("bs", np.ones(3, np.float32)), ("bz", np.zeros(3, np.uint8))], {}, QuantParamError, "expected one per column"),
        ("MatMulIntegerToFloat", [("a", np.zeros((2, 3), np.uint8)), ("b", np.zeros((3, 2), np.uint8)), ("as", np.ones(2, np.float32)),
                                  ("bs", np.float32(1))], {}, QuantParamError, "cannot be factored out"),
        ("MatMulIntegerToFloat", [("a", np.zeros((2, 3), np.uint8)), ("b", np.zeros((3, 2), np.uint8)), ("as", np.float32(1)),
                                  ("bs", np.float32(1)), ("az", None), ("bz", None), ("bias", np.zeros(3, np.float32))], {},
         ShapeError, "one value per column of B"),
        ("MatMulIntegerToFloat", [("a", np.zeros((2, 3), np.uint8)), ("b", np.zeros((3, 2), np.uint8)), ("as", np.float32(1)),
                                  ("bs", np.float32(1)), ("az", np.int8(0))], {}, DTypeError, "a_zero_point has type int8"),
        ("DynamicQuantizeMatMul", [("a", np.zeros((2, 3), np.float32)), ("b", np.zeros((2, 2), np.int8)), ("bs", np.float32(1))], {},
         ShapeError, "inner dimensions 3 and 2 differ"),
        ("QuantizeLinear", [("x", np.zeros((2, 3), np.float32)), ("s", np.ones(3, np.float32)), ("z", np.zeros(3, np.uint8))], {},
         QuantParamError, "without the 'axis' attribute"),
        ("QuantizeLinear", [("x", np.zeros((2, 3), np.float32)), ("s", np.ones(3, np.float32)), ("z", np.zeros(3, np.uint8))],
         {"axis": 2}, QuantParamError, "axis 2 is out of range"),
        ("DequantizeLinear", [("x", np.zeros(3, np.uint16)), ("s", np.float32(1)), ("z", np.int16(0))], {}, DTypeError,
         "x_zero_point has type int16"),
        ("QLinearConv", [("x", np.zeros((1, 4, 4, 3), np.uint8)), ("xs", np.float32(1)), ("xz", np.uint8(0)),
                         ("w", np.zeros((2, 2, 1, 1), np.uint8)), ("ws", np.float32(1)), ("wz", np.uint8(0)), ("ys", np.float32(1)),
                         ("yz", np.uint8(0))], {"channels_last": 1}, ShapeError, "input channels per group"),
    ],
)
def test_invalid_linear_inputs_raise_clear_errors(op_type, inputs, attrs, error, match):
    with pytest.raises(error, match=match):
        _run_spec(op_type, inputs, T.FLOAT, **attrs)


_X8 = np.arange(0, 256, 7, dtype=np.uint8).reshape(1, 1, 37)


@pytest.mark.parametrize(
    "op_type, inputs, attrs",
    [
        ("QLinearAdd", _add_inputs(_X8, _X8[..., ::-1].copy()), {}),
        ("QLinearMul", _add_inputs(_X8, _X8[..., ::-1].copy()), {}),
        ("QLinearSigmoid", [("x", _X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(1 / 256)), ("yz", np.uint8(0))], {}),
        ("QLinearLeakyRelu", [("x", _X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(0.1)), ("yz", np.uint8(0))], {}),
        ("QLinearAveragePool", [("x", _X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(0.1)), ("yz", np.uint8(0))],
         {"kernel_shape": [3]}),
        ("QLinearReduceMean", [("x", _X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(0.1)), ("yz", np.uint8(0))],
         {"axes": [2]}),
        ("QuantizeLinear", [("x", np.linspace(-3, 300, 11, dtype=np.float32)), ("s", np.float32(0.7)), ("z", np.uint8(0))], {}),
        ("DequantizeLinear", [("x", _X8), ("s", np.float32(0.7)), ("z", np.uint8(0))], {}),
    ],
)
@pytest.mark.parametrize("profile", ["spec", "onnxruntime"])
def test_omitted_zero_points_are_zero(op_type, inputs, attrs, profile):
    omitted = [(name, None if name.endswith("z") else value) for name, value in inputs]
    out_type = T.FLOAT if op_type == "DequantizeLinear" else T.UINT8
    with_zeros = run_ref(ms_model(op_type, inputs, out_type, **attrs), feeds_of(inputs), profile)
    without = run_ref(ms_model(op_type, omitted, out_type, **attrs), feeds_of(omitted), profile)
    assert_bit_exact(without, with_zeros)


def test_onnxruntime_scales_bias_by_per_row_a_scale():
    """A documented onnxruntime defect, not an arithmetic option: with a per-row a_scale it adds the bias
    before multiplying by a_scale. refquant follows the formula Y = acc * a_scale * b_scale + bias."""
    inputs = [("a", np.array([[1, 2], [3, 4]], np.uint8)), ("b", np.eye(2, dtype=np.uint8)),
              ("as", np.array([[2.0], [3.0]], np.float32)), ("bs", np.float32(1)), ("az", np.uint8(0)),
              ("bz", np.uint8(0)), ("bias", np.array([10, 20], np.float32))]
    model = ms_model("MatMulIntegerToFloat", inputs, T.FLOAT)
    np.testing.assert_array_equal(run_ort(model, feeds_of(inputs)), [[22, 44], [39, 72]])
    for profile in ("spec", "onnxruntime"):
        np.testing.assert_array_equal(run_ref(model, feeds_of(inputs), profile), [[12, 24], [19, 32]])


@given(data=st.data())
def test_matmul_integer_to_float_per_row_and_per_column_parameters(data):
    """spec: Y = (A - a_zp) @ (B - b_zp) * a_scale * b_scale + bias, from an int64 broadcast-and-sum
    and float64 numpy (onnxruntime departs from the formula here, see the test above)."""
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    batch = data.draw(st.sampled_from([(), (2,)]))
    a = values(data.draw, np.uint8, (*batch, m, k))
    b = values(data.draw, np.int8, (k, n))
    positive = st.floats(2.0**-8, 1.0, width=32)
    a_scale = data.draw(hnp.arrays(np.float32, (m, 1), elements=positive))
    b_scale = data.draw(hnp.arrays(np.float32, (n,), elements=positive))
    a_zp, b_zp = values(data.draw, np.uint8, ()), values(data.draw, np.int8, (n,))
    bias = data.draw(hnp.arrays(np.float32, (n,), elements=st.floats(-4, 4, width=32)))
    inputs = [("a", a), ("b", b), ("as", a_scale), ("bs", b_scale), ("az", a_zp), ("bz", b_zp), ("bias", bias)]
    got = run_ref(ms_model("MatMulIntegerToFloat", inputs, T.FLOAT), feeds_of(inputs))
    centered_a = a.astype(np.int64) - int(a_zp)
    centered_b = b.astype(np.int64) - b_zp.astype(np.int64)
    acc = (centered_a[..., :, :, None] * centered_b[None, :, :]).sum(axis=-2)
    real = acc.astype(np.float64) * (a_scale.astype(np.float64) * b_scale.astype(np.float64)) + bias.astype(np.float64)
    assert_bit_exact(got, real.astype(np.float32))


# -- NhwcMaxPool ---------------------------------------------------------------------------------------------------


def test_nhwc_max_pool_by_hand():
    """A 1x3x3x2 NHWC tensor, 2x2 windows, stride 1: each output is the largest stored value of its window,
    channel by channel (read off the array below)."""
    x = np.array([[[[1, 9], [5, 0], [2, 2]],
                   [[7, 3], [0, 8], [6, 1]],
                   [[3, 3], [4, 7], [9, 9]]]], np.uint8)  # fmt: skip
    model = ms_model("NhwcMaxPool", [("x", x)], T.UINT8, kernel_shape=[2, 2])
    expected = np.array([[[[7, 9], [6, 8]],
                          [[7, 8], [9, 9]]]], np.uint8)  # fmt: skip
    assert_bit_exact(run_ref(model, {"x": x}), expected)


@given(data=st.data())
def test_nhwc_max_pool_matches_onnxruntime(data):
    dtype = data.draw(st.sampled_from([np.uint8, np.int8]))
    spatial = data.draw(st.lists(st.integers(2, 6), min_size=1, max_size=2))
    x = values(data.draw, dtype, (1, *spatial, data.draw(st.integers(1, 4))))
    kernel = [data.draw(st.integers(1, s)) for s in spatial]
    attrs = {"kernel_shape": kernel, "strides": [data.draw(st.integers(1, 2)) for _ in spatial]}
    if data.draw(st.booleans()):
        attrs["pads"] = [data.draw(st.integers(0, k - 1)) for k in kernel] * 2
    model = ms_model("NhwcMaxPool", [("x", x)], proto_of(np.dtype(dtype)), **attrs)
    assert_bit_exact(run_ref(model, {"x": x}), run_ort(model, {"x": x}))
