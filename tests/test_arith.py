"""The exact primitives: single rounding when narrowing, exact products, parameter broadcasting."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant import arith
from refquant.dtypes import qtype
from refquant.errors import NonFiniteError, QuantParamError


def _nearest_even(exact: Fraction, dtype) -> float:
    """Independent correct rounding: the representable neighbours of ``exact``, nearest, ties to even."""
    finite = np.array([float(v) for v in np.arange(2**8, dtype=np.uint16).astype(np.uint8).view(dtype)
                       if np.isfinite(float(v))] if np.dtype(dtype).itemsize == 1 else [], dtype=np.float64)
    below = max((v for v in finite if Fraction(v) <= exact), default=None)
    above = min((v for v in finite if Fraction(v) >= exact), default=None)
    if below is None or above is None or below == above:
        return below if above is None else above
    d_below, d_above = exact - Fraction(below), Fraction(above) - exact
    if d_below != d_above:
        return below if d_below < d_above else above
    even = lambda v: int(np.array(v, np.float64).astype(dtype).view(np.uint8)) % 2 == 0  # noqa: E731
    return below if even(below) else above


@pytest.mark.parametrize("dtype", [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.float8_e4m3fnuz])
@given(st.floats(-200, 200, allow_nan=False))
def test_narrow_to_float8_rounds_once(dtype, value):
    got = float(arith.narrow(np.array([value]), dtype)[0])
    assert got == _nearest_even(Fraction(value), dtype)


def _nearest_even_binary(exact: Fraction, significand_bits: int) -> Fraction:
    """``exact`` in [1, 2) rounded to nearest-even with ``significand_bits`` bits (the leading 1 included)."""
    quantum = Fraction(1, 2 ** (significand_bits - 1))
    scaled = exact / quantum
    return round(scaled) * quantum  # Fraction.__round__: nearest integer, ties to even


def test_narrow_to_bfloat16_avoids_double_rounding():
    """Derived by hand, independent of how any library narrows float64.

    value = 1 + 2**-8 + 2**-30 lies just above the bfloat16 (8 significant bits) tie 1 + 2**-8, so its
    nearest bfloat16 is 1 + 2**-7. Rounded to float32 (24 bits) first, the 2**-30 is below half a float32
    ulp (2**-24) and vanishes: 1 + 2**-8, exactly the tie, which a second rounding sends to the even 1.0.
    """
    value = Fraction(1) + Fraction(1, 2**8) + Fraction(1, 2**30)
    assert _nearest_even_binary(value, 8) == 1 + Fraction(1, 2**7)  # once
    via_float32 = _nearest_even_binary(value, 24)
    assert via_float32 == 1 + Fraction(1, 2**8)  # the trap: a narrowing through float32 lands on the tie
    assert _nearest_even_binary(via_float32, 8) == 1  # and rounds twice
    assert float(arith.narrow(np.array([float(value)]), ml_dtypes.bfloat16)[0]) == 1 + 2**-7


_SMALL_FLOATS = [
    ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2,
    ml_dtypes.float8_e5m2fnuz, ml_dtypes.float6_e2m3fn, ml_dtypes.float6_e3m2fn, ml_dtypes.float4_e2m1fn,
]  # fmt: skip


def _finite_values(dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every finite value of ``dtype`` (decoded from each bit pattern), ascending, and whether its code is even."""
    dtype = np.dtype(dtype)
    bits = ml_dtypes.finfo(dtype).bits
    codes = np.arange(2**bits, dtype=np.uint32).astype(np.dtype(f"u{dtype.itemsize}"))
    with np.errstate(invalid="ignore"):
        decoded = codes.view(dtype).astype(np.float64)
    keep = np.isfinite(decoded) & ~((decoded == 0) & np.signbit(decoded))  # one zero: +0
    order = np.argsort(decoded[keep], kind="stable")
    return decoded[keep][order], (codes[keep][order] % 2 == 0)


@pytest.mark.parametrize("dtype", _SMALL_FLOATS, ids=lambda d: np.dtype(d).name)
def test_narrow_rounds_every_midpoint_once_to_nearest_even(dtype):
    """Every value, every midpoint between neighbours, and a float64 step either side of each midpoint.

    The oracle picks the nearer neighbour from the decoded table of the type's values (ties: the even code):
    no library conversion is involved, so the test holds whichever ml_dtypes rounds the way narrow() builds on.
    """
    values, even = _finite_values(dtype)
    below, above = values[:-1], values[1:]
    mid = (below + above) / 2  # exact: neighbours differ in at most a few low bits
    tie_goes_up = ~even[:-1]
    points = np.concatenate([values, mid, np.nextafter(mid, -np.inf), np.nextafter(mid, np.inf)])
    want = np.concatenate([values, np.where(tie_goes_up, above, below), below, above])
    got = arith.narrow(points, dtype).astype(np.float64)
    bad = got != want
    assert not bad.any(), f"{np.dtype(dtype)}: {points[bad][:3]} -> {got[bad][:3]}, want {want[bad][:3]}"


@given(st.integers(-(2**33), 2**33), st.floats(1e-3, 1e3).map(lambda v: float(np.float32(v))))
def test_dequantize_product_is_correctly_rounded_to_float32(diff, scale):
    got = arith.dequantize(np.array([diff], np.int64), np.array(scale, np.float32), None, np.float32)[0]
    exact = Fraction(diff) * Fraction(scale)
    neighbours = [np.nextafter(got, np.float32(-np.inf)), got, np.nextafter(got, np.float32(np.inf))]
    distances = [abs(Fraction(float(v)) - exact) for v in neighbours]
    assert distances[1] <= min(distances)


