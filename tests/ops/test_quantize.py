"""QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear: properties, independent formulas, corners, errors."""

from __future__ import annotations

import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx.reference import ReferenceEvaluator

import refquant
from refquant.errors import AttributeValueError, DTypeError, NonFiniteError, QuantParamError

from tests.helpers import assert_bit_exact, single_node_model

INT_TYPES = {
    T.UINT8: np.uint8,
    T.INT8: np.int8,
    T.UINT16: np.uint16,
    T.INT16: np.int16,
    T.UINT4: ml_dtypes.uint4,
    T.INT4: ml_dtypes.int4,
    T.UINT2: ml_dtypes.uint2,
    T.INT2: ml_dtypes.int2,
}


def q_model(x, scale, zp=None, *, opset=25, **attrs):
    inputs = {"x": x, "s": scale}
    if zp is not None:
        inputs["zp"] = zp
    out_type = T.UINT8 if zp is None else refquant.dtypes.proto_of(zp.dtype)
    if "output_dtype" in attrs:
        out_type = attrs["output_dtype"]
    return single_node_model("QuantizeLinear", inputs, {"y": out_type}, opset=opset, attrs=attrs)


def dq_model(x, scale, zp=None, *, opset=25, out=T.FLOAT, **attrs):
    inputs = {"x": x, "s": scale}
    if zp is not None:
        inputs["zp"] = zp
    return single_node_model("DequantizeLinear", inputs, {"y": out}, opset=opset, attrs=attrs)


def run(model, **feeds):
    return refquant.Session(model).run(None, feeds)[0]


def feeds_of(**arrays):
    return arrays


finite_f32 = st.floats(-1e6, 1e6, width=32)
scales = st.floats(float(np.float32(1e-6)), 1e4, width=32)


def _independent_quantize(x: np.ndarray, s: np.float32, zp: int, lo: int, hi: int) -> np.ndarray:
    """Python floats and round(): float64 division rounded to float32 is the correctly
    rounded float32 quotient (53 >= 2*24 + 2), then half-to-even, add, clip."""
    out = []
    for v in x.ravel().tolist():
        quotient = float(np.float32(v / float(s)))
        out.append(min(max(round(quotient) + zp, lo), hi))
    return np.array(out).reshape(x.shape)


# -- QuantizeLinear -----------------------------------------------------------------


@pytest.mark.parametrize("proto", list(INT_TYPES))
@given(data=st.data())
def test_quantize_matches_independent_formula(proto, data):
    dtype = np.dtype(INT_TYPES[proto])
    info = ml_dtypes.iinfo(dtype)
    x = data.draw(hnp.arrays(np.float32, st.integers(1, 12), elements=finite_f32))
    s = np.float32(data.draw(scales))
    zp = data.draw(st.integers(int(info.min), int(info.max)))
    got = run(q_model(x, np.array(s), np.array(zp, dtype)), x=x, s=np.array(s), zp=np.array(zp, dtype))
    expected = _independent_quantize(x, s, zp, int(info.min), int(info.max))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.astype(np.int64), expected)


@pytest.mark.parametrize("proto", list(INT_TYPES))
@given(data=st.data())
def test_dequantize_then_quantize_is_identity(proto, data):
    dtype = np.dtype(INT_TYPES[proto])
    info = ml_dtypes.iinfo(dtype)
    q = data.draw(hnp.arrays(np.int64, st.integers(1, 16), elements=st.integers(int(info.min), int(info.max))))
    q = q.astype(dtype)
    s = np.array(data.draw(st.floats(float(np.float32(1e-30)), float(np.float32(1e30)), width=32)), np.float32)
    zp = np.array(data.draw(st.integers(int(info.min), int(info.max))), dtype)
    y = run(dq_model(q, s, zp), x=q, s=s, zp=zp)
    back = run(q_model(y, s, zp), x=y, s=s, zp=zp)
    np.testing.assert_array_equal(back.astype(np.int64), q.astype(np.int64))


@given(data=st.data())
def test_quantize_dequantize_error_within_half_scale(data):
    s = np.float32(data.draw(scales))
    zp = data.draw(st.integers(0, 255))
    lo, hi = (0 - zp) * float(s), (255 - zp) * float(s)
    x = data.draw(hnp.arrays(np.float32, 16, elements=st.floats(float(np.float32(lo)) if np.float32(lo) >= lo else float(np.nextafter(np.float32(lo), np.float32(np.inf))), float(np.float32(hi)) if np.float32(hi) <= hi else float(np.nextafter(np.float32(hi), np.float32(-np.inf))), width=32)))
    q = run(q_model(x, np.array(s), np.array(zp, np.uint8)), x=x, s=np.array(s), zp=np.array(zp, np.uint8))
    y = run(dq_model(q, np.array(s), np.array(zp, np.uint8)), x=q, s=np.array(s), zp=np.array(zp, np.uint8))
    err = np.abs(y.astype(np.float64) - x.astype(np.float64))
    # s/2 from rounding, plus float32 rounding of the quotient and of the product
    assert (err <= float(s) / 2 + np.abs(x).astype(np.float64) * 2.0**-22 + float(s) * 2.0**-20).all()


