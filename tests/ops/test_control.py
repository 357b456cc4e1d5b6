"""If, Loop and Scan with hand-built subgraphs (refquant/ops/control.py, spec/ops/control.md)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import refquant
from refquant.errors import ModelError, NodeError, ResourceLimitError

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _vi(name, kind=F, shape=None):
    return helper.make_tensor_value_info(name, kind, shape)


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _if_model(opset=17):
    """y = x + 1 when c else x * outer (outer: a main-graph initializer read by the branch)."""
    then = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"], name="add_then")], "then", [],
                             [_vi("t")], initializer=[_const("one", np.float32(1))])
    other = helper.make_graph([helper.make_node("Mul", ["x", "outer"], ["e"], name="mul_else")], "else", [],
                              [_vi("e")])
    node = helper.make_node("If", ["c"], ["y"], name="if1", then_branch=then, else_branch=other)
    return _model([node], [_vi("c", B, []), _vi("x", F, [3])], [_vi("y")],
                  [_const("outer", np.float32(3))], opset)


@pytest.mark.parametrize("opset", [11, 13, 16, 19, 21, 23, 24, 25, 28])
def test_if_runs_the_branch_cond_selects_reading_outer_names(opset):
    session = refquant.Session(_if_model(opset))
    x = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(session.run(None, {"c": np.array(True), "x": x})[0], x + 1)
    np.testing.assert_array_equal(session.run(None, {"c": np.array(False), "x": x})[0], x * 3)


def test_if_branches_may_differ_in_shape():
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [_vi("t")])
    other = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["e"], axis=0)], "else", [], [_vi("e")])
    node = helper.make_node("If", ["c"], ["y"], name="if1", then_branch=then, else_branch=other)
    session = refquant.Session(_model([node], [_vi("c", B, []), _vi("x", F, [2])], [_vi("y", F, [None])]))
    x = np.array([1, 2], np.float32)
    assert session.run(None, {"c": np.array(True), "x": x})[0].shape == (2,)
    assert session.run(None, {"c": np.array(False), "x": x})[0].shape == (4,)


def _loop_body(extra_nodes=(), scan_name="s"):
    """body(i, cond, acc) -> (cond, acc + x, acc + x as a scan output); x is an outer-scope name."""
    nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("Add", ["acc", "x"], ["acc_out"], name="add3"),
        helper.make_node("Identity", ["acc_out"], [scan_name]),
        *extra_nodes,
    ]
    return helper.make_graph(nodes, "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("acc", F, [2])],
                             [_vi("cond_out", B, []), _vi("acc_out", F, [2]), _vi(scan_name, F, [2])])


def _loop_model(body, with_trip=True, with_cond=True):
    node = helper.make_node("Loop", ["M" if with_trip else "", "c" if with_cond else "", "a0"], ["a", "scan"],
                            name="loop1", body=body)
    return _model([node], [_vi("M", I64, []), _vi("c", B, []), _vi("a0", F, [2]), _vi("x", F, [None])],
                  [_vi("a", F, [2]), _vi("scan", F, [None, 2])])


def _loop_feeds(m, c=True):
    return {"M": np.array(m, np.int64), "c": np.array(c), "a0": np.zeros(2, np.float32),
            "x": np.array([1, 2], np.float32)}


def test_loop_carries_values_and_stacks_scan_outputs():
    a, scan = refquant.Session(_loop_model(_loop_body())).run(None, _loop_feeds(3))
    np.testing.assert_array_equal(a, [3, 6])
    np.testing.assert_array_equal(scan, [[1, 2], [2, 4], [3, 6]])


@pytest.mark.parametrize("m, c", [(0, True), (5, False)], ids=["zero-trip-count", "cond-false-at-start"])
def test_loop_with_zero_iterations_returns_the_initial_values_and_empty_scans(m, c):
    a, scan = refquant.Session(_loop_model(_loop_body())).run(None, _loop_feeds(m, c))
    np.testing.assert_array_equal(a, [0, 0])
    assert scan.shape == (0, 2) and scan.dtype == np.float32  # the body's declared output shape [2]


def test_loop_stops_when_the_body_says_so():
    # cond_out = i < 2: three iterations (i = 0, 1, 2), M absent
    body = _loop_body()
    body.node[0].CopyFrom(helper.make_node("Less", ["i", "two"], ["cond_out"]))
    body.initializer.append(_const("two", np.int64(2)))
    a, scan = refquant.Session(_loop_model(body, with_trip=False)).run(None, _loop_feeds(0))
    np.testing.assert_array_equal(a, [3, 6])
    assert scan.shape == (3, 2)


def test_a_loop_without_bound_is_stopped_by_the_work_budget():
    session = refquant.Session(_loop_model(_loop_body(), with_trip=False), limits=refquant.Limits(max_work=50_000))
    with pytest.raises(ResourceLimitError, match="Loop 'loop1': 51 iterations of body"):
        session.run(None, _loop_feeds(0))


def test_an_error_inside_a_body_names_the_path():
    feeds = _loop_feeds(2) | {"x": np.array([1, 2, 3], np.float32)}  # [2] + [3] does not broadcast
    session = refquant.Session(_loop_model(_loop_body()))
    with pytest.raises(NodeError, match=r"^Loop 'loop1': body / Add 'add3': "):
        session.run(None, feeds)


def test_nested_loop_in_if_reads_names_two_levels_out():
    loop = helper.make_node("Loop", ["M", "", "a0"], ["t", "ts"], name="loop1", body=_loop_body())
    then = helper.make_graph([loop], "then", [], [_vi("t", F, [2]), _vi("ts", F, [None, 2])])
    other = helper.make_graph([helper.make_node("Identity", ["a0"], ["e"]),
                               helper.make_node("Identity", ["a0"], ["e0"])], "else", [],
                              [_vi("e", F, [2]), _vi("e0", F, [2])])
    node = helper.make_node("If", ["c"], ["y", "ys"], name="if1", then_branch=then, else_branch=other)
    model = _model([node], [_vi("M", I64, []), _vi("c", B, []), _vi("a0", F, [2]), _vi("x", F, [None])],
                   [_vi("y", F, [2]), _vi("ys", F, None)])
    y, ys = refquant.Session(model).run(None, _loop_feeds(2))
    np.testing.assert_array_equal(y, [2, 4])
    assert ys.shape == (2, 2)
    feeds = _loop_feeds(2) | {"x": np.array([1, 2, 3], np.float32)}
    with pytest.raises(NodeError, match=r"^If 'if1': then_branch / Loop 'loop1': body / Add 'add3': "):
        refquant.Session(model).run(None, feeds)


def test_an_outer_name_nobody_defines_is_refused_when_the_model_loads():
    body = _loop_body()
    body.node[1].input[1] = "nowhere"
    with pytest.raises(ModelError, match="nowhere"):
        refquant.Session(_loop_model(body))


def test_a_value_read_only_by_a_subgraph_is_kept_until_the_subgraph_has_run():
    # x2 = x * 1 is computed before the Loop and read only inside its body
    body = _loop_body()
    body.node[1].input[1] = "x2"
    model = _loop_model(body)
    model.graph.node.insert(0, helper.make_node("Mul", ["x", "one"], ["x2"]))
    model.graph.initializer.append(_const("one", np.float32(1)))
    a, _ = refquant.Session(model).run(None, _loop_feeds(2))
    np.testing.assert_array_equal(a, [2, 4])


def _scan_model(in_dir=0, out_dir=0, in_axis=0, out_axis=0):
    """Cumulative sum of the rows of x (a state), each partial sum a scan output."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s", "row"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y"])],
        "body", [_vi("s", F, [2]), _vi("row", F, [2])], [_vi("s_out", F, [2]), _vi("y", F, [2])])
    node = helper.make_node("Scan", ["s0", "x"], ["s", "ys"], name="scan1", body=body, num_scan_inputs=1,
                            scan_input_directions=[in_dir], scan_output_directions=[out_dir],
                            scan_input_axes=[in_axis], scan_output_axes=[out_axis])
    return _model([node], [_vi("s0", F, [2]), _vi("x", F, None)], [_vi("s", F, [2]), _vi("ys", F, None)])


