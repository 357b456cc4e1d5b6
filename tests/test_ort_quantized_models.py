"""Models quantized by onnxruntime.quantization run on refquant, checked against onnxruntime CPU.

QOperator models use only quantization ops, MaxPool and Flatten: with the float32 requantization that
onnxruntime's kernels use (profile option requantize_precision="float32") and this host's integer
kernels (avx2_u8s8_saturation, as the "onnxruntime" profile sets it) refquant must match bit for bit. QDQ models run float Conv/MatMul between DequantizeLinear and QuantizeLinear; float32
accumulation order differs between engines, so their quantized outputs may differ by one step.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import refquant
from refquant.cli import commands as cli

from .float_models import Reader, float_cnn, random_images

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

#: the integer kernels onnxruntime runs on this host (refquant.host): U8S8 pair saturation without VNNI
HOST_KERNELS = {"avx2_u8s8_saturation": refquant.get_profile("onnxruntime").avx2_u8s8_saturation}


@pytest.fixture(scope="module", params=["QOperator", "QDQ"])
def quantized(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    float_path, quant_path = directory / "float.onnx", directory / "quant.onnx"
    onnx.save(float_cnn(), float_path)
    quantization.quantize_static(
        str(float_path),
        str(quant_path),
        Reader(random_images(8, seed=1)),
        quant_format=getattr(quantization.QuantFormat, request.param),
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
    )
    return request.param, quant_path


def _ort_run(path, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_quantized_model_uses_only_supported_ops(quantized):
    _, path = quantized
    supported = {(d, op) for d, op, _ in refquant.supported_ops()}
    used = {(n.domain, n.op_type) for n in onnx.load(path).graph.node}
    assert used <= supported, f"unsupported: {used - supported}"


def _output_step(path) -> float:
    """Scale of the DequantizeLinear that produces the graph output: one quantization step."""
    model = onnx.load(path)
    last = next(n for n in model.graph.node if model.graph.output[0].name in n.output)
    assert last.op_type == "DequantizeLinear"
    scale = next(t for t in model.graph.initializer if t.name == last.input[1])
    return float(numpy_helper.to_array(scale))


def test_quantized_model_matches_onnxruntime(quantized):
    form, path = quantized
    float32_requant = refquant.get_profile("spec").with_options(requantize_precision="float32", **HOST_KERNELS)
    spec = refquant.Session(path, profile=refquant.get_profile("spec").with_options(**HOST_KERNELS))
    emulating = refquant.Session(path, profile=float32_requant)
    step = _output_step(path)
    for feeds in random_images(4, seed=2):
        (expected,) = _ort_run(path, feeds)
        (got,) = emulating.run(None, feeds)
        (got_spec,) = spec.run(None, feeds)
        if form == "QOperator":
            np.testing.assert_array_equal(got, expected)
        for result in (got, got_spec):
            assert np.abs(result.astype(np.float64) - expected).max() <= step * 1.0001


def test_cli_runs_the_quantized_model(quantized, capsys):
    _, path = quantized
    assert cli.main(["run", str(path)]) == 0
    assert "output y: float32 [1, 10]" in capsys.readouterr().out


def test_bundled_example_matches_onnxruntime():
    path = cli.EXAMPLES / "qcnn.onnx"
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    (got,) = refquant.Session(path, profile="onnxruntime").run(None, feeds)  # onnxruntime on this host
    np.testing.assert_array_equal(got, _ort_run(path, feeds)[0])