@given(data=st.data())
def test_per_axis_equals_per_tensor_slice_by_slice(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(hnp.arrays(np.float32, shape, elements=finite_f32))
    n = shape[axis]
    s = data.draw(hnp.arrays(np.float32, n, elements=scales))
    zp = data.draw(hnp.arrays(np.int8, n))
    got = run(q_model(x, s, zp, axis=axis), x=x, s=s, zp=zp)
    for i in range(n):
        index = [slice(None)] * len(shape)
        index[axis] = i
        part = x[tuple(index)]
        one = run(q_model(part, s[i], zp[i]), x=part, s=s[i], zp=zp[i])
        np.testing.assert_array_equal(got[tuple(index)], one)


@given(data=st.data())
def test_blocked_equals_per_block_per_tensor(data):
    rows, cols = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 9))
    block = data.draw(st.integers(1, cols))
    nblocks = -(-cols // block)
    x = data.draw(hnp.arrays(np.float32, (rows, cols), elements=finite_f32))
    s = data.draw(hnp.arrays(np.float32, (rows, nblocks), elements=scales))
    zp = data.draw(hnp.arrays(np.uint8, (rows, nblocks)))
    got = run(q_model(x, s, zp, axis=1, block_size=block), x=x, s=s, zp=zp)
    deq = run(dq_model(got, s, zp, axis=1, block_size=block), x=got, s=s, zp=zp)
    for r in range(rows):
        for b in range(nblocks):
            part = x[r, b * block : (b + 1) * block]
            one = run(q_model(part, s[r, b], zp[r, b]), x=part, s=s[r, b], zp=zp[r, b])
            np.testing.assert_array_equal(got[r, b * block : (b + 1) * block], one)
            dq_one = run(dq_model(one, s[r, b], zp[r, b]), x=one, s=s[r, b], zp=zp[r, b])
            np.testing.assert_array_equal(deq[r, b * block : (b + 1) * block], dq_one)


@given(data=st.data())
def test_quantize_and_dequantize_agree_with_onnx_reference_on_ordinary_inputs(data):
    """On finite inputs with |x/scale| < 2**31, onnx.reference computes the same formula.

    (onnx.reference implements DequantizeLinear from version 19 only.)"""
    opset = data.draw(st.sampled_from([19, 21, 23, 25]))
    x = data.draw(hnp.arrays(np.float32, st.integers(1, 20), elements=finite_f32))
    s = np.array(data.draw(scales), np.float32)
    zp = np.array(data.draw(st.integers(-128, 127)), np.int8)
    assume(np.abs(x.astype(np.float64) / float(s)).max() < 2**31)  # onnx.reference wraps beyond
    model = q_model(x, s, zp, opset=opset)
    expected = ReferenceEvaluator(model).run(None, {"x": x, "s": s, "zp": zp})[0]
    got = run(model, x=x, s=s, zp=zp)
    assert_bit_exact(got, expected)
    dmodel = dq_model(got, s, zp, opset=opset)
    assert_bit_exact(run(dmodel, x=got, s=s, zp=zp), ReferenceEvaluator(dmodel).run(None, {"x": got, "s": s, "zp": zp})[0])


def test_rounding_is_half_to_even_at_exact_ties():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5], np.float32)
    got = run(q_model(x, np.array(1, np.float32), np.array(0, np.int8)), x=x, s=np.float32(1), zp=np.int8(0))
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, -2, 4])


def test_division_is_float32_not_exact():
    """x / scale rounds to float32 before rounding to an integer (the scale's type sets the precision).

    The exact quotient 63.49999977... rounds to 63, but the float32 quotient is the tie 63.5 -> 64.
    """
    x, s = np.float32(3.2108006), np.float32(0.05056379)
    assert Fraction(float(x)) / Fraction(float(s)) < Fraction(127, 2) and x / s == np.float32(63.5)
    got = run(q_model(np.array([x]), np.array(s), np.array(0, np.uint8)), x=np.array([x]), s=np.array(s), zp=np.uint8(0))
    assert got[0] == 64


@pytest.mark.parametrize(
    "value, expected",
    [(np.inf, 127), (-np.inf, -128), (1e10, 127), (-1e10, -128), (2.0**31, 127), (-(2.0**31) - 4096, -128)],
)
def test_huge_and_infinite_inputs_saturate(value, expected):
    """onnx.reference wraps |x/scale| >= 2**31 through int32; refquant saturates (spec/ops/quantize.md)."""
    x = np.array([value], np.float32)
    got = run(q_model(x, np.array(1, np.float32), np.array(0, np.int8)), x=x, s=np.float32(1), zp=np.int8(0))
    assert got[0] == expected


def test_nan_is_an_error_in_the_spec_profile():
    x = np.array([1.0, np.nan], np.float32)
    model = q_model(x, np.array(1, np.float32), np.array(3, np.uint8))
    with pytest.raises(NonFiniteError, match=r"QuantizeLinear '#0'.*NaN"):
        run(model, x=x, s=np.float32(1), zp=np.uint8(3))


@pytest.mark.parametrize("policy, expected", [("qmin", 0), ("zero_point", 3)])
def test_nan_policies(policy, expected):
    x = np.array([1.0, np.nan], np.float32)
    model = q_model(x, np.array(1, np.float32), np.array(3, np.uint8))
    profile = refquant.get_profile("spec").with_options(nan=policy)
    got = refquant.Session(model, profile=profile).run(None, {"x": x, "s": np.float32(1), "zp": np.uint8(3)})[0]
    np.testing.assert_array_equal(got, [4, expected])


