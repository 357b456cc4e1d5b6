"""Hypothesis strategies for quantization tests: parameters, tie-hitting tensors, whole models.

Import them into your own test suite (hypothesis is an optional dependency;
refquant itself never imports this module)::

    from hypothesis import given
    from refquant.backends import strategies as rqs

    @given(rqs.qlinear_conv_models())
    def test_my_engine_matches_refquant(case):
        expected = refquant.Session(case.model).run(None, case.feeds)
        ...

Parameters:
    :func:`quantized_types`, :func:`scales` (every magnitude, subnormal to
    huge, and "nice" decimal scales such as 0.1 whose float32 quotients tie),
    :func:`zero_points`.
Tensors:
    :func:`tie_tensors` puts x / scale exactly on (or one ulp beside) the
    half-way points that round-half-to-even decides; :func:`quantized_tensors`.
Models (each draws a :class:`DrawnModel`, a valid ``onnx.ModelProto`` and its feeds):
    :func:`quantize_linear_models`, :func:`dequantize_linear_models`,
    :func:`dynamic_quantize_linear_models`, :func:`qlinear_conv_models`,
    :func:`qlinear_matmul_models`, :func:`matmul_integer_models`,
    :func:`conv_integer_models`, :func:`qdq_models` (DQ -> op -> Q chains).

Every model strategy takes ``opset`` (the ai.onnx version the model imports);
the choices it draws are those that opset allows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import ml_dtypes
import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from onnx import ModelProto, helper, numpy_helper, shape_inference
from onnx import TensorProto as T

from refquant.dtypes import np_dtype, proto_of, qtype, types_at
from refquant.ops.quantize import QUANTIZED_TYPES
from refquant.window import same_total

__all__ = [
    "DrawnModel",
    "FLAVORS",
    "quantized_types",
    "scales",
    "zero_points",
    "tie_tensors",
    "quantized_tensors",
    "conv_geometries",
    "ConvGeometry",
    "quantize_linear_models",
    "dequantize_linear_models",
    "dynamic_quantize_linear_models",
    "qlinear_conv_models",
    "qlinear_matmul_models",
    "matmul_integer_models",
    "conv_integer_models",
    "qdq_models",
]

#: Activation and weight types of the four integer quantization flavours.
FLAVORS = {
    "U8U8": (T.UINT8, T.UINT8),
    "U8S8": (T.UINT8, T.INT8),
    "S8S8": (T.INT8, T.INT8),
    "S8U8": (T.INT8, T.UINT8),
}
_INTEGER_8 = (T.UINT8, T.INT8)
_FLOAT8 = (T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ)

#: Mantissas of decimal scales (0.1, 0.25, 0.003, ...): their float32 values are inexact,
#: so x / scale lands on float32 half-way points that exact arithmetic would not.
_DECIMAL_MANTISSAS = (1, 2, 2.5, 3, 5, 7.5)
#: Denominators of scales computed as range / (qmax - qmin).
_LEVELS = (255, 254, 127, 65535, 15, 7)


class DrawnModel(NamedTuple):
    """What a model strategy draws: a model and feeds for every graph input it needs."""

    model: ModelProto
    feeds: dict[str, np.ndarray]


def __getattr__(name: str):
    """``Case``, this type's old name (conformance has a Case of its own): still importable, with a warning."""
    if name == "Case":
        warnings.warn(
            "refquant.backends.strategies.Case is now DrawnModel", DeprecationWarning, stacklevel=2
        )
        return DrawnModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- parameters ------------------------------------------------------------------------------------


def _require_opset(opset: int, since: int, what: str) -> None:
    if opset < since:
        raise InvalidArgument(f"{what} needs opset >= {since}, got opset={opset}")


def quantized_types(opset: int = 21, *, include: Sequence[int] | None = None) -> st.SearchStrategy[int]:
    """TensorProto element types QuantizeLinear/DequantizeLinear accept at ``opset`` (optionally only ``include``)."""
    allowed = sorted(types_at(QUANTIZED_TYPES, opset))
    if include is not None:
        allowed = [t for t in allowed if t in set(include)]
    if not allowed:
        raise InvalidArgument(f"none of {include} is a quantized type at opset {opset}")
    return st.sampled_from(allowed)


def _positive_finite(dtype: np.dtype) -> tuple[float, float]:
    info = ml_dtypes.finfo(dtype)
    return float(info.smallest_subnormal), float(info.max)


def scales(
    dtype=np.float32, *, min_value: float | None = None, max_value: float | None = None
) -> st.SearchStrategy[np.generic]:
    """Positive finite scales of ``dtype``, clamped to [min_value, max_value].

    A mix of decimal scales (``m * 10**e``), powers of two (exact division),
    range / levels scales as calibration computes them, the type's extremes
    (smallest subnormal, smallest normal, largest) and arbitrary floats.
    """
    dtype = np.dtype(dtype)
    low, high = _positive_finite(dtype)
    low = max(low, min_value or 0.0)
    high = min(high, max_value or math.inf)
    if not 0 < low <= high:
        raise InvalidArgument(f"no positive finite {dtype} scale lies in [{min_value}, {max_value}]")
    info = ml_dtypes.finfo(dtype)
    candidates = st.one_of(
        st.builds(lambda m, e: m * 10.0**e, st.sampled_from(_DECIMAL_MANTISSAS), st.integers(-8, 4)),
        st.integers(-30, 30).map(lambda e: 2.0**e),
        st.builds(lambda r, n: r / n, st.floats(1e-3, 1e3), st.sampled_from(_LEVELS)),
        st.sampled_from([float(info.smallest_subnormal), float(info.tiny), float(info.max)]),
        st.floats(low, high, allow_nan=False, allow_infinity=False),
    )
    # clamping to representable bounds keeps every value positive and finite after rounding to dtype
    return candidates.map(lambda v: np.asarray(min(max(v, low), high), dtype=np.float64).astype(dtype)[()])


def zero_points(element_type: int, *, nonzero_float: bool = False) -> st.SearchStrategy[np.generic]:
    """Zero points of a quantized type: the range ends, its middle and anything between; 0 for float types."""
    qt = qtype(element_type)
    if qt.is_float:
        values = st.sampled_from([0.0, 1.0, -1.0]) if nonzero_float else st.just(0.0)
    else:
        middle = (int(qt.qmin) + int(qt.qmax) + 1) // 2
        values = st.one_of(
            st.sampled_from(sorted({0, int(qt.qmin), int(qt.qmax), middle})), st.integers(int(qt.qmin), int(qt.qmax))
        )
    return values.map(lambda v: np.asarray(v).astype(qt.dtype)[()])


