"""com.microsoft Attention and QAttention: refquant/ops/contrib_attention.py (spec/ops/contrib.md,
"Transformer operators").

Expected values: small attentions derived by hand in float64 numpy (the formula of onnxruntime's contrib
documentation, written out step by step below: projection, heads, scores, mask, softmax, context), rounded
once; QAttention's projection from exact integer products; onnxruntime's CPU kernels on seeded random
inputs within the measured float32 units (uint8 x int8 QAttention with |weight| <= 64, where onnxruntime's
AVX2 U8S8 kernel cannot saturate a pair sum: spec/ops/integer.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto as T

from refquant.errors import AttributeValueError, QuantParamError, ShapeError

from .transformer_helpers import compare_with_onnxruntime, run_refquant

pytest.importorskip("onnxruntime")

#: measured: at most 33 units of 2^-24 * max|output| over 4 x 30 draws (spec/ops/contrib.md)
UNITS = 64


def attention_by_hand(x, w, b, heads, mask_add=None, causal=False, past=None, scale=None, sizes=None):
    """Attention in float64: projection, per-head scores, additive mask, causal exclusion, softmax, context."""
    qkv = x.astype(np.float64) @ w.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    d, _, dv = sizes or [qkv.shape[-1] // 3] * 3
    batch, seq = x.shape[:2]

    def heads_of(t):
        return t.reshape(batch, seq, heads, -1).transpose(0, 2, 1, 3)

    q, k, v = heads_of(qkv[..., :d]), heads_of(qkv[..., d:2 * d]), heads_of(qkv[..., 2 * d:])
    if past is not None:
        k = np.concatenate([past[0].astype(np.float64), k], 2)
        v = np.concatenate([past[1].astype(np.float64), v], 2)
    total = k.shape[2]
    scores = (scale if scale is not None else 1 / math.sqrt(d // heads)) * q @ k.transpose(0, 1, 3, 2)
    if mask_add is not None:
        scores = scores + mask_add
    if causal:
        scores = np.where(np.arange(total)[None] > (total - seq + np.arange(seq))[:, None], -np.inf, scores)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    out = (p @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
    return out.astype(x.dtype if x.dtype.kind == "f" else np.float32), np.stack([k, v]) if k.shape == v.shape else None


def test_one_head_two_tokens_by_hand():
    """x = [[1, 0], [0, 1]], W_q = W_k = W_v = I (d = 2): scores = I / sqrt 2, so each token weights
    itself e^(1/sqrt 2) / (e^(1/sqrt 2) + 1) and the other 1 / (e^(1/sqrt 2) + 1)."""
    x = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
    w = np.concatenate([np.eye(2)] * 3, axis=1).astype(np.float32)
    (y,) = run_refquant("Attention", [("input", x), ("weights", w)], num_heads=1)
    e = math.exp(1 / math.sqrt(2))
    mine, other = e / (e + 1), 1 / (e + 1)
    assert y.tolist() == [[[np.float32(mine), np.float32(other)], [np.float32(other), np.float32(mine)]]]


def test_two_by_three_by_hand():
    """B = 1, S = 2, D_i = 3, two heads of size 1 (D = 2); bias; the hand formula above."""
    x = np.array([[[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]]], np.float32)
    w = np.array([[1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 1, -1]], np.float32)
    b = np.array([0.0, 0.5, 0.0, 0.0, 0.25, 0.0], np.float32)
    (y,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b)], num_heads=2)
    # x @ w + bias = [[1, 2.5, 2, 1, 1.25, 2], [-1, 0.5, 1, 0, -0.75, 2]]
    # head 0 (columns 0, 2, 4): q = [1, -1], k = [2, 1], v = [1.25, -0.75]; scores (scale 1): [[2, 1], [-2, -1]]
    w0 = [math.exp(2) / (math.exp(2) + math.exp(1)), math.exp(-1) / (math.exp(-2) + math.exp(-1))]
    head0 = [w0[0] * 1.25 + (1 - w0[0]) * -0.75, (1 - w0[1]) * 1.25 + w0[1] * -0.75]
    expected, _ = attention_by_hand(x, w, b, 2)
    np.testing.assert_array_equal(y, expected)
    assert [y[0, 0, 0], y[0, 1, 0]] == [np.float32(head0[0]), np.float32(head0[1])]


def random_case(seed, batch=2, seq=3, hidden=4, heads=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
    w = (rng.standard_normal((hidden, 3 * hidden)) * 0.5).astype(np.float32)
    b = rng.standard_normal(3 * hidden).astype(np.float32)
    return rng, x, w, b


@pytest.mark.parametrize("mask, masked", [
    (np.array([2, 3], np.int32), [[0, 0, 1], [0, 0, 0]]),                  # right padding: end positions
    (np.array([3, 2, 1, 0], np.int32), [[1, 0, 0], [0, 0, 1]]),            # + left padding: start positions
    (np.array([[1, 0, 1], [5, 1, -2]], np.int32), [[0, 1, 0], [0, 0, 1]]),  # raw 0/1 mask: > 0 attends
])
def test_key_masks_add_the_filter_value(mask, masked):
    _, x, w, b = random_case(1)
    add = np.where(np.array(masked, bool), -10000.0, 0.0)[:, None, None, :]
    (y,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", mask)], num_heads=2)
    np.testing.assert_array_equal(y, attention_by_hand(x, w, b, 2, add)[0])
    (y,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", mask)], num_heads=2,
                        mask_filter_value=-3.0)
    np.testing.assert_array_equal(y, attention_by_hand(x, w, b, 2, add * 3e-4)[0])


def test_three_and_four_dimensional_masks_and_the_dummy_mask():
    rng, x, w, b = random_case(2)
    m3 = rng.integers(0, 2, (2, 3, 3)).astype(np.int32)
    (y,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", m3)], num_heads=2)
    np.testing.assert_array_equal(y, attention_by_hand(x, w, b, 2, np.where(m3 == 0, -10000.0, 0.0)[:, None])[0])
    m4 = rng.integers(0, 2, (2, 1, 5, 5)).astype(np.int32)  # Megatron: rows/columns 0..2 of a 5 x 5 mask
    (y4,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", m4)], num_heads=2)
    np.testing.assert_array_equal(y4, attention_by_hand(x, w, b, 2, np.where(m4[:, :, :3, :3] == 0, -10000.0, 0.0))[0])
    (dummy,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", np.zeros((1, 1), np.int32))],
                            num_heads=2)
    np.testing.assert_array_equal(dummy, attention_by_hand(x, w, b, 2)[0])


def test_fully_masked_row_is_the_unmasked_softmax():
    """Every key masked: all scores shift by the same filter value, which the softmax cancels."""
    _, x, w, b = random_case(3)
    (y,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", np.array([0, 3], np.int32))],
                        num_heads=2)
    plain = attention_by_hand(x, w, b, 2)[0]
    np.testing.assert_allclose(y[0], plain[0], rtol=2**-20)


def test_unidirectional_excludes_later_keys_and_past_extends_them():
    rng, x, w, b = random_case(4)
    y, present = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b)], (T.FLOAT, T.FLOAT), num_heads=2,
                              unidirectional=1)
    expected, kv = attention_by_hand(x, w, b, 2, causal=True)
    np.testing.assert_array_equal(y, expected)
    assert y[:, 0].tolist() == expected[:, 0].tolist()
    np.testing.assert_array_equal(present, kv.astype(np.float32))
    past = rng.standard_normal((2, 2, 2, 2, 2)).astype(np.float32)
    y, present = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", None), ("past", past)],
                              (T.FLOAT, T.FLOAT), num_heads=2, unidirectional=1)
    expected, kv = attention_by_hand(x, w, b, 2, causal=True, past=past)
    np.testing.assert_array_equal(y, expected)
    assert present.shape == (2, 2, 2, 5, 2)
    np.testing.assert_array_equal(present[:, :, :, :2], past)


def test_scale_qkv_hidden_sizes_and_attention_bias():
    rng, x, _, _ = random_case(5)
    w = rng.standard_normal((4, 4 + 4 + 6)).astype(np.float32)
    (y,) = run_refquant("Attention", [("input", x), ("weights", w)], num_heads=2, qkv_hidden_sizes=[4, 4, 6], scale=0.25)
    assert y.shape == (2, 3, 6)
    np.testing.assert_array_equal(y, attention_by_hand(x, w, None, 2, scale=0.25, sizes=[4, 4, 6])[0])
    _, x, w, b = random_case(6)
    bias = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    (y,) = run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", None), ("past", None),
                                      ("attention_bias", bias)], num_heads=2)
    np.testing.assert_array_equal(y, attention_by_hand(x, w, b, 2, bias.astype(np.float64))[0])


def test_errors():
    _, x, w, b = random_case(7)
    with pytest.raises(AttributeValueError, match="num_heads"):
        run_refquant("Attention", [("input", x), ("weights", w)])
    with pytest.raises(AttributeValueError, match="multiple of num_heads"):
        run_refquant("Attention", [("input", x), ("weights", w)], num_heads=3)
    with pytest.raises(ShapeError, match="mask_index"):
        run_refquant("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", np.ones((2, 2), np.int32))],
                     num_heads=2)
    with pytest.raises(AttributeValueError, match="do_rotary"):
        run_refquant("Attention", [("input", x), ("weights", w)], num_heads=2, do_rotary=1)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_onnxruntime(seed):
    rng, x, w, b = random_case(seed, batch=2, seq=5, hidden=8)
    compare_with_onnxruntime("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", np.array([5, 3], np.int32))],
                             (T.FLOAT,), UNITS, num_heads=2)
    past = rng.standard_normal((2, 2, 2, 3, 4)).astype(np.float32)
    compare_with_onnxruntime("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", None), ("past", past)],
                             (T.FLOAT, T.FLOAT), UNITS, num_heads=2, unidirectional=1)
    raw = rng.integers(0, 2, (2, 5)).astype(np.int32)
    raw[:, 0] = 1
    compare_with_onnxruntime("Attention", [("input", x), ("weights", w), ("bias", b), ("mask_index", raw)], (T.FLOAT,), UNITS,
                             num_heads=4, scale=0.3)


# -- QAttention ---------------------------------------------------------------------------------------


def qattention_inputs(rng, w_type=np.uint8, per_column=False, batch=2, seq=4, hidden=8):
    x = rng.integers(0, 256, (batch, seq, hidden)).astype(np.uint8)
    lo, hi = (0, 256) if w_type == np.uint8 else (-64, 65)
    w = rng.integers(lo, hi, (hidden, 3 * hidden)).astype(w_type)
    shape = (3 * hidden,) if per_column else ()
    w_scale = rng.uniform(0.002, 0.02, shape).astype(np.float32)
    w_zp = (rng.integers(100, 150, shape) if w_type == np.uint8 else rng.integers(-5, 5, shape)).astype(w_type)
    return [("input", x), ("weight", w), ("bias", rng.standard_normal(3 * hidden).astype(np.float32)),
            ("input_scale", np.array(0.02, np.float32)), ("weight_scale", w_scale), ("mask_index", None),
            ("input_zero_point", np.array(128, np.uint8)), ("weight_zero_point", w_zp)]


@pytest.mark.parametrize("per_column", [False, True])
def test_qattention_is_attention_on_the_exact_dequantized_projection(per_column):
    rng = np.random.default_rng(8)
    inputs = qattention_inputs(rng, np.int8, per_column)
    named = dict(inputs)
    (y,) = run_refquant("QAttention", inputs, num_heads=2)
    acc = (named["input"].astype(np.int64) - 128) @ (named["weight"].astype(np.int64) - named["weight_zero_point"])
    qkv = acc * (np.float64(named["input_scale"]) * named["weight_scale"].astype(np.float64)) + named["bias"]
    x_eye = np.eye(qkv.shape[-1], dtype=np.float64)  # Attention by hand on qkv: input = qkv, weights = I
    expected, _ = attention_by_hand(qkv, x_eye, None, 2)
    np.testing.assert_array_equal(y, expected.astype(np.float32))


def test_qattention_errors():
    rng = np.random.default_rng(9)
    inputs = qattention_inputs(rng)
    bad = [(n, np.ones(5, np.float32) if n == "weight_scale" else v) for n, v in inputs]
    with pytest.raises(QuantParamError, match="weight_scale"):
        run_refquant("QAttention", bad, num_heads=2)
    bad = [(n, np.array(0.0, np.float32) if n == "input_scale" else v) for n, v in inputs]
    with pytest.raises(QuantParamError):
        run_refquant("QAttention", bad, num_heads=2)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("w_type", [np.uint8, np.int8])
def test_qattention_agrees_with_onnxruntime(seed, w_type):
    rng = np.random.default_rng(seed)
    inputs = qattention_inputs(rng, w_type, per_column=bool(seed % 2))
    inputs[5] = ("mask_index", np.array([4, 2], np.int32))
    compare_with_onnxruntime("QAttention", inputs, (T.FLOAT,), UNITS, num_heads=2, unidirectional=seed % 3 == 0)


# -- MultiHeadAttention ------------------------------------------------------------------------------------------

#: measured: at most 3.0 units of 2^-24 * max|output| over the onnxruntime cases below (bound 16) (spec/ops/contrib.md)
MHA_UNITS = 16


def mha_by_hand(q, k, v, heads, bias=None, add=None, causal=False, past=None, scale=None):
    """q (B, S, D), k (B, L, D), v (B, L, D_v) in float64: bias, heads, past, scores, mask, softmax, context."""
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    if bias is not None:
        d = q.shape[2]
        q, k, v = q + bias[:d], k + bias[d:2 * d], v + bias[2 * d:]

    def heads_of(t):
        return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(0, 2, 1, 3)

    qh, kh, vh = heads_of(q), heads_of(k), heads_of(v)
    if past is not None:
        kh, vh = np.concatenate([past[0], kh], 2), np.concatenate([past[1], vh], 2)
    head = qh.shape[3]
    scores = (scale if scale is not None else 1 / math.sqrt(head)) * np.einsum("bnsh,bnth->bnst", qh, kh)
    if add is not None:
        scores = scores + add
    if causal:
        s, t = scores.shape[2:]
        scores = np.where(np.arange(t)[None, :] > (t - s + np.arange(s))[:, None], -np.inf, scores)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    out = np.einsum("bnst,bnth->bnsh", p, vh)
    return out.transpose(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], -1), kh, vh


def mha_case(seed, batch=2, seq=3, kv=4, heads=2, head=4, dv=None):
    rng = np.random.default_rng(seed)
    d = heads * head
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return f(batch, seq, d), f(batch, kv, d), f(batch, kv, dv or d), f(2 * d + (dv or d))


def test_mha_one_head_by_hand():
    q = np.array([[[1.0, 0.0]]], np.float32)
    k = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
    v = np.array([[[2.0, 0.0], [0.0, 4.0]]], np.float32)
    # scores = [1, 0] / sqrt(2); p = softmax; output = p0 * [2, 0] + p1 * [0, 4]
    e = math.exp(1 / math.sqrt(2))
    expected = np.array([[[2 * e / (e + 1), 4 / (e + 1)]]], np.float32)
    out, pk, pv = run_refquant("MultiHeadAttention", [("q", q), ("k", k), ("v", v)], (T.FLOAT,) * 3, num_heads=1)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(pk, k[:, None])
    np.testing.assert_array_equal(pv, v[:, None])


def test_mha_separate_with_bias_mask_past_and_scale_by_hand():
    q, k, v, b = mha_case(0)
    rng = np.random.default_rng(1)
    past = rng.standard_normal((2, 2, 2, 2, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 0, 1]], np.int32)
    add = np.where(mask == 0, -5.0, 0.0)[:, None, None, :]
    out, pk, pv = run_refquant("MultiHeadAttention", [("q", q), ("k", k), ("v", v), ("b", b), ("m", mask), ("ab", None),
                                                      ("pk", past[0]), ("pv", past[1])], (T.FLOAT,) * 3,
                               num_heads=2, scale=0.25, mask_filter_value=-5.0)
    exp_out, exp_k, exp_v = mha_by_hand(q, k, v, 2, b.astype(np.float64), add, past=past.astype(np.float64), scale=0.25)
    np.testing.assert_array_equal(out, exp_out.astype(np.float32))
    np.testing.assert_array_equal(pk, exp_k.astype(np.float32))
    np.testing.assert_array_equal(pv, exp_v.astype(np.float32))


def test_mha_packed_formats_equal_the_separate_format():
    q, k, v, _ = mha_case(2)
    batch, seq, d = q.shape
    kv = k.shape[1]
    separate = run_refquant("MultiHeadAttention", [("q", q), ("k", k), ("v", v)], num_heads=2)[0]
    packed_kv = np.stack([k.reshape(batch, kv, 2, 4), v.reshape(batch, kv, 2, 4)], axis=3)  # (B, L, N, 2, H)
    np.testing.assert_array_equal(run_refquant("MultiHeadAttention", [("q", q), ("k", packed_kv)], num_heads=2)[0], separate)
    bnsh = [t.reshape(batch, kv, 2, 4).transpose(0, 2, 1, 3).copy() for t in (k, v)]  # (B, N, L, H)
    np.testing.assert_array_equal(run_refquant("MultiHeadAttention", [("q", q), ("k", bnsh[0]), ("v", bnsh[1])], num_heads=2)[0],
                                  separate)
    k3, v3 = k[:, :seq], v[:, :seq]
    self_attn = run_refquant("MultiHeadAttention", [("q", q), ("k", k3), ("v", v3)], num_heads=2)[0]
    packed_qkv = np.stack([t.reshape(batch, seq, 2, 4) for t in (q, k3, v3)], axis=3)  # (B, S, N, 3, H)
    np.testing.assert_array_equal(run_refquant("MultiHeadAttention", [("q", packed_qkv)], num_heads=2)[0], self_attn)


def test_mha_masks_attention_bias_and_unidirectional_by_hand():
    q, k, v, b = mha_case(3, seq=4, kv=4)
    b64 = b.astype(np.float64)
    lengths = np.array([2, 4], np.int32)
    add = np.where(np.arange(4)[None, :] >= lengths[:, None], -10000.0, 0.0)[:, None, None, :]
    out = run_refquant("MultiHeadAttention", [("q", q), ("k", k), ("v", v), ("b", b), ("m", lengths)], num_heads=2)[0]
    np.testing.assert_array_equal(out, mha_by_hand(q, k, v, 2, b64, add)[0].astype(np.float32))
    m3 = np.tril(np.ones((4, 4), np.int32))[None].repeat(2, 0)
    out = run_refquant("MultiHeadAttention", [("q", q), ("k", k), ("v", v), ("b", b), ("m", m3)], num_heads=2)[0]
    np.testing.assert_array_equal(out, mha_by_hand(q, k, v, 2, b64, np.where(m3 == 0, -10000.0, 0.0)[:, None])[0].astype(np.float32))
    ab = np.random.default_rng(4).standard_normal((1, 2, 4, 4)).astype(np.float32)
    out = run_refquant("MultiHeadAttention", [("q", q), ("k", k), ("v", v), ("b", b), ("m", None), ("ab", ab)],
                       num_heads=2, unidirectional=1)[0]
    np.testing.assert_array_equal(out, mha_by_hand(q, k, v, 2, b64, ab.astype(np.float64), causal=True)[0].astype(np.float32))


def test_mha_refusals():
    q, k, v, b = mha_case(5)
    batch = q.shape[0]
    run = lambda inputs, outs=(T.FLOAT,), **a: run_refquant("MultiHeadAttention", inputs, outs, **{"num_heads": 2, **a})  # noqa: E731
    with pytest.raises(ShapeError, match="packed KV"):
        run([("q", q), ("k", np.zeros((batch, 4, 2, 2, 4), np.float32)), ("v", None), ("b", b)])
    with pytest.raises(ShapeError, match="packed QKV"):
        run([("q", np.zeros((batch, 3, 2, 3, 4), np.float32)), ("k", None), ("v", None), ("b", b)])
    with pytest.raises(ShapeError, match="3 \\* batch \\+ 2"):
        run([("q", q), ("k", k), ("v", v), ("b", b), ("m", np.zeros(3 * batch + 2, np.int32))])
    with pytest.raises(ShapeError, match="unidirectional"):
        run([("q", q), ("k", k), ("v", v)], unidirectional=1)
    with pytest.raises(ShapeError, match="qk"):
        run([("q", q), ("k", k), ("v", v)], (T.FLOAT, None, None, T.FLOAT))
    with pytest.raises(ShapeError, match="past_sequence_length"):
        run([("q", q), ("k", k), ("v", v)] + [(n, None) for n in ("b", "m", "ab", "pk", "pv")] + [("psl", np.zeros(1, np.int32))])
    with pytest.raises(ShapeError, match="past_key"):
        bnsh = np.zeros((batch, 2, 4, 4), np.float32)
        run([("q", q), ("k", bnsh), ("v", bnsh), ("b", None), ("m", None), ("ab", None), ("pk", bnsh), ("pv", bnsh)])
    with pytest.raises(AttributeValueError, match="num_heads"):
        run_refquant("MultiHeadAttention", [("q", q), ("k", k), ("v", v)])


@pytest.mark.parametrize("seed", range(4))
def test_mha_agrees_with_onnxruntime(seed):
    """Every format onnxruntime's CPU kernel runs (it refuses packed KV and packed QKV: those are checked
    against the separate format above): separate (bias, masks, attention_bias, past, unidirectional, D_v != D)
    and key/value as (B, N, L, H)."""
    rng = np.random.default_rng(100 + seed)
    q, k, v, b = mha_case(seed)
    batch, seq, _ = q.shape
    outs = (T.FLOAT,) * 3
    cmp = lambda inputs, o=outs, **a: compare_with_onnxruntime("MultiHeadAttention", inputs, o, MHA_UNITS, **{"num_heads": 2, **a})  # noqa: E731
    cmp([("q", q), ("k", k), ("v", v), ("b", b)], scale=0.3 if seed % 2 else 0.0)
    past = rng.standard_normal((2, batch, 2, 2, 4)).astype(np.float32)
    mask2 = np.ones((batch, 6), np.int32)
    mask2[:, rng.integers(0, 6, batch)] = 0
    cmp([("q", q), ("k", k), ("v", v), ("b", b), ("m", mask2), ("ab", None), ("pk", past[0]), ("pv", past[1])], mask_filter_value=-100.0)
    cmp([("q", q), ("k", k), ("v", v), ("b", b), ("m", np.array([1, 3], np.int32)[:batch])])
    mask3 = (rng.random((batch, seq, 4)) > 0.4).astype(np.int32)
    mask3[..., 0] = 1
    cmp([("q", q), ("k", k), ("v", v), ("b", b), ("m", mask3), ("ab", rng.standard_normal((batch, 1, seq, 4)).astype(np.float32))])
    q4 = rng.standard_normal((batch, 4, 8)).astype(np.float32)
    cmp([("q", q4), ("k", k), ("v", v), ("b", b), ("m", None), ("ab", None), ("pk", past[0]), ("pv", past[1])], unidirectional=1)
    bnsh = [rng.standard_normal((batch, 2, 5, 4)).astype(np.float32) for _ in range(2)]
    cmp([("q", q), ("k", bnsh[0]), ("v", bnsh[1]), ("b", b)], (T.FLOAT,))
    qv, kv_, vv, bv = mha_case(seed, dv=12)
    cmp([("q", qv), ("k", kv_), ("v", vv), ("b", bv)])
