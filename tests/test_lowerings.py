"""The backends' lowerings (refquant/lowerings.py), each against its docstring's formula.

Every expected value comes from a hand derivation or from an independent model written here in Python
integers / floats rounded to float32, never from refquant itself (spec/mutation.md).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant import lowerings
from refquant.dtypes import qtype
from refquant.errors import NonFiniteError

INT8 = qtype(np.dtype(np.int8))
_E4M3 = qtype(np.dtype(ml_dtypes.float8_e4m3fn))


def _f32(v: float) -> float:
    return float(np.float32(v))  # one correct rounding of a Python (binary64) value


# ---- fma_float32: one rounding to float32


def test_fma_float32_rounds_once_to_float32():
    """1 * (1 + 2**-23) + 2**-25 lies below the float32 tie 1 + 2**-23 + 2**-24, so it is 1 + 2**-23; the result
    is a float32 (a float64 here would be a second, different rounding for float16 outputs)."""
    got = lowerings.fma_float32(np.float32(1.0), np.float32(1 + 2.0**-23), np.float32(2.0**-25))
    assert got.dtype == np.float32 and float(got) == 1 + 2.0**-23
    # (1 + 2**-12)**2 - 1 = 2**-11 + 2**-24 exactly: a fused multiply-add keeps the 2**-24
    got = lowerings.fma_float32(np.float32(1 + 2.0**-12), np.float32(1 + 2.0**-12), np.float32(-1.0))
    assert got.dtype == np.float32 and float(got) == 2.0**-11 + 2.0**-24


# ---- dynamic_quantize_reciprocal: the docstring's formula, re-computed with Python floats rounded to float32


def _dynamic_quantize_model(values: list[float]) -> tuple[list[int], float, int]:
    """OpenVINO's DynamicQuantizeLinear, from the formula in lowerings.dynamic_quantize_reciprocal's docstring.

    Each step is a binary64 operation on float32 values rounded to float32: exact for products of two float32
    (24 + 24 bits) and innocuous for sums and quotients (binary64 has >= 2 * 24 + 2 bits).
    """
    xs = [_f32(v) for v in values]
    x_max, x_min = max([0.0, *xs]), min([0.0, *xs])
    span = _f32(x_max - x_min)
    if span == 0:
        return [0] * len(xs), 0.0, 0  # 0 * inf = NaN, converted to 0 (docstring)
    scale = _f32(span * _f32(1 / 255))
    zero_point = min(max(round(_f32(-x_min * _f32(1 / scale))), 0), 255)  # round(): half to even
    inv_span = _f32(1 / span)
    y = [min(max(round(_f32(_f32(v * 255) * inv_span)) + zero_point, 0), 255) for v in xs]
    return y, scale, zero_point


_DQ_FLOATS = st.one_of(st.just(0.0), st.floats(1e-3, 1e4), st.floats(-1e4, -1e-3))


@pytest.mark.parametrize(
    "values",
    [[0.25, 0.5], [-0.5, -0.25], [-1.0, 0.1, 2.0], [0.1, -0.3, 0.7], [-51.0, 0.0, 204.0], [3.0, -1.0 / 3.0, 1e-3], [],
     [-6.48688758794882, 7.26357844699773, 0.8292244049818347],  # float64 values: rounded to float32 first
     [-99.92303466796875, 0.5912536978721619]],  # rint(x * 255 / span) + zp = -1 for x_min: clipped to 0
)
def test_dynamic_quantize_reciprocal_matches_the_formula(values):
    """All-positive and all-negative inputs below 1 check that 0 joins the range (max(x, 0), min(x, 0))."""
    y, scale, zero_point = lowerings.dynamic_quantize_reciprocal(np.array(values, np.float64))
    want_y, want_scale, want_zp = _dynamic_quantize_model(values)
    assert y.dtype == np.uint8 and scale.dtype == np.float32 and zero_point.dtype == np.uint8
    assert (y.tolist(), float(scale), int(zero_point)) == (want_y, want_scale, want_zp)


@given(st.lists(_DQ_FLOATS, min_size=1, max_size=6))
def test_dynamic_quantize_reciprocal_matches_the_formula_everywhere(values):
    y, scale, zero_point = lowerings.dynamic_quantize_reciprocal(np.array(values, np.float64))
    assert (y.tolist(), float(scale), int(zero_point)) == _dynamic_quantize_model(values)


def test_dynamic_quantize_reciprocal_of_zeros():
    """span 0: scale 0, and 0 * inf = NaN converts to 0 for y and the zero point (without a warning)."""
    y, scale, zero_point = lowerings.dynamic_quantize_reciprocal(np.zeros(3, np.float32))
    assert (y.tolist(), float(scale), int(zero_point)) == ([0, 0, 0], 0.0, 0)


# ---- dequantize_int32_via_float32


def test_dequantize_int32_via_float32_by_hand():
    """q - zp first: (100 - 3) * 0.5 = 48.5; 2**24 + 1 - 0 rounds to 2**24 in float32 first ("float32-first",
    and "float32-input" too: the float32 x), then * 0.5 = 2**23."""
    q, half = np.array([100, 2**24 + 1], np.int32), np.array(0.5, np.float32)
    for product in ("float32-first", "float32-input"):
        got = lowerings.dequantize_int32_via_float32(q, half, np.array([3, 0], np.int32), np.float32, product=product)
        assert got.dtype == np.float32 and got.tolist() == [48.5, 2.0**23]
        none = lowerings.dequantize_int32_via_float32(q[:1], half, None, np.float32, product=product)
        assert none.tolist() == [50.0]
    with pytest.raises(ValueError, match="unknown dequantize_int32 product 'exact'"):
        lowerings.dequantize_int32_via_float32(q, half, None, np.float32, product="exact")


def test_dequantize_int32_via_float32_overflows_to_infinity_quietly():
    """(2**31 - 1) * 3e38 is beyond float32 (and float16) in either order of rounding: +inf, with no warning."""
    q, big = np.array([2**31 - 1, -(2**31)], np.int32), np.array(3e38, np.float32)
    for product in ("float32-first", "float32-input"):
        for out in (np.float32, np.float16):
            got = lowerings.dequantize_int32_via_float32(q, big, None, out, product=product)
            assert got.tolist() == [np.inf, -np.inf]


# ---- dequantize_lowered and its subnormal flush


def test_flush_subnormals_keeps_the_smallest_normal():
    """Below float32's smallest normal 2**-126 only: +-2**-126 stay, the largest subnormal becomes a signed zero."""
    tiny = np.float32(2.0**-126)
    y = np.array([tiny, -tiny, np.nextafter(tiny, np.float32(0)), -np.nextafter(tiny, np.float32(0)), 1.0], np.float32)
    got = lowerings._flush_subnormals(y)
    assert got.dtype == np.float32 and got.tolist() == [2.0**-126, -(2.0**-126), 0.0, 0.0, 1.0]
    assert np.signbit(got).tolist() == [False, True, False, True, False]


