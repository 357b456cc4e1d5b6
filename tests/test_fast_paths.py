"""The fast paths stay exact at their bounds.

Integer products go through float32 BLAS while every partial sum stays below 2**24, through
float32 K-chunks added in float64 beyond, and prepare constant weights once per Session. These
tests drive them with extreme operands (every value at a type limit), K at and just past the
float32 chunk limit, every zero-point combination, and compare with int64 numpy formulas. The
float32 forms of quantize, dequantize and requantize are compared with the general ones on the
values where rounding and saturation are delicate.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import TensorProto as T

import refquant
from refquant import arith, exact_products
from refquant.dtypes import proto_of, qtype
from refquant.errors import NonFiniteError

from .helpers import single_node_model

LIMITS = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}
EIGHT_BIT = (np.dtype(np.uint8), np.dtype(np.int8))


def extreme_arrays(dtype, shape, low: int, high: int):
    """Arrays whose values sit mostly at ``low`` or ``high`` (the largest terms), with a few values between."""
    return arrays(dtype, shape, elements=st.integers(low, high), fill=st.sampled_from([low, high]))


def quantized(dtype, shape):
    low, high = LIMITS[np.dtype(dtype)]
    return extreme_arrays(np.dtype(dtype), shape, low, high)


def zero_points(dtype):
    """A type's limits, its middle, or anything in between."""
    low, high = LIMITS[np.dtype(dtype)]
    return st.one_of(st.sampled_from([low, high, (low + high + 1) // 2]), st.integers(low, high))


# -- exact_float_matmul and exact_matmul at the chunk limit ---------------------------------------


@given(st.data())
def test_exact_matmul_with_k_at_and_past_the_float32_limit(data):
    magnitude = data.draw(st.sampled_from([127, 128, 255]), label="max |a| = max |b|")
    term = magnitude * magnitude
    limit = (2**24 - 1) // term  # the longest K whose partial sums surely stay below 2**24
    k = data.draw(st.sampled_from([limit - 1, limit, limit + 1, 2 * limit, 2 * limit + 1]), label="K")
    m, n = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    a = data.draw(extreme_arrays(np.int16, (m, k), -magnitude, magnitude))
    b = data.draw(extreme_arrays(np.int16, (k, n), -magnitude, magnitude))
    assert np.array_equal(exact_products.exact_matmul(a, b), a.astype(np.int64) @ b.astype(np.int64))


@given(st.data())
def test_exact_float_matmul_takes_float32_chunks_past_the_limit(data):
    """All terms +255 * 255 (sums past 2**24, where one float32 product would round) plus one odd term."""
    k = data.draw(st.sampled_from([259, 300, 517, 1000]), label="K")
    a = np.full((2, k), 255.0, np.float32)
    b = np.full((k, 2), 255.0, np.float32)
    b[data.draw(st.integers(0, k - 1)), 1] = 1.0  # odd total: a lost low bit would show
    bound = 255 * int(np.abs(b).sum(axis=0).max())
    got = exact_products.exact_float_matmul(a, b, term=255 * 255, bound=bound)
    assert got.dtype == np.float64  # the chunked branch, not one float32 product
    assert np.array_equal(got.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64))


@given(st.data())
def test_exact_float_matmul_trusts_a_tight_bound_up_to_two_to_the_24(data):
    """The caller's L1 bound (max|a| times the largest column sum of |b|) just below and at 2**24."""
    k = 700  # K * max|a| * max|b| is far past 2**24, the column sums are not
    a = data.draw(extreme_arrays(np.int16, (2, k), -255, 255))
    b = np.zeros((k, 2), np.int16)
    rows = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True), label="nonzero rows")
    b[rows, 0] = 255
    b[rows[: len(rows) // 2], 1] = -255
    bound = 255 * int(np.abs(b.astype(np.int64)).sum(axis=0).max())
    got = exact_products.exact_float_matmul(a, b, term=255 * 255, bound=bound)
    assert got.dtype == (np.float32 if bound < 2**24 else np.float64)
    assert np.array_equal(got.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64))


# -- the integer kernels against int64 numpy --------------------------------------------------------


def conv_int64(x, w, group, strides, dilations, pads):
    """sum over taps and channels of x (N, C, H, W) padded with 0 times w (M, C/group, kh, kw), in int64."""
    (pt, pl, pb, pr), (sh, sw), (dh, dw) = pads, strides, dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    m, cg, kh, kw = w.shape
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((x.shape[0], m, oh, ow), np.int64)
    mg = m // group
    for g in range(group):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg : (g + 1) * cg, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]
                out[:, g * mg : (g + 1) * mg] += np.einsum("ncyx,mc->nmyx", patch, w[g * mg : (g + 1) * mg, :, i, j])
    return out