@pytest.mark.parametrize(
    "proto, saturate, value, expected",
    [
        (T.FLOAT8E4M3FN, 1, 1e6, 448.0),
        (T.FLOAT8E4M3FN, 1, -np.inf, -448.0),
        (T.FLOAT8E4M3FN, 0, 1e6, np.nan),
        (T.FLOAT8E5M2, 1, 1e6, 57344.0),
        (T.FLOAT8E5M2, 0, 1e6, np.inf),
        (T.FLOAT4E2M1, 0, 100.0, 6.0),  # float4 has no inf/NaN: always saturates
        (T.FLOAT8E4M3FN, 1, 0.0546875, 0.0546875),  # exact: 7/128
    ],
)
def test_float8_saturation(proto, saturate, value, expected):
    x = np.array([value], np.float32)
    model = q_model(x, np.array(1, np.float32), opset=23, output_dtype=proto, saturate=saturate)
    got = run(model, x=x, s=np.float32(1))[0]
    np.testing.assert_equal(float(got), expected)


def test_float8_rounding_is_single_from_the_quotient():
    """x / scale in float32, then one correctly rounded cast: tie 1.0625 -> 1.0 (even), above tie -> 1.125."""
    x = np.array([1.0625, np.nextafter(np.float32(1.0625), np.float32(2))], np.float32)
    model = q_model(x, np.array(1, np.float32), opset=21, output_dtype=T.FLOAT8E4M3FN)
    got = run(model, x=x, s=np.float32(1)).astype(np.float32)
    np.testing.assert_array_equal(got, [1.0, 1.125])


def test_precision_attribute_sets_division_type():
    # 1/3 in float16 is 0.33325195; times 3 ... use x/scale where float16 and float32 disagree on rounding
    x = np.array([2049.0], np.float32)  # 2049 is not a float16: rounds to 2048 in float16 division
    s = np.array(1.0, np.float32)
    plain = run(q_model(x, s, np.array(0, np.uint16), opset=23), x=x, s=s, zp=np.uint16(0))
    half = run(q_model(x, s, np.array(0, np.uint16), opset=23, precision=T.FLOAT16), x=x, s=s, zp=np.uint16(0))
    assert plain[0] == 2049 and half[0] == 2048


@pytest.mark.parametrize("x, scale, want", [
    (np.array([1540], np.float16), np.array(3, np.int32), 514),
    (np.array([196], ml_dtypes.bfloat16), np.array(3, np.int32), 66),
    (np.array([196], np.float32), np.array(3, ml_dtypes.bfloat16), 66),
    (np.array([1540], np.float32), np.array(3, np.float16), 514),
    (np.array([1540], np.int32), np.array(3, np.int32), 513),
], ids=["float16 x, int32 scale", "bfloat16 x, int32 scale", "bfloat16 scale", "float16 scale", "int32 x and scale"])
def test_the_division_type_follows_the_scale_then_x(x, scale, want):
    """The division x / scale is in the scale's float type, else in x's, else float64 (spec/ops/quantize.md).
    1540 / 3 = 513.33: float16 (spacing 0.5 there) rounds it to 513.5, a tie that goes to the even 514; exactly it
    is 513. 196 / 3 = 65.33: bfloat16 (8 bits, spacing 0.5 there) gives 65.5, then 66; float32 or float64: 65."""
    zp = np.array(0, np.uint16)
    got = run(q_model(x, scale, zp, opset=24), x=x, s=scale, zp=zp)
    assert got.tolist() == [want]


def test_the_precision_attribute_must_name_a_float_type():
    x, s, zp = np.array([1.0], np.float32), np.array(1.0, np.float32), np.array(0, np.uint8)
    with pytest.raises(AttributeValueError, match=r"precision must be a float type, got 6$"):
        run(q_model(x, s, zp, opset=23, precision=T.INT32), x=x, s=s, zp=zp)


def test_float16_input_and_scale_divide_in_float16():
    x = np.array([0.1, 1000.3, -7.7], np.float16)
    s = np.array(0.3, np.float16)
    got = run(q_model(x, s, np.array(0, np.int16), opset=21), x=x, s=s, zp=np.int16(0))
    expected = [round(float(np.float16(np.float32(v) / np.float32(s)))) for v in x]
    np.testing.assert_array_equal(got, expected)


# -- DequantizeLinear ----------------------------------------------------------------


def test_dequantize_int32_is_correctly_rounded():
    """|x| >= 2**29 would round twice in a naive float64 product; refquant rounds once."""
    x = np.array([2**31 - 1, -(2**31), 987654321, 2**30 + 3], np.int32)
    s = np.array(np.float32(0.1), np.float32)
    got = run(dq_model(x, s), x=x, s=s)
    expected = [np.float32(float(Fraction(int(v)) * Fraction(float(s)))) for v in x]
    # float(Fraction) is correctly rounded to float64; products here fit 55 bits, so check against
    # the exact rational rounded straight to float32 via its neighbours
    for got_v, v in zip(got, x):
        exact = Fraction(int(v)) * Fraction(float(s))
        below = np.float32(float(exact))
        candidates = [np.nextafter(below, np.float32(-np.inf)), below, np.nextafter(below, np.float32(np.inf))]
        best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact), int(np.array(c).view(np.uint32)) & 1))
        assert got_v == best
    assert len(expected) == 4


def test_dequantize_to_bfloat16_rounds_once():
    x = np.array([257], np.int16)  # 257 * 1.0 needs 9 bits: bfloat16 tie between 256 and 258 -> 256
    s = np.array(1.0, ml_dtypes.bfloat16)
    got = run(dq_model(x, s, out=T.BFLOAT16), x=x, s=s)
    assert float(got[0]) == 256.0
    x = np.array([259], np.int16)  # tie between 258 and 260 -> 260 (even)
    assert float(run(dq_model(x, s, out=T.BFLOAT16), x=x, s=s)[0]) == 260.0


