"""Profile option avx2_u8s8_saturation: onnxruntime's U8S8 kernels on CPUs without VNNI, by hand.

VPMADDUBSW forms u8 * s8 products of the stored bytes and adds adjacent pairs along K into int16 with
saturation; the zero-point terms (-zb * sum a - za * sum b + K za zb) are added exactly afterwards.
Every expectation below is derived by hand in its comment. Where this host's onnxruntime runs those
kernels (refquant.host names the MLAS family "avx2" or "avx512core"), the tests marked
``on_saturating_host`` also measure onnxruntime against the hand-derived value.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import numpy_helper

import refquant
from refquant import host, lowerings

from .helpers import single_node_model

ONNXRUNTIME = refquant.get_profile("onnxruntime")
AVX2 = ONNXRUNTIME.with_options(avx2_u8s8_saturation=True)
EXACT = ONNXRUNTIME.with_options(avx2_u8s8_saturation=False)

on_saturating_host = pytest.mark.skipif(
    not host.u8s8_pairs_saturate(),
    reason=f"onnxruntime runs MLAS's {host.mlas_integer_kernels()!r} U8S8 kernels here, which do not saturate pairs",
)


def _ort(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def matmul_integer(a, b, a_zp=0, b_zp=0):
    init = {"a_zp": np.array(a_zp, a.dtype), "b_zp": np.array(b_zp, b.dtype)}
    model = single_node_model(
        "MatMulInteger", {"a": a, "b": b, **init}, {"y": T.INT32}, opset=13, initializers=init
    )
    return lambda profile: refquant.Session(model, profile=profile).run(None, {"a": a, "b": b})[0]


# -- host detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, family, saturates",
    [
        ({"sse4_1"}, "unknown", False),  # no AVX2: MLAS's portable kernels, exact
        ({"avx2", "fma"}, "avx2", True),  # AMD EPYC (Zen 2/3), Haswell..Coffee Lake: VPMADDUBSW
        ({"avx2", "fma", "avx_vnni"}, "avxvnni", False),  # Alder Lake: VPDPBUSD, exact int32
        ({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"}, "avx512core", True),  # Skylake-SP
        ({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"}, "avx512vnni", False),
        ({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "amx_tile", "amx_int8"}, "amx", False),
        ({"avx2", "fma", "avx512f"}, "avx2", True),  # AVX512F alone (Knights Landing) keeps the AVX2 U8S8 kernel
    ],
)
def test_mlas_integer_kernels_follow_platform_cpp(flags, family, saturates):
    assert host.mlas_integer_kernels(flags) == family
    assert host.u8s8_pairs_saturate(flags) is saturates


def test_onnxruntime_profile_follows_the_host():
    assert ONNXRUNTIME.avx2_u8s8_saturation is host.u8s8_pairs_saturate()
    assert host.mlas_integer_kernels() in host.MLAS_INTEGER_KERNELS


# -- MatMulInteger ---------------------------------------------------------------------------


MATMUL_CASES = [
    ([[255, 255]], [[127], [127]], 0, 64770, 32767),  # 255*127*2 = 64770 saturates to 32767
    ([[255, 255]], [[-128], [-128]], 0, -65280, -32768),  # and to -32768 below
    ([[255, 255, 255]], [[127], [127], [127]], 0, 97155, 32767 + 32385),  # the odd third product is alone
    ([[255, 255]], [[127], [127]], 128, 32258, 32767 - 128 * 254),  # zero-point term exact: 255
    ([[255, 1]], [[127], [127]], 0, 32512, 32512),  # near miss: 32385 + 127 fits int16
]


@pytest.mark.parametrize("a, b, a_zp, expected_exact, expected_avx2", MATMUL_CASES)
def test_matmul_integer_pair_saturation(a, b, a_zp, expected_exact, expected_avx2):
    run = matmul_integer(np.array(a, np.uint8), np.array(b, np.int8), a_zp=a_zp)
    assert run(EXACT)[0, 0] == expected_exact
    assert run(AVX2)[0, 0] == expected_avx2


@on_saturating_host
@pytest.mark.parametrize("a, b, a_zp, expected_exact, expected_avx2", MATMUL_CASES)
def test_onnxruntime_here_saturates_as_derived(a, b, a_zp, expected_exact, expected_avx2):
    a, b = np.array(a, np.uint8), np.array(b, np.int8)
    init = {"a_zp": np.array(a_zp, np.uint8), "b_zp": np.array(0, np.int8)}
    model = single_node_model("MatMulInteger", {"a": a, "b": b, **init}, {"y": T.INT32}, opset=13, initializers=init)
    assert _ort(model, {"a": a, "b": b})[0, 0] == expected_avx2
    assert matmul_integer(a, b, a_zp=a_zp)("onnxruntime")[0, 0] == expected_avx2


def test_only_u8s8_saturates():
    run = matmul_integer(np.array([[127, 127]], np.int8), np.array([[127], [127]], np.int8))
    assert run(AVX2)[0, 0] == 127 * 127 * 2  # S8S8 takes another kernel


# -- QLinearConv: K is (kernel tap, input channel) -------------------------------------------


def _qlinear_conv(w_shape, group=1):
    """QLinearConv with every scale 1 except y_scale 256, zero points 0, weights all 127: y = rint(acc / 256)."""
    init = {
        "xs": np.array(1, np.float32), "xz": np.array(0, np.uint8),
        "w": np.full(w_shape, 127, np.int8), "ws": np.array(1, np.float32), "wz": np.array(0, np.int8),
        "ys": np.array(256, np.float32), "yz": np.array(0, np.uint8),
    }  # fmt: skip
    channels = w_shape[1] * group
    model = single_node_model(
        "QLinearConv",
        {"x": (T.UINT8, [1, channels, 1, w_shape[3]]), "xs": None, "xz": None, "w": None, "ws": None, "wz": None,
         "ys": None, "yz": None},
        {"y": T.UINT8}, opset=13, attrs={"group": group}, initializers=init,
    )  # fmt: skip
    return model


def test_qlinear_conv_pairs_channels_within_a_tap():
    """1x1 kernel over two channels: K = (channel 0, channel 1), one pair: 255*127*2 = 64770 -> 32767."""
    model = _qlinear_conv((1, 2, 1, 1))
    x = np.full((1, 2, 1, 1), 255, np.uint8)
    exact = refquant.Session(model, profile=EXACT).run(None, {"x": x})[0]
    saturated = refquant.Session(model, profile=AVX2).run(None, {"x": x})[0]
    assert exact.item() == 253 and saturated.item() == 128  # rint(64770 / 256) = 253, rint(32767 / 256) = 128


# x (1, 2 channels, 1, 2 taps) against a 1x2 kernel of 127s, one output point. onnxruntime's K order is
# (tap 0: c0, c1), (tap 1: c0, c1) (NHWC im2col; weights reordered K1..Kn C M), not ONNX's (c0: t0, t1), ...
K_ORDER_CASES = [
    # c0 = [255, 0], c1 = [255, 0]: pairs by tap (255*127 + 255*127 = 64770 -> 32767) + (0) = 32767 -> rint(127.99) = 128;
    # pairs by channel would be (32385 + 0) + (32385 + 0) = 64770 -> 253: no saturation.
    ([[255, 0], [255, 0]], 253, 128),
    # c0 = [255, 255], c1 = [0, 0]: pairs by tap (32385 + 0) + (32385 + 0) = 64770 -> 253, nothing saturates;
    # pairs by channel would be (32385 + 32385 -> 32767) + 0 -> 128.
    ([[255, 255], [0, 0]], 253, 253),
]


@pytest.mark.parametrize("x, expected_exact, expected_avx2", K_ORDER_CASES)
def test_qlinear_conv_pairs_follow_taps_then_channels(x, expected_exact, expected_avx2):
    model = _qlinear_conv((1, 2, 1, 2))
    x = np.array(x, np.uint8).reshape(1, 2, 1, 2)
    assert refquant.Session(model, profile=EXACT).run(None, {"x": x})[0].item() == expected_exact
    assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].item() == expected_avx2


@on_saturating_host
@pytest.mark.parametrize("x, expected_exact, expected_avx2", K_ORDER_CASES)
def test_onnxruntime_here_pairs_taps_then_channels(x, expected_exact, expected_avx2):
    model = _qlinear_conv((1, 2, 1, 2))
    x = np.array(x, np.uint8).reshape(1, 2, 1, 2)
    assert _ort(model, {"x": x}).item() == expected_avx2
    assert refquant.Session(model, profile="onnxruntime").run(None, {"x": x})[0].item() == expected_avx2


def test_qlinear_conv_odd_channels_pair_across_taps():
    """Three channels, 1x2 kernel: K = (t0c0, t0c1, t0c2, t1c0, t1c1, t1c2) is one GEMM dimension, so
    the pairs are (t0c0, t0c1), (t0c2, t1c0), (t1c1, t1c2): the middle pair straddles two taps.
    x = c0 [0, 255], c1 [0, 0], c2 [255, 0], in K order 0, 0, 255, 255, 0, 0:
    0 + (255*127 + 255*127 = 64770 -> 32767) + 0 = 32767 -> rint(127.996) = 128.
    Exact: 2 * 32385 = 64770 -> rint(253.01) = 253 (also what pairs by channel, or pairs kept inside
    one tap, would give: no pair there holds two 255s)."""
    model = _qlinear_conv((1, 3, 1, 2))
    x = np.array([[0, 255], [0, 0], [255, 0]], np.uint8).reshape(1, 3, 1, 2)
    assert refquant.Session(model, profile=EXACT).run(None, {"x": x})[0].item() == 253
    assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].item() == 128
    if host.u8s8_pairs_saturate():  # measured: onnxruntime on this host agrees
        assert _ort(model, {"x": x}).item() == 128


def test_depthwise_qlinear_conv_stays_exact():
    """Two groups of one channel, 1x2 kernel: MLAS's depthwise kernels multiply in int32 (no pairs):
    255*127*2 = 64770 -> 253 on both channels, even with the option on."""
    model = _qlinear_conv((2, 1, 1, 2), group=2)
    x = np.full((1, 2, 1, 2), 255, np.uint8)
    assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].ravel().tolist() == [253, 253]


def test_depthwise_qlinear_conv_with_distinct_weight_zero_points_is_a_gemm():
    """MLAS's depthwise kernel takes one weight zero point: per-channel zero points that differ send
    onnxruntime 1.32 to the GEMM, whose pairs saturate (refquant fuzz --seed 5103). Two groups of one
    channel, 1x2 kernel, x = 255 everywhere, w = 127, w_scale [1, 1], w_zero_point [0, 1]:
    channel 0: exact 255*127*2 = 64770 -> rint(64770 / 256) = 253; the pair 64770 -> 32767 -> 128.
    channel 1: the pair 32767 less the zero-point term 255*1*2 = 510: 32257 -> 126 (exact 64260 -> 251).
    Equal zero points [1, 1] keep the depthwise kernel: exact, 251 on both channels."""
    model = _qlinear_conv((2, 1, 1, 2), group=2)
    x = np.full((1, 2, 1, 2), 255, np.uint8)
    for zero_points, expected_exact, expected_avx2 in (([0, 1], [253, 251], [128, 126]), ([1, 1], [251, 251], [251, 251])):
        params = {"ws": np.ones(2, np.float32), "wz": np.array(zero_points, np.int8)}
        for tensor in model.graph.initializer:
            if tensor.name in params:
                tensor.CopyFrom(numpy_helper.from_array(params[tensor.name], tensor.name))
        assert refquant.Session(model, profile=EXACT).run(None, {"x": x})[0].ravel().tolist() == expected_exact
        assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].ravel().tolist() == expected_avx2
        if host.u8s8_pairs_saturate():  # measured: onnxruntime on this host agrees
            assert _ort(model, {"x": x}).ravel().tolist() == expected_avx2


def test_conv_integer_with_int8_weights_stays_exact():
    """ConvInteger runs MlasGemm with the weights as A: int8 weights make an S8U8 GEMM, no VPMADDUBSW pairs.
    1x1 kernel over two channels of 255 against 127s: 64770, not 32767."""
    init = {"w": np.full((1, 2, 1, 1), 127, np.int8), "xz": np.array(0, np.uint8), "wz": np.array(0, np.int8)}
    model = single_node_model(
        "ConvInteger", {"x": (T.UINT8, [1, 2, 1, 1]), "w": None, "xz": None, "wz": None}, {"y": T.INT32},
        opset=13, initializers=init,
    )
    x = np.full((1, 2, 1, 1), 255, np.uint8)
    assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].item() == 64770


def test_conv_integer_with_uint8_weights_pairs_along_im2col():
    """uint8 weights as MLAS's A against the im2col of int8 x as B: a U8S8 GEMM, K in im2col's order (input
    channel, then kernel tap). One channel, kernel 2, x = [127, 127, 127], w = [130, 130] (a fuzz reproducer):
    each output is one pair 130*127 + 130*127 = 33020, beyond int16: 32767 on a saturating host."""
    init = {"w": np.full((1, 1, 2), 130, np.uint8)}
    model = single_node_model(
        "ConvInteger", {"x": (T.INT8, [1, 1, 3]), "w": None}, {"y": T.INT32}, opset=13, initializers=init
    )
    x = np.full((1, 1, 3), 127, np.int8)
    assert refquant.Session(model, profile=EXACT).run(None, {"x": x})[0].ravel().tolist() == [33020, 33020]
    assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].ravel().tolist() == [32767, 32767]
    if host.u8s8_pairs_saturate():  # measured: onnxruntime on this host agrees
        assert _ort(model, {"x": x}).ravel().tolist() == [32767, 32767]


def test_conv_integer_pairs_channels_before_taps():
    """Two channels, kernel 2: im2col's K is (c0t0, c0t1, c1t0, c1t1), pairs (c0t0, c0t1) and (c1t0, c1t1).
    w = c0 [255, 255], c1 [0, 0]; x = c0 [127, 127], c1 [127, 127]: the pair over c0 is 2*255*127 = 64770,
    saturating to 32767; the c1 pair is 0. (Tap-first pairs (c0t0, c1t0), (c0t1, c1t1) would each be
    32385, within int16, giving the exact 64770.)"""
    init = {"w": np.array([[[255, 255], [0, 0]]], np.uint8)}
    model = single_node_model(
        "ConvInteger", {"x": (T.INT8, [1, 2, 2]), "w": None}, {"y": T.INT32}, opset=13, initializers=init
    )
    x = np.full((1, 2, 2), 127, np.int8)
    assert refquant.Session(model, profile=EXACT).run(None, {"x": x})[0].item() == 64770
    assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].item() == 32767
    if host.u8s8_pairs_saturate():
        assert _ort(model, {"x": x}).item() == 32767


def test_padding_holds_the_zero_point_in_the_pairs():
    """The padding MLAS multiplies is the stored zero point, even when no element of x is that far out.
    ConvInteger, kernel 2, pads 2, x = [5], x_zp = -116, w = [145, 145] uint8: the im2col rows are
    (pad, pad), (pad, x), (x, pad), (pad, pad). An all-padding pair sums 2 * (-116 * 145) = -33640 -> -32768,
    and the zero-point correction adds back 116 * 290 = 33640: 872 instead of the exact 0. The mixed rows
    (-116 + 5) * 145 = -16095 stay within int16: (5 + 116) * 145 = 17545 exactly."""
    init = {"w": np.full((1, 1, 2), 145, np.uint8), "xz": np.array(-116, np.int8)}
    model = single_node_model(
        "ConvInteger", {"x": (T.INT8, [1, 1, 1]), "w": None, "xz": None}, {"y": T.INT32}, opset=13,
        initializers=init, attrs={"pads": [2, 2]},
    )
    x = np.array([[[5]]], np.int8)
    assert refquant.Session(model, profile=EXACT).run(None, {"x": x})[0].ravel().tolist() == [0, 17545, 17545, 0]
    assert refquant.Session(model, profile=AVX2).run(None, {"x": x})[0].ravel().tolist() == [872, 17545, 17545, 872]
    if host.u8s8_pairs_saturate():
        assert _ort(model, {"x": x}).ravel().tolist() == [872, 17545, 17545, 872]


# -- com.microsoft ops ------------------------------------------------------------------------


def test_matmul_integer_to_float_saturates():
    """com.microsoft MatMulIntegerToFloat runs MlasGemm U8S8: [255, 255] @ [127, 127] = 64770 -> 32767, times 1."""
    a, b = np.array([[255, 255]], np.uint8), np.array([[127], [127]], np.int8)
    init = {"as": np.array(1, np.float32), "bs": np.array(1, np.float32)}
    model = single_node_model(
        "MatMulIntegerToFloat", {"a": a, "b": b, "as": None, "bs": None}, {"y": T.FLOAT}, opset=13,
        initializers=init, domain="com.microsoft",
    )
    run = lambda profile: refquant.Session(model, profile=profile).run(None, {"a": a, "b": b})[0].item()  # noqa: E731
    assert run(EXACT) == 64770.0 and run(AVX2) == 32767.0


def test_excess_matches_a_direct_loop():
    rng = np.random.default_rng(3)
    a = rng.integers(128, 256, (3, 9)).astype(np.uint8)  # large bytes, so some pairs leave int16
    b = (rng.integers(64, 128, (9, 4)) * rng.choice([-1, 1], (9, 4))).astype(np.int8)
    expected = np.zeros((3, 4), np.int64)
    for i in range(3):
        for j in range(4):
            for k in range(0, 8, 2):
                pair = int(a[i, k]) * int(b[k, j]) + int(a[i, k + 1]) * int(b[k + 1, j])
                expected[i, j] += min(max(pair, -32768), 32767) - pair
    np.testing.assert_array_equal(lowerings.pairwise_saturation_excess(a, b), expected)
    assert expected.any()  # the random bytes do saturate somewhere: the test can fail