# -- tensors ---------------------------------------------------------------------------------------


def _float_grid(dtype: np.dtype) -> np.ndarray:
    """Every finite value of a float type of at most 8 bits, sorted."""
    bits = ml_dtypes.finfo(dtype).bits
    values = np.arange(2**bits, dtype=np.uint8).view(dtype).astype(np.float64)
    return np.unique(values[np.isfinite(values)])


def _preimage(targets: np.ndarray, scale: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """x of ``dtype`` with x / scale (computed in ``dtype``) == target where one of the nearest candidates gives it."""
    largest = float(ml_dtypes.finfo(dtype).max)
    x = np.clip(targets * scale.astype(np.float64), -largest, largest).astype(dtype)
    best = x.copy()
    found = np.asarray(x / scale).astype(np.float64) == targets
    up, down = x, x
    for _ in range(2):
        up = np.nextafter(up, np.asarray(np.inf, dtype))
        down = np.nextafter(down, np.asarray(-np.inf, dtype))
        for candidate in (up, down):
            hit = ~found & (np.asarray(candidate / scale).astype(np.float64) == targets)
            best = np.where(hit, candidate, best)
            found |= hit
    return best


@st.composite
def tie_tensors(
    draw,
    shape: Sequence[int],
    scale,
    zero_point=None,
    element_type: int = T.UINT8,
    *,
    axis: int | None = None,
    dtype=None,
    edges: bool = False,
) -> np.ndarray:
    """x (of the scale's type, or ``dtype``) whose x / scale sits on the rounding decisions of QuantizeLinear.

    Most elements make x / scale exactly a half-way point (k + 0.5 for
    integer types, the midpoint of two neighbours for float types), others
    sit one ulp below or above it, or on a representable value; the values
    reach a little past both saturation bounds. ``scale`` and ``zero_point``
    broadcast against ``shape``, or are 1-D along ``axis``. ``edges`` (integer
    types) puts every x / scale + zero point on the saturation edges instead:
    qmin - 1, qmin, qmax, qmax + 1 and the ties qmin +- 0.5, qmax +- 0.5.
    """
    shape = tuple(shape)
    scale, zero_point = np.asarray(scale), np.asarray(0 if zero_point is None else zero_point)
    dtype = np.dtype(dtype or scale.dtype)
    if axis is not None:
        along = [1] * len(shape)
        along[axis] = -1
        scale = scale.reshape(along)
        zero_point = zero_point.reshape(along) if zero_point.ndim else zero_point
    scale = np.broadcast_to(scale.astype(dtype), shape)
    zero_point = np.broadcast_to(zero_point.astype(np.float64), shape)
    qt = qtype(element_type)
    kinds = draw(hnp.arrays(np.int8, shape, elements=st.sampled_from([0, 0, 0, 1, 2, 3])))
    if qt.is_float:
        grid = _float_grid(qt.dtype)
        index = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, len(grid) - 2)))
        targets = np.where(kinds == 3, grid[index], (grid[index] + grid[index + 1]) / 2) - zero_point
    elif edges:
        ends = np.array([qt.qmin - 1, qt.qmin, qt.qmax, qt.qmax + 1], np.float64)
        end = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 3)))
        offset = np.where(kinds == 3, 0.0, np.where(end % 2, 0.5, -0.5))  # the ties just inside/outside
        targets = ends[end] + offset - zero_point
    else:
        low = int(qt.qmin) - int(zero_point.max(initial=0)) - 2
        high = int(qt.qmax) - int(zero_point.min(initial=0)) + 2
        k = draw(hnp.arrays(np.int64, shape, elements=st.integers(low, high)))
        targets = np.where(kinds == 3, k, k + 0.5)
    with np.errstate(all="ignore"):  # preimages past the type's range are clipped to it
        x = _preimage(targets.astype(np.float64), scale, dtype)
        x = np.where(kinds == 1, np.nextafter(x, np.asarray(-np.inf, dtype)), x)
        x = np.where(kinds == 2, np.nextafter(x, np.asarray(np.inf, dtype)), x)
    largest = float(ml_dtypes.finfo(dtype).max)
    return np.clip(x.astype(np.float64), -largest, largest).astype(dtype).reshape(shape)


def quantized_tensors(shape: Sequence[int], element_type: int) -> st.SearchStrategy[np.ndarray]:
    """Arrays of a quantized type over its whole range (finite values for float types)."""
    qt = qtype(element_type)
    if qt.is_float:
        grid = _float_grid(qt.dtype)
        return hnp.arrays(np.int64, tuple(shape), elements=st.integers(0, len(grid) - 1)).map(
            lambda i: grid[i].astype(qt.dtype)
        )
    return hnp.arrays(np.int64, tuple(shape), elements=st.integers(int(qt.qmin), int(qt.qmax))).map(
        lambda v: v.astype(qt.dtype)
    )


#: what QuantizeLinear's x holds: ties (x / scale on k + 0.5), saturation edges, arbitrary floats, or any of them
VALUE_KINDS = ("any", "ties", "edges", "arbitrary")


def _float_inputs(shape, scale, zero_point, element_type, dtype, values: str = "any"):
    """Tie-hitting values (``scale``/``zero_point`` broadcast against ``shape``) mixed with arbitrary floats."""
    if values not in VALUE_KINDS:
        raise InvalidArgument(f"values must be one of {VALUE_KINDS}, got {values!r}")
    finite = hnp.arrays(np.float32, tuple(shape), elements=st.floats(-1e4, 1e4, width=32)).map(
        lambda x: x.astype(dtype)
    )
    ties = tie_tensors(shape, scale, zero_point, element_type, dtype=dtype)
    edges = tie_tensors(shape, scale, zero_point, element_type, dtype=dtype, edges=True)
    return {"any": st.one_of(ties, finite, edges), "ties": ties, "edges": edges, "arbitrary": finite}[values]


def _expand(param: np.ndarray, shape: tuple[int, ...], axis: int | None, block: int) -> np.ndarray:
    """A per-tensor, per-axis or blocked parameter repeated to broadcast against ``shape``."""
    if axis is None:
        return param
    if block:
        return np.repeat(param, block, axis=axis).take(range(shape[axis]), axis=axis)
    along = [1] * len(shape)
    along[axis] = -1
    return param.reshape(along)


# -- model building --------------------------------------------------------------------------------