@pytest.mark.parametrize("proto", [T.FLOAT8E4M3FN, T.FLOAT8E5M2, T.FLOAT4E2M1, T.FLOAT6E2M3, T.INT4, T.UINT2])
def test_dequantize_small_types_exactly(proto):
    dtype = refquant.dtypes.np_dtype(proto)
    unsigned = dtype in (np.dtype(ml_dtypes.uint2), np.dtype(ml_dtypes.uint4))
    # values the type holds (uint2: 0..3), so building x converts nothing out of range
    x = (np.arange(0, 4) if unsigned else np.arange(-2, 3)).astype(np.float32).astype(dtype)
    s = np.array(0.375, np.float32)
    model = dq_model(x, s, opset=28)
    got = run(model, x=x, s=s)
    np.testing.assert_array_equal(got, x.astype(np.float64) * 0.375)


def test_dequantize_output_dtype_overrides_scale_type():
    x = np.array([1, 2, 3], np.uint8)
    s = np.array(0.1, np.float32)
    got = run(dq_model(x, s, opset=23, out=T.FLOAT16, output_dtype=T.FLOAT16), x=x, s=s)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, (x * np.float64(np.float32(0.1))).astype(np.float16))


# -- DynamicQuantizeLinear ---------------------------------------------------------------


def dyn_model():
    return single_node_model(
        "DynamicQuantizeLinear", {"x": (T.FLOAT, None)}, {"y": T.UINT8, "s": T.FLOAT, "zp": T.UINT8}, opset=11
    )


@given(hnp.arrays(np.float32, st.integers(1, 30), elements=st.floats(-1e4, 1e4, width=32)))
def test_dynamic_quantize_matches_onnx_reference(x):
    assume(x.min() < 0 or x.max() > 0)
    model = dyn_model()
    expected = ReferenceEvaluator(model).run(None, {"x": x})
    got = refquant.Session(model).run(None, {"x": x})
    for g, e in zip(got, expected):
        assert_bit_exact(g, np.asarray(e))


def test_dynamic_quantize_all_zero_input():
    """The spec formula divides by zero; refquant (like onnxruntime) returns scale 1, zero point 0."""
    y, s, zp = refquant.Session(dyn_model()).run(None, {"x": np.zeros(4, np.float32)})
    assert float(s) == 1.0 and int(zp) == 0 and (y == 0).all()
    profile = refquant.get_profile("spec").with_options(dynamic_zero_range_scale=1 / 255)
    _, s, _ = refquant.Session(dyn_model(), profile=profile).run(None, {"x": np.zeros(4, np.float32)})
    assert s == np.float32(1 / 255)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_dynamic_quantize_rejects_non_finite(bad):
    with pytest.raises(NonFiniteError, match="DynamicQuantizeLinear"):
        refquant.Session(dyn_model()).run(None, {"x": np.array([1.0, bad], np.float32)})


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf])
def test_invalid_scale_is_an_error(scale):
    x = np.ones(3, np.float32)
    s = np.array(scale, np.float32)
    for model in (q_model(x, s, np.array(0, np.uint8)), dq_model(np.ones(3, np.uint8), s, np.array(0, np.uint8))):
        feeds = {"x": x if model.graph.node[0].op_type == "QuantizeLinear" else np.ones(3, np.uint8), "s": s, "zp": np.uint8(0)}
        with pytest.raises(QuantParamError, match=r"Linear '#0': scale must be finite and > 0"):
            run(model, **feeds)


def test_per_axis_scale_of_wrong_length():
    x = np.ones((2, 3), np.float32)
    s = np.ones(4, np.float32)
    zp = np.zeros(4, np.uint8)
    with pytest.raises(QuantParamError, match=r"scale has shape \(4,\), expected .* length 3"):
        run(q_model(x, s, zp, axis=1), x=x, s=s, zp=zp)


def test_axis_out_of_range():
    x, s, zp = np.ones((2, 3), np.float32), np.ones(3, np.float32), np.zeros(3, np.uint8)
    with pytest.raises(QuantParamError, match="axis 2 is out of range"):
        run(q_model(x, s, zp, axis=2), x=x, s=s, zp=zp)


def test_zero_point_shape_must_match_scale():
    x, s, zp = np.ones((2, 3), np.float32), np.ones(3, np.float32), np.zeros(2, np.uint8)
    with pytest.raises(QuantParamError, match="zero point has shape"):
        run(q_model(x, s, zp), x=x, s=s, zp=zp)


def test_per_axis_scale_refused_at_opset_10():
    x, s, zp = np.ones((2, 3), np.float32), np.ones(3, np.float32), np.zeros(3, np.uint8)
    with pytest.raises(QuantParamError, match="must be a scalar at this opset"):
        run(q_model(x, s, zp, opset=10), x=x, s=s, zp=zp)


def test_blocked_scale_of_wrong_shape():
    x, s, zp = np.ones((2, 6), np.float32), np.ones((2, 2), np.float32), np.zeros((2, 2), np.uint8)
    with pytest.raises(QuantParamError, match=r"expected \(2, 3\) for blocked"):
        run(q_model(x, s, zp, axis=1, block_size=2), x=x, s=s, zp=zp)


def test_type_not_allowed_at_this_opset():
    x, s, zp = np.ones(3, np.float32), np.array(1, np.float32), np.array(0, np.int16)
    with pytest.raises(DTypeError, match="y_zero_point has type int16; allowed at this opset"):
        run(q_model(x, s, zp, opset=19), x=x, s=s, zp=zp)


