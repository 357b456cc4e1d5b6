"""Models shaped like PyTorch QAT exports run bit-identical on refquant and onnxruntime CPU.

torch.onnx.export of a model prepared with torch.ao.quantization (QAT, fake-quantize modules) emits
QuantizeLinear/DequantizeLinear pairs rather than QLinear kernels: scales and zero points as Constant
nodes, float weights behind a per-channel int8 Q/DQ pair (axis 0, symmetric, zero point 0), activations
through per-tensor uint8 pairs (reduce_range: 0..127), Conv/Relu/Add/Flatten/Gemm in float between
them. PyTorch itself is not a test dependency (its PyPI wheels pull in several GB of CUDA libraries),
so the graphs are built here node for node in that shape, at opsets 13 and 17.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.backends.divergence import classify

ort = pytest.importorskip("onnxruntime")


class _Graph:
    """Builds a graph the way torch.onnx.export writes fake-quantize modules."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def constant(self, name, value):
        self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value))))
        return name

    def fake_quant(self, x, scale, zero_point, axis=None):
        """x -> QuantizeLinear -> DequantizeLinear, scale and zero point from Constant nodes."""
        s = self.constant(f"{x}_scale", np.asarray(scale, np.float32))
        z = self.constant(f"{x}_zero_point", zero_point)
        attrs = {} if axis is None else {"axis": axis}
        self.nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{x}_q"], **attrs))
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q", s, z], [f"{x}_dq"], **attrs))
        return f"{x}_dq"

    def weight(self, name, w):
        """Float weight behind a per-channel symmetric int8 pair (torch's default QAT weight observer)."""
        self.initializers.append(numpy_helper.from_array(w.astype(np.float32), name))
        amax = np.abs(w.reshape(len(w), -1)).max(axis=1)
        return self.fake_quant(name, amax / 127.0, np.zeros(len(w), np.int8), axis=0)

    def activation(self, x, low, high):
        """Per-tensor uint8 pair with reduce_range (quint8 0..127), as torch's x86 backend configures."""
        scale = np.float32((high - low) / 127.0)
        zero_point = np.uint8(np.clip(round(-low / scale), 0, 127))
        return self.fake_quant(x, scale, zero_point)

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def qat_cnn(opset: int) -> onnx.ModelProto:
    rng = np.random.default_rng(21)
    g = _Graph()
    x = g.activation("x", -3.0, 3.0)
    c1 = g.node("Conv", [x, g.weight("w1", rng.normal(0, 0.3, (8, 4, 3, 3))), "b1"], "conv1", pads=[1, 1, 1, 1])
    r1 = g.activation(g.node("Relu", [c1], "relu1"), 0.0, 6.0)
    c2 = g.node("Conv", [r1, g.weight("w2", rng.normal(0, 0.2, (4, 8, 3, 3))), "b2"], "conv2", pads=[1, 1, 1, 1])
    skip = g.activation(g.node("Add", [g.activation(c2, -6.0, 6.0), x], "skip"), -8.0, 8.0)
    pooled = g.node("GlobalAveragePool", [g.node("Relu", [skip], "relu2")], "pool")
    flat = g.activation(g.node("Flatten", [pooled], "flatten"), 0.0, 4.0)
    g.node("Gemm", [flat, g.weight("wf", rng.normal(0, 0.3, (10, 4))), "bf"], "y", transB=1)
    g.initializers += [numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), b) for b, n in (("b1", 8), ("b2", 4), ("bf", 10))]
    graph = helper.make_graph(g.nodes, "qat_cnn", [helper.make_tensor_value_info("x", T.FLOAT, [2, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [2, 10])], g.initializers)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def qat_linear_block(opset: int) -> onnx.ModelProto:
    """Linear - ReLU - Linear as torch exports nn.Linear on a 3-D input: MatMul + Add, fake-quantized."""
    rng = np.random.default_rng(22)
    g = _Graph()
    x = g.activation("x", -4.0, 4.0)
    w1 = g.node("Transpose", [g.weight("w1", rng.normal(0, 0.3, (32, 16)))], "w1_t", perm=[1, 0])
    h = g.node("Add", [g.node("MatMul", [x, w1], "fc1"), "b1"], "fc1_bias")
    h = g.activation(g.node("Relu", [h], "relu"), 0.0, 8.0)
    w2 = g.node("Transpose", [g.weight("w2", rng.normal(0, 0.2, (16, 32)))], "w2_t", perm=[1, 0])
    g.node("Add", [g.node("MatMul", [h, w2], "fc2"), "b2"], "y")
    g.initializers += [numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), b) for b, n in (("b1", 32), ("b2", 16))]
    graph = helper.make_graph(g.nodes, "qat_linear", [helper.make_tensor_value_info("x", T.FLOAT, [2, 5, 16])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [2, 5, 16])], g.initializers)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("build", [qat_cnn, qat_linear_block])
@pytest.mark.parametrize("opset", [13, 17])
def test_qat_shaped_model_is_bit_identical_to_onnxruntime(build, opset):
    model = build(opset)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    ort_session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session = refquant.Session(model, profile="onnxruntime")
    rng = np.random.default_rng(opset)
    for _ in range(3):
        feeds = {"x": (rng.standard_normal(shape) * 2).astype(np.float32)}
        (want,) = ort_session.run(None, feeds)
        (got,) = session.run(None, feeds)
        assert got.dtype == want.dtype and np.array_equal(got.view(np.uint32), want.view(np.uint32))
        (report,) = classify(model, feeds, "ort-cpu", {"y": want})
        assert report.status in ("exact", "explained") and report.unexplained == 0
