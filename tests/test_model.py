"""Loading, validation, feeds and the errors for bad models: each names what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
import refquant.model
from refquant.errors import (
    ExternalDataError,
    FeedError,
    ModelError,
    OpsetError,
    RefquantError,
    UnsupportedOpError,
)

from .helpers import dq_graph_model, single_node_model


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
    # Swish begins at opset 24: at 13 there is no kernel, whatever refquant implements later
    model = single_node_model("Swish", {"x": (T.FLOAT, [2])}, {"y": T.FLOAT}, opset=13)
    model.graph.node[0].name = "soft"
    with pytest.raises(UnsupportedOpError, match=r"Swish 'soft': no refquant kernel for ai.onnx::Swish at opset 13"):
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


def test_read_model_resolves_external_data_and_checks_nothing_else(tmp_path):
    """read_model (what the judge's engines get) resolves by the one rule; load_model adds the structure checks."""
    model = dq_graph_model()
    model.opset_import[0].version = 9  # before the quantization operators: load_model refuses it
    path = _save_external(model, tmp_path)
    read = refquant.model.read_model(path)
    (s,) = [t for t in read.graph.initializer if t.name == "s"]
    assert s.data_location == T.DEFAULT and not s.external_data
    assert numpy_helper.to_array(s).dtype == np.float32 and numpy_helper.to_array(s) == 0.5
    with pytest.raises(OpsetError, match="refquant needs opset >= 10"):
        refquant.model.load_model(path)
    escaping = onnx.load(path, load_external_data=False)
    for tensor in escaping.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"  # tmp_path/weights.bin, seen from tmp_path/inner
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "m.onnx").write_bytes(escaping.SerializeToString())
    with pytest.raises(ExternalDataError, match="resolves outside the model's directory"):
        refquant.model.read_model(tmp_path / "inner" / "m.onnx")


def test_external_data_file_missing(tmp_path):
    path = _save_external(dq_graph_model(), tmp_path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ExternalDataError, match=r"initializer 's': external data '.*weights.bin': No such file"):
        refquant.Session(path)


def test_external_data_from_bytes_is_refused(tmp_path):
    path = _save_external(dq_graph_model(), tmp_path)
    with pytest.raises(ExternalDataError, match="load the model from its path"):
        refquant.Session(path.read_bytes())


def test_external_data_too_short(tmp_path):
    path = _save_external(dq_graph_model(), tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"\x00")
    with pytest.raises(ExternalDataError, match=r"weights.bin. holds 1 bytes; offset 0 and length 4 reach past its end"):
        refquant.Session(path)


def test_a_bound_node_carries_its_kernel_and_an_empty_cache_for_the_kernel():
    """The session binds each node to the registry's kernel for its opset; node.cache is the kernel's alone."""
    (node,) = refquant.Session(dq_graph_model(opset=13))._plan
    assert (node.version, node.kernel) == refquant.registry.lookup("", "DequantizeLinear", 13)
    assert node.version == 13 and node.cache == {}


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


# -- one resolver, one rule, for every tensor a model carries (spec/model.md "External data") -----------

SECRET = b"TOP-SECRET-CONTENT"


def _externalized(tensor, location="../secret.txt", **entries):
    """``tensor`` marked as stored in ``location`` (its inline data dropped)."""
    tensor.ClearField("raw_data")
    tensor.data_location = T.EXTERNAL
    del tensor.external_data[:]
    for key, value in {"location": location, **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return tensor


def _sparse(location):
    values = _externalized(numpy_helper.from_array(np.array([1.0], np.float32), "sp"), location)
    return helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([0], np.int64)), [2])


def _tensor(location):
    return _externalized(numpy_helper.from_array(np.array([1.0], np.float32), "t"), location)


