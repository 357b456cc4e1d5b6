"""The exact primitives: single rounding when narrowing, exact products, parameter broadcasting."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant import arith
from refquant.errors import QuantParamError


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
