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


def test_narrow_to_bfloat16_avoids_double_rounding():
    value = 1 + 2**-8 + 2**-30  # just above the bfloat16 tie 1 + 2**-8; float32 would round it onto the tie
    assert float(np.array([value]).astype(ml_dtypes.bfloat16)[0]) == 1.0  # the trap: ml_dtypes goes via float32
    assert float(arith.narrow(np.array([value]), ml_dtypes.bfloat16)[0]) == 1 + 2**-7


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