def requantize_float64(acc, multiplier, zero_point, dtype):
    """saturate(round_half_even(acc * multiplier) + zero_point), the product in float64."""
    low, high = LIMITS[np.dtype(dtype)]
    return np.clip(np.rint(acc.astype(np.float64) * multiplier) + int(zero_point), low, high).astype(dtype)


@st.composite
def conv_cases(draw):
    """Geometry of a 2-D convolution: plain, grouped, depthwise (with a channel multiplier), or with
    C * kh * kw at and past the float32 chunk limit for 255 * 255 terms (258)."""
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise", "at the limit"]))
    if kind == "at the limit":
        group, per_group, kernel, out_per_group = 1, draw(st.sampled_from([258, 259, 517])), (1, 1), 2
    else:
        group = 1 if kind == "plain" else draw(st.integers(2, 3))
        per_group = 1 if kind == "depthwise" else draw(st.integers(1, 3))
        kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        out_per_group = draw(st.integers(1, 2))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    size = (draw(st.integers(3, 6)), draw(st.integers(3, 6)))
    if any(s + p + q < (k - 1) * d + 1 for s, p, q, k, d in zip(size, pads[:2], pads[2:], kernel, dilations)):
        pads = (2, 2, 2, 2)
        dilations = (1, 1)
    x_shape = (draw(st.integers(1, 2)), group * per_group, *size)
    w_shape = (group * out_per_group, per_group, *kernel)
    attrs = {"group": group, "strides": list(strides), "dilations": list(dilations), "pads": list(pads)}
    return x_shape, w_shape, attrs


def _conv_expected(x, x_zp, w, w_zp, attrs):
    centered_w = w.astype(np.int64) - np.asarray(w_zp, np.int64).reshape(-1, 1, 1, 1)
    return conv_int64(
        x.astype(np.int64) - int(x_zp), centered_w, attrs["group"], attrs["strides"], attrs["dilations"], attrs["pads"]
    )


@given(st.data())
def test_qlinear_conv_equals_int64_numpy(data):
    x_shape, w_shape, attrs = data.draw(conv_cases())
    x_type, w_type = data.draw(st.sampled_from(EIGHT_BIT)), data.draw(st.sampled_from(EIGHT_BIT))
    y_type = data.draw(st.sampled_from(EIGHT_BIT))
    x, w = data.draw(quantized(x_type, x_shape)), data.draw(quantized(w_type, w_shape))
    x_zp = np.array(data.draw(zero_points(x_type)), x_type)
    per_channel = data.draw(st.booleans(), label="per-channel w")
    channels = w_shape[0]
    w_zp = np.array([data.draw(zero_points(w_type)) for _ in range(channels)] if per_channel else data.draw(zero_points(w_type)), w_type)
    w_scale = np.full(channels if per_channel else (), 0.002, np.float32) * np.float32(data.draw(st.sampled_from([1, 3, 7])))
    bias = data.draw(arrays(np.int32, channels, elements=st.integers(-(2**20), 2**20)))
    x_scale, y_scale = np.float32(0.05), np.float32(data.draw(st.sampled_from([0.5, 3.0, 41.0])))
    y_zp = np.array(data.draw(zero_points(y_type)), y_type)
    feeds = {"x": x}
    constants = {
        "x_scale": np.array(x_scale), "x_zero_point": x_zp, "w": w, "w_scale": w_scale, "w_zero_point": w_zp,
        "y_scale": np.array(y_scale), "y_zero_point": y_zp, "B": bias,
    }  # fmt: skip
    weights_fed = data.draw(st.booleans(), label="w fed, not an initializer")
    if weights_fed:
        feeds["w"] = constants.pop("w")
    inputs = {name: feeds.get(name, constants.get(name)) for name in ("x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point", "B")}
    model = single_node_model(
        "QLinearConv", inputs, {"y": proto_of(np.dtype(y_type))}, opset=21, attrs=attrs, initializers=constants
    )
    got = refquant.Session(model).run(None, feeds)[0]
    acc = _conv_expected(x, x_zp, w, w_zp, attrs) + bias.astype(np.int64).reshape(-1, 1, 1)
    multiplier = np.float64(x_scale) * np.asarray(w_scale, np.float64).reshape(-1, 1, 1) / np.float64(y_scale)
    assert np.array_equal(got, requantize_float64(acc, multiplier, y_zp, y_type))


