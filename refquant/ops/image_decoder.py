"""ImageDecoder (spec/ops/image_decoder.md): the lossless formats decoded with numpy and the standard library's
zlib, whose pixels their format fixes bit for bit: PNG (8-bit and palette/grey of 1, 2, 4 bits, not
interlaced), BMP (uncompressed, 1, 4, 8, 24 or 32 bits per pixel), PNM (P1 to P6, maxval 255) and TIFF
(uncompressed, 8 bits per sample, grey or RGB). JPEG (lossy: its pixels depend on the decoder), JPEG 2000 and
WebP need an image library refquant cannot import: refused (UnsupportedOpError naming the node).

Output: [height, width, 3] RGB or BGR, or [height, width, 1] for pixel_format "Grayscale"; alpha is dropped (not
composited); grey images are replicated to three channels; colour to grey is ITU-R BT.601 luma in Pillow's
16-bit fixed point, (19595 R + 38470 G + 7471 B + 32768) >> 16. A stream of a decodable format that is
corrupt or truncated gives an empty [0, 0, channels] image, as ONNX says, with a warning.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from onnx import TensorProto as T

from ..checks import require_dtype
from ..errors import AttributeValueError, ShapeError, UnsupportedOpError
from ..node import Node
from ..registry import register

__all__ = ["image_decoder", "decode_image", "image_format", "declared_pixels", "PIXEL_FORMATS"]

PIXEL_FORMATS = ("RGB", "BGR", "Grayscale")


class _Corrupt(Exception):
    """The stream is of a format refquant decodes, but broken: ONNX's empty image."""


class _Refused(Exception):
    """A valid stream refquant does not decode (a lossy format, or a variant of a lossless one)."""


def image_format(data: bytes) -> str | None:
    """The format the stream's signature names, or None."""
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
        (b"\xff\xd8", "JPEG"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    )
    for signature, name in signatures:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if len(data) >= 2 and data[0:1] == b"P" and data[1:2] in b"123456":
        return "PNM"
    return None


def declared_pixels(data: bytes) -> int:
    """A bound on the pixels the stream decodes to, before decoding: a PNG's IHDR width times height; the other
    formats store their pixels uncompressed, so at most one per byte of the stream."""
    if image_format(data) == "PNG" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width * height
    return len(data)