def test_dequantize_zero_point_type_must_match():
    x, s, zp = np.ones(3, np.uint8), np.array(1, np.float32), np.array(0, np.int8)
    with pytest.raises(DTypeError, match="x_zero_point has type int8, it must match x"):
        run(dq_model(x, s, zp), x=x, s=s, zp=zp)


def test_int32_dequantize_rejects_nonzero_zero_point():
    x, s, zp = np.ones(3, np.int32), np.array(1, np.float32), np.array(5, np.int32)
    with pytest.raises(QuantParamError, match="int32 input takes no zero point"):
        run(dq_model(x, s, zp), x=x, s=s, zp=zp)


def test_output_dtype_conflicting_with_zero_point():
    x, s, zp = np.ones(3, np.float32), np.array(1, np.float32), np.array(0, np.uint8)
    with pytest.raises(AttributeValueError, match="output_dtype 3 disagrees"):
        run(q_model(x, s, zp, output_dtype=T.INT8), x=x, s=s, zp=zp)


def test_e8m0_scale_needs_output_dtype():
    x = np.ones(3, np.uint8)
    s = np.array(2.0, ml_dtypes.float8_e8m0fnu)
    with pytest.raises(AttributeValueError, match="float8e8m0 x_scale needs output_dtype"):
        run(dq_model(x, s, opset=24), x=x, s=s)
    got = run(dq_model(x, s, opset=24, output_dtype=T.FLOAT), x=x, s=s)
    np.testing.assert_array_equal(got, [2.0, 2.0, 2.0])


# -- emulation profiles ----------------------------------------------------------------


@given(data=st.data())
def test_onnx_reference_profile_reproduces_onnx_reference_corners(data):
    """Where onnx.reference departs from the spec (int32 wrap of |x/scale| >= 2**31, inf, NaN), the
    "onnx-reference" profile gives its answer, so those differences are explained, not tolerated."""
    dtype = data.draw(st.sampled_from([np.uint8, np.int8, np.int16]))
    info = np.iinfo(dtype)
    x = data.draw(hnp.arrays(np.float32, st.integers(1, 12), elements=st.one_of(
        finite_f32, st.sampled_from([np.inf, -np.inf, np.nan, 1e10, -1e10, 3e9]))))
    s = np.array(data.draw(scales), np.float32)
    zp = np.array(data.draw(st.integers(int(info.min), int(info.max))), dtype)
    model = q_model(x, s, zp, opset=21)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ReferenceEvaluator(model).run(None, {"x": x, "s": s, "zp": zp})[0]
    got = refquant.Session(model, profile="onnx-reference").run(None, {"x": x, "s": s, "zp": zp})[0]
    assert_bit_exact(got, expected)


def test_dynamic_quantize_zero_point_tie_rounds_half_to_even():
    """x = [-1, 5]: the intermediate zero point is exactly 42.5 in float32, and rounds to 42, not 43.

    y_scale = (max(x, 0) - min(x, 0)) / (qmax - qmin) = float32(6 / 255) = 12632257 / 2**29
    (0x1.818182p-6, a little above 6/255). min(x) / y_scale = -1 * 2**29 / 12632257
    = -42.49999917 exactly; float32's spacing there is 2**-18 = 3.8e-6, so the division rounds
    to -42.5 (8.3e-7 away, against 3.0e-6 for -42.499996). intermediate_zero_point =
    qmin - min(x) / y_scale = 0 + 42.5, an exact tie: half to even gives 42 (half up: 43).
    y: -1 / y_scale = -42.5 -> -42, + 42 = 0; 5 / y_scale = float32(212.4999958) = 212.5 -> 212, + 42 = 254.
    """
    x = np.array([-1, 5], np.float32)
    scale = np.float32(6) / np.float32(255)
    assert float(scale) == 12632257 / 2**29
    assert np.float32(0) - x[0] / scale == np.float32(42.5)  # the tie, in the ONNX function's float32
    y, y_scale, y_zero_point = refquant.Session(dyn_model()).run(None, {"x": x})
    assert y_zero_point.dtype == np.uint8 and int(y_zero_point) == 42
    assert float(y_scale) == float(scale)
    np.testing.assert_array_equal(y, np.array([0, 254], np.uint8))


# -- int32 DequantizeLinear through float32 (profile option dequantize_int32) ------------------------------------