@given(st.data())
def test_conv_integer_equals_int64_numpy(data):
    x_shape, w_shape, attrs = data.draw(conv_cases())
    x_type, w_type = data.draw(st.sampled_from(EIGHT_BIT)), data.draw(st.sampled_from(EIGHT_BIT))
    x, w = data.draw(quantized(x_type, x_shape)), data.draw(quantized(w_type, w_shape))
    x_zp = np.array(data.draw(zero_points(x_type)), x_type)
    w_zp = np.array(data.draw(zero_points(w_type)), w_type)
    model = single_node_model(
        "ConvInteger", {"x": x, "w": w, "x_zero_point": x_zp, "w_zero_point": w_zp}, {"y": T.INT32},
        opset=21, attrs=attrs, initializers={"w": w, "x_zero_point": x_zp, "w_zero_point": w_zp},
    )  # fmt: skip
    got = refquant.Session(model).run(None, {"x": x})[0]
    expected = _conv_expected(x, x_zp, w, w_zp, attrs)
    assert got.dtype == np.int32 and np.array_equal(got.astype(np.int64), expected)


@given(st.data())
def test_conv_integer_in_one_and_three_dimensions_equals_onnx_reference(data):
    """The wide-grid tap views and im2col in 1-D and 3-D, depthwise or not; int32 sums stay small here."""
    from onnx.reference import ReferenceEvaluator

    rank = data.draw(st.sampled_from([1, 3]), label="spatial rank")
    group = data.draw(st.sampled_from([1, 2]))
    per_group = 1 if group > 1 else data.draw(st.integers(1, 3))
    out_channels = group * data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    size = [data.draw(st.integers(3, 5)) for _ in range(rank)]
    attrs = {
        "group": group,
        "strides": [data.draw(st.integers(1, 2)) for _ in range(rank)],
        "dilations": [1] * rank,
        "pads": [data.draw(st.integers(0, 1)) for _ in range(2 * rank)],
    }
    x = data.draw(quantized(np.uint8, (1, group * per_group, *size)))
    w = data.draw(quantized(np.int8, (out_channels, per_group, *kernel)))
    x_zp = np.array(data.draw(zero_points(np.uint8)), np.uint8)
    model = single_node_model(
        "ConvInteger", {"x": x, "w": w, "x_zero_point": x_zp}, {"y": T.INT32}, opset=21, attrs=attrs,
        initializers={"w": w, "x_zero_point": x_zp},
    )  # fmt: skip
    got = refquant.Session(model).run(None, {"x": x})[0]
    assert np.array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])


@st.composite
def matmul_cases(draw):
    """(a shape, b shape): K at and past the float32 chunk limits of 8-bit terms (258, 516, 1024), or small."""
    k = draw(st.sampled_from([1, 5, 257, 258, 259, 516, 517, 1024, 1025]))
    m, n = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch = draw(st.sampled_from([(), (2,)]))
    return batch + (m, k), (k, n)