# -- PNG ---------------------------------------------------------------------------------------------------


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """The PNG scanlines without their filters: [height, stride] uint8 (PNG spec, section 9)."""
    if len(raw) < height * (stride + 1):
        raise _Corrupt(f"the image data holds {len(raw)} bytes, {height} rows need {height * (stride + 1)}")
    rows = np.frombuffer(raw[:height * (stride + 1)], np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int64)
    prior = np.zeros(stride, np.int64)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: running sums, one per byte of a pixel
            padded = np.concatenate([line, np.zeros((-stride) % bpp, np.int64)]).reshape(-1, bpp)
            cur = (np.cumsum(padded, axis=0) % 256).reshape(-1)[:stride]
        elif kind == 2:
            cur = (line + prior) % 256
        elif kind in (3, 4):
            cur = line.copy()
            for i in range(stride):
                a = int(cur[i - bpp]) if i >= bpp else 0
                b, c = int(prior[i]), (int(prior[i - bpp]) if i >= bpp else 0)
                cur[i] = (cur[i] + ((a + b) // 2 if kind == 3 else _paeth(a, b, c))) % 256
        else:
            raise _Corrupt(f"row {y} has filter type {kind} (PNG defines 0 to 4)")
        out[y] = prior = cur
    return out.astype(np.uint8)


def _png(data: bytes) -> tuple[np.ndarray, bool]:
    """(pixels [h, w, 1 or 3 (4 with alpha: dropped later)], is grey)."""
    pos, header, palette, idat = 8, None, None, []
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body, crc = data[pos + 8:pos + 8 + length], data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4 or zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise _Corrupt(f"chunk {kind!r} at byte {pos} is truncated or fails its CRC")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise _Corrupt("no IHDR or no IDAT chunk")
    width, height, depth, color, compression, filtering, interlace = header
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if channels is None or compression or filtering or interlace > 1:
        raise _Corrupt(f"IHDR names colour type {color}, compression {compression}, filter {filtering}, interlace {interlace}")
    if interlace:
        raise _Refused("an interlaced (Adam7) PNG")
    if depth != 8 and not (color in (0, 3) and depth in (1, 2, 4)):
        raise _Refused(f"a PNG of bit depth {depth} with colour type {color} (refquant decodes 8-bit samples)")
    stride = (width * channels * depth + 7) // 8
    try:  # inflated no further than the rows need: a small stream cannot grow past the image it declares
        raw = zlib.decompressobj().decompress(b"".join(idat), height * (stride + 1))
    except zlib.error as exc:
        raise _Corrupt(f"the image data does not inflate: {exc}") from None
    rows = _unfilter(raw, height, stride, max(1, channels * depth // 8))
    if depth < 8:
        per_byte = 8 // depth
        shifts = np.arange(8 - depth, -1, -depth)
        values = (rows[:, :, None] >> shifts) & ((1 << depth) - 1)
        samples = values.reshape(height, stride * per_byte)[:, :width]
        if color == 0:
            samples = samples * (255 // ((1 << depth) - 1))  # PNG's grey levels scaled to 8 bits
        pixels = samples.astype(np.uint8)[:, :, None]
    else:
        pixels = rows.reshape(height, width, channels)
    if color == 3:
        if palette is None or int(pixels.max(initial=0)) >= len(palette):
            raise _Corrupt("a palette index outside the PLTE chunk")
        return palette[pixels[:, :, 0]], False
    return pixels, color in (0, 4)


# -- BMP ---------------------------------------------------------------------------------------------------


def _bmp(data: bytes) -> tuple[np.ndarray, bool]:
    if len(data) < 54:
        raise _Corrupt("shorter than the BMP headers")
    offset, dib = struct.unpack("<I", data[10:14])[0], struct.unpack("<I", data[14:18])[0]
    if dib < 40:
        raise _Refused(f"a BMP with a {dib}-byte (OS/2) header")
    width, height, _, bits, compression = struct.unpack("<iiHHI", data[18:34])
    colours = struct.unpack("<I", data[46:50])[0]
    if compression not in (0, 3) or (compression == 3 and bits != 32):
        raise _Refused(f"a compressed BMP (compression {compression})")
    if bits not in (1, 4, 8, 24, 32) or width <= 0 or height == 0:
        raise _Corrupt(f"{bits} bits per pixel, width {width}, height {height}")
    rows, top_down = abs(height), height < 0
    stride = (width * bits + 31) // 32 * 4
    if len(data) < offset + rows * stride:
        raise _Corrupt(f"the pixel data is truncated ({len(data) - offset} bytes, {rows * stride} needed)")
    lines = np.frombuffer(data, np.uint8, rows * stride, offset).reshape(rows, stride)
    if not top_down:
        lines = lines[::-1]
    if bits >= 24:
        if compression == 3:
            masks = struct.unpack("<III", data[54:66])
            if masks != (0xFF0000, 0xFF00, 0xFF):
                raise _Refused(f"a 32-bit BMP with colour masks {[hex(m) for m in masks]}")
        pixels = lines[:, :width * bits // 8].reshape(rows, width, bits // 8)[:, :, 2::-1]  # BGR(A) -> RGB
        return np.ascontiguousarray(pixels), False
    count = colours or 1 << bits
    table = np.frombuffer(data, np.uint8, 4 * count, 14 + dib).reshape(count, 4)[:, 2::-1]
    shifts = np.arange(8 - bits, -1, -bits)
    index = ((lines[:, :, None] >> shifts) & ((1 << bits) - 1)).reshape(rows, -1)[:, :width]
    if int(index.max(initial=0)) >= count:
        raise _Corrupt("a colour index outside the colour table")
    return table[index], False


# -- PNM ---------------------------------------------------------------------------------------------------


def _pnm(data: bytes) -> tuple[np.ndarray, bool]:
    kind = data[1] - ord("0")
    fields, pos = [], 2
    wanted = 2 if kind in (1, 4) else 3
    while len(fields) < wanted:
        while pos < len(data) and (data[pos:pos + 1].isspace() or data[pos:pos + 1] == b"#"):
            if data[pos:pos + 1] == b"#":
                while pos < len(data) and data[pos:pos + 1] not in b"\r\n":
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise _Corrupt("the header is not width, height (and maxval) in decimal")
        fields.append(int(data[start:pos]))
    width, height = fields[:2]
    maxval = fields[2] if wanted == 3 else 1
    if maxval != 255 and kind not in (1, 4):
        raise _Refused(f"a PNM of maxval {maxval} (refquant decodes maxval 255)")
    channels = 3 if kind in (3, 6) else 1
    count = width * height * channels
    if kind in (1, 2, 3):  # plain: decimal samples ("0"/"1" may touch in P1)
        body = data[pos:]
        text = body.replace(b"0", b" 0 ").replace(b"1", b" 1 ") if kind == 1 else body
        tokens = [t for t in text.split() if not t.startswith(b"#")]
        if len(tokens) < count or not all(t.isdigit() for t in tokens[:count]):
            raise _Corrupt(f"the plain samples are fewer than {count} decimal numbers")
        samples = np.array([int(t) for t in tokens[:count]], np.int64)
        if samples.max(initial=0) > maxval:
            raise _Corrupt(f"a sample above maxval {maxval}")
    else:
        pos += 1  # the single whitespace after the header
        if kind == 4:
            stride = (width + 7) // 8
            if len(data) < pos + stride * height:
                raise _Corrupt("the bitmap is truncated")
            bits = np.unpackbits(np.frombuffer(data, np.uint8, stride * height, pos).reshape(height, stride), axis=1)
            samples = bits[:, :width].reshape(-1).astype(np.int64)
        else:
            if len(data) < pos + count:
                raise _Corrupt(f"the raster is truncated ({len(data) - pos} bytes, {count} needed)")
            samples = np.frombuffer(data, np.uint8, count, pos).astype(np.int64)
    if kind in (1, 4):
        samples = (1 - samples) * 255  # a bitmap's 1 is black
    return samples.astype(np.uint8).reshape(height, width, channels), channels == 1


# -- TIFF --------------------------------------------------------------------------------------------------


def _tiff(data: bytes) -> tuple[np.ndarray, bool]:
    order = "<" if data[:2] == b"II" else ">"
    sizes = {1: 1, 3: 2, 4: 4}  # BYTE, SHORT, LONG

    def values(entry):
        tag, kind, count, field = struct.unpack(order + "HHI4s", entry)
        if kind not in sizes:
            return tag, None
        size = sizes[kind] * count
        raw = field[:size] if size <= 4 else data[struct.unpack(order + "I", field)[0]:][:size]
        if len(raw) < size:
            raise _Corrupt(f"tag {tag} points past the end of the stream")
        return tag, list(struct.unpack(order + {1: "B", 3: "H", 4: "I"}[kind] * count, raw))

    try:
        ifd = struct.unpack(order + "I", data[4:8])[0]
        (entries,) = struct.unpack(order + "H", data[ifd:ifd + 2])
        tags = dict(values(data[ifd + 2 + 12 * i:ifd + 14 + 12 * i]) for i in range(entries))
    except struct.error:
        raise _Corrupt("the image file directory is truncated") from None
    try:
        width, height = tags[256][0], tags[257][0]
        offsets, counts = tags[273], tags[279]
    except (KeyError, TypeError):
        raise _Corrupt("the directory lacks the width, height or strips") from None
    samples = (tags.get(277) or [1])[0]
    bits = tags.get(258) or [1]
    compression, photometric = (tags.get(259) or [1])[0], (tags.get(262) or [None])[0]
    planar = (tags.get(284) or [1])[0]
    if compression != 1:
        raise _Refused(f"a compressed TIFF (compression {compression})")
    if any(b != 8 for b in bits) or planar != 1 or photometric not in (0, 1, 2) or samples not in (1, 2, 3, 4):
        raise _Refused(f"a TIFF of {bits} bits per sample, photometric {photometric}, planar {planar}")
    raster = b"".join(data[o:o + c] for o, c in zip(offsets, counts))
    count = width * height * samples
    if len(raster) < count:
        raise _Corrupt(f"the strips hold {len(raster)} bytes, {count} needed")
    pixels = np.frombuffer(raster, np.uint8, count).reshape(height, width, samples)
    if photometric == 0:
        pixels = 255 - pixels  # WhiteIsZero
    return pixels, photometric in (0, 1)


_DECODERS = {"PNG": _png, "BMP": _bmp, "PNM": _pnm, "TIFF": _tiff}
_NOT_DECODED = {
    "JPEG": "lossy: its pixels depend on the decoder's inverse DCT, which ONNX does not fix",
    "JPEG 2000": "its wavelet codec is an image library's work",
    "WebP": "its VP8 codec is an image library's work",
}


def decode_image(data: bytes, pixel_format: str) -> np.ndarray:
    """The pixels of an encoded image (module docstring); _Refused / _Corrupt for what it cannot decode."""
    name = image_format(data)
    if name is None:
        raise _Corrupt("the stream starts with no image signature refquant knows")
    if name not in _DECODERS:
        raise _Refused(f"a {name} stream ({_NOT_DECODED[name]})")
    try:
        pixels, grey = _DECODERS[name](data)
    except (struct.error, ValueError, IndexError) as exc:
        raise _Corrupt(f"the {name} stream is malformed ({exc})") from None
    colour = pixels[:, :, :1] if grey else pixels[:, :, :3]  # alpha dropped
    if pixel_format == "Grayscale":
        if grey:
            return np.ascontiguousarray(colour)
        c = colour.astype(np.int64)
        return ((19595 * c[..., 0] + 38470 * c[..., 1] + 7471 * c[..., 2] + 32768) >> 16).astype(np.uint8)[..., None]
    rgb = np.repeat(colour, 3, axis=2) if grey else colour
    return np.ascontiguousarray(rgb[:, :, ::-1] if pixel_format == "BGR" else rgb)


@register("ImageDecoder", since=(20,))
def image_decoder(node: Node, encoded_stream):
    """The decoded image (module docstring, spec/ops/image_decoder.md)."""
    require_dtype(encoded_stream, (T.UINT8,), "encoded_stream")
    if encoded_stream.ndim != 1:
        raise ShapeError(f"encoded_stream must be 1-D, got shape {list(encoded_stream.shape)}")
    pixel_format = node.attr("pixel_format", "RGB", str)
    if pixel_format not in PIXEL_FORMATS:
        raise AttributeValueError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, got {pixel_format!r}")
    try:
        return (decode_image(encoded_stream.tobytes(), pixel_format),)
    except _Refused as exc:
        raise UnsupportedOpError(
            f"ImageDecoder '{node.name}': refquant does not decode {exc}: it imports numpy, onnx and ml_dtypes "
            "only and decodes the lossless formats PNG, BMP, PNM and TIFF; decode the image before the model and "
            "feed the pixels (spec/ops/image_decoder.md)"
        ) from None
    except _Corrupt as exc:
        node.warn(f"cannot decode the stream ({exc}): an empty image, as ONNX says")
        return (np.zeros((0, 0, 1 if pixel_format == "Grayscale" else 3), np.uint8),)
