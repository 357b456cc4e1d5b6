"""RNN, GRU, LSTM (refquant/ops/recurrent.py) and com.microsoft DynamicQuantizeLSTM (refquant/ops/contrib_recurrent.py),
spec/ops/recurrent.md.

Expected values come from independent sources:
- float64 loops written here from the operators' equations (one direction, one batch row at a time), rounded once;
- hand-derived one- and two-step values;
- onnxruntime 1.32 (CPU, one thread) and onnx.reference, within the bounds spec/ops/recurrent.md measured, and the
  documented differences pinned as such;
- for DynamicQuantizeLSTM, a numpy derivation of the contrib op's formula and onnxruntime on models that
  onnxruntime.quantization.quantize_dynamic makes from float LSTMs.
The ONNX backend node cases of RNN, GRU and LSTM run in tests/ops/test_onnx_node_cases.py.
"""

from __future__ import annotations

import os
import tempfile

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.budget import estimate
from refquant.errors import AttributeValueError, DTypeError, ShapeError

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
OUTPUTS = {"RNN": ("Y", "Y_h"), "GRU": ("Y", "Y_h"), "LSTM": ("Y", "Y_h", "Y_c")}


def model(op, feeds, *, opset=22, outputs=None, elem=T.FLOAT, **attrs):
    """A one-node model whose inputs are the given feeds (names of INPUTS), the others absent."""
    names = [n if n in feeds else "" for n in INPUTS[: 8 if op == "LSTM" else 6]]
    while names and not names[-1]:
        names.pop()
    outputs = outputs or OUTPUTS[op]
    inputs = [helper.make_tensor_value_info(n, T.INT32 if n == "sequence_lens" else elem, None) for n in names if n]
    attrs.setdefault("hidden_size", feeds["R"].shape[-1])  # onnxruntime requires it
    node = helper.make_node(op, names, list(outputs), **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, elem, None) for o in outputs if o])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(op, feeds, **kw):
    return refquant.Session(model(op, feeds, **kw)).run(None, feeds)


