"""Profiles: each option's valid values are written once (the field's Literal), spec/profiles.md lists the same
ones, invalid values are refused with the same message as ever, and the query methods kernels ask answer as the
option they read says."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

from refquant.errors import RefquantError
from refquant.profiles import ONNX_REFERENCE, ONNXRUNTIME, OPENVINO, PROFILES, SPEC, Profile, option_choices

SPEC_PAGE = Path(__file__).resolve().parent.parent / "spec" / "profiles.md"


def _documented_values() -> dict[str, tuple[str, ...]]:
    """{option: the quoted values of its row} from the options table of spec/profiles.md."""
    lines = SPEC_PAGE.read_text().splitlines()
    start = lines.index("| option | values | spec | what it decides | where |") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        match = re.match(r"^\| `(\w+)` \| ([^|]*) \|", line)
        assert match, line
        rows[match.group(1)] = tuple(re.findall(r'"([^"]+)"', match.group(2)))
    return rows


def test_the_choices_are_those_the_spec_page_lists_in_its_order():
    documented = _documented_values()
    choices = option_choices()
    quoted = {name for name, values in documented.items() if values}
    assert set(choices) == quoted  # every option with named values, and only those
    for name, values in choices.items():
        assert values == documented[name], name


def test_the_choices_are_the_string_options_and_exclude_the_numeric_ones():
    assert list(option_choices()) == [f.name for f in fields(Profile) if isinstance(f.default, str) and f.name != "name"]
    assert option_choices()["float_pipeline"] == ("exact", "mlas-float32", "numpy-float32")
    assert "mlas_threads" not in option_choices() and "avx2_u8s8_saturation" not in option_choices()


@pytest.mark.parametrize("option", sorted(name for name, values in _documented_values().items() if values))
def test_every_documented_value_is_accepted_and_any_other_refused_with_the_same_message(option):
    values = _documented_values()[option]
    for value in values:
        assert getattr(SPEC.with_options(**{option: value}), option) == value
    listed = "(" + ", ".join(f"'{v}'" for v in values) + ")"
    with pytest.raises(RefquantError) as raised:
        Profile(**{option: "bogus"})
    assert str(raised.value) == f"profile option {option}='bogus' is not one of {listed}"


def test_numeric_options_keep_their_checks():
    with pytest.raises(RefquantError, match=r"^profile option mlas_threads must be an integer >= 1, got True$"):
        Profile(mlas_threads=True)
    with pytest.raises(RefquantError, match=r"^profile option dynamic_zero_range_scale must be > 0$"):
        Profile(dynamic_zero_range_scale=0.0)


# -- the questions kernels ask ------------------------------------------------------------------------------------

DTYPES = (np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int32, np.uint8)


def test_replays_mlas_float32_only_for_float32_under_the_mlas_float_pipeline():
    assert ONNXRUNTIME.replays_mlas_float32(np.float32)
    assert ONNXRUNTIME.replays_mlas_float32(np.dtype("float32")) and ONNXRUNTIME.replays_mlas_float32("float32")
    for dtype in (np.float64, np.float16, ml_dtypes.bfloat16, np.int32):
        assert not ONNXRUNTIME.replays_mlas_float32(dtype), dtype
    for profile in (SPEC, ONNX_REFERENCE, OPENVINO):
        assert not profile.replays_mlas_float32(np.float32), profile.name


def test_replays_numpy_float32_only_for_float32_under_the_numpy_float_pipeline():
    assert ONNX_REFERENCE.replays_numpy_float32(np.float32)
    for dtype in (np.float64, np.float16, ml_dtypes.bfloat16):
        assert not ONNX_REFERENCE.replays_numpy_float32(dtype), dtype
    for profile in (SPEC, ONNXRUNTIME, OPENVINO):
        assert not profile.replays_numpy_float32(np.float32), profile.name


def test_qlinear_mlas_follows_qlinear_pipeline():
    assert ONNXRUNTIME.qlinear_mlas
    assert not SPEC.qlinear_mlas and not ONNX_REFERENCE.qlinear_mlas and not OPENVINO.qlinear_mlas
    assert SPEC.with_options(qlinear_pipeline="mlas-float32").qlinear_mlas
    assert not ONNXRUNTIME.with_options(qlinear_pipeline="exact").qlinear_mlas


#: float_pipeline -> (replays_mlas_float32, replays_numpy_float32) for a float32 operand (spec/profiles.md)
FLOAT32_ANSWERS = {"exact": (False, False), "mlas-float32": (True, False), "numpy-float32": (False, True)}


@pytest.mark.parametrize("float_pipeline", sorted(FLOAT32_ANSWERS))
@pytest.mark.parametrize("qlinear_pipeline", ["exact", "mlas-float32"])
def test_every_combination_answers_as_the_spec_page_says(float_pipeline, qlinear_pipeline):
    """The kernels' questions over every pipeline combination: float32 follows float_pipeline, any other
    dtype takes neither replay (the kernels keep their exact path for it), qlinear_mlas follows qlinear_pipeline."""
    profile = SPEC.with_options(float_pipeline=float_pipeline, qlinear_pipeline=qlinear_pipeline)
    mlas, numpy_products = FLOAT32_ANSWERS[float_pipeline]
    assert (profile.replays_mlas_float32(np.float32), profile.replays_numpy_float32(np.float32)) == (mlas, numpy_products)
    for dtype in DTYPES[1:]:
        assert not profile.replays_mlas_float32(dtype) and not profile.replays_numpy_float32(dtype), dtype
    assert profile.qlinear_mlas is (qlinear_pipeline == "mlas-float32")
    assert PROFILES["onnxruntime"] is ONNXRUNTIME  # the named profiles answer through the same methods
