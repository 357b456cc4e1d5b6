"""Elementwise operators: refquant/ops/elementwise.py (Add, Sub, Mul, Div, Relu, Clip, Round, Min, Max,
Where, Equal, Less, Greater, LessOrEqual, GreaterOrEqual, Not, And, Or, Xor, BitwiseAnd, BitwiseOr,
BitwiseXor, BitwiseNot, BitShift, Pow, Sqrt, Exp, Erf, Tanh, Sigmoid, LeakyRelu, HardSigmoid, HardSwish,
Gelu, Abs, Neg, Sign, Floor, Ceil, Reciprocal, Log, the trigonometric and hyperbolic functions, IsNaN,
IsInf, Sum, Mean, Mod; spec/ops/float.md).

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs at several opsets (10, 13, ..., 28): bit
  for bit where the op is exactly defined, within 4 float32 ulps where both evaluate a function
  (onnx.reference rounds 2-4 times in float32);
- the C library's float64 functions (Python's math) rounded once to float32, for the transcendental ones;
- exact rational sums (fractions) with the spec's error bound, for Sum and Mean of more than two inputs;
- hand-derived values for the spec's rules and refquant's documented choices.
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx import TensorProto as T

from refquant.dtypes import types_at
from refquant.errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from refquant.ops import elementwise

from .helpers import (
    BF16,
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
    schema_protos,
    ulps,
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
    "And": elementwise.LOGICAL_TYPES,
    "Or": elementwise.LOGICAL_TYPES,
    "Xor": elementwise.LOGICAL_TYPES,
    "BitwiseAnd": elementwise.BITWISE_TYPES,
    "BitwiseOr": elementwise.BITWISE_TYPES,
    "BitwiseXor": elementwise.BITWISE_TYPES,
    "BitwiseNot": elementwise.BITWISE_TYPES,
    "BitShift": elementwise.BIT_SHIFT_TYPES,
    "Abs": elementwise.ABS_TYPES,
    "Neg": elementwise.NEG_TYPES,
    "Sign": elementwise.SIGN_TYPES,
    **{op: elementwise.UNARY_FLOAT_TYPES for op in ("Floor", "Ceil", "Reciprocal", "Log")},
    **{op: elementwise.TRIGONOMETRIC_TYPES for op in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan")},
    **{op: elementwise.HYPERBOLIC_TYPES for op in ("Sinh", "Cosh", "Asinh", "Acosh", "Atanh")},
    "Sum": elementwise.SUM_MEAN_TYPES,
    "Mean": elementwise.SUM_MEAN_TYPES,
    "Mod": elementwise.MOD_TYPES,
}
#: ops with a bool output type T1 besides T: the table checks T only
COMPARISON_TYPE_TABLES = {
    "Less": elementwise.ORDER_TYPES,
    "Greater": elementwise.ORDER_TYPES,
    "LessOrEqual": elementwise.ORDER_OR_EQUAL_TYPES,
    "GreaterOrEqual": elementwise.ORDER_OR_EQUAL_TYPES,
    "IsNaN": elementwise.IS_NAN_TYPES,
    "IsInf": elementwise.IS_INF_TYPES,
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    assert_versions_and_types_follow_the_onnx_schemas(op, TYPE_TABLES[op])


@pytest.mark.parametrize("op", sorted(COMPARISON_TYPE_TABLES))
def test_comparison_versions_and_input_types_follow_the_onnx_schemas(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)
    table = COMPARISON_TYPE_TABLES[op]
    for opset in range(9, 29):
        want = set(schema_protos(op, opset)) - {T.BOOL}  # T1 (the output) is bool
        assert set(types_at(table, opset)) == want or not want, f"{op} at opset {opset}"


@pytest.mark.parametrize(
    "op",
    "Where Equal Less Greater Not Pow Sqrt Exp Erf Tanh Sigmoid LeakyRelu HardSigmoid HardSwish Gelu "
    "LessOrEqual GreaterOrEqual".split(),
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


@given(st.data())
def test_ordered_comparisons_match_onnx_reference(data):
    op, opset, dtype = data.draw(
        op_opset_dtype(["Less", "Greater", "LessOrEqual", "GreaterOrEqual"], exclude=(np.bool_,))
    )
    shape_a, shape_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)).input_shapes
    a, b = data.draw(values(dtype, shape_a)), data.draw(values(dtype, shape_b))
    if data.draw(st.booleans()):
        b = np.broadcast_to(a, np.broadcast_shapes(a.shape, b.shape)).copy()  # ties: equal values
    check_against_reference(op, {"A": a, "B": b}, [np.bool_], opset=opset)


def test_or_equal_comparisons_at_nan_signed_zeros_and_integer_limits():
    a = np.array([np.nan, 1.0, -0.0, 0.0, -np.inf, np.inf, 1.0], np.float32)
    b = np.array([1.0, np.nan, 0.0, -0.0, -np.inf, np.inf, np.nextafter(np.float32(1), np.float32(2))], np.float32)
    # hand-derived from IEEE comparison: NaN unordered, -0 == +0, inf == inf
    le = run_refquant("LessOrEqual", {"A": a, "B": b}, [np.bool_], opset=12)[0]
    ge = run_refquant("GreaterOrEqual", {"A": a, "B": b}, [np.bool_], opset=16)[0]
    assert le.tolist() == [False, False, True, True, True, True, True]
    assert ge.tolist() == [False, False, True, True, True, True, False]
    top = np.iinfo(np.uint64).max
    a = np.array([top, top - 1, 0], np.uint64)  # 2**64 - 1 and 2**64 - 2 are one float64: compared exactly
    b = np.array([top - 1, top, 0], np.uint64)
    assert run_refquant("GreaterOrEqual", {"A": a, "B": b}, [np.bool_], opset=16)[0].tolist() == [True, False, True]
    assert run_refquant("LessOrEqual", {"A": a, "B": b}, [np.bool_], opset=16)[0].tolist() == [False, True, True]
    # broadcasting, and empty tensors
    got = run_refquant("LessOrEqual", {"A": np.arange(3, dtype=np.int8).reshape(3, 1), "B": np.int8([1, 2])},
                       [np.bool_], opset=13)[0]  # fmt: skip
    assert got.tolist() == [[True, True], [True, True], [False, True]]
    empty = run_refquant("GreaterOrEqual", {"A": np.zeros((0, 2), np.float16), "B": np.zeros(2, np.float16)},
                         [np.bool_], opset=13)[0]  # fmt: skip
    assert empty.shape == (0, 2) and empty.dtype == np.bool_


def test_bert_attention_mask_pattern_runs():
    """transformers 5's BERT mask: GreaterOrEqual of positions, And with the padding mask."""
    positions = np.arange(4, dtype=np.int64)
    causal = run_refquant("GreaterOrEqual", {"A": positions.reshape(4, 1), "B": positions.reshape(1, 4)},
                          [np.bool_], opset=17)[0]  # fmt: skip
    padding = np.array([[True, True, True, False]])
    got = run_refquant("And", {"A": causal, "B": padding}, [np.bool_], opset=17)[0]
    want = np.array([[i >= j and j < 3 for j in range(4)] for i in range(4)])  # by hand
    assert got.tolist() == want.tolist()


