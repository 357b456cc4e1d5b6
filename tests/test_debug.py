"""refquant debug: weights and activations matched by name as onnxruntime's qdq_loss_debug does."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest

from refquant.cli import commands as cli
from refquant.debug import debug, sqnr, weight_errors

from .float_models import Reader, float_cnn, random_images

quantization = pytest.importorskip("onnxruntime.quantization")
qdq_loss_debug = pytest.importorskip("onnxruntime.quantization.qdq_loss_debug")


@pytest.fixture(scope="module", params=["QDQ", "QOperator"])
def pair(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("debug" + request.param)
    float_path, quant_path = directory / "float.onnx", directory / "quant.onnx"
    onnx.save(float_cnn(), float_path)
    quantization.quantize_static(
        str(float_path), str(quant_path), Reader(random_images(4, seed=1)),
        quant_format=getattr(quantization.QuantFormat, request.param),
        activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8, per_channel=True,
    )
    data = directory / "data"
    data.mkdir()
    for i, feeds in enumerate(random_images(3, seed=9)):
        np.savez(data / f"batch{i}.npz", **feeds)
    return request.param, float_path, quant_path, data


@pytest.mark.parametrize("seed", range(5))
def test_sqnr_equals_onnxruntime_formula(seed):
    rng = np.random.default_rng(seed)
    x = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)]
    y = [a + rng.normal(0, 0.01, a.shape).astype(np.float32) for a in x]
    assert sqnr(x, y) == qdq_loss_debug.compute_signal_to_quantization_noice_ratio(x, y)
    assert sqnr(x[0], x[0]) == qdq_loss_debug.compute_signal_to_quantization_noice_ratio(x[0], x[0])


def test_weight_errors_equal_onnxruntime_weight_matching(pair):
    form, float_path, quant_path, _ = pair
    ours = {e.name: e.sqnr for e in weight_errors(float_path, quant_path)}
    assert ours, "no weight matched"
    if form == "QDQ":  # onnxruntime's debugger reads QDQ models only
        theirs = qdq_loss_debug.compute_weight_error(
            qdq_loss_debug.create_weight_matching(str(float_path), str(quant_path))
        )
        assert ours.keys() == theirs.keys()
        int32_biases = {t.name[: -len("_quantized")] for t in onnx.load(quant_path).graph.initializer
                        if t.data_type == onnx.TensorProto.INT32}
        for name in ours:
            if name in int32_biases:
                # onnxruntime keeps (b - zp) * scale in float64; DequantizeLinear's output, and refquant, is float32
                assert ours[name] == pytest.approx(theirs[name], abs=1e-3)
            else:
                assert ours[name] == theirs[name]
    assert all(value > 20 for value in ours.values())  # 8-bit weights keep > 20 dB


def test_activation_errors_are_found_and_sorted_worst_first(pair):
    form, float_path, quant_path, data = pair
    batches = [dict(np.load(p)) for p in sorted(data.iterdir())]
    errors = debug(float_path, quant_path, batches)
    kinds = {e.kind for e in errors}
    assert {"weight", "activation"} <= kinds
    if form == "QDQ":
        assert "qdq" in kinds
    assert [e.sqnr for e in errors] == sorted(e.sqnr for e in errors)
    for e in errors:
        assert -1 <= e.cosine <= 1 + 1e-12 and e.max_abs_error >= 0


class _Batches:
    """The batches as onnxruntime's collect_activations iterates them."""

    def __init__(self, batches):
        self._batches = iter(batches)

    def __iter__(self):
        return self._batches


@pytest.mark.parametrize("pair", ["QDQ"], indirect=True)  # onnxruntime's debugger reads QDQ models only
def test_activation_matching_equals_onnxruntime_qdq_loss_debug(pair, tmp_path):
    """Same activations (before/after each QDQ pair, float model) as create_activation_matching, and the
    same SQNRs as compute_activation_error, up to the float Conv's rounding (onnxruntime runs MLAS)."""
    _, float_path, quant_path, data = pair
    batches = [dict(np.load(p)) for p in sorted(data.iterdir())]
    activations = {}
    for side, path in (("quant", quant_path), ("float", float_path)):
        augmented = tmp_path / f"{side}_augmented.onnx"
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(path), str(augmented))
        activations[side] = qdq_loss_debug.collect_activations(str(augmented), _Batches(batches))
    matching = qdq_loss_debug.create_activation_matching(activations["quant"], activations["float"])
    theirs = qdq_loss_debug.compute_activation_error(matching)
    ours = {(e.name, e.kind): e.sqnr for e in debug(float_path, quant_path, batches) if e.kind != "weight"}
    kinds = {"qdq_err": "qdq", "xmodel_err": "activation"}
    expected = {(name, kinds[key]): value for name, errors in theirs.items() for key, value in errors.items()}
    assert len(expected) > 6 and ours.keys() == expected.keys()
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=1e-4), key


