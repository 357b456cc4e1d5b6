"""Calibration tables: byte-identical to onnxruntime's write_calibration_table; TensorRT's cache."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refquant
from refquant.calibration import CalibrationError, TensorRange, read_table, write_tables
from refquant.calibration.tables import (
    flatbuffers_table,
    parse_flatbuffers_table,
    parse_tensorrt_cache,
    tensorrt_cache,
)

ort_calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")
from onnxruntime.quantization.CalTableFlatBuffers import TrtTable  # noqa: E402
from onnxruntime.quantization.quant_utils import write_calibration_table  # noqa: E402

from refquant.backends.ort_runner import make_runner  # noqa: E402
from tests.float_models import MODELS, Reader, make_batches, ort_ranges  # noqa: E402

FILES = ("calibration.json", "calibration.flatbuffers", "calibration.cache")


def assert_same_files(ort_dir, our_dir):
    for name in FILES:
        assert (our_dir / name).read_bytes() == (ort_dir / name).read_bytes(), name


@pytest.mark.parametrize(
    "method, options",
    [
        ("minmax", {}),
        ("entropy", {"num_bins": 256}),
        ("percentile", {}),
        ("percentile", {"symmetric": False}),
        ("distribution", {}),
    ],
)
def test_tables_from_calibration_are_byte_identical(tmp_path, method, options):
    path = tmp_path / "cnn.onnx"
    path.write_bytes(MODELS["cnn"][0]().SerializeToString())
    batches = make_batches(MODELS["cnn"][1], 3)
    theirs = ort_ranges(path, batches, method, options, tmp_path)
    ours = refquant.calibrate(path, Reader(batches), method, runner=make_runner(path), **options)
    ort_dir, our_dir = tmp_path / "ort", tmp_path / "ours"
    ort_dir.mkdir()
    write_calibration_table(theirs, str(ort_dir))
    # calibration.json lists tensors in the order of the ranges; onnxruntime's order comes from a set
    write_tables({name: ours[name] for name in theirs.data}, our_dir)
    assert_same_files(ort_dir, our_dir)


names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=12
).filter(lambda s: s == s.strip())
floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@given(st.dictionaries(names, st.tuples(floats32, floats32), max_size=12))
def test_minmax_tables_byte_identical(tmp_path_factory, entries):
    ranges = {
        name: TensorRange(low=np.array([lo], np.float32), high=np.array([hi], np.float32), method="minmax")
        for name, (lo, hi) in entries.items()
    }
    data = {name: ort_calibrate.TensorData(lowest=r.low, highest=r.high) for name, r in ranges.items()}
    ort_dir, our_dir = tmp_path_factory.mktemp("ort"), tmp_path_factory.mktemp("ours")
    write_calibration_table(ort_calibrate.TensorsData(ort_calibrate.CalibrationMethod.MinMax, data), str(ort_dir))
    write_tables(ranges, our_dir)
    assert_same_files(ort_dir, our_dir)
    # read back with onnxruntime's own flatbuffers reader, and with ours
    buffer = (our_dir / "calibration.flatbuffers").read_bytes()
    table = TrtTable.TrtTable.GetRootAsTrtTable(buffer, 0)
    theirs = {table.Dict(i).Key().decode(): table.Dict(i).Value().decode() for i in range(table.DictLength())}
    assert parse_flatbuffers_table(buffer) == theirs
    # a value v < 0 reads as [-v, v] with low > high, and a JSON range with lowest > highest: both refused
    amaxes = {name: max(np.float32(hi).item(), np.float32(lo).item()) for name, (lo, hi) in entries.items()}
    for path in (our_dir / "calibration.flatbuffers", our_dir / "calibration.cache"):
        if any(value < 0 for value in amaxes.values()):
            with pytest.raises(CalibrationError, match="< 0; the table's value v is the range"):
                read_table(path)
            continue
        back = read_table(path)
        assert set(back) == set(ranges)
        for name, value in amaxes.items():
            assert back[name].high == np.float32(value) and back[name].low == np.float32(-value)
    if any(np.float32(lo) > np.float32(hi) for lo, hi in entries.values()):
        with pytest.raises(CalibrationError, match="has lowest > highest"):
            read_table(our_dir / "calibration.json")
        return
    json_back = read_table(our_dir / "calibration.json")
    assert {n: (r.low.tobytes(), r.high.tobytes()) for n, r in json_back.items()} == {
        n: (r.low.tobytes(), r.high.tobytes()) for n, r in ranges.items()
    }


def test_amax_rule_abs_writes_the_symmetric_value(tmp_path):
    """onnxruntime writes max(high, low) = 0.5 for [-3, 0.5]; TensorRT would then clip -3 to -0.5."""
    ranges = {"t": TensorRange(low=np.array([-3.0], np.float32), high=np.array([0.5], np.float32))}
    write_tables(ranges, tmp_path / "ort", ["cache"])
    write_tables(ranges, tmp_path / "abs", ["cache", "flatbuffers"], amax_rule="abs")
    assert (tmp_path / "ort" / "calibration.cache").read_text() == "t 0.5\n"
    assert (tmp_path / "abs" / "calibration.cache").read_text() == "t 3.0\n"
    assert parse_flatbuffers_table((tmp_path / "abs" / "calibration.flatbuffers").read_bytes()) == {"t": "3.0"}


def test_tensorrt_cache_format():
    """scale = float32(12.7) / 127 = 0x3dcccccd (0.1f); TensorRT's samples' 'data: 3c008912' reads back."""
    text = tensorrt_cache({"input": 12.7, "conv out: 1": 1.0})
    assert text == "TRT-8601-EntropyCalibration2\ninput: 3dcccccd\nconv out: 1: 3c010204\n"
    header, scales = parse_tensorrt_cache(text)
    assert header == "TRT-8601-EntropyCalibration2" and scales["conv out: 1"] == np.float32(1.0) / np.float32(127)
    _, sample = parse_tensorrt_cache("TRT-7000-EntropyCalibration2\ndata: 3c008912\n")
    assert sample["data"] == struct.unpack(">f", bytes.fromhex("3c008912"))[0]


def test_tensorrt_cache_round_trip(tmp_path):
    ranges = {
        "a": TensorRange(low=np.float32(-2.5), high=np.float32(1.0)),
        "b": TensorRange(low=np.float32(0), high=np.float32(6)),
    }
    write_tables(ranges, tmp_path, ["trt"], amax_rule="abs")
    back = read_table(tmp_path / "calibration.trt.cache")
    assert back["a"].high == np.float32(np.float32(2.5) / np.float32(127)) * np.float32(127)
    assert back["b"].low == -back["b"].high


def test_table_errors(tmp_path):
    per_channel = {"w": TensorRange(low=np.zeros(3, np.float32), high=np.ones(3, np.float32))}
    with pytest.raises(CalibrationError, match="per channel"):
        write_tables(per_channel, tmp_path, ["cache"])
    with pytest.raises(CalibrationError, match="unknown table format"):
        write_tables({}, tmp_path, ["onnx"])
    (tmp_path / "bad.flatbuffers").write_bytes(b"\x01\x02")
    with pytest.raises(CalibrationError, match="TrtTable"):
        read_table(tmp_path / "bad.flatbuffers")
    with pytest.raises(CalibrationError, match="TRT-"):
        parse_tensorrt_cache("data: 3c008912\n")
    (tmp_path / "bad.cache").write_text("lonely\n")
    with pytest.raises(CalibrationError, match="line 1"):
        read_table(tmp_path / "bad.cache")


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("calibration.json", b"\xff\xfe{}", "is not UTF-8 text"),
        ("calibration.cache", b"x \xff\n", "is not UTF-8 text"),
        ("calibration.json", b"[" * 100_000, "calibration.json' nests JSON too deeply"),
        ("calibration.json", b'{"data": [1, 2]}', "not an onnxruntime calibration.json: AttributeError"),
        ("calibration.json", b'{"data": {"x": {"lowest": {"CLS": "numpy.array", "data": 1, "dtype": "nope"}}}}',
         "not an onnxruntime calibration.json: TypeError"),
    ],
)
def test_malformed_table_files_are_calibration_errors(tmp_path, name, data, match):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(CalibrationError, match=match):
        read_table(tmp_path / name)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_a_table_is_refused_without_blocking(tmp_path):
    """In a child with a timeout: a regression that blocks fails the test instead of hanging it."""
    os.mkfifo(tmp_path / "calibration.cache")
    code = (
        "import sys\nfrom refquant.calibration import CalibrationError, read_table\n"
        "try:\n    read_table(sys.argv[1])\nexcept CalibrationError as exc:\n    print(exc); sys.exit(1)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "calibration.cache")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "is a FIFO, not a regular file" in result.stdout, result.stderr


def test_empty_table_matches_onnxruntime(tmp_path):
    write_calibration_table(ort_calibrate.TensorsData(ort_calibrate.CalibrationMethod.MinMax, {}), str(tmp_path))
    assert flatbuffers_table({}) == (tmp_path / "calibration.flatbuffers").read_bytes()


# -- hostile table files (issue 12): refused with the file and the tensor named -------------------------

def _json_entry(lowest, highest, method="CalibrationMethod.MinMax") -> bytes:
    import json

    def arr(v, dtype="float32"):
        return {"data": v, "dtype": dtype, "CLS": "numpy.array"}

    entry = {"lowest": lowest if not isinstance(lowest, list) else arr(lowest),
             "highest": highest if not isinstance(highest, list) else arr(highest), "CLS": "TensorData"}
    return json.dumps({"CLS": "TensorsData", "data": {"t": entry},
                       "calibration_method": {"CLS": "CalibrationMethod", "value": method}}).encode()


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("calibration.json", _json_entry("abc", [1.0]), "tensor 't' field 'lowest' is 'abc', not a number"),
        ("calibration.json", _json_entry([-1.0], True), "tensor 't' field 'highest' is True, not a number"),
        ("calibration.json",
         _json_entry({"data": ["a"], "dtype": "object", "CLS": "numpy.array"}, [1.0]),
         "tensor 't' field 'lowest' has dtype object, not a number type"),
        ("calibration.json",
         _json_entry({"data": ["abc"], "dtype": "float32", "CLS": "numpy.array"}, [1.0]),
         "tensor 't' field 'lowest' is not numeric data"),
        ("calibration.json", _json_entry(float("nan"), 1.0), "tensor 't' field 'lowest' is not finite \\(nan\\)"),
        ("calibration.json", _json_entry([-1.0], [float("inf")]), "tensor 't' field 'highest' is not finite \\(inf\\)"),
        ("calibration.json", _json_entry([2.0], [1.0]), "tensor 't' has lowest > highest \\(2.0 > 1.0\\)"),
        ("calibration.json", _json_entry([0.0, 1.0], [1.0]), "tensor 't' has lowest of shape \\(2,\\) and highest"),
        ("calibration.json", _json_entry([0.0], [1.0], "CalibrationMethod.Magic"),
         "calibration_method 'CalibrationMethod.Magic' is not one of"),
        ("calibration.cache", b"t abc\n", "tensor 't' has the value 'abc', which is not a number"),
        ("calibration.cache", b"t nan\n", "tensor 't' has the value 'nan', which is not a finite float32"),
        ("calibration.cache", b"t inf\n", "tensor 't' has the value 'inf', which is not a finite float32"),
        ("calibration.cache", b"t 1e39\n", "tensor 't' has the value '1e39', which is not a finite float32"),
        ("calibration.cache", b"t -2.0\n", "tensor 't' has the value '-2.0' < 0"),
        ("calibration.cache", b"t 1.0\nt 2.0\n", "line 2: tensor 't' appears twice"),
        ("calibration.trt.cache", b"TRT-8601-EntropyCalibration2\nt: 7fc00000\n", "tensor 't' has the value nan"),
        ("calibration.trt.cache", b"TRT-8601-EntropyCalibration2\nt: 7f800000\n", "tensor 't' has the value inf"),
        ("calibration.trt.cache", b"TRT-8601-EntropyCalibration2\nt: bf800000\n", "tensor 't' has the value -127.0 < 0"),
        ("calibration.trt.cache", b"TRT-8601-EntropyCalibration2\nt: 3c000000\nt: 3c000000\n", "tensor 't' appears twice"),
        ("calibration.flatbuffers", flatbuffers_table({"t": "abc"}), "tensor 't' has the value 'abc', which is not"),
        ("calibration.flatbuffers", flatbuffers_table({"t": "nan"}), "tensor 't' has the value 'nan', which is not a finite"),
        ("calibration.flatbuffers", flatbuffers_table({"t": "-1.5"}), "tensor 't' has the value '-1.5' < 0"),
        ("calibration.flatbuffers", flatbuffers_table({"t": ""}), "tensor 't' has the value '', which is not a number"),
    ],
)
def test_hostile_table_values_are_refused_naming_file_and_tensor(tmp_path, name, data, match):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(CalibrationError, match=match) as info:
        read_table(tmp_path / name)
    assert f"'{tmp_path / name}'" in str(info.value)


def test_a_flatbuffers_table_with_a_duplicate_key_is_refused(tmp_path):
    buffer = bytearray(flatbuffers_table({"ab": "1.0", "ac": "2.0"}))
    at = buffer.index(b"ac\0")
    buffer[at : at + 2] = b"ab"
    (tmp_path / "calibration.flatbuffers").write_bytes(bytes(buffer))
    with pytest.raises(CalibrationError, match="key 'ab' appears twice"):
        read_table(tmp_path / "calibration.flatbuffers")


@pytest.mark.parametrize("values", [{"conv1": "0.5", "x": "3.25"}, {"t": "1.0"}, {}])
def test_every_single_byte_corruption_of_a_flatbuffers_table_is_caught(tmp_path, values):
    """Each byte of a valid table flipped (x ^ 0xff): the file either loads to exactly the original values
    (a padding byte, which nothing reads) or is a CalibrationError, never other values or another error."""
    good = flatbuffers_table(values)
    path = tmp_path / "calibration.flatbuffers"
    path.write_bytes(good)
    original = read_table(path)
    outcomes = {"same": 0, "refused": 0}
    for index in range(len(good)):
        corrupt = bytearray(good)
        corrupt[index] ^= 0xFF
        path.write_bytes(bytes(corrupt))
        try:
            back = read_table(path)
        except CalibrationError:
            outcomes["refused"] += 1
            continue
        assert back == original, f"byte {index} flipped loads {back}"
        outcomes["same"] += 1
    assert outcomes["refused"] > outcomes["same"]


def test_truncated_flatbuffers_tables_are_refused(tmp_path):
    """Cut anywhere before the last string's NUL terminator: refused; only trailing padding may go."""
    good = flatbuffers_table({"conv1": "0.5", "x": "3.25"})
    path = tmp_path / "calibration.flatbuffers"
    path.write_bytes(good)
    original = read_table(path)
    last_nul = good.rindex(b"conv1\0") + len("conv1")
    for length in range(len(good)):
        path.write_bytes(good[:length])
        if length > last_nul:
            assert read_table(path) == original
            continue
        with pytest.raises(CalibrationError, match="is not a valid calibration.flatbuffers"):
            read_table(path)


