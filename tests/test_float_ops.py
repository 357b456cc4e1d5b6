"""The plain operators QDQ models and expanded functions need.

Add, Sub, Mul, Div, Relu, Clip, Round, Min, Max, MatMul, Gemm, ReduceMin,
ReduceMax, Cast, Identity, Constant, Flatten, Reshape (spec/ops/float.md).

Expected values come from independent sources:
- onnx.reference.ReferenceEvaluator, bit for bit where the op is exactly
  defined, on hypothesis-drawn inputs at several opsets (10, 13, ..., 28);
- exact oracles on Python integers and fractions (Cast rounding, integer
  MatMul/Gemm, float MatMul/Gemm error bounds);
- the ONNX backend node cases (expected outputs written by the ONNX test generators);
- the element types of the ONNX schemas (onnx.defs);
- hand-derived values for the spec's tables and refquant's documented choices.
"""

from __future__ import annotations

import math
import re
import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx.reference import ReferenceEvaluator

import refquant
from refquant.dtypes import np_dtype, proto_of
from refquant.errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError
from refquant.ops import conversion, elementwise, linalg, reduce, tensor
from refquant.ops.common import types_at

from .helpers import node_cases, single_node_model, to_array

OPSETS = (10, 13, 14, 18, 21, 28)  # 28: the newest opset refquant and onnx 1.23 know

F16, F32, F64, BF16 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(ml_dtypes.bfloat16)
ML_FLOATS = frozenset(
    np.dtype(t)
    for t in (
        ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2,
        ml_dtypes.float8_e5m2fnuz, ml_dtypes.float8_e8m0fnu, ml_dtypes.float4_e2m1fn,
        ml_dtypes.float6_e2m3fn, ml_dtypes.float6_e3m2fn,
    )
)  # fmt: skip
SUB_BYTE_INTS = frozenset(np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2))
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f" or np.dtype(dtype) in ML_FLOATS


def is_int(dtype) -> bool:
    return np.dtype(dtype).kind in "iu" or np.dtype(dtype) in SUB_BYTE_INTS


def assert_same_bits(got, want, what="output"):
    """Same dtype, shape and bits; two NaNs count as equal whatever their payload."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.dtype == object:
        assert (got == want).all(), f"{what}: {got} != {want}"
        return
    unsigned = np.dtype(f"u{got.dtype.itemsize}")
    same = got.view(unsigned) == want.view(unsigned)
    if is_float(got.dtype):
        with np.errstate(invalid="ignore"):  # widening a signalling NaN raises 'invalid'
            same |= np.isnan(got.astype(np.float64)) & np.isnan(want.astype(np.float64))
    assert same.all(), f"{what}: differs at {np.argwhere(~same)[:3].tolist()}: {got[~same][:4]} vs {want[~same][:4]}"


def model(op, inputs, out_dtypes, *, opset, attrs=None):
    """One-node model; ``inputs`` {name: array or None (a skipped optional input)}."""
    named = {(name if value is not None else ""): value for name, value in inputs.items()}
    while named and list(named)[-1] == "":
        named.pop("")  # trailing skipped inputs are simply omitted
    outputs = {f"y{i}": proto_of(d) for i, d in enumerate(out_dtypes)}
    return single_node_model(op, named, outputs, opset=opset, attrs=attrs)


def feeds_of(inputs):
    return {name: value for name, value in inputs.items() if name and value is not None}


def run_refquant(op, inputs, out_dtypes, *, opset, attrs=None):
    return refquant.Session(model(op, inputs, out_dtypes, opset=opset, attrs=attrs)).run(None, feeds_of(inputs))


def run_reference(op, inputs, out_dtypes, *, opset, attrs=None):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outputs = ReferenceEvaluator(model(op, inputs, out_dtypes, opset=opset, attrs=attrs)).run(
            None, feeds_of(inputs)
        )
    return [np.asarray(o) for o in outputs]


def check_against_reference(op, inputs, out_dtypes, *, opset, attrs=None):
    got = run_refquant(op, inputs, out_dtypes, opset=opset, attrs=attrs)
    want = run_reference(op, inputs, out_dtypes, opset=opset, attrs=attrs)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_bits(g, w, f"{op} output {i} at opset {opset}")


def _proto_of_type_string(text: str):
    match = re.fullmatch(r"tensor\((\w+)\)", text)
    return getattr(T, match.group(1).upper(), None) if match else None


def _known(proto: int) -> bool:
    try:
        np_dtype(proto)
    except KeyError:
        return False
    return True


def schema_protos(op: str, opset: int) -> set[int]:
    """Element types the ONNX schema of ``op`` allows at ``opset`` and refquant's dtypes table knows."""
    try:
        schema = onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        return set()  # the op does not exist yet at this opset
    protos = set()
    for constraint in schema.type_constraints:
        for text in constraint.allowed_type_strs:
            proto = _proto_of_type_string(text)
            if proto is not None and _known(proto):
                protos.add(proto)
    return protos


def schema_dtypes(op: str, opset: int, exclude=()) -> list[np.dtype]:
    dtypes = {np_dtype(p) for p in schema_protos(op, opset) if p != T.STRING} - {np.dtype(d) for d in exclude}
    return sorted(dtypes, key=str)


