"""Convolutions and max pooling: refquant/ops/nn.py (Conv, ConvTranspose, MaxPool, GlobalMaxPool, DeformConv;
spec/ops/nn.md).

Expected values come from independent sources:
- the since_versions of the ONNX schemas (onnx.defs);
- the ONNX backend node cases of Conv and MaxPool, bit for bit (ConvTranspose's and GlobalMaxPool's run
  in test_onnx_node_cases.py);
- direct definitions written here as loops (Conv in float64, MaxPool's values and Indices, ConvTranspose's
  scatter) and correctly rounded narrow types;
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs (Conv within float32 rounding of the sum;
  MaxPool, ConvTranspose and GlobalMaxPool bit for bit where it is right, spec/ops/nn.md);
- hand-derived values for the spec's choices (NaN, signed zeros, padding) and errors;
- DeformConv: its 4 node cases within their rtol/atol, the direct Conv loop at zero offsets, bilinear values
  of X = 4 y + x by hand, onnx.reference (float32 GridSample) within a stated bound.
"""

from __future__ import annotations

import itertools
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx import helper
from onnx.reference import ReferenceEvaluator

import refquant
from refquant.errors import AttributeValueError, DTypeError, ShapeError

from ..helpers import assert_bit_exact, node_cases, single_node_model, to_array
from .conv_cases import conv_cases, naive_conv
from .helpers import (
    assert_same_bits,
    assert_versions_are_the_schema_versions_from_opset_10,
    node_case_outputs,
    run_reference,
    run_refquant,
)

NN_CASES = node_cases(r"^test_(basic_conv_|conv_with_|maxpool_)")


def test_node_cases_are_collected():
    assert len(NN_CASES) == 25  # 2 basic_conv, 4 conv_with, 19 maxpool


@pytest.mark.parametrize("case", NN_CASES, ids=lambda c: c.name)
def test_node_case_bit_exact(case):
    session = refquant.Session(case.model)
    for inputs, expected in case.data_sets:
        feeds = {spec.name: to_array(value) for spec, value in zip(case.model.graph.input, inputs)}
        outputs = session.run(None, feeds)
        for spec, got, want in zip(case.model.graph.output, outputs, expected):
            assert_bit_exact(got, to_array(want), spec.name)


# -- Conv -----------------------------------------------------------------------------


def conv_model(x, w, b, opset, attrs):
    inputs = {"x": x, "w": w} | ({"b": b} if b is not None else {})
    return single_node_model("Conv", inputs, {"y": refquant.dtypes.proto_of(x.dtype)}, opset=opset, attrs=attrs)


def run_conv(x, w, b=None, *, opset=22, **attrs):
    feeds = {"x": x, "w": w} | ({"b": b} if b is not None else {})
    return refquant.Session(conv_model(x, w, b, opset, attrs)).run(None, feeds)[0]


def float_values(draw, dtype, shape):
    return draw(hnp.arrays(np.float32, shape, elements=st.floats(-4, 4, width=16))).astype(dtype)


@given(case=conv_cases(), bias=st.booleans(), data=st.data())
def test_conv_float64_equals_direct_definition(case, bias, data):
    """float64 in: the direct float64 sum, to float64 rounding (BLAS may add in another order)."""
    x_shape, w_shape, attrs, (group, strides, dilations, pads) = case
    x, w = float_values(data.draw, np.float64, x_shape), float_values(data.draw, np.float64, w_shape)
    b = float_values(data.draw, np.float64, (w_shape[0],)) if bias else None
    expected = naive_conv(x, w, group, strides, dilations, pads)
    if bias:
        expected += b.reshape((-1,) + (1,) * (x.ndim - 2))
    got = run_conv(x, w, b, **attrs)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@given(case=conv_cases(max_rank=2), data=st.data())
