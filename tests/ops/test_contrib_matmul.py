"""com.microsoft FusedMatMul: refquant/ops/contrib_matmul.py (spec/ops/contrib.md, "Transformer operators").

Expected values: small integers by hand (exact), the transposition rule against numpy on every flag
combination (the rule measured on onnxruntime 1.32, spec/ops/contrib.md), and onnxruntime's CPU kernel on
seeded random inputs within the measured float32 units.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto as T

from refquant.errors import ShapeError

from .transformer_helpers import compare_with_onnxruntime, run_refquant

pytest.importorskip("onnxruntime")

#: measured: at most 3.0 units of 2^-24 * max|output| (spec/ops/contrib.md)
UNITS = 6


def test_by_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    b = np.array([[5.0, 6.0], [7.0, 8.0]], np.float32)
    (y,) = run_refquant("FusedMatMul", [("A", a), ("B", b)], alpha=0.5)
    assert y.tolist() == [[9.5, 11.0], [21.5, 25.0]]  # 0.5 * [[19, 22], [43, 50]]
    (y,) = run_refquant("FusedMatMul", [("A", a), ("B", b)], transA=1, transB=1)
    assert y.tolist() == [[23.0, 31.0], [34.0, 46.0]]  # a^T @ b^T


def logical(x, trans_batch, trans):
    if trans_batch:
        x = np.moveaxis(x, 0, x.ndim - 2)
    return np.swapaxes(x, -1, -2) if trans else x


@pytest.mark.parametrize("flags", list(itertools.product((0, 1), repeat=4)))
def test_transposition_flags(flags):
    """Stored shapes chosen so that the logical A is (2, 3, 4, 5) and B (2, 3, 5, 6) (or their 3-D forms)."""
    tba, ta, tbb, tb = flags
    rng = np.random.default_rng(sum(f << i for i, f in enumerate(flags)))
    a = rng.integers(-4, 5, (4, 2, 3, 5) if tba and not ta else (2, 3, 5, 4) if ta and not tba else (5, 2, 3, 4) if ta else (2, 3, 4, 5)).astype(np.float32)
    b = rng.integers(-4, 5, (5, 2, 3, 6) if tbb and not tb else (2, 3, 6, 5) if tb and not tbb else (6, 2, 3, 5) if tb else (2, 3, 5, 6)).astype(np.float32)
    attrs = dict(transBatchA=tba, transA=ta, transBatchB=tbb, transB=tb)
    (y,) = run_refquant("FusedMatMul", [("A", a), ("B", b)], **attrs)
    expected = np.matmul(logical(a, tba, ta), logical(b, tbb, tb))
    assert expected.shape == (2, 3, 4, 6)
    np.testing.assert_array_equal(y, expected)  # small integers: exact
    compare_with_onnxruntime("FusedMatMul", [("A", a), ("B", b)], (T.FLOAT,), 0, **attrs)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_onnxruntime(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3, 4, 16)).astype(np.float32)
    b = rng.standard_normal((1, 8, 16)).astype(np.float32)
    compare_with_onnxruntime("FusedMatMul", [("A", a), ("B", b)], (T.FLOAT,), UNITS, transB=1, alpha=0.125)
    compare_with_onnxruntime("FusedMatMul", [("A", a[0]), ("B", b[0].T.copy())], (T.FLOAT,), UNITS)


def test_float64_is_one_rounding_of_the_float64_product():
    a = np.array([[1.0, 2.0**-60]], np.float64)
    b = np.array([[1.0], [1.0]], np.float64)
    (y,) = run_refquant("FusedMatMul", [("A", a), ("B", b)], (T.DOUBLE,), alpha=3.0)
    assert y.tolist() == [[3.0 * (1.0 + 2.0**-60)]]


def test_errors():
    with pytest.raises(ShapeError, match="inner dimensions"):
        run_refquant("FusedMatMul", [("A", np.zeros((2, 3), np.float32)), ("B", np.zeros((2, 3), np.float32))])
    with pytest.raises(ShapeError, match="rank >= 2"):
        run_refquant("FusedMatMul", [("A", np.zeros(3, np.float32)), ("B", np.zeros((3, 2), np.float32))], transA=1)