@given(st.data())
def test_logical_and_bitwise_ops_match_onnx_reference(data):
    op = data.draw(st.sampled_from(["And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor"]))
    dtype = np.dtype(np.bool_) if op in ("And", "Or", "Xor") else data.draw(st.sampled_from(schema_dtypes(op, 18)))
    opset = data.draw(st.sampled_from([o for o in OPSETS if o >= (18 if op.startswith("Bitwise") else 7)]))
    shape_a, shape_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)).input_shapes
    a, b = data.draw(values(dtype, shape_a)), data.draw(values(dtype, shape_b))
    check_against_reference(op, {"A": a, "B": b}, [dtype], opset=opset)


def test_logical_truth_tables_and_bitwise_not():
    a, b = np.array([False, False, True, True]), np.array([False, True, False, True])
    for op, want in (("And", [0, 0, 0, 1]), ("Or", [0, 1, 1, 1]), ("Xor", [0, 1, 1, 0])):
        assert run_refquant(op, {"A": a, "B": b}, [np.bool_], opset=10)[0].tolist() == [bool(w) for w in want]
    x = np.array([0, -1, 127, -128], np.int8)
    assert run_refquant("BitwiseNot", {"X": x}, [x.dtype], opset=18)[0].tolist() == [-1, 0, -128, 127]
    u = np.array([0, 255, 0x0F], np.uint8)
    assert run_refquant("BitwiseNot", {"X": u}, [u.dtype], opset=18)[0].tolist() == [255, 0, 0xF0]
    got = run_refquant("BitwiseAnd", {"A": np.int16([-1, 0x0F0F]), "B": np.int16([0x1234, -256])}, [np.int16], opset=18)
    assert got[0].tolist() == [0x1234, 0x0F00]
    got = run_refquant("BitwiseXor", {"A": np.uint64([2**64 - 1]), "B": np.uint64([1, 2**63])}, [np.uint64], opset=18)
    assert got[0].tolist() == [2**64 - 2, 2**63 - 1]


