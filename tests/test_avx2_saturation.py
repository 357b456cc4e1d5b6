"""Profile option avx2_u8s8_saturation: onnxruntime's U8S8 kernels on AVX2 without VNNI, by hand.

VPMADDUBSW forms u8 * s8 products of the stored bytes and adds adjacent pairs along K into int16 with
saturation; the zero-point terms (-zb * sum a - za * sum b + K za zb) are added exactly afterwards.
This machine has VNNI, so onnxruntime here does not saturate: the expectations are derived by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T

import refquant
from refquant import arith

from .helpers import single_node_model

AVX2 = refquant.get_profile("onnxruntime").with_options(avx2_u8s8_saturation=True)


def matmul_integer(a, b, a_zp=0, b_zp=0):
    init = {"a_zp": np.array(a_zp, a.dtype), "b_zp": np.array(b_zp, b.dtype)}
    model = single_node_model(
        "MatMulInteger", {"a": a, "b": b, **init}, {"y": T.INT32}, opset=13, initializers=init
    )
    return lambda profile: refquant.Session(model, profile=profile).run(None, {"a": a, "b": b})[0]


@pytest.mark.parametrize(
    "a, b, a_zp, expected_exact, expected_avx2",
    [
        ([[255, 255]], [[127], [127]], 0, 64770, 32767),  # 255*127*2 = 64770 saturates to 32767
        ([[255, 255]], [[-128], [-128]], 0, -65280, -32768),  # and to -32768 below
        ([[255, 255, 255]], [[127], [127], [127]], 0, 97155, 32767 + 32385),  # the odd third product is alone
        ([[255, 255]], [[127], [127]], 128, 32258, 32767 - 128 * 254),  # zero-point term exact: 255
        ([[255, 1]], [[127], [127]], 0, 32512, 32512),  # near miss: 32385 + 127 fits int16
    ],
)
def test_matmul_integer_pair_saturation(a, b, a_zp, expected_exact, expected_avx2):
    run = matmul_integer(np.array(a, np.uint8), np.array(b, np.int8), a_zp=a_zp)
    assert run("onnxruntime")[0, 0] == expected_exact
    assert run(AVX2)[0, 0] == expected_avx2


def test_only_u8s8_saturates():
    run = matmul_integer(np.array([[127, 127]], np.int8), np.array([[127], [127]], np.int8))
    assert run(AVX2)[0, 0] == 127 * 127 * 2  # S8S8 takes another kernel


def test_qlinear_conv_pairs_follow_channels_then_taps():
    """1x1 kernel over two channels: K = (channel 0, channel 1), one pair: 255*127*2 = 64770 -> 32767."""
    init = {
        "xs": np.array(1, np.float32), "xz": np.array(0, np.uint8),
        "w": np.full((1, 2, 1, 1), 127, np.int8), "ws": np.array(1, np.float32), "wz": np.array(0, np.int8),
        "ys": np.array(256, np.float32), "yz": np.array(0, np.uint8),
    }
    model = single_node_model(
        "QLinearConv",
        {"x": (T.UINT8, [1, 2, 1, 1]), "xs": None, "xz": None, "w": None, "ws": None, "wz": None, "ys": None, "yz": None},
        {"y": T.UINT8}, opset=13, initializers=init,
    )
    x = np.full((1, 2, 1, 1), 255, np.uint8)
    exact = refquant.Session(model, profile="onnxruntime").run(None, {"x": x})[0]
    saturated = refquant.Session(model, profile=AVX2).run(None, {"x": x})[0]
    assert exact.item() == 253 and saturated.item() == 128  # rint(64770 / 256), rint(32767 / 256)


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
    np.testing.assert_array_equal(arith.pairwise_saturation_excess(a, b), expected)
    assert expected.any()  # the random bytes do saturate somewhere: the test can fail