def _ort_run(model, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _onnx_reference_run(model, feeds):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReferenceEvaluator(model).run(None, feeds)[0]


def test_dequantize_int32_rounds_x_to_float32_first_in_onnxruntime_and_onnx_reference():
    """Reproducer of refquant fuzz --seed 23..26: x = 31843145 (int32), scale 10.0.

    spec: the exact product 318431450 lies in [2**28, 2**29), where float32's spacing is 32:
    318431450 / 32 = 9950982.8125, so it rounds to 9950983 * 32 = 318431456.
    onnxruntime (static_cast<float>(x - zp) * sc) and onnx.reference (x.astype(float32) * scale): x lies
    in [2**24, 2**25), spacing 2, and is odd: a tie between 31843144 (= 2 * 15921572, even) and 31843146,
    so float32(x) = 31843144; 31843144 * 10 = 318431440 = 32 * 9950982.5, a tie between 318431424
    (9950982, even) and 318431456: 318431424.
    """
    x = np.array([31843145], np.int32)
    s = np.array(10.0, np.float32)
    model = dq_model(x, s, opset=21)
    spec = run(model, x=x, s=s)
    assert spec.dtype == np.float32 and float(spec[0]) == 318431456.0
    assert float(np.float32(31843145)) == 31843144.0  # the first rounding, as derived above
    for profile in ("onnxruntime", "onnx-reference"):
        got = refquant.Session(model, profile=profile).run(None, {"x": x, "s": s})[0]
        assert float(got[0]) == 318431424.0, profile
    assert float(_ort_run(model, {"x": x, "s": s})[0]) == 318431424.0
    assert float(_onnx_reference_run(model, {"x": x, "s": s})[0]) == 318431424.0
    # exact in float32 (|x| <= 2**24, or a multiple of the spacing): every formula agrees
    x = np.array([2**24, -(2**24) + 1, 2**30, 12345], np.int32)
    model = dq_model(x, s, opset=21)
    for profile in ("spec", "onnxruntime"):
        np.testing.assert_array_equal(
            refquant.Session(model, profile=profile).run(None, {"x": x, "s": s})[0],
            (x.astype(np.float64) * 10.0).astype(np.float32),
        )


def test_dequantize_int32_into_float16_rounds_the_float32_product_again():
    """x = 164085, float32 scale 0.0022023646 (0x3B10558C), output_dtype float16 (opset 23).

    The exact product p = 361.3749980321154 lies 2.0e-6 below 361.375, float16's tie between 361.25 and
    361.5 (spacing 0.25 in [256, 512)). spec, and onnx.reference given a zero point (float64 product, one
    rounding): 361.25. onnxruntime, and onnx.reference without one: float32(p) = 361.375 (float32's spacing
    there is 2**-15), then the tie goes to even, 361.5 (= 1446 * 0.25). x itself is a float32 here: only
    the second rounding of "float32-first" differs.
    """
    x = np.array([164085], np.int32)
    s = np.array(np.uint32(0x3B10558C)).view(np.float32)
    below_tie = Fraction(2891, 8) - Fraction(164085) * Fraction(float(s))  # 361.375 - p = 1.97e-6
    assert 0 < below_tie < Fraction(1, 2**16)  # under half of float32's spacing 2**-15: float32(p) = 361.375
    no_zp = dq_model(x, s, opset=23, out=T.FLOAT16, output_dtype=T.FLOAT16)
    zp = np.array(0, np.int32)
    with_zp = dq_model(x, s, zp, opset=23, out=T.FLOAT16, output_dtype=T.FLOAT16)
    assert float(run(no_zp, x=x, s=s)[0]) == 361.25
    assert float(refquant.Session(no_zp, profile="onnxruntime").run(None, {"x": x, "s": s})[0][0]) == 361.5
    assert float(refquant.Session(no_zp, profile="onnx-reference").run(None, {"x": x, "s": s})[0][0]) == 361.5
    float32_input = refquant.get_profile("onnx-reference").with_options(dequantize_int32="float32-input")
    assert float(refquant.Session(with_zp, profile=float32_input).run(None, {"x": x, "s": s, "zp": zp})[0][0]) == 361.25
    assert float(_ort_run(no_zp, {"x": x, "s": s})[0]) == 361.5
    assert float(_onnx_reference_run(no_zp, {"x": x, "s": s})[0]) == 361.5
    assert float(_onnx_reference_run(with_zp, {"x": x, "s": s, "zp": zp})[0]) == 361.25


_large_int32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(2**24, 2**26).map(lambda v: v | 1),
    st.integers(-(2**31), -(2**24)),
    st.sampled_from([2**31 - 1, -(2**31), 2**24 + 1, -(2**24) - 1, 31843145]),
)


@given(data=st.data())
def test_int32_dequantize_profiles_match_onnxruntime_and_onnx_reference(data):
    """Large int32 x (beyond 2**24): the "onnxruntime" profile is bit-exact with onnxruntime CPU and the
    "onnx-reference" profile with onnx.reference (with a zero-point input: dequantize_int32="float32-input")."""
    n = data.draw(st.integers(1, 6))
    x = np.array(data.draw(st.lists(_large_int32, min_size=n, max_size=n)), np.int32).reshape(1, n)
    per_axis = data.draw(st.booleans())
    scale_type = data.draw(st.sampled_from([np.float32, np.float16]))
    bound = 1e4 if scale_type == np.float16 else 2.0**93  # beyond 2**97, int32 x * scale overflows float32
    low = 2.0**-126 if scale_type == np.float32 else 2.0**-14
    s = np.array(data.draw(st.lists(st.floats(low, bound, width=32), min_size=n, max_size=n) if per_axis else
                           st.floats(low, bound, width=32)), np.float32).astype(scale_type)
    with_zp = data.draw(st.booleans())
    zp = np.zeros(s.shape, np.int32) if with_zp else None
    output_16 = scale_type == np.float32 and data.draw(st.booleans())
    attrs = {"axis": 1} if per_axis else {}
    if output_16:
        attrs["output_dtype"] = T.FLOAT16
    out = T.FLOAT16 if (output_16 or scale_type == np.float16) else T.FLOAT
    model = dq_model(x, s, zp, opset=23 if output_16 else 21, out=out, **attrs)
    feeds = {"x": x, "s": s} | ({"zp": zp} if with_zp else {})
    ort_profile = refquant.get_profile("onnxruntime")
    reference_profile = refquant.get_profile("onnx-reference")
    if with_zp:
        reference_profile = reference_profile.with_options(dequantize_int32="float32-input")
    with np.errstate(over="ignore"):
        assert_bit_exact(refquant.Session(model, profile=ort_profile).run(None, feeds)[0], _ort_run(model, feeds))
        assert_bit_exact(
            refquant.Session(model, profile=reference_profile).run(None, feeds)[0], _onnx_reference_run(model, feeds)
        )


