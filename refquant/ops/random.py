"""The random generators (spec/ops/random.md): RandomNormal, RandomUniform, RandomNormalLike, RandomUniformLike,
Bernoulli and Multinomial, whose values ONNX does not fix.

No two backends draw the same random values, and ONNX does not ask them to (Bernoulli's text: "may not produce
the same values in different implementations (even if a seed is specified)"). refquant makes them
deterministic with a documented generator, so that a model's output is reproducible from run to run and from
one numpy version to the next:

- the bit stream: numpy's PCG64 bit generator, seeded by ``SeedSequence([0, bits])`` where ``bits`` is the
  float32 bit pattern of the ``seed`` attribute, or ``SeedSequence([1, crc32(name)])`` without a seed (the
  node's name, UTF-8; an unnamed node is "#<its index in the graph's order>"). numpy keeps the streams of its
  bit generators and of SeedSequence stable across versions (NEP 19); its Generator's distributions are not
  promised, so refquant converts the raw 64-bit words itself;
- a uniform in [0, 1): (word >> 11) * 2**-53, one word per value, in the output's C order;
- a normal: Box-Muller on two words a, b: u1 = ((a >> 11) + 1) * 2**-53 in (0, 1], u2 = (b >> 11) * 2**-53,
  r = sqrt(-2 ln u1), values r cos(2 pi u2) then r sin(2 pi u2) (float64; the last value of an odd count
  drops its sine);
- each node draws afresh from its seed at every run: two runs give the same values.
"""

from __future__ import annotations

import zlib

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype
from ..dtypes import IEEE_FLOATS, NARROW_INTS, WIDE_INTS, dtype_name, np_dtype, proto_of, types_at
from ..errors import AttributeValueError, DTypeError, NodeError, ShapeError
from ..node import Node
from ..registry import register

__all__ = ["bit_generator", "uniforms", "normals", "random_shape", "multinomial_shape"]

#: the output types of RandomNormal, RandomUniform and their Like forms (T / T2), by version
RANDOM_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}
#: Bernoulli's probabilities (T1), and Multinomial's input, by version
PROBABILITY_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}
BERNOULLI_OUTPUT_TYPES = IEEE_FLOATS + (T.BFLOAT16,) + WIDE_INTS + NARROW_INTS + (T.BOOL,)
MULTINOMIAL_OUTPUT_TYPES = (T.INT32, T.INT64)


def bit_generator(node: Node) -> np.random.PCG64:
    """The node's PCG64 bit generator, fresh: seeded by the seed attribute's float32 bits, or by its name."""
    if node.has("seed"):
        bits = int(np.float32(node.attr("seed", kind=float)).view(np.uint32))
        entropy = [0, bits]
    else:
        entropy = [1, zlib.crc32(node.name.encode("utf-8"))]
    return np.random.PCG64(np.random.SeedSequence(entropy))


