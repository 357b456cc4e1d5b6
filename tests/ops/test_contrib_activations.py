"""com.microsoft Gelu, BiasGelu, FastGelu, QuickGelu, BiasAdd: refquant/ops/contrib_activations.py
(spec/ops/contrib.md, "Transformer operators").

Expected values: the formulas of onnxruntime's contrib documentation evaluated by hand with Python's math
module (float64) and rounded once; onnxruntime's CPU kernels on seeded random inputs within the measured
float32 units of spec/ops/contrib.md (BiasAdd has no CPU kernel: by hand only).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto as T

from refquant.errors import DTypeError, ShapeError

from .transformer_helpers import compare_with_onnxruntime, run_refquant

pytest.importorskip("onnxruntime")

#: measured: at most 2.4 units of 2^-24 * max|output| over 4 x 30 draws (spec/ops/contrib.md)
UNITS = 4

X = np.array([[-3.0, -1.0, -0.5, 0.0], [0.5, 1.0, 2.0, 10.0]], np.float32)


def gelu(v):
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def fast_gelu(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


def by_hand(function, values, dtype=np.float32):
    return np.array([[function(float(v)) for v in row] for row in values], np.float64).astype(dtype)


def test_gelu_by_hand():
    (y,) = run_refquant("Gelu", [("X", X)])
    np.testing.assert_array_equal(y, by_hand(gelu, X))
    assert y[1, 1] == np.float32(0.8413447460685429)  # 0.5 (1 + erf(1 / sqrt 2))


def test_gelu_float64_and_float16():
    (y,) = run_refquant("Gelu", [("X", X.astype(np.float64))], (T.DOUBLE,))
    np.testing.assert_array_equal(y, by_hand(gelu, X, np.float64))
    (y,) = run_refquant("Gelu", [("X", X.astype(np.float16))], (T.FLOAT16,))
    np.testing.assert_array_equal(y, by_hand(gelu, X, np.float16))


def test_bias_gelu_adds_the_bias_exactly_first():
    b = np.array([0.25, -0.5, 2.0**-30, 1.0], np.float32)
    (y,) = run_refquant("BiasGelu", [("A", X), ("B", b)])
    exact = [[float(x) + float(c) for x, c in zip(row, b)] for row in X]  # float64 sums of float32 values: exact
    np.testing.assert_array_equal(y, by_hand(gelu, exact))


def test_fast_gelu_with_and_without_bias():
    (y,) = run_refquant("FastGelu", [("X", X)])
    np.testing.assert_array_equal(y, by_hand(fast_gelu, X))
    b = np.array([1.0, 0.0, -1.0, 0.5], np.float32)
    (y,) = run_refquant("FastGelu", [("X", X), ("bias", b)])
    np.testing.assert_array_equal(y, by_hand(fast_gelu, X + b))


def test_quick_gelu_default_alpha_and_attribute():
    def quick(alpha):
        return lambda v: v / (1.0 + math.exp(-alpha * v))

    (y,) = run_refquant("QuickGelu", [("X", X)])
    np.testing.assert_array_equal(y, by_hand(quick(float(np.float32(1.702))), X))
    (y,) = run_refquant("QuickGelu", [("X", X)], alpha=1.0)
    np.testing.assert_array_equal(y, by_hand(quick(1.0), X))
    (y,) = run_refquant("QuickGelu", [("X", np.array([-1000.0, 1000.0], np.float32))])
    assert y.tolist() == [-0.0, 1000.0]  # no overflow warning, no NaN


def test_bias_add_by_hand():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    bias = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    skip = np.full((1, 3, 4), 0.5, np.float32)
    (y,) = run_refquant("BiasAdd", [("X", x), ("bias", bias), ("skip", skip)])
    np.testing.assert_array_equal(y, x + bias + 0.5)


def test_errors():
    with pytest.raises(ShapeError, match="last dimension"):
        run_refquant("BiasGelu", [("A", X), ("B", np.zeros(3, np.float32))])
    with pytest.raises(DTypeError):
        run_refquant("Gelu", [("X", np.zeros(3, np.int32))], (T.INT32,))
    with pytest.raises(DTypeError):
        run_refquant("BiasGelu", [("A", X), ("B", np.zeros(4, np.float16))])
    with pytest.raises(ShapeError, match="3-D"):
        run_refquant("BiasAdd", [("X", X), ("bias", np.zeros(4, np.float32)), ("skip", X)])


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_onnxruntime(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 5, 8)) * 3).astype(np.float32)
    b = (rng.standard_normal(8) * 3).astype(np.float32)
    compare_with_onnxruntime("Gelu", [("X", x)], (T.FLOAT,), UNITS)
    compare_with_onnxruntime("BiasGelu", [("A", x), ("B", b)], (T.FLOAT,), UNITS)
    compare_with_onnxruntime("FastGelu", [("X", x), ("bias", b)], (T.FLOAT,), UNITS)
    compare_with_onnxruntime("FastGelu", [("X", x)], (T.FLOAT,), UNITS)
    compare_with_onnxruntime("QuickGelu", [("X", x)], (T.FLOAT,), UNITS, alpha=float(rng.uniform(0.5, 2)))
