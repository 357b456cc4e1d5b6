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

from refquant import ort_releases  # noqa: E402
from refquant.errors import RefquantError  # noqa: E402

#: the installed onnxruntime's release ("1.32"), as refquant.ort_releases names releases
INSTALLED = ".".join(onnxruntime.__version__.split(".")[:2])

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


#: float16 ranges at the tiny-scale boundary, with the results derived by hand from the documented rules:
#: 1.31: scale64 < 2**-14 (float16's smallest normal) gives (1, 0);
#: 1.32: only float16(scale64) == 0 does, so subnormal float16 scales are kept.
#: 2039 * 2**-17 is the float16 just below 255 * 2**-14 = 2040 * 2**-17; over 255 steps the scale is
#: 2039 / 255 * 2**-17 = 1023.498... * 2**-24, rounded to the float16 subnormal 1023 * 2**-24.
FP16_BOUNDARY = [
    # rmin, rmax, type, symmetric, (1.31 scale, zp), (1.32 scale, zp)
    (0.0, 2.0**-14 * 255 / 2, "uint8", False, (1.0, 0), (2.0**-15, 0)),
    (0.0, 2039 * 2.0**-17, "uint8", False, (1.0, 0), (1023 * 2.0**-24, 0)),
    (-2039 * 2.0**-17, 0.0, "uint8", False, (1.0, 0), (1023 * 2.0**-24, 255)),  # zp = round(0 + 255.0...)
    (0.0, 2040 * 2.0**-17, "uint8", False, (2.0**-14, 0), (2.0**-14, 0)),  # scale64 = 2**-14: normal
    # symmetric int8 (-127..127): scale64 = 2 * 2**-10 / 254 = 2**-24 * 2**15 / 254 = 129.008 * 2**-24 < 2**-14,
    # rounded to the float16 subnormal 129 * 2**-24; zero point round(0 / 2) = 0
    (-(2.0**-10), 2.0**-11, "int8", True, (1.0, 0), (129 * 2.0**-24, 0)),
    # below half the smallest subnormal: 127 * 2**-24 / 255 = 0.498 * 2**-24 rounds to 0 in float16: (1, 0) in both
    (0.0, 127 * 2.0**-24, "uint8", False, (1.0, 0), (1.0, 0)),
]


@pytest.mark.parametrize("rmin, rmax, name, symmetric, rule_131, rule_132", FP16_BOUNDARY)
def test_float16_tiny_scale_rule_by_release(rmin, rmax, name, symmetric, rule_131, rule_132):
    lo, hi = np.float16(rmin), np.float16(rmax)
    assert (float(lo), float(hi)) == (rmin, rmax)  # each bound is exactly a float16
    for version, (scale, zero_point) in (("1.31", rule_131), ("1.32", rule_132), (None, rule_132)):
        got_scale, got_zp = params.compute_scale_zero_point(
            lo, hi, name, symmetric=symmetric, onnxruntime_version=version
        )
        assert got_scale.dtype == np.float16 and float(got_scale) == scale, (version, got_scale)
        assert got_zp.dtype == params._resolve(name).dtype and int(got_zp) == zero_point, (version, got_zp)


def test_float32_tiny_scale_rule_is_the_same_in_both_releases():
    """float32: scale64 < 2**-126 gives (1, 0) in 1.31 and 1.32: 2**-120 / 255 < 2**-127."""
    for version in ("1.31", "1.32"):
        scale, zp = params.compute_scale_zero_point(
            np.float32(0), np.float32(2.0**-120), "uint8", onnxruntime_version=version
        )
        assert (float(scale), int(zp)) == (1.0, 0)
        scale, zp = params.compute_scale_zero_point(
            np.float32(0), np.float32(2.0**-100), "uint8", onnxruntime_version=version
        )
        assert float(scale) == float(np.float32(2.0**-100 / 255)) and int(zp) == 0


def test_release_table():
    assert ort_releases.LATEST == ort_releases.RELEASES[-1] == "1.32"
    assert ort_releases.rules().version == "1.32"
    assert ort_releases.rules("1.31.1").fp16_degenerate_scale == "below-tiny"
    assert ort_releases.rules("1.32.0").fp16_degenerate_scale == "rounds-to-zero"
    with pytest.raises(RefquantError, match="1.20-1.23 use 0..254"):
        params.compute_scale_zero_point(-1.0, 2.0, "uint8", onnxruntime_version="1.23")
    with pytest.raises(RefquantError, match="newer than the releases refquant knows"):
        params.compute_scale_zero_point(-1.0, 2.0, "uint8", onnxruntime_version="1.99")
    with pytest.raises(RefquantError, match="must look like"):
        params.compute_scale_zero_point(-1.0, 2.0, "uint8", onnxruntime_version="latest")
    with pytest.raises(TypeError):  # the undocumented pre-release switch is gone: onnxruntime_version="1.32"
        params.compute_scale_zero_point(-1.0, 2.0, "uint8", fp16_subnormal_scales=True)


