"""com.microsoft SkipLayerNormalization, SkipSimplifiedLayerNormalization, EmbedLayerNormalization:
refquant/ops/contrib_normalization.py (spec/ops/contrib.md, "Transformer operators").

Expected values: the formulas evaluated by hand in float64 numpy on small inputs and rounded once (the
primary values); onnxruntime's CPU kernels on seeded random inputs within the measured float32 units
(mask_index exactly).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T

from refquant.errors import DTypeError, ShapeError

from .transformer_helpers import compare_with_onnxruntime, run_refquant

pytest.importorskip("onnxruntime")

#: measured: at most 4.0 units of 2^-24 * max|output| over 4 x 30 draws (spec/ops/contrib.md)
UNITS = 6
SKIP_OUTPUTS = (T.FLOAT, T.FLOAT, T.FLOAT, T.FLOAT)


def layer_norm(s, gamma, beta, eps):
    mean = s.mean(-1, keepdims=True)
    inv = 1 / np.sqrt(((s - mean) ** 2).mean(-1, keepdims=True) + eps)
    return (s - mean) * inv * gamma + beta, mean, inv


def test_skip_layer_normalization_by_hand():
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32)
    skip = np.array([[[0.0, 1.0, 0.0, 1.0]]], np.float32)
    bias = np.array([1.0, 1.0, 1.0, 1.0], np.float32)
    gamma = np.array([1.0, 2.0, 1.0, 0.5], np.float32)
    beta = np.array([0.0, 0.0, 1.0, 0.0], np.float32)
    y, mean, inv, total = run_refquant("SkipLayerNormalization", [("input", x), ("skip", skip), ("gamma", gamma),
                                                                   ("beta", beta), ("bias", bias)], SKIP_OUTPUTS)
    assert total.tolist() == [[[2.0, 4.0, 4.0, 6.0]]]
    assert mean.tolist() == [[[4.0]]] and mean.shape == (1, 1, 1)  # s = [2, 4, 4, 6]: mean 4, variance 2
    eps = float(np.float32(1e-12))
    assert inv[0, 0, 0] == np.float32(1 / np.sqrt(2 + eps))
    expected = np.array([-2.0, 0.0, 0.0, 2.0]) / np.sqrt(2 + eps) * gamma + beta
    np.testing.assert_array_equal(y[0, 0], expected.astype(np.float32))


def test_skip_layer_normalization_epsilon_and_optional_inputs():
    x = np.array([[1.0, 3.0]], np.float32)
    (y,) = run_refquant("SkipLayerNormalization", [("input", x), ("skip", np.zeros_like(x)), ("gamma", np.ones(2, np.float32))],
                        (T.FLOAT,), epsilon=1.0)
    np.testing.assert_array_equal(y, (np.array([[-1.0, 1.0]]) / np.sqrt(1.0 + 1.0)).astype(np.float32))


def test_skip_broadcasts_over_the_batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    skip = rng.standard_normal((3, 4)).astype(np.float32)
    gamma = np.ones(4, np.float32)
    (a,) = run_refquant("SkipLayerNormalization", [("input", x), ("skip", skip), ("gamma", gamma)])
    (b,) = run_refquant("SkipLayerNormalization", [("input", x), ("skip", skip[None]), ("gamma", gamma)])
    expected, _, _ = layer_norm(x.astype(np.float64) + skip, 1.0, 0.0, float(np.float32(1e-12)))
    np.testing.assert_array_equal(a, expected.astype(np.float32))
    np.testing.assert_array_equal(b, a)
    with pytest.raises(ShapeError, match="skip"):
        run_refquant("SkipLayerNormalization", [("input", x), ("skip", skip[:, :1]), ("gamma", gamma)])


def test_skip_simplified_layer_normalization_by_hand():
    x = np.array([[3.0, 4.0]], np.float32)
    skip = np.array([[0.0, 0.0]], np.float32)
    gamma = np.array([1.0, 2.0], np.float32)
    y, mean, inv, total = run_refquant("SkipSimplifiedLayerNormalization", [("input", x), ("skip", skip), ("gamma", gamma)],
                                       SKIP_OUTPUTS, epsilon=0.0)
    # mean(s^2) = 12.5: y = s / sqrt(12.5) * gamma
    np.testing.assert_array_equal(y, (np.array([[3.0, 8.0]]) / np.sqrt(12.5)).astype(np.float32))
    assert mean.tolist() == [[0.0]] and inv[0, 0] == np.float32(1 / np.sqrt(12.5))
    assert total.tolist() == [[3.0, 4.0]]


def test_embed_layer_normalization_by_hand():
    ids = np.array([[2, 0, 1]], np.int32)
    segments = np.array([[0, 1, 1]], np.int32)
    word = np.array([[0.0, 0.0], [1.0, 3.0], [2.0, 0.0]], np.float32)
    position = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [5.0, 5.0]], np.float32)
    segment = np.array([[0.0, 0.0], [0.0, 2.0]], np.float32)
    gamma, beta = np.array([1.0, 1.0], np.float32), np.array([0.0, 10.0], np.float32)
    mask = np.array([[1, 1, 0]], np.int32)
    inputs = [("input_ids", ids), ("segment_ids", segments), ("word_embedding", word), ("position_embedding", position),
              ("segment_embedding", segment), ("gamma", gamma), ("beta", beta), ("mask", mask)]
    y, mask_index, total = run_refquant("EmbedLayerNormalization", inputs, (T.FLOAT, T.INT32, T.FLOAT), epsilon=0.0)
    # e = word[ids] + position[0, 1, 2] + segment[segments] = [2, 1], [1, 2], [1, 5]
    assert total.tolist() == [[[2.0, 1.0], [1.0, 2.0], [1.0, 5.0]]]
    assert y.tolist() == [[[1.0, 9.0], [-1.0, 11.0], [-1.0, 11.0]]]  # each row normalizes to [+-1, -+1]
    assert mask_index.tolist() == [2]


def test_embed_layer_normalization_position_ids_no_segment_no_mask():
    ids = np.array([[1, 1]], np.int32)
    word = np.array([[0.0, 0.0], [1.0, 2.0]], np.float32)
    position = np.array([[0.0, 0.0], [0.0, 0.0], [4.0, 0.0]], np.float32)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    inputs = [("input_ids", ids), ("segment_ids", None), ("word_embedding", word), ("position_embedding", position),
              ("segment_embedding", None), ("gamma", ones), ("beta", zeros), ("mask", None),
              ("position_ids", np.array([[2, 0]], np.int32))]
    y, mask_index, total = run_refquant("EmbedLayerNormalization", inputs, (T.FLOAT, T.INT32, T.FLOAT), epsilon=0.0)
    assert total.tolist() == [[[5.0, 2.0], [1.0, 2.0]]]
    assert y.tolist() == [[[1.0, -1.0], [-1.0, 1.0]]]
    assert mask_index.tolist() == [0]  # no mask: zeros, as onnxruntime


def test_embed_mask_index_counts_ones_only():
    ids = np.zeros((2, 3), np.int32)
    table = np.array([[1.0, 2.0]] * 3, np.float32)
    ones = np.ones(2, np.float32)
    mask = np.array([[1, 2, 1], [0, -1, 1]], np.int32)
    _, mask_index = run_refquant("EmbedLayerNormalization", [
        ("input_ids", ids), ("segment_ids", None), ("word_embedding", table), ("position_embedding", table),
        ("segment_embedding", None), ("gamma", ones), ("beta", ones), ("mask", mask)], (T.FLOAT, T.INT32))
    assert mask_index.tolist() == [2, 1]


def test_errors():
    x = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(ShapeError, match="gamma"):
        run_refquant("SkipLayerNormalization", [("input", x), ("skip", x), ("gamma", np.ones(3, np.float32))])
    with pytest.raises(DTypeError):
        run_refquant("SkipLayerNormalization", [("input", x), ("skip", x.astype(np.float16)), ("gamma", np.ones(4, np.float32))])
    with pytest.raises(ShapeError, match="3-D"):
        run_refquant("SkipLayerNormalization", [("input", x[0, 0]), ("skip", x[0, 0]), ("gamma", np.ones(4, np.float32))])
    table = np.ones((2, 4), np.float32)
    with pytest.raises(ShapeError, match="input_ids holds 5"):
        run_refquant("EmbedLayerNormalization", [
            ("input_ids", np.array([[5]], np.int32)), ("segment_ids", None), ("word_embedding", table),
            ("position_embedding", table), ("segment_embedding", None), ("gamma", np.ones(4, np.float32)),
            ("beta", np.ones(4, np.float32))], (T.FLOAT,))


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_onnxruntime(seed):
    rng = np.random.default_rng(seed)

    def f(*shape):
        return (rng.standard_normal(shape) * 2).astype(np.float32)

    x = f(2, 5, 8)
    compare_with_onnxruntime("SkipLayerNormalization", [("input", x), ("skip", f(2, 5, 8)), ("gamma", f(8)), ("beta", f(8)),
                                                        ("bias", f(8))], SKIP_OUTPUTS, UNITS)
    compare_with_onnxruntime("SkipLayerNormalization", [("input", x), ("skip", f(5, 8)), ("gamma", f(8))], (T.FLOAT,), UNITS,
                             epsilon=1e-5)
    compare_with_onnxruntime("SkipSimplifiedLayerNormalization", [("input", x), ("skip", f(2, 5, 8)), ("gamma", f(8)),
                                                                  ("bias", f(8))], SKIP_OUTPUTS, UNITS)
    ids = rng.integers(0, 10, (2, 5)).astype(np.int32)
    segments = rng.integers(0, 2, (2, 5)).astype(np.int32)
    mask = rng.integers(0, 2, (2, 5)).astype(np.int32)
    compare_with_onnxruntime("EmbedLayerNormalization", [
        ("input_ids", ids), ("segment_ids", segments), ("word_embedding", f(10, 8)), ("position_embedding", f(6, 8)),
        ("segment_embedding", f(2, 8)), ("gamma", f(8)), ("beta", f(8)), ("mask", mask)], (T.FLOAT, T.INT32, T.FLOAT), UNITS)
    compare_with_onnxruntime("EmbedLayerNormalization", [
        ("input_ids", ids), ("segment_ids", None), ("word_embedding", f(10, 8)), ("position_embedding", f(6, 8)),
        ("segment_embedding", None), ("gamma", f(8)), ("beta", f(8)), ("mask", None),
        ("position_ids", rng.integers(0, 6, (1, 5)).astype(np.int32))], (T.FLOAT, T.INT32, T.FLOAT), UNITS)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("qtype", [np.uint8, np.int8])
def test_qembed_layer_normalization_agrees_with_onnxruntime_and_dequantizes_exactly(seed, qtype):
    rng = np.random.default_rng(seed)
    info = np.iinfo(qtype)

    def table(name, *shape):
        q = rng.integers(info.min, info.max + 1, shape).astype(qtype)
        return q, np.array(rng.uniform(0.005, 0.05), np.float32), np.array(rng.integers(info.min, info.max + 1), qtype)

    tables = {n: table(n, *s) for n, s in (("word", (10, 8)), ("position", (6, 8)), ("segment", (2, 8)),
                                                   ("gamma", (8,)), ("beta", (8,)))}
    ids = rng.integers(0, 10, (2, 5)).astype(np.int32)
    segments = rng.integers(0, 2, (2, 5)).astype(np.int32)
    mask = rng.integers(0, 2, (2, 5)).astype(np.int32)
    order = ("word", "position", "segment", "gamma", "beta")
    inputs = [("input_ids", ids), ("segment_ids", segments), *[(f"{n}_q", tables[n][0]) for n in order], ("mask", mask),
              *[(f"{n}_scale", tables[n][1]) for n in order], *[(f"{n}_zp", tables[n][2]) for n in order]]
    y, mask_index = compare_with_onnxruntime("QEmbedLayerNormalization", inputs, (T.FLOAT, T.INT32), UNITS)
    real = {n: (tables[n][0].astype(np.float64) - tables[n][2]) * np.float64(tables[n][1]) for n in order}
    e = real["word"][ids] + real["position"][np.arange(5)] + real["segment"][segments]
    expected, _, _ = layer_norm(e, real["gamma"], real["beta"], float(np.float32(1e-12)))
    np.testing.assert_array_equal(y, expected.astype(np.float32))
    assert mask_index.tolist() == np.count_nonzero(mask == 1, axis=1).tolist()
