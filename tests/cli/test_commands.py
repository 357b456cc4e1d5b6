"""The refquant command: run, ops, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T

from refquant.cli import commands as cli

from tests.helpers import single_node_model


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


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["frob"], "argument COMMAND: invalid choice: 'frob'"),
        ([], "the following arguments are required: COMMAND"),
        (["run", "m.onnx", "--seed", "abc"], "argument --seed: invalid int value: 'abc' (`refquant run --help` lists"),
        (["check", "--per-op"], "argument --per-op: expected one argument (`refquant check --help` lists"),
        (["calibrate", "m.onnx", "--data", "d", "--out", "o", "--method", "max"], "argument --method: invalid choice"),
        (["ops", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_command_line_argparse_cannot_read_is_a_one_line_error_with_status_1(argv, expected, capsys):
    """README: errors print one line on stderr and exit 1, argument-parsing errors included (argparse alone
    prints the usage and exits 2)."""
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("refquant: error: ") and expected in captured.err
    assert captured.err.count("\n") == 1 and not captured.out


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


# -- hostile or mistaken input: one line on stderr, exit status 1, no hang (spec/model.md "Command line") ----


def _one_line_error(capsys, argv, *expected) -> str:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("refquant: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    return err


def _cli_in_subprocess(*argv) -> subprocess.CompletedProcess:
    """The command in a child with a timeout: a regression that blocks fails the test instead of hanging it."""
    return subprocess.run([sys.executable, "-m", "refquant.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--dim", "batch=abc"], "--dim batch=abc: the size must be an integer"),
        (["--dim", "batch=-5"], "--dim batch=-5: a size cannot be negative"),
        (["--dim", f"batch={2**40}"], "elements to draw"),
        (["--seed", "-1"], f"--seed must be an integer from 0 to {cli.MAX_SEED}, got -1"),
    ],
)
def test_bad_feed_options(q_model_path, capsys, options, expected):
    _one_line_error(capsys, ["run", str(q_model_path), *options], expected)


def test_input_files_must_be_one_npy_array(q_model_path, tmp_path, capsys):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 4), np.float32))
    _one_line_error(capsys, ["run", str(q_model_path), "--input", f"x={tmp_path / 'x.npz'}"], "is an .npz archive")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    _one_line_error(capsys, ["run", str(q_model_path), "--input", f"x={tmp_path / 'o.npy'}"], "allow_pickle=False")
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }" + b" " * 20000 + b"\n"
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + bytes(16))
    _one_line_error(capsys, ["run", str(q_model_path), "--input", f"x={tmp_path / 'huge.npy'}"],
                    "is not a readable .npy")


def test_a_model_path_with_a_nul_byte(capsys):
    _one_line_error(capsys, ["run", "model\0.onnx"], "cannot read model file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_are_refused_without_blocking(q_model_path, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for argv in (["run", tmp_path / "fifo"], ["run", q_model_path, "--input", f"x={tmp_path / 'fifo'}"]):
        result = _cli_in_subprocess(*argv)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "is a FIFO, not a regular file; refusing to read it" in result.stderr


def test_a_string_input_is_not_fed_random_numbers(tmp_path, capsys):
    model = single_node_model("Identity", {"x": (T.STRING, [2])}, {"y": T.STRING}, opset=13)
    onnx.save(model, tmp_path / "s.onnx")
    _one_line_error(capsys, ["run", str(tmp_path / "s.onnx")], "input 'x' is a string tensor")


def _multi_output_model(path):
    """x -> Identity -> each of the outputs named below: names that used to share a --save file."""
    names = ["a/b", "a_b", "input_x", "A_B"]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], [name]) for name in names], "g",
        [onnx.helper.make_tensor_value_info("x", T.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info(name, T.FLOAT, [2]) for name in names],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, path)
    return names


def test_run_save_gives_every_tensor_its_own_file_and_an_index(tmp_path, capsys):
    import json

    names = _multi_output_model(tmp_path / "m.onnx")
    assert cli.main(["run", str(tmp_path / "m.onnx"), "--save", str(tmp_path / "out")]) == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index == {
        "inputs": {"x": "input_x.npy"},
        "outputs": {"a/b": "a_b.npy", "a_b": "a_b-2.npy", "input_x": "input_x-2.npy", "A_B": "A_B-3.npy"},
    }
    x = np.load(tmp_path / "out" / "input_x.npy")
    for name in names:
        np.testing.assert_array_equal(np.load(tmp_path / "out" / index["outputs"][name]), x)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"index.json", *index["inputs"].values(),
                                                              *index["outputs"].values()}


def test_outputs_that_cannot_be_written_are_refused_before_the_work(q_model_path, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    _one_line_error(capsys, ["run", str(q_model_path), "--save", str(tmp_path / "file")],
                    "exists and is not a directory")
    _one_line_error(capsys, ["run", str(q_model_path), "--save", str(tmp_path / "file" / "d")], "is not a directory")
    _one_line_error(capsys, ["check", "--backends", "reference", "--json", str(tmp_path / "file" / "c.json")],
                    "--json", "is not a directory")
    _one_line_error(capsys, ["check", "--backends", "reference", "--json", str(tmp_path / "no" / "c.json")],
                    "the folder", "does not exist")
    _one_line_error(capsys, ["check", "--backends", "reference", "--json", str(tmp_path)], "is a directory, not a file")
    _one_line_error(capsys, ["fuzz", "--backends", "reference", "--out", str(tmp_path / "file")], "--out",
                    "exists and is not a directory")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["fuzz", "--examples", "0"], f"--examples must be an integer from 1 to {cli.MAX_EXAMPLES}, got 0"),
        (["fuzz", "--examples", "1000000000"], "--examples must be an integer from 1 to"),
        (["fuzz", "--seed", "-1"], "--seed must be an integer from 0"),
        (["check", "--per-op", "-1"], f"--per-op must be an integer from 0 to {cli.MAX_PER_OP}, got -1"),
        (["check", "--per-op", "1000000000"], "--per-op must be an integer from 0 to"),
        (["bench", "--repeat", "-1"], f"--repeat must be an integer from 1 to {cli.MAX_REPEAT}, got -1"),
        (["bench", "--ops", "models", "--models", "missing.onnx"], "cannot read model file 'missing.onnx'"),
    ],
)
def test_campaign_counts_and_models_are_checked_first(capsys, argv, expected):
    _one_line_error(capsys, [*argv[:1], "--backends", "reference", *argv[1:]], expected)


def _float_relu(path):
    model = single_node_model("Relu", {"x": (T.FLOAT, [1, 4])}, {"y": T.FLOAT}, opset=13)
    onnx.save(model, path)


def test_calibration_data_is_loaded_without_pickles(tmp_path, capsys):
    _float_relu(tmp_path / "f.onnx")
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    for data, expected in (("pickled.npz", "allow_pickle=False"), ("corrupt.npz", "is not a readable .npz archive")):
        _one_line_error(capsys, ["calibrate", str(tmp_path / "f.onnx"), "--data", str(tmp_path / data),
                                 "--runner", "refquant", "--out", str(tmp_path / "out")], expected)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_among_calibration_batches_is_refused_without_blocking(tmp_path):
    _float_relu(tmp_path / "f.onnx")
    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / "0.npz")
    result = _cli_in_subprocess("calibrate", tmp_path / "f.onnx", "--data", tmp_path / "data", "--runner", "refquant",
                                "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "calibration batch" in result.stderr and "is a FIFO" in result.stderr


# -- replay: a reproducer directory is read inside itself ---------------------------------------------------


@pytest.fixture
def reproducer(tmp_path):
    """A minimal reproducer directory: model.onnx, inputs.npz, report.json."""
    from refquant.backends import conformance

    from tests.helpers import dq_graph_model

    directory = tmp_path / "repro"
    directory.mkdir()
    onnx.save(dq_graph_model(), directory / "model.onnx")
    conformance.save_arrays(directory / "inputs.npz", {"x": np.zeros((1, 3), np.uint8)})
    (directory / "report.json").write_text('{"backends": ["reference"]}')
    return directory


def test_replay_of_a_minimal_reproducer(reproducer, capsys):
    assert cli.main(["replay", str(reproducer)]) == 0


@pytest.mark.parametrize(
    "report, expected",
    [
        (b'{"backends": "reference"}', "'backends' must be a list of backend names, not 'reference'"),
        (b"{}", "'backends' must be a list of backend names, not None"),
        (b"[1, 2]", "'backends' must be a list of backend names"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[" * 100_000, "nests JSON too deeply"),
        (b"{", "is not valid JSON"),
    ],
)
def test_a_malformed_report_is_a_one_line_error(reproducer, capsys, report, expected):
    (reproducer / "report.json").write_bytes(report)
    _one_line_error(capsys, ["replay", str(reproducer)], "is not a refquant reproducer", expected)


def test_replay_reads_nothing_outside_its_directory(reproducer, tmp_path, capsys):
    (reproducer / "model.onnx").rename(tmp_path / "outside.onnx")
    (reproducer / "model.onnx").symlink_to(tmp_path / "outside.onnx")
    _one_line_error(capsys, ["replay", str(reproducer)], "model.onnx leads outside the reproducer")


def test_replay_refuses_pickled_or_mistyped_inputs(reproducer, capsys):
    np.savez(reproducer / "inputs.npz", x=np.array([{"a": 1}], dtype=object), __dtypes__=np.array("{}"))
    _one_line_error(capsys, ["replay", str(reproducer)], "allow_pickle=False")
    np.savez(reproducer / "inputs.npz", x=np.zeros(3, np.uint8), __dtypes__=np.array('{"x": "finfo"}'))
    _one_line_error(capsys, ["replay", str(reproducer)], "__dtypes__ does not describe its arrays")