@given(st.data())
def test_bit_shift_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from([11, 18, 28]))
    dtype = data.draw(st.sampled_from(schema_dtypes("BitShift", opset)))
    direction = data.draw(st.sampled_from(["LEFT", "RIGHT"]))
    shape_x, shape_y = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=4)).input_shapes
    bits = dtype.itemsize * 8
    low = -2 if dtype.kind == "i" else 0
    x = data.draw(values(dtype, shape_x))
    y = data.draw(hnp.arrays(dtype, shape_y, elements=st.integers(low, bits + 2)))
    check_against_reference("BitShift", {"X": x, "Y": y}, [dtype], opset=opset, attrs={"direction": direction})


def test_bit_shift_edges():
    def shift(x, y, direction, opset=28):
        return run_refquant("BitShift", {"X": x, "Y": y}, [x.dtype], opset=opset, attrs={"direction": direction})[0].tolist()

    # the operator's examples
    assert shift(np.uint8([1, 4]), np.uint8([1, 1]), "RIGHT", 11) == [0, 2]
    assert shift(np.uint8([1, 2]), np.uint8([1, 2]), "LEFT", 11) == [2, 8]
    # BitShift-28: arithmetic right shift, bits past the sign bit discarded, out-of-range amounts
    x = np.int8([-5, -5, 64, -1, 5, -5, 5, -5])
    y = np.int8([1, 7, 1, 7, 8, 8, -1, -1])
    assert shift(x, y, "RIGHT") == [-3, -1, 32, -1, 0, -1, 0, -1]
    assert shift(x, y, "LEFT") == [-10, -128, -128, -128, 0, 0, 0, 0]
    assert shift(np.uint64([1, 1, 2**63]), np.uint64([63, 64, 2**63]), "LEFT", 11) == [2**63, 0, 0]
    assert shift(np.uint32([2**32 - 1]), np.uint32([31, 32]), "RIGHT", 11) == [1, 0]


# ----------------------------------------------------------------------------
# unary math, IsNaN, IsInf, Sum, Mean, Mod
# ----------------------------------------------------------------------------

