"""Constants and shape-only operators, and the Cast kernel's checks: refquant/ops/tensor.py (Cast, Identity,
Constant, Range, Flatten, Reshape; spec/ops/float.md). Cast's conversion rules (conversion.py) are tested
in test_conversion.py.

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator, bit for bit, on hypothesis-drawn inputs at several opsets
  (10, 13, ..., 28), and within one float32 ulp for float Range;
- exact values on Python fractions (Range);
- hand-derived values for refquant's documented choices and errors.
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T

from refquant.errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from refquant.ops import tensor

from ..helpers import node_cases, to_array
from .helpers import (
    BF16,
    F32,
    OPSETS,
    assert_error_names_the_problem,
    assert_same_bits,
    assert_versions_and_types_follow_the_onnx_schemas,
    assert_versions_are_the_schema_versions_from_opset_10,
    check_against_reference,
    node_case_outputs,
    run_reference,
    run_refquant,
    schema_dtypes,
    spec_cast_to_float4e2m1,
    spec_cast_to_sub_byte_int,
    ulps,
    values,
)

TYPE_TABLES = {
    "Cast": tensor.CAST_TYPES,
    "CastLike": tensor.CAST_LIKE_TYPES,
    "BitCast": tensor.BITCAST_TYPES,
    "Identity": tensor.TENSOR_TYPES,
    "Constant": tensor.TENSOR_TYPES,
    "Flatten": tensor.FLATTEN_TYPES,
    "Reshape": tensor.TENSOR_TYPES,
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    assert_versions_and_types_follow_the_onnx_schemas(op, TYPE_TABLES[op])


@pytest.mark.parametrize("op", ["Range"])
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


# ----------------------------------------------------------------------------
# Cast: types and attributes
# ----------------------------------------------------------------------------


def test_cast_types_arrive_with_their_opset():
    with pytest.raises(AttributeValueError, match=r"int4\) is not a type Cast accepts at opset 19"):
        run_refquant("Cast", {"input": np.ones(2, np.float32)}, [F32], opset=20, attrs={"to": T.INT4})
    with pytest.raises(DTypeError, match="input has type bfloat16; allowed at this opset"):
        run_refquant("Cast", {"input": np.ones(2, BF16)}, [F32], opset=12, attrs={"to": T.FLOAT})


# ----------------------------------------------------------------------------
# Identity, Constant, Flatten, Reshape
# ----------------------------------------------------------------------------


@given(st.data())
def test_identity_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from(OPSETS))
    dtype = data.draw(st.sampled_from(schema_dtypes("Identity", opset)))
    x = data.draw(values(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3)))
    check_against_reference("Identity", {"input": x}, [dtype], opset=opset)


@given(st.data())
def test_constant_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from(OPSETS))
    kinds = ["value"] + (["value_float", "value_floats", "value_int", "value_ints"] if opset >= 12 else [])
    kind = data.draw(st.sampled_from(kinds))
    if kind == "value":
        dtype = data.draw(st.sampled_from(schema_dtypes("Constant", opset)))
        value = data.draw(values(dtype, hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)))
        attrs, out = {"value": onnx.numpy_helper.from_array(value)}, dtype
    else:
        floats = st.floats(width=32, allow_nan=False)
        ints = st.integers(-(2**63), 2**63 - 1)
        element = floats if "float" in kind else ints
        attrs = {kind: data.draw(st.lists(element, min_size=1, max_size=4) if kind.endswith("s") else element)}
        out = F32 if "float" in kind else np.dtype(np.int64)
    check_against_reference("Constant", {}, [out], opset=opset, attrs=attrs)


@given(st.data())
def test_flatten_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from(OPSETS))
    dtype = data.draw(st.sampled_from(schema_dtypes("Flatten", opset)))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3))
    rank = len(shape)
    axis = data.draw(st.integers(-rank if opset >= 11 else 0, rank))
    check_against_reference(
        "Flatten", {"input": data.draw(values(dtype, shape))}, [dtype], opset=opset, attrs={"axis": axis}
    )


@st.composite
def reshape_case(draw, opset):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    dims = list(draw(st.permutations(list(shape))))
    while len(dims) > 1 and draw(st.booleans()):  # merge neighbours
        i = draw(st.integers(0, len(dims) - 2))
        dims[i : i + 2] = [dims[i] * dims[i + 1]]
    allowzero = opset >= 14 and draw(st.booleans())
    if not allowzero:  # 0 copies the input's dimension at the same position
        dims = [0 if i < len(shape) and d == shape[i] and draw(st.booleans()) else d for i, d in enumerate(dims)]
        assume(math.prod(shape[i] if d == 0 else d for i, d in enumerate(dims)) == math.prod(shape))
    if dims and math.prod(shape) and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return shape, dims, allowzero


@given(st.data())
def test_reshape_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from(OPSETS))
    shape, dims, allowzero = data.draw(reshape_case(opset))
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    attrs = {"allowzero": int(allowzero)} if opset >= 14 else {}
    check_against_reference("Reshape", {"data": x, "shape": np.array(dims, np.int64)}, [F32], opset=opset, attrs=attrs)


@pytest.mark.parametrize(
    ("shape", "target", "allowzero", "message"),
    [
        ((2, 3), [4, 2], 0, r"cannot reshape \(2, 3\) to \[4, 2\]: 6 elements cannot fill 8"),
        ((2, 3), [-1, -1], 0, "at most one dimension may be -1"),
        ((2, 3), [-2, 3], 0, "dimensions must be >= -1"),
        ((2, 3), [3, 2, 0], 0, "0 at position 2 copies a dimension the input"),
        ((2, 3), [0, -1], 1, "with allowzero, 0 and -1 cannot both appear"),
        ((2, 3), [4, -1], 0, "-1 cannot be inferred: 6 elements, 4 in the other dimensions"),
        ((0, 3), [0, -1], 0, "-1 cannot be inferred: 0 elements, 0 in the other dimensions"),
    ],
)
def test_reshape_refuses_bad_targets(shape, target, allowzero, message):
    x = np.zeros(shape, np.float32)
    with pytest.raises(ShapeError, match=message):
        run_refquant(
            "Reshape", {"data": x, "shape": np.array(target, np.int64)}, [F32], opset=21, attrs={"allowzero": allowzero}
        )


def test_reshape_zero_and_flatten_of_empty_tensors():
    x = np.zeros((0, 3, 2), np.float32)
    got = run_refquant("Reshape", {"data": x, "shape": np.array([0, 6], np.int64)}, [F32], opset=13)[0]
    assert got.shape == (0, 6)
    got = run_refquant(
        "Reshape", {"data": x, "shape": np.array([0, 6], np.int64)}, [F32], opset=14, attrs={"allowzero": 1}
    )[0]
    assert got.shape == (0, 6)
    assert run_refquant("Flatten", {"input": x}, [F32], opset=13, attrs={"axis": 2})[0].shape == (0, 2)


SPARSE = onnx.helper.make_sparse_tensor(
    onnx.numpy_helper.from_array(np.ones(1, np.float32)), onnx.numpy_helper.from_array(np.zeros(1, np.int64)), [3]
)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"sparse_value": SPARSE}, "sparse_value is not supported"),
        ({"value_float": 1.0, "value_int": 2}, r"exactly one of .* must be set, got \['value_float', 'value_int'\]"),
        ({}, "must be set, got none"),
    ],
)  # fmt: skip
def test_constant_errors(attrs, message):
    with pytest.raises(AttributeValueError, match=message):
        run_refquant("Constant", {}, [F32], opset=13, attrs=attrs)


@pytest.mark.parametrize(
    ("op", "inputs", "opset", "attrs", "error", "message"),
    [
        ("Flatten", {"input": np.ones((2, 3), np.float32)}, 10, {"axis": -1}, AttributeValueError,
         r"axis -1 is out of range \[0, 2\]"),
        ("Identity", {"input": np.ones(2, np.dtype(ml_dtypes.float8_e4m3fn))}, 18, None, DTypeError,
         "input has type float8e4m3fn"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(op, inputs, opset, attrs, error, message):
    assert_error_names_the_problem(op, inputs, opset, attrs, error, message)


# ----------------------------------------------------------------------------
# Range
# ----------------------------------------------------------------------------


def round_fraction_to_float32(value: Fraction) -> np.float32:
    """The float32 nearest to ``value``, ties to even: float64 first, then the float32 neighbours compared exactly."""
    guess = np.float32(float(value))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(c.view(np.int32)) & 1))
    return np.float32(best)


@given(start=st.floats(-1e4, 1e4, width=32).map(lambda v: v + 0.0), delta=st.floats(-100, 100, width=32).filter(lambda d: abs(d) > 1e-2),
       count=st.integers(0, 50), slack=st.floats(0, 1))  # fmt: skip
def test_float_range_is_the_exact_value_rounded_once(start, delta, count, slack):
    limit = np.float32(start + (count + slack) * delta)
    exact_length = max(-((Fraction(float(limit)) - Fraction(start)) // -Fraction(delta)), 0)
    inputs = {"start": np.array(start, np.float32), "limit": np.array(limit, np.float32), "delta": np.array(delta, np.float32)}
    (got,) = run_refquant("Range", inputs, [np.float32], opset=11)
    want = [round_fraction_to_float32(Fraction(start) + i * Fraction(delta)) for i in range(exact_length)]
    assert_same_bits(got, np.array(want, np.float32).reshape(-1))
    # onnx.reference: numpy's float64 arange, then float32; its length is the ceiling of a rounded
    # float64 quotient (one less where the exact quotient lies just above an integer)
    (reference,) = run_reference("Range", inputs, [np.float32], opset=11)
    common = min(got.size, reference.size)
    assert 0 <= got.size - reference.size <= 1 and np.all(ulps(got[:common], reference[:common]) <= 1)


def test_integer_and_narrow_float_range():
    ints = {"start": np.array(10, np.int16), "limit": np.array(4, np.int16), "delta": np.array(-2, np.int16)}
    assert_same_bits(run_refquant("Range", ints, [np.int16], opset=11)[0], np.array([10, 8, 6], np.int16))
    # 2049 + 2 * i in float16: 2049 and 2053 are halfway between float16 neighbours (spacing 2), ties to even
    half = {n: np.array(v, np.float16) for n, v in (("start", 2048), ("limit", 2058), ("delta", 2))}
    half["start"] = np.array(2048, np.float16)
    got = run_refquant("Range", half, [np.float16], opset=27)[0]
    assert got.tolist() == [2048, 2050, 2052, 2054, 2056]
    bf = {n: np.array(v, ml_dtypes.bfloat16) for n, v in (("start", 0.5), ("limit", 3), ("delta", 0.75))}
    assert run_refquant("Range", bf, [ml_dtypes.bfloat16], opset=27)[0].astype(np.float32).tolist() == [0.5, 1.25, 2.0, 2.75]
    with pytest.raises(DTypeError, match="start has type float16"):
        run_refquant("Range", half, [np.float16], opset=26)
    with pytest.raises(ShapeError, match="delta must not be 0"):
        run_refquant("Range", ints | {"delta": np.array(0, np.int16)}, [np.int16], opset=11)
    nan = {n: np.array(v, np.float32) for n, v in (("start", 0), ("limit", np.nan), ("delta", 1))}
    with pytest.raises(NonFiniteError, match="must be finite"):
        run_refquant("Range", nan, [np.float32], opset=11)


# ----------------------------------------------------------------------------
# Dropout, EyeLike, Trilu (spec/ops/tensor.md)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "table"), [("Trilu", tensor.TRILU_TYPES), ("EyeLike", tensor.EYE_TYPES)])
def test_tensor_md_types_follow_the_onnx_schemas(op, table):
    assert_versions_and_types_follow_the_onnx_schemas(op, table)


def test_dropout_versions_are_the_schema_versions_from_opset_10():
    assert_versions_are_the_schema_versions_from_opset_10("Dropout")


@pytest.mark.parametrize("opset", [10, 12, 13, 22])
def test_dropout_is_the_identity_with_an_all_true_mask(opset):
    x = np.array([[1.5, np.nan], [-0.0, np.inf]], np.float32)
    inputs = {"x": x}
    if opset >= 12:
        inputs |= {"r": np.array(0.3, np.float32), "t": np.array(False)}
    y, mask = run_refquant("Dropout", inputs, [np.float32, np.bool_], opset=opset)
    assert_same_bits(y, x)
    assert mask.dtype == np.bool_ and mask.all() and mask.shape == x.shape


def test_dropout_training_mode_is_refused_unless_the_ratio_is_zero():
    x = np.ones(3, np.float32)
    with pytest.raises(AttributeValueError, match="training_mode=True with ratio 0.5"):
        run_refquant("Dropout", {"x": x, "r": None, "t": np.array(True)}, [np.float32], opset=13)
    (y,) = run_refquant("Dropout", {"x": x, "r": np.array(0.0, np.float32), "t": np.array(True)}, [np.float32],
                        opset=13)  # fmt: skip
    assert_same_bits(y, x)


@pytest.mark.parametrize("k", [-5, -1, 0, 2, 9])
def test_eye_like_matches_onnx_reference(k):
    x = np.zeros((3, 4), np.int32)
    attrs = {"k": k, "dtype": T.DOUBLE}
    (got,) = run_refquant("EyeLike", {"x": x}, [np.float64], opset=10, attrs=attrs)
    assert_same_bits(got, run_reference("EyeLike", {"x": x}, [np.float64], opset=10, attrs=attrs)[0])


def test_eye_like_refuses_a_type_the_schema_lacks():
    with pytest.raises(AttributeValueError, match="not a type EyeLike makes"):
        run_refquant("EyeLike", {"x": np.zeros((2, 2), np.float32)}, [np.float32], opset=10,
                     attrs={"dtype": T.STRING})  # fmt: skip


@pytest.mark.parametrize("k", [-(2**63), -4, -1, 0, 1, 3, 2**63 - 1])
@pytest.mark.parametrize("upper", [0, 1])
def test_trilu_any_k_matches_numpy_triangles(k, upper):
    x = np.arange(1, 2 * 3 * 4 + 1, dtype=np.int64).reshape(2, 3, 4)
    (got,) = run_refquant("Trilu", {"x": x, "k": np.array(k, np.int64)}, [np.int64], opset=14, attrs={"upper": upper})
    clamped = max(min(k, 5), -4)
    want = np.triu(x, clamped) if upper else np.tril(x, clamped)
    assert_same_bits(got, want)


def test_trilu_of_strings_and_bool_fills_empty_and_false():
    s = np.array([["a", "b"], ["c", "d"]], dtype=object)
    (got,) = run_refquant("Trilu", {"x": s}, [object], opset=14, attrs={"upper": 0})
    assert got.tolist() == [["a", ""], ["c", "d"]]
    (got,) = run_refquant("Trilu", {"x": np.ones((2, 2), bool)}, [np.bool_], opset=14)
    assert got.tolist() == [[True, True], [False, True]]
    with pytest.raises(ShapeError, match="rank >= 2"):
        run_refquant("Trilu", {"x": np.ones(3, np.float32)}, [np.float32], opset=14)


# ----------------------------------------------------------------------------
# CastLike, BitCast
# ----------------------------------------------------------------------------

CASTLIKE_CASES = [c for c in node_cases(r"^test_castlike_") if not c.name.endswith("_expanded")]
BITCAST_CASES = node_cases(r"^test_bitcast_")


def test_castlike_and_bitcast_node_case_lists_are_current():
    assert len(CASTLIKE_CASES) == 56 and len(BITCAST_CASES) == 10  # onnx 1.23.2


#: CastLike cases whose generated output is ml_dtypes' value where it contradicts the spec, as their Cast twins
#: (spec/ops/float.md, "ONNX node cases that disagree with the spec"): the target type's spec rule, and the
#: inputs where ml_dtypes writes 0 instead
SPEC_DISAGREEMENTS = {
    **{f"test_castlike_{s}_to_{t}": "sub-byte" for s in ("FLOAT", "FLOAT16") for t in ("UINT4", "INT4", "UINT2", "INT2")},
    **{f"test_castlike_{s}_to_FLOAT4E2M1": "float4" for s in ("FLOAT", "FLOAT16")},
}


def _spec_value(value: float, dtype, rule: str) -> float:
    return spec_cast_to_sub_byte_int(value, dtype) if rule == "sub-byte" else spec_cast_to_float4e2m1(value)


@pytest.mark.parametrize("case", CASTLIKE_CASES, ids=lambda c: c.name)
def test_castlike_node_case(case):
    """Bit for bit; the ten sub-byte and float4 cases: refquant gives the spec's value, and the generated
    output differs from it only at inputs outside the type (NaN for float4), where ml_dtypes writes 0."""
    rule = SPEC_DISAGREEMENTS.get(case.name)
    x = np.asarray(to_array(case.data_sets[0][0][0])).astype(np.float64)
    for got, want in node_case_outputs(case):
        if rule is None:
            assert_same_bits(got, want, case.name)
            continue
        spec = np.array([_spec_value(float(v), want.dtype, rule) for v in x.ravel()]).reshape(x.shape)
        assert_same_bits(got, spec.astype(want.dtype), case.name)
        differs = spec != want.astype(np.float64)
        if rule == "sub-byte":
            info = ml_dtypes.iinfo(want.dtype)
            affected = (np.rint(x) < int(info.min)) | (np.rint(x) > int(info.max))
        else:
            affected = np.isnan(x)
        assert not (differs & ~affected).any() and (want.astype(np.float64)[differs] == 0).all()


@pytest.mark.parametrize("case", BITCAST_CASES, ids=lambda c: c.name)
def test_bitcast_node_case(case):
    for got, want in node_case_outputs(case):
        assert_same_bits(got, want, case.name)


@pytest.mark.parametrize("opset", [15, 19, 25])
def test_castlike_takes_the_type_and_not_the_values_of_its_second_input(opset):
    x = np.array([1.5, -2.5, 300.0, np.nan], np.float32)
    (y,) = run_refquant("CastLike", {"input": x, "target_type": np.zeros((0, 7), np.float16)}, [np.float16],
                        opset=opset)
    assert_same_bits(y, x.astype(np.float16))
    (y,) = run_refquant("CastLike", {"input": x[:2], "target_type": np.array([9], np.int8)}, [np.int8], opset=opset)
    np.testing.assert_array_equal(y, np.array([1, -2], np.int8))  # truncation toward zero
    with pytest.raises(NonFiniteError, match="have no int8 value"):  # 300: undefined, as in Cast
        run_refquant("CastLike", {"input": x[:3], "target_type": np.array([9], np.int8)}, [np.int8], opset=opset)


def test_castlike_saturate_and_types_by_version():
    x = np.array([1000.0, -1000.0], np.float32)
    e4m3 = np.zeros(1, ml_dtypes.float8_e4m3fn)
    (y,) = run_refquant("CastLike", {"input": x, "target_type": e4m3}, [e4m3.dtype], opset=19, attrs={"saturate": 0})
    assert np.isnan(y.astype(np.float64)).all()  # e4m3fn has no infinity: out of range is NaN
    (y,) = run_refquant("CastLike", {"input": x, "target_type": e4m3}, [e4m3.dtype], opset=19)
    np.testing.assert_array_equal(y.astype(np.float64), [448.0, -448.0])
    with pytest.raises(DTypeError, match="target_type has type float8e4m3fn; allowed at this opset"):
        run_refquant("CastLike", {"input": x, "target_type": e4m3}, [e4m3.dtype], opset=18)


@pytest.mark.parametrize(("x", "to", "want"), [
    (np.array([1.0, -0.0], np.float32), T.INT32, np.array([0x3F800000, -(2**31)], np.int32)),
    (np.array([0x3C00], np.uint16), T.FLOAT16, np.array([1.0], np.float16)),
    (np.array([0x3F80], np.uint16), T.BFLOAT16, np.array([1.0], BF16)),
    (np.array([-1, 7, -8], ml_dtypes.int4), T.UINT4, np.array([15, 7, 8], ml_dtypes.uint4)),
    (np.array([0b0010, 0b1111], ml_dtypes.uint4), T.FLOAT4E2M1, np.array([1.0, -6.0], ml_dtypes.float4_e2m1fn)),
    (np.array([3, 1], ml_dtypes.uint2), T.INT2, np.array([-1, 1], ml_dtypes.int2)),
    (np.array([0x38], np.uint8), T.FLOAT8E4M3FN, np.array([1.0], ml_dtypes.float8_e4m3fn)),
    (np.array([1, 0], np.uint8), T.BOOL, np.array([True, False])),
])  # fmt: skip
def test_bitcast_reads_the_bits_hand_derived(x, to, want):
    (y,) = run_refquant("BitCast", {"input": x}, [want.dtype], opset=26, attrs={"to": to})
    assert_same_bits(y, want)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=4)), st.sampled_from([T.INT64, T.UINT64]))
def test_bitcast_matches_onnx_reference(x, to):
    check_against_reference("BitCast", {"input": x}, [onnx.helper.tensor_dtype_to_np_dtype(to)], opset=26,
                            attrs={"to": to})


@pytest.mark.parametrize(("x", "to", "error", "message"), [
    (np.ones(2, np.float32), T.INT64, AttributeValueError, "int64 is 64 bits wide, the input \\(float\\) 32"),
    (np.ones(2, ml_dtypes.int4), T.UINT8, AttributeValueError, "BitCast needs the same bit width"),
    (np.array([2], np.uint8), T.BOOL, NonFiniteError, "neither 0 nor 1: not a bool"),
    (np.ones(2, np.float32), T.STRING, AttributeValueError, "is not a type BitCast accepts"),
])  # fmt: skip
def test_bitcast_errors_name_the_node_and_the_problem(x, to, error, message):
    with pytest.raises(error, match=message) as raised:
        run_refquant("BitCast", {"input": x}, [np.uint8], opset=26, attrs={"to": to})
    assert str(raised.value).startswith("BitCast '")
