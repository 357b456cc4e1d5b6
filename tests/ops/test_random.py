"""RandomNormal, RandomUniform, their Like forms, Bernoulli and Multinomial (refquant/ops/random.py,
spec/ops/random.md).

The expected values are computed here from the documented generator: numpy's PCG64 bit generator (whose stream
numpy keeps stable across versions) seeded by SeedSequence, its raw 64-bit words converted as the spec says,
with Python's math module for Box-Muller. The first words for seed 3.0 are written out, so that a change of
the stream itself fails here."""

from __future__ import annotations

import math
import zlib

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

import refquant
from refquant.errors import AttributeValueError, DTypeError, NodeError

from ..helpers import node_cases, single_node_model, to_array


def _words(count, seed=None, name=None):
    """The spec's bit stream, written again: SeedSequence([0, float32 bits of seed]) or ([1, crc32(name)])."""
    entropy = [0, int(np.float32(seed).view(np.uint32))] if seed is not None else [1, zlib.crc32(name.encode())]
    return [int(w) for w in np.random.PCG64(np.random.SeedSequence(entropy)).random_raw(count)]


def _uniform(word):
    return (word >> 11) * 2.0**-53


def _normals(words, count):
    out = []
    for a, b in zip(words[0::2], words[1::2]):
        r = math.sqrt(-2.0 * math.log(((a >> 11) + 1) * 2.0**-53))
        out += [r * math.cos(2 * math.pi * _uniform(b)), r * math.sin(2 * math.pi * _uniform(b))]
    return out[:count]


def _run(op, inputs, out_type, attrs=None, opset=22, name=None):
    model = single_node_model(op, inputs, {"y": out_type}, opset=opset, attrs=attrs)
    if name is not None:
        model.graph.node[0].name = name
    (y,) = refquant.Session(model).run(None, inputs)
    return y


def test_the_bit_stream_is_numpys_stable_pcg64():
    assert [hex(w) for w in _words(3, seed=3.0)] == ["0x78d750c7de7d87a2", "0xdc953b3ecf0a4098", "0x24222c65094fe048"]
    y = _run("RandomUniform", {}, T.DOUBLE, {"shape": [3], "seed": 3.0, "dtype": T.DOUBLE})
    assert [float.hex(float(v)) for v in y] == ["0x1.e35d431f79f60p-2", "0x1.b92a767d9e148p-1", "0x1.211163284a7f0p-3"]


def test_random_uniform_values_are_the_documented_ones():
    y = _run("RandomUniform", {}, T.FLOAT, {"shape": [2, 3], "seed": 1.5, "low": -2.0, "high": 3.0})
    want = [np.float32(-2.0 + 5.0 * _uniform(w)) for w in _words(6, seed=1.5)]
    assert y.dtype == np.float32 and y.shape == (2, 3)
    np.testing.assert_array_equal(y.ravel(), want)
    assert ((y >= -2) & (y <= 3)).all()