# -- onnx.reference's bfloat16 QuantizeLinear: ml_dtypes' int32 cast (quantize_overflow="int32-indefinite") ------


def _bf16(bits):
    return np.array(bits, np.uint16).view(ml_dtypes.bfloat16)


@pytest.mark.parametrize(
    "x, s_bits, zp, spec, reference",
    [
        # 1e30 / 2**-133 (bfloat16 0x0001, the smallest subnormal) = 1.1e70: the float32 division
        # overflows to inf, rint(inf) = inf, ml_dtypes' int32 cast gives 0, + 7 = 7. spec: inf saturates
        # to 255; x86's cast would give INT32_MIN + 7 -> 0.
        (1e30, 0x0001, np.uint8(7), 255, 7),
        # 1 / 2**-126 (0x0080) = 2**126, finite in bfloat16 but beyond int32: cast to 0, + (-3) = -3.
        # spec: 127; x86: INT32_MIN - 3 wraps to 2**31 - 3 -> 127.
        (1.0, 0x0080, np.int8(-3), 127, -3),
        # -2**31 / 1 = -2**31 fits int32: ml_dtypes gives INT32_MIN too, + (-1) wraps to 2**31 - 1 -> 127.
        # spec: -128.
        (-(2.0**31), 0x3F80, np.int8(-1), -128, 127),
        # NaN: cast to 0, + 9 = 9 (spec refuses NaN).
        (np.nan, 0x3F80, np.uint8(9), None, 9),
    ],
)
def test_bfloat16_quantize_casts_like_ml_dtypes_in_the_onnx_reference_profile(x, s_bits, zp, spec, reference):
    xs = np.array([x], np.float32).astype(ml_dtypes.bfloat16)
    s = _bf16(s_bits)
    zp = np.asarray(zp)
    model = q_model(xs, s, zp, opset=21)
    feeds = {"x": xs, "s": s, "zp": zp}
    if spec is not None:
        with np.errstate(all="ignore"):
            assert int(refquant.Session(model).run(None, feeds)[0][0]) == spec
    assert int(refquant.Session(model, profile="onnx-reference").run(None, feeds)[0][0]) == reference
    assert int(_onnx_reference_run(model, feeds)[0]) == reference


_bf16_values = st.one_of(
    st.integers(0, 0xFFFF).map(lambda b: float(_bf16(b))),  # every bfloat16: subnormals, inf, NaN
    st.floats(-1e6, 1e6, width=32),
)
_bf16_scales = st.one_of(
    st.integers(0x0001, 0x007F),  # subnormal scales
    st.integers(0x0080, 0x7F7F),  # every positive finite normal one
    st.sampled_from([0x3F80, 0x3C00, 0x4000]),
)


@given(data=st.data())
def test_bfloat16_quantize_onnx_reference_profile_is_bit_exact(data):
    """bfloat16 x and scales (per-tensor and per-axis), including subnormal scales and quotients that
    overflow: the "onnx-reference" profile equals onnx.reference element by element."""
    n = data.draw(st.integers(1, 6))
    x = np.array(data.draw(st.lists(_bf16_values, min_size=n, max_size=n)), np.float32).astype(ml_dtypes.bfloat16)
    x = x.reshape(1, n)
    per_axis = data.draw(st.booleans())
    s = _bf16(data.draw(st.lists(_bf16_scales, min_size=n, max_size=n)) if per_axis else data.draw(_bf16_scales))
    dtype = data.draw(st.sampled_from([np.uint8, np.int8, np.uint16, np.int16]))
    info = np.iinfo(dtype)
    zp = np.array(data.draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=s.size, max_size=s.size)),
                  dtype).reshape(s.shape)
    model = q_model(x, s, zp, opset=21, **({"axis": 1} if per_axis else {}))
    feeds = {"x": x, "s": s, "zp": zp}
    assert_bit_exact(refquant.Session(model, profile="onnx-reference").run(None, feeds)[0], _onnx_reference_run(model, feeds))


# -- DynamicQuantizeLinear whose scale underflows (profile option dynamic_scale_out_of_range) ---------------------------

#: x -> (y, scale, zero point) as onnxruntime 1.32 CPU and onnx.reference (onnx 1.23) both return them (measured;
#: refquant fuzz --seed 8002 found the first): (max - min) / 255 underflows float32 to 0; a zero point of 0 / 0
#: clamps to 255 (std::min(255.f, NaN)), -(-8e-45) / 0 = +inf saturates to 255; y = x / 0 saturates, 0 / 0 is NaN -> 0
UNDERFLOWING_RANGES = [
    ([8e-45], ([255], 255)),
    ([-8e-45], ([0], 255)),
    ([8e-45, -3e-45, 0.0], ([255, 0, 0], 255)),
    ([1e-43, 5e-44], ([255, 255], 255)),
]


@pytest.mark.parametrize("values, expected", UNDERFLOWING_RANGES)
def test_dynamic_quantize_scale_underflow(values, expected):
    x = np.array(values, np.float32)
    model = single_node_model("DynamicQuantizeLinear", {"x": x}, {"y": T.UINT8, "y_scale": T.FLOAT, "y_zero_point": T.UINT8}, opset=11)
    with pytest.raises(QuantParamError, match="underflows to 0"):
        refquant.Session(model).run(None, {"x": x})
    for profile in ("onnxruntime", "onnx-reference"):
        y, scale, zero_point = refquant.Session(model, profile=profile).run(None, {"x": x})
        assert (y.tolist(), scale.item(), zero_point.item()) == (expected[0], 0.0, expected[1]), profile
    with np.errstate(all="ignore"):  # onnx.reference divides by the underflowed scale
        y, scale, zero_point = ReferenceEvaluator(model).run(None, {"x": x})
    assert (y.tolist(), scale.item(), zero_point.item()) == (expected[0], 0.0, expected[1])


