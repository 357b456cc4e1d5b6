"""Normalizations and averages: refquant/ops/normalization.py (Softmax, LogSoftmax, LayerNormalization,
BatchNormalization, InstanceNormalization, GlobalAveragePool, AveragePool; spec/ops/nn.md; GlobalLpPool and LRN,
spec/ops/image.md and spec/ops/nn.md).

Expected values come from independent sources:
- the since_versions of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs, within a bound stated at each test
  (it computes in float32);
- float64 definitions written here (LogSoftmax within one float32 ulp; GlobalAveragePool's float64 mean);
- onnxruntime CPU for the mlas-float32 GlobalAveragePool order;
- hand-derived values for errors.
The ONNX backend node cases of these ops run in test_onnx_node_cases.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refquant
from refquant.errors import AttributeValueError, ShapeError

from ..helpers import node_cases
from .helpers import (
    FLOATS,
    assert_float_function_near_onnx_reference,
    assert_same_bits,
    assert_versions_are_the_schema_versions_from_opset_10,
    node_case_outputs,
    run_reference,
    run_refquant,
    ulps,
)


@pytest.mark.parametrize(
    "op",
    "InstanceNormalization LogSoftmax Softmax LayerNormalization GlobalAveragePool AveragePool BatchNormalization "
    "GlobalLpPool LRN".split(),
)
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


@pytest.mark.parametrize("op", ["Softmax"])
@given(x=FLOATS, opset=st.sampled_from([14, 18, 22]))
def test_float_functions_are_within_four_ulps_of_onnx_reference(op, x, opset):
    assert_float_function_near_onnx_reference(op, x, opset)


@given(x=FLOATS, opset=st.sampled_from([11, 13]))
def test_log_softmax_is_near_onnx_reference(x, opset):
    axis = -1 if opset >= 13 else x.ndim - 1  # one axis at both versions
    (got,) = run_refquant("LogSoftmax", {"x": x}, [np.float32], opset=opset, attrs={"axis": axis})
    (want,) = run_reference("LogSoftmax", {"x": x}, [np.float32], opset=opset, attrs={"axis": axis})
    # onnx.reference: float32 softmax (a few roundings, x - max inexact up to |x - max| * 2**-24), then log
    x64 = x.astype(np.float64)
    spread = np.max(x64, axis=-1, keepdims=True) - x64
    np.testing.assert_array_less(np.abs(got.astype(np.float64) - want), (8 + 2 * spread + np.abs(want)) * 2.0**-22)
    exact = x64 - np.max(x64, axis=-1, keepdims=True)
    exact -= np.log(np.sum(np.exp(exact), axis=-1, keepdims=True))
    assert np.all(ulps(got, exact.astype(np.float32)) <= 1)


@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(2, 4)),
                    elements=st.floats(-20, 20, width=32)), data=st.data())  # fmt: skip
def test_instance_normalization_is_near_onnx_reference(x, data):
    channels = x.shape[1]
    scale = data.draw(hnp.arrays(np.float32, (channels,), elements=st.floats(-4, 4, width=32)))
    bias = data.draw(hnp.arrays(np.float32, (channels,), elements=st.floats(-4, 4, width=32)))
    inputs = {"x": x, "s": scale, "b": bias}
    (got,) = run_refquant("InstanceNormalization", inputs, [np.float32], opset=22, attrs={"epsilon": 1e-2})
    (want,) = run_reference("InstanceNormalization", inputs, [np.float32], opset=22, attrs={"epsilon": 1e-2})
    # onnx.reference: float32 mean and var; with epsilon 1e-2 the normalised values stay < 16 * |x|max
    spread = np.max(np.abs(x)) / np.sqrt(0.01)
    bound = 2.0**-18 * (np.abs(scale).reshape(-1, 1, 1) * spread + np.abs(bias).reshape(-1, 1, 1) + 1)
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


def test_instance_normalization_refuses_bad_shapes():
    x = np.ones((1, 2, 3), np.float32)
    with pytest.raises(ShapeError, match=r"scale has shape \(3,\), expected \(2,\)"):
        run_refquant("InstanceNormalization", {"x": x, "s": np.ones(3, np.float32), "b": np.ones(2, np.float32)},
                     [np.float32], opset=22)  # fmt: skip
    with pytest.raises(ShapeError, match=r"\(N, C, D1, \.\.\.\)"):
        run_refquant("InstanceNormalization", {"x": x[0], "s": np.ones(3, np.float32), "b": np.ones(3, np.float32)},
                     [np.float32], opset=22)  # fmt: skip


@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4)),
                    elements=st.floats(-20, 20, width=32)), data=st.data(), opset=st.sampled_from([10, 14, 15]))  # fmt: skip
def test_batch_normalization_is_near_onnx_reference(x, data, opset):
    channels = x.shape[1]

    def vector(low, high):
        return data.draw(hnp.arrays(np.float32, (channels,), elements=st.floats(low, high, width=32)))

    scale, bias, mean, var = vector(-4, 4), vector(-4, 4), vector(-4, 4), vector(0, 4)
    inputs = {"x": x, "scale": scale, "b": bias, "mean": mean, "var": var}
    (got,) = run_refquant("BatchNormalization", inputs, [np.float32], opset=opset)
    # onnx.reference's BatchNormalization-9 mixes in the batch statistics (its momentum attribute always
    # has the schema default 0.9): compare 9 with 14, where both run inference
    (want,) = run_reference("BatchNormalization", inputs, [np.float32], opset=max(opset, 14))
    # onnx.reference: float32, four roundings; |x - mean| / sqrt(var + 1e-5) <= 24 / sqrt(1e-5) ~ 7600
    column = (channels,) + (1,)
    normalised = np.abs(x.astype(np.float64) - mean.reshape(column)) / np.sqrt(var.reshape(column).astype(np.float64) + 1e-5)
    bound = 4 * 2.0**-24 * (np.abs(scale.reshape(column)) * normalised + np.abs(bias.reshape(column))) + 1e-30
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


@pytest.mark.parametrize("spatial", [(1, 1), (2, 3), (3, 3), (5, 7), (8, 8), (13, 11)])
def test_mlas_global_average_pool_matches_onnxruntime_bit_for_bit(spatial):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto as T, helper

    x = (np.random.default_rng(sum(spatial)).standard_normal((2, 16) + spatial) * 3).astype(np.float32)
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"])], "gap",
                              [helper.make_tensor_value_info("x", T.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", T.FLOAT, None)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    (want,) = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (got,) = refquant.Session(model, profile="onnxruntime").run(None, {"x": x})
    assert_same_bits(got, want)
    (exact,) = refquant.Session(model).run(None, {"x": x})
    assert_same_bits(exact, x.astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(np.float32))


# -- GroupNormalization, RMSNormalization, LpNormalization, MeanVarianceNormalization, Hardmax, LpPool
# (spec/ops/image.md): hand-derived small cases and the ONNX formulas written again here in float64.


def _group_norm64(x, scale, bias, groups, eps, per_group):
    n, c = x.shape[:2]
    out = np.empty(x.shape, np.float64)
    size = c // groups
    for i in range(n):
        for g in range(groups):
            block = x[i, g * size : (g + 1) * size].astype(np.float64)
            mu = block.sum() / block.size
            var = ((block - mu) ** 2).sum() / block.size
            for k in range(size):
                ch = g * size + k
                s, b = (scale[g], bias[g]) if per_group else (scale[ch], bias[ch])
                out[i, ch] = (block[k] - mu) / np.sqrt(var + eps) * float(s) + float(b)
    return out


@pytest.mark.parametrize("opset", [18, 21])
def test_group_normalization_matches_the_formula(opset):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3, 2)).astype(np.float32)
    width = 3 if opset == 18 else 6
    scale = rng.standard_normal(width).astype(np.float32)
    bias = rng.standard_normal(width).astype(np.float32)
    eps = float(np.float32(1e-3))
    (got,) = run_refquant("GroupNormalization", {"x": x, "s": scale, "b": bias}, [np.float32], opset=opset,
                          attrs={"num_groups": 3, "epsilon": 1e-3})
    want = _group_norm64(x, scale, bias, 3, eps, per_group=opset == 18).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_group_normalization_of_a_constant_group_is_the_bias():
    x = np.full((1, 2, 4), 7.0, np.float32)
    (got,) = run_refquant("GroupNormalization", {"x": x, "s": np.array([3, 3], np.float32),
                          "b": np.array([1, -2], np.float32)}, [np.float32], opset=21, attrs={"num_groups": 1})
    np.testing.assert_array_equal(got, [[[1] * 4, [-2] * 4]])


def test_group_normalization_refuses_groups_not_dividing_channels_and_wrong_scale():
    x = np.zeros((1, 4, 2), np.float32)
    with pytest.raises(AttributeValueError):
        run_refquant("GroupNormalization", {"x": x, "s": np.ones(3, np.float32), "b": np.ones(3, np.float32)},
                     [np.float32], opset=21, attrs={"num_groups": 3})
    with pytest.raises(ShapeError):
        run_refquant("GroupNormalization", {"x": x, "s": np.ones(2, np.float32), "b": np.ones(2, np.float32)},
                     [np.float32], opset=21, attrs={"num_groups": 2})


def test_rms_normalization_hand_case():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    scale = np.array([2.0, 1.0], np.float32)
    (got,) = run_refquant("RMSNormalization", {"x": x, "s": scale}, [np.float32], opset=23, attrs={"epsilon": 0.0})
    rms = np.sqrt(12.5)
    with np.errstate(invalid="ignore"):
        want = np.array([[3 / rms * 2, 4 / rms], [np.nan, np.nan]], np.float64).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_rms_normalization_over_two_axes_with_epsilon():
    x = np.arange(12, dtype=np.float64).reshape(2, 2, 3) - 5
    scale = np.linspace(-1, 1, 6).reshape(2, 3)
    (got,) = run_refquant("RMSNormalization", {"x": x, "s": scale}, [np.float64], opset=23,
                          attrs={"axis": 1, "epsilon": 0.5})
    eps = float(np.float32(0.5))
    want = np.stack([row / np.sqrt((row**2).sum() / 6 + eps) * scale for row in x])
    np.testing.assert_allclose(got, want, rtol=1e-15)


@pytest.mark.parametrize("opset", [10, 22])
def test_lp_normalization_p1_uses_absolute_values_and_zero_norm_gives_zero(opset):
    x = np.array([[-1.0, 3.0], [0.0, 0.0], [np.inf, 1.0]], np.float32)
    (got,) = run_refquant("LpNormalization", {"x": x}, [np.float32], opset=opset, attrs={"p": 1})
    np.testing.assert_array_equal(got, np.array([[-0.25, 0.75], [0, 0], [np.nan, 0]], np.float32))
    (got2,) = run_refquant("LpNormalization", {"x": x[:2]}, [np.float32], opset=opset, attrs={"axis": 0})
    np.testing.assert_array_equal(got2, np.array([[-1, 1], [0, 0]], np.float32))


def test_lp_normalization_refuses_p3():
    with pytest.raises(AttributeValueError):
        run_refquant("LpNormalization", {"x": np.ones(2, np.float32)}, [np.float32], opset=22, attrs={"p": 3})


@pytest.mark.parametrize("opset", [10, 13])
def test_mean_variance_normalization_default_axes(opset):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    (got,) = run_refquant("MeanVarianceNormalization", {"x": x}, [np.float32], opset=opset)
    x64 = x.astype(np.float64)
    want = np.empty_like(x64)
    for c in range(3):
        block = x64[:, c]
        mu = block.sum() / block.size
        want[:, c] = (block - mu) / (np.sqrt(((block - mu) ** 2).sum() / block.size) + 1e-9)
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_mean_variance_normalization_of_a_constant_is_zero():
    (got,) = run_refquant("MeanVarianceNormalization", {"x": np.full((2, 3), 5.0, np.float32)}, [np.float32],
                          opset=13, attrs={"axes": [1]})
    np.testing.assert_array_equal(got, np.zeros((2, 3), np.float32))


def test_hardmax_ties_pick_the_first_and_nan_wins():
    x = np.array([[1.0, 3.0, 3.0], [np.nan, 5.0, np.inf], [-np.inf, -np.inf, -np.inf]], np.float32)
    (got,) = run_refquant("Hardmax", {"x": x}, [np.float32], opset=13)
    np.testing.assert_array_equal(got, [[0, 1, 0], [1, 0, 0], [1, 0, 0]])


def test_hardmax_before_13_flattens_axis_onwards():
    x = np.array([[[1.0, 2.0], [9.0, 0.0]], [[5.0, 5.0], [1.0, 1.0]]], np.float32)
    (got,) = run_refquant("Hardmax", {"x": x}, [np.float32], opset=11, attrs={"axis": 1})
    np.testing.assert_array_equal(got, [[[0, 0], [1, 0]], [[1, 0], [0, 0]]])
    (got13,) = run_refquant("Hardmax", {"x": x}, [np.float32], opset=13, attrs={"axis": 1})
    np.testing.assert_array_equal(got13, [[[0, 1], [1, 0]], [[1, 1], [0, 0]]])


def test_hardmax_of_an_empty_tensor_is_empty():
    (got,) = run_refquant("Hardmax", {"x": np.zeros((0, 3), np.float32)}, [np.float32], opset=13)
    assert got.shape == (0, 3)


def test_lp_pool_hand_case_with_padding_and_negative_values():
    x = np.array([[[3.0, -4.0, 0.0, 12.0]]], np.float32)
    (got,) = run_refquant("LpPool", {"x": x}, [np.float32], opset=18,
                          attrs={"kernel_shape": [2], "strides": [2], "pads": [1, 1]})
    np.testing.assert_array_equal(got, np.array([[[3.0, 4.0, 12.0]]], np.float32))


def test_lp_pool_p1_ceil_mode_and_padding_only_window():
    x = np.array([[[1.0, -2.0, 3.0]]], np.float32)
    (got,) = run_refquant("LpPool", {"x": x}, [np.float32], opset=22,
                          attrs={"kernel_shape": [2], "strides": [2], "p": 1, "ceil_mode": 1})
    np.testing.assert_array_equal(got, np.array([[[3.0, 3.0]]], np.float32))
    (pad_only,) = run_refquant("LpPool", {"x": x}, [np.float32], opset=22,
                               attrs={"kernel_shape": [1], "pads": [1, 0]})
    np.testing.assert_array_equal(pad_only, np.array([[[0.0, 1.0, 2.0, 3.0]]], np.float32))


def test_lp_pool_p3_matches_the_formula_and_nan_propagates():
    x = np.array([[[[1.0, 2.0], [3.0, np.nan]], [[1.0, 2.0], [3.0, 4.0]]]], np.float64)
    (got,) = run_refquant("LpPool", {"x": x}, [np.float64], opset=11, attrs={"kernel_shape": [2, 2], "p": 3})
    assert np.isnan(got[0, 0, 0, 0])
    np.testing.assert_allclose(got[0, 1, 0, 0], (1 + 8 + 27 + 64) ** (1 / 3), rtol=1e-15)


def test_lp_pool_refuses_dilations_before_18():
    with pytest.raises(AttributeValueError):
        run_refquant("LpPool", {"x": np.ones((1, 1, 4), np.float32)}, [np.float32], opset=11,
                     attrs={"kernel_shape": [2], "dilations": [2]})


# -- GlobalLpPool, LRN -------------------------------------------------------------------------------------------


def test_global_lp_pool_hand_cases():
    x = np.array([[[[3.0, -4.0]], [[1.0, 1.0]]]], np.float32)  # (1, 2, 1, 2)
    (got,) = run_refquant("GlobalLpPool", {"x": x}, [np.float32], opset=22)
    assert got.shape == (1, 2, 1, 1)
    np.testing.assert_array_equal(got.ravel(), np.array([5.0, np.sqrt(2.0)], np.float32))
    (got,) = run_refquant("GlobalLpPool", {"x": x}, [np.float32], opset=10, attrs={"p": 1})
    np.testing.assert_array_equal(got.ravel(), [7.0, 2.0])
    cube = np.array([[[1.0, 2.0, np.nan]], [[1.0, 2.0, 2.0]]], np.float64)  # (2, 1, 3): one spatial axis
    (got,) = run_refquant("GlobalLpPool", {"x": cube}, [np.float64], opset=22, attrs={"p": 3})
    assert np.isnan(got[0, 0, 0]) and got[1, 0, 0] == 17 ** (1 / 3)


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=4, max_side=4), elements=st.floats(-20, 20, width=32)),
       p=st.sampled_from([1, 2, 3]))  # fmt: skip
def test_global_lp_pool_is_onnx_reference_lp_pool_over_the_whole_image(x, p):
    (got,) = run_refquant("GlobalLpPool", {"x": x}, [np.float32], opset=22, attrs={"p": p})
    (want,) = run_reference("LpPool", {"x": x}, [np.float32], opset=22,
                            attrs={"p": p, "kernel_shape": list(x.shape[2:])})
    assert got.shape == want.shape
    # onnx.reference sums |x|^p in float32: a few float32 roundings per term
    np.testing.assert_allclose(got, want, rtol=(x[0, 0].size + 4) * 2.0**-23, atol=1e-30)


def test_global_lp_pool_and_lrn_errors_name_the_node():
    with pytest.raises(ShapeError, match=r"GlobalLpPool '#0': X must have shape \(N, C, D1, ...\), got rank 2"):
        run_refquant("GlobalLpPool", {"x": np.ones((2, 3), np.float32)}, [np.float32], opset=22)
    with pytest.raises(AttributeValueError, match=r"GlobalLpPool '#0': p must be positive, got 0"):
        run_refquant("GlobalLpPool", {"x": np.ones((1, 1, 3), np.float32)}, [np.float32], opset=22, attrs={"p": 0})
    with pytest.raises(AttributeValueError, match="LRN '#0': required attribute 'size' is missing"):
        run_refquant("LRN", {"x": np.ones((1, 2, 3), np.float32)}, [np.float32], opset=13)
    with pytest.raises(ShapeError, match=r"LRN '#0': X must have shape \(N, C, D1, ...\), got rank 2"):
        run_refquant("LRN", {"x": np.ones((1, 2), np.float32)}, [np.float32], opset=13, attrs={"size": 3})


def test_lrn_hand_case_sums_the_channels_around_each():
    # C = 4, size 3: channels c-1 .. c+1 inside [0, 4); alpha / size = 1, bias 1, beta 1
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float64).reshape(1, 4, 1, 1)
    (got,) = run_refquant("LRN", {"x": x}, [np.float64], opset=13,
                          attrs={"size": 3, "alpha": 3.0, "beta": 1.0, "bias": 1.0})
    square_sums = [1 + 4, 1 + 4 + 9, 4 + 9 + 16, 9 + 16]
    np.testing.assert_array_equal(got.ravel(), [v / (1 + s) for v, s in zip([1, 2, 3, 4], square_sums)])
    # size 2: floor(1 / 2) = 0 below, ceil(1 / 2) = 1 above: channels c .. c+1
    (got,) = run_refquant("LRN", {"x": x}, [np.float64], opset=13,
                          attrs={"size": 2, "alpha": 2.0, "beta": 0.5, "bias": 0.0})
    np.testing.assert_allclose(got.ravel(), [1 / 5**0.5, 2 / 13**0.5, 3 / 25**0.5, 4 / 16**0.5], rtol=1e-15)


@given(x=hnp.arrays(np.float32, st.sampled_from([(3, 3, 2, 2), (5, 5, 1, 3)]), elements=st.floats(-20, 20, width=32)),
       size=st.integers(1, 6))  # fmt: skip
def test_lrn_is_near_onnx_reference_when_the_batch_equals_the_channels(x, size):
    """onnx.reference loops its channel index over the batch axis (range(x.shape[0])): right only when N == C."""
    attrs = {"size": size, "alpha": 0.5, "beta": 0.75, "bias": 2.0}
    (got,) = run_refquant("LRN", {"x": x}, [np.float32], opset=13, attrs=attrs)
    (want,) = run_reference("LRN", {"x": x}, [np.float32], opset=13, attrs=attrs)
    np.testing.assert_allclose(got, want, rtol=(size + 8) * 2.0**-23, atol=1e-30)


LRN_CASES = node_cases(r"^test_lrn")


@pytest.mark.parametrize("case", LRN_CASES, ids=lambda c: c.name)
def test_lrn_node_case(case):
    assert len(LRN_CASES) == 2  # onnx 1.23.2: test_lrn, test_lrn_default
    for got, want in node_case_outputs(case):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)
