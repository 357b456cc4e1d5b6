"""Exact integer products through float BLAS (refquant/exact_products.py), at and past their bounds.

Expected values are Python-integer dot products or hand derivations, never refquant itself. The
kernels' fast paths over these products are driven by tests/test_fast_paths.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant import exact_products


# ---- max_abs and exact_float_matmul


def test_max_abs_by_hand():
    max_abs = exact_products.max_abs
    assert max_abs(np.zeros(3, np.int8)) == 0 and max_abs(np.zeros(0, np.int8)) == 0
    assert max_abs(np.array([-128, 5], np.int8)) == 128  # no np.abs: -(-128) overflows int8
    assert max_abs(np.array([-5, 2], np.int64)) == 5 and max_abs(np.array([3, 1], np.uint8)) == 3


def test_exact_float_matmul_types_and_chunks():
    """bound < 2**24: one float32 product (float32 result); above, float64 results.

    97 * 257 = 24929 and 2**24 + 1 = 97 * 257 * 673: a chunk of 673 such products would sum to 2**24 + 1, which
    float32 cannot hold; chunks of at most (2**24 - 1) // 24929 = 672 products are exact. K = 1346 is split in
    3 chunks (2 * 673 = 1346), batched so that K is a.shape[-1] and not a.shape[1]."""
    a, b = np.array([[3, -4]], np.int8), np.array([[5], [6]], np.int8)
    small = exact_products.exact_float_matmul(a, b, term=30, bound=100)
    assert small.dtype == np.float32 and small.tolist() == [[-9.0]]
    a = np.full((1, 2, 1346), 97, np.int64)
    b = np.full((1346, 1), 257, np.int64)
    got = exact_products.exact_float_matmul(a, b, term=24929, bound=1346 * 24929)
    assert got.dtype == np.float64 and got.tolist() == [[[1346 * 24929.0], [1346 * 24929.0]]]
    assert 97 * 257 * 673 == 2**24 + 1 and (2**24 - 1) // 24929 == 672


# ---- exact_matmul: every path checked against Python-integer dot products


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
    np.testing.assert_array_equal(exact_products.exact_matmul(a, b), expected)


def test_exact_matmul_beyond_float64_falls_back_exactly():
    a = np.array([[2**31 - 1, 2**31 - 1]], np.int64)
    b = np.array([[2**31 - 1], [-(2**31)]], np.int64)
    assert exact_products.exact_matmul(a, b)[0, 0] == (2**31 - 1) ** 2 - (2**31 - 1) * 2**31


def _int_matmul(a: np.ndarray, b: np.ndarray) -> list:
    """a @ b (2-D) with Python integers."""
    return [[sum(int(x) * int(y) for x, y in zip(row, col)) for col in b.T] for row in a]


def test_exact_matmul_zero_operands_keep_the_broadcast_shape():
    """term 0 (an all-zero operand) returns int64 zeros of numpy matmul's shape, both ways round."""
    for a_shape, b_shape, want in [((2, 3, 4, 5), (3, 5, 6), (2, 3, 4, 6)), ((3, 4, 5), (2, 3, 5, 6), (2, 3, 4, 6))]:
        got = exact_products.exact_matmul(np.zeros(a_shape, np.int64), np.ones(b_shape, np.int64))
        assert got.dtype == np.int64 and got.shape == want and not got.any()
    assert exact_products.exact_matmul(np.ones((2, 0), np.int8), np.ones((0, 3), np.int8)).tolist() == [[0] * 3] * 2


def test_exact_matmul_of_unit_and_single_term_products():
    """term 1 (values in {-1, 0, 1}) and K = 1 are ordinary products, not the zero shortcut."""
    a = np.array([[1, -1, 0], [1, 1, 1]], np.int8)
    b = np.array([[1], [1], [-1]], np.int8)
    assert exact_products.exact_matmul(a, b).tolist() == [[0], [1]]
    got = exact_products.exact_matmul(np.array([[3], [-2]], np.int16), np.array([[5, 7]], np.int16))
    assert got.dtype == np.int64 and got.tolist() == [[15, 21], [-10, -14]]


def test_exact_matmul_batched_uses_the_last_axis_as_k():
    """a (3, 2, 4): K = 4 is a.shape[-1], not a.shape[1] = 2."""
    a = np.arange(24, dtype=np.int64).reshape(3, 2, 4) - 12
    b = np.arange(8, dtype=np.int64).reshape(4, 2) - 3
    got = exact_products.exact_matmul(a, b)
    assert got.dtype == np.int64 and got.tolist() == [_int_matmul(a[i], b) for i in range(3)]


# 2**53 + 1 = 3 * 107 * 28059810762433; T = 107 * 28059810762433 < 2**53, so three products of T sum to
# 2**53 + 1, which float64 rounds to 2**53 (a tie, to even): at most (2**53 - 1) // T = 2 of them per chunk.
_T_A, _T_B = 107, 28059810762433


@pytest.mark.parametrize("bound", [None, 3 * _T_A * _T_B, 2**62])
def test_exact_matmul_chunks_so_that_each_float64_sum_is_exact(bound):
    assert 3 * _T_A * _T_B == 2**53 + 1
    a = np.array([[[_T_A, _T_A, _T_A], [_T_A, -_T_A, _T_A]]], np.int64)  # batched: K is a.shape[-1], not [1]
    b = np.array([[_T_B, 1], [_T_B, 2], [_T_B, 3]], np.int64)
    got = exact_products.exact_matmul(a, b, bound=bound)
    assert got.dtype == np.int64 and got.tolist() == [[[2**53 + 1, 6 * _T_A], [_T_A * _T_B, 2 * _T_A]]]


def test_exact_matmul_with_a_tighter_bound_from_the_caller():
    """The caller's bound may only be smaller than K * term; either way the result is exact."""
    a = np.array([[2**20, -(2**20), 3]], np.int64)
    b = np.array([[2**20], [2**20 - 1], [5]], np.int64)
    for bound in (2**40 + 15, 3 * 2**40, 2**60):
        got = exact_products.exact_matmul(a, b, bound=bound)
        assert got.dtype == np.int64 and got.tolist() == [[2**20 + 15]]


def test_exact_matmul_object_fallback_is_int64():
    """term >= 2**53: Python integers; (2**31 - 1)**2 * 2 needs all 63 bits of int64."""
    a = np.array([[2**31 - 1, 2**31 - 1], [1, 2**31 - 1]], np.int64)
    b = np.array([[2**31 - 1], [2**31 - 1]], np.int64)
    got = exact_products.exact_matmul(a, b)
    assert got.dtype == np.int64 and got.tolist() == [[2 * (2**31 - 1) ** 2], [(2**31 - 1) ** 2 + 2**31 - 1]]