def test_conv_narrow_types_are_correctly_rounded(dtype, case, data):
    """float16 / bfloat16: within half a unit in the last place of the float64 sum.

    (Casting the float64 sum with ml_dtypes would not do for bfloat16: it rounds twice, via float32.)
    """
    x_shape, w_shape, attrs, (group, strides, dilations, pads) = case
    x, w = float_values(data.draw, dtype, x_shape), float_values(data.draw, dtype, w_shape)
    exact = naive_conv(x.astype(np.float64), w.astype(np.float64), group, strides, dilations, pads)
    got = run_conv(x, w, **attrs)
    assert got.dtype == dtype
    info = ml_dtypes.finfo(dtype)
    ulp = np.maximum(np.ldexp(1.0, np.frexp(exact)[1] - (info.nmant + 1)), float(info.smallest_subnormal))
    assert np.all(np.abs(got.astype(np.float64) - exact) <= ulp / 2 * (1 + 1e-9))


@given(case=conv_cases(), data=st.data())
def test_conv_float32_agrees_with_onnx_reference(case, data):
    """onnx.reference accumulates in float32, refquant in float64: equal within float32 rounding of the sum."""
    x_shape, w_shape, attrs, _ = case
    x, w = float_values(data.draw, np.float32, x_shape), float_values(data.draw, np.float32, w_shape)
    b = float_values(data.draw, np.float32, (w_shape[0],))
    model = conv_model(x, w, b, 22, attrs)
    expected = ReferenceEvaluator(model).run(None, {"x": x, "w": w, "b": b})[0]
    got = refquant.Session(model).run(None, {"x": x, "w": w, "b": b})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_conv_bfloat16_needs_opset_22():
    x, w = np.ones((1, 1, 3), ml_dtypes.bfloat16), np.ones((1, 1, 2), ml_dtypes.bfloat16)
    np.testing.assert_array_equal(run_conv(x, w, opset=22).astype(np.float32), [[[2, 2]]])
    with pytest.raises(DTypeError, match=r"Conv '#0': X has type bfloat16; allowed at this opset: double, float, float16"):
        run_conv(x, w, opset=11)


@pytest.mark.parametrize(
    "x, w, b, attrs, error, message",
    [
        (np.ones((1, 2, 4), np.float32), np.ones((3, 2, 2), np.float64), None, {}, DTypeError, r"W has type double, it must match X \(float\)"),
        (np.ones((1, 2, 4), np.float32), np.ones((3, 2, 2), np.float32), np.ones(2, np.float32), {}, ShapeError, r"B has shape \(2,\), expected \(3,\)"),
        (np.ones((1, 2, 4), np.float32), np.ones((3, 2, 2), np.float32), None, {"group": 2}, AttributeValueError, r"group 2 must divide both"),
        (np.ones((1, 2, 4), np.float32), np.ones((3, 2, 2), np.float32), None, {"dilations": [4]}, ShapeError, r"window extent 5 \(kernel 2, dilation 4\)"),
        (np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), None, {}, ShapeError, r"x must have shape \(N, C, D1, \.\.\.\)"),
        (np.ones((1, 2, 4), np.int8), np.ones((3, 2, 2), np.int8), None, {}, DTypeError, r"X has type int8"),
    ],
)
def test_conv_errors(x, w, b, attrs, error, message):
    with pytest.raises(error, match=r"Conv '#0': " + message):
        run_conv(x, w, b, **attrs)


# -- MaxPool --------------------------------------------------------------------------