def test_dequantize_lowered_exact_and_distributed_by_model():
    """q = 67, zp = 58, s = 0.17647996544837952 (a float32; found by a search where the two formulas differ).

    exact: (67 - 58) * s rounded once to float32. distributed (OpenVINO): zs = f32(58 * s), y = f32(67 * s - zs),
    one fused multiply-add; 67 * s (31 bits) and its difference with zs are exact in binary64.
    """
    s = 0.17647996544837952
    q, zp, scale = np.array([67], np.int8), np.int8(58), np.float32(s)
    exact = _f32(9 * s)
    distributed = _f32(67 * s - _f32(58 * s))
    assert exact != distributed
    got = lowerings.dequantize_lowered(q, scale, zp, np.float32, formula="exact", subnormals="keep")
    assert got.tolist() == [exact]
    got = lowerings.dequantize_lowered(q, scale, zp, np.float32, formula="distributed", subnormals="keep")
    assert got.tolist() == [distributed]


def test_dequantize_lowered_distributed_overflows_quietly():
    """127 * 3e38 is beyond float32: +inf (and -inf for -128), without a floating-point warning."""
    got = lowerings.dequantize_lowered(np.array([127, -128], np.int8), np.float32(3e38), None, np.float32,
                                   formula="distributed", subnormals="keep")  # fmt: skip
    assert got.tolist() == [np.inf, -np.inf]


