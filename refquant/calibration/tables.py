"""Calibration tables: onnxruntime's three files and TensorRT's native cache.

- ``calibration.json``: onnxruntime's TensorsData document, byte for byte;
- ``calibration.flatbuffers``: the TrtTable schema (``namespace CalTableFlatBuffers;
  table KeyValue { key:string (key); value:string; } table TrtTable { dict:[KeyValue]; }``),
  laid out as flatbuffers' Python Builder lays it out;
- ``calibration.cache``: one ``<name> <value>`` line per tensor, sorted;
- TensorRT's cache: a ``TRT-<version>-EntropyCalibration2`` line, then
  ``<name>: <float32 scale bits in hex>`` with scale = amax / 127.

The tables store one value per tensor, amax. onnxruntime (>= 1.20) writes
max(high, low) (``amax="onnxruntime"``, the default); TensorRT reads v as the
range [-v, v], so ``amax="abs"`` writes max(|low|, |high|). spec/tables.md.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..files import parse_json, read_regular
from .core import CalibrationError, TensorRange

__all__ = [
    "FORMATS",
    "write_tables",
    "read_table",
    "onnxruntime_json",
    "flatbuffers_table",
    "text_cache",
    "tensorrt_cache",
    "parse_flatbuffers_table",
    "parse_text_cache",
    "parse_tensorrt_cache",
    "parse_onnxruntime_json",
]

#: format name -> file name
FORMATS = {
    "json": "calibration.json",
    "flatbuffers": "calibration.flatbuffers",
    "cache": "calibration.cache",
    "trt": "calibration.trt.cache",
}
AMAX_RULES = ("onnxruntime", "abs")

_METHOD_LABELS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "distribution": "Distribution"}


# ----------------------------------------------------------------------------
# the value each table stores
# ----------------------------------------------------------------------------


def _scalar(value, name: str, what: str) -> float:
    array = np.asarray(value)
    if array.size != 1:
        raise CalibrationError(
            f"tensor '{name}' has {array.size} {what} values (per channel); tables hold one per tensor"
        )
    return float(array.item())


def amax(name: str, tensor_range: TensorRange, rule: str = "onnxruntime") -> float:
    """onnxruntime: max(high, low) as Python's max([high, low]); abs: max(|low|, |high|)."""
    if rule not in AMAX_RULES:
        raise CalibrationError(f"amax must be one of {AMAX_RULES}, got {rule!r}")
    high = _scalar(tensor_range.high, name, "high")
    low = _scalar(tensor_range.low, name, "low")
    if rule == "abs":
        return max(abs(high), abs(low))
    return max([high, low])


# ----------------------------------------------------------------------------
# calibration.json
# ----------------------------------------------------------------------------


def _ort_fields(tensor_range: TensorRange) -> dict:
    """The TensorData fields onnxruntime's compute_data produces for the range's method, in order."""
    r = tensor_range
    method = r.method or "minmax"
    if method == "entropy":
        return {"lowest": r.low, "highest": r.high, "hist": r.hist, "bins": r.edges}
    if method == "percentile":  # onnxruntime stores the first two counts here (*hist[:2])
        return {"lowest": r.low, "highest": r.high, "hist": r.hist[0], "bins": r.hist[1]}
    if method == "distribution":
        return {"avg": r.avg, "std": r.std, "hist": r.hist, "hist_edges": r.edges, "lowest": r.low, "highest": r.high}
    return {"lowest": r.low, "highest": r.high}


def _ort_encode(value):
    """onnxruntime's CalibrationCacheEncoder: arrays as tagged dicts, numpy scalars as numbers."""
    if isinstance(value, np.ndarray):
        return {"data": value.tolist(), "dtype": str(value.dtype), "CLS": "numpy.array"}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def onnxruntime_json(ranges: Mapping[str, TensorRange], method: str | None = None) -> str:
    """calibration.json as onnxruntime's write_calibration_table writes it (keys in ``ranges`` order)."""
    methods = {r.method for r in ranges.values()} if method is None else {method}
    if len(methods) > 1:
        raise CalibrationError(f"one table holds one method's ranges, got {sorted(map(str, methods))}")
    label = _METHOD_LABELS.get(next(iter(methods), None) or "minmax")
    if label is None:
        raise CalibrationError(f"unknown calibration method {method!r}")
    data = {}
    for name, tensor_range in ranges.items():
        fields = {key: _ort_encode(value) for key, value in _ort_fields(tensor_range).items()}
        data[name] = {**fields, "CLS": "TensorData"}
    document = {
        "CLS": "TensorsData",
        "data": data,
        "calibration_method": {"CLS": "CalibrationMethod", "value": f"CalibrationMethod.{label}"},
    }
    return json.dumps(document)


