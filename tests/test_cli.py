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