def pool_output(size, kernel, stride, dilation, begin, end, auto_pad, ceil_mode):
    """Output length and padding along one axis, from the formulas of the MaxPool (opset 22) page."""
    extent = (kernel - 1) * dilation + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + extent - size)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        return out, begin
    if auto_pad == "VALID":
        return (size - extent) // stride + 1, 0
    span = size + begin + end - extent
    if not ceil_mode:
        return span // stride + 1, begin
    out = -(-span // stride) + 1
    return (out - 1 if (out - 1) * stride >= size + begin else out), begin


def naive_max_pool(x, kernel, strides, dilations, pads, auto_pad, ceil_mode, storage_order):
    """Loops: the first largest element in row-major kernel order (padding skipped) and its flat index."""
    rank = len(kernel)
    spatial = x.shape[2:]
    geometry = [
        pool_output(spatial[i], kernel[i], strides[i], dilations[i], pads[i], pads[i + rank], auto_pad, ceil_mode)
        for i in range(rank)
    ]
    out_shape = tuple(g[0] for g in geometry)
    y, indices = np.zeros(x.shape[:2] + out_shape, x.dtype), np.zeros(x.shape[:2] + out_shape, np.int64)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for position in itertools.product(*map(range, out_shape)):
            best, best_at = None, None
            for taps in itertools.product(*map(range, kernel)):
                at = tuple(p * s - g[1] + t * d for p, s, g, t, d in zip(position, strides, geometry, taps, dilations))
                if all(0 <= a < size for a, size in zip(at, spatial)):
                    value = x[(n, c, *at)]
                    if best is None or value > best:
                        best, best_at = value, at
            y[(n, c, *position)] = best
            offset = np.ravel_multi_index(best_at, spatial, order="F" if storage_order else "C")
            indices[(n, c, *position)] = (n * x.shape[1] + c) * int(np.prod(spatial)) + offset
    return y, indices


@st.composite
def pool_cases(draw):
    rank = draw(st.integers(1, 3))
    kernel = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    strides = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    dilations = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))
    pads = [draw(st.integers(0, e - 1)) for e in extents * 2] if auto_pad == "NOTSET" else [0] * 2 * rank
    max_side = 6 if rank < 3 else 4
    spatial = [draw(st.integers(max(1, e - pads[i] - pads[i + rank]), max_side + e)) for i, e in enumerate(extents)]
    if auto_pad == "VALID":
        spatial = [max(s, e) for s, e in zip(spatial, extents)]
    ceil_mode, storage_order = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    for i, size in enumerate(spatial):  # every window must read some input: dilated taps can all fall in the padding
        out, begin = pool_output(size, kernel[i], strides[i], dilations[i], pads[i], pads[i + rank], auto_pad, ceil_mode)
        assume(all(any(0 <= j * strides[i] - begin + t * dilations[i] < size for t in range(kernel[i])) for j in range(out)))
    attrs = dict(kernel_shape=kernel, strides=strides, dilations=dilations, auto_pad=auto_pad, ceil_mode=ceil_mode, storage_order=storage_order)
    if auto_pad == "NOTSET":
        attrs["pads"] = pads
    x_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *spatial)
    return x_shape, attrs, (kernel, strides, dilations, pads, auto_pad, ceil_mode, storage_order)