def _widen(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # widening a signalling NaN raises 'invalid'
        return a.astype(np.float64)


def values(dtype, shape, *, nan=True, infinity=True, magnitude=None):
    """Arrays of ``dtype`` (numpy or ml_dtypes) covering the type's range, specials included."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_ or dtype.kind in "iu":
        return hnp.arrays(dtype, shape)
    if dtype in (F16, F32, F64):
        bounded = {} if magnitude is None else {"min_value": -magnitude, "max_value": magnitude}
        elements = st.floats(
            width=dtype.itemsize * 8, allow_nan=nan, allow_infinity=infinity and not bounded, **bounded
        )
        return hnp.arrays(dtype, shape, elements=elements)
    if dtype in SUB_BYTE_INTS:
        info = ml_dtypes.iinfo(dtype)
        return hnp.arrays(np.int8, shape, elements=st.integers(int(info.min), int(info.max))).map(
            lambda a: a.astype(dtype)
        )
    # ml_dtypes floats: every bit pattern of the type (high bits of the byte unused below 8 bits)
    bits = ml_dtypes.finfo(dtype).bits
    storage = np.dtype(f"u{dtype.itemsize}")
    arrays = hnp.arrays(storage, shape, elements=st.integers(0, 2**bits - 1)).map(lambda a: a.view(dtype))
    if magnitude is not None:
        arrays = arrays.map(lambda a: np.clip(_widen(a), -magnitude, magnitude).astype(dtype))
    if not nan:
        arrays = arrays.map(lambda a: np.where(np.isnan(_widen(a)), 0.0, _widen(a)).astype(dtype))
    return arrays


def wrap(value: int, dtype) -> int:
    """``value`` reduced into integer type ``dtype`` (two's complement)."""
    info = ml_dtypes.iinfo(dtype)
    span = 2**info.bits
    value %= span
    return value - span if value > info.max else value


# ----------------------------------------------------------------------------
# registry: versions and element types
# ----------------------------------------------------------------------------

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
    "MatMul": linalg.MATMUL_TYPES,
    "Gemm": linalg.MATMUL_TYPES,
    "ReduceMin": reduce.REDUCE_TYPES,
    "ReduceMax": reduce.REDUCE_TYPES,
    "Cast": tensor.CAST_TYPES,
    "Identity": tensor.TENSOR_TYPES,
    "Constant": tensor.TENSOR_TYPES,
    "Flatten": tensor.FLATTEN_TYPES,
    "Reshape": tensor.TENSOR_TYPES,
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    versions = [v for domain, name, v in refquant.supported_ops() if name == op and domain == ""]
    # every since_version of the op between opset 1 and 28, no more, no fewer
    schema_versions = sorted({onnx.defs.get_schema(op, opset, "").since_version for opset in range(versions[0], 29)})
    assert versions == schema_versions
    for v in range(versions[0], 29):
        assert set(types_at(TYPE_TABLES[op], v)) == schema_protos(op, v), f"{op} at opset {v}"


# ----------------------------------------------------------------------------
# ONNX backend node cases
# ----------------------------------------------------------------------------

OPS = set(TYPE_TABLES)
_ALL_CASES = node_cases(r"^test_")
FLOAT_OP_CASES = [c for c in _ALL_CASES if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS]
EXPANDED_DQL_CASES = [c for c in _ALL_CASES if re.fullmatch(r"test_dynamicquantizelinear\w*_expanded", c.name)]

#: cases using values refquant deliberately does not run
UNSUPPORTED = {
    "test_identity_sequence": "sequence values are not tensors; refquant runs tensor graphs only",
    "test_identity_opt": "optional values are not tensors; refquant runs tensor graphs only",
}
# -- node cases whose generated expectation disagrees with the ONNX specification -------------------------------
#
# onnx computes the Cast node cases' expected outputs when the cases are collected, with the installed
# ml_dtypes (np_from.astype(to_np_dtype) in onnx/backend/test/case/node/cast.py). Where ml_dtypes' conversion
# differs from ONNX's written rule, the case expects ml_dtypes' value. For those cases the test asserts
# refquant's output equals the spec's value, computed here from the documents, and that the generated output
# differs from it only at the elements the entry names, and there by the documented generator value: if onnx or
# ml_dtypes change again, the test says so. With an ml_dtypes that follows the spec nothing differs, and the
# case passes as any other (spec/ops/float.md, "ONNX node cases that disagree with the spec").

E2M1_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # docs/technical/float4.md, "Float4 type values"


def spec_cast_to_sub_byte_int(value: float, dtype):
    """ONNX int4.md / int2.md "Cast": round to the nearest integer, ties to even, then truncate to the type's bits."""
    return wrap(round(Fraction(value)), dtype)  # Fraction rounds half to even; wrap keeps the low bits


def spec_cast_to_float4e2m1(value: float) -> float:
    """ONNX float4.md "Cast" table: NaN -> 6, +-inf and |x| > 6 -> +-6, else nearest E2M1 value, ties to even."""
    if math.isnan(value):
        return 6.0
    magnitude = min(abs(Fraction(value)), Fraction(6)) if math.isfinite(value) else Fraction(6)
    # nearest of the 8 magnitudes; on a tie the even code (bit pattern index) wins
    code = min(range(8), key=lambda i: (abs(Fraction(E2M1_MAGNITUDES[i]) - magnitude), i % 2))
    return math.copysign(E2M1_MAGNITUDES[code], value)


class SpecDisagreement:
    """Node cases whose generated output differs from the ONNX spec at the elements ``affected`` selects."""

    def __init__(self, cases, *, affected, spec_value, generated, generator, spec, why):
        self.cases = frozenset(cases)
        self.affected = affected  # float64 inputs, target dtype -> mask of the elements the entry is about
        self.spec_value = spec_value  # float input, target dtype -> the spec's value (Python number)
        self.generated = generated  # float64 generated outputs at affected elements -> True where documented
        self.generator, self.spec, self.why = generator, spec, why

    def spec_output(self, x: np.ndarray, dtype) -> np.ndarray:
        flat = [self.spec_value(float(v), dtype) for v in x.astype(np.float64).ravel()]
        return np.array(flat, np.float64).reshape(x.shape).astype(dtype)


def _out_of_range(x: np.ndarray, dtype) -> np.ndarray:
    info = ml_dtypes.iinfo(dtype)
    return ~np.isfinite(x) | (np.rint(x) < int(info.min)) | (np.rint(x) > int(info.max))


_SUB_BYTE_CAST_CASES = [
    f"{prefix}_{source}_to_{target}{suffix}"
    for prefix, suffix in (("test_cast", ""), ("test_castlike", "_expanded"))
    for source in ("FLOAT", "FLOAT16")
    for target in ("UINT4", "INT4", "UINT2", "INT2")
]
_FLOAT4_CAST_CASES = [
    f"{prefix}_{source}_to_FLOAT4E2M1{suffix}"
    for prefix, suffix in (("test_cast", ""), ("test_castlike", "_expanded"))
    for source in ("FLOAT", "FLOAT16")
]

SPEC_DISAGREEMENTS = (
    SpecDisagreement(
        _SUB_BYTE_CAST_CASES,
        affected=_out_of_range,
        spec_value=spec_cast_to_sub_byte_int,
        generated=lambda want: want == 0,
        generator="ml_dtypes >= 0.7 converts an out-of-range float to int4/uint4/int2/uint2 as 0 "
        "(0.5 and 0.6 kept the low bits, as the spec does)",
        spec="docs/docs/technical/int4.md and int2.md, section Cast: 'Cast to a 4 [2] bit type is done by rounding "
        "to the nearest-integer (with ties to even) nearest-even integer and truncating'; the Cast operator's "
        "own word for dropping bits is 'truncate' ('we truncate bits which can't be stored in the targeted type')",
        why="inputs -9..15 (int4/uint4) and -3..3 (int2/uint2) include values outside the target type",
    ),
    SpecDisagreement(
        _FLOAT4_CAST_CASES,
        affected=lambda x, dtype: np.isnan(x),
        spec_value=lambda value, dtype: spec_cast_to_float4e2m1(value),
        generated=lambda want: want == 0,
        generator="ml_dtypes converts NaN to float4e2m1 as a zero (-0 for +NaN in 0.7)",
        spec="docs/docs/technical/float4.md, section Cast, table row 'NaN | 6'",
        why="the cases' input holds a NaN",
    ),
)
DISAGREEMENT_OF = {name: entry for entry in SPEC_DISAGREEMENTS for name in entry.cases}


def test_the_node_case_lists_are_current():
    names = {c.name for c in FLOAT_OP_CASES}
    assert set(UNSUPPORTED) <= names and set(DISAGREEMENT_OF) <= names
    assert len(DISAGREEMENT_OF) == 20
    assert len(FLOAT_OP_CASES) == 258  # onnx 1.23.2
    assert sorted(c.name for c in EXPANDED_DQL_CASES) == [
        "test_dynamicquantizelinear_expanded",
        "test_dynamicquantizelinear_max_adjusted_expanded",
        "test_dynamicquantizelinear_min_adjusted_expanded",
    ]


@pytest.mark.parametrize(
    "value, dtype, spec",
    [(-9.0, ml_dtypes.int4, 7), (8.0, ml_dtypes.int4, -8), (15.0, ml_dtypes.int4, -1), (-1.0, ml_dtypes.uint4, 15),
     (2.5, ml_dtypes.uint4, 2), (-8.5, ml_dtypes.int4, -8), (7.5, ml_dtypes.int4, -8), (-3.0, ml_dtypes.int2, 1),
     (2.0, ml_dtypes.int2, -2), (-1.0, ml_dtypes.uint2, 3), (5.0, ml_dtypes.uint2, 1)],
)  # fmt: skip
def test_spec_oracle_for_sub_byte_casts_by_hand(value, dtype, spec):
    """Hand-derived: round half to even, then the low 4 (2) bits in two's complement."""
    assert spec_cast_to_sub_byte_int(value, dtype) == spec
    got = conversion.cast_array(np.array([value]), np.dtype(dtype))
    assert int(got[0]) == spec


def test_spec_oracle_for_float4_by_hand():
    cases = {math.nan: 6.0, math.inf: 6.0, -math.inf: -6.0, 7.0: 6.0, -1e6: -6.0, 5.0: 4.0, 2.5: 2.0, 3.5: 4.0,
             0.25: 0.0, 0.75: 1.0, 1.25: 1.0, -1.75: -2.0, 0.01: 0.0}  # fmt: skip
    for value, spec in cases.items():
        assert spec_cast_to_float4e2m1(value) == spec, value


def _check_disagreement(case, entry, x, got, want):
    """refquant == the spec's value; the generated output differs from it only where, and as, the entry says."""
    spec = entry.spec_output(x, want.dtype)
    assert_same_bits(got, spec, f"{case.name}: refquant vs the spec ({entry.spec})")
    spec_f, want_f = spec.astype(np.float64), want.astype(np.float64)
    differs = ~((spec_f == want_f) | (np.isnan(spec_f) & np.isnan(want_f)))
    affected = entry.affected(x.astype(np.float64), want.dtype)
    assert not (differs & ~affected).any(), (
        f"{case.name}: the generated output differs from the spec outside the documented disagreement at "
        f"{np.argwhere(differs & ~affected)[:3].tolist()}; the table in tests/test_float_ops.py needs a look"
    )
    assert entry.generated(want_f[differs]).all(), (
        f"{case.name}: generated values {want[differs][:4]} where the spec has {spec[differs][:4]}; documented: "
        f"{entry.generator}"
    )


def _run_case(case):
    session = refquant.Session(case.model)
    entry = DISAGREEMENT_OF.get(case.name)
    for inputs, expected in case.data_sets:
        inputs = [to_array(v) for v in inputs]
        feeds = {spec.name: np.asarray(v) for spec, v in zip(case.model.graph.input, inputs)}
        outputs = session.run(None, feeds)
        assert len(outputs) == len(expected)
        for spec, got, want in zip(case.model.graph.output, outputs, expected):
            want = np.asarray(to_array(want))
            if entry is not None:
                _check_disagreement(case, entry, np.asarray(inputs[0]), got, want)
            elif case.model.graph.node[0].op_type in ("MatMul", "Gemm"):
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)
            else:
                assert_same_bits(got, want, spec.name)


@pytest.mark.parametrize("case", FLOAT_OP_CASES, ids=lambda c: c.name)
def test_onnx_node_case(case):
    if case.name in UNSUPPORTED:
        pytest.skip(UNSUPPORTED[case.name])
    _run_case(case)


@pytest.mark.parametrize("case", EXPANDED_DQL_CASES, ids=lambda c: c.name)
def test_expanded_dynamic_quantize_linear_is_bit_exact(case):
    _run_case(case)


# ----------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------


@st.composite
def op_opset_dtype(draw, ops, exclude=()):
    op = draw(st.sampled_from(ops))
    opset = draw(st.sampled_from([o for o in OPSETS if schema_dtypes(op, o, exclude)]))
    return op, opset, draw(st.sampled_from(schema_dtypes(op, opset, exclude)))


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
# ReduceMin, ReduceMax
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


# ----------------------------------------------------------------------------
# MatMul, Gemm
# ----------------------------------------------------------------------------


def _exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in exact rational arithmetic, as an object array of Fractions."""
    to_fraction = np.vectorize(Fraction, otypes=[object])
    return np.asarray(np.matmul(to_fraction(a.astype(np.float64)), to_fraction(b.astype(np.float64))), dtype=object)


def _unit_roundoff(dtype) -> float:
    return float(ml_dtypes.finfo(dtype).eps) / 2


def error_bound(exact, magnitude, steps: int, dtype, compute):
    """gamma_n * magnitude + u_T * |exact| (+ subnormal slack): the stated tolerance.

    gamma_n = n u / (1 - n u) bounds n roundings in the compute type (Higham,
    Accuracy and Stability of Numerical Algorithms, 3.1); u_T covers the final
    rounding to T when T is narrower than the compute type.
    """
    u = _unit_roundoff(compute)
    gamma = steps * u / (1 - steps * u)
    final = 0.0 if np.dtype(dtype) == np.dtype(compute) else _unit_roundoff(dtype)
    subnormal = float(ml_dtypes.finfo(dtype).smallest_subnormal)
    return gamma * magnitude + final * np.abs(exact.astype(np.float64)) + steps * subnormal


def assert_close_to_exact_and_reference(got, reference, exact, magnitude, steps: int, dtype):
    """refquant within its bound of the exact value; onnx.reference (which computes in T) within both bounds."""
    mine = error_bound(exact, magnitude, steps, dtype, F64)  # refquant sums in float64, rounds once to T
    error = np.abs(got.astype(np.float64) - exact.astype(np.float64))
    assert (error <= mine).all(), f"error {error.max()} exceeds the bound {mine[error > mine].min()}"
    theirs = error_bound(exact, magnitude, steps, dtype, dtype)
    gap = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    assert (gap <= mine + theirs).all(), f"refquant and onnx.reference differ by {gap.max()}"


@st.composite
def matmul_operands(draw, dtype):
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=2)).input_shapes
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(0, 5)), draw(st.integers(1, 4))
    shape_a = (k,) if draw(st.booleans()) else batch_a + (m, k)
    shape_b = (k,) if draw(st.booleans()) else batch_b + (k, n)
    finite = {"nan": False, "infinity": False, "magnitude": 8.0 if dtype == F16 else 1e6}
    element = {} if is_int(dtype) else finite
    return draw(values(dtype, shape_a, **element)), draw(values(dtype, shape_b, **element))


@given(st.data())
def test_float_matmul_is_within_the_error_bound_of_the_exact_product(data):
    opset = data.draw(st.sampled_from(OPSETS))
    dtype = data.draw(st.sampled_from([d for d in schema_dtypes("MatMul", opset) if is_float(d)]))
    a, b = data.draw(matmul_operands(dtype))
    got = run_refquant("MatMul", {"A": a, "B": b}, [dtype], opset=opset)[0]
    want = run_reference("MatMul", {"A": a, "B": b}, [dtype], opset=opset)[0]
    assert got.dtype == dtype and got.shape == want.shape
    magnitude = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    assert_close_to_exact_and_reference(got, want, _exact_product(a, b), magnitude, a.shape[-1], dtype)


@given(st.data())
def test_integer_matmul_is_exact_then_wraps(data):
    opset = data.draw(st.sampled_from(OPSETS))
    dtype = data.draw(st.sampled_from([d for d in schema_dtypes("MatMul", opset) if is_int(d)]))
    a, b = data.draw(matmul_operands(dtype))
    got = run_refquant("MatMul", {"A": a, "B": b}, [dtype], opset=opset)[0]
    exact = np.matmul(a.astype(object), b.astype(object))  # Python integers: exact
    assert got.dtype == dtype
    assert got.tolist() == np.vectorize(lambda v: wrap(int(v), dtype), otypes=[object])(exact).tolist()
    # numpy's integer matmul (onnx.reference) wraps the same way
    assert_same_bits(got, run_reference("MatMul", {"A": a, "B": b}, [dtype], opset=opset)[0])


@st.composite
def gemm_case(draw, dtype):
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(0, 4)), draw(st.integers(1, 4))
    trans_a, trans_b = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    element = {} if is_int(dtype) else {"nan": False, "infinity": False, "magnitude": 8.0 if dtype == F16 else 1e6}
    a = draw(values(dtype, (k, m) if trans_a else (m, k), **element))
    b = draw(values(dtype, (n, k) if trans_b else (k, n), **element))
    c_shape = draw(st.sampled_from([None, (), (n,), (1, n), (m, 1), (m, n)]))
    c = None if c_shape is None else draw(values(dtype, c_shape, **element))
    coefficients = [1.0, 0.0, -2.0, 3.0] if is_int(dtype) else [1.0, 0.0, 0.5, -2.0, 1.7]
    attrs = {
        "alpha": draw(st.sampled_from(coefficients)),
        "beta": draw(st.sampled_from(coefficients)),
        "transA": trans_a,
        "transB": trans_b,
    }
    return a, b, c, attrs


def _gemm_operands(a, b, attrs):
    return (a.T if attrs["transA"] else a), (b.T if attrs["transB"] else b)


@given(st.data())
def test_float_gemm_is_within_the_error_bound(data):
    opset = data.draw(st.sampled_from(OPSETS))
    dtype = data.draw(st.sampled_from([d for d in schema_dtypes("Gemm", opset) if is_float(d)]))
    a, b, c, attrs = data.draw(gemm_case(dtype))
    if opset < 11 and c is None:
        c = np.zeros((), dtype)
    inputs = {"A": a, "B": b, "C": c}
    got = run_refquant("Gemm", inputs, [dtype], opset=opset, attrs=attrs)[0]
    want = run_reference("Gemm", inputs, [dtype], opset=opset, attrs=attrs)[0]
    alpha, beta = (Fraction(float(np.float32(attrs[k]))) for k in ("alpha", "beta"))
    a2, b2 = _gemm_operands(a, b, attrs)
    exact = _exact_product(a2, b2) * alpha
    magnitude = abs(float(alpha)) * (np.abs(a2.astype(np.float64)) @ np.abs(b2.astype(np.float64)))
    if c is not None and beta:
        c64 = np.broadcast_to(c.astype(np.float64), exact.shape)
        exact = exact + np.vectorize(Fraction, otypes=[object])(c64) * beta
        magnitude = magnitude + abs(float(beta)) * np.abs(c64)
    assert got.dtype == dtype and got.shape == exact.shape
    assert_close_to_exact_and_reference(got, want, exact, magnitude, a2.shape[1] + 3, dtype)


def test_integer_matmul_handles_the_most_negative_value():
    # |INT_MIN| does not fit int32: an overflowing abs() once zeroed this product
    a, b = np.array([[1, 1]], np.int32), np.array([[-(2**31)], [0]], np.int32)
    assert run_refquant("MatMul", {"A": a, "B": b}, [a.dtype], opset=13)[0].tolist() == [[-(2**31)]]
    big = np.array([[2**63, 2**63]], np.uint64)  # 2**64 * 2 wraps to 0; 2**63 * 1 stays
    assert run_refquant("MatMul", {"A": big, "B": np.array([[2], [1]], np.uint64)}, [big.dtype], opset=13)[
        0
    ].tolist() == [[2**63]]


@given(st.data())
def test_integer_gemm_is_exact_then_wraps(data):
    opset = data.draw(st.sampled_from(OPSETS))
    dtype = data.draw(st.sampled_from([d for d in schema_dtypes("Gemm", opset) if is_int(d)]))
    a, b, c, attrs = data.draw(gemm_case(dtype))
    if opset < 11 and c is None:
        c = np.zeros((), dtype)
    got = run_refquant("Gemm", {"A": a, "B": b, "C": c}, [dtype], opset=opset, attrs=attrs)[0]
    a2, b2 = _gemm_operands(a, b, attrs)
    exact = np.matmul(a2.astype(object), b2.astype(object)) * int(attrs["alpha"])
    if c is not None:
        exact = exact + np.broadcast_to(c.astype(object), exact.shape) * int(attrs["beta"])
    assert got.tolist() == np.vectorize(lambda v: wrap(int(v), dtype), otypes=[object])(exact).tolist()


def test_gemm_with_beta_zero_does_not_read_c_and_checks_its_shape():
    a, b = np.eye(2, dtype=np.float32), np.ones((2, 3), np.float32)
    got = run_refquant(
        "Gemm", {"A": a, "B": b, "C": np.full((3,), np.nan, np.float32)}, [F32], opset=13, attrs={"beta": 0.0}
    )
    assert_same_bits(got[0], np.ones((2, 3), np.float32))
    with pytest.raises(ShapeError, match=r"C has shape \(2,\), which does not broadcast to \(2, 3\)"):
        run_refquant("Gemm", {"A": a, "B": b, "C": np.ones(2, np.float32)}, [F32], opset=13)


# ----------------------------------------------------------------------------
# Cast
# ----------------------------------------------------------------------------

HAS_INFINITY = frozenset({F16, BF16, F32, np.dtype(ml_dtypes.float8_e5m2)})
FINITE_ONLY = frozenset(
    np.dtype(t) for t in (ml_dtypes.float4_e2m1fn, ml_dtypes.float6_e2m3fn, ml_dtypes.float6_e3m2fn)
)
FLOAT8 = frozenset(
    np.dtype(t)
    for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz)
)


def _round_exactly(value, dtype) -> Fraction:
    """``value`` (int or finite float) rounded to nearest-even in ``dtype``'s precision, exponent unbounded above."""
    exact = Fraction(value)
    if exact == 0:
        return exact
    info = ml_dtypes.finfo(dtype)
    magnitude = abs(exact)
    exponent = math.floor(math.log2(magnitude))
    while Fraction(2) ** exponent > magnitude:  # log2 of a huge Fraction may be off by one
        exponent -= 1
    while Fraction(2) ** (exponent + 1) <= magnitude:
        exponent += 1
    quantum = Fraction(2) ** (max(exponent, info.minexp) - info.nmant)
    quotient, remainder = divmod(magnitude, quantum)
    if remainder > quantum / 2 or (remainder == quantum / 2 and quotient % 2):
        quotient += 1
    return (1 if exact > 0 else -1) * quotient * quantum


def oracle_cast_to_float(value, dtype, saturate: bool) -> float:
    """One element of Cast(value) to float type ``dtype``, from the spec's rules, as a float64."""
    largest = float(ml_dtypes.finfo(dtype).max)
    if isinstance(value, float) and math.isnan(value):
        return largest if dtype in FINITE_ONLY else math.nan
    if not (isinstance(value, float) and math.isinf(value)):
        rounded = _round_exactly(value, dtype)
        if abs(rounded) <= largest:
            return math.copysign(float(rounded), value)
    # out of range: +-inf, or a rounded value beyond +-max
    if dtype in FINITE_ONLY or (dtype in FLOAT8 and saturate):
        return math.copysign(float(largest), value)
    return math.copysign(math.inf, value) if dtype in HAS_INFINITY else math.nan


def oracle_cast_to_int(value, dtype):
    """One element of Cast(float value) to integer type ``dtype``; None where ONNX leaves it undefined."""
    if math.isnan(value) or math.isinf(value):
        return None
    if dtype in SUB_BYTE_INTS:  # ONNX int4/int2 pages: round half to even, keep the low bits
        return wrap(round(value), dtype)
    info = ml_dtypes.iinfo(dtype)
    truncated = math.trunc(value)
    return truncated if info.min <= truncated <= info.max else None


CAST_OPSET = 28
EXACT_SOURCES = [
    np.dtype(t) for t in (np.int32, np.uint32, np.int64, np.uint64, np.float64, np.float32, np.float16)
] + [E8M0]
FLOAT_TARGETS = sorted({F16, BF16, F32, F64} | FLOAT8 | FINITE_ONLY, key=str)
INT_TARGETS = sorted(
    {np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64)} | SUB_BYTE_INTS,
    key=str,
)