@pytest.mark.parametrize(
    "a_max, b_max, k",
    [(255, 255, 258), (255, 255, 259), (255, 128, 514), (255, 128, 515), (127, 127, 2000), (2**20, 2**20, 3)],
)
def test_exact_matmul_at_its_bounds(a_max, b_max, k):
    """Extreme operands with K at and just past the float32 limit (2**24 / (a_max * b_max))."""
    rng = np.random.default_rng(k)
    a = rng.choice([-a_max, a_max], size=(3, k)).astype(np.int64)
    b = rng.choice([-b_max, b_max], size=(k, 4)).astype(np.int64)
    a[0], b[:, 0] = a_max, b_max  # one all-maximal row/column: |acc| = k * a_max * b_max
    expected = np.array([[sum(int(x) * int(y) for x, y in zip(row, col)) for col in b.T] for row in a])
    np.testing.assert_array_equal(arith.exact_matmul(a, b), expected)


def test_exact_matmul_beyond_float64_falls_back_exactly():
    a = np.array([[2**31 - 1, 2**31 - 1]], np.int64)
    b = np.array([[2**31 - 1], [-(2**31)]], np.int64)
    assert arith.exact_matmul(a, b)[0, 0] == (2**31 - 1) ** 2 - (2**31 - 1) * 2**31


def test_param_for_shapes():
    x_shape = (2, 5, 3)
    assert arith.param_for(np.array([7.0]), x_shape, axis=1, what="s").shape == ()
    assert arith.param_for(np.arange(5.0), x_shape, axis=-2, what="s").shape == (1, 5, 1)
    blocked = arith.param_for(np.arange(6.0).reshape(2, 1, 3), x_shape, axis=1, block_size=5, what="s")
    assert blocked.shape == x_shape and (blocked[:, 4] == blocked[:, 0]).all()
    with pytest.raises(QuantParamError, match="block_size must be >= 0"):
        arith.param_for(np.ones((2, 1, 3)), x_shape, axis=1, block_size=-1, what="s")


@pytest.mark.parametrize(
    "dtype, halfway, max_is_odd, beyond",
    [
        # max = 1.1111111 * 2**127 (significand 255, odd): the halfway point rounds up, out of range -> inf
        (ml_dtypes.bfloat16, (2 - 2**-8) * 2.0**127, True, np.inf),
        # 448 = 1.110 * 2**8 (significand 14, even): 464 rounds down to 448; beyond it NaN (no inf)
        (ml_dtypes.float8_e4m3fn, 464.0, False, np.nan),
        # 240 = 1.111 * 2**7 (significand 15, odd): 248 rounds up -> NaN
        (ml_dtypes.float8_e4m3fnuz, 248.0, True, np.nan),
        # 57344 = 1.11 * 2**15 (significand 7, odd): 61440 rounds up -> inf
        (ml_dtypes.float8_e5m2, 61440.0, True, np.inf),
        (ml_dtypes.float8_e5m2fnuz, 61440.0, True, np.nan),
        # float4 6 = 1.1 * 2**2 (significand 3, odd): beyond it float4.md saturates to 6
        (ml_dtypes.float4_e2m1fn, 7.0, True, 6.0),
    ],
    ids=lambda v: np.dtype(v).name if isinstance(v, type) else None,
)
def test_narrow_applies_the_overflow_rule_itself(dtype, halfway, max_is_odd, beyond):
    """The Cast operator's out-of-range rules, derived by hand from each type's largest value."""
    largest = float(ml_dtypes.finfo(dtype).max)
    points = np.array([halfway, np.nextafter(halfway, 0), np.nextafter(halfway, np.inf), np.inf])
    got = arith.narrow(np.concatenate([points, -points]), dtype).astype(np.float64)
    want = np.array([beyond if max_is_odd else largest, largest, beyond, beyond])
    want = np.concatenate([want, -want])
    assert ((got == want) | (np.isnan(got) & np.isnan(want))).all(), (got, want)


@pytest.mark.parametrize("dtype", [ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2fnuz])
def test_narrow_gives_plus_zero_for_minus_zero_in_fnuz_types(dtype):
    # every value rounding to zero, down to minus half the smallest subnormal (a tie: to the even 0), is +0x00;
    # 0x80 is their NaN
    half = float(ml_dtypes.finfo(dtype).smallest_subnormal) / 2
    zeros = arith.narrow(np.array([-0.0, -1e-30, -half]), dtype)
    assert zeros.view(np.uint8).tolist() == [0, 0, 0]
    assert float(arith.narrow(np.array([-np.nextafter(half, 1)]), dtype)[0]) == -2 * half


# ----------------------------------------------------------------------------
# Tests added for mutation testing (spec/mutation.md): each expected value comes from a hand derivation or
# from an independent model written here in Python integers / floats, never from refquant itself.
# ----------------------------------------------------------------------------

INT8, UINT8, INT16 = (qtype(np.dtype(t)) for t in (np.int8, np.uint8, np.int16))


def _round_int(n: int, bits: int) -> int:
    """The integer ``n`` rounded to nearest-even with ``bits`` significant bits (pure integer arithmetic)."""
    sign, m = (-1 if n < 0 else 1), abs(n)
    shift = m.bit_length() - bits
    if shift <= 0:
        return n
    q, r = divmod(m, 1 << shift)
    half = 1 << (shift - 1)
    if r > half or (r == half and q % 2):
        q += 1
    return sign * (q << shift)


_F32_TIE = 2**60 + 2**36  # float32 keeps 24 bits: at 2**60 its ulp is 2**37, so 2**36 is exactly half an ulp
_WIDE_INTEGERS = [
    0, 1, -1, 107, -107, 2**53 - 1, 2**53, -(2**53), 2**53 + 2**29 + 1, -(2**53 + 2**29 + 1),
    _F32_TIE, -_F32_TIE, _F32_TIE + 1, -_F32_TIE - 1, _F32_TIE + 2**11, _F32_TIE - 1, 2**63 - 1, -(2**63),
]  # fmt: skip