def test_dynamic_quantize_smallest_scale_is_not_an_underflow():
    """(3e-43 - 0) / 255 rounds up to float32's smallest subnormal, 1.4e-45: a scale, not an error."""
    x = np.array([3e-43], np.float32)
    model = single_node_model("DynamicQuantizeLinear", {"x": x}, {"y": T.UINT8, "y_scale": T.FLOAT, "y_zero_point": T.UINT8}, opset=11)
    y, scale, zero_point = refquant.Session(model).run(None, {"x": x})
    assert (y.tolist(), scale.item(), zero_point.item()) == ([214], float(np.float32(1.4e-45)), 0)


def test_dynamic_quantize_scale_overflow():
    """x = [-3e38, 3e38]: max - min = 6e38 overflows float32, so the scale would be inf and every y 0. The spec
    profile refuses; onnxruntime 1.32 and onnx.reference return y [0, 0], scale inf, zero point 0 (measured:
    0 - (-3e38) / inf = 0, x / inf = 0), which dynamic_scale_out_of_range="float32" reproduces."""
    x = np.array([-3e38, 3e38], np.float32)
    model = single_node_model("DynamicQuantizeLinear", {"x": x}, {"y": T.UINT8, "y_scale": T.FLOAT, "y_zero_point": T.UINT8}, opset=11)
    with pytest.raises(QuantParamError, match="overflows float32"):
        refquant.Session(model).run(None, {"x": x})
    for profile in ("onnxruntime", "onnx-reference"):
        y, scale, zero_point = refquant.Session(model, profile=profile).run(None, {"x": x})
        assert (y.tolist(), scale.item(), zero_point.item()) == ([0, 0], np.inf, 0), profile
    with np.errstate(all="ignore"):
        y, scale, zero_point = ReferenceEvaluator(model).run(None, {"x": x})
    assert (y.tolist(), scale.item(), zero_point.item()) == ([0, 0], np.inf, 0)


def _dynamic_quantize(x: np.ndarray, profile: str = "spec"):
    model = single_node_model(
        "DynamicQuantizeLinear", {"x": x}, {"y": T.UINT8, "y_scale": T.FLOAT, "y_zero_point": T.UINT8}, opset=11
    )
    return refquant.Session(model, profile=profile).run(None, {"x": x})


@pytest.mark.parametrize("x, error, message", [
    (np.array([1.0]), DTypeError, r"x has type double; allowed at this opset: float$"),
    (np.array([1, np.inf], np.float32), NonFiniteError, r"x contains infinity; the scale would be infinite$"),
    (np.array([np.nan, 1], np.float32), NonFiniteError, r"x contains NaN \(profile option nan='error'\)$"),
    (np.array([0, 1e-45], np.float32), QuantParamError,
     r"\] is too narrow for a float32 scale: \(max - min\) / 255 underflows to 0 and the zero point qmin - min / "
     r"scale would divide by it \(profile option"),
    (np.array([-3e38, 3e38], np.float32), QuantParamError,
     r"\] overflows float32: max - min is infinite, and so would the scale be \(profile option"),
], ids=["double", "infinity", "nan", "too-narrow", "too-wide"])  # fmt: skip
def test_dynamic_quantize_errors_name_the_problem(x, error, message):
    """The spec profile refuses what has no float32 scale, each with its own message (spec/ops/quantize.md)."""
    with pytest.raises(error, match=message):
        _dynamic_quantize(x)


#: onnxruntime 1.32 CPU's outputs (recorded 2026-12-03; graph optimizations off): x -> (y, y_scale, y_zero_point).
#: NaN is left out of the range and quantizes to 0; a range too narrow for float32 gives scale 0 and zero point
#: 255 (x / 0: 0 -> NaN -> 0, positive -> inf -> 255); a range beyond float32 gives scale inf; empty x, scale 1.
ONNXRUNTIME_DYNAMIC_QUANTIZE = [
    ([np.nan, -1, 5], [0, 0, 254], np.float32(6) / np.float32(255), 42),
    ([0, 1e-45], [0, 255], 0.0, 255),
    ([0, 1e-44, 3e-45], [0, 255, 255], 0.0, 255),
    ([-3e38, 3e38], [0, 0], np.inf, 0),
    ([], [], 1.0, 0),
]


@pytest.mark.parametrize("x, y, scale, zero_point", ONNXRUNTIME_DYNAMIC_QUANTIZE, ids=str)
def test_dynamic_quantize_edges_under_the_onnxruntime_profile(x, y, scale, zero_point):
    """The onnxruntime profile gives onnxruntime's values at the edges the spec refuses, without a floating-point
    warning (pytest turns RuntimeWarning into an error)."""
    got_y, got_scale, got_zero_point = _dynamic_quantize(np.array(x, np.float32), "onnxruntime")
    assert got_y.dtype == np.uint8 and got_y.tolist() == y
    assert got_scale.dtype == np.float32 and got_scale == np.float32(scale)
    assert got_zero_point.dtype == np.uint8 and got_zero_point == zero_point
