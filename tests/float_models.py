"""Float models and seeded data shared by the calibration, table, debug and quantized-model tests, and
onnxruntime's own calibration of them (the expected ranges)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper


def graph_model(nodes, inputs, outputs, initializers):
    """One graph named g at opset 17, IR version 8."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def cnn_model(seed=0):
    """Conv-Relu-Conv-Relu-Add-MaxPool-Flatten-Gemm on 3x8x8 images."""
    rng = np.random.default_rng(seed)

    def init(name, *shape, scale=0.5):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["s"]),
        helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    inits = [
        init("w1", 4, 3, 3, 3),
        init("b1", 4),
        init("w2", 4, 4, 3, 3),
        init("b2", 4),
        init("wf", 5, 64, scale=0.2),
        init("bf", 5),
    ]
    return graph_model(
        nodes,
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 5])],
        inits,
    )


def mlp_model(seed=1):
    """MatMul-Add-Relu-Gemm on 16 features."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 12)).astype(np.float32) * 0.4, "w1"),
        numpy_helper.from_array(rng.standard_normal(12).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((12, 3)).astype(np.float32) * 0.4, "w2"),
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h"]),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["y"]),
    ]
    return graph_model(
        nodes,
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 3])],
        inits,
    )


def plain_cnn_model(seed=2):
    """A plain float CNN of 13 activation tensors: Conv-Relu-MaxPool-Conv-Relu-Conv(1x1)-Add-Relu-
    GlobalAveragePool-Flatten-Gemm-Softmax on 3x16x16 images. Its float kernels (Conv, Gemm,
    GlobalAveragePool, Softmax) are the ones the onnxruntime profile replays (spec/mlas.md); the others
    are exact in any arithmetic."""
    rng = np.random.default_rng(seed)

    def init(name, *shape, scale=0.4):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("Add", ["c3", "p1"], ["a"]),
        helper.make_node("Relu", ["a"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
        helper.make_node("Softmax", ["y"], ["s"], axis=1),
    ]
    inits = [
        init("w1", 8, 3, 3, 3),
        init("b1", 8),
        init("w2", 8, 8, 3, 3, scale=0.2),
        init("b2", 8),
        init("w3", 8, 8, 1, 1),
        init("b3", 8),
        init("wf", 10, 8),
        init("bf", 10),
    ]
    return graph_model(
        nodes,
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("s", T.FLOAT, ["N", 10])],
        inits,
    )


MODELS = {
    "cnn": (cnn_model, (2, 3, 8, 8)),
    "mlp": (mlp_model, (4, 16)),
    "plain_cnn": (plain_cnn_model, (2, 3, 16, 16)),
}


def make_batches(shape, count, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": (rng.standard_normal(shape) * rng.uniform(0.5, 2)).astype(np.float32)} for _ in range(count)]


def float_cnn() -> onnx.ModelProto:
    """Conv-Relu-MaxPool twice, Flatten, MatMul: quantizes to default-domain ops only
    (a bias Add would become com.microsoft QLinearAdd in QOperator form)."""
    rng = np.random.default_rng(5)
    weights = {
        "w1": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "w2": rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32),
        "w3": rng.normal(0, 0.1, (8 * 4 * 4, 10)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "w3"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "float_cnn",
        [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def random_images(n, seed):
    """n feeds of x: [1, 3, 16, 16] standard normal float32, the input of float_cnn."""
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


class Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, batches):
        self._batches = iter(batches)

    def get_next(self):
        return next(self._batches, None)


ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "distribution": "Distribution"}


def ort_ranges(path, batches, method, options, tmp_path, op_types=None):
    """onnxruntime's calibrated ranges of the model at ``path`` (its own calibrator, the expected values)."""
    from onnxruntime.quantization import calibrate as ort_calibrate

    calibrator = ort_calibrate.create_calibrator(
        str(path),
        op_types,
        str(tmp_path / "augmented.onnx"),
        ort_calibrate.CalibrationMethod[ORT_METHODS[method]],
        extra_options=options,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        calibrator.collect_data(Reader(batches))
        return calibrator.compute_data()