# ---- fake_quantize: float types via float16, 16-bit identity ranges by truncation


def test_fake_quantize_nan_is_an_error_by_default_and_maps_to_the_zero_point_on_request():
    one, zp = np.array(1.0, np.float32), np.array(5, np.int8)
    with pytest.raises(NonFiniteError):
        lowerings.fake_quantize(np.array([np.nan, 1.0], np.float32), one, zp, INT8)
    # nan="zero_point": NaN -> 5; 1 / 1 + 5 = 6
    got = lowerings.fake_quantize(np.array([np.nan, 1.0], np.float32), one, zp, INT8, nan="zero_point")
    assert got.tolist() == [5, 6]


def test_fake_quantize_float8_keeps_its_zero_point():
    """float types go through float16: 1 / 1 + 2 = 3."""
    got = lowerings.fake_quantize(np.array([1.0]), np.array(1.0, np.float32), np.array(2.0, np.float32), _E4M3)
    assert got.astype(np.float64).tolist() == [3.0]


def test_fake_quantize_int8_with_zero_point_one_takes_the_general_path():
    """zp = 1: il * isc = -129, 1 away from -128, so not OpenVINO's aligned int8 path:
    q = -128 + rint(0 * isc - (-129)) = 1 for x = 0 (the aligned path would give rint(0) = 0)."""
    got = lowerings.fake_quantize(np.array([0.0, 1.0], np.float32), np.array(1.0, np.float32), np.array(1, np.int8), INT8)
    assert got.tolist() == [1, 2]


def test_fake_quantize_16bit_identity_range_rounds_x_to_float32_first():
    """float32(2.9999999999) = 3.0 (the float32 step at 2 is 2**-22), which truncates to 3, not 2."""
    int16 = qtype(np.dtype(np.int16))
    got = lowerings.fake_quantize(np.array([2.9999999999, -2.9999999999]), np.array(1.0, np.float32), None, int16)
    assert got.tolist() == [3, -3]


def test_float8_via_float16_zero_point_and_saturation_by_hand():
    """x * fl(1 / 1) + zp: 1 + 2 = 3; -1000 and 1000 saturate to -448, 448; no zero point: 0 stays 0."""
    one = np.array(1.0, np.float32)
    got = lowerings._float8_via_float16(np.array([1.0, -1000.0, 1000.0]), one, np.array(2.0, np.float32), _E4M3)
    assert got.astype(np.float64).tolist() == [3.0, -448.0, 448.0]
    assert lowerings._float8_via_float16(np.array([0.0, -3.0]), one, None, _E4M3).astype(np.float64).tolist() == [0, -3]


def test_float8_via_float16_overflowing_reciprocal():
    """scale 1e-45 (float32's smallest subnormal): 1 / scale overflows to inf; 0 * inf = NaN -> -448 (qmin), quietly."""
    tiny = np.array(1e-45, np.float32)
    got = lowerings._float8_via_float16(np.array([0.0, 1.0, -1.0]), tiny, None, _E4M3)
    assert got.astype(np.float64).tolist() == [-448.0, 448.0, -448.0]