@given(st.data())
def test_qlinear_matmul_equals_int64_numpy(data):
    a_shape, b_shape = data.draw(matmul_cases())
    a_type, b_type = data.draw(st.sampled_from(EIGHT_BIT)), data.draw(st.sampled_from(EIGHT_BIT))
    y_type = data.draw(st.sampled_from(EIGHT_BIT))
    a, b = data.draw(quantized(a_type, a_shape)), data.draw(quantized(b_type, b_shape))
    a_zp, b_zp = np.array(data.draw(zero_points(a_type)), a_type), np.array(data.draw(zero_points(b_type)), b_type)
    y_zp = np.array(data.draw(zero_points(y_type)), y_type)
    a_scale, b_scale = np.array(0.02, np.float32), np.array(0.01, np.float32)
    y_scale = np.array(data.draw(st.sampled_from([0.05, 1.0, 30.0])), np.float32)
    inputs = {"a": a, "a_scale": a_scale, "a_zero_point": a_zp, "b": b, "b_scale": b_scale, "b_zero_point": b_zp,
              "y_scale": y_scale, "y_zero_point": y_zp}  # fmt: skip
    constants = {name: value for name, value in inputs.items() if name != "a"}
    if data.draw(st.booleans(), label="b fed, not an initializer"):
        constants.pop("b")
    model = single_node_model("QLinearMatMul", inputs, {"y": proto_of(np.dtype(y_type))}, opset=21, initializers=constants)
    feeds = {name: value for name, value in inputs.items() if name not in constants}
    got = refquant.Session(model).run(None, feeds)[0]
    acc = (a.astype(np.int64) - int(a_zp)) @ (b.astype(np.int64) - int(b_zp))
    multiplier = np.float64(a_scale) * np.float64(b_scale) / np.float64(y_scale)
    assert np.array_equal(got, requantize_float64(acc, multiplier, y_zp, y_type))


@given(st.data())
def test_matmul_integer_equals_int64_numpy_with_every_zero_point_layout(data):
    a_shape, b_shape = data.draw(matmul_cases())
    a_type, b_type = data.draw(st.sampled_from(EIGHT_BIT)), data.draw(st.sampled_from(EIGHT_BIT))
    a, b = data.draw(quantized(a_type, a_shape)), data.draw(quantized(b_type, b_shape))
    a_zp = data.draw(st.sampled_from(["absent", "tensor", "row"]), label="a_zero_point")
    b_zp = data.draw(st.sampled_from(["absent", "tensor", "column"]), label="b_zero_point")
    a_values = {"absent": 0, "tensor": data.draw(zero_points(a_type))}
    b_values = {"absent": 0, "tensor": data.draw(zero_points(b_type))}
    a_values["row"] = np.array([data.draw(zero_points(a_type)) for _ in range(a_shape[-2])], a_type)
    b_values["column"] = np.array([data.draw(zero_points(b_type)) for _ in range(b_shape[-1])], b_type)
    inputs = {"a": a, "b": b}
    if a_zp != "absent":
        inputs["a_zero_point"] = np.array(a_values[a_zp], a_type)
    elif b_zp != "absent":
        inputs[""] = None  # a skipped optional input keeps b_zero_point in its place
    if b_zp != "absent":
        inputs["b_zero_point"] = np.array(b_values[b_zp], b_type)
    constants = {name: value for name, value in inputs.items() if name not in ("a", "")}
    model = single_node_model("MatMulInteger", inputs, {"y": T.INT32}, opset=21, initializers=constants)
    got = refquant.Session(model).run(None, {"a": a})[0]
    a_offset = np.asarray(a_values[a_zp], np.int64).reshape(-1, 1) if a_zp == "row" else int(a_values[a_zp])
    b_offset = np.asarray(b_values[b_zp], np.int64)
    expected = (a.astype(np.int64) - a_offset) @ (b.astype(np.int64) - b_offset)
    assert got.dtype == np.int32 and np.array_equal(got.astype(np.int64), expected)


#: (type, value, zero point): centered values of +-255, the largest 8-bit terms
EXTREMES = [(np.uint8, 255, 0), (np.uint8, 0, 255), (np.int8, -128, 127), (np.int8, 127, -128)]