def run_cast(x, target, *, opset=CAST_OPSET, **attrs):
    return run_refquant("Cast", {"input": x}, [target], opset=opset, attrs={"to": proto_of(target), **attrs})[0]


@given(
    st.sampled_from(EXACT_SOURCES).flatmap(lambda d: st.tuples(st.just(d), values(d, (6,), nan=True))),
    st.sampled_from(FLOAT_TARGETS),
    st.booleans(),
)
@example((np.dtype(np.int64), np.array([2**62 + 2**54 + 1] * 6, np.int64)), BF16, True)  # float32 first: 2**62
@example((F64, np.array([1 + 2**-8 + 2**-40] * 6)), BF16, True)  # float32 first: a tie, then 1.0
@example(
    (F64, np.array([464.0, 464.0000001, -480.0, 1e300, 2**-10, 2**-9 * 1.5])), np.dtype(ml_dtypes.float8_e4m3fn), False
)
def test_cast_to_float_rounds_once(source, target, saturate):
    _, x = source
    got = run_cast(x, target, saturate=int(saturate))
    expected = [
        (
            (float(v) if is_float(x.dtype) else float(int(v)))
            if target == F64
            else oracle_cast_to_float(float(v) if is_float(x.dtype) else int(v), target, saturate)
        )
        for v in x
    ]
    assert_same_bits(got, np.array(expected, np.float64).astype(target))


