"""ai.onnx Attention, RotaryEmbedding, TensorScatter, SwiGLU: refquant/ops/attention.py (spec/ops/attention.md).

Expected values come from independent sources:
- the since_versions of the ONNX schemas (onnx.defs);
- the ONNX backend node cases of these ops (every single-node case): float outputs within each case's
  rtol / atol, TensorScatter bit for bit; the bfloat16 Attention cases within the bound stated at their test;
- hand derivations on tiny inputs, chosen so that most values are exact (a probability of 1 or 1/2, a
  rotation by 90 degrees, copies);
- onnx.reference.ReferenceEvaluator on seeded random inputs, within the bound stated at each test (it
  computes in float32, one rounding per step).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as T

import refquant
from refquant.errors import AttributeValueError, DTypeError, ShapeError

from ..helpers import node_case_runs, node_cases
from .attention_helpers import a32, reference, run
from .helpers import assert_same_bits, assert_versions_are_the_schema_versions_from_opset_10

F32 = np.float32
OPS = ("Attention", "RotaryEmbedding", "TensorScatter", "SwiGLU")


def attn(inputs, n_out=1, opset=23, **attrs):
    return run("Attention", inputs, n_out, opset=opset, attrs=attrs)




# ----------------------------------------------------------------------------
# versions and node cases
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


def test_attention_registers_23_24_25():
    assert [v for d, op, v in refquant.supported_ops() if op == "Attention" and d == ""] == [23, 24, 25]


CASES = [c for c in node_cases(r"^test_") if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS]
#: bfloat16 cases whose expected outputs onnx generated in bfloat16 arithmetic (a rounding per step)
BF16_CASES = {c.name for c in CASES if c.name.endswith("_bf16")}


def test_the_node_case_list_is_current():
    counts = {}
    for case in CASES:
        counts[case.model.graph.node[0].op_type] = counts.get(case.model.graph.node[0].op_type, 0) + 1
    # onnx 1.23.2: Attention 69 at opset 23, 13 at 24, 11 at 25
    assert counts == {"Attention": 93, "RotaryEmbedding": 8, "TensorScatter": 3, "SwiGLU": 3}
    assert len(BF16_CASES) == 5


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_case(case):
    node = case.model.graph.node[0]
    slots = [list(node.output).index(o.name) for o in case.model.graph.output]  # the node's output index
    for got, want in node_case_runs(case):
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g.dtype == w.dtype and g.shape == w.shape, f"output {i}"
            if node.op_type == "TensorScatter" or (node.op_type == "Attention" and slots[i] in (1, 2)):  # copies
                assert_same_bits(g, w, f"{case.name} output {i}")
            elif case.name in BF16_CASES:
                # onnx generated these in bfloat16 steps (Q and K scaled, scores, softmax each rounded to
                # bfloat16); refquant rounds once: within 2 bfloat16 units (one unit <= 2**-7 |want|)
                g64, w64 = g.astype(np.float64), w.astype(np.float64)
                assert (np.abs(g64 - w64) <= 2 * 2.0**-7 * np.maximum(np.abs(w64), 2.0**-8)).all(), f"output {i}"
            else:
                np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=case.rtol, atol=case.atol,
                                           err_msg=f"{case.name} output {i}")


# ----------------------------------------------------------------------------
# Attention by hand
# ----------------------------------------------------------------------------

# one head, head size 2: two keys, values [1, 2] and [3, 4]
K2 = a32([[[[1, 0], [0, 1]]]])
V2 = a32([[[[1, 2], [3, 4]]]])


def test_equal_scores_average_the_values():
    (y,) = attn({"Q": a32([[[[0, 0]]]]), "K": K2, "V": V2})
    assert_same_bits(y, a32([[[[2, 3]]]]))  # softmax of [0, 0] = [1/2, 1/2]


def test_default_scale_is_one_over_sqrt_head_size_and_scale_attribute():
    q = a32([[[[1, 0]]]])  # scores [1, 0] * scale
    for attrs, scale in (({}, 1 / math.sqrt(2)), ({"scale": 0.25}, 0.25)):
        (y,) = attn({"Q": q, "K": K2, "V": V2}, **attrs)
        p0 = 1 / (1 + math.exp(-scale))  # softmax([s, 0])[0]
        want = a32([[[[p0 * 1 + (1 - p0) * 3, p0 * 2 + (1 - p0) * 4]]]])
        np.testing.assert_allclose(y, want, rtol=2.0**-23)


def test_qk_matmul_output_modes_and_softcap():
    q, k = a32([[[[2, 0]]]]), a32([[[[2, 0], [0, 2]]]])  # scores [4, 0] at scale 1
    mask = a32([[-1, 0.5]])
    inputs = {"Q": q, "K": k, "V": V2, "attn_mask": mask}
    capped = 2 * math.tanh(2)  # softcap 2: 2 tanh(4 / 2)
    # mode 0: the raw scaled QK product, also with a softcap (onnx.reference returns the capped one there)
    assert_same_bits(attn(inputs, 4, scale=1.0, softcap=2.0)[3], a32([[[[4, 0]]]]))
    assert_same_bits(attn(inputs, 4, scale=1.0, softcap=2.0, qk_matmul_output_mode=1)[3], a32([[[[capped, 0]]]]))
    assert_same_bits(attn(inputs, 4, scale=1.0, qk_matmul_output_mode=2)[3], a32([[[[3, 0.5]]]]))
    y, _, _, p = attn(inputs, 4, scale=1.0, softcap=2.0, qk_matmul_output_mode=3)
    p0 = 1 / (1 + math.exp(-(capped - 1 - 0.5)))
    np.testing.assert_allclose(p, a32([[[[p0, 1 - p0]]]]), rtol=2.0**-23)
    np.testing.assert_allclose(y, a32([[[[p0 + 3 * (1 - p0), 2 * p0 + 4 * (1 - p0)]]]]), rtol=2.0**-23)


def test_integer_mask_adds_its_values():
    q, k = a32([[[[2, 0]]]]), a32([[[[2, 0], [0, 2]]]])  # scores [4, 0] at scale 1
    for dtype in (np.int32, np.int8, np.uint16):
        mask = np.array([[1, 2]], dtype)
        assert_same_bits(attn({"Q": q, "K": k, "V": V2, "attn_mask": mask}, 4, scale=1.0, qk_matmul_output_mode=2)[3],
                         a32([[[[5, 2]]]]))


def test_bool_mask_equals_its_additive_float_mask_and_is_padded_with_false():
    rng = np.random.default_rng(1)
    q, k, v = (a32(rng.standard_normal(s)) for s in ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)))
    keep = rng.random((2, 1, 3, 5)) > 0.4
    keep[..., 0] = True
    by_bool = attn({"Q": q, "K": k, "V": v, "attn_mask": keep}, 4, qk_matmul_output_mode=3)
    by_float = attn({"Q": q, "K": k, "V": v, "attn_mask": a32(np.where(keep, 0, -np.inf))}, 4, qk_matmul_output_mode=3)
    for g, w in zip(by_bool, by_float, strict=True):
        assert_same_bits(g, w)
    # a mask of one key position is padded: only key 0 is seen, so Y = V[key 0] exactly
    (y,) = attn({"Q": q, "K": k, "V": v, "attn_mask": np.ones((3, 1), bool)})
    assert_same_bits(y, np.broadcast_to(v[:, :, :1, :], y.shape))


def test_fully_masked_row_is_zero_in_y_and_in_the_probabilities():
    mask = np.array([[False, False], [True, False]])
    q = a32([[[[5, 1], [0.5, 2]]]])
    y, _, _, p = attn({"Q": q, "K": K2, "V": V2, "attn_mask": mask}, 4, qk_matmul_output_mode=3)
    assert_same_bits(y, a32([[[[0, 0], [1, 2]]]]))
    assert_same_bits(p, a32([[[[0, 0], [1, 0]]]]))


def test_is_causal_excludes_later_keys():
    q = a32([[[[0, 0], [0, 0]]]])
    y, _, _, p = attn({"Q": q, "K": K2, "V": V2}, 4, is_causal=1, qk_matmul_output_mode=3)
    assert_same_bits(p, a32([[[[1, 0], [0.5, 0.5]]]]))
    assert_same_bits(y, a32([[[[1, 2], [2, 3]]]]))


def test_past_key_value_are_concatenated_and_shift_the_causal_frontier():
    past_k, past_v = a32([[[[0, 0]]]]), a32([[[[5, 6]]]])
    q = a32([[[[0, 0], [0, 0]]]])
    y, pk, pv, p = attn({"Q": q, "K": K2, "V": V2, "attn_mask": None, "past_key": past_k, "past_value": past_v}, 4,
                        is_causal=1, qk_matmul_output_mode=3)
    assert_same_bits(pk, np.concatenate([past_k, K2], 2))
    assert_same_bits(pv, np.concatenate([past_v, V2], 2))
    # query 0 sits at position 1: it sees keys 0, 1; query 1 sees all three
    assert_same_bits(p[0, 0, 0], a32([0.5, 0.5, 0]))
    assert_same_bits(y[0, 0, 0], a32([3, 4]))
    np.testing.assert_allclose(p[0, 0, 1], a32([1 / 3] * 3), rtol=2.0**-24)


def test_3d_inputs_are_the_4d_computation_and_gqa_shares_kv_heads():
    rng = np.random.default_rng(2)
    b, s, n, kv, h, hv, length = 2, 3, 4, 2, 4, 3, 5
    q4, k4, v4 = (a32(rng.standard_normal(x)) for x in ((b, n, s, h), (b, kv, length, h), (b, kv, length, hv)))
    y4, pk, pv = attn({"Q": q4, "K": k4, "V": v4}, 3)
    to3 = lambda t: t.transpose(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], -1)  # noqa: E731
    y3, pk3, pv3 = attn({"Q": to3(q4), "K": to3(k4), "V": to3(v4)}, 3, q_num_heads=n, kv_num_heads=kv)
    assert_same_bits(y3, to3(y4))
    assert_same_bits(pk3, k4)  # present_* are 4-D whatever Q's rank
    assert_same_bits(pv3, v4)
    # query heads 0, 1 read KV head 0; 2, 3 read KV head 1
    (y_rep,) = attn({"Q": q4, "K": np.repeat(k4, 2, axis=1), "V": np.repeat(v4, 2, axis=1)})
    assert_same_bits(y4, y_rep)


@pytest.mark.parametrize("opset", [24, 25])
def test_nonpad_kv_seqlen_hides_the_padding_and_offsets_the_causal_frontier(opset):
    rng = np.random.default_rng(3)
    q, k, v = (a32(rng.standard_normal(s)) for s in ((2, 1, 2, 4), (2, 1, 5, 4), (2, 1, 5, 4)))
    lengths = np.array([3, 5], np.int64)
    skip = {"attn_mask": None, "past_key": None, "past_value": None}
    (y,) = attn({"Q": q, "K": k, "V": v, **skip, "nonpad_kv_seqlen": lengths}, opset=opset)
    (y0,) = attn({"Q": q[:1], "K": k[:1, :, :3], "V": v[:1, :, :3]}, opset=opset)
    assert_same_bits(y[:1], y0)
    # causal: query i of batch 0 sits at position (3 - 2) + i
    _, _, _, p = attn({"Q": q, "K": k, "V": v, **skip, "nonpad_kv_seqlen": lengths}, 4, opset=opset, is_causal=1,
                      qk_matmul_output_mode=3)
    assert (p[0, 0, 0, 2:] == 0).all() and (p[0, 0, 0, :2] > 0).all()
    assert (p[0, 0, 1, 3:] == 0).all() and (p[0, 0, 1, :3] > 0).all()
    assert (p[1, 0, 0, 4:] == 0).all() and (p[1, 0, 1] > 0).all()


def test_sliding_window_of_zero_sees_only_the_own_position():
    rng = np.random.default_rng(4)
    q, k, v = (a32(rng.standard_normal((1, 2, 4, 3))) for _ in range(3))
    (y,) = attn({"Q": q, "K": k, "V": v}, opset=25, left_window_size=0, right_window_size=0)
    assert_same_bits(y, v)
    _, _, _, p = attn({"Q": q, "K": k, "V": v}, 4, opset=25, left_window_size=1, right_window_size=-1,
                      is_causal=1, qk_matmul_output_mode=3)
    seen = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], bool)
    assert ((p[0] > 0) == seen).all()


def test_softmax_precision_is_accepted_and_computed_in_float64():
    rng = np.random.default_rng(5)
    q, k, v = (a32(rng.standard_normal((1, 1, 3, 4))) for _ in range(3))
    for precision in (T.FLOAT16, T.FLOAT, T.DOUBLE, T.BFLOAT16):
        assert_same_bits(attn({"Q": q, "K": k, "V": v}, softmax_precision=precision)[0], attn({"Q": q, "K": k, "V": v})[0])


def test_float16_and_double_v_type_and_output_types():
    rng = np.random.default_rng(6)
    q, k = (rng.standard_normal((1, 1, 2, 4)).astype(np.float16) for _ in range(2))
    v = rng.standard_normal((1, 1, 2, 3)).astype(np.float64)  # T2 may differ from T1
    y, pk, pv = run("Attention", {"Q": q, "K": k, "V": v}, 3, opset=23, out_types=[np.float16, np.float16, np.float64])
    assert y.dtype == np.float16 and pk.dtype == np.float16 and pv.dtype == np.float64
    s = (q.astype(np.float64) @ k.astype(np.float64).swapaxes(-1, -2)) / 2
    p = np.exp(s - s.max(-1, keepdims=True))
    assert_same_bits(y, ((p / p.sum(-1, keepdims=True)) @ v).astype(np.float16))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("opset", [23, 24, 25])
def test_attention_near_onnx_reference(seed, opset):
    rng = np.random.default_rng(seed)
    b, s, length, past, n, kv, h, hv = 2, 3, 4, 2, 4, 2, 8, 6
    inputs = {
        "Q": a32(rng.standard_normal((b, s, n * h))),
        "K": a32(rng.standard_normal((b, length, kv * h))),
        "V": a32(rng.standard_normal((b, length, kv * hv))),
        "attn_mask": (rng.random((s, length + past)) > 0.3) if seed % 2 else a32(rng.standard_normal((b, 1, s, length + past))),
        "past_key": a32(rng.standard_normal((b, kv, past, h))),
        "past_value": a32(rng.standard_normal((b, kv, past, hv))),
    }
    attrs = {"q_num_heads": n, "kv_num_heads": kv, "is_causal": seed // 2, "scale": 0.3, "qk_matmul_output_mode": 2}
    got = run("Attention", inputs, 4, opset=opset, attrs=attrs)
    want = reference("Attention", inputs, 4, opset=opset, attrs=attrs)
    assert_same_bits(got[1], want[1])
    assert_same_bits(got[2], want[2])
    # onnx.reference: float32 steps (sqrt(scale) Q and K, sums of 8 products, softmax): within 2**-18 of the
    # output's scale (max |V| <= 5)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=5 * 2.0**-18)
    finite = np.isfinite(want[3])
    assert (got[3][~finite] == want[3][~finite]).all()
    np.testing.assert_allclose(got[3][finite], want[3][finite], rtol=2.0**-20, atol=2.0**-20)


def test_attention_errors_name_the_node_and_the_problem():
    q3, k3, v3 = a32(np.zeros((1, 2, 8))), a32(np.zeros((1, 2, 8))), a32(np.zeros((1, 2, 8)))
    q4 = a32(np.zeros((1, 2, 3, 4)))
    with pytest.raises(AttributeValueError, match=r"Attention 'n0': 3-D Q, K and V need the q_num_heads"):
        attn({"Q": q3, "K": k3, "V": v3})
    with pytest.raises(ShapeError, match=r"Attention 'n0': Q, K and V must all be 3-D or all be 4-D"):
        attn({"Q": q3[0], "K": k3[0], "V": v3[0]})
    with pytest.raises(ShapeError, match=r"Attention 'n0': Q, K and V must all be 3-D or all be 4-D"):
        attn({"Q": q4, "K": k3, "V": v3}, q_num_heads=2, kv_num_heads=2)
    with pytest.raises(ShapeError, match="Q has hidden size 8, not divisible by q_num_heads 3"):
        attn({"Q": q3, "K": k3, "V": v3}, q_num_heads=3, kv_num_heads=2)
    with pytest.raises(ShapeError, match="q_num_heads 2 is not a multiple of kv_num_heads 4"):
        attn({"Q": q3, "K": a32(np.zeros((1, 2, 16))), "V": a32(np.zeros((1, 2, 16)))}, q_num_heads=2, kv_num_heads=4)
    with pytest.raises(ShapeError, match="Q's head size 4 differs from K's 2"):
        attn({"Q": q3, "K": k3, "V": v3}, q_num_heads=2, kv_num_heads=4)
    with pytest.raises(ShapeError, match=r"q_num_heads 3 differs from the heads of 4-D Q"):
        attn({"Q": q4, "K": q4, "V": q4}, q_num_heads=3)
    with pytest.raises(ShapeError, match="past_key and past_value must be given together"):
        attn({"Q": q4, "K": q4, "V": q4, "attn_mask": None, "past_key": q4})
    with pytest.raises(ShapeError, match="attn_mask has shape .* must broadcast"):
        attn({"Q": q4, "K": q4, "V": q4, "attn_mask": np.ones((5, 3), bool)})
    with pytest.raises(ShapeError, match="nonpad_kv_seqlen .* cannot be used with past_key"):
        attn({"Q": q4, "K": q4, "V": q4, "attn_mask": None, "past_key": q4, "past_value": q4,
              "nonpad_kv_seqlen": np.array([1], np.int64)}, opset=24)
    with pytest.raises(AttributeValueError, match="qk_matmul_output_mode must be 0, 1, 2 or 3, got 4"):
        attn({"Q": q4, "K": q4, "V": q4}, qk_matmul_output_mode=4)
    with pytest.raises(AttributeValueError, match="softcap must be >= 0"):
        attn({"Q": q4, "K": q4, "V": q4}, softcap=-1.0)
    with pytest.raises(AttributeValueError, match="softmax_precision must be one of"):
        attn({"Q": q4, "K": q4, "V": q4}, softmax_precision=T.UINT8)
    with pytest.raises(DTypeError, match="K has type float16, it must match Q"):
        attn({"Q": q4, "K": q4.astype(np.float16), "V": q4})


# ----------------------------------------------------------------------------
# RotaryEmbedding
# ----------------------------------------------------------------------------

X4 = a32([[[[1, 2, 3, 4]]]])  # (B, N, S, H) = (1, 1, 1, 4)
COS, SIN = a32([[[0, 1]]]), a32([[[1, 0]]])  # (B, S, H / 2): pair 0 turned by 90 degrees, pair 1 by 0


def rope(inputs, **attrs):
    return run("RotaryEmbedding", inputs, opset=23, attrs=attrs)[0]


def test_rotation_by_hand_halves_interleaved_and_partial():
    # halves: x1 = [1, 2], x2 = [3, 4]; real = cos x1 - sin x2 = [-3, 2], imag = sin x1 + cos x2 = [1, 4]
    assert_same_bits(rope({"X": X4, "cos": COS, "sin": SIN}), a32([[[[-3, 2, 1, 4]]]]))
    # interleaved: x1 = [1, 3], x2 = [2, 4]; real = [-2, 3], imag = [1, 4] -> [r0, i0, r1, i1]
    assert_same_bits(rope({"X": X4, "cos": COS, "sin": SIN}, interleaved=1), a32([[[[-2, 1, 3, 4]]]]))
    # rotary_embedding_dim 2: only [1, 2] turns (by 90 degrees); 3, 4 are copied
    assert_same_bits(rope({"X": X4, "cos": COS[..., :1], "sin": SIN[..., :1]}, rotary_embedding_dim=2),
                     a32([[[[-2, 1, 3, 4]]]]))


def test_position_ids_select_cache_rows_and_3d_input_is_4d():
    rng = np.random.default_rng(7)
    x = a32(rng.standard_normal((2, 3, 4, 8)))  # (B, N, S, H)
    cos, sin = a32(rng.standard_normal((10, 4))), a32(rng.standard_normal((10, 4)))
    ids = rng.integers(0, 10, (2, 4)).astype(np.int64)
    by_ids = rope({"X": x, "cos": cos, "sin": sin, "ids": ids})
    assert_same_bits(by_ids, rope({"X": x, "cos": cos[ids], "sin": sin[ids]}))
    x3 = x.transpose(0, 2, 1, 3).reshape(2, 4, 24)
    assert_same_bits(rope({"X": x3, "cos": cos, "sin": sin, "ids": ids}, num_heads=3),
                     by_ids.transpose(0, 2, 1, 3).reshape(2, 4, 24))


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rotary_near_onnx_reference(interleaved, dtype):
    rng = np.random.default_rng(8 + interleaved)
    inputs = {"X": rng.standard_normal((2, 4, 24)).astype(dtype), "cos": rng.standard_normal((10, 3)).astype(dtype),
              "sin": rng.standard_normal((10, 3)).astype(dtype), "ids": rng.integers(0, 10, (2, 4)).astype(np.int64)}
    attrs = {"num_heads": 3, "rotary_embedding_dim": 6, "interleaved": interleaved}
    (got,) = run("RotaryEmbedding", inputs, opset=23, attrs=attrs)
    (want,) = reference("RotaryEmbedding", inputs, opset=23, attrs=attrs)
    # onnx.reference rounds each product and the difference to the type: at most 2 units of the type's
    # epsilon times |cos x1| + |sin x2| (bounded by 10 here); the unrotated part is copied exactly
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=0, atol=20 * eps)
    rest = got.reshape(2, 4, 3, 8)[..., 6:]
    assert_same_bits(rest, inputs["X"].reshape(2, 4, 3, 8)[..., 6:])


def test_rotary_bfloat16_is_one_rounding():
    x = a32([[[[1.5, -2.25, 3, 0.125]]]]).astype(ml_dtypes.bfloat16)
    c, s = a32([[[0.5, 0.75]]]).astype(ml_dtypes.bfloat16), a32([[[0.25, -1]]]).astype(ml_dtypes.bfloat16)
    x64, c64, s64 = (t.astype(np.float64).reshape(-1) for t in (x, c, s))
    x1, x2 = x64[:2], x64[2:]
    want = np.concatenate([c64 * x1 - s64 * x2, s64 * x1 + c64 * x2]).astype(np.float32).astype(ml_dtypes.bfloat16)
    assert_same_bits(rope({"X": x, "cos": c, "sin": s}), want.reshape(1, 1, 1, 4))


def test_rotary_errors_name_the_node_and_the_problem():
    with pytest.raises(AttributeValueError, match="RotaryEmbedding 'n0': 3-D X needs the num_heads attribute"):
        rope({"X": X4[0], "cos": COS, "sin": SIN})
    with pytest.raises(AttributeValueError, match="rotary_embedding_dim 3 must be even"):
        rope({"X": X4, "cos": COS, "sin": SIN}, rotary_embedding_dim=3)
    with pytest.raises(ShapeError, match=r"position_ids must lie in 0..0"):
        rope({"X": X4, "cos": COS[0], "sin": SIN[0], "ids": np.array([[1]], np.int64)})
    with pytest.raises(ShapeError, match=r"num_heads 2 differs from the heads of 4-D X"):
        rope({"X": X4, "cos": COS, "sin": SIN}, num_heads=2)
    with pytest.raises(ShapeError, match="X has shape"):
        rope({"X": X4[0, 0], "cos": COS, "sin": SIN})
    with pytest.raises(ShapeError, match=r"without position_ids it must be \(1, 1, 2\)"):
        rope({"X": X4, "cos": COS[..., :1], "sin": SIN[..., :1]})


# ----------------------------------------------------------------------------
# TensorScatter
# ----------------------------------------------------------------------------


def scatter(inputs, **attrs):
    return run("TensorScatter", inputs, opset=24, attrs=attrs)[0]


def test_scatter_linear_and_circular_by_hand():
    past = np.arange(2 * 4).reshape(2, 4, 1).astype(np.int32)  # (B, max_seq, D), axis -2
    update = np.array([[[100], [101]], [[200], [201]]], np.int32)
    w = np.array([1, 2], np.int64)
    assert_same_bits(scatter({"p": past, "u": update, "w": w}),
                     np.array([[[0], [100], [101], [3]], [[4], [5], [200], [201]]], np.int32))
    w = np.array([3, 6], np.int64)  # circular: 3, 4 -> 3, 0; 6, 7 -> 2, 3
    assert_same_bits(scatter({"p": past, "u": update, "w": w}, mode="circular"),
                     np.array([[[101], [1], [2], [100]], [[4], [5], [200], [201]]], np.int32))
    # no write_indices: written from 0
    assert_same_bits(scatter({"p": past, "u": update}), np.array([[[100], [101], [2], [3]], [[200], [201], [6], [7]]],
                                                                 np.int32))


@pytest.mark.parametrize("dtype", [np.float32, np.dtype(ml_dtypes.bfloat16), np.bool_, np.int8])
def test_scatter_other_axis_and_types_agree_with_onnx_reference(dtype):
    rng = np.random.default_rng(9)
    past = (rng.standard_normal((2, 5, 3)) * 4).astype(dtype)
    update = (rng.standard_normal((2, 2, 3)) * 4).astype(dtype)
    inputs = {"p": past, "u": update, "w": np.array([0, 4], np.int64)}
    got = scatter(inputs, axis=1, mode="circular")
    assert_same_bits(got, reference("TensorScatter", inputs, opset=24, attrs={"axis": 1, "mode": "circular"})[0])


def test_scatter_errors_name_the_node_and_the_problem():
    past, update = a32(np.zeros((2, 4, 3))), a32(np.zeros((2, 2, 3)))
    with pytest.raises(AttributeValueError, match="TensorScatter 'n0': axis 0 must name a sequence axis"):
        scatter({"p": past, "u": update}, axis=0)
    with pytest.raises(ShapeError, match=r"linear mode needs .* got write_indices \[3, 0\]"):
        scatter({"p": a32(np.zeros((2, 3, 4))), "u": a32(np.zeros((2, 2, 4))), "w": np.array([3, 0], np.int64)}, axis=1)
    with pytest.raises(ShapeError, match="update has shape"):
        scatter({"p": past, "u": a32(np.zeros((2, 2, 2)))})
    with pytest.raises(AttributeValueError, match="mode must be 'linear' or 'circular'"):
        scatter({"p": past, "u": update}, mode="ring")


# ----------------------------------------------------------------------------
# SwiGLU
# ----------------------------------------------------------------------------


def test_swiglu_by_hand_and_equal_to_swish_times_b():
    a, b = a32([0, 1, -2, 3]), a32([5, 2, 1, 0.5])
    (y,) = run("SwiGLU", {"a": a, "b": b}, opset=28, attrs={"alpha": 1.5})
    want = [0.0] + [x / (1 + math.exp(-1.5 * x)) * w for x, w in zip([1.0, -2.0, 3.0], [2.0, 1.0, 0.5], strict=True)]
    np.testing.assert_allclose(y, a32(want), rtol=2.0**-24)
    assert y[0] == 0
    # B = 1: exactly the Swish operator with the same alpha
    (swish,) = run("Swish", {"a": a}, opset=28, attrs={"alpha": 1.5})
    assert_same_bits(run("SwiGLU", {"a": a, "b": np.ones_like(a)}, opset=28, attrs={"alpha": 1.5})[0], swish)


def test_swiglu_near_onnx_reference_and_errors():
    rng = np.random.default_rng(10)
    a, b = a32(rng.standard_normal((3, 5)) * 4), a32(rng.standard_normal((3, 5)))
    (got,) = run("SwiGLU", {"a": a, "b": b}, opset=28)
    (want,) = reference("SwiGLU", {"a": a, "b": b}, opset=28)
    np.testing.assert_allclose(got, want, rtol=4 * 2.0**-24, atol=1e-30)  # onnx.reference: three float32 roundings
    with pytest.raises(ShapeError, match="SwiGLU 'n0': A .* and B .* must have the same shape"):
        run("SwiGLU", {"a": a, "b": b[:1]}, opset=28)
    with pytest.raises(DTypeError, match="B has type float16, it must match A"):
        run("SwiGLU", {"a": a, "b": b.astype(np.float16)}, opset=28)
