"""com.microsoft MatMulNBits: refquant/ops/contrib_weight_only.py (spec/ops/contrib.md, "Weight-only
quantization").

Expected values: codes packed by hand in the tests (bytes written out, independently of the kernel's
unpacking), then onnxruntime 1.32's CPU kernel on seeded random inputs, and weights packed by onnxruntime's
own blockwise quantizer (`quantize_matmul_4bits`, what `MatMulNBitsQuantizer` calls), within the measured
float32 units.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T

from refquant.errors import AttributeValueError, ShapeError

from .transformer_helpers import compare_with_onnxruntime, run_refquant

pytest.importorskip("onnxruntime")

#: measured: at most 9.8 units of 2^-24 * max|output| (spec/ops/contrib.md)
UNITS = 16

EYE16 = np.eye(16, dtype=np.float32)


def nbits(a, b, scales, zero_points=None, g_idx=None, bias=None, **attrs):
    inputs = [("A", a), ("B", b), ("scales", scales), ("zero_points", zero_points), ("g_idx", g_idx), ("bias", bias)]
    while inputs[-1][1] is None:
        inputs.pop()
    return inputs, attrs


def test_4_bit_by_hand():
    # row 0: codes 0, 1, ..., 15 -> bytes 0x10, 0x32, ..., 0xFE (low nibble first); row 1: all 15 (0xFF)
    b = np.array([[[0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]], [[0xFF] * 8]], np.uint8)
    scales = np.array([0.5, 2.0], np.float32)
    inputs, attrs = nbits(EYE16, b, scales, K=16, N=2, bits=4, block_size=16)
    (y,) = run_refquant("MatMulNBits", inputs, **attrs)  # default zero point 8
    assert y[:, 0].tolist() == [(k - 8) * 0.5 for k in range(16)]
    assert y[:, 1].tolist() == [14.0] * 16  # (15 - 8) * 2
    zp = np.array([0x03, 0x05], np.uint8)  # one block per row: one byte per row, low nibble
    inputs, attrs = nbits(EYE16, b, scales, zp, bias=np.array([1.0, -1.0], np.float32), K=16, N=2, bits=4,
                          block_size=16)
    (y,) = run_refquant("MatMulNBits", inputs, **attrs)
    assert y[:, 0].tolist() == [(k - 3) * 0.5 + 1 for k in range(16)]
    assert y[:, 1].tolist() == [19.0] * 16  # (15 - 5) * 2 - 1


def test_2_bit_and_8_bit_by_hand():
    # 2 bits: codes 0, 1, 2, 3 per byte -> 0b11_10_01_00 = 0xE4; default zero point 2
    b = np.full((1, 1, 4), 0xE4, np.uint8)
    (y,) = run_refquant("MatMulNBits", *nbits(EYE16, b, np.array([1.0], np.float32), K=16, N=1, bits=2,
                                                block_size=16)[:1],
                        K=16, N=1, bits=2, block_size=16)
    assert y[:, 0].tolist() == [-2.0, -1.0, 0.0, 1.0] * 4
    # 8 bits: a byte per code; default zero point 128; two blocks of 16, K = 20 (the last block padded)
    codes = np.arange(120, 152, dtype=np.uint8).reshape(1, 2, 16)
    a = np.eye(20, dtype=np.float32)
    (y,) = run_refquant("MatMulNBits", [("A", a), ("B", codes), ("scales", np.array([1.0, 0.25], np.float32))],
                        K=20, N=1, bits=8, block_size=16)
    assert y[:, 0].tolist() == [k - 8.0 for k in range(16)] + [(k - 8) * 0.25 for k in range(16, 20)]
    # packed 8-bit zero points: a byte per block
    (y,) = run_refquant("MatMulNBits", [("A", a), ("B", codes), ("scales", np.array([1.0, 0.25], np.float32)),
                                        ("zero_points", np.array([120, 140], np.uint8))],
                        K=20, N=1, bits=8, block_size=16)
    assert y[:, 0].tolist() == [float(k) for k in range(16)] + [(k - 20) * 0.25 for k in range(16, 20)]


def test_packed_zero_points_rows_and_float_zero_points_and_g_idx_by_hand():
    # 4 bits, K = 48, block 16: 3 blocks; packed zero points: ceil(3 * 4 / 8) = 2 bytes per row
    b = np.full((2, 3, 8), 0x99, np.uint8)  # every code 9
    a = np.eye(48, dtype=np.float32)
    zp = np.array([0x21, 0x03, 0x54, 0x06], np.uint8)  # row 0: 1, 2, 3 (pad nibble 0); row 1: 4, 5, 6
    scales = np.ones(6, np.float32)
    (y,) = run_refquant("MatMulNBits", [("A", a), ("B", b), ("scales", scales), ("zero_points", zp)],
                        K=48, N=2, bits=4, block_size=16)
    assert y[::16].tolist() == [[8.0, 5.0], [7.0, 4.0], [6.0, 3.0]]
    # float zero points (A's type), and g_idx choosing the block of each k
    zf = np.array([0.5, 1.5, 2.5, 8.0, 9.0, 10.0], np.float32)
    g = np.array([2] * 16 + [0] * 16 + [1] * 16, np.int32)
    (y,) = run_refquant("MatMulNBits", [("A", a), ("B", b), ("scales", scales), ("zero_points", zf),
                                        ("g_idx", g)], K=48, N=2, bits=4, block_size=16)
    assert y[::16].tolist() == [[6.5, -1.0], [8.5, 1.0], [7.5, 0.0]]


def test_refusals():
    b = np.zeros((1, 1, 8), np.uint8)
    s = np.ones(1, np.float32)
    with pytest.raises(ShapeError, match=r"B has shape \[1, 1, 8\], expected"):
        run_refquant("MatMulNBits", [("A", EYE16), ("B", b), ("scales", s)], K=16, N=1, bits=2, block_size=16)
    with pytest.raises(AttributeValueError, match="bits=3"):
        run_refquant("MatMulNBits", [("A", EYE16), ("B", b), ("scales", s)], K=16, N=1, bits=3, block_size=16)
    with pytest.raises(ShapeError, match="last dimension must be K"):
        run_refquant("MatMulNBits", [("A", EYE16[:, :8]), ("B", b), ("scales", s)], K=16, N=1, bits=4,
                     block_size=16)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    per = 8 // bits
    codes = codes.reshape(codes.shape[:-1] + (-1, per)).astype(np.uint16)
    return sum(codes[..., i] << (bits * i) for i in range(per)).astype(np.uint8)


CASES = [(bits, zp, g, bias) for bits in (2, 4, 8) for zp in ("none", "uint8", "float") for g in (False, True)
         for bias in (False, True)
         # onnxruntime 1.32 (measured, spec/ops/contrib.md): with g_idx it ignores packed zero points and
         # decodes 2-bit codes as 4-bit; it refuses 8-bit with g_idx or with float zero points
         if not (g and (zp == "uint8" or bits != 4)) and not (bits == 8 and zp == "float")]


@pytest.mark.parametrize("bits, zp, g, bias", CASES)
def test_against_onnxruntime(bits, zp, g, bias):
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 9))
        block = int(rng.choice([16, 32, 64]))
        k = int(rng.integers(1, 3 * block))
        blocks = -(-k // block)
        b = pack(rng.integers(0, 1 << bits, (n, blocks * block)), bits).reshape(n, blocks, block * bits // 8)
        inputs = [("A", rng.normal(size=(2, 3, k)).astype(np.float32)), ("B", b),
                  ("scales", (rng.random(n * blocks) * 0.1 + 0.01).astype(np.float32))]
        if zp == "uint8":
            row = -(-blocks * bits // 8)
            inputs.append(("zero_points", pack(rng.integers(0, 1 << bits, (n, row * 8 // bits)), bits).reshape(-1)))
        else:
            inputs.append(("zero_points", (rng.random(n * blocks) * (1 << bits)).astype(np.float32)
                           if zp == "float" else None))
        inputs.append(("g_idx", rng.integers(0, blocks, k).astype(np.int32) if g else None))
        if bias:
            inputs.append(("bias", rng.normal(size=n).astype(np.float32)))
        compare_with_onnxruntime("MatMulNBits", inputs, (T.FLOAT,), UNITS, K=k, N=n, bits=bits, block_size=block)


@pytest.mark.parametrize("symmetric", [False, True])
def test_weights_packed_by_onnxruntime_quantizer(symmetric):
    """B, scales, zero points from onnxruntime's blockwise 4-bit quantizer (MatMulNBitsQuantizer's kernel);
    refquant's product is close to the float MatMul (quantization error) and within UNITS of onnxruntime's."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    rng = np.random.default_rng(3)
    k, n, block = 80, 24, 32
    w = rng.normal(size=(k, n)).astype(np.float32)
    blocks = -(-k // block)
    b = np.zeros((n, blocks, block // 2), np.uint8)
    scales = np.zeros(n * blocks, np.float32)
    zp = np.zeros(n * ((blocks + 1) // 2), np.uint8)
    quantize_matmul_4bits(b, w, scales, zp, block, n, k, symmetric)
    a = rng.normal(size=(2, 5, k)).astype(np.float32)
    inputs = [("A", a), ("B", b), ("scales", scales)] + ([] if symmetric else [("zero_points", zp)])
    (y,) = compare_with_onnxruntime("MatMulNBits", inputs, (T.FLOAT,), UNITS, K=k, N=n, bits=4, block_size=block)
    assert np.max(np.abs(y - a @ w)) < 0.2 * np.max(np.abs(a @ w))


# -- GatherBlockQuantized -------------------------------------------------------------------------------


def gather_model(inputs, **attrs):
    """data and zero_points as initializers (onnxruntime's Python API cannot feed int4/uint4)."""
    from onnx import helper, numpy_helper

    from refquant.dtypes import proto_of

    names = [n if v is not None else "" for n, v in inputs]
    const = [numpy_helper.from_array(v, n) for n, v in inputs if v is not None and n in ("data", "zero_points")]
    fed = {n: v for n, v in inputs if v is not None and n not in ("data", "zero_points")}
    node = helper.make_node("GatherBlockQuantized", names, ["y"], domain="com.microsoft", **attrs)
    graph = helper.make_graph(
        [node], "gbq", [helper.make_tensor_value_info(n, proto_of(v.dtype), list(v.shape)) for n, v in fed.items()],
        [helper.make_tensor_value_info("y", proto_of(inputs[2][1].dtype), None)], const)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model, fed


def run_gather(inputs, **attrs):
    import refquant

    model, fed = gather_model(inputs, **attrs)
    return refquant.Session(model).run(None, fed)[0]


def test_gather_block_quantized_by_hand():
    import ml_dtypes

    # uint8, 4 bits: row r holds codes 0..15 then 15..0 (32 codes, 2 blocks of 16) -> 16 bytes
    up = [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]
    down = [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01]
    data = np.array([up + down, down + up], np.uint8)
    scales = np.array([[1.0, 0.5], [2.0, 0.25]], np.float32)
    zp = np.array([[0x31], [0x00]], np.uint8)  # row 0: zero points 1 and 3; row 1: 0 and 0
    y = run_gather([("data", data), ("indices", np.array([1, 0, -1], np.int64)), ("scales", scales),
                    ("zero_points", zp)], bits=4, block_size=16, gather_axis=0, quantize_axis=1)
    assert y.shape == (3, 32)
    assert y[1].tolist() == [float(k - 1) for k in range(16)] + [(15 - k - 3) * 0.5 for k in range(16)]
    assert y[0].tolist() == [(15 - k) * 2.0 for k in range(16)] + [k * 0.25 for k in range(16)]
    assert y[2].tolist() == y[0].tolist()
    # default zero point for uint8 data: 2^(bits - 1) = 8
    y = run_gather([("data", data), ("indices", np.array([0], np.int32)), ("scales", scales)], bits=4,
                   block_size=16, gather_axis=0, quantize_axis=1)
    assert y[0, :3].tolist() == [-8.0, -7.0, -6.0]
    # int4 (logical shape, one value per element), zero point default 0, gather along the quantized axis
    d4 = np.array([[-8, -1, 0, 7] * 4], ml_dtypes.int4).reshape(1, 16).repeat(2, axis=0)
    y = run_gather([("data", d4), ("indices", np.array([3, 1], np.int64)),
                    ("scales", np.array([[0.5], [1.0]], np.float32))], block_size=16, gather_axis=1,
                   quantize_axis=1)
    assert y.tolist() == [[3.5, -0.5], [7.0, -1.0]]


def test_gather_block_quantized_refusals():
    data = np.zeros((2, 16), np.uint8)
    with pytest.raises(ShapeError, match=r"scales have shape \[2, 2\], expected \[2, 1\]"):
        run_gather([("data", data), ("indices", np.array([0], np.int64)), ("scales", np.ones((2, 2), np.float32))],
                   bits=8, block_size=16, quantize_axis=1)
    with pytest.raises(ShapeError, match="indices must be in"):
        run_gather([("data", data), ("indices", np.array([2], np.int64)), ("scales", np.ones((2, 1), np.float32))],
                   bits=8, block_size=16, quantize_axis=1)
    with pytest.raises(AttributeValueError, match="quantize_axis must be 1"):
        run_gather([("data", data), ("indices", np.array([0], np.int64)), ("scales", np.ones((1, 32), np.float32))],
                   bits=4, block_size=16, quantize_axis=0)


@pytest.mark.parametrize("kind", ["int4", "uint4", "uint8-2", "uint8-4", "uint8-8"])
@pytest.mark.parametrize("with_zero_points", [False, True])
def test_gather_block_quantized_against_onnxruntime(kind, with_zero_points):
    """Bit for bit (measured on 20 seeds of each case; spec/ops/contrib.md)."""
    import ml_dtypes

    from .transformer_helpers import run_onnxruntime

    for seed in range(5):
        rng = np.random.default_rng(seed)
        block = int(rng.choice([16, 32]))
        rows = int(rng.integers(1, 6))
        if kind.startswith("uint8"):
            bits = int(kind[6:])
            per = 8 // bits
            length = int(rng.integers(1, 4)) * block
            blocks = length // block
            codes = rng.integers(0, 1 << bits, (rows, length))
            data = pack(codes, bits) if per > 1 else codes.astype(np.uint8)
            zp = (pack(rng.integers(0, 1 << bits, (rows, -(-blocks // per) * per)), bits) if per > 1
                  else rng.integers(0, 256, (rows, blocks)).astype(np.uint8))
            attrs = dict(bits=bits, block_size=block, gather_axis=0, quantize_axis=1)
            scale_shape = (rows, blocks)
        else:
            dtype, lo, hi = (ml_dtypes.int4, -8, 8) if kind == "int4" else (ml_dtypes.uint4, 0, 16)
            length = int(rng.integers(1, 3 * block))
            blocks = -(-length // block)
            data = rng.integers(lo, hi, (rows, 3, length)).astype(dtype)
            zp = rng.integers(lo, hi, (rows, 3, blocks)).astype(dtype)
            attrs = dict(block_size=block, gather_axis=int(rng.integers(0, 2)), quantize_axis=2)
            scale_shape = (rows, 3, blocks)
        dim = data.shape[attrs["gather_axis"]]
        inputs = [("data", data), ("indices", rng.integers(-dim, dim, (2, 3)).astype(np.int64)),
                  ("scales", (rng.random(scale_shape) + 0.1).astype(np.float32)),
                  ("zero_points", zp if with_zero_points else None)]
        ours = run_gather(inputs, **attrs)
        model, fed = gather_model(inputs, **attrs)
        theirs = run_onnxruntime(model, fed)[0]
        np.testing.assert_array_equal(ours, theirs)