def _model(nodes, inputs: dict, initializers: dict, outputs: dict[str, int], opset: int, name: str) -> DrawnModel:
    """A model with ``inputs`` as graph inputs (fed) and ``initializers`` as constants."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, proto_of(v.dtype), list(v.shape)) for n, v in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    inferred = shape_inference.infer_shapes(model)  # declares the output shapes
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return DrawnModel(model, {n: np.asarray(v) for n, v in inputs.items()})


def _present(names: list[str], given: set[str]) -> list[str]:
    """Node input names with "" for the optional inputs not ``given``, trailing ones dropped."""
    named = [name if name in given else "" for name in names]
    while named and not named[-1]:
        named.pop()
    return named


def _shapes(min_rank: int = 0, max_rank: int = 4, max_side: int = 5):
    return hnp.array_shapes(min_dims=min_rank, max_dims=max_rank, min_side=1, max_side=max_side)


def _scale_array(draw, dtype, count: int | None, **bounds) -> np.ndarray:
    """A scalar scale, or ``count`` of them (1-D)."""
    if count is None:
        return np.asarray(draw(scales(dtype, **bounds)))
    return np.asarray([draw(scales(dtype, **bounds)) for _ in range(count)])


def _zero_point_array(draw, element_type: int, count: int | None) -> np.ndarray:
    if count is None:
        return np.asarray(draw(zero_points(element_type)))
    return np.asarray([draw(zero_points(element_type)) for _ in range(count)])


GRANULARITIES = ("tensor", "axis", "block")


def _granularity(
    draw, opset: int, shape: tuple[int, ...], *, blocked: bool, granularities: Sequence[str] | None = None,
    negative_axis: bool | None = None,
) -> tuple[int | None, int, tuple[int, ...]]:
    """(axis, block_size, parameter shape): per-tensor, per-axis (opset >= 13) or blocked (opset >= 21).

    ``granularities`` narrows the kinds (those impossible for the shape or opset fall back to
    per-tensor); ``negative_axis`` True/False writes the axis as -rank..-1 / 0..rank-1 (None: either).
    """
    choices = ["tensor"]
    if shape and opset >= 13:
        choices.append("axis")
    if shape and blocked and opset >= 21:
        choices.append("block")
    if granularities is not None:
        choices = [c for c in choices if c in granularities] or ["tensor"]
    kind = draw(st.sampled_from(choices))
    if kind == "tensor":
        return None, 0, ()
    if negative_axis is None:
        axis = draw(st.integers(-len(shape), len(shape) - 1))
    else:
        axis = draw(st.integers(0, len(shape) - 1)) - (len(shape) if negative_axis else 0)
    if kind == "axis":
        return axis, 0, (shape[axis],)
    block = draw(st.integers(1, max(1, shape[axis])))
    params = list(shape)
    params[axis] = -(-shape[axis] // block)
    return axis, block, tuple(params)


def _draw_params(draw, dtype, element_type: int, params_shape: tuple[int, ...], **bounds):
    """Scale and zero point arrays of ``params_shape``."""
    count = int(np.prod(params_shape, dtype=np.int64)) if params_shape else None
    scale = _scale_array(draw, dtype, count, **bounds)
    zero_point = _zero_point_array(draw, element_type, count)
    return scale.reshape(params_shape), zero_point.reshape(params_shape)


def _q_input_types(opset: int) -> list[int]:
    return [T.FLOAT] + ([T.FLOAT16, T.BFLOAT16] if opset >= 19 else [])


# -- QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear --------------------------------------


def _allowed(candidates: Sequence[int], wanted: Sequence[int] | None, what: str) -> st.SearchStrategy[int]:
    allowed = [t for t in candidates if wanted is None or t in wanted]
    if not allowed:
        raise InvalidArgument(f"none of {wanted} is a possible {what} here (possible: {list(candidates)})")
    return st.sampled_from(allowed)


@st.composite
def quantize_linear_models(
    draw,
    opset: int = 21,
    *,
    element_types: Sequence[int] | None = None,
    input_types: Sequence[int] | None = None,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
    blocked: bool = True,
    granularities: Sequence[str] | None = None,
    negative_axis: bool | None = None,
    values: str = "any",
    scale_bounds: dict | None = None,
) -> DrawnModel:
    """One QuantizeLinear: x (graph input) -> y, scale and zero point as initializers.

    Draws the output type, x's type (float; float16/bfloat16 from opset 19;
    the scale has x's type), per-tensor / per-axis / blocked parameters,
    whether the zero point is given (without it, ``output_dtype`` names the
    type from opset 21, else the output is uint8) and ``saturate`` for float8.
    ``granularities`` and ``negative_axis`` narrow the parameters' layout
    (:data:`GRANULARITIES`), ``values`` what x holds (:data:`VALUE_KINDS`),
    ``scale_bounds`` (min_value, max_value) the scales.
    """
    _require_opset(opset, 10, "QuantizeLinear")
    element_type = draw(quantized_types(opset, include=element_types))
    x_type = draw(_allowed(_q_input_types(opset), input_types, "x type"))
    shape = draw(_shapes() if shapes is None else shapes)
    axis, block, params_shape = _granularity(
        draw, opset, shape, blocked=blocked, granularities=granularities, negative_axis=negative_axis
    )
    scale, zero_point = _draw_params(draw, np_dtype(x_type), element_type, params_shape, **(scale_bounds or {}))
    x = draw(
        _float_inputs(
            shape,
            _expand(scale, shape, axis, block),
            _expand(zero_point, shape, axis, block),
            element_type,
            np_dtype(x_type),
            values,
        )
    )
    attrs = {"axis": axis} if axis is not None else {}
    if block:
        attrs["block_size"] = block
    if qtype(element_type).is_float and draw(st.booleans()):
        attrs["saturate"] = draw(st.sampled_from([0, 1]))
    initializers = {"y_scale": scale, "y_zero_point": zero_point}
    if (element_type == T.UINT8 or opset >= 21) and draw(st.booleans()):
        del initializers["y_zero_point"]
        if element_type != T.UINT8:
            attrs["output_dtype"] = element_type
    node = helper.make_node("QuantizeLinear", ["x", *initializers], ["y"], **attrs)
    return _model([node], {"x": x}, initializers, {"y": element_type}, opset, "quantize_linear")


@st.composite
def dequantize_linear_models(
    draw,
    opset: int = 21,
    *,
    element_types: Sequence[int] | None = None,
    scale_types: Sequence[int] | None = None,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
    blocked: bool = True,
    granularities: Sequence[str] | None = None,
    negative_axis: bool | None = None,
    zero_point: bool | None = None,
) -> DrawnModel:
    """One DequantizeLinear: x (graph input: a quantized type, or int32) -> y.

    Draws per-tensor / per-axis / blocked parameters, the scale's type
    (float; float16/bfloat16 from opset 19) and whether the zero point is
    given (never for int32, which has none; ``zero_point`` True/False decides
    for the others). int32 x is mostly beyond 2**24 in magnitude, where the
    product with the scale rounds. ``granularities``, ``negative_axis``: as
    for :func:`quantize_linear_models`.
    """
    _require_opset(opset, 10, "DequantizeLinear")
    candidates = sorted(types_at(QUANTIZED_TYPES, opset)) + [T.INT32]
    element_type = draw(_allowed(candidates, element_types, "x type"))
    scale_type = draw(_allowed(_q_input_types(opset), scale_types, "scale type"))
    shape = draw(_shapes() if shapes is None else shapes)
    axis, block, params_shape = _granularity(
        draw, opset, shape, blocked=blocked, granularities=granularities, negative_axis=negative_axis
    )
    if element_type == T.INT32:
        x = draw(hnp.arrays(np.int32, shape, elements=st.integers(-(2**31), 2**31 - 1)))
    else:
        x = draw(quantized_tensors(shape, element_type))
    scale, zero_point_value = _draw_params(draw, np_dtype(scale_type), element_type, params_shape)
    attrs = {"axis": axis} if axis is not None else {}
    if block:
        attrs["block_size"] = block
    initializers = {"x_scale": scale}
    if element_type != T.INT32 and (draw(st.booleans()) if zero_point is None else zero_point):
        initializers["x_zero_point"] = zero_point_value
    node = helper.make_node("DequantizeLinear", ["x", *initializers], ["y"], **attrs)
    return _model([node], {"x": x}, initializers, {"y": scale_type}, opset, "dequantize_linear")


def _dynamic_zero_point(x_min: np.float32, x_max: np.float32) -> np.float32:
    """DynamicQuantizeLinear's intermediate zero point, in the ONNX function's float32 steps."""
    scale = (np.float32(max(x_max, 0)) - np.float32(min(x_min, 0))) / np.float32(255)
    return np.float32(0) - np.float32(min(x_min, 0)) / scale


@st.composite
def _dynamic_zero_point_ties(draw, shape: tuple[int, ...]) -> np.ndarray:
    """x whose intermediate zero point is exactly k + 0.5 in float32 (round half to even decides it).

    min(x) = -(2k + 1) t and max(x) = (509 - 2k) t make the exact zero point 255 (2k + 1) / 510
    = k + 0.5; t a power of two keeps every float32 step exact, t = 1 / (2k + 1) (min(x) = -1; k = 42
    is x = [-1, 5]) and decimal t make the ties float32 roundings. The other elements lie in between.
    """
    k = draw(st.integers(0, 254))
    t = draw(
        st.one_of(
            st.integers(-6, 6).map(lambda e: 2.0**e),
            st.just(1.0 / (2 * k + 1)),
            st.sampled_from([0.1, 0.3, 0.01, 1 / 3, 1 / 7]),
        )
    )
    low, high = np.float32(-(2 * k + 1) * t), np.float32((509 - 2 * k) * t)
    if _dynamic_zero_point(low, high) != np.float32(k + 0.5):  # a decimal t that missed: exact one
        low, high = np.float32(-(2 * k + 1)), np.float32(509 - 2 * k)
    x = draw(hnp.arrays(np.float32, shape, elements=st.floats(float(low), float(high), width=32)))
    flat = x.reshape(-1)
    first, second = draw(st.permutations(range(flat.size)))[:2] if flat.size > 1 else (0, None)
    flat[first] = low
    if second is None:
        flat[first] = high if draw(st.booleans()) else low  # one element: a one-sided range
    else:
        flat[second] = high
    return x


@st.composite
def dynamic_quantize_linear_models(
    draw, opset: int = 21, *, shapes: st.SearchStrategy[tuple[int, ...]] | None = None, values: str = "any"
) -> DrawnModel:
    """One DynamicQuantizeLinear: float32 x -> (y uint8, y_scale, y_zero_point).

    x mixes arbitrary floats, all-zero and constant tensors, ranges on one
    side of zero, values on the ties of a decimal-scale grid, and ranges whose
    intermediate zero point is a tie (k + 0.5). ``values``: "any", or only one
    kind: "arbitrary", "constant", "one-sided", "ties", "zero-point-ties".
    """
    _require_opset(opset, 11, "DynamicQuantizeLinear")
    shape = draw(_shapes(min_rank=1) if shapes is None else shapes)
    arbitrary = hnp.arrays(np.float32, shape, elements=st.floats(-1e4, 1e4, width=32))
    constant = st.floats(-10, 10, width=32).map(lambda v: np.full(shape, v, np.float32))
    one_sided = arbitrary.map(np.abs) | arbitrary.map(lambda x: -np.abs(x))
    ties = scales(np.float32, min_value=1e-3, max_value=1.0).flatmap(
        lambda scale: tie_tensors(shape, scale, np.uint8(128), T.UINT8)
    )
    kinds = {
        "arbitrary": arbitrary,
        "constant": constant,
        "one-sided": one_sided,
        "ties": ties,
        "zero-point-ties": _dynamic_zero_point_ties(shape),
    }
    if values != "any" and values not in kinds:
        raise InvalidArgument(f"values must be 'any' or one of {list(kinds)}, got {values!r}")
    x = draw(st.one_of(*kinds.values()) if values == "any" else kinds[values])
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "y_scale", "y_zero_point"])
    outputs = {"y": T.UINT8, "y_scale": T.FLOAT, "y_zero_point": T.UINT8}
    return _model([node], {"x": x}, {}, outputs, opset, "dynamic_quantize_linear")


# -- convolution geometry ----------------------------------------------------------------------------


class ConvGeometry(NamedTuple):
    """Shapes and attributes of one convolution."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    attrs: dict


