"""Reductions and scans: refquant/ops/reduce.py (ReduceMin, ReduceMax, ReduceSum, ReduceMean, ArgMax, TopK,
CumSum; spec/ops/float.md; ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp,
ArgMin: spec/ops/tensor.md).

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs: bit for bit for ReduceMin/ReduceMax
  (at opsets 10, 13, ..., 28), ArgMax, TopK and integer CumSum; within a stated bound for float CumSum;
- float64 definitions written here (ReduceSum, ReduceMean and CumSum: the float64 sums, rounded once);
- hand-derived values for the spec's choices (ties, NaN, empty reductions) and errors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from refquant.ops import reduce

from ..helpers import node_cases
from .helpers import (
    F16,
    FLOATS,
    assert_error_names_the_problem,
    assert_same_bits,
    assert_versions_and_types_follow_the_onnx_schemas,
    assert_versions_are_the_schema_versions_from_opset_10,
    check_against_reference,
    node_case_outputs,
    op_opset_dtype,
    run_reference,
    run_refquant,
    values,
    wrap,
)

TYPE_TABLES = {
    "ReduceMin": reduce.REDUCE_TYPES,
    "ReduceMax": reduce.REDUCE_TYPES,
    "CumProd": reduce.CUMPROD_TYPES,
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    assert_versions_and_types_follow_the_onnx_schemas(op, TYPE_TABLES[op])


@pytest.mark.parametrize("op", ["ArgMax", "TopK", "CumSum", "ReduceMean", "ReduceSum"])
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


# ----------------------------------------------------------------------------
# ReduceMin, ReduceMax, ReduceSum, ReduceMean
# ----------------------------------------------------------------------------


@given(st.data())
def test_reduce_min_max_match_onnx_reference(data):
    op, opset, dtype = data.draw(op_opset_dtype(["ReduceMin", "ReduceMax"]))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0 if dtype != np.bool_ else 1, max_side=3))
    x = data.draw(values(dtype, shape))
    rank = len(shape)
    axes = (
        data.draw(
            st.lists(st.integers(-rank if opset >= 11 else 0, rank - 1), unique_by=lambda a: a % rank, max_size=rank)
        )
        if rank
        else []
    )
    attrs = {"keepdims": data.draw(st.integers(0, 1))}
    inputs = {"data": x}
    if opset >= 18:
        attrs["noop_with_empty_axes"] = data.draw(st.integers(0, 1))
        if axes or data.draw(st.booleans()):
            inputs["axes"] = np.array(axes, np.int64)
    elif axes:
        attrs["axes"] = axes
    check_against_reference(op, inputs, [dtype], opset=opset, attrs=attrs)


def test_reductions_over_an_empty_set_give_the_identity_values():
    empty = np.zeros((2, 0), np.float16)
    got = run_refquant("ReduceMin", {"data": empty}, [F16], opset=13, attrs={"axes": [1], "keepdims": 0})[0]
    assert_same_bits(got, np.array([np.inf, np.inf], np.float16))
    ints = np.zeros((0, 3), np.int8)
    got = run_refquant("ReduceMax", {"data": ints, "axes": np.array([0], np.int64)}, [np.int8], opset=18)[0]
    assert got.tolist() == [[-128, -128, -128]]


@given(x=FLOATS, opset=st.sampled_from([13, 18]))
def test_reduce_sum_and_mean_are_the_rounded_float64_values(x, opset):
    axes = np.array([-1], np.int64)
    for op, want in (("ReduceSum", x.astype(np.float64).sum(-1, keepdims=True)),
                     ("ReduceMean", x.astype(np.float64).mean(-1, keepdims=True))):  # fmt: skip
        inputs = {"x": x, "axes": axes} if (op == "ReduceSum" or opset >= 18) else {"x": x}
        attrs = None if len(inputs) == 2 else {"axes": [-1]}
        (got,) = run_refquant(op, inputs, [np.float32], opset=opset, attrs=attrs)
        assert_same_bits(got, want.astype(np.float32))


# ----------------------------------------------------------------------------
# ArgMax, TopK: exact
# ----------------------------------------------------------------------------

# few distinct values, so that ties are common
TIED = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                  elements=st.sampled_from([-2.0, -0.0, 0.0, 1.0, 1.5, 3.0, np.nan, np.inf]))  # fmt: skip


@given(x=TIED, data=st.data())
def test_argmax_matches_onnx_reference(x, data):
    opset = data.draw(st.sampled_from([11, 12, 13]))
    attrs = {"axis": data.draw(st.integers(-x.ndim, x.ndim - 1)), "keepdims": data.draw(st.sampled_from([0, 1]))}
    if opset >= 12:
        attrs["select_last_index"] = data.draw(st.sampled_from([0, 1]))
    (got,) = run_refquant("ArgMax", {"x": x}, [np.int64], opset=opset, attrs=attrs)
    assert_same_bits(got, run_reference("ArgMax", {"x": x}, [np.int64], opset=opset, attrs=attrs)[0])


def test_argmax_picks_the_first_or_last_maximum_and_nan_is_a_maximum():
    x = np.array([[1, 3, 3, 2], [np.nan, 5, np.nan, 1]], np.float32)
    assert run_refquant("ArgMax", {"x": x}, [np.int64], opset=13, attrs={"axis": 1})[0].tolist() == [[1], [0]]
    last = {"axis": 1, "keepdims": 0, "select_last_index": 1}
    assert run_refquant("ArgMax", {"x": x}, [np.int64], opset=13, attrs=last)[0].tolist() == [2, 2]
    with pytest.raises(AttributeValueError, match="negative axes are allowed from opset 11"):
        run_refquant("ArgMax", {"x": x}, [np.int64], opset=10, attrs={"axis": -1})


@given(x=TIED, data=st.data())
def test_topk_matches_onnx_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    k = np.array([data.draw(st.integers(0, x.shape[axis]))], np.int64)
    opset = data.draw(st.sampled_from([10, 11, 24]))
    attrs = {"axis": axis} | ({"largest": data.draw(st.sampled_from([0, 1]))} if opset >= 11 else {})
    inputs = {"x": x, "k": k}
    got = run_refquant("TopK", inputs, [np.float32, np.int64], opset=opset, attrs=attrs)
    want = run_reference("TopK", inputs, [np.float32, np.int64], opset=opset, attrs=attrs)
    assert_same_bits(got[0], want[0], "Values")
    assert_same_bits(got[1], want[1], "Indices")


def test_topk_ties_come_in_index_order_for_largest_and_smallest():
    x = np.array([2, 1, 2, 1, 2], np.int32)
    for largest, values, indices in ((1, [2, 2, 2, 1], [0, 2, 4, 1]), (0, [1, 1, 2], [1, 3, 0])):
        k = np.array([len(values)], np.int64)
        got = run_refquant("TopK", {"x": x, "k": k}, [np.int32, np.int64], opset=11, attrs={"largest": largest})
        assert got[0].tolist() == values and got[1].tolist() == indices
    with pytest.raises(ShapeError, match=r"K = 6 must lie in \[0, 5\]"):
        run_refquant("TopK", {"x": x, "k": np.array([6], np.int64)}, [np.int32, np.int64], opset=11)
    with pytest.raises(DTypeError, match="X has type int32"):
        run_refquant("TopK", {"x": x, "k": np.array([1], np.int64)}, [np.int32, np.int64], opset=10)


# ----------------------------------------------------------------------------
# CumSum
# ----------------------------------------------------------------------------


@given(x=FLOATS, data=st.data())
def test_cumsum_is_the_rounded_float64_prefix_sum_and_near_onnx_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    exclusive, reverse = data.draw(st.sampled_from([0, 1])), data.draw(st.sampled_from([0, 1]))
    inputs = {"x": x, "axis": np.array(axis, data.draw(st.sampled_from([np.int32, np.int64])))}
    attrs = {"exclusive": exclusive, "reverse": reverse}
    (got,) = run_refquant("CumSum", inputs, [np.float32], opset=14, attrs=attrs)
    wide = np.flip(x.astype(np.float64), axis) if reverse else x.astype(np.float64)
    sums = np.cumsum(wide, axis=axis)
    if exclusive:  # 0, then the inclusive sums but the last (y[1] = x[0] keeps x[0]'s sign of zero)
        sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis)), np.delete(sums, -1, axis)], axis)
    assert_same_bits(got, (np.flip(sums, axis) if reverse else sums).astype(np.float32))
    # onnx.reference adds in float32: n - 1 roundings of at most 2**-24 * sum|x| each
    (want,) = run_reference("CumSum", inputs, [np.float32], opset=14, attrs=attrs)
    bound = x.shape[axis] * 2.0**-24 * np.sum(np.abs(x.astype(np.float64)), axis=axis, keepdims=True)
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64])
def test_integer_cumsum_wraps_and_matches_onnx_reference(dtype):
    info = np.iinfo(dtype)
    x = np.array([[info.max, 1, 2], [3, info.max, info.max]], dtype)
    for exclusive, reverse in itertools.product((0, 1), repeat=2):
        inputs = {"x": x, "axis": np.array(1, np.int64)}
        attrs = {"exclusive": exclusive, "reverse": reverse}
        (got,) = run_refquant("CumSum", inputs, [dtype], opset=14, attrs=attrs)
        assert_same_bits(got, run_reference("CumSum", inputs, [dtype], opset=14, attrs=attrs)[0])
    assert run_refquant("CumSum", {"x": x, "axis": np.array(1, np.int64)}, [dtype], opset=14)[0][0, 1] == info.min


# ----------------------------------------------------------------------------
# CumProd
# ----------------------------------------------------------------------------

CUMPROD_CASES = node_cases(r"^test_cumprod_")


@pytest.mark.parametrize("case", CUMPROD_CASES, ids=lambda c: c.name)
def test_cumprod_node_case(case):
    """The cases' products are exact small numbers: bit for bit."""
    for got, want in node_case_outputs(case):
        assert_same_bits(got, want, case.name)


