"""Shared by the tests of the com.microsoft transformer kernels (test_contrib_activations.py,
test_contrib_matmul.py, test_contrib_normalization.py, test_contrib_attention.py): one-node models with any
number of outputs, run by refquant (spec) and by onnxruntime's CPU kernels, and the float comparison
spec/ops/contrib.md states ("Transformer operators: agreement with onnxruntime").

refquant's spec profile evaluates in float64 and rounds once; onnxruntime computes in float32 step by step.
They are compared in units of 2^-24 * max|onnxruntime's output| (float32's unit roundoff at the tensor's
largest magnitude): |refquant - onnxruntime| <= units * 2^-24 * max|onnxruntime|, with ``units`` per op
as measured and written in spec/ops/contrib.md. Integer outputs are compared exactly.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper

import refquant
from refquant.dtypes import proto_of


def ms_node_model(op_type, inputs, out_types, **attrs):
    """One com.microsoft node; ``inputs``: (name, array or None) pairs (None: an omitted input);
    ``out_types``: the TensorProto types of its outputs (None: an omitted output)."""
    outputs = [f"out{i}" if t is not None else "" for i, t in enumerate(out_types)]
    node = helper.make_node(op_type, [n if v is not None else "" for n, v in inputs], outputs,
                            domain="com.microsoft", **attrs)
    graph = helper.make_graph(
        [node], op_type.lower(),
        [helper.make_tensor_value_info(n, proto_of(v.dtype), list(v.shape)) for n, v in inputs if v is not None],
        [helper.make_tensor_value_info(o, t, None) for o, t in zip(outputs, out_types) if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def feeds(inputs):
    return {n: v for n, v in inputs if v is not None}


def run_refquant(op_type, inputs, out_types=(T.FLOAT,), **attrs):
    return refquant.Session(ms_node_model(op_type, inputs, out_types, **attrs)).run(None, feeds(inputs))


def run_onnxruntime(model: onnx.ModelProto, fed: dict):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, fed)


def assert_close_to_onnxruntime(ours, theirs, units: float, what: str = "output"):
    """Integers equal; floats within ``units`` * 2^-24 * max|theirs| (same dtype and shape)."""
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != {theirs.dtype}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    if ours.dtype.kind != "f":
        np.testing.assert_array_equal(ours, theirs, err_msg=what)
        return
    error = np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)), initial=0.0)
    bound = units * 2.0**-24 * np.max(np.abs(theirs.astype(np.float64)), initial=0.0)
    assert error <= bound, f"{what}: |refquant - onnxruntime| = {error:.3g} > {units} units ({bound:.3g})"


def compare_with_onnxruntime(op_type, inputs, out_types, units: float, **attrs):
    """Run both; each output within ``units`` (integers exactly). Returns refquant's outputs."""
    model = ms_node_model(op_type, inputs, out_types, **attrs)
    ours = refquant.Session(model).run(None, feeds(inputs))
    theirs = run_onnxruntime(model, feeds(inputs))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_close_to_onnxruntime(a, b, units, f"{op_type} output {i}")
    return ours
