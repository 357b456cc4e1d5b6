"""Profiles: each option's valid values are written once (the field's Literal), spec/profiles.md lists the same
ones, invalid values are refused with the same message as ever; each op family's options object carries the
profile's values (spec/profiles.md), answers the kernels' questions as its option says, and is all a kernel sees."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

import refquant
from refquant import host, kernel_options
from refquant.errors import RefquantError
from refquant.kernel_options import (
    DequantizeOptions,
    DynamicQuantizeMatMulOptions,
    DynamicQuantizeOptions,
    FloatPipelineOptions,
    IntegerProductOptions,
    QLinearElementwiseOptions,
    QuantizeOptions,
    RequantizeOptions,
)
from refquant.profiles import ONNX_REFERENCE, ONNXRUNTIME, OPENVINO, PROFILES, SPEC, Profile, option_choices
from refquant.registry import MS_DOMAIN, options_family, supported_ops

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


# -- what each op family's kernels receive ----------------------------------------------------------------------

#: the onnxruntime profile's avx2_u8s8_saturation (spec/profiles.md, "Named profiles"): true where onnxruntime
#: picks MLAS's avx2 or avx512core U8S8 kernels on this host
ORT_PAIRS = host.mlas_integer_kernels() in ("avx2", "avx512core")

#: {profile: {family: its object}}, written from spec/profiles.md: the options table's defaults, overridden
#: by the "Named profiles" table
EXPECTED = {
    "spec": (
        QuantizeOptions(fake_quantize=False, widen_half_division=False, overflow="saturate", nan="error"),
        DequantizeOptions(formula="exact", subnormals="keep", int32_formula="exact"),
        DynamicQuantizeOptions(reciprocal=False, zero_range_scale=1.0, refuse_out_of_range_scale=True, nan="error"),
        IntegerProductOptions(int32_overflow="wrap", saturate_u8s8_pairs=False),
        RequantizeOptions(precision="float64", zero_point_first=False, fake_quantize_lowering=False,
                          saturate_u8s8_pairs=False),
        QLinearElementwiseOptions(mlas_float32=False),
        FloatPipelineOptions(pipeline="exact", threads=1),
    ),
    "onnxruntime": (
        QuantizeOptions(fake_quantize=False, widen_half_division=True, overflow="saturate", nan="qmin"),
        DequantizeOptions(formula="exact", subnormals="keep", int32_formula="float32-first"),
        DynamicQuantizeOptions(reciprocal=False, zero_range_scale=1.0, refuse_out_of_range_scale=False, nan="qmin"),
        IntegerProductOptions(int32_overflow="wrap", saturate_u8s8_pairs=ORT_PAIRS),
        RequantizeOptions(precision="float32", zero_point_first=False, fake_quantize_lowering=False,
                          saturate_u8s8_pairs=ORT_PAIRS),
        QLinearElementwiseOptions(mlas_float32=True),
        FloatPipelineOptions(pipeline="mlas-float32", threads=1),
    ),
    "onnx-reference": (
        QuantizeOptions(fake_quantize=False, widen_half_division=False, overflow="int32-indefinite", nan="qmin"),
        DequantizeOptions(formula="exact", subnormals="keep", int32_formula="float32-first"),
        DynamicQuantizeOptions(reciprocal=False, zero_range_scale=1 / 255, refuse_out_of_range_scale=False, nan="qmin"),
        IntegerProductOptions(int32_overflow="wrap", saturate_u8s8_pairs=False),
        RequantizeOptions(precision="mixed", zero_point_first=True, fake_quantize_lowering=False,
                          saturate_u8s8_pairs=False),
        QLinearElementwiseOptions(mlas_float32=False),
        FloatPipelineOptions(pipeline="numpy-float32", threads=1),
    ),
    "openvino": (
        QuantizeOptions(fake_quantize=True, widen_half_division=False, overflow="saturate", nan="qmin"),
        DequantizeOptions(formula="distributed", subnormals="flush", int32_formula="exact"),
        DynamicQuantizeOptions(reciprocal=True, zero_range_scale=1.0, refuse_out_of_range_scale=True, nan="qmin"),
        IntegerProductOptions(int32_overflow="wrap", saturate_u8s8_pairs=False),
        RequantizeOptions(precision="float64", zero_point_first=False, fake_quantize_lowering=True,
                          saturate_u8s8_pairs=False),
        QLinearElementwiseOptions(mlas_float32=False),
        FloatPipelineOptions(pipeline="exact", threads=1),
    ),
}
FAMILIES = sorted({type(options) for row in EXPECTED.values() for options in row} | {DynamicQuantizeMatMulOptions},
                  key=lambda family: family.__name__)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_family_object_carries_the_named_profiles_values(name):
    profile = PROFILES[name]
    for expected in EXPECTED[name]:
        assert type(expected).of(profile) == expected, (name, type(expected).__name__)
    by_family = {type(options): options for options in EXPECTED[name]}
    assert DynamicQuantizeMatMulOptions.of(profile) == DynamicQuantizeMatMulOptions(
        quantize_a=by_family[DynamicQuantizeOptions], product=by_family[RequantizeOptions]
    )


def test_the_families_are_those_the_module_exports():
    assert sorted(kernel_options.__all__) == sorted(family.__name__ for family in FAMILIES)


def test_mlas_threads_reaches_the_float_pipeline_options():
    assert FloatPipelineOptions.of(ONNXRUNTIME.with_options(mlas_threads=4)) == FloatPipelineOptions("mlas-float32", 4)


@pytest.mark.parametrize("option", [f.name for f in fields(Profile) if f.name != "name"])
def test_every_option_reaches_some_familys_object(option):
    """Changing any one option changes the object of at least one family: no option is lost on the way."""
    default = getattr(SPEC, option)
    if option in option_choices():
        other = next(value for value in option_choices()[option] if value != default)
    else:  # avx2_u8s8_saturation, mlas_threads, dynamic_zero_range_scale
        other = not default if isinstance(default, bool) else default * 2
    changed = SPEC.with_options(**{option: other})
    assert any(family.of(changed) != family.of(SPEC) for family in FAMILIES), option


def test_the_family_objects_are_frozen():
    options = QuantizeOptions.of(SPEC)
    with pytest.raises(AttributeError):
        options.nan = "qmin"


# -- the questions the float kernels ask ---------------------------------------------------------------------------

DTYPES = (np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int32, np.uint8)
#: float_pipeline -> (replays_mlas_float32, replays_numpy_float32) for a float32 operand (spec/profiles.md)
FLOAT32_ANSWERS = {"exact": (False, False), "mlas-float32": (True, False), "numpy-float32": (False, True)}


@pytest.mark.parametrize("float_pipeline", sorted(FLOAT32_ANSWERS))
def test_the_float_questions_answer_as_the_spec_page_says(float_pipeline):
    """float32 follows float_pipeline; any other dtype takes neither replay (the kernels keep their exact path)."""
    options = FloatPipelineOptions.of(SPEC.with_options(float_pipeline=float_pipeline))
    mlas, numpy_products = FLOAT32_ANSWERS[float_pipeline]
    for spelling in (np.float32, np.dtype("float32"), "float32"):
        answers = options.replays_mlas_float32(spelling), options.replays_numpy_float32(spelling)
        assert answers == (mlas, numpy_products), spelling
    for dtype in DTYPES[1:]:
        assert not options.replays_mlas_float32(dtype) and not options.replays_numpy_float32(dtype), dtype


# -- which kernel receives which object --------------------------------------------------------------------------


def _documented_families() -> dict[tuple[str, str], str]:
    """{(domain, op_type): options class name} from the table of spec/profiles.md "What each kernel receives"."""
    lines = SPEC_PAGE.read_text().splitlines()
    start = lines.index("| options object | kernels | fields (profile option) |") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        family, kernels = re.match(r"^\| `(\w+)` \| ([^|]*) \|", line).groups()
        for kernel in kernels.split(", "):
            domain, _, op_type = kernel.rpartition(" ")
            rows[(MS_DOMAIN if domain == "com.microsoft" else "", op_type)] = family
    return rows


def test_every_kernel_declares_the_family_the_spec_page_gives_it():
    documented = _documented_families()
    declared = {(domain, op): options_family(domain, op).__name__
                for domain, op, _ in supported_ops() if options_family(domain, op) is not None}
    assert declared == documented


def _model(*nodes, inputs, outputs, ms=False):
    opsets = [helper.make_opsetid("", 21)] + ([helper.make_opsetid(MS_DOMAIN, 1)] if ms else [])
    graph = helper.make_graph(list(nodes), "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=opsets)


def test_a_kernel_sees_only_its_familys_object():
    """The session binds each node to its family's object, built once per session from its profile; the node
    holds no profile, and a kernel of no family gets None."""
    model = _model(
        helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s"], ["d"]),
        helper.make_node("MatMul", ["d", "d"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "s"], ["q2"]),
        helper.make_node("Relu", ["m"], ["r"]),
        inputs=[helper.make_tensor_value_info("x", T.FLOAT, [2, 2]), helper.make_tensor_value_info("s", T.FLOAT, [])],
        outputs=[helper.make_tensor_value_info("q2", T.UINT8, [2, 2]),
                 helper.make_tensor_value_info("r", T.FLOAT, [2, 2])],
    )
    profile = ONNXRUNTIME.with_options(mlas_threads=3)
    session = refquant.Session(model, profile=profile)
    quantize, dequantize, matmul, quantize_again, relu = session._plan
    assert quantize.options == QuantizeOptions.of(profile) and quantize.options is quantize_again.options
    assert dequantize.options == DequantizeOptions.of(profile)
    assert matmul.options == FloatPipelineOptions(pipeline="mlas-float32", threads=3)
    assert relu.options is None
    assert not any(hasattr(node, "profile") for node in session._plan)
