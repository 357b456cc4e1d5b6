"""com.microsoft quantized products: refquant/ops/contrib_linear.py (QGemm, MatMulIntegerToFloat,
DynamicQuantizeMatMul, QLinearConv with channels_last; spec/ops/contrib.md).

Expected values come from onnxruntime's CPU kernels (graph optimizations off), on hypothesis-drawn inputs:
- the "onnxruntime" profile reproduces ort-cpu bit for bit;
- wherever the "spec" profile differs from ort-cpu, a named divergence reproduces the difference, given the
  integer kernels of this host (SPEC_HERE: avx2_u8s8_saturation as the "onnxruntime" profile has it);
- for float outputs, inputs where spec and ort-cpu differ, and the one profile option
  (requantize_precision) that turns spec's answer into ort's;
from the formula Y = (A - a_zp) @ (B - b_zp) * a_scale * b_scale + bias in int64 and float64 numpy where
onnxruntime departs from it (per-row a_scale with a bias); and from hand-derived values for errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T

from refquant.dtypes import proto_of
from refquant.errors import DTypeError, QuantParamError, ShapeError

from ..helpers import assert_bit_exact
from .contrib_helpers import (
    EIGHT_BIT,
    FLOAT32_REQUANTIZE,
    assert_differences_explained,
    compare,
    feeds_of,
    ms_model,
    run_ort,
    run_ref,
    run_spec,
    scalar,
    scales,
    values,
)

# -- QGemm, MatMulIntegerToFloat, DynamicQuantizeMatMul ------------------------------------

#: (A, B) types onnxruntime's CPU kernels accept
GEMM_TYPES = [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]


def _b_params(data, b_type, n):
    shape = data.draw(st.sampled_from([(), (n,)]))
    return (data.draw(hnp.arrays(np.float32, shape, elements=st.floats(2.0**-8, 1.0, width=32))),
            values(data.draw, b_type, shape))


@given(data=st.data())
def test_qgemm_matches_onnxruntime(data):
    a_type, b_type = data.draw(st.sampled_from(GEMM_TYPES))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    trans_a, trans_b = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))
    a = values(data.draw, a_type, (k, m) if trans_a else (m, k))
    b = values(data.draw, b_type, (n, k) if trans_b else (k, n))
    b_scale, b_zp = _b_params(data, b_type, n)
    c = data.draw(st.none() | hnp.arrays(np.int32, st.sampled_from([(n,), (m, n), (1, n)]), elements=st.integers(-5000, 5000)))
    quantized = data.draw(st.booleans())
    inputs = [("a", a), ("as", data.draw(scales())), ("az", scalar(data.draw, a_type)), ("b", b), ("bs", b_scale), ("bz", b_zp),
              ("c", c), ("ys", data.draw(scales()) if quantized else None), ("yz", scalar(data.draw, a_type) if quantized else None)]
    alpha = data.draw(st.sampled_from([1.0, 0.5, 1.7]))
    compare("QGemm", inputs, proto_of(a_type) if quantized else T.FLOAT, transA=trans_a, transB=trans_b, alpha=alpha)


@given(data=st.data())
def test_matmul_integer_to_float_matches_onnxruntime(data):
    a_type, b_type = data.draw(st.sampled_from(GEMM_TYPES))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    batch = data.draw(st.sampled_from([(), (2,)]))
    b_scale, b_zp = _b_params(data, b_type, n)
    inputs = [("a", values(data.draw, a_type, (*batch, m, k))), ("b", values(data.draw, b_type, (k, n))), ("as", data.draw(scales())),
              ("bs", b_scale), ("az", scalar(data.draw, a_type)), ("bz", b_zp),
              ("bias", data.draw(st.none() | hnp.arrays(np.float32, (n,), elements=st.floats(-4, 4, width=32))))]
    compare("MatMulIntegerToFloat", inputs, T.FLOAT)


@given(data=st.data())
def test_dynamic_quantize_matmul_matches_onnxruntime(data):
    b_type = data.draw(st.sampled_from(EIGHT_BIT))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    b_scale, b_zp = _b_params(data, b_type, n)
    inputs = [("a", data.draw(hnp.arrays(np.float32, (m, k), elements=st.floats(-100, 100, width=32)))),
              ("b", values(data.draw, b_type, (k, n))), ("bs", b_scale), ("bz", b_zp),
              ("bias", data.draw(st.none() | hnp.arrays(np.float32, (n,), elements=st.floats(-4, 4, width=32))))]
    compare("DynamicQuantizeMatMul", inputs, T.FLOAT)


def test_float_output_differences_are_float32_scaling():
    """onnxruntime scales float32(acc) by float32(a_scale * b_scale) in float32 and adds the bias in
    float32; spec rounds the exact real once. requantize_precision="float32" alone reproduces it."""
    rng = np.random.default_rng(3)
    cases = [[("a", rng.integers(0, 256, (4, 9)).astype(np.uint8)), ("b", rng.integers(-128, 128, (9, 5)).astype(np.int8)),
              ("as", np.float32(rng.uniform(0.01, 0.1))), ("bs", rng.uniform(0.01, 0.1, 5).astype(np.float32)),
              ("az", np.uint8(rng.integers(0, 256))), ("bz", np.zeros(5, np.int8)),
              ("bias", rng.uniform(-3, 3, 5).astype(np.float32))] for _ in range(4)]
    assert_differences_explained("MatMulIntegerToFloat", cases, T.FLOAT, FLOAT32_REQUANTIZE)


def test_onnxruntime_scales_bias_by_per_row_a_scale():
    """A documented onnxruntime defect, not an arithmetic option: with a per-row a_scale it adds the bias
    before multiplying by a_scale. refquant follows the formula Y = acc * a_scale * b_scale + bias."""
    inputs = [("a", np.array([[1, 2], [3, 4]], np.uint8)), ("b", np.eye(2, dtype=np.uint8)),
              ("as", np.array([[2.0], [3.0]], np.float32)), ("bs", np.float32(1)), ("az", np.uint8(0)),
              ("bz", np.uint8(0)), ("bias", np.array([10, 20], np.float32))]
    model = ms_model("MatMulIntegerToFloat", inputs, T.FLOAT)
    np.testing.assert_array_equal(run_ort(model, feeds_of(inputs)), [[22, 44], [39, 72]])
    for profile in ("spec", "onnxruntime"):
        np.testing.assert_array_equal(run_ref(model, feeds_of(inputs), profile), [[12, 24], [19, 32]])


@given(data=st.data())
def test_matmul_integer_to_float_per_row_and_per_column_parameters(data):
    """spec: Y = (A - a_zp) @ (B - b_zp) * a_scale * b_scale + bias, from an int64 broadcast-and-sum
    and float64 numpy (onnxruntime departs from the formula here, see the test above)."""
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    batch = data.draw(st.sampled_from([(), (2,)]))
    a = values(data.draw, np.uint8, (*batch, m, k))
    b = values(data.draw, np.int8, (k, n))
    positive = st.floats(2.0**-8, 1.0, width=32)
    a_scale = data.draw(hnp.arrays(np.float32, (m, 1), elements=positive))
    b_scale = data.draw(hnp.arrays(np.float32, (n,), elements=positive))
    a_zp, b_zp = values(data.draw, np.uint8, ()), values(data.draw, np.int8, (n,))
    bias = data.draw(hnp.arrays(np.float32, (n,), elements=st.floats(-4, 4, width=32)))
    inputs = [("a", a), ("b", b), ("as", a_scale), ("bs", b_scale), ("az", a_zp), ("bz", b_zp), ("bias", bias)]
    got = run_ref(ms_model("MatMulIntegerToFloat", inputs, T.FLOAT), feeds_of(inputs))
    centered_a = a.astype(np.int64) - int(a_zp)
    centered_b = b.astype(np.int64) - b_zp.astype(np.int64)
    acc = (centered_a[..., :, :, None] * centered_b[None, :, :]).sum(axis=-2)
    real = acc.astype(np.float64) * (a_scale.astype(np.float64) * b_scale.astype(np.float64)) + bias.astype(np.float64)
    assert_bit_exact(got, real.astype(np.float32))


# -- QLinearConv (channels_last) -------------------------------------------------------


@given(data=st.data())
def test_qlinearconv_channels_last_matches_onnxruntime(data):
    x_type, w_type = data.draw(st.sampled_from(GEMM_TYPES))
    channels, out_channels, rank = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    spatial = [data.draw(st.integers(k, 5)) for k in kernel]
    channels_last = data.draw(st.integers(0, 1))
    x = values(data.draw, x_type, (1, *spatial, channels) if channels_last else (1, channels, *spatial))
    inputs = [("x", x), ("xs", data.draw(scales())), ("xz", scalar(data.draw, x_type)),
              ("w", values(data.draw, w_type, (out_channels, channels, *kernel))), ("ws", data.draw(scales())),
              ("wz", scalar(data.draw, w_type)), ("ys", data.draw(scales(0.5, 4.0))), ("yz", scalar(data.draw, x_type)),
              ("bias", data.draw(st.none() | hnp.arrays(np.int32, (out_channels,), elements=st.integers(-1000, 1000))))]
    compare("QLinearConv", inputs, proto_of(x_type), channels_last=channels_last,
            pads=[data.draw(st.integers(0, 1)) for _ in range(2 * rank)])


def test_qlinearconv_channels_last_is_the_transposed_channels_first():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 3, 5, 4)).astype(np.uint8)
    w = rng.integers(-128, 128, (4, 3, 2, 2)).astype(np.int8)
    params = [("xs", np.float32(0.02)), ("xz", np.uint8(128)), ("w", w), ("ws", np.float32(0.01)), ("wz", np.int8(0)),
              ("ys", np.float32(0.05)), ("yz", np.uint8(120))]
    first = run_spec("QLinearConv", [("x", x), *params])
    last = run_spec("QLinearConv", [("x", np.ascontiguousarray(np.moveaxis(x, 1, -1))), *params], channels_last=1)
    np.testing.assert_array_equal(last, np.moveaxis(first, 1, -1))


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op_type, inputs, attrs, error, match",
    [
        ("QGemm", [("a", np.zeros((2, 3), np.uint8)), ("as", np.float32(1)), ("az", np.uint8(0)), ("b", np.zeros((3, 2), np.uint8)),
                   ("bs", np.float32(1)), ("bz", np.uint8(0)), ("c", None), ("ys", np.float32(1))], {}, QuantParamError,
         "y_scale and y_zero_point come together"),
        ("QGemm", [("a", np.zeros((2, 3), np.uint8)), ("as", np.float32(1)), ("az", np.uint8(0)), ("b", np.zeros((4, 2), np.uint8)),
                   ("bs", np.float32(1)), ("bz", np.uint8(0))], {}, ShapeError, "inner dimensions 3 and 4 differ"),
        ("QGemm", [("a", np.zeros((2, 3), np.uint8)), ("as", np.float32(1)), ("az", np.uint8(0)), ("b", np.zeros((3, 2), np.uint8)),
                   ("bs", np.ones(3, np.float32)), ("bz", np.zeros(3, np.uint8))], {}, QuantParamError, "expected one per column"),
        ("MatMulIntegerToFloat", [("a", np.zeros((2, 3), np.uint8)), ("b", np.zeros((3, 2), np.uint8)), ("as", np.ones(2, np.float32)),
                                  ("bs", np.float32(1))], {}, QuantParamError, "cannot be factored out"),
        ("MatMulIntegerToFloat", [("a", np.zeros((2, 3), np.uint8)), ("b", np.zeros((3, 2), np.uint8)), ("as", np.float32(1)),
                                  ("bs", np.float32(1)), ("az", None), ("bz", None), ("bias", np.zeros(3, np.float32))], {},
         ShapeError, "one value per column of B"),
        ("MatMulIntegerToFloat", [("a", np.zeros((2, 3), np.uint8)), ("b", np.zeros((3, 2), np.uint8)), ("as", np.float32(1)),
                                  ("bs", np.float32(1)), ("az", np.int8(0))], {}, DTypeError, "a_zero_point has type int8"),
        ("DynamicQuantizeMatMul", [("a", np.zeros((2, 3), np.float32)), ("b", np.zeros((2, 2), np.int8)), ("bs", np.float32(1))], {},
         ShapeError, "inner dimensions 3 and 2 differ"),
        ("QLinearConv", [("x", np.zeros((1, 4, 4, 3), np.uint8)), ("xs", np.float32(1)), ("xz", np.uint8(0)),
                         ("w", np.zeros((2, 2, 1, 1), np.uint8)), ("ws", np.float32(1)), ("wz", np.uint8(0)), ("ys", np.float32(1)),
                         ("yz", np.uint8(0))], {"channels_last": 1}, ShapeError, "input channels per group"),
    ],
)
def test_invalid_linear_inputs_raise_clear_errors(op_type, inputs, attrs, error, match):
    with pytest.raises(error, match=match):
        run_spec(op_type, inputs, T.FLOAT, **attrs)
