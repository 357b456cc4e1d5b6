"""One model loader for both sides of a comparison: the judge reads every model as refquant does.

A model whose external data leaves its folder is refused by refquant and by every engine adapter with the
same message (the interpreter's ExternalDataError, named by the backend); a legal external-data model runs
on each of them from its path, with the stored weights, and no engine is ever handed a path to resolve.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
import refquant.backends as backends
from refquant.backends.base import BackendError, load_model
from refquant.errors import ExternalDataError, OpsetError

#: the engines compared here: the interpreter itself, onnx's evaluator and onnxruntime's CPU provider
ENGINES = ("reference", "onnx-reference", "ort-cpu")

W = np.array([0.5, -1.25, 3.0, 1024.0], np.float32)  # the externally stored initializer
X = np.array([1.0, 2.0, -3.0, 0.25], np.float32)


def _add_model() -> onnx.ModelProto:
    """y = x + w with w an initializer (what gets stored externally)."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", T.FLOAT, [4])],
        [helper.make_tensor_value_info("y", T.FLOAT, [4])],
        [numpy_helper.from_array(W, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _pointing_at(location: str, *, length: int | None = None) -> onnx.ModelProto:
    """The Add model whose w is stored in ``location`` (offset 0)."""
    model = _add_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = T.EXTERNAL
    entries = {"location": location, "offset": "0", **({"length": str(length)} if length is not None else {})}
    for key, value in entries.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    return model


def _engine(name: str):
    if name.startswith("ort-"):
        pytest.importorskip("onnxruntime")
    backend = backends.create(name)
    if not backend.availability():
        pytest.skip(f"{name} is not available here")
    return backend


def _escaping(tmp_path, how: str):
    """model.onnx in tmp_path/model whose w lies outside that folder, reached by ``how``."""
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(W.tobytes())
    if how == "parent":
        location = "../secret.bin"
    elif how == "absolute":
        location = str(secret)
    else:  # a symlink inside the folder that leads out of it
        os.symlink(secret, folder / "link.bin")
        location = "link.bin"
    path = folder / "model.onnx"
    path.write_bytes(_pointing_at(location).SerializeToString())
    return path, location


@pytest.mark.parametrize("how", ["parent", "absolute", "symlink"])
@pytest.mark.parametrize("engine", ENGINES)
def test_external_data_escaping_the_folder_is_refused_alike_by_refquant_and_the_judge(tmp_path, how, engine):
    path, location = _escaping(tmp_path, how)
    with pytest.raises(ExternalDataError) as interpreter:
        refquant.Session(path)
    message = str(interpreter.value)
    assert f"external data location '{location}' resolves outside the model's directory" in message
    backend = _engine(engine)
    with pytest.raises(BackendError) as judged:
        backend.run(path, {"x": X})
    assert str(judged.value) == f"{engine}: cannot load the model: {message}"
    assert isinstance(judged.value.__cause__, ExternalDataError)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_model_proto_with_unresolved_external_data_is_refused_alike(engine):
    """A ModelProto has no folder: its external data is refused, never left to an engine to look up
    (onnxruntime would resolve the location against the working directory)."""
    model = _pointing_at("w.bin")
    with pytest.raises(ExternalDataError) as interpreter:
        refquant.Session(model)
    assert "has no folder to read it from" in str(interpreter.value)
    with pytest.raises(BackendError) as judged:
        _engine(engine).run(model, {"x": X})
    assert str(judged.value) == f"{engine}: cannot load the model: {interpreter.value}"


@pytest.mark.parametrize("stored", ["file", "symlink inside the folder"])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_legal_external_data_model_runs_on_every_side_from_its_path(tmp_path, engine, stored):
    """Legal under the one rule (spec/model.md "External data"), including a symlink that stays in the folder,
    which onnx.load's own resolver refuses: the engines follow refquant's rule, not onnx's."""
    # w sits after 8 bytes of padding: only a reader that honours offset and length finds it
    (tmp_path / "weights.bin").write_bytes(b"\xff" * 8 + W.tobytes() + b"\xff" * 4)
    location = "weights.bin"
    if stored != "file":
        (tmp_path / "sub").mkdir()
        os.symlink("../weights.bin", tmp_path / "sub" / "link.bin")
        location = "sub/link.bin"
    model = _pointing_at(location, length=W.nbytes)
    model.graph.initializer[0].external_data[1].value = "8"  # offset
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    expected = X + W  # float32 sums, exact here: every value is a short binary fraction
    assert expected.tolist() == [1.5, 0.75, 0.0, 1024.25]
    (y,) = refquant.Session(path).run(None, {"x": X})
    np.testing.assert_array_equal(y, expected)
    outputs = _engine(engine).run(path, {"x": X})
    assert list(outputs) == ["y"]
    np.testing.assert_array_equal(outputs["y"], expected)


def test_the_judge_hands_engines_the_resolved_model(tmp_path):
    """What an adapter prepares holds the stored tensor inline: nothing is left for an engine to resolve."""
    (tmp_path / "weights.bin").write_bytes(W.tobytes())
    path = tmp_path / "model.onnx"
    path.write_bytes(_pointing_at("weights.bin").SerializeToString())
    proto = load_model(path, "any")
    (w,) = proto.graph.initializer
    assert w.data_location == T.DEFAULT and not w.external_data
    np.testing.assert_array_equal(numpy_helper.to_array(w), W)


def test_the_judge_leaves_structure_to_the_engines():
    """The judge reads (parse, external data) but does not apply refquant's structural checks: an engine
    may run a model refquant refuses (here opset 9, before the quantization operators), and says so itself."""
    model = _add_model()
    model.opset_import[0].version = 9
    with pytest.raises(OpsetError, match="refquant needs opset >= 10"):
        refquant.Session(model)
    assert load_model(model, "any") is model
    outputs = backends.get("onnx-reference").run(model, {"x": X})
    np.testing.assert_array_equal(outputs["y"], X + W)


def test_what_is_not_a_model_is_a_backend_error_naming_the_backend():
    with pytest.raises(BackendError, match=r"^onnx-reference: cannot load the model: model bytes is not a valid ONNX"):
        backends.get("onnx-reference").run(b"not a model", {})
    with pytest.raises(BackendError, match=r"^any: model must be a path, bytes or onnx.ModelProto, not int$"):
        load_model(3, "any")