@pytest.mark.parametrize("bits, dtype", [(24, np.float32), (8, ml_dtypes.bfloat16)], ids=["float32", "bfloat16"])
def test_float64_for_narrowing_rounds_wide_integers_once(bits, dtype):
    """narrow(float64_for_narrowing(x)) is the integer rounded once to nearest-even (``_round_int``).

    Hand checks of the traps: 2**53 + 2**29 + 1 is just above the float32 tie 2**53 + 2**29; a plain
    float64 conversion rounds it to the tie (float64's step there is 2) and float32 then rounds the tie down
    to 2**53, while the right answer is 2**53 + 2**30. _F32_TIE is an exact tie (down to the even 2**60);
    _F32_TIE + 1 must round up, _F32_TIE - 1 down.
    """
    x = np.array(_WIDE_INTEGERS, np.int64)
    got = arith.narrow(arith.float64_for_narrowing(x), dtype).astype(np.float64)
    assert got.tolist() == [float(_round_int(n, bits)) for n in _WIDE_INTEGERS]
    assert _round_int(2**53 + 2**29 + 1, 24) == 2**53 + 2**30 and _round_int(_F32_TIE, 24) == 2**60


@given(st.integers(0, 2**64 - 1))
def test_float64_for_narrowing_of_uint64(n):
    got = arith.narrow(arith.float64_for_narrowing(np.array([n, 2**64 - 1, 2**63 + 2**39], np.uint64)), np.float32)
    assert got.astype(np.float64).tolist() == [float(_round_int(v, 24)) for v in (n, 2**64 - 1, 2**63 + 2**39)]


@given(st.integers(-(2**63), 2**63 - 1))
def test_float64_for_narrowing_of_int64(n):
    got = arith.narrow(arith.float64_for_narrowing(np.array([n], np.int64)), np.float32)
    assert float(got[0]) == float(_round_int(n, 24))


def test_float64_for_narrowing_keeps_narrow_types_exact():
    """Types other than int64/uint64 convert exactly; int64 below 2**53 too (the values are their own floats)."""
    for x in (np.array([-(2**31), 2**31 - 1, 5], np.int32), np.array([0.1, -2.5], np.float32),
              np.array([-(2**53), 2**53 - 1, -7, 0], np.int64)):  # fmt: skip
        got = arith.float64_for_narrowing(x)
        assert got.dtype == np.float64 and got.tolist() == [float(v) for v in x.tolist()]


# ---- dynamic_quantize_reciprocal: the docstring's formula, re-computed with Python floats rounded to float32


def _f32(v: float) -> float:
    return float(np.float32(v))  # one correct rounding of a Python (binary64) value


def _dynamic_quantize_model(values: list[float]) -> tuple[list[int], float, int]:
    """OpenVINO's DynamicQuantizeLinear, from the formula in arith.dynamic_quantize_reciprocal's docstring.

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
    y, scale, zero_point = arith.dynamic_quantize_reciprocal(np.array(values, np.float64))
    want_y, want_scale, want_zp = _dynamic_quantize_model(values)
    assert y.dtype == np.uint8 and scale.dtype == np.float32 and zero_point.dtype == np.uint8
    assert (y.tolist(), float(scale), int(zero_point)) == (want_y, want_scale, want_zp)


@given(st.lists(_DQ_FLOATS, min_size=1, max_size=6))
def test_dynamic_quantize_reciprocal_matches_the_formula_everywhere(values):
    y, scale, zero_point = arith.dynamic_quantize_reciprocal(np.array(values, np.float64))
    assert (y.tolist(), float(scale), int(zero_point)) == _dynamic_quantize_model(values)


def test_dynamic_quantize_reciprocal_of_zeros():
    """span 0: scale 0, and 0 * inf = NaN converts to 0 for y and the zero point (without a warning)."""
    y, scale, zero_point = arith.dynamic_quantize_reciprocal(np.zeros(3, np.float32))
    assert (y.tolist(), float(scale), int(zero_point)) == ([0, 0, 0], 0.0, 0)


# ---- requantize: y = saturate(round_half_even(acc * (a_scale * b_scale / y_scale)) + y_zero_point)


def _requantize_model(acc: int, a: float, b: float, y: float, zp: int, precision: str, zero_point_first: bool) -> int:
    """One element of arith.requantize's docstring formula, before saturation, in Python floats.

    float64: multiplier and product in binary64; float32: both rounded to float32 (_f32); mixed: the
    multiplier in the scales' type (float32 here), the product in binary64. round(): half to even.
    """
    if precision == "float64":
        m = a * b / y
        product, add = acc * m, (lambda r: r + zp)
    else:
        m = _f32(_f32(a * b) / y)
        if precision == "float32":
            product, add = _f32(_f32(acc) * m), (lambda r: _f32(r + zp))
        else:
            product, add = acc * m, (lambda r: r + zp)
    return round(add(product)) if zero_point_first else round(product) + zp


def test_requantize_by_hand():
    """multiplier 0.5 * 0.25 / 2 = 1/16: 1000 -> 62.5, -3 -> -0.1875, 7 -> 0.4375, 5000 -> 312.5.

    zero point 3 after rounding: 62 + 3 = 65, 0 + 3, 0 + 3, 312 + 3 -> 127, -312 + 3 -> -128 (int8);
    before rounding (onnx.reference): rint(65.5) = 66 (ties to even), rint(2.8125) = 3, rint(3.4375) = 3.
    """
    acc = np.array([1000, -3, 7, 5000, -5000], np.int32)
    s = lambda v: np.array(v, np.float32)  # noqa: E731
    for precision in ("float64", "float32", "mixed"):
        after = arith.requantize(acc, s(0.5), s(0.25), s(2.0), np.int8(3), INT8, precision=precision)
        before = arith.requantize(
            acc, s(0.5), s(0.25), s(2.0), np.int8(3), INT8, precision=precision, zero_point_first=True
        )
        assert after.dtype == np.int8 and after.tolist() == [65, 3, 3, 127, -128]
        assert before.dtype == np.int8 and before.tolist() == [66, 3, 3, 127, -128]
    assert arith.requantize(acc, s(0.5), s(0.25), s(2.0), None, INT8, precision="float64").tolist() == [
        62, 0, 0, 127, -128,
    ]  # fmt: skip
    assert arith.requantize(
        acc, s(0.5), s(0.25), s(2.0), None, INT8, precision="float64", zero_point_first=True
    ).tolist() == [62, 0, 0, 127, -128]


@pytest.mark.parametrize("zero_point_first", [False, True])
def test_requantize_precisions_differ_as_documented(zero_point_first):
    """Scales found by a search for which the three precisions give three different results (the model above)."""
    a, b, y, acc = 0.7250651717185974, 0.5416856408119202, 0.2776143252849579, 15490644
    int32 = qtype(np.dtype(np.int32))
    got = [
        int(arith.requantize(np.array([acc], np.int64), np.array(a, np.float32), np.array(b, np.float32),
                             np.array(y, np.float32), np.int32(0), int32, precision=precision,
                             zero_point_first=zero_point_first)[0])
        for precision in ("float64", "float32", "mixed")
    ]  # fmt: skip
    want = [_requantize_model(acc, a, b, y, 0, p, zero_point_first) for p in ("float64", "float32", "mixed")]
    assert got == want == [21915530, 21915528, 21915529]


def test_requantize_of_an_overflowed_multiplier_is_an_error():
    """float32: 1e30 * 1e30 overflows to inf, and 0 * inf is NaN, which integer output has no value for."""
    big, one = np.array(1e30, np.float32), np.array(1.0, np.float32)
    with np.errstate(over="ignore"), pytest.raises(NonFiniteError, match="NaN"):  # 0 * inf raises no warning
        arith.requantize(np.array([0], np.int32), big, big, one, None, INT8, precision="float32")
    # zero point first (onnx.reference): NaN + zp is cast like x86's cvtss2si, INT32_MIN = 0x80000000, whose
    # low 8 bits are 0 (requantize's docstring): 0, not a saturated -128, whatever the zero point
    with np.errstate(over="ignore"):
        got = arith.requantize(
            np.array([0, 0], np.int32), big, big, one, np.int8(5), INT8, precision="float32", zero_point_first=True
        )
    assert got.tolist() == [0, 0]


def test_requantize_saturates_a_float8_output():
    """1000 * (1 * 1 / 1) is beyond float8e4m3fn's largest finite value, 448 (1.110 * 2**8): saturated to 448."""
    one = np.array(1.0, np.float32)
    f8 = qtype(np.dtype(ml_dtypes.float8_e4m3fn))
    got = arith.requantize(np.array([1000, -1000, 3], np.int32), one, one, one, None, f8, precision="float64")
    assert got.dtype == f8.dtype and got.astype(np.float64).tolist() == [448.0, -448.0, 3.0]