def test_cli_debug_prints_the_table_and_json(pair, tmp_path, capsys):
    _, float_path, quant_path, data = pair
    assert cli.main(["debug", str(float_path), str(quant_path), "--data", str(data), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["tensor", "kind", "SQNR", "dB", "max|err|", "cosine"]
    rows = json.loads((tmp_path / "d.json").read_text())
    assert rows and {"name", "kind", "sqnr", "max_abs_error", "cosine"} <= set(rows[0])


def test_cli_debug_plots_activations_in_graph_order(pair, tmp_path, monkeypatch):
    _, float_path, quant_path, data = pair
    plotted = []
    monkeypatch.setattr(cli, "_plot_sqnr", lambda activations, path: plotted.extend(e.name for e in activations))
    assert cli.main(["debug", str(float_path), str(quant_path), "--data", str(data), "--plot", "p.png"]) == 0
    graph = onnx.load(float_path).graph
    layers = [v.name for v in graph.input] + [name for node in graph.node for name in node.output]
    assert len(plotted) > 1 and plotted == sorted(plotted, key=layers.index)
    monkeypatch.undo()
    argv = ["debug", str(float_path), str(quant_path), "--data", str(data), "--plot", str(tmp_path / "sqnr.png")]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert cli.main(argv) == 1  # "--plot needs matplotlib"
        return
    assert cli.main(argv) == 0 and (tmp_path / "sqnr.png").read_bytes().startswith(b"\x89PNG")


def test_cli_debug_with_unrelated_models_is_a_clear_error(pair, tmp_path, capsys):
    _, float_path, _, data = pair
    assert cli.main(["debug", str(float_path), str(float_path), "--data", str(data)]) == 1
    assert "no tensor of the quantized model matches" in capsys.readouterr().err


# -- per-channel axis of a square QOperator weight --------------------------------------------------------------


def _square_matmul_pair(directory):
    """x [4, 32] @ W [32, 32], quantized by quantize_static QOperator per channel: QLinearMatMul with a
    per-column b_scale of 32 values. W's columns span two decades of magnitude, so the axis matters."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = (rng.standard_normal((32, 32)) * np.geomspace(0.01, 1.0, 32)[None, :]).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="proj")], "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    float_path, quant_path = directory / "float.onnx", directory / "quant.onnx"
    onnx.save(model, float_path)
    batches = [{"x": rng.standard_normal((4, 32)).astype(np.float32)} for _ in range(4)]
    quantization.quantize_static(
        str(float_path), str(quant_path), Reader(batches), quant_format=quantization.QuantFormat.QOperator,
        activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8, per_channel=True,
    )
    data = directory / "data"
    data.mkdir()
    np.savez(data / "batch0.npz", x=rng.standard_normal((4, 32)).astype(np.float32))
    return w, float_path, quant_path, data


def test_square_qlinear_matmul_weight_is_dequantized_per_column(tmp_path):
    """QLinearMatMul's b_scale is per column of b (ONNX: "per row for 'a' and per column for 'b'"): for a
    square weight the scale's length matches both axes, and the SQNR must be the per-column one."""
    w, float_path, quant_path, data = _square_matmul_pair(tmp_path)
    quant = onnx.load(quant_path)
    assert [n.op_type for n in quant.graph.node if n.op_type.startswith("QLinear")] == ["QLinearMatMul"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in quant.graph.initializer}
    q, scale, zero_point = inits["W_quantized"], inits["W_scale"], inits["W_zero_point"]
    assert q.shape == (32, 32) and scale.shape == zero_point.shape == (32,)

    # by hand: w_deq[i, j] = (q[i, j] - zp[j]) * scale[j], in float32 as DequantizeLinear computes it
    w_deq = (q.astype(np.int32) - zero_point.astype(np.int32)[None, :]).astype(np.float32) * scale[None, :]
    # spec/debug.md: SQNR = 20 log10(max(|x|, eps) / max(|x - y|, eps)), eps = float64 machine epsilon
    eps = np.finfo(float).eps
    expected = 20 * math.log10(max(np.linalg.norm(w), eps) / max(np.linalg.norm(w - w_deq), eps))
    w64, d64 = w.astype(np.float64), w_deq.astype(np.float64)
    assert expected == pytest.approx(10 * math.log10((w64**2).sum() / ((w64 - d64) ** 2).sum()), abs=1e-4)
    per_row = (q.astype(np.int32) - zero_point.astype(np.int32)[:, None]).astype(np.float32) * scale[:, None]
    assert expected > 40 > 20 > 20 * math.log10(np.linalg.norm(w) / np.linalg.norm(w - per_row))

    (weight,) = weight_errors(float_path, quant_path)
    assert weight.name == "W" and weight.sqnr == expected
    assert cli.main(["debug", str(float_path), str(quant_path), "--data", str(data), "--json", str(tmp_path / "d.json")]) == 0
    rows = {(r["name"], r["kind"]): r for r in json.loads((tmp_path / "d.json").read_text())}
    assert rows["W", "weight"]["sqnr"] == expected


def test_channel_rules_follow_the_operator_definitions():
    """The axis of a per-channel parameter comes from the operator and input index, not from lengths."""
    from onnx import helper

    from refquant.debug import CHANNEL_RULES

    scale = np.arange(1, 5, dtype=np.float32)
    matmul = helper.make_node("QLinearMatMul", list("abcdefgh"), ["y"])
    assert CHANNEL_RULES["", "QLinearMatMul", 3](matmul, (4, 4), scale, "b_scale").shape == (4,)  # columns
    assert CHANNEL_RULES["", "QLinearMatMul", 0](matmul, (4, 4), scale, "a_scale").shape == (4, 1)  # rows
    assert CHANNEL_RULES["", "QLinearConv", 3](None, (4, 4, 3, 3), scale, "w_scale").shape == (4, 1, 1, 1)
    gemm = helper.make_node("QGemm", list("abcdef"), ["y"], domain="com.microsoft", transB=1)
    assert CHANNEL_RULES["com.microsoft", "QGemm", 3](gemm, (4, 4), scale, "b_scale").shape == (4, 1)
    gemm = helper.make_node("QGemm", list("abcdef"), ["y"], domain="com.microsoft")
    assert CHANNEL_RULES["com.microsoft", "QGemm", 3](gemm, (4, 4), scale, "b_scale").shape == (1, 4)