@given(
    st.sampled_from([F64, F32, F16, BF16, E8M0]).flatmap(lambda d: st.tuples(st.just(d), values(d, (4,)))),
    st.sampled_from(INT_TARGETS),
)
@example((F64, np.array([2.5, -2.5, 3.5, -9.0])), np.dtype(ml_dtypes.int4))  # 2, -2, 4, 7
@example((F64, np.array([-0.9, 255.9, 0.0, -0.0])), np.dtype(np.uint8))  # 0, 255, 0, 0
def test_cast_float_to_integer_truncates_or_refuses_undefined_values(source, target):
    _, x = source
    expected = [oracle_cast_to_int(float(v), target) for v in x]
    if None in expected:
        with pytest.raises(NonFiniteError, match="undefined in ONNX Cast"):
            run_cast(x, target)
    else:
        assert [int(v) for v in run_cast(x, target)] == expected


REFERENCE_CAST_SOURCES = [
    np.dtype(t)
    for t in (
        np.bool_,
        np.int8,
        np.uint8,
        np.int16,
        np.uint16,
        np.float16,
        np.float32,
        ml_dtypes.bfloat16,
        ml_dtypes.float8_e4m3fn,
        ml_dtypes.float8_e4m3fnuz,
        ml_dtypes.float8_e5m2,
        ml_dtypes.float8_e5m2fnuz,
        ml_dtypes.int4,
        ml_dtypes.uint4,
        ml_dtypes.int2,
        ml_dtypes.uint2,
        ml_dtypes.float4_e2m1fn,
        ml_dtypes.float6_e2m3fn,
        ml_dtypes.float6_e3m2fn,
    )
]  # fmt: skip  (sources with <= 24-bit values, which ml_dtypes converts with one rounding)