# ---- exact_matmul: every path checked against Python-integer dot products


def _int_matmul(a: np.ndarray, b: np.ndarray) -> list:
    """a @ b (2-D) with Python integers."""
    return [[sum(int(x) * int(y) for x, y in zip(row, col)) for col in b.T] for row in a]


def test_exact_matmul_zero_operands_keep_the_broadcast_shape():
    """term 0 (an all-zero operand) returns int64 zeros of numpy matmul's shape, both ways round."""
    for a_shape, b_shape, want in [((2, 3, 4, 5), (3, 5, 6), (2, 3, 4, 6)), ((3, 4, 5), (2, 3, 5, 6), (2, 3, 4, 6))]:
        got = arith.exact_matmul(np.zeros(a_shape, np.int64), np.ones(b_shape, np.int64))
        assert got.dtype == np.int64 and got.shape == want and not got.any()
    assert arith.exact_matmul(np.ones((2, 0), np.int8), np.ones((0, 3), np.int8)).tolist() == [[0] * 3] * 2


def test_exact_matmul_of_unit_and_single_term_products():
    """term 1 (values in {-1, 0, 1}) and K = 1 are ordinary products, not the zero shortcut."""
    a = np.array([[1, -1, 0], [1, 1, 1]], np.int8)
    b = np.array([[1], [1], [-1]], np.int8)
    assert arith.exact_matmul(a, b).tolist() == [[0], [1]]
    got = arith.exact_matmul(np.array([[3], [-2]], np.int16), np.array([[5, 7]], np.int16))
    assert got.dtype == np.int64 and got.tolist() == [[15, 21], [-10, -14]]


def test_exact_matmul_batched_uses_the_last_axis_as_k():
    """a (3, 2, 4): K = 4 is a.shape[-1], not a.shape[1] = 2."""
    a = np.arange(24, dtype=np.int64).reshape(3, 2, 4) - 12
    b = np.arange(8, dtype=np.int64).reshape(4, 2) - 3
    got = arith.exact_matmul(a, b)
    assert got.dtype == np.int64 and got.tolist() == [_int_matmul(a[i], b) for i in range(3)]


# 2**53 + 1 = 3 * 107 * 28059810762433; T = 107 * 28059810762433 < 2**53, so three products of T sum to
# 2**53 + 1, which float64 rounds to 2**53 (a tie, to even): at most (2**53 - 1) // T = 2 of them per chunk.
_T_A, _T_B = 107, 28059810762433


@pytest.mark.parametrize("bound", [None, 3 * _T_A * _T_B, 2**62])
def test_exact_matmul_chunks_so_that_each_float64_sum_is_exact(bound):
    assert 3 * _T_A * _T_B == 2**53 + 1
    a = np.array([[[_T_A, _T_A, _T_A], [_T_A, -_T_A, _T_A]]], np.int64)  # batched: K is a.shape[-1], not [1]
    b = np.array([[_T_B, 1], [_T_B, 2], [_T_B, 3]], np.int64)
    got = arith.exact_matmul(a, b, bound=bound)
    assert got.dtype == np.int64 and got.tolist() == [[[2**53 + 1, 6 * _T_A], [_T_A * _T_B, 2 * _T_A]]]