def test_installed_onnxruntime_is_a_known_release():
    """A newer onnxruntime than refquant.ort_releases knows: review its compute_scale_zp and add a row."""
    assert INSTALLED in ort_releases.RELEASES, (
        f"onnxruntime {onnxruntime.__version__} is installed; refquant.ort_releases knows {ort_releases.RELEASES}"
    )


def _ort_elementwise(lows, highs, name, symmetric, reduce_range, min_real_range=None):
    """onnxruntime's compute_scale_zp (scalars only) on each element."""
    scales, zero_points = [], []
    for lo, hi in zip(lows, highs):
        scale, zero_point = ort_scale_zp(np.array(lo), np.array(hi), name, symmetric, reduce_range, min_real_range)
        scales.append(scale)
        zero_points.append(zero_point)
    return np.array(scales), np.array(zero_points)


#: float16 and float32 ranges; the float16 ones include scales that are subnormal in float16
#: (1.31 and 1.32 differ there), zero-width, one-sided, huge and tiny ranges
RANGE_ARRAYS = {
    np.float16: (
        [0.0, 0.0, -2039 * 2.0**-17, -(2.0**-10), 0.0, -1.0, 0.0, -65504.0, -(2.0**-24), -3e-4, 5.0, -5.0],
        [2039 * 2.0**-17, 2.0**-14 * 127, 0.0, 2.0**-11, 2.0**-24 * 200, 2.0, 0.0, 65504.0, 2.0**-24, 7e-4, 5.0, -5.0],
    ),
    np.float32: (
        [0.0, -(2.0**-130), -1.0, -3.4e38, 0.0, -1e-3, 1.5, -(2.0**-120), -0.1],
        [2.0**-120, 2.0**-128, 2.0, 3.4e38, 0.0, 2e-3, 1.5, 0.0, 7.25],
    ),
}


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["float16", "float32"])
@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduce_range", [False, True])
def test_default_equals_installed_onnxruntime(dtype, name, symmetric, reduce_range):
    """The default (no onnxruntime_version) is today's release: the installed compute_scale_zp, bit for bit."""
    lows, highs = (np.array(v, dtype) for v in RANGE_ARRAYS[dtype])
    expected_scale, expected_zp = _ort_elementwise(lows, highs, name, symmetric, reduce_range)
    scale, zero_point = params.compute_scale_zero_point(
        lows, highs, name, symmetric=symmetric, reduce_range=reduce_range
    )
    assert_same(scale, expected_scale)
    assert_same(zero_point, expected_zp)


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
        onnxruntime_version=INSTALLED,
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


# ----------------------------------------------------------------------------
# edges found by mutation testing (spec/mutation.md); expected values from onnxruntime, numpy or by hand
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TYPES)
def test_qrange_defaults_are_the_full_range(name):
    """qrange(name) without keywords: onnxruntime's get_qmin_qmax_for_qType defaults (not reduced, not symmetric)."""
    qmin, qmax = quant_utils.get_qmin_qmax_for_qType(TYPES[name])
    assert params.qrange(name) == (int(qmin), int(qmax))


def test_unsupported_type_message_lists_the_table():
    import re

    with pytest.raises(DTypeError, match=re.escape("supported: uint8, int8, uint16, int16, uint4, int4") + "$"):
        params.qrange("float8e4m3fn")


@pytest.mark.parametrize("side", ["rmin", "rmax"])
def test_range_errors_name_the_argument(side):
    def call(bad):
        args = {"rmin": np.float32(-1.0), "rmax": np.float32(1.0)} | {side: bad}
        return params.compute_scale_zero_point(args["rmin"], args["rmax"], "uint8")

    with pytest.raises(QuantParamError, match=f"^{side} must be finite"):
        call(np.float32("nan"))
    if np.dtype(np.longdouble).itemsize > 8:  # a float type that is none of float16/32/64
        with pytest.raises(DTypeError, match=f"^{side} must be float16, float32 or float64, got {np.dtype(np.longdouble)}$"):
            call(np.array(-1.0 if side == "rmin" else 1.0, np.longdouble))


@pytest.mark.parametrize(
    "rmin, min_real_range, name",
    [
        # the sum rmin + min_real_range rounds in the range's type (float16: 702.5 - 36.47 -> 666.0)
        (np.float16(-36.47), float(np.float16(702.5)), "uint8"),
        (np.float16(-40.66), float(np.float16(3652.0)), "int16"),
        (np.float32(-34.2771), float(np.float32(6.5045926e08)), "uint8"),
    ],
)
def test_min_real_range_sum_rounds_in_the_range_type(rmin, min_real_range, name):
    """Step 2 of spec/calibration.md: rmin + min_real_range in the range's type, even for a Python float
    min_real_range; a float64 sum gives another scale or zero point here (expected: onnxruntime)."""
    rmin, rmax = np.array(rmin), np.array(0, rmin.dtype)
    expected_scale, expected_zp = ort_scale_zp(rmin, rmax, name, False, False, min_real_range)
    scale, zp = params.compute_scale_zero_point(rmin, rmax, name, min_real_range=min_real_range)
    assert_same(scale, expected_scale)
    assert_same(zp, expected_zp)