@pytest.mark.parametrize("count", [5, 6])
def test_random_normal_values_are_the_documented_ones(count):
    y = _run("RandomNormal", {}, T.FLOAT, {"shape": [count], "seed": 7.0, "mean": 1.0, "scale": 0.5})
    want = [np.float32(1.0 + 0.5 * z) for z in _normals(_words(2 * ((count + 1) // 2), seed=7.0), count)]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, want)


def test_same_seed_same_values_other_seed_other_values():
    def draw(seed, op="RandomNormal"):
        return _run(op, {}, T.DOUBLE, {"shape": [64], "seed": seed, "dtype": T.DOUBLE})

    for op in ("RandomNormal", "RandomUniform"):
        np.testing.assert_array_equal(draw(2.0, op), draw(2.0, op))
        assert (draw(2.0, op) != draw(2.5, op)).all()
        assert (draw(0.0, op) != draw(-0.0, op)).all()  # another float32 bit pattern


def test_without_a_seed_the_node_name_seeds_it():
    model = single_node_model("RandomUniform", {}, {"y": T.DOUBLE}, opset=22, attrs={"shape": [4], "dtype": T.DOUBLE})
    model.graph.node[0].name = "noise"
    session = refquant.Session(model)
    first = session.run(None, {})[0]
    np.testing.assert_array_equal(first, session.run(None, {})[0])  # every run draws afresh from the seed
    np.testing.assert_array_equal(first, refquant.Session(model).run(None, {})[0])
    np.testing.assert_array_equal(first, [_uniform(w) for w in _words(4, name="noise")])
    # two unseeded nodes of one graph: their names "#0", "#1" give them different streams
    nodes = [helper.make_node("RandomUniform", [], [out], shape=[4], dtype=T.DOUBLE) for out in ("a", "b")]
    graph = helper.make_graph(nodes, "two", [], [helper.make_tensor_value_info(n, T.DOUBLE, [4]) for n in "ab"])
    two = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    a, b = refquant.Session(two).run(None, {})
    np.testing.assert_array_equal(a, [_uniform(w) for w in _words(4, name="#0")])
    assert (a != b).all()


def test_like_forms_take_the_input_shape_and_type():
    x = np.zeros((2, 5), np.float16)
    y = _run("RandomUniformLike", {"x": x}, T.FLOAT16, {"seed": 4.0})
    assert y.dtype == np.float16 and y.shape == (2, 5)
    np.testing.assert_array_equal(y.ravel(), [np.float16(_uniform(w)) for w in _words(10, seed=4.0)])
    strings = np.empty((3,), dtype=object)
    strings[:] = ["a", "b", "c"]
    y = _run("RandomNormalLike", {"x": strings}, T.BFLOAT16, {"seed": 4.0, "dtype": T.BFLOAT16})
    assert y.dtype == np.dtype(ml_dtypes.bfloat16) and y.shape == (3,)
    with pytest.raises(DTypeError, match="RandomNormalLike '#0': input has type int32, not an output type"):
        _run("RandomNormalLike", {"x": np.zeros(3, np.int32)}, T.FLOAT)


def test_random_ops_refuse_bad_attributes_naming_the_node():
    with pytest.raises(AttributeValueError, match=r"RandomUniform '#0': low \(2.0\) must be <= high \(1.0\)"):
        _run("RandomUniform", {}, T.FLOAT, {"shape": [2], "low": 2.0, "high": 1.0})
    with pytest.raises(AttributeValueError, match="RandomNormal '#0': shape .* has a negative dimension"):
        _run("RandomNormal", {}, T.FLOAT, {"shape": [2, -1]})
    with pytest.raises(AttributeValueError, match="RandomNormal '#0': dtype 16 is not an output type"):
        _run("RandomNormal", {}, T.BFLOAT16, {"shape": [2], "dtype": T.BFLOAT16}, opset=21)
    with pytest.raises(AttributeValueError, match="RandomUniformLike '#0': dtype 6 is not an output type"):
        _run("RandomUniformLike", {"x": np.zeros(2, np.float32)}, T.INT32, {"dtype": T.INT32})


def test_bernoulli_is_u_below_p():
    p = np.array([[0.0, 1.0, 0.5, 0.25], [0.75, 0.1, 0.9, 0.5]], np.float32)
    want = [int(_uniform(w) < float(q)) for w, q in zip(_words(8, seed=9.0), p.ravel())]
    y = _run("Bernoulli", {"p": p}, T.FLOAT, {"seed": 9.0})
    assert y.dtype == np.float32 and y.shape == (2, 4)
    np.testing.assert_array_equal(y.ravel(), want)
    assert y[0, 0] == 0 and y[0, 1] == 1
    b = _run("Bernoulli", {"p": p}, T.BOOL, {"seed": 9.0, "dtype": T.BOOL})
    np.testing.assert_array_equal(b.ravel(), np.array(want, bool))
    with pytest.raises(NodeError, match=r"Bernoulli '#0': input holds 1.5; a probability is in \[0, 1\]"):
        _run("Bernoulli", {"p": np.array([0.5, 1.5], np.float32)}, T.FLOAT)


def test_multinomial_by_inverse_cdf():
    with np.errstate(divide="ignore"):  # log 0 = -inf: class 1 of row 0 is never drawn
        logits = np.log(np.array([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25]]))
    y = _run("Multinomial", {"x": logits}, T.INT64, {"seed": 2.0, "sample_size": 50, "dtype": T.INT64})
    words = _words(100, seed=2.0)
    for b in range(2):
        probs = np.exp(logits[b] - logits[b].max())
        cdf = np.cumsum(probs)
        want = [next(j for j in range(4) if cdf[j] > _uniform(w) * cdf[-1]) for w in words[50 * b:50 * b + 50]]
        np.testing.assert_array_equal(y[b], want)
    assert y.dtype == np.int64 and y.shape == (2, 50) and not (y[0] == 1).any()
    small = _run("Multinomial", {"x": np.zeros((3, 2), np.float32)}, T.INT32, {"seed": 2.0})
    assert small.dtype == np.int32 and small.shape == (3, 1)
    with pytest.raises(NodeError, match="Multinomial '#0': input must hold finite log-probabilities"):
        _run("Multinomial", {"x": np.array([[np.nan, 0.0]], np.float32)}, T.INT32)


def test_bernoulli_node_cases_shape_and_type():
    """ONNX's backend checks only shape and type for these (their values are numpy RandomState draws)."""
    cases = node_cases(r"^test_bernoulli")
    assert len(cases) == 6
    for case in cases:
        session = refquant.Session(case.model)
        for inputs, expected in case.data_sets:
            feeds = {spec.name: to_array(v) for spec, v in zip(case.model.graph.input, inputs)}
            (got,), (want,) = session.run(None, feeds), [to_array(w) for w in expected]
            assert got.dtype == want.dtype and got.shape == want.shape, case.name
            assert set(np.unique(got).tolist()) <= {0, 1}


@pytest.mark.parametrize("op", ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                                "Multinomial"])
def test_versions_are_the_schema_versions(op):
    from .helpers import assert_versions_are_the_schema_versions_from_opset_10

    assert_versions_are_the_schema_versions_from_opset_10(op)


@pytest.mark.parametrize("op", ["RandomNormal", "RandomUniform"])
def test_output_types_follow_the_schema(op):
    from refquant.ops.random import RANDOM_TYPES

    from .helpers import assert_versions_and_types_follow_the_onnx_schemas

    assert_versions_and_types_follow_the_onnx_schemas(op, RANDOM_TYPES)


def test_a_huge_shape_is_refused_before_drawing():
    from refquant.errors import ResourceLimitError

    with pytest.raises(ResourceLimitError, match=r"RandomNormal '#0': output of shape \[1000000, 1000000\]"):
        _run("RandomNormal", {}, T.FLOAT, {"shape": [10**6, 10**6]})
    with pytest.raises(ResourceLimitError, match="Multinomial '#0': output of shape"):
        _run("Multinomial", {"x": np.zeros((1000, 2), np.float32)}, T.INT32, {"sample_size": 10**9})
