"""ImageDecoder (refquant/ops/image_decoder.py, spec/ops/image_decoder.md): the ONNX node cases, Pillow (the
decoder of onnx.reference and of the node cases' generator) on images of every decoded mode, streams written
by hand, and the refusals."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from onnx import TensorProto as T
from PIL import Image

import refquant
from refquant.errors import AttributeValueError, DTypeError, UnsupportedOpError

from ..helpers import node_cases, single_node_model, to_array
from .helpers import assert_same_bits

CASES = {c.name: c for c in node_cases(r"^test_image_decoder")}
DECODED = ["test_image_decoder_decode_png_rgb", "test_image_decoder_decode_bmp_rgb",
           "test_image_decoder_decode_tiff_rgb", "test_image_decoder_decode_pnm_rgb"]
REFUSED = {
    "test_image_decoder_decode_jpeg_rgb": "JPEG", "test_image_decoder_decode_jpeg_grayscale": "JPEG",
    "test_image_decoder_decode_jpeg_bgr": "JPEG", "test_image_decoder_decode_jpeg2k_rgb": "JPEG 2000",
    "test_image_decoder_decode_webp_rgb": "WebP",
}


def _decode(stream: bytes, pixel_format="RGB"):
    x = np.frombuffer(stream, np.uint8)
    model = single_node_model("ImageDecoder", {"x": x}, {"y": T.UINT8}, opset=20, attrs={"pixel_format": pixel_format})
    (y,) = refquant.Session(model).run(None, {"x": x})
    return y


def _run_case(case):
    (inputs, expected), = case.data_sets
    feeds = {spec.name: to_array(v) for spec, v in zip(case.model.graph.input, inputs)}
    return refquant.Session(case.model).run(None, feeds)[0], to_array(expected[0])


def test_every_node_case_is_listed():
    assert sorted(CASES) == sorted(DECODED + list(REFUSED))


@pytest.mark.parametrize("name", DECODED)
def test_lossless_node_cases_bit_for_bit(name):
    got, want = _run_case(CASES[name])
    assert_same_bits(got, want, name)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_other_node_cases_are_refused_naming_the_node(name):
    with pytest.raises(UnsupportedOpError, match=f"ImageDecoder '#0': refquant does not decode a {REFUSED[name]} stream"):
        _run_case(CASES[name])


def _noise(mode, shape, seed=0):
    rng = np.random.default_rng(seed)
    if mode == "1":
        return rng.integers(0, 2, shape[:2]).astype(bool)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1}[mode]
    values = rng.integers(0, 256, (*shape[:2], channels), dtype=np.uint8)
    # smooth runs too, so that PNG's adaptive filtering uses more than one filter type
    values[: shape[0] // 2] = np.cumsum(values[: shape[0] // 2] % 7, axis=1, dtype=np.uint8)
    return values[..., 0] if channels == 1 else values


@pytest.mark.parametrize("fmt, mode", [
    ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "1"),
    ("BMP", "RGB"), ("BMP", "L"), ("BMP", "P"), ("BMP", "1"),
    ("PPM", "RGB"), ("PPM", "L"), ("PPM", "1"),
    ("TIFF", "RGB"), ("TIFF", "L"), ("TIFF", "RGBA"),
])
def test_pillow_agrees_on_every_decoded_mode(fmt, mode):
    image = Image.fromarray(_noise(mode, (13, 21)))
    if mode == "P":
        image = image.convert("P")  # a palette of Pillow's web colours
    if mode != "P" and mode != image.mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    stream = buffer.getvalue()
    decoded = Image.open(io.BytesIO(stream))
    rgb = np.asarray(decoded.convert("RGB"))
    assert_same_bits(_decode(stream), rgb, f"{fmt} {mode} RGB")
    assert_same_bits(_decode(stream, "BGR"), np.ascontiguousarray(rgb[:, :, ::-1]), f"{fmt} {mode} BGR")
    grey = np.asarray(decoded.convert("L"))[:, :, None] if decoded.mode in ("L", "LA", "1") else \
        np.asarray(decoded.convert("RGB").convert("L"))[:, :, None]
    assert_same_bits(_decode(stream, "Grayscale"), grey, f"{fmt} {mode} Grayscale")


def _png(width, height, color, depth, rows, filters, palette=None):
    """A PNG written here: each row filtered forward with its filter type (0 to 4)."""
    bpp = max(1, {0: 1, 2: 3, 3: 1}[color] * depth // 8)
    raw, prior = b"", bytes(len(rows[0]))
    for row, kind in zip(rows, filters):
        out = []
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prior[i], (prior[i - bpp] if i >= bpp else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c) else c)
            out.append((x - [0, a, b, (a + b) // 2, paeth][kind]) % 256)
        raw += bytes([kind]) + bytes(out)
        prior = row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    plte = chunk(b"PLTE", palette) if palette else b""
    return b"\x89PNG\r\n\x1a\n" + head + plte + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_png_filters_and_bit_depths_by_hand():
    rows = [bytes([10, 20, 30, 200, 100, 50]), bytes([255, 0, 1, 2, 3, 4]), bytes([7, 7, 7, 9, 9, 9]),
            bytes([0, 128, 255, 128, 0, 1]), bytes([1, 2, 3, 4, 5, 6])]
    want = np.array([list(r) for r in rows], np.uint8).reshape(5, 2, 3)
    y = _decode(_png(2, 5, 2, 8, rows, [0, 1, 2, 3, 4]))
    assert_same_bits(y, want)
    # 2-bit grey: samples 0, 1, 2, 3 are 0, 85, 170, 255; a row of 3 pixels packs into one byte 0b00011011 -> 0, 1, 2
    y = _decode(_png(3, 1, 0, 2, [bytes([0b00011000])], [0]))
    assert y.tolist() == [[[0, 0, 0], [85, 85, 85], [170, 170, 170]]]
    # 1-bit palette
    y = _decode(_png(3, 1, 3, 1, [bytes([0b10100000])], [0], palette=bytes([1, 2, 3, 40, 50, 60])))
    assert y.tolist() == [[[40, 50, 60], [1, 2, 3], [40, 50, 60]]]


def test_broken_streams_give_an_empty_image_with_a_warning():
    good = _png(2, 5, 2, 8, [bytes(6)] * 5, [0] * 5)
    broken = good[:40] + bytes([good[40] ^ 1]) + good[41:]  # a CRC that fails
    for stream, fmt, channels in ((broken, "RGB", 3), (b"not an image", "Grayscale", 1), (good[:-30], "BGR", 3)):
        with pytest.warns(refquant.errors.RefquantWarning, match="ImageDecoder '#0': cannot decode the stream"):
            y = _decode(stream, fmt)
        assert y.shape == (0, 0, channels) and y.dtype == np.uint8


def test_image_decoder_refusals_name_the_node():
    interlaced = bytearray(_png(1, 1, 0, 8, [bytes([5])], [0]))
    interlaced[28] = 1  # IHDR's interlace byte; its CRC recomputed
    interlaced[29:33] = struct.pack(">I", zlib.crc32(bytes(interlaced[12:29])))
    with pytest.raises(UnsupportedOpError, match=r"ImageDecoder '#0': refquant does not decode an interlaced \(Adam7\) PNG"):
        _decode(bytes(interlaced))
    with pytest.raises(AttributeValueError, match="ImageDecoder '#0': pixel_format must be one of RGB, BGR, Grayscale"):
        _decode(b"P5 1 1 255 \x00", "RGBA")
    x = np.zeros(4, np.int8)
    model = single_node_model("ImageDecoder", {"x": x}, {"y": T.UINT8}, opset=20)
    with pytest.raises(DTypeError, match="ImageDecoder '#0': encoded_stream has type int8"):
        refquant.Session(model).run(None, {"x": x})


def test_image_decoder_version():
    from .helpers import assert_versions_are_the_schema_versions_from_opset_10

    assert_versions_are_the_schema_versions_from_opset_10("ImageDecoder")


def test_a_png_declaring_a_huge_image_is_refused_before_inflating():
    from refquant.errors import ResourceLimitError

    bomb = bytearray(_png(1, 1, 0, 8, [bytes([5])], [0]))
    bomb[16:24] = struct.pack(">II", 10**5, 10**5)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    with pytest.raises(ResourceLimitError, match=r"ImageDecoder '#0': image of shape \[10000000000, 4\]"):
        _decode(bytes(bomb))


@pytest.mark.parametrize("name", DECODED)
def test_the_estimate_bounds_the_decoded_image(name):
    from refquant import budget

    case = CASES[name]
    (inputs, _), = case.data_sets
    x = to_array(inputs[0])
    got, _ = _run_case(case)
    session = refquant.Session(case.model)
    found = budget.estimate(session._plan[0], [x])
    assert found.allocations[0].elements >= got.size