def test_exact_matmul_with_a_tighter_bound_from_the_caller():
    """The caller's bound may only be smaller than K * term; either way the result is exact."""
    a = np.array([[2**20, -(2**20), 3]], np.int64)
    b = np.array([[2**20], [2**20 - 1], [5]], np.int64)
    for bound in (2**40 + 15, 3 * 2**40, 2**60):
        got = arith.exact_matmul(a, b, bound=bound)
        assert got.dtype == np.int64 and got.tolist() == [[2**20 + 15]]


def test_exact_matmul_object_fallback_is_int64():
    """term >= 2**53: Python integers; (2**31 - 1)**2 * 2 needs all 63 bits of int64."""
    a = np.array([[2**31 - 1, 2**31 - 1], [1, 2**31 - 1]], np.int64)
    b = np.array([[2**31 - 1], [2**31 - 1]], np.int64)
    got = arith.exact_matmul(a, b)
    assert got.dtype == np.int64 and got.tolist() == [[2 * (2**31 - 1) ** 2], [(2**31 - 1) ** 2 + 2**31 - 1]]


# ---- the error-free product (Dekker) and rounding to odd, against exact rationals

_PRODUCT_FLOATS = st.floats(-(2.0**500), 2.0**500, allow_nan=False, allow_infinity=False).filter(
    lambda v: v == 0 or abs(v) > 2.0**-400
)  # no overflow and no underflow of a * b or of Dekker's split (its precondition)


@given(_PRODUCT_FLOATS, _PRODUCT_FLOATS)
def test_two_product_is_error_free(a, b):
    """Dekker's two-product: p = fl(a * b) and p + e == a * b exactly."""
    p, e = arith._two_product(np.array([a]), np.array([b]))
    assert float(p[0]) == a * b
    assert Fraction(float(p[0])) + Fraction(float(e[0])) == Fraction(a) * Fraction(b)


@pytest.mark.parametrize(
    "a, b",
    [(1.0 + 2.0**-52, 1.0 + 2.0**-52), (3.0, 1.0 / 3.0), (0.1, 0.7), (2.0**30 + 1, 2.0**30 - 1), (-(1.0 + 2.0**-30), 5.0)],
)
def test_two_product_by_hand(a, b):
    """(1 + 2**-52)**2 = 1 + 2**-51 + 2**-104: p = 1 + 2**-51, e = 2**-104; the others checked exactly."""
    p, e = arith._two_product(np.array([a]), np.array([b]))
    assert Fraction(float(p[0])) + Fraction(float(e[0])) == Fraction(a) * Fraction(b) and float(p[0]) == a * b
    if a == b == 1.0 + 2.0**-52:
        assert (float(p[0]), float(e[0])) == (1.0 + 2.0**-51, 2.0**-104)


@given(_PRODUCT_FLOATS, _PRODUCT_FLOATS)
def test_product_round_to_odd(a, b):
    """The exact product when it is a float64, else whichever float64 neighbour of it has an odd last bit."""
    got = float(arith._product_round_to_odd(np.array([a]), np.array([b]))[0])
    exact = Fraction(a) * Fraction(b)
    nearest = a * b
    if Fraction(nearest) == exact:
        assert got == nearest
        return
    lo, hi = (nearest, float(np.nextafter(nearest, np.inf))) if Fraction(nearest) < exact else (
        float(np.nextafter(nearest, -np.inf)), nearest)  # fmt: skip
    odd = lo if np.array(lo).view(np.uint64) % 2 else hi
    assert got == odd


# ---- the backend lowerings: int32 "indefinite", int32 dequantize via float32, float8 via float16, truncation


def test_int32_indefinite_shift_by_hand():
    """x86 cvtss2si: rint(v) outside [-2**31, 2**31) or NaN -> INT32_MIN; then + zp wraps in int32.

    -2**31 - 1 is out of range (INT32_MIN), -2**31 converts; with ``out_of_range=0`` (ml_dtypes' bfloat16 ->
    int32) 2**31 and -2**31 - 1 give 0, NaN too.
    """
    values = np.array([-(2.0**31) - 1, -(2.0**31), 2.0**31, 2.5, np.nan])
    assert arith._int32_indefinite_shift(values, 0).tolist() == [-(2.0**31), -(2.0**31), -(2.0**31), 2.0, -(2.0**31)]
    assert arith._int32_indefinite_shift(values, 0, 0.0).tolist() == [0.0, -(2.0**31), 0.0, 2.0, 0.0]
    # INT32_MIN + (-1) wraps to INT32_MAX
    assert arith._int32_indefinite_shift(np.array([np.inf, 7.0]), -1).tolist() == [2.0**31 - 1, 6.0]


def test_dequantize_int32_via_float32_by_hand():
    """q - zp first: (100 - 3) * 0.5 = 48.5; 2**24 + 1 - 0 rounds to 2**24 in float32 first ("float32-first",
    and "float32-input" too: the float32 x), then * 0.5 = 2**23."""
    q, half = np.array([100, 2**24 + 1], np.int32), np.array(0.5, np.float32)
    for product in ("float32-first", "float32-input"):
        got = arith.dequantize_int32_via_float32(q, half, np.array([3, 0], np.int32), np.float32, product=product)
        assert got.dtype == np.float32 and got.tolist() == [48.5, 2.0**23]
        none = arith.dequantize_int32_via_float32(q[:1], half, None, np.float32, product=product)
        assert none.tolist() == [50.0]
    with pytest.raises(ValueError, match="unknown dequantize_int32 product 'exact'"):
        arith.dequantize_int32_via_float32(q, half, None, np.float32, product="exact")


def test_dequantize_int32_via_float32_overflows_to_infinity_quietly():
    """(2**31 - 1) * 3e38 is beyond float32 (and float16) in either order of rounding: +inf, with no warning."""
    q, big = np.array([2**31 - 1, -(2**31)], np.int32), np.array(3e38, np.float32)
    for product in ("float32-first", "float32-input"):
        for out in (np.float32, np.float16):
            got = arith.dequantize_int32_via_float32(q, big, None, out, product=product)
            assert got.tolist() == [np.inf, -np.inf]


