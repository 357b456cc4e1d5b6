"""The Sequence and Optional ops on hand-built graphs (refquant/ops/sequence.py, spec/ops/sequence.md)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

import refquant
from refquant.errors import DTypeError, FeedError, ModelError, ShapeError


def _seq(name, elem=T.FLOAT, shape=None):
    return helper.make_value_info(name, helper.make_sequence_type_proto(helper.make_tensor_type_proto(elem, shape)))


def _opt(name, inner):
    return helper.make_value_info(name, helper.make_optional_type_proto(inner))


def _t(name, elem=T.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def _session(nodes, inputs, outputs, opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return refquant.Session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _single(op, inputs, outputs, opset=18, **attrs):
    node = helper.make_node(op, [i.name for i in inputs], [o.name for o in outputs], name="n1", **attrs)
    return _session([node], inputs, outputs, opset)


A, B, C = (np.full((2,), v, np.float32) for v in (1, 2, 3))


def test_negative_positions():
    at = _single("SequenceAt", [_seq("s"), _t("p", T.INT64, [])], [_t("y")])
    assert at.run(None, {"s": [A, B, C], "p": np.array(-1)})[0] is not None
    np.testing.assert_array_equal(at.run(None, {"s": [A, B, C], "p": np.array(-3)})[0], A)
    ins = _single("SequenceInsert", [_seq("s"), _t("x"), _t("p", T.INT32, [])], [_seq("y")])
    (got,) = ins.run(None, {"s": [A, B], "x": C, "p": np.array(-1, np.int32)})
    assert [float(g[0]) for g in got] == [1, 3, 2]


def test_insert_at_end_and_erase_last():
    ins = _single("SequenceInsert", [_seq("s"), _t("x")], [_seq("y")])
    s = [A, B]
    (got,) = ins.run(None, {"s": s, "x": C})
    assert [float(g[0]) for g in got] == [1, 2, 3] and len(s) == 2  # the input list is not modified
    ins_p = _single("SequenceInsert", [_seq("s"), _t("x"), _t("p", T.INT64, [])], [_seq("y")])
    (got,) = ins_p.run(None, {"s": [A, B], "x": C, "p": np.array(2)})
    assert [float(g[0]) for g in got] == [1, 2, 3]
    erase = _single("SequenceErase", [_seq("s")], [_seq("y")])
    assert [float(g[0]) for g in erase.run(None, {"s": [A, B, C]})[0]] == [1, 2]
    length = _single("SequenceLength", [_seq("s")], [_t("n", T.INT64, [])])
    (n,) = length.run(None, {"s": (A, B)})
    assert n.dtype == np.int64 and n == 2


def test_position_out_of_range_names_the_node():
    at = _single("SequenceAt", [_seq("s"), _t("p", T.INT64, [])], [_t("y")])
    with pytest.raises(ShapeError, match=r"SequenceAt 'n1'.*position 3 is out of range \[-3, 2\]"):
        at.run(None, {"s": [A, B, C], "p": np.array(3)})
    erase = _single("SequenceErase", [_seq("s"), _t("p", T.INT64, [])], [_seq("y")])
    with pytest.raises(ShapeError, match="SequenceErase 'n1'"):
        erase.run(None, {"s": [A], "p": np.array(-2)})


def test_mixed_dtypes_are_refused():
    construct = _single("SequenceConstruct", [_t("a"), _t("b", T.INT32)], [_seq("y")])
    with pytest.raises(DTypeError, match="SequenceConstruct 'n1'.*dtypes"):
        construct.run(None, {"a": A, "b": np.zeros(2, np.int32)})
    ins = _single("SequenceInsert", [_seq("s"), _t("x", T.INT32)], [_seq("y")])
    with pytest.raises(DTypeError, match="SequenceInsert 'n1'"):
        ins.run(None, {"s": [A], "x": np.zeros(2, np.int32)})


def test_empty_sequence_of_a_declared_dtype():
    empty = _single("SequenceEmpty", [], [_seq("y", T.FLOAT16)], dtype=T.FLOAT16)
    assert empty.outputs[0].kind == "sequence" and empty.outputs[0].dtype == np.float16
    assert empty.run(None, {}) == [[]]
    node = helper.make_node("SequenceEmpty", [], ["e"], dtype=T.FLOAT16)
    ins = helper.make_node("SequenceInsert", ["e", "x"], ["y"])
    session = _session([node, ins], [_t("x")], [_seq("y", T.FLOAT16)])
    with pytest.raises(ModelError, match="graph output 'y'.*element 0 has dtype float32"):
        session.run(None, {"x": A})


def test_split_to_sequence():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    plain = _single("SplitToSequence", [_t("x")], [_seq("y")], axis=1)
    got = plain.run(None, {"x": x})[0]
    assert len(got) == 4 and got[0].shape == (3, 1)
    squeezed = _single("SplitToSequence", [_t("x")], [_seq("y")], axis=1, keepdims=0)
    assert squeezed.run(None, {"x": x})[0][2].shape == (3,)
    scalar = _single("SplitToSequence", [_t("x"), _t("s", T.INT64, [])], [_seq("y")], axis=1, keepdims=0)
    assert [p.shape for p in scalar.run(None, {"x": x, "s": np.array(3)})[0]] == [(3, 3), (3, 1)]
    sizes = _single("SplitToSequence", [_t("x"), _t("s", T.INT32, [2])], [_seq("y")])
    got = sizes.run(None, {"x": x, "s": np.array([1, 2], np.int32)})[0]
    assert [p.shape for p in got] == [(1, 4), (2, 4)]
    np.testing.assert_array_equal(np.concatenate(got), x)
    with pytest.raises(ShapeError, match="SplitToSequence 'n1'.*summing to 3"):
        sizes.run(None, {"x": x, "s": np.array([1, 1], np.int32)})


def test_concat_from_sequence_new_axis():
    stack = _single("ConcatFromSequence", [_seq("s")], [_t("y")], axis=1, new_axis=1)
    (got,) = stack.run(None, {"s": [A, B, C]})
    assert got.shape == (2, 3)
    stack_last = _single("ConcatFromSequence", [_seq("s")], [_t("y")], axis=-1, new_axis=1)
    np.testing.assert_array_equal(stack_last.run(None, {"s": [A, B, C]})[0], got)
    concat = _single("ConcatFromSequence", [_seq("s")], [_t("y")], axis=0)
    assert concat.run(None, {"s": [A, B, C]})[0].shape == (6,)
    with pytest.raises(ShapeError, match="ConcatFromSequence 'n1'.*empty"):
        concat.run(None, {"s": []})


def test_optional_of_an_empty_value():
    tensor = helper.make_tensor_type_proto(T.FLOAT, None)
    wrap = helper.make_node("Optional", ["x"], ["o"], name="n1")
    has = helper.make_node("OptionalHasElement", ["o"], ["h"])
    get = helper.make_node("OptionalGetElement", ["o"], ["y"])
    session = _session([wrap, has, get], [_t("x", T.FLOAT, [0])], [_t("h", T.BOOL, []), _t("y", T.FLOAT, [0])])
    h, y = session.run(None, {"x": np.zeros((0,), np.float32)})
    assert bool(h) and y.shape == (0,)
    empty = helper.make_node("Optional", [], ["o"], type=tensor)
    session = _session([empty, has], [], [_t("h", T.BOOL, [])])
    assert not session.run(None, {})[0]
    passthrough = _single("Identity", [_opt("o", tensor)], [_opt("y", tensor)])
    assert passthrough.inputs[0].kind == "optional tensor"
    assert passthrough.run(None, {"o": None}) == [None]
    getter = _single("OptionalGetElement", [_opt("o", tensor)], [_t("y")])
    with pytest.raises(ShapeError, match="OptionalGetElement 'n1'.*empty"):
        getter.run(None, {"o": None})


def test_feeds_are_checked_against_the_declared_kind():
    length = _single("SequenceLength", [_seq("s")], [_t("n", T.INT64, [])])
    with pytest.raises(FeedError, match="sequence"):
        length.run(None, {"s": A})
    with pytest.raises(FeedError, match="element 1 has dtype int32"):
        length.run(None, {"s": [A, np.zeros(2, np.int32)]})
    with pytest.raises(FeedError, match="None"):
        length.run(None, {"s": None})


def test_sequence_map_and_loop_carried_sequence():
    body = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "body", [_t("x")], [_t("y")])
    smap = _single("SequenceMap", [_seq("s")], [_seq("y")], body=body)
    assert [float(g[0]) for g in smap.run(None, {"s": [A, B]})[0]] == [2, 4]
    assert smap.run(None, {"s": []}) == [[]]