def _carrying(slot, location):
    """dq_graph_model with one externally stored tensor in ``slot``; (model, the label the error names)."""
    model = dq_graph_model()
    graph = model.graph
    if slot == "initializer":
        _externalized(graph.initializer[0], location)
        return model, "initializer 's'"
    if slot == "sparse initializer":
        graph.sparse_initializer.append(_sparse(location))
        return model, "sparse initializer 'sp' (values)"
    if slot == "TENSOR attribute":
        graph.node.append(helper.make_node("Constant", [], ["c"], name="c", value=_tensor(location)))
        return model, "Constant 'c' attribute 'value'"
    if slot == "TENSORS attribute":
        node = helper.make_node("Constant", [], ["c"], name="c")
        node.attribute.append(helper.make_attribute("value", [_tensor(location)]))
        graph.node.append(node)
        return model, "Constant 'c' attribute 'value' tensor 0"
    if slot == "SPARSE_TENSOR attribute":
        graph.node.append(helper.make_node("ConstantOfShape", ["x"], ["c"], name="c", value=_sparse(location)))
        return model, "ConstantOfShape 'c' attribute 'value' (values)"
    if slot == "subgraph":
        output = helper.make_tensor_value_info("t", T.FLOAT, [1])
        body = helper.make_graph([], "then", [], [output], [_tensor(location)])
        graph.node.append(helper.make_node("If", ["x"], ["c"], name="i", then_branch=body, else_branch=body))
        return model, "If 'i' attribute 'else_branch' subgraph: initializer 't'"  # make_node sorts attributes
    assert slot == "function"
    model.functions.append(helper.make_function(
        "local", "f", [], ["c"], [helper.make_node("Constant", [], ["c"], value=_tensor(location))],
        [helper.make_opsetid("", 13)],
    ))
    return model, "function 'f': Constant '#0' attribute 'value'"


SLOTS = ["initializer", "sparse initializer", "TENSOR attribute", "TENSORS attribute", "SPARSE_TENSOR attribute",
         "subgraph", "function"]


@pytest.mark.parametrize("slot", SLOTS)
def test_every_tensor_slot_is_refused_outside_the_model_folder(tmp_path, slot):
    (tmp_path / "secret.txt").write_bytes(SECRET)
    inner = tmp_path / "model"
    inner.mkdir()
    model, label = _carrying(slot, "../secret.txt")
    onnx.save(model, inner / "m.onnx")
    with pytest.raises(ExternalDataError, match="resolves outside the model's directory") as caught:
        refquant.Session(inner / "m.onnx")
    assert str(caught.value).startswith(label) and SECRET.decode() not in str(caught.value)