def pool_model(x, attrs, opset=22, indices=True):
    node = helper.make_node("MaxPool", ["x"], ["y", "i"] if indices else ["y"], **attrs)
    x_type = refquant.dtypes.proto_of(x.dtype)
    outputs = [helper.make_tensor_value_info("y", x_type, None)]
    if indices:
        outputs.append(helper.make_tensor_value_info("i", T.INT64, None))
    graph = helper.make_graph([node], "maxpool", [helper.make_tensor_value_info("x", x_type, x.shape)], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 21 else 8
    return model


def run_pool(x, opset=22, indices=True, **attrs):
    return refquant.Session(pool_model(x, attrs, opset, indices)).run(None, {"x": x})


POOL_TYPES = [np.float32, np.float64, np.float16, np.int8, np.uint8]


@pytest.mark.parametrize("dtype", POOL_TYPES)
@given(case=pool_cases(), data=st.data())
def test_max_pool_equals_direct_definition(dtype, case, data):
    """Values and Indices (row- and column-major); integer inputs have many ties: the first one wins."""
    x_shape, attrs, geometry = case
    if np.dtype(dtype).kind == "f":
        x = float_values(data.draw, dtype, x_shape)
    else:
        x = data.draw(hnp.arrays(dtype, x_shape, elements=st.integers(-3, 3).map(lambda v: v if dtype == np.int8 else v + 3)))
    y, indices = run_pool(x, **attrs)
    expected_y, expected_indices = naive_max_pool(x, *geometry)
    assert_bit_exact(y, expected_y, "Y")
    np.testing.assert_array_equal(indices, expected_indices)
    assert indices.dtype == np.int64


@given(case=pool_cases(), data=st.data())
def test_max_pool_agrees_with_onnx_reference(case, data):
    """Y, explicit padding, some stride or dilation > 1: onnx.reference's loop implementation.

    Its other path (all strides and dilations 1) crashes or returns wrong shapes with
    padding and wrong Indices; with auto_pad it sizes SAME_LOWER as floor(D / s) and
    shifts windows when the SAME padding would be negative (spec/ops/nn.md).
    """
    x_shape, attrs, _ = case
    assume(attrs["auto_pad"] in ("NOTSET", "VALID") and max(attrs["strides"] + attrs["dilations"]) > 1)
    x = float_values(data.draw, np.float32, x_shape)
    model = pool_model(x, attrs, indices=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert_bit_exact(refquant.Session(model).run(None, {"x": x})[0], expected)


def test_max_pool_nan_propagates_and_points_at_the_first_nan():
    x = np.array([[[1.0, np.nan, 3.0, np.nan]]], np.float32)
    y, indices = run_pool(x, kernel_shape=[2], strides=[2])
    assert np.isnan(y).all()
    np.testing.assert_array_equal(indices, [[[1, 3]]])


def test_max_pool_lowest_value_in_the_window_is_not_the_padding():
    """An int8 window of -128s next to padding: Y is -128 and Indices point into X."""
    x = np.full((1, 1, 2), -128, np.int8)
    y, indices = run_pool(x, kernel_shape=[2], pads=[1, 1])
    np.testing.assert_array_equal(y, [[[-128, -128, -128]]])
    np.testing.assert_array_equal(indices, [[[0, 0, 1]]])


def test_empty_batch():
    y, indices = run_pool(np.zeros((0, 2, 4), np.float32), kernel_shape=[2])
    assert y.shape == indices.shape == (0, 2, 3)
    assert run_conv(np.zeros((0, 2, 4), np.float32), np.ones((3, 2, 2), np.float32)).shape == (0, 3, 3)


def test_max_pool_8bit_needs_opset_12():
    x = np.arange(4, dtype=np.uint8).reshape(1, 1, 4)
    np.testing.assert_array_equal(run_pool(x, opset=12, indices=False, kernel_shape=[2])[0], [[[1, 2, 3]]])
    with pytest.raises(DTypeError, match=r"MaxPool '#0': X has type uint8: 8-bit MaxPool needs opset >= 12"):
        run_pool(x, opset=11, indices=False, kernel_shape=[2])


def test_max_pool_bfloat16_needs_opset_22():
    x = np.arange(4).astype(ml_dtypes.bfloat16).reshape(1, 1, 4)
    assert run_pool(x, opset=22, indices=False, kernel_shape=[2])[0].dtype == ml_dtypes.bfloat16
    with pytest.raises(DTypeError, match=r"X has type bfloat16; allowed at this opset"):
        run_pool(x, opset=12, indices=False, kernel_shape=[2])


@pytest.mark.parametrize(
    "shape, attrs, error, message",
    [
        ((1, 1, 4), {}, AttributeValueError, r"required attribute 'kernel_shape' is missing"),
        ((1, 1, 4), {"kernel_shape": [2], "pads": [2, 0]}, AttributeValueError, r"output 0 along spatial axis 0 would pool padding only"),
        ((1, 1, 4), {"kernel_shape": [2], "ceil_mode": 2}, AttributeValueError, r"ceil_mode must be 0 or 1, got 2"),
        ((1, 1, 4), {"kernel_shape": [2], "storage_order": 3}, AttributeValueError, r"storage_order must be 0 or 1, got 3"),
        ((1, 1, 4), {"kernel_shape": [2, 2]}, AttributeValueError, r"kernel_shape has 2 values, the input has 1 spatial axes"),
        ((1, 1, 4), {"kernel_shape": [0]}, AttributeValueError, r"kernel_shape must be >= 1"),
        ((1, 1, 4), {"kernel_shape": [5]}, ShapeError, r"window extent 5 .* exceeds the padded input \(4 \+ 0 \+ 0\)"),
        ((1, 4), {"kernel_shape": [2]}, ShapeError, r"X must have shape \(N, C, D1, \.\.\.\), got rank 2"),
    ],
)
def test_max_pool_errors(shape, attrs, error, message):
    with pytest.raises(error, match=r"MaxPool '#0': " + message):
        run_pool(np.zeros(shape, np.float32), **attrs)


@pytest.mark.parametrize("indices", [True, False])
def test_a_window_of_padding_only_is_refused_with_or_without_indices(indices):
    """Kernel 2, dilation 2, pads [1, 1] over one element: the window's taps -1 and 1 both lie in the padding,
    so there is no maximum (spec/ops/nn.md). Refused whether or not Indices is asked for: the maximum of
    nothing is not -inf."""
    with pytest.raises(AttributeValueError, match="output 0 along spatial axis 0 would pool padding only"):
        run_pool(np.ones((1, 1, 1), np.float32), indices=indices, kernel_shape=[2], dilations=[2], pads=[1, 1])


# -- ConvTranspose --------------------------------------------------------------------


@pytest.mark.parametrize("op", ["ConvTranspose", "GlobalMaxPool"])
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


def naive_conv_transpose(x, w, group, strides, dilations, begin, output):
    """y[n, g*Mg + m, i*s + t*d - begin] += x[n, g*Cg + c, i] * w[g*Cg + c, m, t], in float64, by loops."""
    n, channels = x.shape[:2]
    per_group_in, per_group_out = channels // group, w.shape[1]
    y = np.zeros((n, per_group_out * group, *output))
    for b, c, i in itertools.product(range(n), range(channels), itertools.product(*map(range, x.shape[2:]))):
        g = c // per_group_in
        for m, t in itertools.product(range(per_group_out), itertools.product(*map(range, w.shape[2:]))):
            o = tuple(ii * s + tt * d - bb for ii, s, tt, d, bb in zip(i, strides, t, dilations, begin))
            if all(0 <= oo < out for oo, out in zip(o, output)):
                y[(b, g * per_group_out + m, *o)] += float(x[(b, c, *i)]) * float(w[(c, m, *t)])
    return y


@st.composite
def conv_transpose_cases(draw, max_rank=2):
    rank = draw(st.integers(1, max_rank))
    group = draw(st.sampled_from([1, 2]))
    spatial = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    kernel = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    strides = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    dilations = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    extra = [draw(st.integers(0, s - 1)) for s in strides]  # onnx.reference fails on stride <= extra < dilation
    full = [s * (n - 1) + (k - 1) * d + 1 for s, n, k, d in zip(strides, spatial, kernel, dilations)]
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)]
    assume(all(f + p - pads[i] - pads[rank + i] >= 1 for i, (f, p) in enumerate(zip(full, extra))))
    output = [f + p - pads[i] - pads[rank + i] for i, (f, p) in enumerate(zip(full, extra))]
    x_shape = (draw(st.integers(1, 2)), group * draw(st.integers(1, 2)), *spatial)
    w_shape = (x_shape[1], draw(st.integers(1, 2)), *kernel)
    attrs = {"strides": strides, "dilations": dilations, "pads": pads, "output_padding": extra, "group": group}
    return x_shape, w_shape, attrs, (group, strides, dilations, pads[:rank], output)


