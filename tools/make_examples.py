"""Build the bundled example models in refquant/examples/ (deterministic: fixed seed).

    python tools/make_examples.py

qcnn.onnx: a small QOperator CNN at opset 13 using only refquant's quantization ops:
QuantizeLinear -> QLinearConv (per-channel int8 weights, int32 bias) -> MaxPool (uint8)
-> QLinearConv (depthwise) -> Flatten -> QLinearMatMul -> DequantizeLinear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "refquant" / "examples"


def qcnn() -> onnx.ModelProto:
    rng = np.random.default_rng(20261124)
    init = {
        "x_scale": np.array(0.02, np.float32),
        "x_zp": np.array(128, np.uint8),
        "w1": rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8),
        "w1_scale": rng.uniform(0.002, 0.01, 8).astype(np.float32),
        "w1_zp": np.zeros(8, np.int8),
        "b1": rng.integers(-2000, 2000, 8).astype(np.int32),
        "c1_scale": np.array(0.05, np.float32),
        "c1_zp": np.array(100, np.uint8),
        "w2": rng.integers(-127, 128, (8, 1, 3, 3)).astype(np.int8),
        "w2_scale": rng.uniform(0.002, 0.01, 8).astype(np.float32),
        "w2_zp": np.zeros(8, np.int8),
        "c2_scale": np.array(0.04, np.float32),
        "c2_zp": np.array(90, np.uint8),
        "w3": rng.integers(-127, 128, (512, 10)).astype(np.int8),
        "w3_scale": np.array(0.003, np.float32),
        "w3_zp": np.array(0, np.int8),
        "y_scale": np.array(0.25, np.float32),
        "y_zp": np.array(120, np.uint8),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="quantize_input"),
        helper.make_node(
            "QLinearConv",
            ["xq", "x_scale", "x_zp", "w1", "w1_scale", "w1_zp", "c1_scale", "c1_zp", "b1"],
            ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3],
        ),
        helper.make_node("MaxPool", ["c1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "QLinearConv",
            ["p1", "c1_scale", "c1_zp", "w2", "w2_scale", "w2_zp", "c2_scale", "c2_zp"],
            ["c2"], name="conv2_depthwise", group=8, pads=[1, 1, 1, 1], kernel_shape=[3, 3],
        ),
        helper.make_node("Flatten", ["c2"], ["f"], name="flatten", axis=1),
        helper.make_node(
            "QLinearMatMul", ["f", "c2_scale", "c2_zp", "w3", "w3_scale", "w3_zp", "y_scale", "y_zp"],
            ["yq"], name="fc",
        ),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["logits"], name="dequantize_output"),
    ]
    graph = helper.make_graph(
        nodes,
        "qcnn",
        [helper.make_tensor_value_info("x", T.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", T.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="refquant-examples")
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(qcnn(), OUT / "qcnn.onnx")
    print(f"wrote {OUT / 'qcnn.onnx'}")