@pytest.mark.parametrize("slot", SLOTS)
def test_bytes_and_protos_may_not_reference_external_data_even_in_the_working_directory(tmp_path, monkeypatch, slot):
    """onnx would resolve a plain 'secret.txt' against the current directory; refquant reads nothing."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    model, label = _carrying(slot, "secret.txt")
    for source in (model.SerializeToString(), model):
        with pytest.raises(ExternalDataError, match="no folder to read it from") as caught:
            refquant.Session(source)
        assert str(caught.value).startswith(label) and SECRET.decode() not in str(caught.value)


@pytest.mark.parametrize("slot", SLOTS)
def test_every_tensor_slot_is_read_from_inside_the_model_folder(tmp_path, slot):
    model, label = _carrying(slot, "data.bin")
    (tmp_path / "data.bin").write_bytes(np.array([7.0], np.float32).tobytes())
    onnx.save(model, tmp_path / "m.onnx")
    tensors = {where: t for t, where in refquant.model._model_tensors(refquant.model.load_model(tmp_path / "m.onnx"))}
    assert not any(t.data_location == T.EXTERNAL for t in tensors.values())
    assert numpy_helper.to_array(tensors[label]).ravel().tolist() == [7.0]


@pytest.mark.parametrize(
    "entries, match",
    [
        ({"offset": 8}, "holds 4 bytes; offset 8 and length -4 reach past its end"),
        ({"offset": -1, "length": 4}, "offset -1 and length 4 reach past its end"),
        ({"offset": 2, "length": 4}, "offset 2 and length 4 reach past its end"),
        ({"length": 10**12}, "holds 4 bytes"),
        ({"length": "4k"}, "offset/length are not integers"),
    ],
)
def test_external_offset_and_length_are_checked_against_the_file_size(tmp_path, entries, match):
    model = dq_graph_model()
    _externalized(model.graph.initializer[0], "w.bin", **entries)
    (tmp_path / "w.bin").write_bytes(np.float32(0.5).tobytes())
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ExternalDataError, match=match):
        refquant.Session(tmp_path / "m.onnx")


def test_external_data_without_a_length_reads_to_the_end_of_the_file(tmp_path):
    model = dq_graph_model()
    _externalized(model.graph.initializer[0], "w.bin", offset=4)
    (tmp_path / "w.bin").write_bytes(b"pad!" + np.float32(0.25).tobytes())
    onnx.save(model, tmp_path / "m.onnx")
    (y,) = refquant.Session(tmp_path / "m.onnx").run(None, {"x": np.array([[6, 6, 6]], np.uint8)})
    np.testing.assert_array_equal(y, [[1.0, 1.0, 1.0]])


@pytest.mark.parametrize("location, match", [(".", "is a directory"), ("sub", "is a directory"),
                                              ("link", "resolves outside"), ("w\0.bin", "contains a NUL byte")])
def test_external_data_must_be_a_regular_file_inside_the_folder(tmp_path, location, match):
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to("/dev/zero")
    model = dq_graph_model()
    _externalized(model.graph.initializer[0], location)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ExternalDataError, match=match):
        refquant.Session(tmp_path / "m.onnx")


def _load_in_subprocess(path) -> subprocess.CompletedProcess:
    """Load ``path`` in a child with a timeout: a regression that blocks fails the test instead of hanging it."""
    code = (
        "import sys, refquant\n"
        "try:\n    refquant.Session(sys.argv[1])\n"
        "except refquant.errors.RefquantError as exc:\n    print(type(exc).__name__, exc); sys.exit(1)\n"
    )
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_external_data_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "w.bin")
    model = dq_graph_model()
    _externalized(model.graph.initializer[0], "w.bin", length=4)
    onnx.save(model, tmp_path / "m.onnx")
    result = _load_in_subprocess(tmp_path / "m.onnx")
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("ExternalDataError initializer 's': external data") and "is a FIFO" in result.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_as_the_model_path_is_refused_before_opening(tmp_path, kind):
    path = tmp_path / "m.onnx"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    result = _load_in_subprocess(path)
    assert result.returncode == 1, result.stderr
    expected = "a FIFO" if kind == "fifo" else "a character device"
    assert result.stdout.startswith(f"ModelError model file '{path}' is {expected}, not a regular file")


def test_a_model_path_with_a_nul_byte_is_an_error():
    with pytest.raises(ModelError, match="cannot read model file .model.x00.onnx.: the path contains a NUL byte"):
        refquant.Session("model\0.onnx")


# -- what refquant refuses rather than guess (spec/model.md "Refused models") ----------------------------


@pytest.mark.parametrize("where", ["input", "output"])
def test_negative_dimensions_are_refused(where):
    model = dq_graph_model()
    value = model.graph.input[0] if where == "input" else model.graph.output[0]
    value.type.tensor_type.shape.Clear()
    for size in (-5, 3):
        value.type.tensor_type.shape.dim.add().dim_value = size
    with pytest.raises(ModelError, match=f"graph {where} '{value.name}' declares dimension 0 as -5"):
        refquant.Session(model)


@pytest.mark.parametrize(
    "declared, match",
    [((T.DOUBLE, []), "initializer 's' has dtype float32, its graph input declares float64"),
     ((T.FLOAT, [2]), r"initializer 's' has shape \(\), its graph input declares \[2\]")],
)
def test_an_initializer_must_match_the_graph_input_it_defaults(declared, match):
    model = dq_graph_model()
    model.graph.input.append(helper.make_tensor_value_info("s", *declared))
    with pytest.raises(ModelError, match=match):
        refquant.Session(model)


def test_duplicate_graph_inputs_initializers_and_attributes_are_refused():
    model = dq_graph_model()
    model.graph.input.append(helper.make_tensor_value_info("x", T.UINT8, ["N", 3]))
    with pytest.raises(ModelError, match=r"graph input\(s\) \['x'\] are declared more than once"):
        refquant.Session(model)
    model = dq_graph_model()
    model.graph.initializer.append(numpy_helper.from_array(np.array(9.0, np.float32), "s"))
    with pytest.raises(ModelError, match=r"initializer\(s\) \['s'\] are declared more than once"):
        refquant.Session(model)
    model = dq_graph_model()
    model.graph.node[0].attribute.extend([helper.make_attribute("axis", 1), helper.make_attribute("axis", 0)])
    with pytest.raises(ModelError, match=r"DequantizeLinear '#0': attribute\(s\) \['axis'\] are given more than once"):
        refquant.Session(model)


@pytest.mark.parametrize("version", [0, 1000])
def test_a_known_domain_at_an_unknown_opset_is_refused(version):
    model = dq_graph_model()
    model.opset_import.append(helper.make_opsetid("com.microsoft", version))
    with pytest.raises(OpsetError, match=f"com.microsoft opset {version}; refquant knows com.microsoft opsets 1 to 1"):
        refquant.Session(model)


def test_a_domain_imported_twice_is_refused():
    model = dq_graph_model()
    model.opset_import.append(helper.make_opsetid("ai.onnx", 17))
    with pytest.raises(OpsetError, match="imports domain 'ai.onnx' more than once"):
        refquant.Session(model)


@pytest.mark.parametrize("ir_version", [0, 2, 15, 99])
def test_ir_versions_refquant_does_not_read_are_refused(ir_version):
    model = dq_graph_model()
    model.ir_version = ir_version
    with pytest.raises(ModelError, match=f"declares IR version {ir_version}; refquant reads IR versions 3 to 14"):
        refquant.Session(model)


# -- attributes (issue 12): out of domain, of the wrong type, or unknown to the op's schema --------------


def _q_model(opset=21, **attrs):
    return single_node_model(
        "QuantizeLinear",
        {"x": (T.FLOAT, [4]), "s": np.array(0.5, np.float32), "zp": np.array(0, np.int8)},
        {"y": T.INT8},
        opset=opset,
        attrs=attrs,
        initializers={"s": np.array(0.5, np.float32), "zp": np.array(0, np.int8)},
    )


def _with_attribute(model, attribute):
    model.graph.node[0].attribute.append(attribute)
    return model


@pytest.mark.parametrize(
    "model, match",
    [
        (_q_model(saturate=5), "QuantizeLinear '#0': saturate must be 0 or 1, got 5"),
        (_q_model(saturate=-1), "QuantizeLinear '#0': saturate must be 0 or 1, got -1"),
        (_q_model(axis=1.0), "QuantizeLinear '#0': attribute 'axis' has type FLOAT, ai.onnx::QuantizeLinear defines it as INT"),
        (_with_attribute(dq_graph_model(), helper.make_attribute("axis", "1")),
         "DequantizeLinear '#0': attribute 'axis' has type STRING, ai.onnx::DequantizeLinear defines it as INT"),
        (_with_attribute(dq_graph_model(), helper.make_attribute("axis", [1])),
         "DequantizeLinear '#0': attribute 'axis' has type INTS, ai.onnx::DequantizeLinear defines it as INT"),
        (_q_model(block_size=2.5), "attribute 'block_size' has type FLOAT"),
        (_q_model(output_dtype="int8"), "attribute 'output_dtype' has type STRING"),
        (_with_attribute(dq_graph_model(), helper.make_attribute("saturate", 1)),
         "DequantizeLinear '#0': attribute 'saturate' is not defined by ai.onnx::DequantizeLinear at opset 13 "
         r"\(its attributes: axis\)"),
        (_q_model(opset=13, saturate=1),
         r"attribute 'saturate' is not defined by ai.onnx::QuantizeLinear at opset 13 \(its attributes: axis\)"),
        (_q_model(my_hint=3), "QuantizeLinear '#0': attribute 'my_hint' is not defined by ai.onnx::QuantizeLinear at "
         "opset 21"),
    ],
)
def test_bad_attributes_are_refused_naming_node_and_attribute(model, match):
    with pytest.raises(refquant.errors.AttributeValueError, match=match):
        refquant.Session(model)


def test_unknown_attribute_on_a_com_microsoft_op_is_refused():
    model = single_node_model(
        "QLinearSigmoid",
        {"x": (T.UINT8, [4]), "xs": np.array(0.1, np.float32), "xz": np.array(0, np.uint8),
         "ys": np.array(0.1, np.float32), "yz": np.array(0, np.uint8)},
        {"y": T.UINT8}, opset=13, domain="com.microsoft", attrs={"alpha": 0.5},
        initializers={k: v for k, v in {"xs": np.array(0.1, np.float32), "xz": np.array(0, np.uint8),
                                       "ys": np.array(0.1, np.float32), "yz": np.array(0, np.uint8)}.items()},
    )
    with pytest.raises(refquant.errors.AttributeValueError,
                       match=r"QLinearSigmoid '#0': attribute 'alpha' is not defined by com.microsoft::QLinearSigmoid "
                             r"at opset 1 \(its attributes: none\)"):
        refquant.Session(model)


def test_flags_0_and_1_and_schema_attributes_are_accepted():
    x = np.array([0.0, 1.0, 2.5, -3.0], np.float32)
    for saturate in (0, 1):
        y, = refquant.Session(_q_model(saturate=saturate, axis=0)).run(None, {"x": x})
        assert y.tolist() == [0, 2, 5, -6]


def test_the_com_microsoft_attribute_table_is_onnxruntime_s():
    """refquant.node.MS_ATTRIBUTES (contrib schemas are not in onnx.defs) equals onnxruntime's schemas."""
    pybind = pytest.importorskip("onnxruntime.capi.onnxruntime_pybind11_state")
    from refquant.node import MS_ATTRIBUTES

    theirs = {
        s.name: {name: int(a.type) for name, a in s.attributes.items()}
        for s in pybind.get_all_operator_schema()
        if s.domain == "com.microsoft" and s.name in MS_ATTRIBUTES
    }
    assert theirs == MS_ATTRIBUTES