_E4M3 = qtype(np.dtype(ml_dtypes.float8_e4m3fn))


def test_float8_via_float16_zero_point_and_saturation_by_hand():
    """x * fl(1 / 1) + zp: 1 + 2 = 3; -1000 and 1000 saturate to -448, 448; no zero point: 0 stays 0."""
    one = np.array(1.0, np.float32)
    got = arith._float8_via_float16(np.array([1.0, -1000.0, 1000.0]), one, np.array(2.0, np.float32), _E4M3)
    assert got.astype(np.float64).tolist() == [3.0, -448.0, 448.0]
    assert arith._float8_via_float16(np.array([0.0, -3.0]), one, None, _E4M3).astype(np.float64).tolist() == [0, -3]


def test_float8_via_float16_overflowing_reciprocal():
    """scale 1e-45 (float32's smallest subnormal): 1 / scale overflows to inf; 0 * inf = NaN -> -448 (qmin), quietly."""
    tiny = np.array(1e-45, np.float32)
    got = arith._float8_via_float16(np.array([0.0, 1.0, -1.0]), tiny, None, _E4M3)
    assert got.astype(np.float64).tolist() == [-448.0, 448.0, -448.0]


def test_float8_via_float16_flushes_subnormal_reciprocals_of_several_scales_only():
    """1 / 2**127 = 2**-127 is below float32's smallest normal (2**-126): with a per-axis scale it counts as 0
    (1.5 * 2**127 -> 0), with a per-tensor scale it is kept (1.5 * 2**127 * 2**-127 = 1.5)."""
    x = np.array([1.5 * 2.0**127, 2.0], np.float32)
    per_axis = arith._float8_via_float16(x, np.array([2.0**127, 1.0], np.float32), None, _E4M3)
    per_tensor = arith._float8_via_float16(x[:1], np.array(2.0**127, np.float32), None, _E4M3)
    assert per_axis.astype(np.float64).tolist() == [0.0, 2.0]
    assert per_tensor.astype(np.float64).tolist() == [1.5]


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_truncate_and_wrap_by_hand(dtype):
    """trunc toward zero, then modulo 2**16: -2.5 -> -2 (uint16: 65534), 70000.7 -> 70000 - 65536 = 4464,
    -200 -> -200 (uint16 65336); beyond +-2**62 clipped to it first (a multiple of 2**16: 0), NaN -> 0."""
    qt = qtype(np.dtype(dtype))
    x = np.array([-2.5, 70000.7, -200.0, 1e30, -1e30, np.nan, 40000.0], np.float32)
    got = arith._truncate_and_wrap(x, qt)
    want = [-2, 4464, -200, 0, 0, 0, 40000 - 65536] if dtype == np.int16 else [65534, 4464, 65336, 0, 0, 0, 40000]
    assert got.dtype == dtype and got.tolist() == want


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
    got = arith.pairwise_saturation_excess(a, b)
    assert got.dtype == np.int64 and got.shape == (2, 2, 2)
    assert got.tolist() == [_pair_excess_model(a[i].astype(np.int64), b.astype(np.int64)) for i in range(2)]
    assert got[0, 0, 0] == 32767 - 2 * 255 * 127
    b3 = np.stack([b, -b.astype(np.int16).clip(-128, 127).astype(np.int8)])  # b batched, a not
    got = arith.pairwise_saturation_excess(a[1], b3)
    assert got.shape == (2, 2, 2)
    assert got.tolist() == [_pair_excess_model(a[1].astype(np.int64), b3[i].astype(np.int64)) for i in range(2)]


def test_wrap_int32_by_hand():
    """Two's complement: 2**31 -> -2**31, -2**31 - 1 -> 2**31 - 1, 2**32 + 5 -> 5."""
    got = arith.wrap_int32(np.array([2**31, -(2**31) - 1, 2**32 + 5, -7, 2**31 - 1], np.int64))
    assert got.dtype == np.int32 and got.tolist() == [-(2**31), 2**31 - 1, 5, -7, 2**31 - 1]


def test_max_abs_by_hand():
    assert arith.max_abs(np.zeros(3, np.int8)) == 0 and arith.max_abs(np.zeros(0, np.int8)) == 0
    assert arith.max_abs(np.array([-128, 5], np.int8)) == 128  # no np.abs: -(-128) overflows int8
    assert arith.max_abs(np.array([-5, 2], np.int64)) == 5 and arith.max_abs(np.array([3, 1], np.uint8)) == 3


def test_requantize_zero_point_first_adds_in_the_product_type():
    """float32: real = 1 * (0.5 + 2**-24) is a float32; + 128 in float32 rounds to 128.5 (the float32 step at 128
    is 2**-16), which rounds half to even to 128. In float64 the sum would keep the 2**-24 and round to 129.
    A 0-d accumulator takes the same path as an array."""
    m = np.array(0.5 + 2.0**-24, np.float32)
    one = np.array(1.0, np.float32)
    for acc in (np.array(1, np.int32), np.array([1], np.int32)):
        got = arith.requantize(acc, m, one, one, np.uint8(128), UINT8, precision="float32", zero_point_first=True)
        assert np.asarray(got).tolist() == (128 if acc.ndim == 0 else [128])


# ---- requantize_integer: requantize(acc + bias, ...) in fewer passes; the same model as requantize


def _s(v: float) -> np.ndarray:
    return np.array(v, np.float32)


