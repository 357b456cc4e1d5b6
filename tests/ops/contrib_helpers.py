"""Shared by the com.microsoft kernel tests of tests/ops (test_contrib_*.py): one-node models run by
onnxruntime's CPU kernels (graph optimizations off) and by refquant, the comparison through the divergence
classifier, and hypothesis strategies for quantized values and scales.

Importing this module skips the importing test module when onnxruntime is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.backends.divergence import classify
from refquant.dtypes import proto_of
from refquant.profiles import SPEC

from ..helpers import assert_bit_exact

ort = pytest.importorskip("onnxruntime")

EIGHT_BIT = (np.uint8, np.int8)
MLAS = SPEC.with_options(qlinear_pipeline="mlas-float32")
#: spec's arithmetic with the integer kernels onnxruntime runs on this host (AVX2 without VNNI: U8S8 pair
#: saturation, refquant.host): what "spec" means below wherever it is compared with ort-cpu
SPEC_HERE = SPEC.with_options(avx2_u8s8_saturation=refquant.get_profile("onnxruntime").avx2_u8s8_saturation)
FLOAT32_REQUANTIZE = SPEC_HERE.with_options(requantize_precision="float32")


# -- models and runners -----------------------------------------------------------------


def ms_model(op_type, inputs, out_type, *, initializers=(), extra_nodes=(), output="out", **attrs):
    """One com.microsoft node; ``inputs``: (name, array or None) pairs, None an omitted input.

    onnxruntime 1.32 cannot run omitted optional zero points (QLinearAdd, QLinearAveragePool, ... fail
    type inference; QLinearSigmoid/LeakyRelu abort on an assertion when the node lists 4 inputs), so
    the comparisons give every zero point; test_omitted_zero_points_are_zero covers the default.

    Arrays named in ``initializers`` become initializers, the others graph inputs.
    """
    names = [name if value is not None else "" for name, value in inputs]
    node = helper.make_node(op_type, names, [output if not extra_nodes else "t"], domain="com.microsoft", **attrs)
    graph = helper.make_graph(
        [node, *extra_nodes],
        op_type.lower(),
        [
            helper.make_tensor_value_info(name, proto_of(value.dtype), list(value.shape))
            for name, value in inputs
            if value is not None and name not in initializers
        ],
        [helper.make_tensor_value_info(output, out_type, None)],
        [numpy_helper.from_array(value, name) for name, value in inputs if name in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def feeds_of(inputs, initializers=()):
    return {name: np.asarray(value) for name, value in inputs if value is not None and name not in initializers}


def run_ort(model, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def run_ref(model, feeds, profile="spec"):
    return refquant.Session(model, profile=profile).run(None, feeds)[0]


def compare(op_type, inputs, out_type, *, initializers=(), **attrs):
    """(ort-cpu, spec) after asserting the onnxruntime profile equals ort-cpu and that every element where
    the spec differs from ort-cpu is explained: a named divergence reproduces it there (no tolerance)."""
    model = ms_model(op_type, inputs, out_type, initializers=initializers, **attrs)
    feeds = feeds_of(inputs, initializers)
    expected = run_ort(model, feeds)
    assert_bit_exact(run_ref(model, feeds, "onnxruntime"), expected, "onnxruntime profile")
    (report,) = classify(model, feeds, "ort-cpu", {model.graph.output[0].name: expected})
    assert report.status in ("exact", "explained"), report.to_dict()
    return expected, run_ref(model, feeds, SPEC_HERE)


def assert_differences_explained(op_type, cases, out_type, option_profile, **attrs):
    """Over ``cases`` (lists of inputs), spec differs from ort-cpu somewhere, and ``option_profile``
    (spec with one option changed) reproduces ort-cpu everywhere."""
    differing = 0
    for inputs in cases:
        model = ms_model(op_type, inputs, out_type, **attrs)
        feeds = feeds_of(inputs)
        expected = run_ort(model, feeds)
        differing += int((run_ref(model, feeds, SPEC_HERE) != expected).sum())
        assert_bit_exact(run_ref(model, feeds, option_profile), expected, "spec with the option switched")
    assert differing > 0, "these cases were chosen to make spec and onnxruntime differ"


def run_spec(op_type, inputs, out_type=T.UINT8, **attrs):
    return run_ref(ms_model(op_type, inputs, out_type, **attrs), feeds_of(inputs))


def add_inputs(a, b, **overrides):
    inputs = {"a": a, "as": np.float32(0.1), "az": np.zeros((), a.dtype), "b": b, "bs": np.float32(0.1),
              "bz": np.zeros((), a.dtype), "cs": np.float32(0.1), "cz": np.zeros((), a.dtype)} | overrides
    return list(inputs.items())


# -- strategies ------------------------------------------------------------------------

#: scales that make real values land on rounding ties (multiples of one base), and arbitrary ones
_BASES = (0.1, 0.01, 0.03, 1 / 3, 0.007, 0.05, 0.125)


@st.composite
def scales(draw, low=2.0**-8, high=1.0):
    if draw(st.booleans()):
        return np.array(draw(st.sampled_from(_BASES)) * draw(st.integers(1, 8)), np.float32)
    return np.array(draw(st.floats(low, high, width=32)), np.float32)


def values(draw, dtype, shape):
    info = np.iinfo(dtype)
    return draw(hnp.arrays(dtype, shape, elements=st.integers(int(info.min), int(info.max))))


def scalar(draw, dtype):
    return values(draw, dtype, ())


def full_range(dtype):
    info = np.iinfo(dtype)
    return np.arange(int(info.min), int(info.max) + 1).astype(dtype)


# -- checks shared by several op families ------------------------------------------------


def _overflow_inputs(op_type, big):
    """uint8, zero points 0, real value big * 2**24 in output steps (scale ratio 2**24)."""
    q, one, zero, tiny = np.array([127, 128 if big else 127], np.uint8), np.float32(1), np.uint8(0), np.float32(2.0**-24)
    if op_type == "QLinearAveragePool":
        return [("x", q.reshape(1, 1, 2)), ("xs", one), ("xz", zero), ("ys", tiny), ("yz", zero)]
    other = np.array([0, 0] if op_type == "QLinearAdd" else [1, 1], np.uint8)
    return [("a", q), ("as", one), ("az", zero), ("b", other), ("bs", one), ("bz", zero), ("cs", tiny), ("cz", zero)]


def assert_mlas_conversion_beyond_int32_gives_qmin(op_type):
    """127 * 2**24 < 2**31 saturates to 255; 128 * 2**24 = 2**31 does not fit cvtps_epi32, whose
    INT32_MIN the saturating packs make 0 (qmin). The spec saturates both to 255."""
    attrs = {"kernel_shape": [1]} if op_type == "QLinearAveragePool" else {}
    for big, expected in ((False, [255, 255]), (True, [255, 0])):
        model = ms_model(op_type, _overflow_inputs(op_type, big), T.UINT8, **attrs)
        feeds = feeds_of(_overflow_inputs(op_type, big))
        got = run_ort(model, feeds).ravel().tolist()
        assert got == expected
        assert run_ref(model, feeds, "onnxruntime").ravel().tolist() == expected
        assert run_ref(model, feeds).ravel().tolist() == [255, 255]


X8 = np.arange(0, 256, 7, dtype=np.uint8).reshape(1, 1, 37)


def assert_omitted_zero_points_are_zero(op_type, inputs, attrs, profile):
    """Omitting every zero point (inputs named ``*z``) gives the outputs of zero points 0."""
    omitted = [(name, None if name.endswith("z") else value) for name, value in inputs]
    out_type = T.FLOAT if op_type == "DequantizeLinear" else T.UINT8
    with_zeros = run_ref(ms_model(op_type, inputs, out_type, **attrs), feeds_of(inputs), profile)
    without = run_ref(ms_model(op_type, omitted, out_type, **attrs), feeds_of(omitted), profile)
    assert_bit_exact(without, with_zeros)
