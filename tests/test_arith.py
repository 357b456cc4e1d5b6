"""The spec's arithmetic (refquant/arith.py): single rounding when narrowing, quantize, dequantize and
requantize. Parameter broadcasting: tests/test_qparams.py; lowerings: tests/test_lowerings.py; exact
products: tests/test_exact_products.py."""

from __future__ import annotations

import re
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant import arith
from refquant.dtypes import qtype
from refquant.errors import NonFiniteError


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
    got = arith.dequantize_values(np.array([diff], np.int64), np.array(scale, np.float32), None, np.float32)[0]
    exact = Fraction(diff) * Fraction(scale)
    neighbours = [np.nextafter(got, np.float32(-np.inf)), got, np.nextafter(got, np.float32(np.inf))]
    distances = [abs(Fraction(float(v)) - exact) for v in neighbours]
    assert distances[1] <= min(distances)


#: an int32 q - zp just past 2**29 whose product with a float32 scale double-rounds through float64 (derived
#: below); ``(q, scale, want)``
DOUBLE_ROUNDING_DEQUANTIZE = (1073115509, 1 + 5853 / 2**23, 1073864320.0)


@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("zero_point", [None, 7])
def test_dequantize_beyond_2_29_rounds_once(size, zero_point):
    """diff = 1073115509 (30 bits, below 2**30) times s = (2**23 + 5853) / 2**23 (24 bits) has 54 bits:
    diff * (2**23 + 5853) = 16779129 * 2**29 + 1, so diff * s = 16779129 * 64 + 2**-23, just above the
    float32 midpoint 1073864256 between 8389565 * 128 (even) and 8389566 * 128. Rounded once it is the upper
    neighbour 1073864320; through float64 (ulp 2**-22 there) it is the midpoint, then the even lower one."""
    diff, scale, want = DOUBLE_ROUNDING_DEQUANTIZE
    assert diff * (2**23 + 5853) == 16779129 * 2**29 + 1 and float(np.float32(diff * scale)) == want - 128
    zp = 0 if zero_point is None else zero_point
    q = np.full(size, diff + zp, np.int32)
    got = arith.dequantize_values(q, np.float32(scale), None if zero_point is None else np.int32(zp), np.float32)
    assert got.dtype == np.float32 and got.tolist() == [want] * size


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


def _f32(v: float) -> float:
    return float(np.float32(v))  # one correct rounding of a Python (binary64) value


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


# ---- the int32 "indefinite" cast (quantize with overflow="int32-indefinite")


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

def test_wrap_int32_by_hand():
    """Two's complement: 2**31 -> -2**31, -2**31 - 1 -> 2**31 - 1, 2**32 + 5 -> 5."""
    got = arith.wrap_int32(np.array([2**31, -(2**31) - 1, 2**32 + 5, -7, 2**31 - 1], np.int64))
    assert got.dtype == np.int32 and got.tolist() == [-(2**31), 2**31 - 1, 5, -7, 2**31 - 1]


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


# ---- narrow's helpers: rounding to odd into float32, the out-of-range test, signed zeros


def test_round_to_odd_f32_by_hand():
    """x1 = 1 + 2**-8 + 3 * 2**-26 and x2 = 1 + 2**-8 + 3 * 2**-25 lie between the float32 values 1 + 2**-8 (even
    last bit) and 1 + 2**-8 + 2**-23 (odd); x1 is nearer the even one, x2 nearer the odd one. Rounding to odd gives
    the odd one for both, and bfloat16 (8 bits) then rounds it up to 1 + 2**-7, their nearest bfloat16 (both are
    above the bfloat16 tie 1 + 2**-8); a result on the tie would round to the even 1.
    Beyond float32's range: +-FLT_MAX, whose significand (all ones) is odd."""
    x1, x2 = 1 + 2.0**-8 + 3 * 2.0**-26, 1 + 2.0**-8 + 3 * 2.0**-25
    got = arith._round_to_odd_f32(np.array([x1, -x1, x2, -x2, 1e300, -1e300, 0.75]))
    odd, flt_max = 1 + 2**-8 + 2**-23, float(np.finfo(np.float32).max)
    assert got.dtype == np.float32
    assert got.astype(np.float64).tolist() == [odd, -odd, odd, -odd, flt_max, -flt_max, 0.75]
    for x in (x1, x2):
        assert _nearest_even_binary(Fraction(x), 8) == 1 + Fraction(1, 2**7)
        assert arith.narrow(np.array([x]), ml_dtypes.bfloat16).astype(np.float64).tolist() == [1 + 2**-7]


def test_narrow_beyond_float32_range():
    """1e300 and 3.5e38 (> FLT_MAX = 3.4028...e38) are beyond bfloat16's largest value: +-inf (Cast: OOR -> inf),
    without an overflow warning from the intermediate float32 step."""
    got = arith.narrow(np.array([1e300, -1e300, 3.5e38]), ml_dtypes.bfloat16).astype(np.float64)
    assert got.tolist() == [np.inf, -np.inf, np.inf]


