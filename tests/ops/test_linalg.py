"""Matrix products: refquant/ops/linalg.py (MatMul, Gemm; spec/ops/float.md).

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- exact oracles on Python integers and fractions: integer MatMul/Gemm exact, then wrapped; float
  MatMul/Gemm within a stated error bound of the exact product;
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs at several opsets (10, 13, ..., 28):
  within both error bounds for floats, bit for bit for integers;
- hand-derived values for refquant's documented choices and errors.
"""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import AttributeValueError, ShapeError
from refquant.ops import linalg

from .helpers import (
    F16,
    F32,
    F64,
    OPSETS,
    assert_error_names_the_problem,
    assert_same_bits,
    assert_versions_and_types_follow_the_onnx_schemas,
    is_float,
    is_int,
    run_reference,
    run_refquant,
    schema_dtypes,
    values,
    wrap,
)

TYPE_TABLES = {
    "MatMul": linalg.MATMUL_TYPES,
    "Gemm": linalg.MATMUL_TYPES,
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    assert_versions_and_types_follow_the_onnx_schemas(op, TYPE_TABLES[op])


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


@pytest.mark.parametrize(
    ("op", "inputs", "opset", "attrs", "error", "message"),
    [
        ("MatMul", {"A": np.ones((2, 3), np.float32), "B": np.ones((2, 3), np.float32)}, 13, None, ShapeError,
         "inner dimensions 3 and 2 differ"),
        ("Gemm", {"A": np.ones((2, 3), np.float32), "B": np.ones((3, 2), np.float32)}, 10, None, ShapeError,
         "required input 'C' is missing"),
        ("Gemm", {"A": np.ones((2, 2), np.int32), "B": np.ones((2, 2), np.int32)}, 13, {"alpha": 0.5},
         AttributeValueError, "alpha=0.5 with integer inputs"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(op, inputs, opset, attrs, error, message):
    assert_error_names_the_problem(op, inputs, opset, attrs, error, message)