@pytest.mark.parametrize("source_proto", sorted(set(types_at(tensor.CAST_TYPES, CAST_OPSET)) - {T.STRING}))
def test_cast_converts_every_pair_of_types(source_proto):
    """0 and 1 survive every conversion (float8e8m0 has no 0: saturation gives its minimum, 2**-127)."""
    source = np_dtype(source_proto)
    x = np.array([1, 1] if source == E8M0 else [0, 1]).astype(source)
    for target_proto in sorted(set(types_at(tensor.CAST_TYPES, CAST_OPSET)) - {T.STRING}):
        target = np_dtype(target_proto)
        low = 2.0**-127 if target == E8M0 else 0
        expected = np.array([1, 1] if source == E8M0 else [low, 1]).astype(target)
        assert_same_bits(run_cast(x, target), expected, f"{source} -> {target}")


def _defined_for_reference(x: np.ndarray, target: np.dtype) -> np.ndarray:
    """x with the values where the spec and onnx.reference part ways replaced by 0.

    Float to integer: NaN/inf/out-of-range are undefined (refquant raises) and
    ml_dtypes truncates where the int4/int2 pages round: integral in-range values only.
    To float4/float6: NaN (spec: +max; ml_dtypes: -0).
    """
    if not is_float(x.dtype):
        return x
    v = _widen(x)
    if is_int(target):
        info = ml_dtypes.iinfo(target)
        keep = np.isfinite(v) & (np.trunc(v) >= info.min) & (np.trunc(v) <= info.max)
        if target in SUB_BYTE_INTS:
            keep &= np.isfinite(v) & (v == np.round(v))
    else:
        keep = ~np.isnan(v) if target in FINITE_ONLY else np.ones(v.shape, bool)
    return np.where(keep, v, 0.0).astype(x.dtype)


