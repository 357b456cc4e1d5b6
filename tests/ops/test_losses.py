"""Losses: refquant/ops/losses.py (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss; spec/ops/losses.md).

Expected values come from independent sources:
- the ONNX backend node cases (single-node, and the expanded SoftmaxCrossEntropyLoss graphs that run
  LogSoftmax and NegativeLogLikelihoodLoss), within each case's rtol and atol;
- hand-derived values on tiny inputs (the examples of the ONNX NegativeLogLikelihoodLoss text);
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs, within a stated bound (it computes in T);
- the ONNX schemas' versions and element types (onnx.defs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import AttributeValueError, DTypeError, ShapeError
from refquant.ops import losses

from ..helpers import node_cases
from .helpers import (
    assert_versions_and_types_follow_the_onnx_schemas,
    node_case_outputs,
    run_reference,
    run_refquant,
)

NLL = "NegativeLogLikelihoodLoss"
SCE = "SoftmaxCrossEntropyLoss"
LOSS_CASES = node_cases(r"^test_(nllloss|sce)_")


@pytest.mark.parametrize(("op", "table"), [(NLL, losses.NLL_TYPES), (SCE, losses.SCE_TYPES)])
def test_versions_and_types_follow_the_onnx_schemas(op, table):
    """T by version, and Tind (int32, int64) at every version: the schema's types are both constraints'."""
    assert_versions_and_types_follow_the_onnx_schemas(op, {**table, 12: table[12] + losses.INDEX_TYPES})


def test_the_node_case_list_is_current():
    singles = [c for c in LOSS_CASES if not c.name.endswith("_expanded")]
    assert len(singles) == 18 + 34 and len(LOSS_CASES) == 2 * 18 + 2 * 34  # onnx 1.23.2


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: c.name)
def test_node_case(case):
    for got, want in node_case_outputs(case):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


# -- hand-derived: the examples of the ONNX text --------------------------------------------------------------

X = np.array([[[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]], [[0.0, 1.0], [2.0, 2.0], [1.0, 2.0]]], np.float64)  # N, C, d1
TARGET = np.array([[2, 1], [0, 2]], np.int64)
WEIGHT = np.array([0.2, 0.3, 0.1], np.float64)


def _nll(x=X, target=TARGET, weight=None, **attrs):
    inputs = {"input": x, "target": target, "weight": weight}
    return run_refquant(NLL, inputs, [x.dtype], opset=22, attrs=attrs)[0]


def test_nll_examples_of_the_onnx_text():
    np.testing.assert_array_equal(_nll(reduction="none"), [[-3.0, -2.0], [-0.0, -2.0]])
    assert _nll(weight=WEIGHT, reduction="sum") == pytest.approx(-1.1, abs=1e-15)
    # -(0.3 + 0.6 + 0 + 0.2) / (0.1 + 0.3 + 0.2 + 0.1)
    assert _nll(weight=WEIGHT) == pytest.approx(-1.1 / 0.7, abs=1e-15)
    assert _nll() == (-3 - 2 - 0 - 2) / 4


def test_ignore_index_zeroes_the_loss_and_leaves_the_mean_denominator():
    # target [[2, 1], [0, 2]], ignore 2: only -2 (n 0, d 1) and -0 (n 1, d 0) remain
    np.testing.assert_array_equal(_nll(ignore_index=2, reduction="none"), [[0.0, -2.0], [-0.0, 0.0]])
    assert _nll(ignore_index=2) == -2 / 2  # without weight: divided by the 2 samples kept
    assert _nll(weight=WEIGHT, ignore_index=2) == pytest.approx(-0.6 / 0.5, abs=1e-15)
    # a negative ignore_index (-1) may appear in target; every sample ignored: 0 / 0
    everything = np.full_like(TARGET, -1)
    assert np.isnan(_nll(target=everything, ignore_index=-1))
    assert _nll(target=everything, ignore_index=-1, reduction="sum") == 0


def test_sce_is_nll_of_the_log_softmax_over_axis_1():
    scores = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float64)
    labels = np.array([2, 0], np.int64)
    loss, log_prob = run_refquant(SCE, {"scores": scores, "labels": labels}, [np.float64, np.float64], opset=13,
                                  attrs={"reduction": "none"})
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    np.testing.assert_allclose(log_prob, [[1 - lse, 2 - lse, 3 - lse], [-math.log(3)] * 3], rtol=1e-15)
    np.testing.assert_allclose(loss, [lse - 3, math.log(3)], rtol=1e-15)


# -- onnx.reference on random inputs ----------------------------------------------------------------------------

SHAPES = st.sampled_from([(3, 4), (2, 3, 5), (2, 4, 2, 3)])


@given(data=st.data(), shape=SHAPES, reduction=st.sampled_from(["none", "sum", "mean"]),
       weighted=st.booleans(), ignore=st.sampled_from([None, 1]))  # fmt: skip
def test_near_onnx_reference(data, shape, reduction, weighted, ignore):
    """ignore_index 1 or none: onnx.reference averages over all samples when ignore_index is -1 without weight
    (its `elif ignore_index != -1`), the spec over the samples kept (spec/ops/losses.md)."""
    scores = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-8, 8, width=32)))
    target_shape = shape[:1] + shape[2:]
    target = data.draw(hnp.arrays(np.int64, target_shape, elements=st.integers(0, shape[1] - 1)))
    if ignore is not None and reduction == "mean":
        target.flat[0] = 0  # some sample kept: the mean's denominator is not 0
    weight = data.draw(hnp.arrays(np.float32, (shape[1],), elements=st.floats(0.25, 2, width=32))) if weighted else None
    attrs = {"reduction": reduction} | ({} if ignore is None else {"ignore_index": ignore})
    for op, inputs, opset, n in ((NLL, {"input": scores, "target": target, "weight": weight}, 22, 1),
                                 (SCE, {"scores": scores, "labels": target, "weights": weight}, 13, 2)):
        got = run_refquant(op, inputs, [np.float32] * n, opset=opset, attrs=attrs)
        want = run_reference(op, inputs, [np.float32] * n, opset=opset, attrs=attrs)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == np.float32 and g.shape == w.shape
            # float32 sums of up to 24 terms of |x| <= 8 * 2 plus a float32 log-softmax: absolute slack
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)


# -- errors name the node and the problem -------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "inputs", "attrs", "error", "message"), [
    (NLL, {"input": np.ones(3, np.float32), "target": np.zeros(3, np.int64)}, {}, ShapeError,
     r"NegativeLogLikelihoodLoss '#0': input must have shape \(N, C, d1, ...\), got rank 1"),
    (NLL, {"input": np.ones((2, 3), np.float32), "target": np.zeros((2, 1), np.int64)}, {}, ShapeError,
     r"target has shape \(2, 1\), expected \(2,\)"),
    (NLL, {"input": np.ones((2, 3), np.float32), "target": np.array([0, 3], np.int64)}, {}, ShapeError,
     r"target value 3 is outside \[0, 2\]"),
    (NLL, {"input": np.ones((2, 3), np.float32), "target": np.zeros(2, np.float32)}, {}, DTypeError,
     "target has type float"),
    (SCE, {"scores": np.ones((2, 3), np.float32), "labels": np.zeros(2, np.int32)}, {"reduction": "avg"},
     AttributeValueError, "SoftmaxCrossEntropyLoss '#0': reduction 'avg' is not one of"),
    (SCE, {"scores": np.ones((2, 3), np.float32), "labels": np.zeros(2, np.int32),
           "weights": np.ones(2, np.float32)}, {}, ShapeError, r"weights has shape \(2,\), expected \(3,\)"),
])  # fmt: skip
def test_errors_name_the_node_and_the_problem(op, inputs, attrs, error, message):
    with pytest.raises(error, match=message):
        run_refquant(op, inputs, [np.float32], opset=13, attrs=attrs)