def test_requantize_integer_by_hand():
    """multiplier 1/16 as in test_requantize_by_hand; with bias 16: 1016 / 16 = 63.5 -> 64 (even) + 3 = 67."""
    acc = np.array([1000, -3, 7, 5000, -5000], np.int32)
    args = (_s(0.5), _s(0.25), _s(2.0), np.int8(3), INT8)
    for precision in ("float64", "float32", "mixed"):
        assert arith.requantize_integer(acc, *args, precision=precision).tolist() == [65, 3, 3, 127, -128]
        first = arith.requantize_integer(acc, *args, precision=precision, zero_point_first=True)
        assert first.tolist() == [66, 3, 3, 127, -128]
        bias = np.array([16, 0, 0, 0, 0], np.int32)
        assert arith.requantize_integer(acc, *args, precision=precision, bias=bias).tolist() == [67, 3, 3, 127, -128]


def test_requantize_integer_precisions():
    """Scales found by a search where the float32 product (onnxruntime) and the float64 one differ in int16."""
    a, b, y, acc = 0.7722837924957275, 0.9451432228088379, 24.23369598388672, -789459
    got = [
        int(arith.requantize_integer(np.array([acc], np.int32), _s(a), _s(b), _s(y), None, INT16, precision=p)[0])
        for p in ("float64", "float32", "mixed")
    ]
    want = [_requantize_model(acc, a, b, y, 0, p, False) for p in ("float64", "float32", "mixed")]
    assert got == want == [-23779, -23778, -23779]


def test_requantize_integer_rounds_acc_plus_bias_once():
    """float32: acc + bias is formed exactly, then rounded once to float32 (the ulp is 2 above 2**24).
    Rounding acc to float32 first and adding bias in float32 gives 26541 instead (found by a search)."""
    a, b, y, acc, bias = 0.6453625559806824, 0.16663819551467896, 95.42326354980469, 23550573, -3
    got = arith.requantize_integer(
        np.array([acc], np.int64), _s(a), _s(b), _s(y), None, INT16, precision="float32", bias=np.array([bias], np.int32)
    )
    m = _f32(_f32(a * b) / y)
    assert got.tolist() == [round(_f32(_f32(acc + bias) * m))] == [26542]


def test_requantize_integer_int32_output_takes_the_exact_path():
    """int32 is not float32-friendly: float32(2**31 - 1) = 2**31 would not saturate inside float32; the general
    path saturates to 2**31 - 1. Zero point first: 1000 / 16 + 3 = 65.5 -> 66 (even), after: 62 + 3 = 65."""
    int32 = qtype(np.dtype(np.int32))
    one = _s(1.0)
    got = arith.requantize_integer(np.array([2**31 - 1, -(2**31)], np.int64), one, one, one, None, int32,
                                   precision="float32")  # fmt: skip
    assert got.dtype == np.int32 and got.tolist() == [2**31 - 1, -(2**31)]
    args = (np.array([1000], np.int32), _s(0.5), _s(0.25), _s(2.0), np.int32(3), int32)
    assert arith.requantize_integer(*args, precision="float64", zero_point_first=True).tolist() == [66]
    assert arith.requantize_integer(*args, precision="float64").tolist() == [65]


def test_requantize_integer_of_an_overflowed_multiplier_is_an_error():
    big = _s(1e30)
    with np.errstate(over="ignore"), pytest.raises(NonFiniteError, match="NaN"):
        arith.requantize_integer(np.array([0], np.int32), big, big, _s(1.0), None, INT8, precision="float32")


def test_requantize_float32_multiplier_converts_each_scale_first():
    """precision float32: each scale becomes a float32 (onnxruntime's scale tensors are float32) and the
    multiplier is float32 arithmetic: m = f32(f32(f32(a) * f32(b)) / f32(y)). Keeping any one scale in float64
    gives a multiplier one float32 ulp away, and acc = 66373 then rounds to 271, not 270 (found by a search)."""
    a, b, y = 0.49573073330499756, 0.602017166175151, 73.22828378864475
    m = _f32(_f32(_f32(a) * _f32(b)) / _f32(y))
    want = round(_f32(_f32(66373) * m))
    assert want == 270
    scales = (np.array(a), np.array(b), np.array(y))  # float64 arrays
    for fn in (arith.requantize, arith.requantize_integer):
        assert fn(np.array([66373], np.int32), *scales, None, INT16, precision="float32").tolist() == [want]


def test_exact_float_matmul_types_and_chunks():
    """bound < 2**24: one float32 product (float32 result); above, float64 results.

    97 * 257 = 24929 and 2**24 + 1 = 97 * 257 * 673: a chunk of 673 such products would sum to 2**24 + 1, which
    float32 cannot hold; chunks of at most (2**24 - 1) // 24929 = 672 products are exact. K = 1346 is split in
    3 chunks (2 * 673 = 1346), batched so that K is a.shape[-1] and not a.shape[1]."""
    small = arith.exact_float_matmul(np.array([[3, -4]], np.int8), np.array([[5], [6]], np.int8), term=30, bound=100)
    assert small.dtype == np.float32 and small.tolist() == [[-9.0]]
    a = np.full((1, 2, 1346), 97, np.int64)
    b = np.full((1346, 1), 257, np.int64)
    got = arith.exact_float_matmul(a, b, term=24929, bound=1346 * 24929)
    assert got.dtype == np.float64 and got.tolist() == [[[1346 * 24929.0], [1346 * 24929.0]]]
    assert 97 * 257 * 673 == 2**24 + 1 and (2**24 - 1) // 24929 == 672


def test_float8_via_float16_rounds_x_to_float32_first():
    """x = 1 + 2**-4 + 2**-11 + 2**-30: float32 drops the 2**-30 (below half its ulp, 2**-24), leaving the float16
    tie 1.0625 + 2**-11, which goes to the even 1.0625 (significand 64 * 2**-10); that is the float8e4m3fn tie
    between 1.0 and 1.125, which goes to the even 1.0. Kept in float64, x would round up twice, to 1.125."""
    x = np.array([1 + 2.0**-4 + 2.0**-11 + 2.0**-30])
    got = arith._float8_via_float16(x, np.array(1.0, np.float32), None, _E4M3)
    assert got.astype(np.float64).tolist() == [1.0]