def test_tables_hold_no_inf_or_nan(tmp_path):
    for low, high in ((-np.inf, 1.0), (0.0, np.nan)):
        ranges = {"t": TensorRange(low=np.array([low], np.float32), high=np.array([high], np.float32))}
        for fmt in ("json", "flatbuffers", "cache", "trt"):
            with pytest.raises(CalibrationError, match="tensor 't' has a non-finite (low|high) .*no inf or nan"):
                write_tables(ranges, tmp_path / fmt, [fmt])
            assert not (tmp_path / fmt).exists()


def test_a_tensor_named_like_a_tensorrt_header_reads_back(tmp_path):
    """An onnxruntime text cache whose first tensor is called "TRT-" (hypothesis drew it) is not a TensorRT cache:
    that header is one word, TRT-<version>-<calibrator>; a text cache line is "<name> <value>"."""
    ranges = {name: TensorRange(low=np.array([-2.0], np.float32), high=np.array([2.0], np.float32), method="minmax")
              for name in ("TRT-", "[", "TRT-8601-EntropyCalibration2")}
    write_tables(ranges, tmp_path)
    back = read_table(tmp_path / "calibration.cache")
    assert set(back) == set(ranges) and all(r.high == np.float32(2) and r.low == np.float32(-2) for r in back.values())