TRANSCENDENTAL = ["Log", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"]
MATH_OF = {
    "Log": math.log, "Sin": math.sin, "Cos": math.cos, "Tan": math.tan, "Asin": math.asin, "Acos": math.acos,
    "Atan": math.atan, "Sinh": math.sinh, "Cosh": math.cosh, "Asinh": math.asinh, "Acosh": math.acosh,
    "Atanh": math.atanh,
}  # fmt: skip


@given(st.data())
def test_exact_unary_ops_match_onnx_reference(data):
    op, opset, dtype = data.draw(op_opset_dtype(["Abs", "Neg", "Sign", "Floor", "Ceil", "Reciprocal"]))
    x = data.draw(values(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
    (got,), (want,) = (run(op, {"X": x}, [dtype], opset=opset) for run in (run_refquant, run_reference))
    if op == "Sign" and is_float(dtype):  # numpy's sign keeps -0 for bfloat16; refquant gives +0 (tested below)
        got, want = got + np.zeros((), dtype), want + np.zeros((), dtype)
    assert_same_bits(got, want, f"{op} at opset {opset}")


def test_exact_unary_ops_by_hand():
    def run(op, x, opset=13):
        return run_refquant(op, {"X": x}, [x.dtype], opset=opset)[0]

    ints = np.array([-128, -1, 0, 127], np.int8)
    assert run("Abs", ints).tolist() == [-128, 1, 0, 127]  # Abs(INT_MIN) wraps (two's complement)
    assert run("Neg", ints).tolist() == [-128, 1, 0, -127]
    assert run("Sign", ints).tolist() == [-1, -1, 0, 1]
    assert run("Sign", np.array([0, 7, 2**64 - 1], np.uint64)).tolist() == [0, 1, 1]
    f = np.array([-0.0, 0.0, -np.inf, np.inf, np.nan, -0.5, 2.5], np.float32)
    assert_same_bits(run("Abs", f), np.array([0.0, 0.0, np.inf, np.inf, np.nan, 0.5, 2.5], np.float32))
    assert_same_bits(run("Neg", f), np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, -2.5], np.float32))
    for dtype in (F32, BF16, F16, F64):
        got = run("Sign", f.astype(dtype))
        assert_same_bits(got, np.array([0.0, 0.0, -1, 1, np.nan, -1, 1]).astype(dtype))  # +0 for both zeros
    assert_same_bits(run("Floor", f), np.array([-0.0, 0.0, -np.inf, np.inf, np.nan, -1.0, 2.0], np.float32))
    assert_same_bits(run("Ceil", f), np.array([-0.0, 0.0, -np.inf, np.inf, np.nan, -0.0, 3.0], np.float32))
    assert_same_bits(run("Reciprocal", f), np.array([-np.inf, np.inf, -0.0, 0.0, np.nan, -2.0, 0.4], np.float32))
    big = np.array([2.0**24 - 1, -(2.0**51) - 0.5], np.float64)
    assert_same_bits(run("Floor", big), np.array([2.0**24 - 1, -(2.0**51) - 1]))
    empty = run("Abs", np.zeros((2, 0), np.int16))
    assert empty.shape == (2, 0) and empty.dtype == np.int16


@pytest.mark.parametrize("op", TRANSCENDENTAL)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
                    elements=st.floats(-20, 20, width=32)), opset=st.sampled_from([10, 18, 22]))  # fmt: skip
def test_transcendental_functions_are_float64_rounded_once_and_near_onnx_reference(op, x, opset):
    (got,) = run_refquant(op, {"x": x}, [F32], opset=opset)
    (want,) = run_reference(op, {"x": x}, [F32], opset=opset)
    # the C library's float64 function (Python's math), rounded once to float32
    def libm(v):
        try:
            return MATH_OF[op](float(v))
        except (ValueError, OverflowError):
            pole = {"Log": v == 0, "Atanh": abs(v) == 1}.get(op, False)  # C99: a pole is +-inf, else NaN
            return (-math.inf if op == "Log" else math.copysign(math.inf, v)) if pole else math.nan

    with np.errstate(over="ignore"):
        exact = np.array([libm(v) for v in x.ravel()], np.float64).reshape(x.shape).astype(np.float32)
    assert_same_bits(got, exact)
    nan = np.isnan(got)
    assert (nan == np.isnan(want)).all()
    close = (ulps(got[~nan], want[~nan]) <= 4) | np.isclose(got[~nan], want[~nan], rtol=0, atol=1e-37)
    assert close.all()


