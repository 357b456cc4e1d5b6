"""Tensor contractions: refquant/ops/einsum.py (Einsum, Det; spec/ops/tensor.md).

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- exact oracles written here: Python integers for integer Einsum (then wrapped), Fractions for float Einsum
  (one rounding of the exact value for two-operand products), float64 numpy for Det within a stated bound;
- onnx.reference for the implicit-output label order.
The ONNX backend node cases of these ops run in test_onnx_node_cases.py.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import AttributeValueError, ShapeError
from refquant.ops import einsum

from .helpers import assert_same_bits, assert_versions_and_types_follow_the_onnx_schemas, run_reference, run_refquant, wrap


@pytest.mark.parametrize(("op", "table"), [("Einsum", einsum.EINSUM_TYPES), ("Det", einsum.DET_TYPES)])
def test_versions_and_types_follow_the_onnx_schemas(op, table):
    assert_versions_and_types_follow_the_onnx_schemas(op, table)


def _run(equation, *arrays, opset=12):
    inputs = {f"x{i}": a for i, a in enumerate(arrays)}
    return run_refquant("Einsum", inputs, [arrays[0].dtype], opset=opset, attrs={"equation": equation})[0]


@given(a=hnp.arrays(np.float32, (3, 4), elements=st.floats(-(2.0**60), 2.0**60, width=32)),
       b=hnp.arrays(np.float32, (4, 2), elements=st.floats(-(2.0**60), 2.0**60, width=32)))  # fmt: skip
def test_float_matmul_is_the_float64_sum_rounded_once(a, b):
    got = _run("ij,jk->ik", a, b)
    exact = [[sum(Fraction(float(a[i, j])) * Fraction(float(b[j, k])) for j in range(4)) for k in range(2)] for i in range(3)]
    # float64 sum of exact products: within 3 * 2**-53 * sum|products| of exact, then one rounding to float32
    for i, k in itertools.product(range(3), range(2)):
        bound = 3 * 2.0**-53 * sum(abs(float(a[i, j]) * float(b[j, k])) for j in range(4))
        assert abs(float(got[i, k]) - float(exact[i][k])) <= bound + abs(float(exact[i][k])) * 2.0**-24 + 1e-45


@given(a=hnp.arrays(np.int8, (2, 3)), b=hnp.arrays(np.int8, (3, 2)))
def test_integer_einsum_is_exact_then_wraps(a, b):
    got = _run("ij,jk->ik", a, b)
    want = [[wrap(sum(int(a[i, j]) * int(b[j, k]) for j in range(3)), np.int8) for k in range(2)] for i in range(2)]
    np.testing.assert_array_equal(got, np.array(want, np.int8))


def test_int64_limits_wrap():
    x = np.array([np.iinfo(np.int64).max, 1], np.int64)
    assert _run("i->", x) == np.iinfo(np.int64).min


@pytest.mark.parametrize(
    ("equation", "shapes"),
    [
        ("ba,Ab", [(2, 3), (4, 2)]),  # implicit: upper case first
        ("ii", [(3, 3)]),  # trace
        ("ii->i", [(3, 3)]),  # diagonal
        ("...ij,...jk", [(2, 3, 4), (4, 5)]),  # ellipsis, broadcast batch
        ("i j , j k -> i k", [(2, 3), (3, 2)]),  # spaces
        ("...", [(2, 3)]),
    ],
)
def test_equations_match_onnx_reference(equation, shapes):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-4, 5, s).astype(np.float64) for s in shapes]
    inputs = {f"x{i}": a for i, a in enumerate(arrays)}
    got = run_refquant("Einsum", inputs, [np.float64], opset=12, attrs={"equation": equation})[0]
    want = run_reference("Einsum", inputs, [np.float64], opset=12, attrs={"equation": equation.replace(" ", "")})[0]
    assert_same_bits(got, want)


def test_einsum_refusals():
    with pytest.raises(ShapeError, match="label 'j' has lengths 3 and 4"):
        _run("ij,jk->ik", np.zeros((2, 3), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(AttributeValueError, match="2 input terms for 1 inputs"):
        _run("ij,jk", np.zeros((2, 3), np.float32))
    with pytest.raises(ShapeError, match="names 2 axes"):
        _run("ij->i", np.zeros(3, np.float32))
    with pytest.raises(AttributeValueError, match="repeats or invents"):
        _run("ij->iz", np.zeros((2, 3), np.float32))


def test_det_of_batches_and_empty_matrices():
    x = np.array([[[2, 0], [0, 3]], [[1, 2], [2, 4]]], np.float32)
    (y,) = run_refquant("Det", {"x": x}, [np.float32], opset=11)
    np.testing.assert_allclose(y, [6, 0], atol=1e-6)
    (y,) = run_refquant("Det", {"x": np.zeros((2, 0, 0), np.float32)}, [np.float32], opset=11)
    np.testing.assert_array_equal(y, [1, 1])
    with pytest.raises(ShapeError, match="square"):
        run_refquant("Det", {"x": np.zeros((2, 3), np.float32)}, [np.float32], opset=11)


@given(x=hnp.arrays(np.float32, (3, 3), elements=st.integers(-8, 8).map(float)))
def test_det_of_small_integer_matrices_is_exact(x):
    # LU in float64 of 3x3 matrices of small integers: the exact determinant (|det| <= 3 * 8**3) to within 1e-9
    m = [[int(v) for v in row] for row in x]
    exact = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
             + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))  # cofactor expansion, exact  # fmt: skip
    (y,) = run_refquant("Det", {"x": x}, [np.float32], opset=11)
    assert abs(float(y) - exact) <= 1e-9 * max(1, abs(exact)) + 1e-4