@pytest.mark.parametrize(
    "dtype, halfway, max_is_odd",
    [
        (ml_dtypes.bfloat16, (2 - 2**-8) * 2.0**127, True),  # max 1.1111111 * 2**127, ulp 2**120
        (ml_dtypes.float8_e4m3fn, 464.0, False),  # max 448 = 1.110 * 2**8, ulp 32
        (ml_dtypes.float8_e4m3fnuz, 248.0, True),  # max 240 = 1.111 * 2**7, ulp 16
        (ml_dtypes.float8_e5m2, 61440.0, True),  # max 57344 = 1.11 * 2**15, ulp 8192
        (ml_dtypes.float4_e2m1fn, 7.0, True),  # max 6 = 1.1 * 2**2, ulp 2
        (ml_dtypes.float6_e2m3fn, 7.75, True),  # max 7.5 = 1.111 * 2**2, ulp 0.5
        (ml_dtypes.float6_e3m2fn, 30.0, True),  # max 28 = 1.11 * 2**4, ulp 4
    ],
    ids=lambda v: np.dtype(v).name if isinstance(v, type) else None,
)
def test_rounds_beyond_max_by_hand(dtype, halfway, max_is_odd):
    """max + ulp / 2 (derived by hand above) rounds beyond max exactly when max's significand is odd; a float64
    step below it never does, a step above always; infinities do, NaN does not; the sign does not matter."""
    points = np.array([halfway, np.nextafter(halfway, 0), np.nextafter(halfway, np.inf), np.inf, np.nan, 1.0])
    want = [max_is_odd, False, True, True, False, False]
    assert arith._rounds_beyond_max(points, np.dtype(dtype)).tolist() == want
    assert arith._rounds_beyond_max(-points, np.dtype(dtype)).tolist() == want


@pytest.mark.parametrize(
    "dtype", [ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.float4_e2m1fn,
              ml_dtypes.float6_e2m3fn],
    ids=lambda d: np.dtype(d).name,
)  # fmt: skip
def test_narrow_keeps_minus_zero_where_the_type_has_one(dtype):
    """IEEE rounding keeps the sign: -0 and a negative value that rounds to zero are -0 (the sign bit alone);
    only the fnuz types, whose -0 code is NaN, give +0 (test_narrow_gives_plus_zero_for_minus_zero_in_fnuz_types)."""
    bits = ml_dtypes.finfo(dtype).bits
    got = arith.narrow(np.array([-0.0, -1e-300, 0.0]), dtype).view(np.dtype(f"u{np.dtype(dtype).itemsize}"))
    assert got.tolist() == [1 << (bits - 1), 1 << (bits - 1), 0]


# ---- quantize: the profile's NaN rule, float zero points, float4, the division's special cases

F4 = qtype(np.dtype(ml_dtypes.float4_e2m1fn))
F8 = qtype(np.dtype(ml_dtypes.float8_e4m3fn))


def test_nan_error_message():
    message = (
        "input has 2 NaN value(s); int8 has no NaN (profile option nan='error'; use 'qmin' or 'zero_point' to map them)"
    )
    with pytest.raises(NonFiniteError, match="^" + re.escape(message) + "$"):
        arith.quantize_values(
            np.array([np.nan, 1.0, np.nan]), np.array(1.0, np.float32), None, INT8, precision=np.float64
        )


def test_quantize_to_float8_adds_the_zero_point():
    """x / scale + zero point: 1 / 1 + 2 = 3, -0.5 + 2 = 1.5, 500 + 2 = 502 -> saturated to 448 (float8e4m3fn max)."""
    zp = np.array(2.0, ml_dtypes.float8_e4m3fn)
    got = arith.quantize_values(np.array([1.0, -0.5, 500.0]), np.array(1.0, np.float32), zp, F8, precision=np.float32)
    assert got.dtype == F8.dtype and got.astype(np.float64).tolist() == [3.0, 1.5, 448.0]


@pytest.mark.parametrize("saturate", [True, False])
def test_quantize_to_float4_applies_the_nan_rule(saturate):
    """float4 has no NaN and no inf: it always saturates (100 -> 6), and NaN follows the profile's rule:
    qmin (-6), the zero point (0.5; 1 / 1 + 0.5 = 1.5), or an error."""
    x, one = np.array([np.nan, 1.0, 100.0]), np.array(1.0, np.float32)
    zp = np.array(0.5, ml_dtypes.float4_e2m1fn)
    kw = dict(precision=np.float32, saturate=saturate)
    assert arith.quantize_values(x, one, zp, F4, nan="qmin", **kw).astype(np.float64).tolist() == [-6.0, 1.5, 6.0]
    assert arith.quantize_values(x, one, zp, F4, nan="zero_point", **kw).astype(np.float64).tolist() == [0.5, 1.5, 6.0]
    with pytest.raises(NonFiniteError, match="float4e2m1 has no NaN"):
        arith.quantize_values(x, one, zp, F4, nan="error", **kw)