def small_integers(draw, shape):
    """Integer-valued float32: every product and sum below is exact, so all orders agree bit for bit."""
    return draw(hnp.arrays(np.float32, shape, elements=st.integers(-8, 8).map(float)))


@given(case=conv_transpose_cases(), bias=st.booleans(), data=st.data())
def test_conv_transpose_equals_direct_definition_and_onnx_reference(case, bias, data):
    x_shape, w_shape, attrs, (group, strides, dilations, begin, output) = case
    x, w = small_integers(data.draw, x_shape), small_integers(data.draw, w_shape)
    b = small_integers(data.draw, (w_shape[1] * group,)) if bias else None
    inputs = {"x": x, "w": w, "b": b}
    (got,) = run_refquant("ConvTranspose", inputs, [np.float32], opset=22, attrs=attrs)
    expected = naive_conv_transpose(x, w, group, strides, dilations, begin, output)
    if bias:
        expected += b.reshape((-1,) + (1,) * len(output))
    assert_same_bits(got, expected.astype(np.float32))
    if group == 1:  # onnx.reference mishandles groups (ValueError: cannot reshape)
        assert_same_bits(got, run_reference("ConvTranspose", inputs, [np.float32], opset=22, attrs=attrs)[0])


@given(x=hnp.arrays(np.float32, (1, 2, 3, 3), elements=st.floats(-4, 4, width=16)),
       w=hnp.arrays(np.float32, (2, 3, 2, 2), elements=st.floats(-4, 4, width=16)))  # fmt: skip