def test_float16_rmin_float32_rmax_is_a_float32_range():
    """rmin float16, rmax float32: the range is float32 (onnxruntime: rmax's type; refquant: the wider)."""
    rmin, rmax = np.array(-1.0, np.float16), np.array(2.0, np.float32)
    expected_scale, expected_zp = ort_scale_zp(rmin, rmax, "uint8", False, False)
    scale, zp = params.compute_scale_zero_point(rmin, rmax, "uint8")
    assert_same(scale, expected_scale)  # float32(3 / 255)
    assert_same(zp, expected_zp)  # 85


@pytest.mark.parametrize("rmin, rmax", [(-1.0, 2.0), (0.0, 0.0), (-(2.0**-30), 0.0)])
def test_float16_ranges_warn_nothing(rmin, rmax):
    """No warning of any kind (numpy deprecations included) on the float16 degenerate-scale test."""
    import warnings

    rmin, rmax = np.array(rmin, np.float16), np.array(rmax, np.float16)
    expected_scale, expected_zp = ort_scale_zp(rmin, rmax, "uint8", False, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scale, zp = params.compute_scale_zero_point(rmin, rmax, "uint8")
    assert_same(scale, expected_scale)
    assert_same(zp, expected_zp)


def test_float8_std_type_message():
    with pytest.raises(DTypeError, match="^std must be float16 or float32, got float64$"):
        params.float8_scale_zero_point(np.float64(1.0))


def test_scale_type_message():
    with pytest.raises(DTypeError, match="^scale must be float16, float32 or float64, got int32$"):
        params.quantize(np.ones(3, np.float32), np.int32(1), None, "int8")
    with pytest.raises(DTypeError, match="^scale must be float16, float32 or float64, got int32$"):
        params.dequantize(np.ones(3, np.int8), np.int32(1), None)


def test_zero_point_shape_must_match_scale():
    with pytest.raises(QuantParamError, match=r"zero point has shape \(3,\), scale has \(2,\): they must match"):
        params.quantize(np.ones((2, 3), np.float32), np.ones(2, np.float32), np.zeros(3, np.int8), "int8", axis=0)


def test_zero_point_at_qmax_is_valid():
    q = params.quantize(np.array([0.0, 1.0, -1.0], np.float32), np.float32(1.0), np.int8(127), "int8")
    assert q.dtype == np.int8 and q.tolist() == [127, 127, 126]  # by hand: 0+127, saturated 128, -1+127


@pytest.mark.parametrize("zero_points", [[-128, 200], [127, 200]])
def test_zero_point_error_names_the_value_outside(zero_points):
    """The first zero point outside [qmin, qmax] is named, not one at qmin or qmax."""
    with pytest.raises(QuantParamError, match=r"^zero point 200\.0 is outside int8$"):
        params.quantize(np.ones(2, np.float32), np.ones(2, np.float32), np.array(zero_points, np.int16), "int8", axis=0)


@pytest.mark.parametrize(
    "x, scale",
    [
        # x / scale is just off a half in exact arithmetic but rounds onto it (or across) in the scale's type
        (np.float32(24.755693), np.float32(1.4146111)),
        (np.float32(5.160037), np.float32(1.1466749)),
        (np.float16(0.804), np.float16(0.10724)),
        (np.float16(-19.88), np.float16(1.893)),
    ],
)
def test_quantize_divides_in_the_scale_type(x, scale):
    """QuantizeLinear divides in the scale's type: the expected value is numpy's division in that type,
    rounded half to even (a float64 division rounds the other way for these inputs)."""
    exact = np.float64(x) / np.float64(scale)
    expected = np.rint(x / scale)
    assert np.rint(exact) != expected  # the inputs do tell the two divisions apart
    q = params.quantize(np.array([x]), scale, None, "int8")
    assert q.tolist() == [int(expected)]


def test_dequantize_blocked():
    q = np.array([[1, -2, 2, 2], [0, 0, -1, 1]], np.int8)
    scale = np.array([[1.0, 2.0], [4.0, 8.0]], np.float32)
    y = params.dequantize(q, scale, None, axis=1, block_size=2)
    assert y.dtype == np.float32 and y.tolist() == [[1.0, -2.0, 4.0, 4.0], [0.0, 0.0, -8.0, 8.0]]  # by hand


@pytest.mark.parametrize("axis, block_size", [(0, 0.5), (0.0, None), (True, None), (0, "2")])
def test_quantize_and_dequantize_refuse_a_non_integer_axis_or_block_size(axis, block_size):
    """ONNX's axis and block_size are INT attributes; the API refuses anything else with a clear error
    (a float block size once reached numpy's repeat and failed there)."""
    x, scale = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    with pytest.raises(QuantParamError, match="must be an integer"):
        params.quantize(x, scale, None, "uint8", axis=axis, block_size=block_size)
    with pytest.raises(QuantParamError, match="must be an integer"):
        params.dequantize(np.zeros(4, np.uint8), scale, None, axis=axis, block_size=block_size)
