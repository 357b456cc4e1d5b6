"""com.microsoft pooling and reduction quantized ops: refquant/ops/contrib_pool.py (QLinearAveragePool,
QLinearGlobalAveragePool, QLinearReduceMean, NhwcMaxPool; spec/ops/contrib.md).

Expected values come from onnxruntime's CPU kernels (graph optimizations off), on hypothesis-drawn inputs:
- the "onnxruntime" profile reproduces ort-cpu bit for bit;
- wherever the "spec" profile differs from ort-cpu, a named divergence reproduces the difference, given the
  integer kernels of this host (SPEC_HERE: avx2_u8s8_saturation as the "onnxruntime" profile has it);
- for the average pools, inputs where spec and ort-cpu differ, and the one profile option
  (qlinear_pipeline) that turns spec's answer into ort's.
QLinearReduceMean has no onnxruntime CPU kernel: it is checked against exact rational arithmetic.
Hand-derived values: NhwcMaxPool by hand, the taps an average counts, errors.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T

from refquant.dtypes import proto_of
from refquant.errors import AttributeValueError, ShapeError

from ..helpers import assert_bit_exact
from .contrib_helpers import (
    EIGHT_BIT,
    MLAS,
    X8,
    assert_differences_explained,
    assert_mlas_conversion_beyond_int32_gives_qmin,
    assert_omitted_zero_points_are_zero,
    compare,
    feeds_of,
    ms_model,
    run_ort,
    run_ref,
    run_spec,
    scalar,
    scales,
    values,
)

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


@pytest.mark.parametrize("op_type", ["QLinearAveragePool"])
def test_mlas_conversion_beyond_int32_gives_qmin(op_type):
    assert_mlas_conversion_beyond_int32_gives_qmin(op_type)


def test_average_pool_counts_taps_inside_the_input():
    """x = 1..4 in one row, kernel 3, pads 1: the first window holds 1, 2 (mean 1.5, or 1.0 with the pad counted)."""
    x = np.array([[[10, 20, 30, 40]]], np.uint8)
    inputs = [("x", x), ("xs", np.float32(1)), ("xz", np.uint8(0)), ("ys", np.float32(1)), ("yz", np.uint8(0))]
    for include_pad, expected in ((0, [15, 20, 30, 35]), (1, [10, 20, 30, 23])):
        got = run_spec("QLinearAveragePool", inputs, kernel_shape=[3], pads=[1, 1], count_include_pad=include_pad)
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


# -- errors, omitted zero points -------------------------------------------------------


@pytest.mark.parametrize(
    "op_type, inputs, attrs, error, match",
    [
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
        run_spec(op_type, inputs, **attrs)


@pytest.mark.parametrize(
    "op_type, inputs, attrs",
    [
        ("QLinearAveragePool", [("x", X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(0.1)), ("yz", np.uint8(0))],
         {"kernel_shape": [3]}),
        ("QLinearReduceMean", [("x", X8), ("xs", np.float32(0.05)), ("xz", np.uint8(0)), ("ys", np.float32(0.1)), ("yz", np.uint8(0))],
         {"axes": [2]}),
    ],
)
@pytest.mark.parametrize("profile", ["spec", "onnxruntime"])
def test_omitted_zero_points_are_zero(op_type, inputs, attrs, profile):
    assert_omitted_zero_points_are_zero(op_type, inputs, attrs, profile)
