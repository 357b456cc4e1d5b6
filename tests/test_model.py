"""Loading, validation, feeds and the errors for bad models: each names what is wrong."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.errors import (
    ExternalDataError,
    FeedError,
    ModelError,
    OpsetError,
    RefquantError,
    UnsupportedOpError,
)

from .helpers import single_node_model


def dq_graph_model(opset=13):
    """x (uint8, [N, 3]) -> DequantizeLinear(scale, zp initializers) -> y."""
    return single_node_model(
        "DequantizeLinear",
        {"x": (T.UINT8, ["N", 3]), "s": np.array(0.5, np.float32), "zp": np.array(2, np.uint8)},
        {"y": T.FLOAT},
        opset=opset,
        initializers={"s": np.array(0.5, np.float32), "zp": np.array(2, np.uint8)},
    )


def test_path_bytes_and_proto_give_the_same_result(tmp_path):
    model = dq_graph_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = np.array([[0, 2, 255]], np.uint8)
    expected = np.array([[-1.0, 0.0, 126.5]], np.float32)
    for source in (model, model.SerializeToString(), str(path), path):
        (y,) = refquant.Session(source).run(None, {"x": x})
        np.testing.assert_array_equal(y, expected)


def test_run_all_returns_every_tensor():
    everything = refquant.Session(dq_graph_model()).run_all({"x": np.zeros((2, 3), np.uint8)})
    assert set(everything) == {"x", "s", "zp", "y"}


def test_unknown_output_name():
    with pytest.raises(FeedError, match=r"unknown output name\(s\) \['z'\]"):
        refquant.Session(dq_graph_model()).run(["z"], {"x": np.zeros((1, 3), np.uint8)})


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "not a valid ONNX model"),
        (b"\x08\x07\x12\x03abc garbage \xff\xff\xff", "not a valid ONNX model"),
        (b"hello world, not onnx", "not a valid ONNX model"),
    ],
)
def test_non_onnx_bytes(data, match):
    with pytest.raises(ModelError, match=match):
        refquant.Session(data)


def test_truncated_model_bytes():
    data = dq_graph_model().SerializeToString()
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        refquant.Session(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="cannot read model file"):
        refquant.Session(tmp_path / "absent.onnx")


def test_opset_below_10_is_refused_with_advice():
    model = dq_graph_model()
    model.opset_import[0].version = 9
    with pytest.raises(OpsetError, match=r"opset 9; refquant needs opset >= 10.*Re-export"):
        refquant.Session(model)


def test_opset_newer_than_known_is_refused():
    model = dq_graph_model()
    model.opset_import[0].version = 99
    with pytest.raises(OpsetError, match="knows the semantics up to opset 28"):
        refquant.Session(model)


def test_unsupported_op_names_domain_op_and_version():
    model = single_node_model("Softplus", {"x": (T.FLOAT, [2])}, {"y": T.FLOAT}, opset=13)
    model.graph.node[0].name = "soft"
    with pytest.raises(UnsupportedOpError, match=r"Softplus 'soft': no refquant kernel for ai.onnx::Softplus at opset 13"):
        refquant.Session(model)


def test_custom_domain_op_is_unsupported():
    model = single_node_model("Mystery", {"x": (T.FLOAT, [2])}, {"y": T.FLOAT}, opset=13, domain="com.example")
    with pytest.raises(UnsupportedOpError, match="com.example::Mystery"):
        refquant.Session(model)


def test_input_nobody_produces():
    model = dq_graph_model()
    del model.graph.initializer[:]  # s and zp are now undefined
    with pytest.raises(ModelError, match=r"DequantizeLinear '#0': input 's' is not a graph input, an initializer"):
        refquant.Session(model)


def test_graph_output_nobody_produces():
    model = dq_graph_model()
    model.graph.output.append(helper.make_tensor_value_info("ghost", T.FLOAT, None))
    with pytest.raises(ModelError, match="graph output 'ghost' is not produced"):
        refquant.Session(model)


def test_nodes_out_of_order_are_sorted_and_cycles_refused():
    a = helper.make_node("Relu", ["h"], ["y"], name="second")
    b = helper.make_node("Relu", ["x"], ["h"], name="first")
    graph = helper.make_graph(
        [a, b], "g", [helper.make_tensor_value_info("x", T.FLOAT, [2])], [helper.make_tensor_value_info("y", T.FLOAT, [2])]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    try:
        session = refquant.Session(model)
    except UnsupportedOpError:
        pytest.skip("Relu not registered yet")
    np.testing.assert_array_equal(session.run(None, {"x": np.array([-1, 2], np.float32)})[0], [0, 2])
    b.input[0] = "y"  # first now consumes second's output: a cycle
    model = helper.make_model(
        helper.make_graph([a, b], "g", [], [helper.make_tensor_value_info("y", T.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    with pytest.raises(ModelError, match="cycle"):
        refquant.Session(model)


def test_output_produced_twice():
    n1 = helper.make_node("DequantizeLinear", ["x", "s"], ["y"], name="a")
    n2 = helper.make_node("DequantizeLinear", ["x", "s"], ["y"], name="b")
    graph = helper.make_graph(
        [n1, n2],
        "g",
        [helper.make_tensor_value_info("x", T.UINT8, [1])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1])],
        [numpy_helper.from_array(np.array(1, np.float32), "s")],
    )
    with pytest.raises(ModelError, match="also produced by DequantizeLinear 'a'"):
        refquant.Session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_corrupt_initializer_is_named():
    model = dq_graph_model()
    model.graph.initializer[0].raw_data = b"\x00\x01"  # 2 bytes for a float32 scalar
    with pytest.raises(ModelError, match="initializer 's' cannot be decoded"):
        refquant.Session(model)


# -- feeds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "feeds, match",
    [
        ({}, r"missing input\(s\) \['x'\]"),
        ({"x": np.zeros((1, 3), np.uint8), "extra": np.zeros(1)}, r"unknown input\(s\) \['extra'\]"),
        ({"x": np.zeros((1, 3), np.int8)}, "input 'x' has dtype int8, the model declares uint8"),
        ({"x": np.zeros(3, np.uint8)}, r"input 'x' has rank 1 .* declares rank 2 \[N, 3\]"),
        ({"x": np.zeros((1, 4), np.uint8)}, r"dimension 1 must be 3"),
    ],
)
def test_bad_feeds(feeds, match):
    with pytest.raises(FeedError, match=match):
        refquant.Session(dq_graph_model()).run(None, feeds)


def test_feeds_must_be_a_mapping():
    with pytest.raises(FeedError, match="feeds must be a mapping"):
        refquant.Session(dq_graph_model()).run(None, [np.zeros((1, 3), np.uint8)])


def test_symbolic_dims_accept_any_size():
    (y,) = refquant.Session(dq_graph_model()).run(None, {"x": np.zeros((5, 3), np.uint8)})
    assert y.shape == (5, 3)


def test_initializer_listed_as_input_can_be_overridden():
    model = dq_graph_model()
    model.graph.input.append(helper.make_tensor_value_info("s", T.FLOAT, []))
    session = refquant.Session(model)
    assert [i.name for i in session.inputs] == ["x"]
    (y,) = session.run(None, {"x": np.full((1, 3), 3, np.uint8), "s": np.array(2.0, np.float32)})
    np.testing.assert_array_equal(y, [[2.0, 2.0, 2.0]])


# -- external data ----------------------------------------------------------------------


def _save_external(model, directory, location="weights.bin"):
    onnx.save(model, directory / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=0)
    return directory / "m.onnx"


def test_external_data_is_loaded(tmp_path):
    path = _save_external(dq_graph_model(), tmp_path)
    assert (tmp_path / "weights.bin").exists()
    (y,) = refquant.Session(path).run(None, {"x": np.array([[4, 4, 4]], np.uint8)})
    np.testing.assert_array_equal(y, [[1.0, 1.0, 1.0]])


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_escaping_the_model_directory_is_refused(tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(b"\x00" * 8)
    inner = tmp_path / "model"
    inner.mkdir()
    path = _save_external(dq_graph_model(), inner)
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, path)
    with pytest.raises(ExternalDataError, match="resolves outside the model's directory"):
        refquant.Session(path)


def test_external_data_file_missing(tmp_path):
    path = _save_external(dq_graph_model(), tmp_path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ExternalDataError, match="cannot read external data 'weights.bin'"):
        refquant.Session(path)


def test_external_data_from_bytes_is_refused(tmp_path):
    path = _save_external(dq_graph_model(), tmp_path)
    with pytest.raises(ExternalDataError, match="load the model from its path"):
        refquant.Session(path.read_bytes())


def test_external_data_too_short(tmp_path):
    path = _save_external(dq_graph_model(), tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"\x00")
    with pytest.raises(ExternalDataError, match="expected"):
        refquant.Session(path)


def test_every_error_is_a_refquant_error():
    for cls in (ModelError, OpsetError, ExternalDataError, UnsupportedOpError, FeedError):
        assert issubclass(cls, RefquantError)


def test_unknown_profile():
    with pytest.raises(RefquantError, match="unknown profile 'fast'"):
        refquant.Session(dq_graph_model(), profile="fast")


def test_profile_option_validation():
    with pytest.raises(RefquantError, match="unknown profile option"):
        refquant.get_profile("spec").with_options(rounding="up")
    with pytest.raises(RefquantError, match="nan='maybe' is not one of"):
        refquant.get_profile("spec").with_options(nan="maybe")


def test_zero_dimensional_outputs_are_arrays():
    init = {"s": np.array(0.5, np.float32), "zp": np.array(2, np.uint8)}
    model = single_node_model("QuantizeLinear", {"x": (T.FLOAT, []), **init}, {"y": T.UINT8}, opset=13, initializers=init)
    (y,) = refquant.Session(model).run(None, {"x": np.array(1.0, np.float32)})
    assert isinstance(y, np.ndarray) and y.shape == () and y == 4