def test_flag_attributes_are_ints_wherever_a_registered_op_defines_them():
    from onnx import AttributeProto, defs

    from refquant.node import FLAG_ATTRIBUTES, MS_ATTRIBUTES
    from refquant.registry import supported_ops

    seen = set()
    for domain, op, version in supported_ops():
        known = MS_ATTRIBUTES[op] if domain else {n: int(a.type) for n, a in defs.get_schema(op, version, "").attributes.items()}
        for name in FLAG_ATTRIBUTES & set(known):
            assert known[name] == AttributeProto.INT, (op, name)
            seen.add(name)
    assert seen == FLAG_ATTRIBUTES


# -- graph outputs (issue 12): a computed output must have the declared type and rank --------------------


def _dq_declaring(elem_type, shape):
    model = dq_graph_model()
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("y", elem_type, shape))
    return model


@pytest.mark.parametrize(
    "elem_type, shape, match",
    [
        (T.INT8, None, r"graph output 'y' \(computed by DequantizeLinear '#0'\) has dtype float32, the model declares "
                       r"int8 \(int8\)"),
        (T.FLOAT16, ["N", 3], "has dtype float32, the model declares float16"),
        (T.FLOAT, ["N"], r"graph output 'y' \(computed by DequantizeLinear '#0'\) has shape \[2, 3\], the model "
                         r"declares \[N\]"),
        (T.FLOAT, ["N", 3, 1], r"has shape \[2, 3\], the model declares \[N, 3, 1\]"),
    ],
)
def test_outputs_contradicting_their_declaration_are_refused(elem_type, shape, match):
    session = refquant.Session(_dq_declaring(elem_type, shape))
    with pytest.raises(ModelError, match=match):
        session.run(None, {"x": np.zeros((2, 3), np.uint8)})
    with pytest.raises(ModelError, match=match):
        session.run_all({"x": np.zeros((2, 3), np.uint8)})


@pytest.mark.parametrize("shape", [None, ["N", "M"], [2, 3], [None, 3], [0, 3], [3, 3], ["N", 5]])
def test_outputs_matching_their_declaration_or_free_dims_are_accepted(shape):
    """Declared sizes are the exporter's claim (onnx's shape inference sizes ceil_mode pools differently):
    [3, 3] and [N, 5] against a computed [2, 3] run, with refquant's shape."""
    model = _dq_declaring(T.FLOAT, shape)
    if shape and shape[0] is None:
        model.graph.output[0].type.tensor_type.shape.dim[0].Clear()
    y, = refquant.Session(model).run(None, {"x": np.zeros((2, 3), np.uint8)})
    assert y.shape == (2, 3)