@pytest.mark.parametrize("k", [258, 259, 517])
@pytest.mark.parametrize("a_extreme", EXTREMES)
@pytest.mark.parametrize("b_extreme", EXTREMES[:2])
def test_integer_products_with_every_term_at_its_extreme(k, a_extreme, b_extreme):
    """K terms of +-255 * 255: the sums pass 2**24 at K = 259 and are odd, which float32 cannot hold."""
    (a_type, a_value, a_zp), (b_type, b_value, b_zp) = a_extreme, b_extreme
    expected = k * (a_value - a_zp) * (b_value - b_zp)
    a, b = np.full((2, k), a_value, a_type), np.full((k, 3), b_value, b_type)
    zero_points = {"a_zero_point": np.array(a_zp, a_type), "b_zero_point": np.array(b_zp, b_type)}
    matmul = single_node_model("MatMulInteger", {"a": a, "b": b, **zero_points}, {"y": T.INT32}, opset=21,
                               initializers={"b": b, **zero_points})  # fmt: skip
    assert (refquant.Session(matmul).run(None, {"a": a})[0] == expected).all()
    x, w = np.full((1, k, 2, 2), a_value, a_type), np.full((3, k, 1, 1), b_value, b_type)
    zero_points = {"x_zero_point": np.array(a_zp, a_type), "w_zero_point": np.array(b_zp, b_type)}
    conv = single_node_model("ConvInteger", {"x": x, "w": w, **zero_points}, {"y": T.INT32}, opset=21,
                             initializers={"w": w, **zero_points})  # fmt: skip
    assert (refquant.Session(conv).run(None, {"x": x})[0] == expected).all()


# -- prepared weights never go stale ---------------------------------------------------------------


def _conv_integer_model(w_as_initializer: np.ndarray | None, w_shape):
    w_input = w_as_initializer if w_as_initializer is not None else (T.INT8, list(w_shape))
    initializers = {"w": w_as_initializer} if w_as_initializer is not None else None
    return single_node_model(
        "ConvInteger", {"x": (T.UINT8, [1, 2, 4, 4]), "w": w_input}, {"y": T.INT32}, opset=21, initializers=initializers
    )


def test_session_constants_are_read_only_and_prepared_once():
    w = np.arange(-9, 9, dtype=np.int8).reshape(1, 2, 3, 3)
    session = refquant.Session(_conv_integer_model(w, w.shape))
    assert not session.constants["w"].flags.writeable
    x = np.arange(32, dtype=np.uint8).reshape(1, 2, 4, 4)
    first = session.run(None, {"x": x})[0]
    (node,) = session._plan
    prepared = node.cache["conv weights"]
    assert np.array_equal(session.run(None, {"x": x})[0], first)
    assert node.cache["conv weights"] is prepared  # reused, not rebuilt
    expected = conv_int64(x.astype(np.int64), w.astype(np.int64), 1, (1, 1), (1, 1), (0, 0, 0, 0))
    assert np.array_equal(first, expected)


@pytest.mark.parametrize("read_only_view", [False, True])
def test_a_fed_weight_changed_between_runs_is_read_again(read_only_view):
    """A fed array may be mutated in place between runs (also behind a read-only view): never cached."""
    x = np.arange(32, dtype=np.uint8).reshape(1, 2, 4, 4)
    buffer = np.ones((1, 2, 3, 3), np.int8)
    w = buffer.view()
    if read_only_view:
        w.setflags(write=False)
    session = refquant.Session(_conv_integer_model(None, w.shape))
    before = session.run(None, {"x": x, "w": w})[0]
    buffer[...] = -2
    after = session.run(None, {"x": x, "w": w})[0]
    assert np.array_equal(after, -2 * before)


# -- float32 forms of quantize, dequantize, requantize ------------------------------------------


def delicate_floats(scale: float):
    """Values around rounding ties and saturation of x / scale, plus specials and extremes."""
    ties = st.integers(-70000, 70000).map(lambda n: np.float32((n + 0.5) * scale))
    return st.one_of(
        ties,
        ties.map(lambda v: np.nextafter(v, np.float32(np.inf))),
        ties.map(lambda v: np.nextafter(v, np.float32(-np.inf))),
        st.floats(width=32, allow_nan=False),
        st.sampled_from([np.float32(v) for v in (0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -1e-45)]),
    )


INTEGER_TYPES = [np.uint8, np.int8, np.uint16, np.int16]