def _ml_dtypes_converts(source, target) -> bool:
    """Whether numpy/ml_dtypes convert ``source`` to ``target`` directly (onnx.reference needs it)."""
    try:
        np.zeros(1, source).astype(target)
    except (TypeError, ValueError):
        return False
    return True


@given(st.data())
def test_cast_matches_onnx_reference_where_both_follow_the_spec(data):
    opset = data.draw(st.sampled_from(OPSETS))
    allowed = set(schema_dtypes("Cast", opset))
    source = data.draw(st.sampled_from([d for d in REFERENCE_CAST_SOURCES if d in allowed]))
    targets = {d for d in allowed - {E8M0} if _ml_dtypes_converts(source, d)}
    target = data.draw(st.sampled_from(sorted(targets, key=str)))
    x = _defined_for_reference(data.draw(values(source, (5,))), target)
    attrs = {"to": proto_of(target)}
    if opset >= 19:
        attrs["saturate"] = data.draw(st.integers(0, 1))
    check_against_reference("Cast", {"input": x}, [target], opset=opset, attrs=attrs)


SPECIALS = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e6, -1e6], np.float32)


@pytest.mark.parametrize(
    ("target", "saturate", "expected"),
    [  # the two float8 tables of the Cast operator
        (ml_dtypes.float8_e4m3fn, 1, [0.0, -0.0, np.nan, 448, -448, 448, -448]),
        (ml_dtypes.float8_e4m3fnuz, 1, [0.0, 0.0, np.nan, 240, -240, 240, -240]),
        (ml_dtypes.float8_e5m2, 1, [0.0, -0.0, np.nan, 57344, -57344, 57344, -57344]),
        (ml_dtypes.float8_e5m2fnuz, 1, [0.0, 0.0, np.nan, 57344, -57344, 57344, -57344]),
        (ml_dtypes.float8_e4m3fn, 0, [0.0, -0.0, np.nan, np.nan, np.nan, np.nan, np.nan]),
        (ml_dtypes.float8_e4m3fnuz, 0, [0.0, 0.0, np.nan, np.nan, np.nan, np.nan, np.nan]),
        (ml_dtypes.float8_e5m2, 0, [0.0, -0.0, np.nan, np.inf, -np.inf, np.inf, -np.inf]),
        (ml_dtypes.float8_e5m2fnuz, 0, [0.0, 0.0, np.nan, np.nan, np.nan, np.nan, np.nan]),
        # docs/technical/float4.md and float6.md: saturate always, NaN -> +max
        (ml_dtypes.float4_e2m1fn, 0, [0.0, -0.0, 6, 6, -6, 6, -6]),
        (ml_dtypes.float6_e2m3fn, 1, [0.0, -0.0, 7.5, 7.5, -7.5, 7.5, -7.5]),
        (ml_dtypes.float6_e3m2fn, 0, [0.0, -0.0, 28, 28, -28, 28, -28]),
        # IEEE: +-inf when out of range
        (ml_dtypes.bfloat16, 1, [0.0, -0.0, np.nan, np.inf, -np.inf, 999424, -999424]),
        (np.float16, 1, [0.0, -0.0, np.nan, np.inf, -np.inf, np.inf, -np.inf]),
    ],
)
def test_cast_special_values_follow_the_spec_tables(target, saturate, expected):
    target = np.dtype(target)
    assert_same_bits(run_cast(SPECIALS, target, saturate=saturate), np.array(expected, np.float64).astype(target))