X = np.array([[1, 10], [2, 20], [3, 30]], np.float32)


@pytest.mark.parametrize(
    "in_dir, out_dir, want",
    [
        (0, 0, [[1, 10], [3, 30], [6, 60]]),
        (1, 0, [[3, 30], [5, 50], [6, 60]]),
        (0, 1, [[6, 60], [3, 30], [1, 10]]),
        (1, 1, [[6, 60], [5, 50], [3, 30]]),
    ],
)
def test_scan_directions(in_dir, out_dir, want):
    s, ys = refquant.Session(_scan_model(in_dir, out_dir)).run(None, {"s0": np.zeros(2, np.float32), "x": X})
    np.testing.assert_array_equal(s, [6, 60])
    np.testing.assert_array_equal(ys, want)


def test_scan_axes():
    s, ys = refquant.Session(_scan_model(in_axis=1, out_axis=1)).run(
        None, {"s0": np.zeros(2, np.float32), "x": np.ascontiguousarray(X.T)})
    np.testing.assert_array_equal(s, [6, 60])
    np.testing.assert_array_equal(ys, np.array([[1, 10], [3, 30], [6, 60]], np.float32).T)


def test_scan_of_length_zero():
    s, ys = refquant.Session(_scan_model()).run(None, {"s0": np.ones(2, np.float32), "x": np.zeros((0, 2), np.float32)})
    np.testing.assert_array_equal(s, [1, 1])
    assert ys.shape == (0, 2)