def test_float8_via_float16_flushes_subnormal_reciprocals_of_several_scales_only():
    """1 / 2**127 = 2**-127 is below float32's smallest normal (2**-126): with a per-axis scale it counts as 0
    (1.5 * 2**127 -> 0), with a per-tensor scale it is kept (1.5 * 2**127 * 2**-127 = 1.5)."""
    x = np.array([1.5 * 2.0**127, 2.0], np.float32)
    per_axis = lowerings._float8_via_float16(x, np.array([2.0**127, 1.0], np.float32), None, _E4M3)
    per_tensor = lowerings._float8_via_float16(x[:1], np.array(2.0**127, np.float32), None, _E4M3)
    assert per_axis.astype(np.float64).tolist() == [0.0, 2.0]
    assert per_tensor.astype(np.float64).tolist() == [1.5]


def test_float8_via_float16_rounds_x_to_float32_first():
    """x = 1 + 2**-4 + 2**-11 + 2**-30: float32 drops the 2**-30 (below half its ulp, 2**-24), leaving the float16
    tie 1.0625 + 2**-11, which goes to the even 1.0625 (significand 64 * 2**-10); that is the float8e4m3fn tie
    between 1.0 and 1.125, which goes to the even 1.0. Kept in float64, x would round up twice, to 1.125."""
    x = np.array([1 + 2.0**-4 + 2.0**-11 + 2.0**-30])
    got = lowerings._float8_via_float16(x, np.array(1.0, np.float32), None, _E4M3)
    assert got.astype(np.float64).tolist() == [1.0]


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_truncate_and_wrap_by_hand(dtype):
    """trunc toward zero, then modulo 2**16: -2.5 -> -2 (uint16: 65534), 70000.7 -> 70000 - 65536 = 4464,
    -200 -> -200 (uint16 65336); beyond +-2**62 clipped to it first (a multiple of 2**16: 0), NaN -> 0."""
    qt = qtype(np.dtype(dtype))
    x = np.array([-2.5, 70000.7, -200.0, 1e30, -1e30, np.nan, 40000.0], np.float32)
    got = lowerings._truncate_and_wrap(x, qt)
    want = [-2, 4464, -200, 0, 0, 0, 40000 - 65536] if dtype == np.int16 else [65534, 4464, 65336, 0, 0, 0, 40000]
    assert got.dtype == dtype and got.tolist() == want


# ---- pairwise_saturation_excess: AVX2's int16 pair saturation


def _pair_excess_model(a: np.ndarray, b: np.ndarray) -> list:
    """The docstring's sum over pairs, with Python integers, for 2-D a and b."""
    out = []
    for row in a.tolist():
        line = []
        for col in b.T.tolist():
            total = 0
            for k in range(0, len(row) - 1, 2):
                pair = row[k] * col[k] + row[k + 1] * col[k + 1]
                total += min(max(pair, -(2**15)), 2**15 - 1) - pair
            line.append(total)
        out.append(line)
    return out


def test_pairwise_saturation_excess_broadcasts_batches():
    """255 * 127 * 2 = 64770 saturates to 32767 (excess -32003); batches broadcast as in numpy matmul."""
    a = np.array([[[255, 255, 255, 1, 9], [3, 4, 255, 255, 0]], [[0, 0, 0, 0, 0], [255, 255, 0, 0, 0]]], np.uint8)
    b = np.array([[127, -128], [127, -128], [127, 1], [127, 2], [5, 5]], np.int8)
    got = lowerings.pairwise_saturation_excess(a, b)
    assert got.dtype == np.int64 and got.shape == (2, 2, 2)
    assert got.tolist() == [_pair_excess_model(a[i].astype(np.int64), b.astype(np.int64)) for i in range(2)]
    assert got[0, 0, 0] == 32767 - 2 * 255 * 127
    b3 = np.stack([b, -b.astype(np.int16).clip(-128, 127).astype(np.int8)])  # b batched, a not
    got = lowerings.pairwise_saturation_excess(a[1], b3)
    assert got.shape == (2, 2, 2)
    assert got.tolist() == [_pair_excess_model(a[1].astype(np.int64), b3[i].astype(np.int64)) for i in range(2)]

