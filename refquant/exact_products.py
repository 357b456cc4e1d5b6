"""Exact integer products through float BLAS, and the bounds that make them exact.

numpy's integer matmul does not use BLAS. An integer dot product computed in float32 or float64 is
exact when every partial sum, in whatever order BLAS adds, is an integer the type holds (< 2**24 in
float32, < 2**53 in float64); each function states the bound it relies on (spec/arithmetic.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["max_abs", "exact_float_matmul", "exact_matmul"]


def max_abs(a: np.ndarray) -> int:
    """max |a| as a Python int (0 when empty); no np.abs, which overflows at int8's -128."""
    return max(int(a.max(initial=0)), -int(a.min(initial=0)))


#: float32 K-chunks shorter than this make BLAS slower than one float64 product
_MIN_FLOAT32_CHUNK = 128


def exact_float_matmul(a: np.ndarray, b: np.ndarray, *, term: int, bound: int) -> np.ndarray:
    """``a @ b`` of integer-valued arrays, as float32 or float64 holding the exact integers.

    The caller vouches that |a[..., i, k] * b[..., k, j]| <= ``term`` and that
    sum_k |a[..., i, k] * b[..., k, j]| <= ``bound`` < 2**53 for every output.
    Every partial sum BLAS forms, in whatever order, adds terms of one dot
    product, so its magnitude is at most ``bound``, and at most c * term over a
    K-chunk of length c:

    - bound < 2**24: one float32 product;
    - else K in equal chunks of at most (2**24 - 1) // term, one float32 product
      each, added in float64 (partial totals <= bound < 2**53), when the chunks
      are long enough to keep BLAS fast;
    - else one float64 product.
    """
    if bound < 2**24:
        return np.matmul(a.astype(np.float32, copy=False), b.astype(np.float32, copy=False))
    k, longest = a.shape[-1], (2**24 - 1) // term
    if longest < _MIN_FLOAT32_CHUNK:
        return np.matmul(a.astype(np.float64, copy=False), b.astype(np.float64, copy=False))
    a32, b32 = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    step = -(-k // -(-k // longest))  # ceil(k / number of chunks)
    total = np.matmul(a32[..., :step], b32[..., :step, :]).astype(np.float64)
    for start in range(step, k, step):
        total += np.matmul(a32[..., start : start + step], b32[..., start : start + step, :])
    return total


def exact_matmul(a: np.ndarray, b: np.ndarray, *, bound: int | None = None) -> np.ndarray:
    """``a @ b`` for integer arrays (numpy matmul broadcasting), exact, as int64.

    Bound: every partial sum of a length-K dot product satisfies
    |s| <= sum_k |a[k] * b[k]| <= K * max|a| * max|b|; ``bound`` is a tighter
    bound of that sum the caller knows (e.g. max|a| times the largest column
    sum of |b|). Below 2**53, :func:`exact_float_matmul` computes it; otherwise
    K is cut into chunks that meet the float64 bound and the chunk results are
    added in int64.
    """
    k = a.shape[-1]
    term = max_abs(a) * max_abs(b)
    if term == 0 or k == 0:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return np.zeros(shape, np.int64)
    bound = k * term if bound is None else min(bound, k * term)
    if bound < 2**53:
        return exact_float_matmul(a, b, term=term, bound=bound).astype(np.int64)
    chunk = (2**53 - 1) // term
    if chunk == 0:  # a single product is not exact in float64: Python integers
        return np.matmul(a.astype(object), b.astype(object)).astype(np.int64)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    total = None
    for start in range(0, k, chunk):
        part = np.matmul(a64[..., start : start + chunk], b64[..., start : start + chunk, :]).astype(np.int64)
        total = part if total is None else total + part
    return total