def uniforms(bits: np.random.PCG64, count: int) -> np.ndarray:
    """``count`` float64 uniforms in [0, 1): the top 53 bits of one 64-bit word each."""
    return (bits.random_raw(count) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def normals(bits: np.random.PCG64, count: int) -> np.ndarray:
    """``count`` float64 standard normals by Box-Muller, two words per pair of values."""
    pairs = (count + 1) // 2
    words = bits.random_raw(2 * pairs) >> np.uint64(11)
    u1 = (words[0::2].astype(np.float64) + 1.0) * 2.0**-53
    u2 = words[1::2].astype(np.float64) * 2.0**-53
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.empty(2 * pairs, np.float64)
    z[0::2] = r * np.cos(2 * np.pi * u2)
    z[1::2] = r * np.sin(2 * np.pi * u2)
    return z[:count]


def _out_type(node: Node, default: int, allowed) -> np.dtype:
    to = node.attr("dtype", default, int)
    if to not in allowed:
        raise AttributeValueError(f"dtype {to} is not an output type of {node.op_type} at this opset")
    return np_dtype(to)


def random_shape(node: Node, like=None) -> tuple[int, ...]:
    """The output shape: the ``shape`` attribute (RandomNormal, RandomUniform) or the input's (the Like forms)."""
    if like is not None:
        return tuple(like.shape)
    shape = node.attr_ints("shape")
    if any(d < 0 for d in shape):
        raise AttributeValueError(f"shape {shape} has a negative dimension")
    return tuple(shape)


def _draw(node: Node, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    bits = bit_generator(node)
    if node.op_type.startswith("RandomNormal"):
        mean, scale = node.attr("mean", 0.0, float), node.attr("scale", 1.0, float)
        values = mean + scale * normals(bits, count)
    else:
        low, high = node.attr("low", 0.0, float), node.attr("high", 1.0, float)
        if not low <= high:
            raise AttributeValueError(f"low ({low}) must be <= high ({high})")
        values = low + (high - low) * uniforms(bits, count)
    return np.asarray(arith.narrow(values.reshape(shape), dtype))


@register("RandomNormal", since=(1, 22))
def random_normal(node: Node):
    """mean + scale * z, z standard normals (module docstring), rounded once to ``dtype`` (float by default)."""
    return (_draw(node, random_shape(node), _out_type(node, T.FLOAT, types_at(RANDOM_TYPES, node.version))),)


@register("RandomUniform", since=(1, 22))
def random_uniform(node: Node):
    """low + (high - low) * u, u uniform in [0, 1) (module docstring), rounded once to ``dtype`` (float by
    default; the rounding can reach ``high``)."""
    return (_draw(node, random_shape(node), _out_type(node, T.FLOAT, types_at(RANDOM_TYPES, node.version))),)


def _like_type(node: Node, x) -> np.dtype:
    allowed = types_at(RANDOM_TYPES, node.version)
    if node.has("dtype"):
        return _out_type(node, T.FLOAT, allowed)
    if not any(x.dtype == np_dtype(t) for t in allowed):
        raise DTypeError(f"input has type {dtype_name(x.dtype)}, not an output type: set the dtype attribute")
    return x.dtype


@register("RandomNormalLike", since=(1, 22))
def random_normal_like(node: Node, x):
    """RandomNormal with the input's shape; ``dtype``, or the input's type."""
    x = np.asarray(x)
    return (_draw(node, random_shape(node, x), _like_type(node, x)),)


@register("RandomUniformLike", since=(1, 22))
def random_uniform_like(node: Node, x):
    """RandomUniform with the input's shape; ``dtype``, or the input's type."""
    x = np.asarray(x)
    return (_draw(node, random_shape(node, x), _like_type(node, x)),)


@register("Bernoulli", since=(15, 22))
def bernoulli(node: Node, x):
    """1 where u < p (u uniform in [0, 1), one per element in C order), else 0, of ``dtype`` (default: the
    input's type). A probability outside [0, 1] (or NaN) is refused."""
    require_dtype(x, types_at(PROBABILITY_TYPES, node.version), "input")
    dtype = _out_type(node, proto_of(x.dtype), BERNOULLI_OUTPUT_TYPES)
    p = x.astype(np.float64)
    outside = ~((p >= 0) & (p <= 1))
    if outside.any():
        raise NodeError(f"input holds {p[outside][0]}; a probability is in [0, 1]")
    return ((uniforms(bit_generator(node), x.size).reshape(x.shape) < p).astype(dtype),)


def multinomial_shape(node: Node, x) -> tuple[int, int]:
    """(batch size, sample_size), checked."""
    if x.ndim != 2 or x.shape[1] < 1:
        raise ShapeError(f"input must be [batch_size, class_size] with class_size >= 1, got shape {list(x.shape)}")
    samples = node.attr("sample_size", 1, int)
    if samples < 0:
        raise AttributeValueError(f"sample_size must be >= 0, got {samples}")
    return x.shape[0], samples


@register("Multinomial", since=(7, 22))
def multinomial(node: Node, x):
    """sample_size classes per row of the unnormalized log-probabilities x: p = exp(x - max of the row) (float64),
    c its running sum; sample s of row b takes uniform u number b * sample_size + s and is the first class
    whose c exceeds u * c[-1]. int32 by default (``dtype``)."""
    require_dtype(x, types_at(PROBABILITY_TYPES, node.version), "input")
    batch, samples = multinomial_shape(node, x)
    dtype = _out_type(node, T.INT32, MULTINOMIAL_OUTPUT_TYPES)
    logits = x.astype(np.float64)
    if np.isnan(logits).any() or np.isposinf(logits).any() or np.isneginf(logits).all(axis=1).any():
        raise NodeError("input must hold finite log-probabilities (or -inf), with a finite one in every row")
    cdf = np.cumsum(np.exp(logits - logits.max(axis=1, keepdims=True)), axis=1)
    u = uniforms(bit_generator(node), batch * samples).reshape(batch, samples)
    out = np.empty((batch, samples), np.int64)
    for b in range(batch):
        out[b] = np.searchsorted(cdf[b], u[b] * cdf[b, -1], side="right")
    return (np.minimum(out, x.shape[1] - 1).astype(dtype),)
