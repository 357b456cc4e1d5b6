"""Float ops added for whole quantized models (spec/ops/float.md, spec/ops/nn.md).

Expected values: the since_versions of the ONNX schemas; the ONNX backend node cases (bit for bit
for data movement and comparisons, within the case's tolerance for float math);
onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs (bit for bit where the op moves or
compares values, within 4 float32 ulps where both evaluate a function (onnx.reference rounds 2-4 times in float32)); onnxruntime CPU for the
mlas-float32 GlobalAveragePool order.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refquant

from .helpers import node_cases, to_array
from .test_float_ops import assert_same_bits, run_reference, run_refquant

EXACT_OPS = (
    "Transpose Concat Split Slice Squeeze Unsqueeze Gather Shape Expand ConstantOfShape Pad "
    "Where Equal Less Greater Not"
).split()
MATH_OPS = (
    "Softmax ReduceMean ReduceSum Pow Sqrt Exp Erf Tanh Sigmoid LeakyRelu HardSigmoid HardSwish "
    "LayerNormalization Gelu GlobalAveragePool AveragePool BatchNormalization"
).split()


@pytest.mark.parametrize("op", EXACT_OPS + MATH_OPS)
def test_versions_are_the_schema_versions_from_opset_10(op):
    versions = [v for domain, name, v in refquant.supported_ops() if name == op and domain == ""]
    history = sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == op and s.domain == ""})
    in_effect_at_10 = max([v for v in history if v <= 10], default=history[0])
    assert versions == [v for v in history if v >= in_effect_at_10]


UNSUPPORTED = {
    "test_batchnorm_example_training_mode": "training_mode=1 is not supported (inference graphs)",
    "test_batchnorm_epsilon_training_mode": "training_mode=1 is not supported (inference graphs)",
}
CASES = [
    c
    for c in node_cases(r"^test_")
    if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in EXACT_OPS + MATH_OPS
    and c.model.opset_import[0].version >= 10
]


def test_the_node_case_list_is_current():
    assert len(CASES) == 210  # onnx 1.23.2 (test_not_* import opset 1, below refquant's 10)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_onnx_node_case(case):
    if case.name in UNSUPPORTED:
        pytest.skip(UNSUPPORTED[case.name])
    session = refquant.Session(case.model)
    exact = case.model.graph.node[0].op_type in EXACT_OPS
    for inputs, expected in case.data_sets:
        feeds = {spec.name: np.asarray(to_array(v)) for spec, v in zip(case.model.graph.input, inputs)}
        for got, want in zip(session.run(None, feeds), expected, strict=True):
            want = np.asarray(to_array(want))
            if exact or got.dtype.kind != "f":
                assert_same_bits(got, want)
            else:
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=max(case.rtol, 1e-6), atol=case.atol)


FLOATS = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.floats(-20, 20, width=32))  # fmt: skip


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ia, ib = a.view(np.int32).astype(np.int64), b.view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return np.abs(ia - ib)


@pytest.mark.parametrize("op", ["Sqrt", "Exp", "Erf", "Tanh", "Sigmoid", "LeakyRelu", "HardSigmoid", "HardSwish", "Softmax"])
@given(x=FLOATS, opset=st.sampled_from([14, 18, 22]))
def test_float_functions_are_within_four_ulps_of_onnx_reference(op, x, opset):
    x = np.abs(x) if op == "Sqrt" else x
    (got,) = run_refquant(op, {"x": x}, [np.float32], opset=opset)
    (want,) = run_reference(op, {"x": x}, [np.float32], opset=opset)
    assert got.dtype == np.float32 and got.shape == want.shape
    if op == "Softmax":
        # onnx.reference rounds x - max to float32 (inexact when the exponents differ), an error
        # exp multiplies by |x - max| <= 40: relative 40 * 2**-24, plus a few roundings
        np.testing.assert_allclose(got, want, rtol=44 * 2.0**-24, atol=1e-37)
    else:
        assert (_ulps(got, want) <= 4).all() or np.allclose(got, want, rtol=0, atol=1e-37)


@given(x=FLOATS, data=st.data())
def test_transpose_and_gather_match_onnx_reference_bit_for_bit(x, data):
    perm = data.draw(st.permutations(range(x.ndim)))
    inputs = {"x": x}
    got = run_refquant("Transpose", inputs, [np.float32], opset=21, attrs={"perm": list(perm)})
    assert_same_bits(got[0], run_reference("Transpose", inputs, [np.float32], opset=21, attrs={"perm": list(perm)})[0])
    size = x.shape[0]
    indices = data.draw(hnp.arrays(np.int64, (3,), elements=st.integers(-size, size - 1)))
    inputs = {"x": x, "i": indices}
    assert_same_bits(run_refquant("Gather", inputs, [np.float32], opset=13)[0],
                     run_reference("Gather", inputs, [np.float32], opset=13)[0])  # fmt: skip


@given(x=FLOATS, y=FLOATS)
def test_comparisons_and_where_match_onnx_reference(x, y):
    y = y.reshape(-1)[: x.shape[-1]] if y.size >= x.shape[-1] else np.zeros(x.shape[-1], np.float32)
    for op in ("Equal", "Less", "Greater"):
        inputs = {"a": x, "b": y}
        assert_same_bits(run_refquant(op, inputs, [np.bool_], opset=13)[0], run_reference(op, inputs, [np.bool_], opset=13)[0])
    inputs = {"c": x > 0, "a": x, "b": y}
    assert_same_bits(run_refquant("Where", inputs, [np.float32], opset=16)[0],
                     run_reference("Where", inputs, [np.float32], opset=16)[0])  # fmt: skip


@given(x=FLOATS, opset=st.sampled_from([13, 18]))
def test_reduce_sum_and_mean_are_the_rounded_float64_values(x, opset):
    axes = np.array([-1], np.int64)
    for op, want in (("ReduceSum", x.astype(np.float64).sum(-1, keepdims=True)),
                     ("ReduceMean", x.astype(np.float64).mean(-1, keepdims=True))):  # fmt: skip
        inputs = {"x": x, "axes": axes} if (op == "ReduceSum" or opset >= 18) else {"x": x}
        attrs = None if len(inputs) == 2 else {"axes": [-1]}
        (got,) = run_refquant(op, inputs, [np.float32], opset=opset, attrs=attrs)
        assert_same_bits(got, want.astype(np.float32))


ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("spatial", [(1, 1), (2, 3), (3, 3), (5, 7), (8, 8), (13, 11)])
def test_mlas_global_average_pool_matches_onnxruntime_bit_for_bit(spatial):
    from onnx import TensorProto as T, helper

    x = (np.random.default_rng(sum(spatial)).standard_normal((2, 16) + spatial) * 3).astype(np.float32)
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"])], "gap",
                              [helper.make_tensor_value_info("x", T.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", T.FLOAT, None)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    (want,) = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (got,) = refquant.Session(model, profile="onnxruntime").run(None, {"x": x})
    assert_same_bits(got, want)
    (exact,) = refquant.Session(model).run(None, {"x": x})
    assert_same_bits(exact, x.astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(np.float32))