def parse_onnxruntime_json(text: str, source: str = "calibration.json") -> dict[str, TensorRange]:
    """Ranges from an onnxruntime calibration.json (its lowest/highest and histograms).

    Invalid or too deeply nested JSON, a document of any other shape, an unknown method, and a value
    that is not a finite number (a string, an object or string dtype, NaN, inf), lowest > highest or
    lowest and highest of different shapes raise CalibrationError naming ``source`` and the tensor.
    """
    document = parse_json(text, source, CalibrationError)
    method_of = {v: k for k, v in _METHOD_LABELS.items()}

    def decode(value, name, key):
        if isinstance(value, dict) and value.get("CLS") == "numpy.array":
            dtype = np.dtype(value["dtype"])
            if dtype.kind not in "iuf":
                raise CalibrationError(f"{source}: tensor '{name}' field '{key}' has dtype {dtype}, not a number type")
            try:
                return np.asarray(value["data"], dtype=dtype)
            except (ValueError, TypeError, OverflowError) as exc:
                raise CalibrationError(f"{source}: tensor '{name}' field '{key}' is not numeric data: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalibrationError(f"{source}: tensor '{name}' field '{key}' is {value!r}, not a number")
        if isinstance(value, float) or key in ("lowest", "highest", "avg", "std"):
            return np.float32(value)
        return value

    ranges = {}
    try:
        entries = document["data"]
        label = document.get("calibration_method", {}).get("value", "CalibrationMethod.MinMax")
        method = method_of.get(label.split(".")[-1]) if label.startswith("CalibrationMethod.") else None
        if method is None:
            raise CalibrationError(
                f"{source}: calibration_method {label!r} is not one of "
                f"{[f'CalibrationMethod.{v}' for v in _METHOD_LABELS.values()]}"
            )
        for name, entry in entries.items():
            fields = {key: decode(value, name, key) for key, value in entry.items() if key != "CLS"}
            if "lowest" not in fields or "highest" not in fields:
                raise CalibrationError(f"{source}: tensor '{name}' has no lowest/highest")
            _check_json_range(fields, name, source)
            histogram = fields.get("hist") if isinstance(fields.get("hist"), np.ndarray) else None
            edges = fields.get("bins", fields.get("hist_edges"))
            ranges[name] = TensorRange(
                low=fields["lowest"],
                high=fields["highest"],
                hist=histogram,
                edges=edges if isinstance(edges, np.ndarray) else None,
                avg=fields.get("avg"),
                std=fields.get("std"),
                method=method,
            )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CalibrationError(f"{source}: not an onnxruntime calibration.json: {type(exc).__name__}: {exc}") from None
    return ranges


def _check_json_range(fields: dict, name: str, source: str) -> None:
    """lowest and highest finite, of one shape, lowest <= highest; the other fields finite, counts >= 0."""
    for key, value in fields.items():
        array = np.asarray(value)
        if not np.isfinite(array.astype(np.float64)).all():
            raise CalibrationError(f"{source}: tensor '{name}' field '{key}' is not finite ({_shown(array)})")
        if key == "hist" and (array < 0).any():
            raise CalibrationError(f"{source}: tensor '{name}' field 'hist' has a negative count")
    low, high = np.asarray(fields["lowest"]), np.asarray(fields["highest"])
    if low.shape != high.shape:
        raise CalibrationError(
            f"{source}: tensor '{name}' has lowest of shape {low.shape} and highest of shape {high.shape}"
        )
    if (low > high).any():
        raise CalibrationError(
            f"{source}: tensor '{name}' has lowest > highest ({_shown(low)} > {_shown(high)}); that is no range"
        )


def _shown(array: np.ndarray) -> str:
    return str(array.item()) if array.size == 1 else np.array2string(array.ravel()[:8], threshold=8)


# ----------------------------------------------------------------------------
# calibration.flatbuffers: a tiny back-to-front builder for the TrtTable schema
# ----------------------------------------------------------------------------


class _Builder:
    """The flatbuffers Python Builder's layout rules, for strings, tables of offsets and offset vectors.

    The buffer grows towards the front; positions are offsets from its end.
    Each scalar is aligned to its size, relative to the end; ``minalign`` is
    the largest alignment used, applied to the root offset.
    """

    def __init__(self):
        self.bytes = bytearray(1024)
        self.head = len(self.bytes)
        self.minalign = 1
        self.vtable: list[int] = []
        self.object_end = 0
        self.vtables: dict[tuple, int] = {}

    def offset(self) -> int:
        return len(self.bytes) - self.head

    def prep(self, size: int, additional: int) -> None:
        self.minalign = max(self.minalign, size)
        padding = -(self.offset() + additional) % size
        while self.head < padding + size + additional:
            old = len(self.bytes)
            self.bytes[:0] = bytes(old)
            self.head += old
        self.head -= padding
        self.bytes[self.head : self.head + padding] = bytes(padding)

    def place(self, fmt: str, value: int) -> None:
        self.head -= struct.calcsize(fmt)
        struct.pack_into("<" + fmt, self.bytes, self.head, value)

    def prepend(self, fmt: str, value: int) -> None:
        self.prep(struct.calcsize(fmt), 0)
        self.place(fmt, value)

    def prepend_offset(self, target: int) -> None:
        """A uoffset pointing at ``target`` (an offset returned earlier)."""
        self.prep(4, 0)
        self.place("I", self.offset() - target + 4)

    def string(self, text: str) -> int:
        data = text.encode("utf-8")
        self.prep(4, len(data) + 1)
        self.place("B", 0)
        self.head -= len(data)
        self.bytes[self.head : self.head + len(data)] = data
        self.place("I", len(data))
        return self.offset()

    def start_table(self, fields: int) -> None:
        self.vtable = [0] * fields
        self.object_end = self.offset()

    def add_offset_field(self, slot: int, target: int) -> None:
        self.prepend_offset(target)
        self.vtable[slot] = self.offset()

    def end_table(self) -> int:
        """Write the object's vtable offset and its vtable, reusing an identical vtable."""
        self.prepend("i", 0)
        object_offset = self.offset()
        fields = [object_offset - at if at else 0 for at in self.vtable]
        while fields and fields[-1] == 0:
            fields.pop()
        object_size = object_offset - self.object_end
        key = (*reversed(fields), object_size)
        existing = self.vtables.get(key)
        if existing is None:
            for field in reversed(fields):
                self.prepend("H", field)
            self.prepend("H", object_size)
            self.prepend("H", (len(fields) + 2) * 2)
            struct.pack_into("<i", self.bytes, len(self.bytes) - object_offset, self.offset() - object_offset)
            self.vtables[key] = self.offset()
        else:
            self.head = len(self.bytes) - object_offset
            struct.pack_into("<i", self.bytes, self.head, existing - object_offset)
        return object_offset

    def offset_vector(self, targets: list[int]) -> int:
        """A vector of uoffsets; the last target is prepended first."""
        self.prep(4, 4 * len(targets))
        for target in reversed(targets):
            self.prepend_offset(target)
        self.place("I", len(targets))
        return self.offset()

    def finish(self, root: int) -> bytes:
        self.prep(self.minalign, 4)
        self.prepend_offset(root)
        return bytes(self.bytes[self.head :])


def flatbuffers_table(values: Mapping[str, str]) -> bytes:
    """A TrtTable of {key: value} strings, as onnxruntime builds it (keys sorted)."""
    builder = _Builder()
    entries = []
    for key in sorted(values):
        key_at, value_at = builder.string(key), builder.string(values[key])
        builder.start_table(2)
        builder.add_offset_field(0, key_at)
        builder.add_offset_field(1, value_at)
        entries.append(builder.end_table())
    # onnxruntime prepends the entries in sorted order, so the vector holds them in reverse
    vector = builder.offset_vector(entries[::-1])
    builder.start_table(1)
    builder.add_offset_field(0, vector)
    return builder.finish(builder.end_table())


def parse_flatbuffers_table(data: bytes, source: str = "calibration.flatbuffers") -> dict[str, str]:
    """{key: value} of a TrtTable buffer, its structure verified rather than trusted.

    Like flatbuffers' verifier: every offset lands inside the buffer and is aligned (tables, vectors and
    strings to 4 bytes, vtables to 2); a vtable is at least 4 bytes, even, inside the buffer, and each of
    its fields lies inside its table; a vector's elements and a string's bytes and NUL terminator lie
    inside the buffer; strings are UTF-8. Besides: every entry has a key, and no key appears twice.
    Anything else is a CalibrationError naming ``source``.
    """
    size = len(data)

    class Corrupt(Exception):
        pass

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise Corrupt(what)

    def u32(at: int, what: str) -> int:
        need(0 <= at and at + 4 <= size, f"{what} at byte {at} lies outside the {size}-byte buffer")
        return struct.unpack_from("<I", data, at)[0]

    def target(at: int, what: str) -> int:
        """The position a uoffset at ``at`` points to: inside the buffer, 4-aligned."""
        to = at + u32(at, what)
        need(to + 4 <= size, f"{what} at byte {at} points outside the buffer")
        need(to % 4 == 0, f"{what} at byte {at} points to unaligned byte {to}")
        return to

    def table(at: int, what: str) -> list[int | None]:
        """The positions of a table's fields (None: absent)."""
        vtable = at - struct.unpack_from("<i", data, at)[0]
        need(vtable % 2 == 0 and 0 <= vtable and vtable + 4 <= size, f"{what}'s vtable lies outside the buffer")
        vsize, osize = struct.unpack_from("<HH", data, vtable)
        need(vsize >= 4 and vsize % 2 == 0 and vtable + vsize <= size, f"{what}'s vtable has an invalid size {vsize}")
        need(osize >= 4 and at + osize <= size, f"{what} has an invalid size {osize}")
        fields = []
        for entry in range(4, vsize, 2):
            offset = struct.unpack_from("<H", data, vtable + entry)[0]
            need(offset == 0 or 4 <= offset <= osize - 4, f"{what} has a field outside it (offset {offset})")
            fields.append(at + offset if offset else None)
        return fields

    def string(field: int, what: str) -> str:
        start = target(field, what)
        length = u32(start, what)
        end = start + 4 + length
        need(end < size and data[end] == 0, f"{what} runs past the buffer or lacks its NUL terminator")
        return bytes(data[start + 4 : end]).decode("utf-8")

    try:
        need(size >= 8, f"{size} bytes are too few for a TrtTable")
        root = target(0, "the root offset")
        root_fields = table(root, "the TrtTable")
        if not root_fields or root_fields[0] is None:
            return {}
        vector = target(root_fields[0], "the entries vector")
        count = u32(vector, "the entries vector")
        need(vector + 4 + 4 * count <= size, f"the entries vector's {count} entries run past the buffer")
        result = {}
        for index in range(count):
            what = f"entry {index}"
            fields = table(target(vector + 4 + 4 * index, what), what) + [None, None]
            need(fields[0] is not None, f"{what} has no key")
            key = string(fields[0], f"{what}'s key")
            need(key not in result, f"key {key!r} appears twice")
            result[key] = string(fields[1], f"{what}'s value") if fields[1] is not None else ""
        return result
    except Corrupt as exc:
        raise CalibrationError(f"{source} is not a valid calibration.flatbuffers (TrtTable) buffer: {exc}") from None
    except (struct.error, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{source} is not a valid calibration.flatbuffers (TrtTable) buffer: {exc}") from None


# ----------------------------------------------------------------------------
# calibration.cache and TensorRT's cache
# ----------------------------------------------------------------------------


def text_cache(values: Mapping[str, str]) -> str:
    """'<key> <value>' lines, keys sorted."""
    return "".join(f"{key} {values[key]}\n" for key in sorted(values))


def parse_text_cache(text: str, source: str = "calibration.cache") -> dict[str, str]:
    table = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.rpartition(" ")
        if not sep or not key:
            raise CalibrationError(f"{source} line {number} is not '<name> <value>': {line!r}")
        if key in table:
            raise CalibrationError(f"{source} line {number}: tensor '{key}' appears twice")
        table[key] = value
    return table


def _float32_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def tensorrt_cache(amaxes: Mapping[str, float], header: str = "TRT-8601-EntropyCalibration2") -> str:
    """TensorRT's calibration cache: scale = float32(amax) / 127 in float32, as 8 hex digits."""
    lines = [header]
    for name, value in amaxes.items():
        scale = np.float32(value) / np.float32(127)
        lines.append(f"{name}: {_float32_bits(float(scale)):08x}")
    return "\n".join(lines) + "\n"


def parse_tensorrt_cache(text: str, source: str = "TensorRT cache") -> tuple[str, dict[str, np.float32]]:
    """(header, {name: scale}); the range of a tensor is +-scale * 127."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise CalibrationError(
            f"{source}: not a TensorRT calibration cache (the first line must be 'TRT-<version>-<calibrator>')"
        )
    scales = {}
    for number, line in enumerate(lines[1:], 2):
        name, sep, bits = line.rpartition(": ")
        try:
            scale = np.frombuffer(struct.pack("<I", int(bits, 16)), dtype=np.float32)[0]
        except (ValueError, struct.error):
            raise CalibrationError(f"{source} line {number} is not '<name>: <hex float32>': {line!r}") from None
        if not sep:
            raise CalibrationError(f"{source} line {number} is not '<name>: <hex float32>': {line!r}")
        if name in scales:
            raise CalibrationError(f"{source} line {number}: tensor '{name}' appears twice")
        scales[name] = scale
    return lines[0], scales


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------


def write_tables(
    ranges: Mapping[str, TensorRange],
    directory: str | os.PathLike,
    formats=("json", "flatbuffers", "cache"),
    *,
    amax_rule: str = "onnxruntime",
    tensorrt_header: str = "TRT-8601-EntropyCalibration2",
) -> list[Path]:
    """Write the tables named in ``formats`` (keys of :data:`FORMATS`) into ``directory``.

    ``amax_rule`` chooses the value of the flatbuffers, cache and TensorRT
    tables: "onnxruntime" (max(high, low), byte-identical to onnxruntime) or
    "abs" (max(|low|, |high|), the symmetric range TensorRT applies).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise CalibrationError(f"unknown table format(s) {unknown}; use {sorted(FORMATS)}")
    for name, tensor_range in ranges.items():
        for key in ("low", "high", "avg", "std", "edges"):
            value = getattr(tensor_range, key)
            if value is not None and not np.isfinite(np.asarray(value, dtype=np.float64)).all():
                raise CalibrationError(
                    f"tensor '{name}' has a non-finite {key} ({_shown(np.asarray(value))}); a calibration table "
                    "holds finite values only (refquant writes no inf or nan)"
                )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    values = {name: amax(name, r, amax_rule) for name, r in ranges.items()} if set(formats) - {"json"} else {}
    texts = {name: str(value) for name, value in values.items()}
    written = []
    for fmt in formats:
        path = directory / FORMATS[fmt]
        if fmt == "json":
            path.write_text(onnxruntime_json(ranges))
        elif fmt == "flatbuffers":
            path.write_bytes(flatbuffers_table(texts))
        elif fmt == "cache":
            path.write_text(text_cache(texts))
        else:
            path.write_text(tensorrt_cache(values, tensorrt_header))
        written.append(path)
    return written


#: TensorRT's cache header, "TRT-<version>-<calibrator>": one word, where an onnxruntime text cache line is
#: "<name> <value>" (a tensor may be called "TRT-...")
_TENSORRT_HEADER = re.compile(r"TRT-\d+-\S+")


def read_table(path: str | os.PathLike) -> dict[str, TensorRange]:
    """Ranges from any table file; the one-value tables give [-v, v] (TensorRT's reading).

    The file is read under refquant's file rule (a regular file: refquant.files); text tables are UTF-8.
    A value that is not a finite float32 number >= 0 (the range [-v, v]) is refused, naming the file and
    the tensor (spec/tables.md "Reading tables").
    """
    path = Path(path)
    source = f"'{path}'"
    data = read_regular(path, "calibration table", CalibrationError)
    if path.suffix == ".flatbuffers":
        return _symmetric(parse_flatbuffers_table(data, source), source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CalibrationError(
            f"calibration table '{path}' is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    if path.suffix == ".json":
        return parse_onnxruntime_json(text, source)
    if _TENSORRT_HEADER.fullmatch(text.split("\n", 1)[0].rstrip("\r")):
        _, scales = parse_tensorrt_cache(text, source)
        with np.errstate(over="ignore", invalid="ignore"):
            return _symmetric({name: scale * np.float32(127) for name, scale in scales.items()}, source)
    return _symmetric(parse_text_cache(text, source), source)


def _symmetric(values: Mapping[str, object], source: str) -> dict[str, TensorRange]:
    """[-v, v] for each one-value entry; v must be a finite float32 number >= 0."""
    ranges = {}
    for name, value in values.items():
        shown = repr(value) if isinstance(value, str) else str(float(value))
        try:
            number = float(value)
        except (ValueError, TypeError, OverflowError):
            raise CalibrationError(f"{source}: tensor '{name}' has the value {shown}, which is not a number") from None
        with np.errstate(over="ignore"):
            v = np.float32(number)
        if not np.isfinite(v):
            raise CalibrationError(
                f"{source}: tensor '{name}' has the value {shown}, which is not a finite float32 number"
            )
        if v < 0:
            raise CalibrationError(
                f"{source}: tensor '{name}' has the value {shown} < 0; the table's value v is the range "
                "[-v, v], so a negative v would make low > high"
            )
        ranges[name] = TensorRange(low=np.float32(-v), high=v)
    return ranges
