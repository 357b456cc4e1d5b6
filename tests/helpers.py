"""Small builders shared by the tests: single-node models and the ONNX node cases."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import warnings

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

import refquant
from refquant.dtypes import proto_of
from refquant.model import MIN_OPSET


def single_node_model(op_type, inputs, outputs, *, opset, attrs=None, initializers=None, domain="", ir_version=None):
    """A one-node model. ``inputs``: {name: array or (proto_type, shape)}; ``outputs``: {name: proto_type}.

    Arrays given in ``initializers`` become initializers; others are graph inputs.
    An empty string name in ``inputs`` denotes a skipped optional input.
    """
    initializers = initializers or {}
    graph_inputs = []
    for name, spec in inputs.items():
        if not name or name in initializers:
            continue
        if isinstance(spec, tuple):
            proto_type, shape = spec
        else:
            spec = np.asarray(spec)
            proto_type, shape = proto_of(spec.dtype), list(spec.shape)
        graph_inputs.append(helper.make_tensor_value_info(name, proto_type, shape))
    node = helper.make_node(op_type, list(inputs), list(outputs), domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node],
        f"{op_type.lower()}_test",
        graph_inputs,
        [helper.make_tensor_value_info(name, t, None) for name, t in outputs.items()],
        [numpy_helper.from_array(np.asarray(a), name) for name, a in initializers.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version or (10 if opset >= 21 else 8)
    return model


def dq_graph_model(opset=13):
    """x (uint8, [N, 3]) -> DequantizeLinear(scale, zp initializers) -> y."""
    return single_node_model(
        "DequantizeLinear",
        {"x": (TensorProto.UINT8, ["N", 3]), "s": np.array(0.5, np.float32), "zp": np.array(2, np.uint8)},
        {"y": TensorProto.FLOAT},
        opset=opset,
        initializers={"s": np.array(0.5, np.float32), "zp": np.array(2, np.uint8)},
    )


def to_array(value):
    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else value


@functools.lru_cache(maxsize=1)
def _all_node_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(collect_testcases())


def node_cases(pattern: str):
    """ONNX backend node cases whose name matches ``pattern`` (generated in memory once per run)."""
    regex = re.compile(pattern)
    return [c for c in _all_node_cases() if regex.match(c.name)]


def node_case_runs(case):
    """(refquant's outputs, the expected outputs) for each data set of a node case, run in one Session."""
    session = refquant.Session(case.model)
    for inputs, outputs in case.data_sets:
        given = {gi.name: np.asarray(to_array(x)) for gi, x in zip(case.model.graph.input, inputs, strict=False)}
        yield session.run(None, given), [np.asarray(to_array(w)) for w in outputs]


def assert_bit_exact(got: np.ndarray, expected: np.ndarray, what: str = "output"):
    """Same dtype, same shape, same bits (NaN payloads aside)."""
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    a, b = got.astype(np.float64), expected.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    assert same.all(), f"{what}: {int((~same).sum())} element(s) differ, first at {np.argwhere(~same)[0]}: {got[~same][:5]} vs {expected[~same][:5]}"


def graph_nodes(graph):
    """The nodes of ``graph`` and of its subgraphs (If, Loop, Scan, SequenceMap bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from graph_nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from graph_nodes(g)


def node_case_as_run(case):
    """The node case as refquant runs it: a case below refquant's lowest opset (10) raised to 10 when every
    default-domain op of its graph, subgraphs included, has the same schema there (so it is the same case);
    otherwise the case itself (below 10, refquant refuses its opset)."""
    opset = next((o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= MIN_OPSET:
        return case
    for node in graph_nodes(case.model.graph):
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            before, at_10 = (onnx.defs.get_schema(node.op_type, v, "").since_version for v in (opset, MIN_OPSET))
        except onnx.defs.SchemaError:
            return case
        if before != at_10:
            return case
    raised = copy.deepcopy(case.model)
    for entry in raised.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = MIN_OPSET
    return dataclasses.replace(case, model=raised)