def weights(op, input_size, hidden, dirs=1, seed=0, scale=1.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    g = GATES[op]
    return dict(
        W=(rng.normal(size=(dirs, g * hidden, input_size)) * scale / np.sqrt(input_size)).astype(dtype),
        R=(rng.normal(size=(dirs, g * hidden, hidden)) * scale / np.sqrt(hidden)).astype(dtype),
        B=(rng.normal(size=(dirs, 2 * g * hidden)) * 0.3).astype(dtype),
    )


# -- an independent float64 oracle: the equations, one direction, one batch row -----------------------------


def sig(x):
    return 1 / (1 + np.exp(-x))


def oracle_direction(op, x, w, r, b, h0, c0=None, p=None, *, f=None, g=np.tanh, h=np.tanh, clip=None, lbr=0,
                     input_forget=False, length=None, reverse=False):
    """Y rows (seq, hidden) and the final (h, c) of one direction and one batch row, float64."""
    x, w, r, b = (np.asarray(v, np.float64) for v in (x, w, r, b))
    f = f or (np.tanh if op == "RNN" else sig)
    n = r.shape[-1]
    seq = x.shape[0]
    length = seq if length is None else length
    cl = (lambda v: np.clip(v, -clip, clip)) if clip is not None else (lambda v: v)
    ht, ct = np.asarray(h0, np.float64), (None if c0 is None else np.asarray(c0, np.float64))
    y = np.zeros((seq, n))
    order = range(length - 1, -1, -1) if reverse else range(length)
    for t in order:
        xt = x[t]
        if op == "RNN":
            ht = f(cl(w @ xt + r @ ht + b[:n] + b[n:]))
        elif op == "GRU":
            wb, rb = b[: 3 * n], b[3 * n :]
            z = f(cl(w[:n] @ xt + r[:n] @ ht + wb[:n] + rb[:n]))
            rr = f(cl(w[n : 2 * n] @ xt + r[n : 2 * n] @ ht + wb[n : 2 * n] + rb[n : 2 * n]))
            if lbr:
                hh = g(cl(w[2 * n :] @ xt + rr * (r[2 * n :] @ ht + rb[2 * n :]) + wb[2 * n :]))
            else:
                hh = g(cl(w[2 * n :] @ xt + r[2 * n :] @ (rr * ht) + rb[2 * n :] + wb[2 * n :]))
            ht = (1 - z) * hh + z * ht
        else:
            pre = w @ xt + r @ ht + b[: 4 * n] + b[4 * n :]
            pi, po, pf = (np.zeros(n),) * 3 if p is None else (p[:n], p[n : 2 * n], p[2 * n :])
            i = f(cl(pre[:n] + pi * ct))
            fg = 1 - i if input_forget else f(cl(pre[2 * n : 3 * n] + pf * ct))
            ct = fg * ct + i * g(cl(pre[3 * n :]))
            o = f(cl(pre[n : 2 * n] + po * ct))
            ht = o * h(cl(ct))
        y[t] = ht
    return y, ht, ct


def oracle(op, feeds, *, direction="forward", **kw):
    """Y (seq, dirs, batch, hidden), Y_h, Y_c from oracle_direction, layout 0."""
    x, w, r = feeds["X"], feeds["W"], feeds["R"]
    dirs, n = w.shape[0], r.shape[-1]
    seq, batch = x.shape[:2]
    b = feeds.get("B", np.zeros((dirs, 2 * GATES[op] * n)))
    h0 = feeds.get("initial_h", np.zeros((dirs, batch, n)))
    c0 = feeds.get("initial_c", np.zeros((dirs, batch, n)))
    p = feeds.get("P")
    lengths = feeds.get("sequence_lens", np.full(batch, seq))
    y, yh, yc = np.zeros((seq, dirs, batch, n)), np.zeros((dirs, batch, n)), np.zeros((dirs, batch, n))
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        acts = kw.get("acts", [{}] * dirs)[d]
        extra = {k: v for k, v in kw.items() if k != "acts"}
        for bi in range(batch):
            rows, hh, cc = oracle_direction(
                op, x[:, bi], w[d], r[d], b[d], h0[d, bi], c0[d, bi] if op == "LSTM" else None,
                None if p is None else np.asarray(p[d], np.float64), length=int(lengths[bi]), reverse=reverse,
                **acts, **extra,
            )
            y[:, d, bi], yh[d, bi] = rows, hh
            if op == "LSTM":
                yc[d, bi] = cc
    return y, yh, yc


def assert_rounded_once(got, want64, dtype=np.float32):
    """got equals the float64 value rounded once, up to a few float64 ulps of the oracle's own summation order."""
    assert got.dtype == dtype
    want = np.asarray(want64, np.float64)
    assert got.shape == want.shape
    tight = np.abs(got.astype(np.float64) - want) <= np.spacing(np.abs(want).astype(dtype)).astype(np.float64) * 0.5 + 1e-12
    assert tight.all(), f"{(~tight).sum()} elements off: {got[~tight][:4]} vs {want[~tight][:4]}"


# -- hand-derived steps --------------------------------------------------------------------------------------


def test_rnn_two_steps_by_hand():
    # hidden 1, input 1: H1 = tanh(0.5 * 1 + 0.25 * 0 + 0.1 + 0.2), H2 = tanh(0.5 * -2 + 0.25 * H1 + 0.3)
    feeds = dict(X=np.array([[[1.0]], [[-2.0]]], np.float32), W=np.array([[[0.5]]], np.float32),
                 R=np.array([[[0.25]]], np.float32), B=np.array([[0.1, 0.2]], np.float32))
    h1 = np.tanh(0.8)
    h2 = np.tanh(-1.0 + 0.25 * h1 + 0.3)
    y, y_h = run("RNN", feeds)
    assert_rounded_once(y.reshape(2), [h1, h2])
    assert_rounded_once(y_h.reshape(1), [h2])


def test_gru_one_step_by_hand_both_reset_forms():
    # hidden 1, input 1, h0 = 0.5: z = sig(1 x + 0.5 * 2), r = sig(0.5 x + 0.5 * -1), candidates differ by form
    x, h0 = 2.0, 0.5
    feeds = dict(X=np.array([[[x]]], np.float32), W=np.array([[[1.0], [0.5], [1.5]]], np.float32),
                 R=np.array([[[2.0], [-1.0], [3.0]]], np.float32), B=np.array([[0, 0, 0.25, 0, 0, 0.5]], np.float32),
                 initial_h=np.array([[[h0]]], np.float32))
    z, r = sig(x + 2 * h0), sig(0.5 * x - h0)
    before = np.tanh(1.5 * x + 3 * (r * h0) + 0.5 + 0.25)
    after = np.tanh(1.5 * x + r * (3 * h0 + 0.5) + 0.25)
    for lbr, hh in ((0, before), (1, after)):
        y, y_h = run("GRU", feeds, linear_before_reset=lbr)
        assert_rounded_once(y_h.reshape(1), [(1 - z) * hh + z * h0])


def test_lstm_two_steps_by_hand_with_peepholes():
    # hidden 1, input 1; gates i, o, f, c with weights 1, 2, 3, 4, R 0.5 each, peepholes (0.1, 0.2, 0.3)
    feeds = dict(X=np.array([[[1.0]], [[0.5]]], np.float32), W=np.array([[[1.0], [2.0], [3.0], [4.0]]], np.float32),
                 R=np.full((1, 4, 1), 0.5, np.float32), P=np.array([[0.1, 0.2, 0.3]], np.float32),
                 initial_c=np.array([[[1.0]]], np.float32))
    h, c = 0.0, 1.0
    want = []
    for x in (1.0, 0.5):
        i = sig(x + 0.5 * h + 0.1 * c)
        f = sig(3 * x + 0.5 * h + 0.3 * c)
        c = f * c + i * np.tanh(4 * x + 0.5 * h)
        o = sig(2 * x + 0.5 * h + 0.2 * c)
        h = o * np.tanh(c)
        want.append(h)
    y, y_h, y_c = run("LSTM", feeds)
    assert_rounded_once(y.reshape(2), want)
    assert_rounded_once(y_c.reshape(1), [c])


# -- every option against the oracle ---------------------------------------------------------------------------


def _feeds(op, seq=4, batch=3, input_size=2, hidden=3, dirs=1, seed=0, **extra):
    rng = np.random.default_rng(seed + 100)
    feeds = dict(X=rng.normal(size=(seq, batch, input_size)).astype(np.float32), **weights(op, input_size, hidden, dirs, seed))
    if "initial_h" in extra:
        feeds["initial_h"] = rng.normal(size=(dirs, batch, hidden)).astype(np.float32)
    if "initial_c" in extra:
        feeds["initial_c"] = rng.normal(size=(dirs, batch, hidden)).astype(np.float32)
    if "P" in extra:
        feeds["P"] = rng.normal(size=(dirs, 3 * hidden)).astype(np.float32)
    if "sequence_lens" in extra:
        feeds["sequence_lens"] = np.asarray(extra["sequence_lens"], np.int32)
    return feeds


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lengths", [None, [4, 2, 0]])
def test_directions_and_sequence_lengths_match_the_oracle(op, direction, lengths):
    dirs = 2 if direction == "bidirectional" else 1
    extra = dict(initial_h=1, initial_c=1, P=1) if op == "LSTM" else dict(initial_h=1)
    if lengths is not None:
        extra["sequence_lens"] = lengths
    feeds = _feeds(op, dirs=dirs, **extra)
    got = run(op, feeds, direction=direction)
    want = oracle(op, feeds, direction=direction)
    for g, w in zip(got, want):
        assert_rounded_once(g, w)
    if lengths is not None:  # Y holds 0 past each row's length; a length of 0 keeps the initial state
        assert (got[0][2:, :, 1] == 0).all() and (got[0][:, :, 2] == 0).all()
        np.testing.assert_array_equal(got[1][:, 2], feeds["initial_h"][:, 2])


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("opset", [10, 14, 22])  # versions 7 (runs at opsets 10-13), 14, 22
def test_every_version_and_layout(op, opset):
    feeds = _feeds(op, dirs=2, initial_h=1, initial_c=1)
    if op != "LSTM":
        feeds.pop("initial_c")
    want = run(op, feeds, opset=opset, direction="bidirectional")
    if opset < 14:
        with pytest.raises(AttributeValueError, match="layout"):
            run(op, feeds, opset=opset, direction="bidirectional", layout=1)
        return
    batchwise = dict(feeds, X=np.swapaxes(feeds["X"], 0, 1).copy(), initial_h=np.swapaxes(feeds["initial_h"], 0, 1).copy())
    if "initial_c" in feeds:
        batchwise["initial_c"] = np.swapaxes(feeds["initial_c"], 0, 1).copy()
    got = run(op, batchwise, opset=opset, direction="bidirectional", layout=1)
    np.testing.assert_array_equal(got[0], np.transpose(want[0], (2, 0, 1, 3)))
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(g, np.transpose(w, (1, 0, 2)))


def test_lstm_input_forget_and_clip_match_the_oracle():
    feeds = _feeds("LSTM", initial_c=1, P=1, seed=3)
    feeds["W"] *= 4
    got = run("LSTM", feeds, input_forget=1, clip=0.5)
    for g, w in zip(got, oracle("LSTM", feeds, input_forget=True, clip=0.5)):
        assert_rounded_once(g, w)


@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_clip_and_linear_before_reset_match_the_oracle(lbr):
    feeds = _feeds("GRU", initial_h=1, seed=4)
    feeds["W"] *= 4
    got = run("GRU", feeds, linear_before_reset=lbr, clip=0.7)
    for g, w in zip(got, oracle("GRU", feeds, lbr=lbr, clip=F32(0.7))):
        assert_rounded_once(g, w)


F32 = lambda v: float(np.float32(v))  # noqa: E731
#: (name, alpha, beta, function) per the operator page's formulas
ACTIVATIONS = [
    ("Relu", None, None, lambda x: np.maximum(x, 0)),
    ("Tanh", None, None, np.tanh),
    ("Sigmoid", None, None, sig),
    ("Affine", 0.3, 0.2, lambda x: F32(0.3) * x + F32(0.2)),
    ("LeakyRelu", 0.3, None, lambda x: np.where(x >= 0, x, F32(0.3) * x)),
    ("ThresholdedRelu", 0.3, None, lambda x: np.where(x >= F32(0.3), x, 0)),
    ("ScaledTanh", 0.3, 0.2, lambda x: F32(0.3) * np.tanh(F32(0.2) * x)),
    ("HardSigmoid", 0.3, 0.2, lambda x: np.minimum(np.maximum(F32(0.3) * x + F32(0.2), 0), 1)),
    ("Elu", 0.3, None, lambda x: np.where(x >= 0, x, F32(0.3) * np.expm1(x))),
    ("Softsign", None, None, lambda x: x / (1 + np.abs(x))),
    ("Softplus", None, None, lambda x: np.log1p(np.exp(x))),
]


@pytest.mark.parametrize(("name", "alpha", "beta", "function"), ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_every_activation_function(name, alpha, beta, function):
    """Each function as f of an RNN and as g of an LSTM (f, h Sigmoid/Tanh around it: alphas consumed in order)."""
    feeds = _feeds("RNN", initial_h=1, seed=5)
    attrs = dict(activations=[name])
    if alpha is not None:
        attrs["activation_alpha"] = [alpha]
    if beta is not None:
        attrs["activation_beta"] = [beta]
    got = run("RNN", feeds, **attrs)
    want = oracle("RNN", feeds, acts=[dict(f=function)])
    for g, w in zip(got, want):
        assert_rounded_once(g, w)
    lstm = _feeds("LSTM", seed=6)
    attrs["activations"] = ["HardSigmoid", name, "Tanh"]  # HardSigmoid takes the first alpha and beta
    attrs["activation_alpha"] = [0.25] + attrs.get("activation_alpha", [])
    attrs["activation_beta"] = [0.5] + attrs.get("activation_beta", [])
    got = run("LSTM", lstm, **attrs)
    hard = lambda x: np.minimum(np.maximum(F32(0.25) * x + 0.5, 0), 1)  # noqa: E731
    for g, w in zip(got, oracle("LSTM", lstm, acts=[dict(f=hard, g=function)])):
        assert_rounded_once(g, w)


def test_activation_defaults_are_the_onnx_operators():
    feeds = _feeds("RNN", seed=7)
    for name, function in (
        ("LeakyRelu", lambda x: np.where(x >= 0, x, F32(0.01) * x)),
        ("ThresholdedRelu", lambda x: np.where(x >= 1, x, 0)),
        ("Elu", lambda x: np.where(x >= 0, x, np.expm1(x))),
        ("Affine", lambda x: x),
        ("HardSigmoid", lambda x: np.minimum(np.maximum(F32(0.2) * x + F32(0.5), 0), 1)),
    ):
        for g, w in zip(run("RNN", feeds, activations=[name.lower()]), oracle("RNN", feeds, acts=[dict(f=function)])):
            assert_rounded_once(g, w)


def test_bidirectional_activations_one_list_or_two():
    feeds = _feeds("GRU", dirs=2, seed=8)
    one = run("GRU", feeds, direction="bidirectional", activations=["Sigmoid", "Relu"])
    two = run("GRU", feeds, direction="bidirectional", activations=["Sigmoid", "Relu", "Sigmoid", "Relu"])
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    mixed = run("GRU", feeds, direction="bidirectional", activations=["Sigmoid", "Tanh", "Sigmoid", "Relu"])
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    want = oracle("GRU", feeds, direction="bidirectional", acts=[dict(), dict(g=relu)])
    for g, w in zip(mixed, want):
        assert_rounded_once(g, w)


@pytest.mark.parametrize(("dtype", "elem"), [(np.float16, T.FLOAT16), (np.float64, T.DOUBLE), (ml_dtypes.bfloat16, T.BFLOAT16)])
def test_other_float_types_round_once(dtype, elem):
    feeds = _feeds("LSTM", seed=9)
    feeds = {k: v.astype(dtype) for k, v in feeds.items()}
    got = run("LSTM", feeds, elem=elem)
    for g, w in zip(got, oracle("LSTM", {k: v.astype(np.float64) for k, v in feeds.items()})):
        if dtype is np.float64:
            np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
        else:
            assert_rounded_once(g, w, dtype=np.dtype(dtype))
    if dtype is ml_dtypes.bfloat16:
        with pytest.raises(DTypeError, match="X has type bfloat16"):
            run("LSTM", feeds, elem=elem, opset=14)


def test_optional_outputs():
    feeds = _feeds("LSTM", seed=10)
    full = run("LSTM", feeds)
    only_c = run("LSTM", feeds, outputs=("", "", "Y_c"))
    np.testing.assert_array_equal(only_c[0], full[2])


def test_refusals():
    feeds = _feeds("LSTM")
    cases = [
        (dict(direction="sideways"), AttributeValueError, "direction"),
        (dict(activations=["Sigmoid", "Swish", "Tanh"]), AttributeValueError, "Swish"),
        (dict(activations=["Sigmoid", "Tanh"]), AttributeValueError, "takes 3 per direction"),
        (dict(activation_alpha=[0.5]), AttributeValueError, "more than"),
        (dict(activations=["Sigmoid", "ScaledTanh", "Tanh"]), AttributeValueError, "no default"),
        (dict(hidden_size=4), ShapeError, "hidden_size"),
        (dict(clip=-1.0), AttributeValueError, "clip"),
        (dict(input_forget=2), AttributeValueError, "input_forget"),
    ]
    for attrs, error, text in cases:
        with pytest.raises(error, match=text):
            run("LSTM", feeds, **attrs)
    with pytest.raises(ShapeError, match="sequence_lens"):
        run("LSTM", dict(feeds, sequence_lens=np.array([5, 1, 1], np.int32)))
    with pytest.raises(ShapeError, match="W has shape"):
        run("LSTM", dict(feeds, W=feeds["W"][:, :-1]))
    mixed = model("LSTM", feeds)
    mixed.graph.input[2].type.tensor_type.elem_type = T.DOUBLE
    with pytest.raises(DTypeError, match="R has type"):
        refquant.Session(mixed).run(None, dict(feeds, R=feeds["R"].astype(np.float64)))


def test_budget_estimate():
    feeds = _feeds("LSTM", seq=5, batch=3, input_size=2, hidden=4, dirs=2)
    session = refquant.Session(model("LSTM", feeds, direction="bidirectional"))
    node = session._plan[0]
    found = estimate(node, [feeds["X"], feeds["W"], feeds["R"], feeds["B"]])
    assert found.work == 5 * 2 * 3 * 4 * 4 * (2 + 4)
    assert found.allocations[0].shape == (5, 2, 3, 4)


# -- onnxruntime and onnx.reference ------------------------------------------------------------------------------

ort = pytest.importorskip("onnxruntime")


def _ort(m, feeds):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("shape", [(4, 2, 3, 5), (50, 4, 16, 32)])
def test_float_agreement_with_onnxruntime_and_reference(op, shape):
    """Within the differences spec/ops/recurrent.md measured (<= 4.5e-7 on these; asserted at 1e-6)."""
    from onnx.reference import ReferenceEvaluator

    seq, batch, input_size, hidden = shape
    feeds = _feeds(op, seq, batch, input_size, hidden, seed=seq)
    m = model(op, feeds)
    got = refquant.Session(m).run(None, feeds)
    for theirs in (_ort(m, feeds), ReferenceEvaluator(m).run(None, feeds)):
        for g, t in zip(got, theirs):
            np.testing.assert_allclose(g, t, rtol=0, atol=1e-6)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_options_agree_with_onnxruntime(op, direction):
    dirs = 2 if direction == "bidirectional" else 1
    extra = dict(initial_h=1, initial_c=1, P=1, sequence_lens=[4, 1, 3]) if op == "LSTM" else dict(initial_h=1, sequence_lens=[4, 1, 3])
    feeds = _feeds(op, dirs=dirs, seed=11, **extra)
    names = ["LeakyRelu", "Softsign", "HardSigmoid"][: {"RNN": 1, "GRU": 2, "LSTM": 3}[op]]
    attrs = dict(direction=direction, activations=names * dirs, activation_alpha=[0.2, 0.3][: 2 if op == "LSTM" else 1] * dirs)
    if op == "LSTM":
        attrs["activation_beta"] = [0.4] * dirs
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    m = model(op, feeds, **attrs)
    for g, t in zip(refquant.Session(m).run(None, feeds), _ort(m, feeds)):  # LeakyRelu gates let LSTM states grow
        np.testing.assert_allclose(g, t, rtol=1e-6, atol=1e-6)


def test_documented_differences_from_onnxruntime():
    # a length of 0: refquant keeps the initial state, onnxruntime writes zeros
    feeds = _feeds("GRU", initial_h=1, sequence_lens=[4, 0, 2])
    m = model("GRU", feeds)
    ours, theirs = refquant.Session(m).run(None, feeds), _ort(m, feeds)
    np.testing.assert_array_equal(ours[1][0, 1], feeds["initial_h"][0, 1])
    assert (theirs[1][0, 1] == 0).all()
    # clip: refquant also clips h's input Ct, onnxruntime does not
    feeds = _feeds("LSTM", seq=8, initial_c=1, seed=12)
    feeds["initial_c"] *= 3
    m = model("LSTM", feeds, clip=0.5)
    assert np.abs(refquant.Session(m).run(None, feeds)[0] - _ort(m, feeds)[0]).max() > 1e-3
    # ThresholdedRelu without alpha: ONNX's default 1.0 here, 0 in onnxruntime
    feeds = _feeds("RNN", seed=13)
    m = model("RNN", feeds, activations=["ThresholdedRelu"])
    assert np.abs(refquant.Session(m).run(None, feeds)[0] - _ort(m, feeds)[0]).max() > 1e-3


# -- DynamicQuantizeLSTM -------------------------------------------------------------------------------------------


def _quantized_lstm(seq, batch, input_size, hidden, *, direction="forward", per_channel=False, reduce_range=True,
                    outputs=("Y", "Y_h", "Y_c"), with_lengths=False, seed=0):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.normal(size=shape) * s).astype(np.float32), name)
             for name, shape, s in (("W", (dirs, 4 * hidden, input_size), 0.5), ("R", (dirs, 4 * hidden, hidden), 0.5),
                                    ("B", (dirs, 8 * hidden), 0.1))]
    inputs = [helper.make_tensor_value_info("X", T.FLOAT, [seq, batch, input_size])]
    names = ["X", "W", "R", "B"]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", T.INT32, [batch]))
        names.append("sequence_lens")
    node = helper.make_node("LSTM", names, list(outputs), hidden_size=hidden, direction=direction)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, T.FLOAT, None) for o in outputs if o], inits)
    with tempfile.TemporaryDirectory() as folder:
        path, qpath = os.path.join(folder, "f.onnx"), os.path.join(folder, "q.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)
        quantize_dynamic(path, qpath, weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range)
        quantized = onnx.load(qpath)
    assert [n.op_type for n in quantized.graph.node] == ["DynamicQuantizeLSTM"]
    return quantized


DQ_CASES = [
    dict(seq=1, batch=1, input_size=3, hidden=2),
    dict(seq=5, batch=3, input_size=4, hidden=3),
    dict(seq=6, batch=2, input_size=5, hidden=4, direction="bidirectional"),
    dict(seq=6, batch=2, input_size=5, hidden=4, direction="reverse"),
    dict(seq=5, batch=3, input_size=4, hidden=3, per_channel=True),
    dict(seq=5, batch=3, input_size=4, hidden=3, with_lengths=True),
    dict(seq=5, batch=3, input_size=4, hidden=3, with_lengths=True, outputs=("", "Y_h", "Y_c")),
    dict(seq=5, batch=3, input_size=4, hidden=3, with_lengths=True, direction="bidirectional"),
    dict(seq=20, batch=4, input_size=16, hidden=32),
]


def _dq_feeds(case, quantized, seed=1):
    rng = np.random.default_rng(seed)
    feeds = dict(X=rng.normal(size=(case["seq"], case["batch"], case["input_size"])).astype(np.float32))
    if case.get("with_lengths"):
        feeds["sequence_lens"] = np.array([5, 2, 3][: case["batch"]], np.int32)
    return feeds


@pytest.mark.parametrize("case", DQ_CASES, ids=str)
def test_dynamic_quantize_lstm_agrees_with_onnxruntime(case):
    """7-bit weights (no pair can saturate): the spec profile within 5e-7 of onnxruntime (measured <= 2.2e-7)."""
    quantized = _quantized_lstm(**case)
    feeds = _dq_feeds(case, quantized)
    for g, t in zip(refquant.Session(quantized).run(None, feeds), _ort(quantized, feeds)):
        np.testing.assert_allclose(g, t, rtol=0, atol=5e-7)


@pytest.mark.parametrize("case", DQ_CASES[1:6], ids=str)
def test_dynamic_quantize_lstm_full_range_under_the_onnxruntime_profile(case):
    """Full-range int8 weights: the onnxruntime profile (pair saturation as this host's MLAS) within 5e-7."""
    quantized = _quantized_lstm(**case, reduce_range=False)
    feeds = _dq_feeds(case, quantized)
    for g, t in zip(refquant.Session(quantized, profile="onnxruntime").run(None, feeds), _ort(quantized, feeds)):
        np.testing.assert_allclose(g, t, rtol=0, atol=5e-7)


def _dql(x):
    """DynamicQuantizeLinear by its formula (uint8; scale 1 for an empty range, onnxruntime's choice)."""
    lo, hi = np.float32(min(0.0, float(x.min()))), np.float32(max(0.0, float(x.max())))
    scale = np.float32(1.0) if lo == hi else np.float32((hi - lo) / np.float32(255))
    zp = np.clip(np.rint(np.float32(0) - lo / scale), 0, 255)
    return np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.int64), float(scale), int(zp)