def test_conv_transpose_rounds_the_float64_sum_once(x, w):
    """float16-valued inputs: products exact in float64; sums of <= 8 terms too; so the float32 result
    is the exact sum rounded once."""
    (got,) = run_refquant("ConvTranspose", {"x": x, "w": w}, [np.float32], opset=22, attrs={"strides": [2, 1]})
    exact = naive_conv_transpose(x, w, 1, [2, 1], [1, 1], [0, 0], [6, 4])
    assert_same_bits(got, exact.astype(np.float32))


@pytest.mark.parametrize(
    "attrs, length, begin",
    [
        ({"strides": [2], "output_shape": [8]}, 8, 0),  # total = 7 - 8 < 0: the extra output at the end
        ({"strides": [2], "output_shape": [6]}, 6, 1),  # total 1: pad_begin = total - total // 2
        ({"strides": [2], "auto_pad": "SAME_UPPER"}, 6, 0),  # out = 3 * 2, total 1: pad_begin = total // 2
        ({"strides": [2], "auto_pad": "SAME_LOWER"}, 6, 1),
        ({"strides": [2], "auto_pad": "VALID", "output_padding": [1]}, 8, 0),
    ],
)
def test_conv_transpose_output_shape_and_auto_pad(attrs, length, begin):
    x, w = np.array([[[1, 2, 3]]], np.float32), np.array([[[1, 10, 100]]], np.float32)
    full = naive_conv_transpose(x, w, 1, [2], [1], [0], [7]).ravel()  # [1, 10, 102, 20, 203, 30, 300]
    (got,) = run_refquant("ConvTranspose", {"x": x, "w": w}, [np.float32], opset=22, attrs=attrs)
    expected = np.zeros(length)
    stop = min(length, 7 - begin)
    expected[:stop] = full[begin : begin + stop]
    assert got.ravel().tolist() == expected.tolist()


@pytest.mark.parametrize(
    "x_shape, w_shape, attrs, error, message",
    [
        ((1, 2, 3), (3, 1, 2), {}, ShapeError, "W has 3 input channels"),
        ((1, 2, 3), (2, 1, 2), {"group": 3}, AttributeValueError, "group 3 must be >= 1 and divide"),
        ((1, 2, 3), (2, 1, 2), {"strides": [2], "output_padding": [2]}, AttributeValueError, "output_padding"),
        ((1, 2, 3), (2, 1, 2), {"pads": [3, 2]}, ShapeError, "every length must be >= 1"),
        ((1, 2, 3), (2, 1, 2), {"output_shape": [1, 4]}, AttributeValueError, "output_shape has 2 values"),
        ((1, 2, 3), (2, 1, 2), {"auto_pad": "SAME_UPPER", "pads": [1, 0]}, AttributeValueError, "cannot be used"),
    ],
)
def test_conv_transpose_errors(x_shape, w_shape, attrs, error, message):
    inputs = {"x": np.ones(x_shape, np.float32), "w": np.ones(w_shape, np.float32)}
    with pytest.raises(error, match=message):
        run_refquant("ConvTranspose", inputs, [np.float32], opset=22, attrs=attrs)