def test_cumprod_node_case_list_is_current():
    assert len(CUMPROD_CASES) == 9  # onnx 1.23.2


def test_cumprod_hand_derived():
    x = np.array([[1.0, 2.0, 3.0], [-0.5, 4.0, 0.0]], np.float32)
    def run(**attrs):
        return run_refquant("CumProd", {"x": x, "axis": np.array(-1, np.int32)}, [np.float32], opset=26,
                            attrs=attrs)[0]
    np.testing.assert_array_equal(run(), [[1, 2, 6], [-0.5, -2, -0.0]])
    np.testing.assert_array_equal(run(exclusive=1), [[1, 1, 2], [1, -0.5, -2]])
    np.testing.assert_array_equal(run(reverse=1), [[6, 6, 3], [-0.0, 0, 0]])
    np.testing.assert_array_equal(run(exclusive=1, reverse=1), [[6, 3, 1], [0, 0, 1]])
    # float64 products rounded once: 1e30 * 1e30 * 1e-30 = 1e30, not float32's inf
    big = np.array([1e30, 1e30, 1e-30], np.float32)
    (y,) = run_refquant("CumProd", {"x": big, "axis": np.array(0, np.int64)}, [np.float32], opset=26)
    assert_same_bits(y, np.array([1e30, np.inf, 1e30], np.float32))