def test_dynamic_quantize_lstm_two_steps_from_the_formula():
    """A hand-built node (uint8 W per column, uint8 R per direction), derived step by step in numpy."""
    rng = np.random.default_rng(21)
    seq, batch, input_size, n = 2, 2, 3, 2
    w = rng.integers(0, 256, size=(1, input_size, 4 * n)).astype(np.uint8)
    r = rng.integers(70, 190, size=(1, n, 4 * n)).astype(np.uint8)
    w_scale, w_zp = (rng.uniform(0.001, 0.01, size=(1, 4 * n)).astype(np.float32), np.full((1, 4 * n), 128, np.uint8))
    r_scale, r_zp = np.array([0.01], np.float32), np.array([128], np.uint8)
    bias = (rng.normal(size=(1, 8 * n)) * 0.1).astype(np.float32)
    x = rng.normal(size=(seq, batch, input_size)).astype(np.float32)
    inits = [numpy_helper.from_array(v, k) for k, v in dict(W=w, R=r, B=bias, ws=w_scale, wz=w_zp, rs=r_scale, rz=r_zp).items()]
    node = helper.make_node("DynamicQuantizeLSTM", ["X", "W", "R", "B", "", "", "", "", "ws", "wz", "rs", "rz"],
                            ["Y", "Y_h", "Y_c"], domain="com.microsoft", hidden_size=n)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", T.FLOAT, None)],
                              [helper.make_tensor_value_info(o, T.FLOAT, None) for o in ("Y", "Y_h", "Y_c")], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14), helper.make_opsetid("com.microsoft", 1)])
    y, y_h, y_c = refquant.Session(m).run(None, dict(X=x))

    xq, sx, zx = _dql(x)
    xw = ((xq - zx) @ (w[0].astype(np.int64) - 128)) * (sx * w_scale[0].astype(np.float64))
    h, c, want = np.zeros((batch, n)), np.zeros((batch, n)), []
    for t in range(seq):
        hq, sh, zh = _dql(h.astype(np.float32))
        gates = xw[t] + ((hq - zh) @ (r[0].astype(np.int64) - 128)) * (sh * 0.01 * np.float32(1)) + bias[0, :8] + bias[0, 8:]
        gates = gates.astype(np.float64)
        i, o, f, g = (gates[:, k * n : (k + 1) * n] for k in range(4))
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        want.append(h)
    np.testing.assert_allclose(y[:, 0], np.array(want), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(y_c[0], c, rtol=1e-6, atol=1e-7)
    if hasattr(ort, "InferenceSession"):  # onnxruntime (uint8 W: MLAS's U8U8 kernel, exact)
        for g, t in zip((y, y_h, y_c), _ort(m, dict(X=x))):
            np.testing.assert_allclose(g, t, rtol=0, atol=5e-7)
