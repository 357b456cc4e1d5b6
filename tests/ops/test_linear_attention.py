"""ai.onnx LinearAttention and CausalConvWithState: refquant/ops/linear_attention.py (spec/ops/attention.md).

Expected values come from independent sources:
- the since_versions of the ONNX schemas (onnx.defs);
- the ONNX backend node cases of both ops (every single-node case), within each case's rtol / atol, the
  CausalConvWithState present_state bit for bit;
- hand derivations of the recurrences and the convolution on tiny integer-valued inputs (exact);
- onnx.reference.ReferenceEvaluator on seeded random inputs, within the bound stated at each test (it
  runs the recurrence in float32).
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant.errors import AttributeValueError, ShapeError

from ..helpers import node_case_runs, node_cases
from .helpers import assert_same_bits, assert_versions_are_the_schema_versions_from_opset_10
from .attention_helpers import a32, reference, run

OPS = ("LinearAttention", "CausalConvWithState")
CASES = [c for c in node_cases(r"^test_") if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS]


@pytest.mark.parametrize("op", OPS)
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


def test_the_node_case_list_is_current():
    ops = [c.model.graph.node[0].op_type for c in CASES]
    assert (ops.count("LinearAttention"), ops.count("CausalConvWithState")) == (14, 13)  # onnx 1.23.2


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_case(case):
    node = case.model.graph.node[0]
    slots = [list(node.output).index(o.name) for o in case.model.graph.output]
    for got, want in node_case_runs(case):
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if node.op_type == "CausalConvWithState" and slots[i] == 1:  # present_state: a copy
                assert_same_bits(g, w, f"{case.name} present_state")
            else:
                assert g.dtype == w.dtype and g.shape == w.shape
                np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=case.rtol, atol=case.atol,
                                           err_msg=f"{case.name} output {i}")


# ----------------------------------------------------------------------------
# LinearAttention
# ----------------------------------------------------------------------------

# one head, d_k = d_v = 1, two tokens: q = [1, 1], k = [1, 2], v = [3, 4]
Q1, K1, V1 = a32([[[1], [1]]]), a32([[[1], [2]]]), a32([[[3], [4]]])


def linear(inputs, **attrs):
    return run("LinearAttention", inputs, 2, opset=27, attrs={"q_num_heads": 1, "kv_num_heads": 1, "scale": 1.0, **attrs})


def test_linear_rule_by_hand():
    # S1 = 1 * 3 = 3, S2 = 3 + 2 * 4 = 11; o_t = q_t S_t
    out, state = linear({"q": Q1, "k": K1, "v": V1}, update_rule="linear")
    assert_same_bits(out, a32([[[3], [11]]]))
    assert_same_bits(state, a32([[[[11]]]]))
    # past_state 5 is added; scale 0.5 halves the output only
    out, state = linear({"q": Q1, "k": K1, "v": V1, "s": a32([[[[5]]]])}, update_rule="linear", scale=0.5)
    assert_same_bits(out, a32([[[4], [8]]]))
    assert_same_bits(state, a32([[[[16]]]]))


def test_gated_rule_by_hand():
    # decay g = ln 2 in float32 -> exp(g) ~ 2: S1 = 2 * 5 + 3, S2 = 2 * S1 + 8, computed in float64
    g = a32([[[np.log(2)], [np.log(2)]]])
    e = float(np.exp(np.float64(g[0, 0, 0])))
    out, state = linear({"q": Q1, "k": K1, "v": V1, "s": a32([[[[5]]]]), "d": g}, update_rule="gated")
    s1 = e * 5 + 3
    s2 = e * s1 + 8
    assert_same_bits(out, a32([[[s1], [s2]]]))
    assert_same_bits(state, a32([[[[s2]]]]))


def test_delta_and_gated_delta_rules_by_hand():
    beta = a32([[[1], [0.5]]])
    # delta: v1' = 1 * (3 - 0 * 1) = 3, S1 = 3; v2' = 0.5 * (4 - 3 * 2) = -1, S2 = 3 + 2 * -1 = 1
    out, state = linear({"q": Q1, "k": K1, "v": V1, "s": None, "d": None, "b": beta}, update_rule="delta")
    assert_same_bits(out, a32([[[3], [1]]]))
    assert_same_bits(state, a32([[[[1]]]]))
    # gated_delta with g = 0 (exp 1) is delta
    zero = a32(np.zeros((1, 2, 1)))
    out2, state2 = linear({"q": Q1, "k": K1, "v": V1, "s": None, "d": zero, "b": beta})  # the default rule
    assert_same_bits(out2, out)
    assert_same_bits(state2, state)


def test_query_heads_share_kv_heads_and_per_key_decay():
    rng = np.random.default_rng(11)
    q = a32(rng.standard_normal((1, 3, 4 * 2)))
    k, v = a32(rng.standard_normal((1, 3, 2 * 2))), a32(rng.standard_normal((1, 3, 2 * 3)))
    decay = a32(-rng.random((1, 3, 2)))
    attrs = {"update_rule": "gated", "scale": 0.0}
    out, state = run("LinearAttention", {"q": q, "k": k, "v": v, "s": None, "d": decay}, 2, opset=27,
                     attrs={"q_num_heads": 4, "kv_num_heads": 2, **attrs})
    # query heads 0, 1 read KV head 0: the same as 4 KV heads made by repeating each head
    rep = lambda t, n: np.repeat(t.reshape(1, 3, 2, n), 2, axis=2).reshape(1, 3, 4 * n)  # noqa: E731
    out4, _ = run("LinearAttention", {"q": q, "k": rep(k, 2), "v": rep(v, 3), "s": None, "d": rep(decay, 1)}, 2,
                  opset=27, attrs={"q_num_heads": 4, "kv_num_heads": 4, **attrs})
    assert_same_bits(out, out4)
    # per-key-dimension decay equal along d_k is the per-head decay
    per_key = np.repeat(decay, 2, axis=2)
    out_k, state_k = run("LinearAttention", {"q": q, "k": k, "v": v, "s": None, "d": per_key}, 2, opset=27,
                         attrs={"q_num_heads": 4, "kv_num_heads": 2, **attrs})
    assert_same_bits(out_k, out)
    assert_same_bits(state_k, state)


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
def test_linear_attention_near_onnx_reference(rule):
    rng = np.random.default_rng(12)
    b, t, nq, nkv, dk, dv = 2, 5, 4, 2, 3, 5
    inputs = {
        "q": a32(rng.standard_normal((b, t, nq * dk))), "k": a32(rng.standard_normal((b, t, nkv * dk)) / 2),
        "v": a32(rng.standard_normal((b, t, nkv * dv))), "s": a32(rng.standard_normal((b, nkv, dk, dv))),
        "d": a32(-rng.random((b, t, nkv * dk))) if "gated" in rule else None,
        "b": a32(rng.random((b, t, 1))) if "delta" in rule else None,
    }
    attrs = {"q_num_heads": nq, "kv_num_heads": nkv, "update_rule": rule}
    got = run("LinearAttention", inputs, 2, opset=27, attrs=attrs)
    want = reference("LinearAttention", inputs, 2, opset=27, attrs=attrs)
    # float32 recurrence of 5 steps over |S| <= ~10: within 2**-17 absolute
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=2.0**-18, atol=2.0**-17)


def test_linear_attention_errors_name_the_node_and_the_problem():
    with pytest.raises(ShapeError, match=r"LinearAttention '\w+': update_rule 'gated_delta' needs the decay input"):
        linear({"q": Q1, "k": K1, "v": V1})
    with pytest.raises(ShapeError, match="update_rule 'linear' takes no beta input"):
        linear({"q": Q1, "k": K1, "v": V1, "s": None, "d": None, "b": a32([[[1], [1]]])}, update_rule="linear")
    with pytest.raises(AttributeValueError, match="q_num_heads 3 is not a multiple of kv_num_heads 2"):
        linear({"q": Q1, "k": K1, "v": V1}, update_rule="linear", q_num_heads=3, kv_num_heads=2)
    with pytest.raises(AttributeValueError, match="update_rule must be one of"):
        linear({"q": Q1, "k": K1, "v": V1}, update_rule="mamba")
    with pytest.raises(ShapeError, match="query has shape .* it must be 3-D"):
        linear({"q": Q1[0], "k": K1, "v": V1}, update_rule="linear")
    with pytest.raises(ShapeError, match=r"past_state has shape \(1, 1, 2, 1\); it must be \(1, 1, 1, 1\)"):
        linear({"q": Q1, "k": K1, "v": V1, "s": a32(np.zeros((1, 1, 2, 1)))}, update_rule="linear")
    with pytest.raises(ShapeError, match="decay has shape"):
        linear({"q": Q1, "k": K1, "v": V1, "s": None, "d": a32(np.zeros((1, 2, 3)))}, update_rule="gated")


# ----------------------------------------------------------------------------
# CausalConvWithState
# ----------------------------------------------------------------------------


def conv(inputs, **attrs):
    return run("CausalConvWithState", inputs, 2, opset=27, attrs=attrs)


def test_causal_conv_by_hand():
    x, w = a32([[[1, 2, 3]]]), a32([[[1, 10]]])  # k = 2
    # padded [5, 1, 2, 3]: out[t] = p[t] + 10 p[t + 1] + bias
    y, state = conv({"x": x, "w": w, "b": a32([0.5]), "s": a32([[[5]]])})
    assert_same_bits(y, a32([[[15.5, 21.5, 32.5]]]))
    assert_same_bits(state, a32([[[3]]]))
    # no past: zeros; an input shorter than k - 1 keeps part of the past in present_state
    y, state = conv({"x": x[..., :1], "w": a32([[[1, 2, 4]]]), "b": None, "s": a32([[[7, 8]]])})
    assert_same_bits(y, a32([[[7 + 16 + 4]]]))
    assert_same_bits(state, a32([[[8, 1]]]))
    y, state = conv({"x": x, "w": w})
    assert_same_bits(y, a32([[[10, 21, 32]]]))
    assert_same_bits(state, a32([[[3]]]))


@pytest.mark.parametrize("activation", ["silu", "swish"])
def test_causal_conv_activation_is_silu_of_the_convolution(activation):
    x, w = a32([[[1, -2, 0.5]]]), a32([[[1, 1]]])
    (y, _) = conv({"x": x, "w": w}, activation=activation)
    c = np.array([1, -1, -1.5])  # 0 + 1, 1 - 2, -2 + 0.5
    np.testing.assert_allclose(y, a32([[c / (1 + np.exp(-c))]]), rtol=2.0**-24)


def test_causal_conv_near_onnx_reference():
    rng = np.random.default_rng(13)
    inputs = {"x": a32(rng.standard_normal((2, 3, 6))), "w": a32(rng.standard_normal((3, 1, 4))),
              "b": a32(rng.standard_normal(3)), "s": a32(rng.standard_normal((2, 3, 3)))}
    got = conv(inputs, activation="silu")
    want = reference("CausalConvWithState", inputs, 2, opset=27, attrs={"activation": "silu"})
    np.testing.assert_allclose(got[0], want[0], rtol=2.0**-20, atol=2.0**-21)  # float32 sums of 4 products
    assert_same_bits(got[1], want[1])


def test_causal_conv_errors_name_the_node_and_the_problem():
    x = a32(np.zeros((1, 2, 3)))
    with pytest.raises(ShapeError, match=r"CausalConvWithState '\w+': weight has shape \(3, 1, 2\); it must be \(2, 1, k\)"):
        conv({"x": x, "w": a32(np.zeros((3, 1, 2)))})
    with pytest.raises(ShapeError, match="input has shape"):
        conv({"x": x[0], "w": a32(np.zeros((2, 1, 2)))})
    with pytest.raises(ShapeError, match=r"past_state has shape \(1, 2, 2\); it must be \(1, 2, 1\)"):
        conv({"x": x, "w": a32(np.zeros((2, 1, 2))), "b": None, "s": a32(np.zeros((1, 2, 2)))})
    with pytest.raises(AttributeValueError, match="activation must be"):
        conv({"x": x, "w": a32(np.zeros((2, 1, 2)))}, activation="gelu")
