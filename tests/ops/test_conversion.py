"""Cast's conversion rules: refquant/ops/conversion.py (``cast_array``), run through the Cast node.

The Cast kernel is registered in refquant/ops/tensor.py: it reads ``to``, ``saturate`` and ``round_mode``,
checks the types each opset accepts (tested in test_tensor.py) and converts every value with
``cast_array`` (spec/ops/float.md, Cast).

Expected values come from independent sources:
- exact oracles on Python integers and fractions (rounding once to nearest-even, saturation, truncation);
- onnx.reference.ReferenceEvaluator, bit for bit where it follows the spec, on hypothesis-drawn inputs at
  several opsets (10, 13, ..., 28);
- onnx.numpy_helper.to_float8e8m0 for normal float32 inputs;
- the element types of the ONNX schemas (onnx.defs);
- hand-derived values for the spec's tables (float8, float4/float6, float8e8m0, int4/int2, bool).
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T

from refquant.dtypes import np_dtype, proto_of, types_at
from refquant.errors import AttributeValueError, DTypeError, NonFiniteError
from refquant.ops import conversion, tensor

from .helpers import (
    BF16,
    E8M0,
    F16,
    F32,
    F64,
    OPSETS,
    SUB_BYTE_INTS,
    assert_same_bits,
    check_against_reference,
    is_float,
    is_int,
    run_refquant,
    schema_dtypes,
    spec_cast_to_float4e2m1,
    spec_cast_to_sub_byte_int,
    values,
    widen,
    wrap,
)

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
    v = widen(x)
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


# ----------------------------------------------------------------------------
# the spec's oracles for the node cases that disagree with it (test_onnx_node_cases.py)
# ----------------------------------------------------------------------------


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
