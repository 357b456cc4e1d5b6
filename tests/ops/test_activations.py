"""Activation functions: refquant/ops/activations.py (PRelu, Elu, Selu, Celu, Softplus, Softsign,
ThresholdedRelu, Mish, Swish, Shrink; spec/ops/float.md). Their node cases are in test_onnx_node_cases.py.

Expected values come from independent sources:
- the since_versions and element types of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs: bit for bit where the op is one rounding
  of an exact product or sum (PRelu, Shrink), within 4 float32 ulps where both evaluate a function
  (onnx.reference rounds several times in float32);
- the C library's float64 functions (Python's math) rounded once to float32, and hand-derived values for
  the spec's rules and refquant's documented choices (signed zeros, infinities, integer Shrink).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import AttributeValueError, DTypeError, ShapeError
from refquant.ops import activations

from .helpers import (
    F32,
    F64,
    OPSETS,
    assert_error_names_the_problem,
    assert_same_bits,
    assert_versions_and_types_follow_the_onnx_schemas,
    check_against_reference,
    is_int,
    run_reference,
    run_refquant,
    schema_dtypes,
    ulps,
    values,
)

TYPE_TABLES = {
    "PRelu": activations.PRELU_TYPES,
    "Elu": activations.ELU_TYPES,
    "Selu": activations.ELU_TYPES,
    "Celu": activations.CELU_TYPES,
    "Softplus": activations.SOFTPLUS_TYPES,
    "Softsign": activations.SOFTPLUS_TYPES,
    "ThresholdedRelu": activations.THRESHOLDED_RELU_TYPES,
    "Mish": activations.MISH_TYPES,
    "Swish": activations.SWISH_TYPES,
    "Shrink": activations.SHRINK_TYPES,
}
FUNCTIONS = ["Elu", "Selu", "Celu", "Softplus", "Softsign", "ThresholdedRelu", "Mish", "Swish"]
#: a float64 formula per op (Python's math: the C library), the attributes at their defaults
FLOAT64_OF = {
    "Elu": lambda x: x if x >= 0 else math.expm1(x),
    "Selu": lambda x: 1.05070102214813232421875 * x if x > 0
    else 1.05070102214813232421875 * (1.67326319217681884765625 * math.expm1(x)),
    "Celu": lambda x: x if x > 0 else math.expm1(x),
    "Softplus": lambda x: x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x)),
    "Softsign": lambda x: x / (1 + abs(x)),
    "ThresholdedRelu": lambda x: x if x > 1 else 0.0,
    "Mish": lambda x: x * math.tanh(x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))),
    "Swish": lambda x: x / (1 + math.exp(-x)),
}


@pytest.mark.parametrize("op", sorted(TYPE_TABLES))
def test_versions_and_types_follow_the_onnx_schemas(op):
    assert_versions_and_types_follow_the_onnx_schemas(op, TYPE_TABLES[op])


@pytest.mark.parametrize("op", FUNCTIONS)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
                    elements=st.floats(-30, 30, width=32)), opset=st.sampled_from([18, 22, 24, 28]))  # fmt: skip
def test_functions_are_float64_rounded_once_and_near_onnx_reference(op, x, opset):
    if op == "Swish" and opset < 24:
        opset = 24
    (got,) = run_refquant(op, {"x": x}, [F32], opset=opset)
    (want,) = run_reference(op, {"x": x}, [F32], opset=opset)
    # within a few float64 ulps of the C library's formula, before both round to float32: equal bits
    # except, rarely, next to a float32 rounding boundary (then one ulp apart)
    oracle = np.array([FLOAT64_OF[op](float(v)) for v in x.ravel()], np.float64).reshape(x.shape).astype(F32)
    assert (ulps(got, oracle) <= 1).all()
    assert (ulps(got, want) <= 4).all() or np.allclose(got, want, rtol=0, atol=1e-37)


def test_functions_at_zeros_infinities_and_nan():
    def run(op, x, dtype=F32, opset=24, attrs=None):
        return run_refquant(op, {"X": np.array(x, dtype)}, [dtype], opset=opset, attrs=attrs)[0]

    nan, inf = np.nan, np.inf
    # -0 stays -0 (the expm1 branch keeps the sign); -inf gives -alpha; NaN stays NaN
    assert_same_bits(run("Elu", [-0.0, -inf, inf, nan]), np.array([-0.0, -1.0, inf, nan], F32))
    assert_same_bits(run("Elu", [-inf], attrs={"alpha": 2.0}), np.array([-2.0], F32))
    gamma, alpha = 1.05070102214813232421875, 1.67326319217681884765625
    assert_same_bits(run("Selu", [-0.0, -inf, 1.0]), np.array([-0.0, -gamma * alpha, gamma]).astype(F32))
    assert_same_bits(run("Celu", [-0.0, -inf, 2.0], opset=12), np.array([-0.0, -1.0, 2.0], F32))
    assert_same_bits(run("Celu", [-inf], F64, opset=28, attrs={"alpha": 0.5}), np.array([-0.5]))
    # Softplus through logaddexp: no overflow; Softsign as written: inf / inf = NaN
    assert_same_bits(run("Softplus", [1000.0, -inf, inf, 0.0]), np.array([1000.0, 0.0, inf, math.log(2)], F32))
    assert_same_bits(run("Softsign", [inf, -inf, -0.0, 3.0]), np.array([nan, nan, -0.0, 0.75], F32))
    # ThresholdedRelu: NaN > alpha is false, so 0; x == alpha is not above it
    assert_same_bits(run("ThresholdedRelu", [nan, 1.0, 1.5, -3.0]), np.array([0.0, 0.0, 1.5, 0.0], F32))
    # Mish and Swish at -inf: -inf * 0 = NaN (as written); at +inf: inf
    assert_same_bits(run("Mish", [-inf, inf, -0.0]), np.array([nan, inf, -0.0], F32))
    assert_same_bits(run("Swish", [-inf, inf, 0.0]), np.array([nan, inf, 0.0], F32))
    assert_same_bits(run("Swish", [2.0], attrs={"alpha": 0.0}), np.array([1.0], F32))  # x sigmoid(0) = x / 2
    bf = ml_dtypes.bfloat16
    assert_same_bits(run("Elu", [-1.0], bf, opset=22), np.array([math.expm1(-1.0)]).astype(bf))


@given(st.data())
def test_prelu_matches_onnx_reference(data):
    opset = data.draw(st.sampled_from([o for o in OPSETS if o >= 10]))
    dtype = data.draw(st.sampled_from(schema_dtypes("PRelu", opset)))
    x_shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=3))
    # slope: a suffix of X's shape, some axes 1 (unidirectional broadcasting)
    suffix = x_shape[len(x_shape) - data.draw(st.integers(0, len(x_shape))):]
    slope_shape = tuple(d if data.draw(st.booleans()) else 1 for d in suffix)
    x, slope = data.draw(values(dtype, x_shape)), data.draw(values(dtype, slope_shape))
    (got,), (want,) = (run("PRelu", {"X": x, "slope": slope}, [dtype], opset=opset) for run in (run_refquant, run_reference))
    # onnx.reference takes slope * X at X = +-0 (x > 0 ? x : slope x); the spec's X >= 0 keeps X there
    # (PRelu(0, slope=inf) = 0, not NaN): at zeros refquant's output is X itself
    zero = x == 0
    assert_same_bits(got, np.where(zero, x, want))


def test_prelu_by_hand():
    x = np.array([[-2.0, -0.0, 0.0, 3.0, np.nan]], F32)
    slope = np.array([0.25], F32)
    got = run_refquant("PRelu", {"X": x, "slope": slope}, [F32], opset=16)[0]
    assert_same_bits(got, np.array([[-0.5, -0.0, 0.0, 3.0, np.nan]], F32))
    # X >= 0 gives X: a zero is kept whatever the slope (inf, NaN, negative)
    got = run_refquant("PRelu", {"X": x, "slope": np.array([np.inf], F32)}, [F32], opset=16)[0]
    assert_same_bits(got, np.array([[-np.inf, -0.0, 0.0, 3.0, np.nan]], F32))
    ints = np.array([-2**30, -3, 5], np.int32)
    got = run_refquant("PRelu", {"X": ints, "slope": np.array([4, 4, 4], np.int32)}, [np.int32], opset=10)[0]
    assert got.tolist() == [0, -12, 5]  # -2^30 * 4 wraps to 0 (two's complement)
    unsigned = np.array([0, 2**32 - 1], np.uint32)  # never negative: Y = X
    got = run_refquant("PRelu", {"X": unsigned, "slope": np.array([7], np.uint32)}, [np.uint32], opset=10)[0]
    assert got.tolist() == [0, 2**32 - 1]


@given(st.data())
def test_shrink_matches_onnx_reference(data):
    # integers up to 32 bits: onnx.reference's float64 X + bias is exact there
    dtypes = [d for d in schema_dtypes("Shrink", 13) if not (is_int(d) and d.itemsize == 8)]
    dtype = data.draw(st.sampled_from(dtypes))
    x = data.draw(values(dtype, hnp.array_shapes(min_dims=0, max_dims=2, max_side=4)))
    lambd = data.draw(st.floats(0, 100, width=32))
    bias = data.draw(st.floats(-100, 100, width=32))
    (got,), (want,) = (
        run("Shrink", {"input": x}, [dtype], opset=13, attrs={"lambd": lambd, "bias": bias})
        for run in (run_refquant, run_reference)
    )
    if is_int(dtype):
        # onnx.reference's astype of an out-of-range float is platform garbage; refquant wraps the exact value
        exact = np.where(x < -lambd, x + np.float64(bias), np.where(x > lambd, x - np.float64(bias), 0))
        inside = (exact >= np.iinfo(dtype).min) & (exact <= np.iinfo(dtype).max)
        assert (got[inside] == want[inside]).all()
    else:
        assert_same_bits(got, want)


def test_shrink_by_hand():
    def run(x, dtype, **attrs):
        return run_refquant("Shrink", {"input": np.array(x, dtype)}, [dtype], opset=10, attrs=attrs)[0]

    assert_same_bits(run([-2.0, -0.5, 0.5, 2.0, np.nan, -0.0], F32), np.array([-2.0, 0, 0, 2.0, 0, 0], F32))
    got = run([-2.0, 2.0, 1.0], F32, lambd=1.0, bias=1.5)
    assert_same_bits(got, np.array([-0.5, 0.5, 0.0], F32))
    # integers: the exact x -+ bias truncated toward zero, then wrapped into T
    assert run([-5, 5, 1, -1], np.int8, lambd=1.0, bias=1.5).tolist() == [-3, 3, 0, 0]
    assert run([-128, 127], np.int8, lambd=0.0, bias=-1.0).tolist() == [127, -128]  # -128 - 1, 127 + 1 wrap
    big = 2**62 + 1  # not a float64: onnx.reference would round it first
    assert run([big, -big], np.int64, lambd=0.5, bias=0.5).tolist() == [2**62, -(2**62)]
    assert run([3, 250], np.uint8, lambd=2.5, bias=-10.0).tolist() == [13, 4]  # 250 + 10 wraps to 4


@pytest.mark.parametrize(
    ("op", "inputs", "opset", "attrs", "error", "message"),
    [
        ("PRelu", {"X": np.ones((2, 3), np.float32), "slope": np.ones(2, np.float32)}, 16, None, ShapeError,
         r"slope has shape \(2,\), which does not broadcast to \(2, 3\)"),
        ("PRelu", {"X": np.ones(3, np.float32), "slope": np.ones(3, np.float64)}, 16, None, DTypeError,
         "slope has type double, it must match X"),
        ("PRelu", {"X": np.ones(3, np.int8), "slope": np.ones(3, np.int8)}, 16, None, DTypeError, "X has type int8"),
        ("Celu", {"X": np.ones(3, np.float64)}, 27, None, DTypeError, "X has type double; allowed at this opset"),
        ("Elu", {"X": np.ones(3, ml_dtypes.bfloat16)}, 21, None, DTypeError, "X has type bfloat16"),
        ("Shrink", {"input": np.ones(3, np.int32)}, 13, {"bias": float("inf")}, AttributeValueError,
         "must be finite for integer input"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(op, inputs, opset, attrs, error, message):
    assert_error_names_the_problem(op, inputs, opset, attrs, error, message)