E8M0_INPUTS = np.array(
    [1.0, 1.25, 1.5, 1.75, 0.124, 0.0, 2.0**-130, 2.0**130, np.inf, np.nan, 2.0**-127, 2.0**127 * 1.5]
)


@pytest.mark.parametrize(
    ("round_mode", "saturate", "exponents"),
    [  # 2**k per input; None for NaN. Hand-derived from the Cast float8e8m0 rules and its table.
        ("up", 1, [0, 1, 1, 1, -3, -127, -127, 127, 127, None, -127, 127]),
        ("down", 1, [0, 0, 0, 0, -4, -127, -127, 127, 127, None, -127, 127]),
        ("nearest", 1, [0, 0, 1, 1, -3, -127, -127, 127, 127, None, -127, 127]),
        ("nearest", 0, [0, 0, 1, 1, -3, None, None, None, None, None, -127, None]),
    ],
)
def test_cast_to_float8e8m0_rounds_to_powers_of_two(round_mode, saturate, exponents):
    got = run_cast(E8M0_INPUTS, E8M0, saturate=saturate, round_mode=round_mode)
    expected = np.array([np.nan if k is None else 2.0**k for k in exponents]).astype(E8M0)
    assert_same_bits(got, expected)


@given(hnp.arrays(np.float32, 6, elements=st.floats(2.0**-126, float(np.finfo(np.float32).max), width=32)))
def test_cast_to_float8e8m0_matches_onnx_for_normal_float32(x):
    # onnx's to_float8e8m0 reads float32 bits: right for normal numbers, not for subnormals or inf
    for mode in tensor.ROUND_MODES:
        assert_same_bits(run_cast(x, E8M0, round_mode=mode), onnx.numpy_helper.to_float8e8m0(x, True, mode))