def test_flush_subnormals_keeps_the_smallest_normal():
    """Below float32's smallest normal 2**-126 only: +-2**-126 stay, the largest subnormal becomes a signed zero."""
    tiny = np.float32(2.0**-126)
    y = np.array([tiny, -tiny, np.nextafter(tiny, np.float32(0)), -np.nextafter(tiny, np.float32(0)), 1.0], np.float32)
    got = arith._flush_subnormals(y)
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
    got = arith.dequantize_lowered(q, scale, zp, np.float32, formula="exact", subnormals="keep")
    assert got.tolist() == [exact]
    got = arith.dequantize_lowered(q, scale, zp, np.float32, formula="distributed", subnormals="keep")
    assert got.tolist() == [distributed]


def test_dequantize_lowered_distributed_overflows_quietly():
    """127 * 3e38 is beyond float32: +inf (and -inf for -128), without a floating-point warning."""
    got = arith.dequantize_lowered(np.array([127, -128], np.int8), np.float32(3e38), None, np.float32,
                                   formula="distributed", subnormals="keep")  # fmt: skip
    assert got.tolist() == [np.inf, -np.inf]


_SUM_FLOATS = st.floats(-(2.0**1000), 2.0**1000, allow_nan=False, allow_infinity=False)


@given(_SUM_FLOATS, _SUM_FLOATS)
def test_add_round_to_odd(a, b):
    """The exact sum when it is a float64, else whichever float64 neighbour of it has an odd last bit."""
    got = float(arith.add_round_to_odd(np.array([a]), np.array([b]))[0])
    exact, nearest = Fraction(a) + Fraction(b), a + b
    if Fraction(nearest) == exact:
        assert got == nearest
        return
    lo, hi = (nearest, float(np.nextafter(nearest, np.inf))) if Fraction(nearest) < exact else (
        float(np.nextafter(nearest, -np.inf)), nearest)  # fmt: skip
    assert got == (lo if np.array(lo).view(np.uint64) % 2 else hi)


@pytest.mark.parametrize("a, b", [(1.0, 2.0**-60), (1.0, -(2.0**-60)), (2.0**60, 3.0), (-(2.0**60), -3.0), (0.1, 0.2)])
def test_add_round_to_odd_by_hand(a, b):
    """1 + 2**-60 lies between 1 and 1 + 2**-52: the odd one is 1 + 2**-52; 1 - 2**-60: 1 - 2**-53 (odd);
    2**60 + 3 (ulp 2**8): between 2**60 and 2**60 + 2**8, the odd one is 2**60 + 2**8."""
    got = float(arith.add_round_to_odd(np.array([a]), np.array([b]))[0])
    want = {(1.0, 2.0**-60): 1 + 2.0**-52, (1.0, -(2.0**-60)): 1 - 2.0**-53, (2.0**60, 3.0): 2.0**60 + 2**8,
            (-(2.0**60), -3.0): -(2.0**60) - 2**8}.get((a, b))  # fmt: skip
    if want is None:  # 0.1 + 0.2: the exact sum is not a float64; check the neighbour rule with Fractions
        exact = Fraction(a) + Fraction(b)
        assert Fraction(got) != exact and abs(Fraction(got) - exact) < Fraction(2.0**-54)
        assert np.array(got).view(np.uint64) % 2 == 1
    else:
        assert got == want


def test_fake_quantize_nan_is_an_error_by_default_and_maps_to_the_zero_point_on_request():
    one, zp = np.array(1.0, np.float32), np.array(5, np.int8)
    with pytest.raises(NonFiniteError):
        arith.fake_quantize(np.array([np.nan, 1.0], np.float32), one, zp, INT8)
    # nan="zero_point": NaN -> 5; 1 / 1 + 5 = 6
    got = arith.fake_quantize(np.array([np.nan, 1.0], np.float32), one, zp, INT8, nan="zero_point")
    assert got.tolist() == [5, 6]


def test_fake_quantize_float8_keeps_its_zero_point():
    """float types go through float16: 1 / 1 + 2 = 3."""
    got = arith.fake_quantize(np.array([1.0]), np.array(1.0, np.float32), np.array(2.0, np.float32), _E4M3)
    assert got.astype(np.float64).tolist() == [3.0]


def test_fake_quantize_int8_with_zero_point_one_takes_the_general_path():
    """zp = 1: il * isc = -129, 1 away from -128, so not OpenVINO's aligned int8 path:
    q = -128 + rint(0 * isc - (-129)) = 1 for x = 0 (the aligned path would give rint(0) = 0)."""
    got = arith.fake_quantize(np.array([0.0, 1.0], np.float32), np.array(1.0, np.float32), np.array(1, np.int8), INT8)
    assert got.tolist() == [1, 2]


def test_fake_quantize_16bit_identity_range_rounds_x_to_float32_first():
    """float32(2.9999999999) = 3.0 (the float32 step at 2 is 2**-22), which truncates to 3, not 2."""
    int16 = qtype(np.dtype(np.int16))
    got = arith.fake_quantize(np.array([2.9999999999, -2.9999999999]), np.array(1.0, np.float32), None, int16)
    assert got.tolist() == [3, -3]


def test_fma_float32_rounds_once_to_float32():
    """1 * (1 + 2**-23) + 2**-25 lies below the float32 tie 1 + 2**-23 + 2**-24, so it is 1 + 2**-23; the result
    is a float32 (a float64 here would be a second, different rounding for float16 outputs)."""
    got = arith.fma_float32(np.float32(1.0), np.float32(1 + 2.0**-23), np.float32(2.0**-25))
    assert got.dtype == np.float32 and float(got) == 1 + 2.0**-23
    # (1 + 2**-12)**2 - 1 = 2**-11 + 2**-24 exactly: a fused multiply-add keeps the 2**-24
    got = arith.fma_float32(np.float32(1 + 2.0**-12), np.float32(1 + 2.0**-12), np.float32(-1.0))
    assert got.dtype == np.float32 and float(got) == 2.0**-11 + 2.0**-24
