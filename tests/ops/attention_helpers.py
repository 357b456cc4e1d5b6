"""Shared by tests/ops/test_attention.py and tests/ops/test_linear_attention.py: one-node models of the
ai.onnx attention family with any number of outputs, run by refquant and by onnx.reference."""

from __future__ import annotations

import numpy as np
from onnx import helper
from onnx.reference import ReferenceEvaluator

import refquant
from refquant.dtypes import proto_of

F32 = np.float32


def one_node(op, inputs, n_out, *, opset, attrs=None, out_types=None, name="n0"):
    """A one-node model; ``inputs`` {name: array or None}: a None input is skipped ("" in the node), trailing
    skipped inputs omitted. Outputs y0..y{n_out-1}, of ``out_types`` (default: the first input's type)."""
    names = [n if v is not None else "" for n, v in inputs.items()]
    while names and not names[-1]:
        names.pop()
    first = next(iter(inputs.values()))
    out_types = out_types or [first.dtype] * n_out
    graph = helper.make_graph(
        [helper.make_node(op, names, [f"y{i}" for i in range(n_out)], name=name, **(attrs or {}))],
        "g",
        [helper.make_tensor_value_info(n, proto_of(v.dtype), list(v.shape)) for n, v in inputs.items() if v is not None],
        [helper.make_tensor_value_info(f"y{i}", proto_of(np.dtype(t)), None) for i, t in enumerate(out_types)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def feeds(inputs):
    return {n: v for n, v in inputs.items() if v is not None}


def run(op, inputs, n_out=1, *, opset, attrs=None, out_types=None):
    return refquant.Session(one_node(op, inputs, n_out, opset=opset, attrs=attrs, out_types=out_types)).run(
        None, feeds(inputs))


def reference(op, inputs, n_out=1, *, opset, attrs=None, out_types=None):
    with np.errstate(all="ignore"):
        model = one_node(op, inputs, n_out, opset=opset, attrs=attrs, out_types=out_types)
        return [np.asarray(o) for o in ReferenceEvaluator(model).run(None, feeds(inputs))]


def a32(x):
    """x as a float32 array."""
    return np.asarray(x, F32)
