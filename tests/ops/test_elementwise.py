"""Elementwise operators: refquant/ops/elementwise.py (Add, Sub, Mul, Div, Relu, Clip, Round, Min, Max,
Where, Equal, Less, Greater, Not, Pow, Sqrt, Exp, Erf, Tanh, Sigmoid, LeakyRelu, HardSigmoid, HardSwish,
Gelu; spec/ops/float.md).

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs at several opsets (10, 13, ..., 28): bit
  for bit where the op is exactly defined, within 4 float32 ulps where both evaluate a function
  (onnx.reference rounds 2-4 times in float32);
- hand-derived values for the spec's rules and refquant's documented choices.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import DTypeError, NonFiniteError, ShapeError
from refquant.ops import elementwise

from .helpers import (
    F16,
    F32,
    F64,
    FLOATS,
    OPSETS,
    assert_error_names_the_problem,
    assert_float_function_near_onnx_reference,
    assert_same_bits,
    assert_versions_and_types_follow_the_onnx_schemas,
    assert_versions_are_the_schema_versions_from_opset_10,
    check_against_reference,
    is_float,
    is_int,
    op_opset_dtype,
    run_reference,
    run_refquant,
    schema_dtypes,
    values,
)

TYPE_TABLES = {
    "Add": elementwise.ARITHMETIC_TYPES,
    "Sub": elementwise.ARITHMETIC_TYPES,
    "Mul": elementwise.ARITHMETIC_TYPES,
    "Div": elementwise.ARITHMETIC_TYPES,
    "Relu": elementwise.RELU_TYPES,
    "Clip": elementwise.CLIP_TYPES,
    "Round": elementwise.ROUND_TYPES,
    "Min": elementwise.MIN_MAX_TYPES,
    "Max": elementwise.MIN_MAX_TYPES,
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    assert_versions_and_types_follow_the_onnx_schemas(op, TYPE_TABLES[op])


@pytest.mark.parametrize(
    "op",
    "Where Equal Less Greater Not Pow Sqrt Exp Erf Tanh Sigmoid LeakyRelu HardSigmoid HardSwish Gelu".split(),
)
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


# ----------------------------------------------------------------------------
# Add, Sub, Mul, Div, Relu, Round, Min, Max, Clip
# ----------------------------------------------------------------------------


@given(st.data())
def test_add_sub_mul_div_match_onnx_reference(data):
    op, opset, dtype = data.draw(op_opset_dtype(["Add", "Sub", "Mul", "Div"]))
    shape_a, shape_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)).input_shapes
    a, b = data.draw(values(dtype, shape_a)), data.draw(values(dtype, shape_b))
    if op == "Div" and is_int(dtype):
        b = np.where(b == 0, 1, b).astype(dtype)  # integer division by zero is an error (tested below)
    check_against_reference(op, {"A": a, "B": b}, [dtype], opset=opset)


def test_integer_div_truncates_toward_zero_and_integers_wrap():
    a = np.array([7, -7, 7, -7, -(2**31), 2**31 - 1], np.int32)
    b = np.array([2, 2, -2, -2, -1, -1], np.int32)
    # hand-derived: truncation toward zero; INT_MIN / -1 wraps to INT_MIN (onnxruntime: same quotients)
    assert run_refquant("Div", {"A": a, "B": b}, [a.dtype], opset=14)[0].tolist() == [
        3,
        -3,
        -3,
        3,
        -(2**31),
        -(2**31) + 1,
    ]
    add = run_refquant("Add", {"A": np.array([120], np.int8), "B": np.array([10], np.int8)}, [np.int8], opset=14)
    assert add[0].tolist() == [-126]


def test_integer_division_by_zero_is_an_error():
    a, b = np.array([1, 2], np.int64), np.array([1, 0], np.int64)
    with pytest.raises(NonFiniteError, match=r"^Div '#0': integer division by zero"):
        run_refquant("Div", {"A": a, "B": b}, [a.dtype], opset=14)


@given(st.data())
def test_relu_and_round_match_onnx_reference(data):
    op, opset, dtype = data.draw(op_opset_dtype(["Relu", "Round"]))
    x = data.draw(values(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
    check_against_reference(op, {"X": x}, [dtype], opset=opset)


def test_round_is_half_to_even_and_relu_of_minus_zero_is_plus_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999998, np.inf, np.nan], np.float32)
    got = run_refquant("Round", {"X": x}, [x.dtype], opset=11)[0]
    assert_same_bits(got, np.array([0.0, 2.0, 2.0, -0.0, -2.0, 2.0, np.inf, np.nan], np.float32))
    relu = run_refquant("Relu", {"X": np.array([-0.0, -1.0, np.nan], np.float32)}, [F32], opset=14)[0]
    assert_same_bits(relu, np.array([0.0, 0.0, np.nan], np.float32))


@given(st.data())
def test_min_max_match_onnx_reference(data):
    op, opset, dtype = data.draw(op_opset_dtype(["Min", "Max"]))
    count = data.draw(st.integers(1, 3))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=count, max_dims=3, max_side=3)).input_shapes
    inputs = {f"x{i}": data.draw(values(dtype, shape)) for i, shape in enumerate(shapes)}
    check_against_reference(op, inputs, [dtype], opset=opset)


@given(st.data())
def test_clip_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from(OPSETS))
    dtype = data.draw(st.sampled_from(schema_dtypes("Clip", opset)))
    has_min, has_max = data.draw(st.booleans()), data.draw(st.booleans())
    # Clip-11+ without a bound clips to T's lowest/largest value, onnx.reference does not:
    # there, infinities (in x or the other bound) are drawn only when both bounds are given
    # (tested by hand below).
    infinity = opset < 11 or (has_min and has_max)
    x = data.draw(values(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), infinity=infinity))
    bound = values(dtype, (), nan=False, infinity=infinity)
    low = data.draw(bound) if has_min else None
    high = data.draw(bound) if has_max else None
    if opset < 11:
        attrs = {k: float(v) for k, v in (("min", low), ("max", high)) if v is not None}
        check_against_reference("Clip", {"input": x}, [dtype], opset=opset, attrs=attrs)
        return
    inputs = {"input": x, ("min" if has_min else ""): low}
    if has_max:
        inputs["max"] = high
    if has_min and has_max:
        check_against_reference("Clip", inputs, [dtype], opset=opset)
        return
    # One bound: onnx.reference's np.clip(x, None, max) is np.minimum, which returns the bound on
    # a tie (+0 vs -0); refquant keeps x there. Zeros are compared without their sign.
    (got,), (want,) = (
        run(op="Clip", inputs=inputs, out_dtypes=[dtype], opset=opset) for run in (run_refquant, run_reference)
    )
    unsigned_zero = (lambda a: a + np.zeros((), a.dtype)) if is_float(dtype) else (lambda a: a)
    assert_same_bits(unsigned_zero(got), unsigned_zero(want))


def test_clip_min_greater_than_max_gives_max_and_missing_bounds_are_the_type_limits():
    x = np.array([-np.inf, -5.0, 0.5, 5.0, np.inf, np.nan], np.float32)
    largest = np.finfo(np.float32).max
    # Clip-13: "When 'min' is greater than 'max', the clip operator sets all the 'input' values to the value of 'max'"
    got = run_refquant("Clip", {"input": x, "min": np.float32(2.0), "max": np.float32(1.0)}, [F32], opset=13)[0]
    assert_same_bits(got, np.array([1, 1, 1, 1, 1, np.nan], np.float32))
    # min/max default to numeric_limits::lowest() / max(): +-inf become +-FLT_MAX (onnxruntime: the same)
    got = run_refquant("Clip", {"input": x}, [F32], opset=13)[0]
    assert_same_bits(got, np.array([-largest, -5, 0.5, 5, largest, np.nan], np.float32))
    got = run_refquant("Clip", {"input": x}, [F32], opset=10, attrs={"min": 0.0})[0]
    assert_same_bits(got, np.array([0, 0, 0.5, 5, largest, np.nan], np.float32))
    # Clip-6's schema defaults are -+FLT_MAX for every T: they clip float64, and are +-inf in float16
    wide = np.array([-np.inf, 1e300, 1.0])
    assert_same_bits(run_refquant("Clip", {"input": wide}, [F64], opset=10)[0], np.array([-largest, largest, 1.0]))
    half = np.array([-np.inf, 1.0], np.float16)
    assert_same_bits(run_refquant("Clip", {"input": half}, [F16], opset=10)[0], half)
    ints = np.array([-128, 0, 127], np.int8)
    got = run_refquant("Clip", {"input": ints, "": None, "max": np.int8(100)}, [np.int8], opset=13)[0]
    assert got.tolist() == [-128, 0, 100]


# ----------------------------------------------------------------------------
# float functions, comparisons, Where
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Sqrt", "Exp", "Erf", "Tanh", "Sigmoid", "LeakyRelu", "HardSigmoid", "HardSwish"])
@given(x=FLOATS, opset=st.sampled_from([14, 18, 22]))
def test_float_functions_are_within_four_ulps_of_onnx_reference(op, x, opset):
    assert_float_function_near_onnx_reference(op, x, opset)


@given(x=FLOATS, y=FLOATS)
def test_comparisons_and_where_match_onnx_reference(x, y):
    y = y.reshape(-1)[: x.shape[-1]] if y.size >= x.shape[-1] else np.zeros(x.shape[-1], np.float32)
    for op in ("Equal", "Less", "Greater"):
        inputs = {"a": x, "b": y}
        assert_same_bits(run_refquant(op, inputs, [np.bool_], opset=13)[0], run_reference(op, inputs, [np.bool_], opset=13)[0])
    inputs = {"c": x > 0, "a": x, "b": y}
    assert_same_bits(run_refquant("Where", inputs, [np.float32], opset=16)[0],
                     run_reference("Where", inputs, [np.float32], opset=16)[0])  # fmt: skip


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "inputs", "opset", "attrs", "error", "message"),
    [
        ("Add", {"A": np.ones((2, 3), np.float32), "B": np.ones(4, np.float32)}, 14, None, ShapeError,
         r"^Add '#0': shapes do not broadcast \(multidirectional broadcasting\): A \(2, 3\), B \(4,\)$"),
        ("Max", {"a": np.ones(2, np.float32), "b": np.ones(2, np.float32), "c": np.ones(3, np.float32)}, 13, None,
         ShapeError, r"data_0 \(2,\), data_1 \(2,\), data_2 \(3,\)"),
        ("Mul", {"A": np.ones(2, np.float32), "B": np.ones(2, np.float64)}, 14, None, DTypeError,
         "inputs must share one element type: A is float, B is double"),
        ("Add", {"A": np.ones(2, np.int8), "B": np.ones(2, np.int8)}, 13, None, DTypeError,
         "A has type int8; allowed at this opset"),
        ("Relu", {"X": np.ones(2, np.int32)}, 13, None, DTypeError, "X has type int32"),
        ("Clip", {"input": np.ones(2, np.float32), "min": np.ones(2, np.float32)}, 13, None, ShapeError,
         r"min must be a scalar, got shape \(2,\)"),
        ("Clip", {"input": np.ones(2, np.float32), "min": np.float64(0)}, 13, None, DTypeError,
         "min has type double, it must match input"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(op, inputs, opset, attrs, error, message):
    assert_error_names_the_problem(op, inputs, opset, attrs, error, message)
