"""The refquant command: run, ops, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T

from refquant import cli

from .helpers import single_node_model


@pytest.fixture
def q_model_path(tmp_path):
    model = single_node_model(
        "QuantizeLinear",
        {"x": (T.FLOAT, ["batch", 4]), "s": np.array(0.5, np.float32), "zp": np.array(10, np.uint8)},
        {"y": T.UINT8},
        opset=13,
        initializers={"s": np.array(0.5, np.float32), "zp": np.array(10, np.uint8)},
    )
    path = tmp_path / "q.onnx"
    onnx.save(model, path)
    return path


def test_run_with_random_inputs_prints_outputs(q_model_path, capsys):
    assert cli.main(["run", str(q_model_path), "--seed", "3", "--dim", "batch=2"]) == 0
    out = capsys.readouterr().out
    assert "input  x: float32 [2, 4] (random)" in out
    assert "output y: uint8 [2, 4]" in out


def test_run_is_reproducible_and_saves(q_model_path, tmp_path, capsys):
    for name in ("a", "b"):
        assert cli.main(["run", str(q_model_path), "--seed", "7", "--save", str(tmp_path / name)]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "y.npy"), np.load(tmp_path / "b" / "y.npy"))
    x = np.load(tmp_path / "a" / "input_x.npy")
    expected = np.clip(np.rint(x / np.float32(0.5)) + 10, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "y.npy"), expected)


def test_run_with_given_input(q_model_path, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([[1.0, -1.0, 1000.0, -1000.0]], np.float32))
    assert cli.main(["run", str(q_model_path), "--input", f"x={tmp_path / 'x.npy'}", "--save", str(tmp_path / "o")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "y.npy"), [[12, 8, 255, 0]])
    assert "at type limits 2/4" in capsys.readouterr().out


def test_errors_are_one_line_on_stderr(q_model_path, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float64))
    assert cli.main(["run", str(q_model_path), "--input", f"x={tmp_path / 'x.npy'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("refquant: error: input 'x' has dtype float64") and err.count("\n") == 1
    assert cli.main(["run", str(tmp_path / "missing.onnx")]) == 1
    assert "cannot read model file" in capsys.readouterr().err
    assert cli.main(["run", str(q_model_path), "--input", "x"]) == 1
    assert "NAME=VALUE" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "refquant.cli", "--debug", "run", str(tmp_path / "missing.onnx")],
        capture_output=True, text=True,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr and "ModelError" in result.stderr


def test_ops_lists_every_supported_op(capsys):
    import refquant

    assert cli.main(["ops"]) == 0
    out = capsys.readouterr().out
    for domain, op, version in refquant.supported_ops():
        line = next(l for l in out.splitlines() if l.split()[1] == op and l.split()[0] == (domain or "ai.onnx"))
        assert str(version) in line


# -- refquant compare on a model onnxruntime.quantization wrote ---------------------------------------


def _float_cnn_opset17() -> onnx.ModelProto:
    """Conv(3 -> 8, bias)-Relu at opset 17: quantize_static keeps the opset (QDQ at 17). Deeper CNNs meet
    other, unexplained differences on some hosts (ort-cpu-opt's fused MaxPool, OpenVINO's int8 Conv on AVX2)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "b1": rng.normal(0, 0.1, 8).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["y"], name="relu1"),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_compare_on_a_clean_ort_qdq_model_exits_0_with_onnx_reference_unsupported(tmp_path, capsys):
    """onnx.reference has no DequantizeLinear below opset 19: it refuses the model (unsupported, with the
    reason), which is no difference, so the default backends exit 0."""
    import json

    quantization = pytest.importorskip("onnxruntime.quantization")

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self._batches = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self._batches, None)

    onnx.save(_float_cnn_opset17(), tmp_path / "float.onnx")
    quantization.quantize_static(
        str(tmp_path / "float.onnx"), str(tmp_path / "qdq.onnx"), Reader(), quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
    )
    quantized = onnx.load(tmp_path / "qdq.onnx")
    assert {o.version for o in quantized.opset_import if o.domain in ("", "ai.onnx")} == {17}
    assert "DequantizeLinear" in {n.op_type for n in quantized.graph.node}

    assert cli.main(["compare", str(tmp_path / "qdq.onnx"), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("onnx-reference:"))
    assert row.startswith("onnx-reference: unsupported (") and "DequantizeLinear" in row and "opset 17" in row
    results = {r["backend"]: r for r in json.loads((tmp_path / "c.json").read_text())}
    onnx_reference = results["onnx-reference"]
    assert onnx_reference["status"] == onnx_reference["verdict"] == "unsupported"
    assert "no DequantizeLinear for ai.onnx opset 17" in onnx_reference["message"]
    assert "ort-cpu" in results and all(r["verdict"] not in ("unexplained", "error") for r in results.values())