@given(x=FLOATS, data=st.data())
def test_cumprod_is_the_rounded_float64_prefix_product(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    x = (x / 8).astype(np.float32)  # products of up to 5 factors of |x| <= 2.5: no overflow
    exclusive, reverse = data.draw(st.sampled_from([0, 1])), data.draw(st.sampled_from([0, 1]))
    inputs = {"x": x, "axis": np.array(axis, np.int64)}
    (got,) = run_refquant("CumProd", inputs, [np.float32], opset=26, attrs={"exclusive": exclusive, "reverse": reverse})
    wide = np.flip(x.astype(np.float64), axis) if reverse else x.astype(np.float64)
    products = np.cumprod(wide, axis=axis)
    if exclusive:
        products = np.concatenate([np.ones_like(np.take(products, [0], axis)), np.delete(products, -1, axis)], axis)
    assert_same_bits(got, (np.flip(products, axis) if reverse else products).astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64])
def test_integer_cumprod_wraps_and_matches_onnx_reference(dtype):
    info = np.iinfo(dtype)
    x = np.array([[info.max, 3, 2], [5, info.max, 7]], dtype)
    for exclusive, reverse in itertools.product((0, 1), repeat=2):
        check_against_reference("CumProd", {"x": x, "axis": np.array(1, np.int64)}, [dtype], opset=26,
                                attrs={"exclusive": exclusive, "reverse": reverse})
    # info.max * 3 wraps: the product modulo 2**bits, read in T
    want = (int(info.max) * 3) % 2 ** (8 * x.itemsize)
    want = want - 2 ** (8 * x.itemsize) if want > info.max else want
    assert run_refquant("CumProd", {"x": x, "axis": np.array(1, np.int64)}, [dtype], opset=26)[0][0, 1] == want


