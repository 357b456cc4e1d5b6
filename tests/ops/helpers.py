"""Shared by the float kernel tests of tests/ops: one-node models run by refquant and by onnx.reference,
bit-level comparison, hypothesis strategies over every element type, the ONNX schemas' versions and types,
and the spec's Cast oracles that the node-case table and the Cast tests both use."""

from __future__ import annotations

import math
import re
import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx.reference import ReferenceEvaluator

import refquant
from refquant.dtypes import np_dtype, proto_of, types_at

from ..helpers import single_node_model, to_array

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
# running one node
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


def assert_error_names_the_problem(op, inputs, opset, attrs, error, message):
    """Running ``op`` (output of the first input's type) raises ``error`` matching ``message``."""
    out = next(iter(inputs.values())).dtype
    with pytest.raises(error, match=message):
        run_refquant(op, inputs, [out], opset=opset, attrs=attrs)


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place (ordered integer representations)."""
    ia, ib = (np.asarray(v, np.float32).view(np.int32).astype(np.int64) for v in (a, b))
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return np.abs(ia - ib)


def assert_float_function_near_onnx_reference(op, x, opset):
    """``op`` (Sqrt, Exp, ..., Softmax) of float32 ``x`` near onnx.reference: within 4 float32 ulps, Softmax
    within the bound below."""
    x = np.abs(x) if op == "Sqrt" else x
    (got,) = run_refquant(op, {"x": x}, [np.float32], opset=opset)
    (want,) = run_reference(op, {"x": x}, [np.float32], opset=opset)
    assert got.dtype == np.float32 and got.shape == want.shape
    if op == "Softmax":
        # onnx.reference rounds x - max to float32 (inexact when the exponents differ), an error
        # exp multiplies by |x - max| <= 40: relative 40 * 2**-24, plus a few roundings
        np.testing.assert_allclose(got, want, rtol=44 * 2.0**-24, atol=1e-37)
    else:
        assert (ulps(got, want) <= 4).all() or np.allclose(got, want, rtol=0, atol=1e-37)


# ----------------------------------------------------------------------------
# versions and element types from the ONNX schemas
# ----------------------------------------------------------------------------


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


def assert_versions_and_types_follow_the_onnx_schemas(op, table):
    """``op``'s registered since_versions are the schema's, from its first one to 28; ``table`` (a kernel
    module's types-by-version table) gives the schema's element types at every opset."""
    versions = [v for domain, name, v in refquant.supported_ops() if name == op and domain == ""]
    # every since_version of the op between opset 1 and 28, no more, no fewer
    schema_versions = sorted({onnx.defs.get_schema(op, opset, "").since_version for opset in range(versions[0], 29)})
    assert versions == schema_versions
    for v in range(versions[0], 29):
        assert set(types_at(table, v)) == schema_protos(op, v), f"{op} at opset {v}"


def assert_versions_are_the_schema_versions_from_opset_10(op):
    versions = [v for domain, name, v in refquant.supported_ops() if name == op and domain == ""]
    history = sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == op and s.domain == ""})
    in_effect_at_10 = max([v for v in history if v <= 10], default=history[0])
    assert versions == [v for v in history if v >= in_effect_at_10]


# ----------------------------------------------------------------------------
# hypothesis strategies
# ----------------------------------------------------------------------------


def widen(a: np.ndarray) -> np.ndarray:
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
        arrays = arrays.map(lambda a: np.clip(widen(a), -magnitude, magnitude).astype(dtype))
    if not nan:
        arrays = arrays.map(lambda a: np.where(np.isnan(widen(a)), 0.0, widen(a)).astype(dtype))
    return arrays


@st.composite
def op_opset_dtype(draw, ops, exclude=()):
    op = draw(st.sampled_from(ops))
    opset = draw(st.sampled_from([o for o in OPSETS if schema_dtypes(op, o, exclude)]))
    return op, opset, draw(st.sampled_from(schema_dtypes(op, opset, exclude)))


FLOATS = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.floats(-20, 20, width=32))  # fmt: skip


def wrap(value: int, dtype) -> int:
    """``value`` reduced into integer type ``dtype`` (two's complement)."""
    info = ml_dtypes.iinfo(dtype)
    span = 2**info.bits
    value %= span
    return value - span if value > info.max else value


# ----------------------------------------------------------------------------
# ONNX backend node cases
# ----------------------------------------------------------------------------


def node_case_feeds(case, inputs):
    """A node case's data set inputs, named after the graph inputs."""
    return {spec.name: np.asarray(to_array(v)) for spec, v in zip(case.model.graph.input, inputs)}


#: align_corners with a fractional scale * D: the cases divide by scale * D - 1, the ONNX text by
#: (the output length) - 1 (spec/ops/nn.md, Resize); checked against the text in
#: test_resize.py::test_align_corners_divides_by_the_output_length_less_one
CONTRADICTS_THE_TEXT = {
    "test_resize_downsample_scales_linear_align_corners",
    "test_resize_downsample_scales_cubic_align_corners",
}

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


def node_case_outputs(case):
    """(got, want) for every output of every data set of a node case, run by refquant.Session."""
    session = refquant.Session(case.model)
    for inputs, expected in case.data_sets:
        outputs = session.run(None, node_case_feeds(case, inputs))
        assert len(outputs) == len(expected), case.name
        yield from zip(outputs, (np.asarray(to_array(w)) for w in expected))