def test_transcendental_functions_by_hand():
    def run(op, x, dtype=F32, opset=22):
        return run_refquant(op, {"X": np.array(x, dtype)}, [dtype], opset=opset)[0]

    nan, inf = np.nan, np.inf
    assert_same_bits(run("Log", [1.0, 0.0, -0.0, -1.0, inf, nan]), np.array([0, -inf, -inf, nan, inf, nan], F32))
    assert_same_bits(run("Sin", [-0.0, inf, -inf]), np.array([-0.0, nan, nan], F32))
    assert_same_bits(run("Cos", [0.0, -0.0, inf]), np.array([1, 1, nan], F32))
    assert_same_bits(run("Tan", [-0.0, 0.0]), np.array([-0.0, 0.0], F32))
    assert_same_bits(run("Asin", [1.0, -1.0, 1.5]), np.array([np.pi / 2, -np.pi / 2, nan]).astype(F32))
    assert_same_bits(run("Acos", [1.0, -1.0, -1.5]), np.array([0.0, np.pi, nan]).astype(F32))
    assert_same_bits(run("Atan", [inf, -inf, -0.0]), np.array([np.pi / 2, -np.pi / 2, -0.0]).astype(F32))
    assert_same_bits(run("Sinh", [-0.0, 100.0, -inf]), np.array([-0.0, inf, -inf], F32))  # sinh(100) > FLT_MAX
    assert_same_bits(run("Cosh", [0.0, -inf, 12.0], F16), np.array([1.0, inf, inf], F16))  # cosh(12) > 65504
    assert_same_bits(run("Asinh", [-0.0, -inf]), np.array([-0.0, -inf], F32))
    assert_same_bits(run("Acosh", [1.0, 0.5, inf]), np.array([0.0, nan, inf], F32))
    assert_same_bits(run("Atanh", [1.0, -1.0, 2.0, -0.0]), np.array([inf, -inf, nan, -0.0], F32))
    # bfloat16 from 22 (13 for Log): the float64 value rounded once
    assert_same_bits(run("Sin", [1.0], BF16), np.array([math.sin(1.0)]).astype(BF16))
    assert_same_bits(run("Log", [10.0], BF16, opset=13), np.array([math.log(10.0)]).astype(BF16))


@given(st.data())
def test_is_nan_and_is_inf_match_onnx_reference(data):
    op, opset, dtype = data.draw(op_opset_dtype(["IsNaN", "IsInf"], exclude=(np.bool_,)))
    x = data.draw(values(dtype, hnp.array_shapes(min_dims=0, max_dims=2, max_side=4)))
    attrs = None
    if op == "IsInf":
        attrs = {"detect_positive": data.draw(st.sampled_from([0, 1])), "detect_negative": data.draw(st.sampled_from([0, 1]))}
    check_against_reference(op, {"X": x}, [np.bool_], opset=opset, attrs=attrs)


def test_is_inf_detects_each_sign_on_request():
    x = np.array([-np.inf, np.inf, np.nan, 0.0, np.finfo(np.float32).max], np.float32)
    for attrs, want in (({}, [1, 1, 0, 0, 0]), ({"detect_positive": 0}, [1, 0, 0, 0, 0]),
                        ({"detect_negative": 0}, [0, 1, 0, 0, 0])):  # fmt: skip
        got = run_refquant("IsInf", {"X": x}, [np.bool_], opset=10, attrs=attrs)[0]
        assert got.tolist() == [bool(w) for w in want]
    e4m3 = np.array([448.0, np.nan], ml_dtypes.float8_e4m3fn)  # no infinity in the type
    assert run_refquant("IsInf", {"X": e4m3}, [np.bool_], opset=20)[0].tolist() == [False, False]
    assert run_refquant("IsNaN", {"X": e4m3}, [np.bool_], opset=20)[0].tolist() == [False, True]


@given(st.data())
def test_sum_of_two_is_add_and_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from([10, 13, 21]))
    dtype = data.draw(st.sampled_from(schema_dtypes("Sum", opset)))
    shape_a, shape_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)).input_shapes
    a, b = data.draw(values(dtype, shape_a)), data.draw(values(dtype, shape_b))
    (got,), (want,) = (run("Sum", {"a": a, "b": b}, [dtype], opset=opset) for run in (run_refquant, run_reference))
    # onnx.reference's Python sum() starts from +0, so its Sum(-0, -0) is +0: zeros compared without sign
    assert_same_bits(got + np.zeros((), dtype), want + np.zeros((), dtype))
    add = run_refquant("Add", {"A": a, "B": b}, [dtype], opset=14)[0]
    assert_same_bits(got, add)  # Sum of two is Add, bit for bit (Sum(-0, -0) = -0)


