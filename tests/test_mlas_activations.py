"""refquant.mlas_activations: onnxruntime's MLAS float32 Tanh, Logistic (Sigmoid) and Erf, bit for bit.

Golden values: onnxruntime 1.32 CPU itself (ORT_DISABLE_ALL, one intra-op thread) on the same inputs, run
through ``refquant.Session(profile="onnxruntime")`` (float_pipeline="mlas-float32"). Each op sees over 10**6
float32 values: random bit patterns over the whole float32 range (so NaNs, infinities, subnormals), every
float32 in a dense band near 0 and around the polynomials' splits and clamps, the special values, and
tensor lengths that end on full vectors and on every partial tail. NaN payloads are not compared.
The spec profile still rounds the float64 value once.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant

from .ops.contrib_helpers import run_ort
from .ops.helpers import assert_same_bits

ort = pytest.importorskip("onnxruntime")

_OPS = ["Tanh", "Sigmoid", "Erf"]
#: the clamp limits and polynomial splits of each kernel (MlasTanhConstants, MlasLogisticConstants,
#: MlasErfConstants): ±9, ±18, 0.921875 and 3.925
_EDGES = {"Tanh": [9.0], "Sigmoid": [18.0], "Erf": [0.921875, 3.925]}
_LENGTHS = [1, 7, 8, 9, 15, 16, 17, 31, 32, 33]


def _model(op: str):
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])],
        op,
        [helper.make_tensor_value_info("x", T.FLOAT, [None])],
        [helper.make_tensor_value_info("y", T.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _sessions(op: str):
    model = _model(op)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    want = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return want, refquant.Session(model, profile="onnxruntime"), refquant.Session(model)


def _neighbourhood(value: float, count: int) -> np.ndarray:
    """``count`` consecutive float32 on each side of ±value."""
    center = np.array([value], np.float32).view(np.int32)[0]
    bits = np.arange(center - count, center + count + 1, dtype=np.int64).astype(np.int32)
    positive = bits.view(np.float32)
    return np.concatenate([positive, -positive])


def _values(op: str) -> np.ndarray:
    rng = np.random.default_rng(1032)
    random_bits = rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    uniform = rng.uniform(-25, 25, 200_000).astype(np.float32)
    # every float32 in [2**-4, 2**-4 + 2**-19 * 2**18) and its negative: the polynomials' range near 0
    dense = np.arange(0, 2**18, dtype=np.int32) + np.array([2**-4], np.float32).view(np.int32)[0]
    dense = dense.view(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754942e-38,
                        -1.1754942e-38, 1.17549435e-38, 3.4028235e38, -3.4028235e38, 1.0, -1.0], np.float32)  # fmt: skip
    edges = np.concatenate([_neighbourhood(e, 20_000) for e in _EDGES[op]])
    tiny = _neighbourhood(1e-20, 2000)
    return np.concatenate([random_bits, uniform, dense, -dense, special, edges, tiny])


def _run(sessions, x: np.ndarray):
    want, got, _ = sessions
    with np.errstate(all="ignore"):
        return got.run(None, {"x": x})[0], want.run(None, {"x": x})[0]


@pytest.mark.parametrize("op", _OPS)
def test_onnxruntime_profile_matches_onnxruntime(op):
    x = _values(op)
    assert x.size >= 10**6
    got, want = _run(_sessions(op), x)
    assert_same_bits(got, want)


@pytest.mark.parametrize("op", _OPS)
def test_every_tail_length_matches_onnxruntime(op):
    """Full 8-lane vectors, the masked last vector and (Erf) the 32-element blocks: every element computes
    the same whatever its position, so any length and offset agree."""
    sessions = _sessions(op)
    x = np.random.default_rng(7).standard_normal(1_000_003).astype(np.float32) * 4
    for n in _LENGTHS:
        for start in (0, 3):
            got, want = _run(sessions, np.ascontiguousarray(x[start : start + n]))
            assert_same_bits(got, want, f"{op} length {n} from {start}")
    got, want = _run(sessions, x)
    assert_same_bits(got, want, f"{op} length {x.size}")


@pytest.mark.parametrize("op", _OPS)
def test_replay_differs_from_the_spec_profile(op):
    """The spec profile keeps the float64 value rounded once; the replay is not that on many values."""
    from refquant.ops.float_functions import erf64, sigmoid64

    exact = {"Tanh": np.tanh, "Sigmoid": sigmoid64, "Erf": erf64}[op]
    want, replay, spec = _sessions(op)
    x = np.random.default_rng(3).standard_normal(100_000).astype(np.float32)
    assert_same_bits(spec.run(None, {"x": x})[0], exact(x.astype(np.float64)).astype(np.float32))
    assert not np.array_equal(replay.run(None, {"x": x})[0], spec.run(None, {"x": x})[0])


def test_other_types_keep_the_float64_rule():
    """float64 and float16 are not replayed under mlas-float32."""
    for dtype, proto in ((np.float64, T.DOUBLE), (np.float16, T.FLOAT16)):
        graph = helper.make_graph(
            [helper.make_node("Tanh", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", proto, [None])],
            [helper.make_tensor_value_info("y", proto, [None])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        x = np.linspace(-3, 3, 101).astype(dtype)
        got = refquant.Session(model, profile="onnxruntime").run(None, {"x": x})[0]
        assert_same_bits(got, np.tanh(x.astype(np.float64)).astype(dtype))


def _host_has_avx512f() -> bool:
    from refquant.host import cpu_flags

    return "avx512f" in cpu_flags()


#: onnxruntime's MlasComputeGeluErf takes MlasGeluErfKernelAvx512F there (not measured)
gelu_needs_no_avx512f = pytest.mark.skipif(_host_has_avx512f(), reason="Gelu replay measured without AVX-512F only")


def _gelu_model(op: str, domain: str, with_bias: bool = False):
    inputs = [helper.make_tensor_value_info("x", T.FLOAT, [None, 37])]
    if with_bias:
        inputs.append(helper.make_tensor_value_info("b", T.FLOAT, [37]))
    graph = helper.make_graph(
        [helper.make_node(op, [i.name for i in inputs], ["y"], domain=domain)],
        op,
        inputs,
        [helper.make_tensor_value_info("y", T.FLOAT, [None, 37])],
    )
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    return model


@gelu_needs_no_avx512f
@pytest.mark.parametrize("op, domain, with_bias", [("Gelu", "", False), ("Gelu", "com.microsoft", False), ("BiasGelu", "com.microsoft", True)])  # fmt: skip
def test_gelu_matches_onnxruntime(op, domain, with_bias):
    """y = (0.5 x) (erf(x * float32(1/sqrt 2)) + 1) in float32 with MLAS's erf; BiasGelu on the float32 sum."""
    rng = np.random.default_rng(20)
    x = np.concatenate([rng.integers(0, 2**32, 37 * 8000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        (rng.standard_normal(37 * 8000) * 4).astype(np.float32),
                        np.arange(1, 37 * 2000 + 1, dtype=np.uint32).view(np.float32)]).reshape(-1, 37)  # fmt: skip
    feeds = {"x": x}
    if with_bias:
        feeds["b"] = rng.standard_normal(37).astype(np.float32)
    model = _gelu_model(op, domain, with_bias)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    want = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    with np.errstate(all="ignore"):
        assert_same_bits(refquant.Session(model, profile="onnxruntime").run(None, feeds)[0], want.run(None, feeds)[0])


def _pow_model(exponent: np.ndarray):
    graph = helper.make_graph(
        [helper.make_node("Pow", ["x", "e"], ["y"])],
        "pow",
        [helper.make_tensor_value_info("x", T.FLOAT, [None])],
        [helper.make_tensor_value_info("y", T.FLOAT, [None])],
        [numpy_helper.from_array(np.asarray(exponent), "e")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("exponent", [np.float32(2), np.float32(3), np.int64(3)], ids=["2.0", "3.0", "int 3"])
def test_pow_by_2_and_3_is_onnxruntimes_float32_products(exponent):
    """onnxruntime's Pow with a one-value exponent 2 or 3: x * x and (x * x) * x in float32 (spec/mlas.md)."""
    x = np.concatenate([
        np.random.default_rng(3).standard_normal(1_000_000).astype(np.float32) * np.float32(3),
        np.array([0.0, -0.0, np.inf, -np.inf, 1e-30, 3e12, -3e12], np.float32),
    ])
    model = _pow_model(exponent)
    want = run_ort(model, {"x": x})
    got = refquant.Session(model, profile="onnxruntime").run(None, {"x": x})[0]
    assert_same_bits(got, want, f"Pow(x, {exponent})")
    if exponent == 3:  # x * x is the square rounded once, as the spec has it; the cube rounds twice here
        spec = refquant.Session(model).run(None, {"x": x})[0]
        assert not np.array_equal(spec, want)