@pytest.mark.parametrize(
    ("op", "inputs", "opset", "attrs", "error", "message"),
    [
        ("ReduceMin", {"data": np.ones((2, 3), np.float32)}, 13, {"axes": [1, -1]}, AttributeValueError,
         r"axes \[1, -1\] name an axis twice"),
        ("ReduceMax", {"data": np.ones((2, 3), np.float32)}, 10, {"axes": [-1]}, AttributeValueError,
         "negative axes are allowed from opset 11"),
        ("CumProd", {"x": np.ones((2, 3), np.float32), "axis": np.array([0, 1], np.int64)}, 26, None, ShapeError,
         r"axis must be a scalar \(0-D tensor\), got shape \(2,\)"),
        ("CumProd", {"x": np.ones(3, np.int8), "axis": np.array(0, np.int64)}, 26, None, DTypeError,
         "x has type int8"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(op, inputs, opset, attrs, error, message):
    assert_error_names_the_problem(op, inputs, opset, attrs, error, message)


# ----------------------------------------------------------------------------
# ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp, ArgMin
# ----------------------------------------------------------------------------

OTHER_REDUCTIONS = ["ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare"]
LOG_REDUCTIONS = ["ReduceLogSum", "ReduceLogSumExp"]


@pytest.mark.parametrize("op", OTHER_REDUCTIONS + ["ArgMin"])
def test_more_reductions_follow_the_onnx_schemas(op):
    table = reduce.ARGMAX_TYPES if op == "ArgMin" else reduce.OTHER_REDUCE_TYPES
    assert_versions_and_types_follow_the_onnx_schemas(op, table)


@pytest.mark.parametrize("op", LOG_REDUCTIONS)
def test_log_reductions_drop_the_integers_at_28(op):
    from .helpers import schema_protos

    assert_versions_are_the_schema_versions_from_opset_10(op)
    for v in range(1, 29):
        assert set(reduce.log_reduce_types(v)) == schema_protos(op, v), v


def _float64_oracle(op, x64, axes):
    """The float64 definitions written out (x64: the float64 input, keepdims=1)."""
    if op == "ReduceProd":
        return np.prod(x64, axis=axes, keepdims=True)
    if op == "ReduceL1":
        return np.sum(np.abs(x64), axis=axes, keepdims=True)
    if op == "ReduceSumSquare":
        return np.sum(x64 * x64, axis=axes, keepdims=True)
    if op == "ReduceL2":
        return np.sqrt(np.sum(x64 * x64, axis=axes, keepdims=True))
    if op == "ReduceLogSum":
        return np.log(np.sum(x64, axis=axes, keepdims=True))
    peak = np.max(x64, axis=axes, keepdims=True)
    return peak + np.log(np.sum(np.exp(x64 - peak), axis=axes, keepdims=True))  # the spec's shifted form


@given(x=FLOATS, data=st.data())
def test_float_reductions_are_the_float64_values_rounded_once(x, data):
    op = data.draw(st.sampled_from(OTHER_REDUCTIONS + LOG_REDUCTIONS))
    opset = data.draw(st.sampled_from([13, 18]))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    x = np.abs(x) if op == "ReduceLogSum" else x
    inputs = {"data": x}
    attrs = {"keepdims": 1}
    if opset >= 18:
        inputs["axes"] = np.array([axis], np.int64)
    else:
        attrs["axes"] = [axis]
    (got,) = run_refquant(op, inputs, [np.float32], opset=opset, attrs=attrs)
    with np.errstate(all="ignore"):
        want = _float64_oracle(op, x.astype(np.float64), (axis % x.ndim,)).astype(np.float32)
    assert_same_bits(got, want)
    (ref,) = run_reference(op, inputs, [np.float32], opset=opset, attrs=attrs)
    # onnx.reference computes in T, unshifted: log(exp(x)) of a tiny x is 0 there
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 if op == "ReduceLogSumExp" else 1e-30)


def test_more_reductions_over_an_empty_set():
    x = np.zeros((0, 2), np.float32)
    want = {"ReduceProd": 1.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0, "ReduceLogSum": -np.inf,
            "ReduceLogSumExp": -np.inf}  # fmt: skip
    for op, value in want.items():
        (got,) = run_refquant(op, {"data": x}, [np.float32], opset=13, attrs={"axes": [0], "keepdims": 0})
        np.testing.assert_array_equal(got, [value, value])


def test_log_sum_exp_does_not_overflow_and_handles_infinities_and_nan():
    x = np.array([[1000, 1000], [-np.inf, -np.inf], [np.inf, 1], [np.nan, 1]], np.float32)
    (got,) = run_refquant("ReduceLogSumExp", {"data": x}, [np.float32], opset=13, attrs={"axes": [1], "keepdims": 0})
    np.testing.assert_array_equal(got, [np.float32(1000 + np.log(2)), -np.inf, np.inf, np.nan])


def test_integer_reductions_wrap_and_l2_is_the_exact_floor_sqrt():
    x = np.array([[2**20, 2**12], [-(2**31), 3]], np.int32)
    (prod,) = run_refquant("ReduceProd", {"data": x}, [np.int32], opset=13, attrs={"axes": [1], "keepdims": 0})
    np.testing.assert_array_equal(prod, [wrap(2**32, np.int32), wrap(-(2**31) * 3, np.int32)])
    (l1,) = run_refquant("ReduceL1", {"data": x}, [np.int32], opset=13, attrs={"axes": [1], "keepdims": 0})
    np.testing.assert_array_equal(l1, [2**20 + 2**12, wrap(2**31 + 3, np.int32)])
    (sq,) = run_refquant("ReduceSumSquare", {"data": x}, [np.int32], opset=13, attrs={"axes": [1], "keepdims": 0})
    np.testing.assert_array_equal(sq, [wrap(2**40 + 2**24, np.int32), wrap(2**62 + 9, np.int32)])
    big = np.array([2**62 - 1, 2**62 - 1], np.int64)  # squares overflow int64; the exact root does not
    (l2,) = run_refquant("ReduceL2", {"data": big}, [np.int64], opset=13, attrs={"keepdims": 0})
    assert int(l2) == math.isqrt(2 * (2**62 - 1) ** 2)


def test_integer_log_sum_truncates_before_28_and_refuses_log_of_zero():
    (got,) = run_refquant("ReduceLogSum", {"data": np.array([10, 10], np.int64)}, [np.int64], opset=18)
    assert int(got.reshape(())) == 2  # log(20) = 2.99...
    with pytest.raises(NonFiniteError, match="not finite"):
        run_refquant("ReduceLogSum", {"data": np.array([0, 0], np.int32)}, [np.int32], opset=18)
    with pytest.raises(DTypeError, match="allowed at this opset"):
        run_refquant("ReduceLogSum", {"data": np.array([1], np.int32)}, [np.int32], opset=28)


def test_noop_with_empty_axes_returns_the_input():
    x = np.array([[1, 2], [3, 4]], np.float32)
    (got,) = run_refquant("ReduceProd", {"data": x}, [np.float32], opset=18, attrs={"noop_with_empty_axes": 1})
    assert_same_bits(got, x)


@given(x=TIED, data=st.data())
def test_argmin_matches_onnx_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    attrs = {"axis": axis, "keepdims": data.draw(st.integers(0, 1)), "select_last_index": data.draw(st.integers(0, 1))}
    got = run_refquant("ArgMin", {"x": x}, [np.int64], opset=13, attrs=attrs)
    assert_same_bits(got[0], run_reference("ArgMin", {"x": x}, [np.int64], opset=13, attrs=attrs)[0])


def test_argmin_picks_the_first_or_last_minimum_and_nan_is_a_minimum():
    x = np.array([3, 1, np.nan, 1, np.nan], np.float32)
    assert run_refquant("ArgMin", {"x": x}, [np.int64], opset=13)[0].tolist() == [2]
    assert run_refquant("ArgMin", {"x": x}, [np.int64], opset=13, attrs={"select_last_index": 1})[0].tolist() == [4]
    y = np.array([3, 1, 2, 1], np.int8)
    assert run_refquant("ArgMin", {"x": y}, [np.int64], opset=13, attrs={"select_last_index": 1})[0].tolist() == [3]
    with pytest.raises(ShapeError, match="empty"):
        run_refquant("ArgMin", {"x": np.zeros((0,), np.float32)}, [np.int64], opset=13)
    with pytest.raises(AttributeValueError, match="negative axes are allowed from opset 11"):
        run_refquant("ArgMin", {"x": y}, [np.int64], opset=10, attrs={"axis": -1})