@given(st.data())
def test_quantize_fast_path_equals_the_general_path(data):
    dtype = np.dtype(data.draw(st.sampled_from(INTEGER_TYPES)))
    qt = qtype(dtype)
    scale = np.float32(data.draw(st.sampled_from([1.0, 0.1, 3.0e-3, 7.5, 1e-30])))
    x = np.array(data.draw(st.lists(delicate_floats(float(scale)), min_size=1, max_size=30)), np.float32)
    zero_point = np.array(data.draw(st.sampled_from([qt.qmin, qt.qmax, (qt.qmin + qt.qmax) // 2])), dtype)
    with np.errstate(all="ignore"):  # as in a Session: x / scale may overflow to infinity, and saturates
        expected = arith._quantize_general(
            x, np.array(scale), zero_point, qt, precision=np.float32, saturate=True, nan="error", overflow="saturate"
        )
        got = arith.quantize_values(x, np.array(scale), zero_point, qt, precision=np.float32)
    assert got.dtype == dtype and np.array_equal(got, expected)


def test_quantize_fast_path_leaves_nan_to_the_profile_rule():
    qt = qtype(np.dtype(np.uint8))
    x = np.array([1.0, np.nan], np.float32)
    with pytest.raises(NonFiniteError):
        arith.quantize_values(x, np.array(np.float32(0.5)), np.array(3, np.uint8), qt, precision=np.float32)
    got = arith.quantize_values(x, np.array(np.float32(0.5)), np.array(3, np.uint8), qt, precision=np.float32, nan="qmin")
    assert got.tolist() == [5, 0]


@given(st.data())
def test_dequantize_fast_path_equals_the_general_path(data):
    dtype = np.dtype(data.draw(st.sampled_from(INTEGER_TYPES)))
    info = np.iinfo(dtype)
    q = data.draw(arrays(dtype, st.integers(1, 40), elements=st.integers(info.min, info.max)))
    tiny, huge = float(np.float32(1e-45)), float(np.finfo(np.float32).max)
    scale = np.float32(data.draw(st.one_of(st.floats(tiny, huge, width=32), st.sampled_from([tiny, huge, 1.0]))))
    zero_point = np.array(data.draw(st.integers(info.min, info.max)), dtype)
    with np.errstate(all="ignore"):  # as in a Session: products may overflow to infinity
        expected = arith._dequantize_general(q, np.array(scale), zero_point, np.float32)
        got = arith.dequantize_values(q, np.array(scale), zero_point, np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


@given(st.data())
def test_requantize_integer_equals_requantize_of_the_sum(data):
    dtype = np.dtype(data.draw(st.sampled_from(INTEGER_TYPES)))
    qt = qtype(dtype)
    precision = data.draw(st.sampled_from(["float64", "float32", "mixed"]))
    acc = data.draw(arrays(np.int64, (3, 5), elements=st.integers(-(2**31), 2**31 - 1)))
    bias = data.draw(st.none() | arrays(np.int32, (3, 1), elements=st.integers(-(2**31), 2**31 - 1)))
    positive = st.floats(float(np.float32(1e-12)), float(np.float32(1e12)), width=32)
    scales = [np.float32(data.draw(positive)) for _ in range(2)]
    b_scale = np.array(scales[1]) if data.draw(st.booleans()) else np.full((3, 1), scales[1], np.float32) * np.float32([[1], [2], [0.5]])
    y_scale = np.float32(data.draw(positive))
    zero_point = np.array(data.draw(st.sampled_from([qt.qmin, qt.qmax, 0 if qt.qmin < 0 else 1])), dtype)
    held = acc.astype(data.draw(st.sampled_from([np.int64, np.float64])))
    with np.errstate(all="ignore"):  # as in a Session: float32 products may overflow to infinity
        expected = arith.requantize(acc + (0 if bias is None else bias), np.array(scales[0]), b_scale,
                                    np.array(y_scale), zero_point, qt, precision=precision)  # fmt: skip
        got = arith.requantize_integer(held, np.array(scales[0]), b_scale, np.array(y_scale), zero_point, qt,
                                       precision=precision, bias=bias)  # fmt: skip
    assert got.dtype == dtype and np.array_equal(got, expected)