def test_quantize_division_overflow_and_zero_scale_follow_ieee():
    """The division in ``precision`` (IEEE, no warning): in float16 the scale 1e-10 rounds to 0 (below half the
    smallest float16 subnormal 2**-24), so 1 / 0 = inf -> 127, -1 / 0 = -inf -> -128, 0 / 0 = NaN -> qmin (-128),
    and 1e300 is inf in float16 already (inf / 0 = inf -> 127). In float64, 1e308 / 1e-10 overflows to inf -> 127."""
    assert float(np.float16(1e-10)) == 0.0
    x = np.array([1.0, -1.0, 0.0, 1e300])
    got = arith.quantize_values(x, np.array(1e-10, np.float32), None, INT8, precision=np.float16, nan="qmin")
    assert got.tolist() == [127, -128, -128, 127]
    got = arith.quantize_values(np.array([1e308, -1e308]), np.array(1e-10), None, INT8, precision=np.float64)
    assert got.tolist() == [127, -128]


@pytest.mark.parametrize("zero_point", [None, np.int8(3)])
def test_quantize_bfloat16_int32_indefinite(zero_point):
    """precision bfloat16 with overflow "int32-indefinite" (onnx.reference: ml_dtypes' bfloat16 -> int32 cast):
    2.5 -> rint 2, -3.5 -> -4 (ties to even), 1e10 and NaN -> 0 (ml_dtypes gives 0 out of range), then + zp."""
    zp = 0 if zero_point is None else 3
    x = np.array([2.5, -3.5, 1e10, np.nan])
    got = arith.quantize_values(x, np.array(1.0, np.float32), zero_point, INT8, precision=ml_dtypes.bfloat16,
                                overflow="int32-indefinite")  # fmt: skip
    assert got.dtype == np.int8 and got.tolist() == [2 + zp, -4 + zp, zp, zp]


def test_dequantize_float8_with_a_zero_point_rounds_once():
    """float8e5m2 q = 57344 (7 * 2**13), zero point 2**-16 (its smallest subnormal), scale 1 + 2**-22 (float32):
    (q - zp) * s = 57344 + 7 * 2**-9 - 2**-16 - 2**-38, just below the float32 midpoint 57344 + 3.5 * 2**-8 (the
    float32 ulp there is 2**-8), so it rounds down to 57344 + 3 * 2**-8. Rounding q - zp to float32 first gives
    57344, and 57344 * s is the midpoint itself, which ties to the even 57344 + 4 * 2**-8."""
    q = np.array([57344.0], ml_dtypes.float8_e5m2)
    zp = np.array(2.0**-16, ml_dtypes.float8_e5m2)
    scale = np.array(1 + 2.0**-22, np.float32)
    exact = (Fraction(57344) - Fraction(1, 2**16)) * (1 + Fraction(1, 2**22))
    assert exact == 57344 + Fraction(7, 2**9) - Fraction(1, 2**16) - Fraction(1, 2**38)
    got = arith.dequantize_values(q, scale, zp, np.float32)
    assert got.dtype == np.float32 and got.tolist() == [57344 + 3 * 2**-8]


def test_quantize_values_defaults_saturate_and_refuse_nan():
    """The spec's defaults (saturate=True, nan="error"): 1000 / 1 and -1000 / 1 saturate to int8's 127 and -128
    (and to float8e4m3fn's +-448), 0.5 / 1.5 / 2.5 round half to even (0, 2, 2), and a NaN is refused; an empty
    x is an empty result."""
    int8 = qtype(np.dtype(np.int8))
    x = np.array([1000, -1000, 0.5, 1.5, 2.5], np.float32)
    got = arith.quantize_values(x, np.float32(1), None, int8, precision=np.float32)
    assert got.dtype == np.int8 and got.tolist() == [127, -128, 0, 2, 2]
    with pytest.raises(NonFiniteError):
        arith.quantize_values(np.array([np.nan], np.float32), np.float32(1), None, int8, precision=np.float32)
    empty = arith.quantize_values(np.zeros(0, np.float32), np.float32(1), None, int8, precision=np.float32)
    assert empty.dtype == np.int8 and empty.shape == (0,)
    # float8 saturates by default too: 1000 -> float8e4m3fn's largest finite value, 448 (not NaN)
    e4m3 = qtype(np.dtype(ml_dtypes.float8_e4m3fn))
    big = arith.quantize_values(np.array([1000, -1000], np.float32), np.float32(1), None, e4m3, precision=np.float32)
    assert big.astype(np.float64).tolist() == [448.0, -448.0]
