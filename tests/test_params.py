"""refquant.params against onnxruntime's quantization tool (compute_scale_zp, get_qmin_qmax_for_qType)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto as T

from refquant import params
from refquant.errors import DTypeError, QuantParamError

quant_utils = pytest.importorskip("onnxruntime.quantization.quant_utils")
import onnxruntime  # noqa: E402

ORT_VERSION = tuple(int(p) for p in onnxruntime.__version__.split(".")[:2])
#: onnxruntime >= 1.32 treats float16 scales as degenerate only when they round to 0
FP16_SUBNORMAL = ORT_VERSION >= (1, 32)

TYPES = {"uint8": T.UINT8, "int8": T.INT8, "uint16": T.UINT16, "int16": T.INT16, "uint4": T.UINT4, "int4": T.INT4}


def ort_scale_zp(rmin, rmax, name, symmetric, reduce_range, min_real_range=None):
    qmin, qmax = quant_utils.get_qmin_qmax_for_qType(TYPES[name], reduce_range, symmetric)
    zero_point, scale = quant_utils.compute_scale_zp(rmin, rmax, qmin, qmax, symmetric, min_real_range)
    return scale, zero_point


def assert_same(got, expected):
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == np.shape(expected)
    assert got.tobytes() == np.asarray(expected).tobytes(), (got, expected)


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduce_range", [False, True])
def test_qrange_matches_onnxruntime(name, symmetric, reduce_range):
    qmin, qmax = quant_utils.get_qmin_qmax_for_qType(TYPES[name], reduce_range, symmetric)
    assert params.qrange(name, symmetric=symmetric, reduce_range=reduce_range) == (int(qmin), int(qmax))
    assert params.qrange(TYPES[name], symmetric=symmetric, reduce_range=reduce_range) == (int(qmin), int(qmax))


@pytest.mark.parametrize(
    "name, symmetric, reduce_range, zero_point, scale",
    [
        ("int8", False, False, -43, 3 / 255),
        ("int8", True, False, 0, 2 / 127),
        ("uint8", False, False, 85, 3 / 255),
        ("uint8", True, False, 128, 4 / 255),
        ("uint8", False, True, 42, 3 / 127),
    ],
)
def test_documented_examples(name, symmetric, reduce_range, zero_point, scale):
    """rmin = -1, rmax = 2 (facts file examples, hand-derived)."""
    got_scale, got_zp = params.compute_scale_zero_point(-1.0, 2.0, name, symmetric=symmetric, reduce_range=reduce_range)
    assert got_scale.dtype == np.float32 and got_scale == np.float32(scale)
    assert got_zp == zero_point


def test_degenerate_ranges():
    scale, zp = params.compute_scale_zero_point([5.0, -5.0, 0.0], [5.0, -5.0, 0.0], "uint8")
    assert scale.tolist() == [np.float32(5 / 255), np.float32(5 / 255), 1.0]
    assert zp.tolist() == [0, 255, 0]


def test_tiny_scale_rule_of_onnxruntime_1_31_for_float16():
    """1.31: scale64 < tiny(float16) = 2**-14 gives (1, 0); 1.32 keeps the subnormal scale."""
    rmax = np.float16(2.0**-14 * 255 / 2)  # scale64 = 2**-15: subnormal in float16
    scale, zp = params.compute_scale_zero_point(np.float16(0), rmax, "uint8")
    assert (scale, zp) == (np.float16(1.0), 0)
    scale, zp = params.compute_scale_zero_point(np.float16(0), rmax, "uint8", fp16_subnormal_scales=True)
    assert scale == np.float16(2.0**-15) and scale.dtype == np.float16 and zp == 0


range_values = st.one_of(
    st.floats(-(2.0**20), 2.0**20, width=32),
    st.floats(-(2.0**-100), 2.0**-100, width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 3.4e38, -3.4e38, 1e-45, 1.1754944e-38, 1e-3, -2e-3, 6e-8]),
)


@given(
    rmin=range_values,
    rmax=range_values,
    name=st.sampled_from(list(TYPES)),
    symmetric=st.booleans(),
    reduce_range=st.booleans(),
    min_real_range=st.sampled_from([None, 0.0001, 1.0]),
    dtype=st.sampled_from([np.float32, np.float16]),
)
def test_scale_zero_point_bit_identical(rmin, rmax, name, symmetric, reduce_range, min_real_range, dtype):
    with np.errstate(over="ignore"):
        lo, hi = np.array(rmin, dtype), np.array(rmax, dtype)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return  # float16 overflow: a non-finite range is an error in refquant (test_non_finite_range)
    expected = ort_scale_zp(lo, hi, name, symmetric, reduce_range, min_real_range)
    got = params.compute_scale_zero_point(
        lo,
        hi,
        name,
        symmetric=symmetric,
        reduce_range=reduce_range,
        min_real_range=min_real_range,
        fp16_subnormal_scales=FP16_SUBNORMAL,
    )
    assert_same(got[0], expected[0])
    assert_same(got[1], expected[1])


@given(st.lists(st.tuples(range_values, range_values), min_size=1, max_size=6), st.sampled_from(list(TYPES)))
def test_per_channel_is_elementwise(pairs, name):
    lows = np.array([p[0] for p in pairs], np.float32)
    highs = np.array([p[1] for p in pairs], np.float32)
    scale, zp = params.compute_scale_zero_point(lows, highs, name)
    for i, (lo, hi) in enumerate(zip(lows, highs)):
        expected_scale, expected_zp = ort_scale_zp(np.array(lo), np.array(hi), name, False, False)
        assert scale[i] == expected_scale and zp[i] == expected_zp


@given(st.floats(2.0**-14, 2.0**15, width=32), st.sampled_from([np.float32, np.float16]))
def test_float8_scale(std, dtype):
    std = np.array(std, dtype)
    expected_zp, expected_scale = quant_utils.compute_scale_zp_float8(T.FLOAT8E4M3FN, std)
    scale, zp = params.float8_scale_zero_point(std)
    assert_same(scale, expected_scale)
    assert zp.dtype == expected_zp.dtype and float(zp) == 0.0


def test_float8_std_constant():
    """The 254 finite E4M3FN values: +-0, 126 positive magnitudes, their negatives; std about 100.0577."""
    assert abs(float(params.FLOAT8_E4M3FN_STD) - 100.0577) < 1e-3


@given(
    st.lists(st.floats(-(2.0**14), 2.0**14, width=32), min_size=1, max_size=40),
    st.floats(2.0**-10, 10.0, width=32),
    st.sampled_from(["uint8", "int8", "uint16", "int16"]),
    st.integers(0, 255),
)
def test_quantize_matches_onnxruntime_quantize_nparray(values, scale, name, zp_seed):
    qmin, qmax = params.qrange(name)
    zero_point = np.array(qmin + zp_seed % (qmax - qmin + 1), dtype=params._resolve(name).dtype)
    x, scale = np.array(values, np.float32), np.array(scale, np.float32)
    expected = quant_utils.quantize_nparray(TYPES[name], x, scale, zero_point)
    got = params.quantize(x, scale, zero_point, name)
    assert_same(got, expected)
    # dequantize: (q - zp) * scale is exact in float64, rounded once to float32
    back = params.dequantize(got, scale, zero_point)
    assert_same(back, ((got.astype(np.float64) - float(zero_point)) * float(scale)).astype(np.float32))


def test_quantize_per_axis_and_blocked():
    x = np.array([[1.0, -2.0, 3.0, 4.0], [0.5, 0.25, -8.0, 6.0]], np.float32)
    scale = np.array([0.5, 2.0], np.float32)
    zp = np.array([1, -1], np.int8)
    q = params.quantize(x, scale, zp, "int8", axis=0)
    assert q.tolist() == [[3, -3, 7, 9], [-1, -1, -5, 2]]  # round-half-even(x / s) + zp, by hand
    assert params.dequantize(q, scale, zp, axis=0).tolist() == [[1.0, -2.0, 3.0, 4.0], [0.0, 0.0, -8.0, 6.0]]
    blocked = params.quantize(x, np.array([[1.0, 2.0], [4.0, 8.0]], np.float32), None, "int8", axis=1, block_size=2)
    assert blocked.tolist() == [[1, -2, 2, 2], [0, 0, -1, 1]]


def test_errors_are_clear():
    with pytest.raises(QuantParamError, match="finite"):
        params.compute_scale_zero_point(np.float32("nan"), 1.0, "uint8")
    with pytest.raises(QuantParamError, match="finite"):
        params.compute_scale_zero_point(0.0, np.float32("inf"), "int8")
    with pytest.raises(DTypeError, match="not a quantized type"):
        params.qrange("int3")
    with pytest.raises(DTypeError, match="no integer quantization range"):
        params.qrange("float8e4m3fn")
    with pytest.raises(DTypeError, match="float8e4m3fn only"):
        params.float8_scale_zero_point(np.float32(1.0), "float8e5m2")
    with pytest.raises(QuantParamError, match="> 0"):
        params.quantize(np.ones(3, np.float32), np.float32(0.0), np.uint8(0), "uint8")
    with pytest.raises(QuantParamError, match="zero point 300.0 is outside uint8"):
        params.quantize(np.ones(3, np.float32), np.float32(1.0), 300, "uint8")
    with pytest.raises(QuantParamError, match="scalar"):
        params.quantize(np.ones((2, 3), np.float32), np.ones(2, np.float32), np.zeros(2, np.uint8), "uint8")
