"""com.microsoft FusedConv: refquant/ops/contrib_conv.py (spec/ops/contrib.md, "FusedConv").

Expected values: a small convolution derived by hand, each activation applied in float64 to refquant's own
Conv (the sum before the activation); onnxruntime's CPU kernel on seeded random inputs within the measured
float32 units.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T

from refquant.errors import AttributeValueError, DTypeError, ShapeError

from .transformer_helpers import compare_with_onnxruntime, run_refquant

#: measured: at most 24 units of 2^-24 * max|output| (Clip: a bounded output of a larger float32 sum), at most
#: 5.5 for the unbounded activations, over the cases below (spec/ops/contrib.md)
UNITS = 64

ACTIVATIONS = [
    (None, None, lambda y: y),
    ("Relu", None, lambda y: np.maximum(y, 0)),
    ("Tanh", None, np.tanh),
    ("Sigmoid", None, lambda y: 1 / (1 + np.exp(-y))),
    ("LeakyRelu", [0.125], lambda y: np.where(y >= 0, y, 0.125 * y)),
    ("Clip", [-0.5, 1.0], lambda y: np.clip(y, -0.5, 1.0)),
    ("HardSigmoid", [0.25, 0.5], lambda y: np.clip(0.25 * y + 0.5, 0, 1)),
]


def attrs(activation, params, **extra):
    a = dict(extra)
    if activation:
        a["activation"] = activation
    if params:
        a["activation_params"] = params
    return a


def test_one_by_one_by_hand():
    x = np.array([[[[1.0, -2.0], [3.0, -4.0]]]], np.float32)  # (1, 1, 2, 2)
    w = np.array([[[[0.5]]], [[[-1.0]]]], np.float32)  # (2, 1, 1, 1)
    b = np.array([0.25, 1.0], np.float32)
    z = np.full((1, 2, 2, 2), 0.5, np.float32)
    # conv: channel 0 = 0.5 x + 0.25, channel 1 = -x + 1; + Z (0.5); Relu
    expected = np.array([[[[1.25, 0.0], [2.25, 0.0]], [[0.5, 3.5], [0.0, 5.5]]]], np.float32)
    out = run_refquant("FusedConv", [("x", x), ("w", w), ("b", b), ("z", z)], activation="Relu")[0]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("activation, params, fn", ACTIVATIONS)
def test_activation_applies_to_the_conv_plus_z(activation, params, fn):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 5, 5)).astype(np.float32), rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b, z = rng.standard_normal(6).astype(np.float32), rng.standard_normal((2, 6, 3, 3)).astype(np.float32)
    plain = run_refquant("FusedConv", [("x", x), ("w", w), ("b", b)], group=2)[0]
    out = run_refquant("FusedConv", [("x", x), ("w", w), ("b", b), ("z", z)], **attrs(activation, params, group=2))[0]
    cols = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (3, 3), axis=(2, 3))  # (2, 4, 3, 3, 3, 3)
    cols = cols.reshape(2, 2, 2, 3, 3, 3, 3)
    sums = np.einsum("ngcijkl,gmckl->ngmij", cols, w.astype(np.float64).reshape(2, 3, 2, 3, 3)).reshape(2, 6, 3, 3)
    sums = sums + b.astype(np.float64)[None, :, None, None]
    np.testing.assert_array_equal(plain, sums.astype(np.float32))
    np.testing.assert_array_equal(out, fn(sums + z.astype(np.float64)).astype(np.float32))


def test_refusals():
    x, w = np.zeros((1, 2, 3, 3), np.float32), np.zeros((2, 2, 1, 1), np.float32)
    with pytest.raises(AttributeValueError, match="activation_params"):
        run_refquant("FusedConv", [("x", x), ("w", w)], activation="LeakyRelu")
    with pytest.raises(AttributeValueError, match="not supported"):
        run_refquant("FusedConv", [("x", x), ("w", w)], activation="Elu", activation_params=[1.0])
    with pytest.raises(ShapeError, match="Z"):
        run_refquant("FusedConv", [("x", x), ("w", w), ("b", None), ("z", np.zeros((1, 2, 2, 2), np.float32))])
    with pytest.raises(DTypeError):
        run_refquant("FusedConv", [("x", x.astype(np.float64)), ("w", w.astype(np.float64))], (T.DOUBLE,))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("activation, params, fn", ACTIVATIONS)
def test_agrees_with_onnxruntime(seed, activation, params, fn):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x = f(2, 4, 6, 6)
    compare_with_onnxruntime("FusedConv", [("x", x), ("w", f(6, 2, 3, 3)), ("b", f(6)), ("z", f(2, 6, 4, 4))], (T.FLOAT,),
                             UNITS, **attrs(activation, params, group=2))
    compare_with_onnxruntime("FusedConv", [("x", x), ("w", f(5, 4, 3, 3))], (T.FLOAT,), UNITS,
                             **attrs(activation, params, pads=[1, 0, 1, 2], strides=[2, 1], dilations=[1, 2]))
    compare_with_onnxruntime("FusedConv", [("x", f(2, 3, 7)), ("w", f(4, 3, 2)), ("b", f(4))], (T.FLOAT,), UNITS,
                             **attrs(activation, params))