def test_cast_bool_and_integer_rules():
    x = np.array([0.0, -0.0, 0.5, np.nan, -3.0], np.float32)
    assert run_cast(x, np.dtype(np.bool_)).tolist() == [False, False, True, True, True]
    assert run_cast(np.array([True, False]), F32).tolist() == [1.0, 0.0]
    # fixed point to fixed point: "discard higher bits and reinterpret", e.g. 200 (int16) -> -56 (int8)
    assert run_cast(np.array([200, -129, 256], np.int16), np.dtype(np.int8)).tolist() == [-56, 127, 0]
    assert run_cast(np.array([2**63], np.uint64), np.dtype(np.int64)).tolist() == [-(2**63)]
    assert [int(v) for v in run_cast(np.array([15, 16, -1], np.int32), np.dtype(ml_dtypes.int4))] == [-1, 0, -1]


@pytest.mark.parametrize(
    ("x", "attrs", "error", "message"),
    [
        (np.ones(2, np.float32), {"to": 99}, AttributeValueError, r"to=99 \(<element type 99>\) is not a type"),
        (np.ones(2, np.float32), {"to": T.COMPLEX64}, AttributeValueError, r"complex64\) is not a type"),
        (np.ones(2, np.float32), {"to": T.STRING}, DTypeError, "from or to string are not supported"),
        (np.array([np.nan], np.float32), {"to": T.INT8}, NonFiniteError, r"nan.*have no int8 value"),
        (np.array([300.0], np.float32), {"to": T.INT8}, NonFiniteError, r"outside \[-128, 127\]"),
        (np.array([-1.0], np.float32), {"to": T.UINT8}, NonFiniteError, r"-1\.0.*uint8"),
        (np.array([np.inf], np.float32), {"to": T.INT4}, NonFiniteError, "undefined in ONNX Cast"),
        (np.array([-1.0], np.float32), {"to": T.FLOAT8E8M0}, NonFiniteError, "negative values have no float8e8m0"),
        (np.ones(2, np.float32), {"to": T.FLOAT8E8M0, "round_mode": "odd"}, AttributeValueError, "round_mode 'odd'"),
    ],
)
def test_cast_errors(x, attrs, error, message):
    with pytest.raises(error, match=message):
        run_refquant("Cast", {"input": x}, [F32], opset=CAST_OPSET, attrs=attrs)


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


# ----------------------------------------------------------------------------
# other errors
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
        ("MatMul", {"A": np.ones((2, 3), np.float32), "B": np.ones((2, 3), np.float32)}, 13, None, ShapeError,
         "inner dimensions 3 and 2 differ"),
        ("Gemm", {"A": np.ones((2, 3), np.float32), "B": np.ones((3, 2), np.float32)}, 10, None, ShapeError,
         "required input 'C' is missing"),
        ("Gemm", {"A": np.ones((2, 2), np.int32), "B": np.ones((2, 2), np.int32)}, 13, {"alpha": 0.5},
         AttributeValueError, "alpha=0.5 with integer inputs"),
        ("ReduceMin", {"data": np.ones((2, 3), np.float32)}, 13, {"axes": [1, -1]}, AttributeValueError,
         r"axes \[1, -1\] name an axis twice"),
        ("ReduceMax", {"data": np.ones((2, 3), np.float32)}, 10, {"axes": [-1]}, AttributeValueError,
         "negative axes are allowed from opset 11"),
        ("Flatten", {"input": np.ones((2, 3), np.float32)}, 10, {"axis": -1}, AttributeValueError,
         r"axis -1 is out of range \[0, 2\]"),
        ("Identity", {"input": np.ones(2, np.dtype(ml_dtypes.float8_e4m3fn))}, 18, None, DTypeError,
         "input has type float8e4m3fn"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(op, inputs, opset, attrs, error, message):
    out = next(iter(inputs.values())).dtype
    with pytest.raises(error, match=message):
        run_refquant(op, inputs, [out], opset=opset, attrs=attrs)


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