@given(st.data())
def test_sum_and_mean_are_the_float64_total_rounded_once(data):
    op = data.draw(st.sampled_from(["Sum", "Mean"]))
    count = data.draw(st.integers(1, 4))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=count, max_dims=2, max_side=3)).input_shapes
    inputs = {f"x{i}": data.draw(values(F32, shape, nan=False, infinity=False)) for i, shape in enumerate(shapes)}
    (got,) = run_refquant(op, inputs, [F32], opset=13)
    arrays = np.broadcast_arrays(*inputs.values())
    exact = sum(a.astype(object) for a in (np.vectorize(Fraction, otypes=[object])(x) for x in arrays))
    exact = exact / count if op == "Mean" else exact
    magnitude = sum(np.abs(x.astype(np.float64)) for x in arrays) / (count if op == "Mean" else 1)
    # float64 sum: within (n - 1) 2^-53 sum|x| of the exact one; then float32's half ulp (or inf past the range)
    for g, e, m in zip(np.ravel(got), np.ravel(exact), np.ravel(magnitude)):
        bound = (count - 1) * 2.0**-53 * m
        lo, hi = np.float32(float(e) - bound), np.float32(float(e) + bound)
        assert np.nextafter(lo, np.float32(-np.inf)) <= g <= np.nextafter(hi, np.float32(np.inf)) or (
            np.isinf(g) and abs(float(e)) > 3.4e38
        )


def test_sum_and_mean_by_hand():
    big = np.float32(np.finfo(np.float32).max)
    a, b, c = np.array([big, 1.0], F32), np.array([big, 2.0], F32), np.array([-big, 4.5], F32)
    # float64 total rounded once: max + max - max = max (float32 accumulation gives inf)
    got = run_refquant("Sum", {"a": a, "b": b, "c": c}, [F32], opset=13)[0]
    assert_same_bits(got, np.array([big, 7.5], F32))
    got = run_refquant("Mean", {"a": a, "b": b, "c": c}, [F32], opset=13)[0]
    assert_same_bits(got, np.array([np.float32(float(big) / 3), 2.5], F32))
    one = run_refquant("Mean", {"a": np.array([-0.0, np.nan], F16)}, [F16], opset=10)[0]
    assert_same_bits(one, np.array([-0.0, np.nan], F16))
    # 1 + 2^-24 + 2^-24 in float32: float64 total 1 + 2^-23 (exact), where float32 accumulation gives 1
    tiny = np.array([2.0**-24], F32)
    got = run_refquant("Sum", {"a": np.array([1.0], F32), "b": tiny, "c": tiny}, [F32], opset=13)[0]
    assert_same_bits(got, np.array([1 + 2.0**-23], F32))


@given(st.data())
def test_mod_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from([10, 13, 18, 28]))
    dtype = data.draw(st.sampled_from(schema_dtypes("Mod", opset)))
    fmod = data.draw(st.sampled_from([0, 1]))
    shape_a, shape_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)).input_shapes
    a, b = data.draw(values(dtype, shape_a)), data.draw(values(dtype, shape_b))
    if is_int(dtype):
        b = np.where(b == 0, 1, b).astype(dtype)  # integer modulo by zero is an error (tested below)
    check_against_reference("Mod", {"A": a, "B": b}, [dtype], opset=opset, attrs={"fmod": fmod})