@st.composite
def conv_geometries(
    draw,
    *,
    spatial_ranks: Sequence[int] = (1, 2, 3),
    depthwise: bool | None = None,
    max_channels: int = 3,
    kernel_shapes: bool = True,
    auto_pads: Sequence[str] = ("NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"),
    same_dilations: bool = True,
) -> ConvGeometry:
    """Input/weight shapes and Conv attributes with at least one output element.

    Draws 1-D/2-D/3-D convolutions, groups (``depthwise``: one input channel
    per group; None: either), kernels up to 3, strides, dilations, explicit
    pads or each ``auto_pad`` mode, and whether defaulted attributes are
    written out (``kernel_shapes=False`` sometimes leaves kernel_shape to be
    inferred from w). ``auto_pads``: the modes to draw from (NOTSET: explicit
    pads); ``same_dilations=False`` keeps dilations at 1 with SAME_UPPER/SAME_LOWER
    (onnxruntime refuses that combination).
    """
    rank = draw(st.sampled_from(list(spatial_ranks)))
    is_depthwise = draw(st.booleans()) if depthwise is None else depthwise
    group = draw(st.integers(1, max_channels))
    channels_per_group = 1 if is_depthwise else draw(st.integers(1, max_channels))
    maps_per_group = draw(st.integers(1, max_channels))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    auto_pad = draw(st.sampled_from(list(auto_pads)))
    same = auto_pad in ("SAME_UPPER", "SAME_LOWER")
    dilations = [1 if same and not same_dilations else draw(st.integers(1, 2)) for _ in range(rank)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    pads = [0] * (2 * rank)
    if auto_pad == "NOTSET":  # pads smaller than the kernel, as onnxruntime's pooling requires
        pads = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    spatial = [
        draw(st.integers(max(1, e - pads[i] - pads[i + rank]) if auto_pad != "VALID" else e, e + 4))
        for i, e in enumerate(extent)
    ]
    attrs: dict = {}
    if kernel_shapes or draw(st.booleans()):
        attrs["kernel_shape"] = kernel
    for name, value, default in (("strides", strides, 1), ("dilations", dilations, 1)):
        if any(v != default for v in value) or draw(st.booleans()):
            attrs[name] = value
    if auto_pad != "NOTSET" or draw(st.booleans()):
        attrs["auto_pad"] = auto_pad
    if auto_pad == "NOTSET" and (any(pads) or draw(st.booleans())):
        attrs["pads"] = pads
    if group > 1 or draw(st.booleans()):
        attrs["group"] = group
    batch = draw(st.integers(1, 2))
    x_shape = (batch, group * channels_per_group, *spatial)
    w_shape = (group * maps_per_group, channels_per_group, *kernel)
    return ConvGeometry(x_shape, w_shape, attrs)


# -- integer operators -------------------------------------------------------------------------------

#: Scales of the integer operators: wide, but clear of overflow in x_scale * w_scale / y_scale.
_OPERATOR_SCALES = {"min_value": 2.0**-20, "max_value": 2.0**10}


#: (x, w, y) types of the 8-bit integer products that onnxruntime's CPU kernels (and most engines) run
COMMON_PRODUCT_TYPES = ((T.UINT8, T.UINT8, T.UINT8), (T.UINT8, T.INT8, T.UINT8), (T.INT8, T.INT8, T.INT8))


def _product_types(draw, combos: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """One of ``combos``: four times in five one of the common 8-bit integer ones among them, else any."""
    common = [c for c in combos if tuple(c) in COMMON_PRODUCT_TYPES]
    if common and draw(st.integers(0, 4)) < 4:
        return draw(st.sampled_from(common))
    return draw(st.sampled_from(list(combos)))


#: what the integer operators' inputs hold: "any" (the whole range) or "ties" (values near their zero
#: points, integer types, an output scale making the requantization multiplier 2**-e, so that odd
#: accumulators land on k + 0.5: exactly in float64 for power-of-two scales, in float32 only for decimal
#: ones, and an odd output zero point, so that adding it before or after rounding the tie differs)
PRODUCT_VALUES = ("any", "ties")


def _product_operand(draw, shape, element_type: int, zero_point, values: str, along: int | None = None):
    """A quantized operand: the whole range, or (``values="ties"``) zero point +- 3."""
    if values == "any" or qtype(element_type).is_float:
        return draw(quantized_tensors(shape, element_type))
    qt = qtype(element_type)
    zp = np.asarray(zero_point).astype(np.int64)
    if zp.ndim and along is not None:
        view = [1] * len(shape)
        view[along] = -1
        zp = zp.reshape(view)
    offsets = draw(hnp.arrays(np.int64, tuple(shape), elements=st.integers(-3, 3)))
    return np.clip(offsets + zp, int(qt.qmin), int(qt.qmax)).astype(qt.dtype)


def _tie_output_zero_point(draw, element_type: int) -> np.generic:
    """An odd output zero point at least 16 steps from the type's ends: where round(real) + zp and
    round(real + zp) differ on a tie real = k + 1/2 (requantize_zero_point), without saturating."""
    qt = qtype(element_type)
    if qt.is_float:
        return draw(zero_points(element_type))
    odd = draw(st.integers((int(qt.qmin) + 16) // 2, (int(qt.qmax) - 17) // 2)) * 2 + 1
    return np.asarray(odd).astype(qt.dtype)[()]


def _tie_input_scales(draw, *scales: np.ndarray) -> tuple[np.ndarray, ...]:
    """The operands' scales for requantization ties: as drawn (their product is then mostly inexact in
    float32, so the ties are float32 ties only, where float32 and float64 requantization differ), or,
    half the time, each rounded to 4 significant bits, so that their product is exact in every scale type
    and the ties are exact in float64 too, where the zero point's place decides."""
    if draw(st.booleans()):
        return scales
    rounded = []
    for scale in scales:
        mantissa, exponent = np.frexp(np.asarray(scale, np.float64))
        rounded.append(np.ldexp(np.round(mantissa * 16) / 16, exponent).astype(np.asarray(scale).dtype))
    return tuple(rounded)


def _tie_output_scale(draw, product_scale: float, dtype=np.float32) -> np.ndarray:
    """y_scale = product_scale * 2**e (e in 1..3) rounded to ``dtype``: the multiplier is 2**-e (exactly
    in ``dtype``, and in float64 too when product_scale is)."""
    info = ml_dtypes.finfo(dtype)
    rounded = float(np.asarray(product_scale, np.float64).astype(dtype))
    value = np.clip(rounded * 2.0 ** draw(st.integers(1, 3)), float(info.tiny), float(info.max))
    return np.asarray(value).astype(dtype)


def _flavor_types(draw, flavors: Sequence[str] | None) -> tuple[int, int]:
    names = list(FLAVORS) if flavors is None else list(flavors)
    unknown = set(names) - set(FLAVORS)
    if unknown:
        raise InvalidArgument(f"unknown flavor(s) {sorted(unknown)}; known: {list(FLAVORS)}")
    return FLAVORS[draw(st.sampled_from(names))]


def _output_scale(draw, product_scale: float, exponents: tuple[int, int] = (0, 14), dtype=np.float32) -> np.ndarray:
    """An output scale near ``product_scale * 2**e`` (decimal or arbitrary mantissa), so that
    requantized values land inside the output range rather than all saturating."""
    exponent = draw(st.integers(*exponents))
    mantissa = draw(st.one_of(st.sampled_from(_DECIMAL_MANTISSAS), st.floats(1, 10)))
    info = ml_dtypes.finfo(dtype)
    value = np.clip(product_scale * mantissa * 2.0**exponent, float(info.tiny), float(info.max))
    return np.asarray(value).astype(dtype)


@st.composite
def qlinear_conv_models(
    draw,
    opset: int = 21,
    *,
    flavors: Sequence[str] | None = None,
    output_types: Sequence[int] | None = None,
    per_channel: bool | None = None,
    bias: bool | None = None,
    geometries: st.SearchStrategy[ConvGeometry] | None = None,
    values: str = "any",
) -> DrawnModel:
    """One QLinearConv: x (graph input) with constant weights, scales, zero points and optional bias.

    Draws the flavour (x and w types), y's type (mostly the common (x, w, y)
    combinations: :data:`COMMON_PRODUCT_TYPES`), per-tensor or per-channel
    weight scales and zero points (per channel: one each, nonzero where the type allows), the bias,
    and the geometry (:func:`conv_geometries`: every attribute, groups, depthwise, 1-D to 3-D).
    ``values="ties"``: requantization ties (:data:`PRODUCT_VALUES`).
    """
    _require_opset(opset, 10, "QLinearConv")
    if values not in PRODUCT_VALUES:
        raise InvalidArgument(f"values must be one of {PRODUCT_VALUES}, got {values!r}")
    names = list(FLAVORS) if flavors is None else list(flavors)
    _flavor_types(draw, names)  # validates the names
    combos = [(*FLAVORS[n], y) for n in names for y in _INTEGER_8 if output_types is None or y in output_types]
    if not combos:
        raise InvalidArgument(f"none of {output_types} is a possible output type here (possible: {list(_INTEGER_8)})")
    x_type, w_type, y_type = _product_types(draw, combos)
    geometry = draw(geometries if geometries is not None else conv_geometries())
    channels = geometry.w_shape[0]
    channel_count = channels if (draw(st.booleans()) if per_channel is None else per_channel) else None
    x_scale, x_zero_point = _draw_params(draw, np.float32, x_type, (), **_OPERATOR_SCALES)
    w_scale = _scale_array(draw, np.float32, channel_count, **_OPERATOR_SCALES)
    if values == "ties":
        x_scale, w_scale = _tie_input_scales(draw, x_scale, w_scale)
    w_zero_point = _zero_point_array(draw, w_type, channel_count)
    product_scale = float(x_scale) * float(w_scale.max())
    y_scale = _tie_output_scale(draw, product_scale) if values == "ties" else _output_scale(draw, product_scale)
    y_zero_point = _tie_output_zero_point(draw, y_type) if values == "ties" else draw(zero_points(y_type))
    initializers = {
        "x_scale": x_scale,
        "x_zero_point": x_zero_point,
        "w": _product_operand(draw, geometry.w_shape, w_type, w_zero_point, values, along=0),
        "w_scale": w_scale,
        "w_zero_point": w_zero_point,
        "y_scale": y_scale,
        "y_zero_point": np.asarray(y_zero_point),
    }
    if draw(st.booleans()) if bias is None else bias:
        bound = 2**20 if values == "any" else 8
        initializers["B"] = draw(hnp.arrays(np.int32, (channels,), elements=st.integers(-bound, bound)))
    x = _product_operand(draw, geometry.x_shape, x_type, x_zero_point, values)
    names = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point"]
    node = helper.make_node("QLinearConv", names + (["B"] if "B" in initializers else []), ["y"], **geometry.attrs)
    return _model([node], {"x": x}, initializers, {"y": y_type}, opset, "qlinear_conv")


@st.composite
def _matmul_shapes(draw, *, max_batch_rank: int = 2) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of a and b for numpy-style matmul, with 1-D operands and broadcast batch dimensions."""
    m, k, n = (draw(st.integers(1, 6)) for _ in range(3))
    batch = draw(hnp.array_shapes(min_dims=0, max_dims=max_batch_rank, min_side=1, max_side=3))
    a_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)
    b_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))) :]
    a_shape = (k,) if draw(st.integers(0, 4)) == 0 else (*a_batch, m, k)
    b_shape = (k,) if draw(st.integers(0, 4)) == 0 else (*b_batch, k, n)
    return a_shape, b_shape


@st.composite
def qlinear_matmul_models(
    draw,
    opset: int = 21,
    *,
    element_types: Sequence[tuple[int, int, int]] | None = None,
    scale_types: Sequence[int] | None = None,
    values: str = "any",
    shapes: st.SearchStrategy | None = None,
) -> DrawnModel:
    """One QLinearMatMul: a and b (graph inputs), constant per-tensor scales and zero points.

    Draws the (a, b, y) types (8-bit integers, mostly the common combinations
    :data:`COMMON_PRODUCT_TYPES`; float8 from opset 21, now and then), the
    scales' type (float; float16/bfloat16 from opset 21) and matmul shapes
    with 1-D operands and broadcast batch dimensions (or ``shapes``: (a_shape, b_shape)).
    ``values="ties"``: requantization ties (:data:`PRODUCT_VALUES`).
    """
    _require_opset(opset, 10, "QLinearMatMul")
    if values not in PRODUCT_VALUES:
        raise InvalidArgument(f"values must be one of {PRODUCT_VALUES}, got {values!r}")
    possible = _INTEGER_8 + (_FLOAT8 if opset >= 21 else ())
    combos = [(a, b, y) for a in possible for b in possible for y in possible]
    allowed = [c for c in combos if element_types is None or c in element_types]
    draw(_allowed(combos, element_types, "(a, b, y) types"))  # validates element_types
    integer = [c for c in allowed if all(t in _INTEGER_8 for t in c)]
    if integer and (len(integer) == len(allowed) or values == "ties" or draw(st.integers(0, 9)) < 9):
        a_type, b_type, y_type = _product_types(draw, integer)
    else:
        a_type, b_type, y_type = draw(st.sampled_from([c for c in allowed if c not in integer] or allowed))
    scale_type = np_dtype(
        draw(_allowed(_q_input_types(opset) if opset >= 21 else [T.FLOAT], scale_types, "scale type"))
    )
    a_shape, b_shape = draw(_matmul_shapes() if shapes is None else shapes)
    a_scale, a_zero_point = _draw_params(draw, scale_type, a_type, (), **_OPERATOR_SCALES)
    b_scale, b_zero_point = _draw_params(draw, scale_type, b_type, (), **_OPERATOR_SCALES)
    if values == "ties":
        a_scale, b_scale = _tie_input_scales(draw, a_scale, b_scale)
    product_scale = float(a_scale) * float(b_scale)
    if values == "ties":
        y_scale = _tie_output_scale(draw, product_scale, dtype=scale_type)
    else:
        y_scale = _output_scale(draw, product_scale, dtype=scale_type)
    initializers = {
        "a_scale": a_scale,
        "a_zero_point": a_zero_point,
        "b_scale": b_scale,
        "b_zero_point": b_zero_point,
        "y_scale": y_scale,
        "y_zero_point": np.asarray(
            _tie_output_zero_point(draw, y_type) if values == "ties" else draw(zero_points(y_type))
        ),
    }
    inputs = {
        "a": _product_operand(draw, a_shape, a_type, a_zero_point, values),
        "b": _product_operand(draw, b_shape, b_type, b_zero_point, values),
    }
    names = ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale", "y_zero_point"]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    return _model([node], inputs, initializers, {"y": y_type}, opset, "qlinear_matmul")


@st.composite
def matmul_integer_models(
    draw,
    opset: int = 21,
    *,
    flavors: Sequence[str] | None = None,
    shapes: st.SearchStrategy | None = None,
    extremes: bool = False,
) -> DrawnModel:
    """One MatMulInteger: a and b (graph inputs) -> int32.

    Zero points are absent, per-tensor, per-row (a; now and then: few engines
    take it) or per-column (b). ``shapes`` draws (a_shape, b_shape), e.g. a long K;
    ``extremes`` fills a and b with their types' largest magnitude (qmax for
    uint8, qmin for int8) and leaves the zero points out, so that a long K takes
    the accumulator to its int32 limit (K * 255 * 255 for uint8: K = 33025 is
    2147450625, just below 2**31).
    """
    _require_opset(opset, 10, "MatMulInteger")
    a_type, b_type = _flavor_types(draw, flavors)
    a_shape, b_shape = draw(_matmul_shapes() if shapes is None else shapes)
    if extremes:
        ends = {T.UINT8: np.uint8(255), T.INT8: np.int8(-128)}
        inputs = {"a": np.full(a_shape, ends[a_type]), "b": np.full(b_shape, ends[b_type])}
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        return _model([node], inputs, {}, {"y": T.INT32}, opset, "matmul_integer")
    inputs = {"a": draw(quantized_tensors(a_shape, a_type)), "b": draw(quantized_tensors(b_shape, b_type))}
    initializers = {}
    a_kinds = ["absent", "tensor"] + (["row"] if len(a_shape) >= 2 and draw(st.integers(0, 4)) == 4 else [])
    a_kind = draw(st.sampled_from(a_kinds))
    if a_kind != "absent":
        initializers["a_zero_point"] = _zero_point_array(draw, a_type, a_shape[-2] if a_kind == "row" else None)
    b_kind = draw(st.sampled_from(["absent", "tensor", "column"] if len(b_shape) >= 2 else ["absent", "tensor"]))
    if b_kind != "absent":
        initializers["b_zero_point"] = _zero_point_array(draw, b_type, b_shape[-1] if b_kind == "column" else None)
    node = helper.make_node(
        "MatMulInteger", _present(["a", "b", "a_zero_point", "b_zero_point"], {"a", "b", *initializers}), ["y"]
    )
    return _model([node], inputs, initializers, {"y": T.INT32}, opset, "matmul_integer")


@st.composite
def conv_integer_models(
    draw,
    opset: int = 21,
    *,
    flavors: Sequence[str] | None = None,
    per_channel: bool | None = None,
    geometries: st.SearchStrategy[ConvGeometry] | None = None,
) -> DrawnModel:
    """One ConvInteger: x (graph input) and constant w -> int32; zero points absent, per-tensor or (w) per-channel.

    Mostly x's zero point is given where w's is (an omitted input before a given one trips some
    engines), and w's is per-tensor (per-channel now and then, unless ``per_channel`` says).
    """
    _require_opset(opset, 10, "ConvInteger")
    x_type, w_type = _flavor_types(draw, flavors)
    geometry = draw(geometries if geometries is not None else conv_geometries())
    initializers = {"w": draw(quantized_tensors(geometry.w_shape, w_type))}
    has_x_zp, has_w_zp = draw(st.booleans()), draw(st.booleans())
    if has_w_zp and not has_x_zp and draw(st.integers(0, 4)) < 4:
        has_x_zp = True
    if has_x_zp:
        initializers["x_zero_point"] = np.asarray(draw(zero_points(x_type)))
    if has_w_zp:
        channelwise = draw(st.integers(0, 4)) == 4 if per_channel is None else per_channel
        channels = geometry.w_shape[0] if channelwise else None
        initializers["w_zero_point"] = _zero_point_array(draw, w_type, channels)
    names = _present(["x", "w", "x_zero_point", "w_zero_point"], {"x", *initializers})
    node = helper.make_node("ConvInteger", names, ["y"], **geometry.attrs)
    x = draw(quantized_tensors(geometry.x_shape, x_type))
    return _model([node], {"x": x}, initializers, {"y": T.INT32}, opset, "conv_integer")


# -- QDQ chains ----------------------------------------------------------------------------------------

QDQ_OPS = ("Conv", "MatMul", "Add", "Relu", "MaxPool")


class _Middle(NamedTuple):
    """The float op of a QDQ chain and what it needs besides the dequantized x."""

    x_shape: tuple[int, ...]
    nodes: list
    inputs: list[str]
    attrs: dict
    initializers: dict
    feeds: dict
    product_scale: float


@st.composite
def _weighted_middle(draw, op: str, weight_type: int, x_scale: np.ndarray, per_channel: bool | None, opset: int):
    """Conv or MatMul with quantized constant weights (and, for Conv, maybe an int32 bias)."""
    if op == "Conv":
        geometry = draw(conv_geometries())
        x_shape, w_shape, attrs, axis = geometry.x_shape, geometry.w_shape, geometry.attrs, 0
    else:
        k, n = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        rows = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4))
        x_shape, w_shape, attrs, axis = (*rows, k), (k, n), {}, 1
    channels = w_shape[axis] if opset >= 13 and (draw(st.booleans()) if per_channel is None else per_channel) else None
    channel_attrs = {"axis": axis} if channels else {}
    w_scale = _scale_array(draw, np.float32, channels, **_OPERATOR_SCALES)
    w_zero_point = _zero_point_array(draw, weight_type, channels)
    if weight_type == T.INT8:
        w_zero_point = np.zeros_like(w_zero_point)
    initializers = {
        "w_q": draw(quantized_tensors(w_shape, weight_type)),
        "w_scale": w_scale,
        "w_zero_point": w_zero_point,
    }
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero_point"], ["w"], **channel_attrs)]
    inputs = ["x", "w"]
    if op == "Conv" and draw(st.booleans()):
        initializers["b_q"] = draw(hnp.arrays(np.int32, (w_shape[0],), elements=st.integers(-(2**16), 2**16)))
        initializers["b_scale"] = (x_scale * w_scale).astype(np.float32)
        nodes.append(
            helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["b"], **({"axis": 0} if channels else {}))
        )
        inputs.append("b")
    return _Middle(x_shape, nodes, inputs, attrs, initializers, {}, float(x_scale) * float(w_scale.max()))


@st.composite
def _add_middle(draw, act_type: int, x_scale: np.ndarray):
    """Add of two dequantized activations, the second broadcast against the first."""
    x_shape = draw(_shapes(min_rank=1))
    y_shape = draw(hnp.broadcastable_shapes(x_shape, min_dims=1, max_dims=len(x_shape)))
    y_scale, y_zero_point = _draw_params(draw, np.float32, act_type, (), **_OPERATOR_SCALES)
    nodes = [helper.make_node("DequantizeLinear", ["y_q", "y_scale", "y_zero_point"], ["y"])]
    initializers = {"y_scale": y_scale, "y_zero_point": y_zero_point}
    feeds = {"y_q": draw(quantized_tensors(y_shape, act_type))}
    return _Middle(x_shape, nodes, ["x", "y"], {}, initializers, feeds, float(x_scale))


def _pools_padding_only(spatial: Sequence[int], attrs: dict) -> bool:
    """Whether some window of a MaxPool with these attributes reads padding only: no maximum, which refquant
    refuses (spec/ops/nn.md), so the QDQ strategy does not draw it."""
    rank = len(spatial)
    auto_pad, pads = attrs.get("auto_pad", "NOTSET"), attrs.get("pads", [0] * 2 * rank)
    for axis, (size, k, s, d) in enumerate(
        zip(spatial, attrs["kernel_shape"], attrs.get("strides", [1] * rank), attrs.get("dilations", [1] * rank))
    ):
        extent = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, same_total(size, extent, s))
            begin, count = (total // 2 if auto_pad == "SAME_UPPER" else total - total // 2), -(-size // s)
        else:
            begin, end = (0, 0) if auto_pad == "VALID" else (pads[axis], pads[axis + rank])
            span = size + begin + end - extent
            count = (-(-span // s) if attrs.get("ceil_mode") else span // s) + 1
            if attrs.get("ceil_mode") and (count - 1) * s >= size + begin:
                count -= 1
        if any(all(not 0 <= j * s - begin + t * d < size for t in range(k)) for j in range(count)):
            return True
    return False


@st.composite
def _max_pool_middle(draw, x_scale: np.ndarray):
    """MaxPool with a convolution's geometry (no group), sometimes with ceil_mode; no window of padding only."""
    geometry = draw(conv_geometries())
    attrs = {k: v for k, v in geometry.attrs.items() if k != "group"} | {"kernel_shape": list(geometry.w_shape[2:])}
    if attrs.get("auto_pad", "NOTSET") == "NOTSET" and draw(st.booleans()):
        attrs["ceil_mode"] = 1
    assume(not _pools_padding_only(geometry.x_shape[2:], attrs))
    return _Middle(geometry.x_shape, [], ["x"], attrs, {}, {}, float(x_scale))


@st.composite
def qdq_models(
    draw,
    opset: int = 21,
    *,
    ops: Sequence[str] = QDQ_OPS,
    flavors: Sequence[str] | None = None,
    per_channel: bool | None = None,
) -> DrawnModel:
    """DequantizeLinear -> op -> QuantizeLinear, the pattern quantization tools emit.

    The quantized activation(s) are graph inputs; weights (Conv, MatMul) are
    constant quantized tensors with their own DequantizeLinear, per-tensor or
    (from opset 13) per output channel, symmetric for int8 (zero point 0);
    Conv may have an int32 bias dequantized with scale x_scale * w_scale.
    ``flavors`` picks activation and weight types (U8U8, U8S8, S8S8, S8U8);
    the output has the activation type.
    """
    _require_opset(opset, 13 if per_channel else 10, "qdq_models")
    op = draw(st.sampled_from(list(ops)))
    act_type, weight_type = _flavor_types(draw, flavors)
    x_scale, x_zero_point = _draw_params(draw, np.float32, act_type, (), **_OPERATOR_SCALES)
    if op in ("Conv", "MatMul"):
        middle = draw(_weighted_middle(op, weight_type, x_scale, per_channel, opset))
    elif op == "Add":
        middle = draw(_add_middle(act_type, x_scale))
    elif op == "MaxPool":
        middle = draw(_max_pool_middle(x_scale))
    else:
        middle = _Middle(draw(_shapes(min_rank=1)), [], ["x"], {}, {}, {}, float(x_scale))
    exponents = (0, 14) if op in ("Conv", "MatMul") else (-2, 2)
    initializers = {
        "x_scale": x_scale,
        "x_zero_point": x_zero_point,
        **middle.initializers,
        "out_scale": _output_scale(draw, middle.product_scale, exponents),
        "out_zero_point": np.asarray(draw(zero_points(act_type))),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero_point"], ["x"]),
        *middle.nodes,
        helper.make_node(op, middle.inputs, ["z"], **middle.attrs),
        helper.make_node("QuantizeLinear", ["z", "out_scale", "out_zero_point"], ["z_q"]),
    ]
    inputs = {"x_q": draw(quantized_tensors(middle.x_shape, act_type)), **middle.feeds}
    return _model(nodes, inputs, initializers, {"z_q": act_type}, opset, f"qdq_{op.lower()}")