# -- GlobalMaxPool --------------------------------------------------------------------


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=5, max_side=4),
                    elements=st.floats(-20, 20, width=32)))  # fmt: skip
def test_global_max_pool_is_the_spatial_maximum(x):
    (got,) = run_refquant("GlobalMaxPool", {"x": x}, [np.float32], opset=22)
    spatial = tuple(range(2, x.ndim))
    maximum = x.max(axis=spatial, keepdims=True)
    positive_zero = ((x == 0) & ~np.signbit(x)).any(axis=spatial, keepdims=True)
    assert_same_bits(got, np.where(maximum == 0, np.where(positive_zero, 0.0, -0.0), maximum).astype(x.dtype))
    if x.ndim == 4:  # onnx.reference reduces axes (rank - 2, rank - 1, rank): right for 2-D images only
        # its np.max gives either zero where +0 and -0 meet: values compared, not zero signs
        np.testing.assert_array_equal(got, run_reference("GlobalMaxPool", {"x": x}, [np.float32], opset=22)[0])


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
@pytest.mark.parametrize("op, attrs", [("GlobalMaxPool", {}), ("MaxPool", {"kernel_shape": [3]})])
def test_a_zero_maximum_is_positive_when_a_positive_zero_is_pooled(op, attrs, dtype):
    """IEEE 754-2019 maximum: -0 < +0, whatever order the zeros come in; -0 only when every zero is -0."""
    x = np.array([[-0.0, 0.0, -1.0], [0.0, -0.0, -1.0], [-0.0, -0.0, -2.0]], dtype).reshape(1, 3, 3)
    (got,) = run_refquant(op, {"x": x}, [dtype], opset=22, attrs=attrs)
    got = got.astype(np.float32)
    assert np.signbit(got).ravel().tolist() == [False, False, True] and (got == 0).all()


# -- DeformConv -----------------------------------------------------------------------------

DEFORM_CASES = node_cases(r"^test_(basic_deform_conv|deform_conv)_")


def test_deform_conv_versions_and_node_case_list():
    assert_versions_are_the_schema_versions_from_opset_10("DeformConv")
    assert len(DEFORM_CASES) == 4  # onnx 1.23.2


@pytest.mark.parametrize("case", DEFORM_CASES, ids=lambda c: c.name)
def test_deform_conv_node_case(case):
    for got, want in node_case_outputs(case):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


def run_deform(x, w, offset, b=None, mask=None, *, opset=22, **attrs):
    inputs = {"X": x, "W": w, "offset": offset, "B": b, "mask": mask}
    return run_refquant("DeformConv", inputs, [x.dtype], opset=opset, attrs=attrs)[0]


def _output_length(size, k, s, d, begin, end):
    return (size + begin + end - ((k - 1) * d + 1)) // s + 1


