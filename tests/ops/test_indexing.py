"""Indexing by value: refquant/ops/indexing.py (GatherND, ScatterND, ScatterElements, OneHot, NonZero, Compress,
ReverseSequence, Unique; spec/ops/tensor.md).

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator, bit for bit, on hypothesis-drawn inputs;
- hand-derived values from the ONNX texts for the edges (negative and out-of-range indices, duplicates with
  each reduction, empty tensors, int limits, NaN) and refquant's documented choices.
The ONNX backend node cases of these ops run in test_onnx_node_cases.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import AttributeValueError, DTypeError, ShapeError
from refquant.ops import indexing

from .helpers import (
    BF16,
    FLOATS,
    assert_same_bits,
    assert_versions_and_types_follow_the_onnx_schemas,
    assert_versions_are_the_schema_versions_from_opset_10,
    run_reference,
    run_refquant,
)

TYPE_TABLES = {
    "GatherND": indexing.INDEXED_TYPES,
    "ScatterND": indexing.INDEXED_TYPES,
    "ScatterElements": indexing.INDEXED_TYPES,
    "NonZero": indexing.NON_ZERO_TYPES,
    "Compress": indexing.COMPRESS_TYPES,
    "ReverseSequence": indexing.REVERSE_TYPES,
    "Unique": indexing.UNIQUE_TYPES,
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    assert_versions_and_types_follow_the_onnx_schemas(op, TYPE_TABLES[op])


def test_one_hot_versions_and_value_types_follow_the_schema():
    import onnx

    from refquant.dtypes import types_at

    from onnx import TensorProto

    assert_versions_are_the_schema_versions_from_opset_10("OneHot")
    for v in range(9, 29):
        schema = onnx.defs.get_schema("OneHot", v, "")
        (t3,) = [c for c in schema.type_constraints if c.type_param_str == "T3"]
        names = {text[len("tensor(") : -1].upper() for text in t3.allowed_type_strs}
        wanted = {getattr(TensorProto, n) for n in names if n not in ("COMPLEX64", "COMPLEX128")}
        assert set(types_at(indexing.ONE_HOT_VALUE_TYPES, v)) == wanted, v


def _both(op, inputs, out_dtypes, opset, attrs=None):
    got = run_refquant(op, inputs, out_dtypes, opset=opset, attrs=attrs)
    want = run_reference(op, inputs, out_dtypes, opset=opset, attrs=attrs)
    for g, w in zip(got, want, strict=True):
        assert_same_bits(g, w, op)
    return got


# ----------------------------------------------------------------------------
# GatherND, ScatterND
# ----------------------------------------------------------------------------


@given(x=FLOATS, data=st.data())
def test_gather_nd_matches_onnx_reference(x, data):
    k = data.draw(st.integers(1, x.ndim))
    columns = [data.draw(hnp.arrays(np.int64, (3,), elements=st.integers(-d, d - 1))) for d in x.shape[:k]]
    _both("GatherND", {"x": x, "i": np.stack(columns, axis=-1)}, [np.float32], 13)


def test_gather_nd_batch_dims_and_negative_indices():
    data = np.arange(8, dtype=np.int32).reshape(2, 2, 2)
    indices = np.array([[1], [-2]], np.int64)  # batch 0 takes row 1, batch 1 row 0
    (y,) = run_refquant("GatherND", {"d": data, "i": indices}, [np.int32], opset=12, attrs={"batch_dims": 1})
    np.testing.assert_array_equal(y, [[2, 3], [4, 5]])


@pytest.mark.parametrize("bad", [2, -3])
def test_gather_nd_out_of_range_index_names_the_node_and_axis(bad):
    data = np.zeros((2, 3), np.float32)
    with pytest.raises(ShapeError, match=rf"GatherND.*index {bad} is outside \[-2, 1\].*axis 0"):
        run_refquant("GatherND", {"d": data, "i": np.array([[bad]], np.int64)}, [np.float32], opset=13)


def test_gather_nd_of_empty_indices():
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = run_refquant("GatherND", {"d": data, "i": np.zeros((0, 1), np.int64)}, [np.float32], opset=13)
    assert y.shape == (0, 3)


@pytest.mark.parametrize(
    ("reduction", "opset", "want"),
    [
        ("none", 16, [10.0, 2.0, 3.0]),  # duplicates: the last update in index order wins (documented)
        ("add", 16, [1.0 + 7.0 + 10.0, 2.0, 3.0]),
        ("mul", 16, [1.0 * 7.0 * 10.0, 2.0, 3.0]),
        ("max", 18, [10.0, 2.0, 3.0]),
        ("min", 18, [1.0, 2.0, 3.0]),
    ],
)
def test_scatter_nd_combines_duplicates_in_index_order(reduction, opset, want):
    data = np.array([1, 2, 3], np.float32)
    indices = np.array([[0], [-3]], np.int64)  # both name element 0
    updates = np.array([7, 10], np.float32)
    attrs = {} if reduction == "none" else {"reduction": reduction}
    (y,) = run_refquant("ScatterND", {"d": data, "i": indices, "u": updates}, [np.float32], opset=opset, attrs=attrs)
    np.testing.assert_array_equal(y, want)


def test_scatter_nd_float16_add_rounds_after_each_update():
    # 2048 + 1 = 2049 rounds to 2048 in float16 (ties to even), twice: 2048; one rounding at the end gives 2050
    data = np.array([2048], np.float16)
    (y,) = run_refquant("ScatterND", {"d": data, "i": np.array([[0], [0]], np.int64), "u": np.ones(2, np.float16)},
                        [np.float16], opset=16, attrs={"reduction": "add"})  # fmt: skip
    assert y[0] == 2048


def test_scatter_nd_integer_add_wraps():
    data = np.array([127], np.int8)
    (y,) = run_refquant("ScatterND", {"d": data, "i": np.array([[0]], np.int64), "u": np.array([1], np.int8)},
                        [np.int8], opset=16, attrs={"reduction": "add"})  # fmt: skip
    assert y[0] == -128


def test_scatter_nd_bfloat16_max_with_nan_propagates():
    data = np.array([1, 2], BF16)
    updates = np.array([np.nan, 5], BF16)
    (y,) = run_refquant("ScatterND", {"d": data, "i": np.array([[0], [1]], np.int64), "u": updates}, [BF16],
                        opset=18, attrs={"reduction": "max"})  # fmt: skip
    assert np.isnan(float(y[0])) and float(y[1]) == 5


def test_scatter_nd_refusals():
    data, updates = np.zeros(3, np.float32), np.ones(1, np.float32)
    with pytest.raises(AttributeValueError, match="reduction 'max' is not one of"):
        run_refquant("ScatterND", {"d": data, "i": np.array([[0]], np.int64), "u": updates}, [np.float32],
                     opset=16, attrs={"reduction": "max"})  # fmt: skip
    with pytest.raises(ShapeError, match=r"index 3 is outside \[-3, 2\]"):
        run_refquant("ScatterND", {"d": data, "i": np.array([[3]], np.int64), "u": updates}, [np.float32], opset=13)
    with pytest.raises(ShapeError, match="updates has shape"):
        run_refquant("ScatterND", {"d": data, "i": np.array([[0]], np.int64), "u": np.ones(2, np.float32)},
                     [np.float32], opset=13)  # fmt: skip
    with pytest.raises(DTypeError, match="not defined for bool"):
        run_refquant("ScatterND", {"d": np.zeros(2, bool), "i": np.array([[0]], np.int64), "u": np.ones(1, bool)},
                     [np.bool_], opset=16, attrs={"reduction": "add"})  # fmt: skip


@given(x=FLOATS, data=st.data())
def test_scatter_nd_matches_onnx_reference_without_duplicates(x, data):
    n = x.shape[0]
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    indices = np.array(rows, np.int64).reshape(-1, 1)
    updates = data.draw(hnp.arrays(np.float32, (len(rows),) + x.shape[1:], elements=st.floats(-5, 5, width=32)))
    _both("ScatterND", {"x": x, "i": indices, "u": updates}, [np.float32], 13)


# ----------------------------------------------------------------------------
# Scatter, ScatterElements


def test_scatter_is_scatter_elements_under_its_old_name():
    """The ONNX text's example (Scatter, axis=1): data [[1, 2, 3, 4, 5]], indices [[1, 3]], updates [[1.1, 2.1]]
    -> [[1, 1.1, 3, 2.1, 5]], at opset 10 (Scatter-9) and 11 (the deprecated Scatter-11)."""
    assert_versions_are_the_schema_versions_from_opset_10("Scatter")
    data = np.array([[1, 2, 3, 4, 5]], np.float32)
    inputs = {"d": data, "i": np.array([[1, 3]], np.int64), "u": np.array([[1.1, 2.1]], np.float32)}
    for opset in (10, 11):
        (y,) = run_refquant("Scatter", inputs, [np.float32], opset=opset, attrs={"axis": 1})
        assert y.tolist() == np.array([[1, 1.1, 3, 2.1, 5]], np.float32).tolist()
# ----------------------------------------------------------------------------


def test_scatter_elements_negative_axis_and_indices_with_add():
    data = np.zeros((2, 3), np.int32)
    indices = np.array([[-1, 0, -1]], np.int64)
    updates = np.array([[5, 6, 7]], np.int32)
    (y,) = run_refquant("ScatterElements", {"d": data, "i": indices, "u": updates}, [np.int32], opset=18,
                        attrs={"axis": -1, "reduction": "add"})  # fmt: skip
    np.testing.assert_array_equal(y, [[6, 0, 12], [0, 0, 0]])


def test_scatter_elements_int64_limits_wrap_and_min():
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    data = np.array([hi, lo], np.int64)
    indices = np.array([0, 1], np.int32)
    (y,) = run_refquant("ScatterElements", {"d": data, "i": indices, "u": np.array([1, -1], np.int64)}, [np.int64],
                        opset=16, attrs={"reduction": "add"})  # fmt: skip
    np.testing.assert_array_equal(y, [lo, hi])
    (y,) = run_refquant("ScatterElements", {"d": data, "i": indices, "u": np.array([0, 0], np.int64)}, [np.int64],
                        opset=18, attrs={"reduction": "min"})  # fmt: skip
    np.testing.assert_array_equal(y, [0, lo])


def test_scatter_elements_out_of_range_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"ScatterElements.*index -4 is outside \[-3, 2\]"):
        run_refquant("ScatterElements", {"d": np.zeros(3, np.float32), "i": np.array([-4], np.int64),
                                         "u": np.ones(1, np.float32)}, [np.float32], opset=13)  # fmt: skip


@given(x=FLOATS, data=st.data())
def test_scatter_elements_matches_onnx_reference(x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    size = x.shape[axis]
    indices = data.draw(hnp.arrays(np.int64, x.shape, elements=st.integers(-size, size - 1)))
    updates = data.draw(hnp.arrays(np.float32, x.shape, elements=st.floats(-5, 5, width=32)))
    reduction = data.draw(st.sampled_from(["add", "mul", "max", "min"]))
    got = run_refquant("ScatterElements", {"x": x, "i": indices, "u": updates}, [np.float32], opset=18,
                       attrs={"axis": axis, "reduction": reduction})[0]  # fmt: skip
    want = run_reference("ScatterElements", {"x": x, "i": indices, "u": updates}, [np.float32], opset=18,
                         attrs={"axis": axis, "reduction": reduction})[0]  # fmt: skip
    if reduction in ("max", "min"):  # a signed-zero tie keeps the update (float.md's Max rule), onnx.reference the data
        np.testing.assert_array_equal(got, want)
    else:
        assert_same_bits(got, want)


# ----------------------------------------------------------------------------
# OneHot, NonZero, Compress
# ----------------------------------------------------------------------------


def test_one_hot_negative_and_out_of_range_indices_and_float_depth():
    indices = np.array([0, -1, 3, -4, 2.7], np.float32)  # 2.7 truncates to 2; 3 and -4 are outside [-3, 2]
    values = np.array([-1, 9], np.int64)
    (y,) = run_refquant("OneHot", {"i": indices, "d": np.array([3.9], np.float32), "v": values}, [np.int64], opset=11)
    np.testing.assert_array_equal(
        y, [[9, -1, -1], [-1, -1, 9], [-1, -1, -1], [-1, -1, -1], [-1, -1, 9]]
    )


def test_one_hot_axis_zero_matches_onnx_reference():
    indices = np.array([[1, 0], [2, -2]], np.int64)
    _both("OneHot", {"i": indices, "d": np.array(3, np.int64), "v": np.array([0, 1], np.float32)}, [np.float32], 11,
          {"axis": 0})  # fmt: skip


def test_one_hot_refusals():
    with pytest.raises(ShapeError, match="depth must be >= 1"):
        run_refquant("OneHot", {"i": np.array([0], np.int64), "d": np.array(0, np.int64),
                                "v": np.array([0, 1], np.int64)}, [np.int64], opset=11)  # fmt: skip
    with pytest.raises(AttributeValueError, match="axis 3 is out of range"):
        run_refquant("OneHot", {"i": np.array([0], np.int64), "d": np.array(2, np.int64),
                                "v": np.array([0, 1], np.int64)}, [np.int64], opset=11, attrs={"axis": 3})  # fmt: skip


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                    elements=st.sampled_from([0.0, -0.0, 1.0, np.nan])))  # fmt: skip
def test_non_zero_matches_onnx_reference(x):
    (got,) = run_refquant("NonZero", {"x": x}, [np.int64], opset=13)
    if x.ndim:
        assert_same_bits(got, run_reference("NonZero", {"x": x}, [np.int64], opset=13)[0])
    else:
        assert got.shape == (0, int(x != 0))  # numpy's convention for a scalar: no coordinates


def test_non_zero_of_strings_and_bfloat16():
    (got,) = run_refquant("NonZero", {"x": np.array(["", "a", "b"], dtype=object)}, [np.int64], opset=13)
    np.testing.assert_array_equal(got, [[1, 2]])
    (got,) = run_refquant("NonZero", {"x": np.array([[0, 2], [-0.0, np.nan]], BF16)}, [np.int64], opset=13)
    np.testing.assert_array_equal(got, [[0, 1], [1, 1]])


def test_compress_shorter_condition_negative_axis_and_flattening():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    (y,) = run_refquant("Compress", {"x": x, "c": np.array([False, True])}, [np.int32], opset=11, attrs={"axis": -1})
    np.testing.assert_array_equal(y, [[1], [4]])
    (y,) = run_refquant("Compress", {"x": x, "c": np.array([True, False, False, True])}, [np.int32], opset=11)
    np.testing.assert_array_equal(y, [0, 3])
    with pytest.raises(ShapeError, match="condition has 4 values"):
        run_refquant("Compress", {"x": x, "c": np.ones(4, bool)}, [np.int32], opset=11, attrs={"axis": 1})
    with pytest.raises(AttributeValueError, match="negative axes are allowed from opset 11"):
        run_refquant("Compress", {"x": x, "c": np.ones(1, bool)}, [np.int32], opset=10, attrs={"axis": -1})


# ----------------------------------------------------------------------------
# ReverseSequence, Unique
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(("batch_axis", "time_axis"), [(1, 0), (0, 1)])
def test_reverse_sequence_matches_onnx_reference(batch_axis, time_axis):
    x = np.arange(12, dtype=np.float32).reshape(4, 3) if batch_axis == 1 else np.arange(12, dtype=np.float32).reshape(3, 4)
    lens = np.array([4, 0, 2], np.int64)
    attrs = {"batch_axis": batch_axis, "time_axis": time_axis}
    got = _both("ReverseSequence", {"x": x, "l": lens}, [np.float32], 10, attrs)[0]
    column = got[:, 1] if batch_axis == 1 else got[1]
    np.testing.assert_array_equal(column, (x[:, 1] if batch_axis == 1 else x[1]))  # length 0: unchanged


def test_reverse_sequence_refuses_lengths_beyond_the_time_axis():
    with pytest.raises(ShapeError, match=r"sequence_lens \[5, 1\] must lie in \[0, 4\]"):
        run_refquant("ReverseSequence", {"x": np.zeros((4, 2), np.float32), "l": np.array([5, 1], np.int64)},
                     [np.float32], opset=10)  # fmt: skip


def test_unique_sorted_and_first_occurrence_with_zeros_and_nan():
    x = np.array([2.0, -0.0, np.nan, 0.0, 2.0, np.nan, -1.0], np.float32)
    outs = [np.float32, np.int64, np.int64, np.int64]
    y, first, inverse, counts = run_refquant("Unique", {"x": x}, outs, opset=11)
    np.testing.assert_array_equal(y, [-1.0, 0.0, 2.0, np.nan])
    assert np.signbit(y[1])  # the first zero was -0.0
    np.testing.assert_array_equal(first, [6, 1, 0, 2])
    np.testing.assert_array_equal(inverse, [2, 1, 3, 1, 2, 3, 0])
    np.testing.assert_array_equal(counts, [1, 2, 2, 2])
    y, first, inverse, counts = run_refquant("Unique", {"x": x}, outs, opset=11, attrs={"sorted": 0})
    np.testing.assert_array_equal(first, [0, 1, 2, 6])
    np.testing.assert_array_equal(counts, [2, 2, 2, 1])


@given(x=hnp.arrays(np.int32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=st.integers(-3, 3)),
       data=st.data())  # fmt: skip
def test_unique_matches_onnx_reference_for_integers(x, data):
    attrs = {"sorted": 1}
    if data.draw(st.booleans()):
        attrs["axis"] = data.draw(st.integers(-x.ndim, x.ndim - 1))
    _both("Unique", {"x": x}, [np.int32, np.int64, np.int64, np.int64], 11, attrs)


def test_unique_of_an_empty_tensor():
    y, first, inverse, counts = run_refquant("Unique", {"x": np.zeros(0, np.int64)}, [np.int64] * 4, opset=11)
    assert y.shape == first.shape == inverse.shape == counts.shape == (0,)


@pytest.mark.parametrize(
    ("op", "x", "extra"),
    [
        ("NonZero", np.ones((3, 4, 5), np.float32), {}),
        ("Unique", np.arange(60, dtype=np.int64).reshape(3, 4, 5), {}),
        ("Compress", np.ones((3, 4), np.float32), {"c": np.ones(12, bool)}),
    ],
)
def test_data_dependent_outputs_stay_within_their_estimate(op, x, extra):
    """The budget's bound (spec/model.md): NonZero at most rank x elements, Unique and Compress the input."""
    import onnx

    from refquant import budget
    from refquant.node import Node

    from .helpers import model

    inputs = {"x": x} | extra
    outs = [np.int64] if op == "NonZero" else [x.dtype] + ([np.int64] * 3 if op == "Unique" else [])
    proto = model(op, inputs, outs, opset=13).graph.node[0]
    estimate = budget.estimate(Node(proto, 13, "n"), list(inputs.values()))
    got = run_refquant(op, inputs, outs, opset=13)
    assert estimate is not None
    assert estimate.allocations[0].elements >= got[0].size
    assert isinstance(proto, onnx.NodeProto)