def test_mod_by_hand():
    def mod(a, b, fmod, dtype, opset=28):
        inputs = {"A": np.array(a, dtype), "B": np.array(b, dtype)}
        return run_refquant("Mod", inputs, [dtype], opset=opset, attrs={"fmod": fmod})[0]

    # the sign rules: Python's % (fmod=0, the divisor's sign), C's fmod (fmod=1, the dividend's sign)
    a, b = [-4, 4, -4, 4, -128, 7], [3, -3, -3, 3, -1, 7]
    assert mod(a, b, 0, np.int8).tolist() == [2, -2, -1, 1, 0, 0]
    assert mod(a, b, 1, np.int8).tolist() == [-1, 1, -1, 1, 0, 0]
    assert mod([7, 2**64 - 1], [3, 2**63], 0, np.uint64).tolist() == [1, 2**63 - 1]
    inf, nan = np.inf, np.nan
    a = [-0.0, 0.0, inf, 1.0, 1.0, -1.0, 1.0, -2.0, nan, 5.5, -1e-30]
    b = [1.0, -1.0, 2.0, 0.0, inf, inf, -inf, 1.0, 1.0, -2.0, 1.0]
    # Mod-28's special cases, by hand
    assert_same_bits(mod(a, b, 0, F32), np.array([0.0, -0.0, nan, nan, 1, inf, -inf, 0.0, nan, -0.5, 1.0], F32))
    assert_same_bits(mod(a, b, 1, F32), np.array([-0.0, 0.0, nan, nan, 1, -1, 1, -0.0, nan, 1.5, -1e-30], F32))
    # fmod=0 with floats and fmod=1 with integers before 28: Mod-28's definitions
    assert_same_bits(mod([-3.5], [2.0], 0, F64, opset=10), np.array([0.5]))
    assert mod([-7], [2], 1, np.int32, opset=13).tolist() == [-1]
    with pytest.raises(NonFiniteError, match="integer modulo by zero"):
        mod([1, 2], [1, 0], 0, np.int64)


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
        ("And", {"A": np.ones(2, np.int8), "B": np.ones(2, np.int8)}, 13, None, DTypeError, "A has type int8"),
        ("GreaterOrEqual", {"A": np.ones(2, ml_dtypes.bfloat16), "B": np.ones(2, ml_dtypes.bfloat16)}, 15, None,
         DTypeError, "A has type bfloat16; allowed at this opset"),
        ("LessOrEqual", {"A": np.ones(2, np.int32), "B": np.ones(2, np.int64)}, 16, None, DTypeError,
         "inputs must share one element type: A is int32, B is int64"),
        ("BitShift", {"X": np.ones(2, np.int8), "Y": np.ones(2, np.int8)}, 27, {"direction": "LEFT"}, DTypeError,
         "X has type int8; allowed at this opset"),
        ("BitShift", {"X": np.ones(2, np.uint8), "Y": np.ones(2, np.uint8)}, 11, {"direction": "left"},
         AttributeValueError, "direction must be 'LEFT' or 'RIGHT', got 'left'"),
        ("BitwiseAnd", {"A": np.ones(2, np.uint8), "B": np.ones(3, np.uint8)}, 18, None, ShapeError,
         "shapes do not broadcast"),
        ("Neg", {"X": np.ones(2, np.uint8)}, 13, None, DTypeError, "X has type uint8"),
        ("Sin", {"X": np.ones(2, ml_dtypes.bfloat16)}, 21, None, DTypeError, "input has type bfloat16"),
        ("IsInf", {"X": np.ones(2, np.float16)}, 19, None, DTypeError, "X has type float16"),
        ("IsInf", {"X": np.ones(2, np.float32)}, 20, {"detect_positive": 2}, AttributeValueError,
         "detect_positive must be 0 or 1, got 2"),
        ("Sum", {"a": np.ones(2, np.int32), "b": np.ones(2, np.int32)}, 13, None, DTypeError, "data_0 has type int32"),
        ("Mean", {"a": np.ones(2, np.float32), "b": np.ones(3, np.float32)}, 13, None, ShapeError,
         r"data_0 \(2,\), data_1 \(3,\)"),
        ("Mod", {"A": np.ones(2, np.float32), "B": np.ones(2, np.float32)}, 13, {"fmod": 2}, AttributeValueError,
         "fmod must be 0 or 1, got 2"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(op, inputs, opset, attrs, error, message):
    assert_error_names_the_problem(op, inputs, opset, attrs, error, message)