@pytest.mark.parametrize(("shape", "kernel", "group", "strides", "dilations", "pads"), [
    ((2, 4, 5, 6), (2, 3), 2, (1, 2), (1, 1), (1, 0, 0, 1)),
    ((1, 3, 7), (3,), 1, (2,), (2,), (1, 2)),
    ((1, 2, 3, 4, 3), (2, 2, 1), 1, (1, 1, 1), (1, 2, 1), (0, 0, 0, 1, 0, 0)),
])  # fmt: skip
def test_deform_conv_with_zero_offsets_is_conv(shape, kernel, group, strides, dilations, pads):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((4, shape[1] // group, *kernel))
    rank = len(kernel)
    out = [_output_length(shape[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[rank + i]) for i in range(rank)]
    offset = np.zeros((shape[0], np.prod(kernel) * rank, *out))
    got = run_deform(x, w, offset, group=group, strides=list(strides), dilations=list(dilations), pads=list(pads))
    np.testing.assert_allclose(got, naive_conv(x, w, group, strides, dilations, pads), rtol=1e-12, atol=1e-12)


def test_deform_conv_interpolates_bilinearly_and_reads_zero_outside():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)  # X[y, x] = 4 y + x: bilinear reproduces it inside
    w = np.ones((1, 1, 1, 1))
    offset = np.zeros((1, 2, 4, 4))
    offset[0, 0] = 0.25  # dy
    offset[0, 1] = 0.5  # dx
    y = run_deform(x, w, offset)[0, 0]
    # inside: 4 (i + 0.25) + (j + 0.5); row 3 / column 3 interpolate toward the zero beyond the image
    np.testing.assert_array_equal(y[:3, :3], 4 * (np.arange(3)[:, None] + 0.25) + np.arange(3)[None, :] + 0.5)
    assert y[0, 3] == 0.75 * 0.5 * 3 + 0.25 * 0.5 * 7  # corners (0, 3) and (1, 3); (0, 4), (1, 4) read 0
    far = np.full((1, 2, 4, 4), 10.0)
    assert not run_deform(x, w, far).any()
    mask = np.full((1, 1, 4, 4), 0.5)
    np.testing.assert_array_equal(run_deform(x, w, np.zeros((1, 2, 4, 4)), np.array([1.0]), mask), x * 0.5 + 1)


def test_deform_conv_offset_groups_shift_their_channels_only():
    x = np.arange(2 * 9, dtype=np.float32).reshape(1, 2, 3, 3)
    w = np.ones((2, 1, 1, 1), np.float32)
    offset = np.zeros((1, 4, 3, 3), np.float32)
    offset[0, 3] = 1.0  # group 1 (channel 1): dx = 1
    y = run_deform(x, w, offset, group=2, offset_group=2)
    np.testing.assert_array_equal(y[0, 0], x[0, 0])
    np.testing.assert_array_equal(y[0, 1], np.concatenate([x[0, 1, :, 1:], np.zeros((3, 1), np.float32)], axis=1))


@given(data=st.data())
def test_deform_conv_near_onnx_reference(data):
    x = data.draw(hnp.arrays(np.float32, (1, 2, 4, 5), elements=st.floats(-4, 4, width=32)))
    w = data.draw(hnp.arrays(np.float32, (2, 2, 2, 2), elements=st.floats(-4, 4, width=32)))
    offset = data.draw(hnp.arrays(np.float32, (1, 8, 3, 4), elements=st.floats(-2, 2, width=32)))
    mask = data.draw(hnp.arrays(np.float32, (1, 4, 3, 4), elements=st.floats(0, 1, width=32)))
    inputs = {"X": x, "W": w, "offset": offset, "B": np.array([0.5, -1], np.float32), "mask": mask}
    (got,) = run_refquant("DeformConv", inputs, [np.float32], opset=19)
    (want,) = run_reference("DeformConv", inputs, [np.float32], opset=19)
    # onnx.reference: float32 GridSample (coordinates normalized to [-1, 1] and back) and float32 sums
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("offset_shape", "attrs", "error", "message"), [
    ((1, 8, 2, 2), {}, ShapeError, r"offset has shape \(1, 8, 2, 2\), expected \(1, 8, 3, 3\)"),
    ((1, 8, 3, 3), {"offset_group": 3}, AttributeValueError, r"offset_group 3 must be >= 1 and divide"),
])  # fmt: skip
def test_deform_conv_errors_name_the_node(offset_shape, attrs, error, message):
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((1, 2, 2, 2), np.float32)
    with pytest.raises(error, match="DeformConv '#0': " + message):
        run_deform(x, w, np.zeros(offset_shape, np.float32), **attrs)
    with pytest.raises(ShapeError, match=r"DeformConv '#0': x must have shape \(N, C, D1, ...\)"):
        run_deform(np.ones((2, 4), np.float32), np.ones((1, 2), np.float32), np.zeros((2, 2), np.float32))
