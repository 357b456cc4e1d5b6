"""The resource budget: what one node may allocate and compute, checked from shapes before its kernel runs.

    Limits(max_memory=4 GiB, max_work=10**10)      per node; None lifts a limit
    Session(model, limits=Limits(...))              or the default: use_limits(...) (the CLI's --max-memory, --max-work)

Every registered op has an *estimator*: from the node and its input arrays (shapes, and the values of shape-like
inputs: ConstantOfShape's shape, Range's scalars, Pad's pads, Resize's scales), the tensors the kernel will
allocate (its outputs and its large intermediates: padded copies, im2col columns, interpolation coordinates)
and its work (multiply-adds, window taps, interpolation taps, Python-level steps). The Session checks the
estimate against the limits before it calls the kernel; :class:`~refquant.errors.ResourceLimitError` names the
node, the tensor, its shape and the limit. spec/model.md ("Resource budget") states the model and the defaults.

Memory counts every element at 8 bytes (refquant's working width: float64 and int64 accumulators), an
estimate of the node's peak, not an exact account. An estimator that cannot read its inputs (a malformed
node) returns None: the kernel then reports the problem as it always has.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .errors import RefquantError, ResourceLimitError
from .registry import canonical_domain

__all__ = [
    "Limits",
    "Allocation",
    "Estimate",
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_MAX_WORK",
    "estimate",
    "check",
    "default_limits",
    "use_limits",
    "parse_size",
    "parse_count",
    "show_bytes",
    "estimated_ops",
]

#: bytes one node may allocate (outputs plus large intermediates, 8 bytes per element): spec/model.md
DEFAULT_MAX_MEMORY = 4 * 2**30
#: work units (multiply-adds, window or interpolation taps) one node may compute: spec/model.md
DEFAULT_MAX_WORK = 10**10
#: bytes counted per element: refquant computes in float64 and int64
WORD = 8
#: work charged per Python-level step (a numpy call per kernel tap, an exact coordinate of Resize): such a
#: step costs about what a thousand multiply-adds cost inside numpy
STEP = 1000
#: bytes counted per exact (Fraction) coordinate Resize keeps: the object, its two integers, its list slot
COORDINATE_BYTES = 256


def _limit(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RefquantError(f"Limits.{name} must be a positive number or None, got {value!r}")
    whole = value >= 1 if isinstance(value, (int, np.integer)) else (  # an int of any size: no float conversion
        math.isfinite(value) and value >= 1 and float(value).is_integer())
    if not whole:
        raise RefquantError(f"Limits.{name} must be a whole number >= 1 or None, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Limits:
    """Per-node resource limits. ``max_memory``: bytes a node may allocate (its outputs and large
    intermediates, every element counted at 8 bytes); ``max_work``: multiply-adds (window taps,
    interpolation taps) a node may compute. ``None`` lifts a limit."""

    max_memory: int | None = DEFAULT_MAX_MEMORY
    max_work: int | None = DEFAULT_MAX_WORK

    def __post_init__(self):
        object.__setattr__(self, "max_memory", _limit(self.max_memory, "max_memory"))
        object.__setattr__(self, "max_work", _limit(self.max_work, "max_work"))

    @classmethod
    def unlimited(cls) -> Limits:
        return cls(None, None)


_DEFAULT: contextvars.ContextVar[Limits] = contextvars.ContextVar("refquant_limits", default=Limits())


def default_limits() -> Limits:
    """The limits of a Session created without ``limits=``: Limits() unless :func:`use_limits` says otherwise."""
    return _DEFAULT.get()


@contextlib.contextmanager
def use_limits(limits: Limits) -> Iterator[Limits]:
    """Within the block, Sessions created without ``limits=`` (also those refquant creates inside calibration,
    debug and the comparison commands) take ``limits``."""
    if not isinstance(limits, Limits):
        raise RefquantError(f"use_limits takes a refquant.Limits, not {type(limits).__name__}")
    token = _DEFAULT.set(limits)
    try:
        yield limits
    finally:
        _DEFAULT.reset(token)


# -- estimates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    """A tensor a kernel allocates: what it is, its shape, the bytes counted per element."""

    what: str
    shape: tuple[int, ...]
    itemsize: int = WORD

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def bytes(self) -> int:
        return self.elements * self.itemsize


@dataclass(frozen=True)
class Estimate:
    """What a node will allocate (each tensor) and compute (work units)."""

    allocations: tuple[Allocation, ...]
    work: int = 0

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.allocations)


Estimator = Callable[..., Estimate | None]
_ESTIMATORS: dict[tuple[str, str], Estimator] = {}


def _estimates(*op_types: str, domain: str = ""):
    def decorate(function: Estimator) -> Estimator:
        for op_type in op_types:
            key = (domain, op_type)
            if key in _ESTIMATORS:
                raise RuntimeError(f"{domain or 'ai.onnx'}::{op_type} has two estimators")
            _ESTIMATORS[key] = function
        return function

    return decorate


def estimated_ops() -> set[tuple[str, str]]:
    """(domain, op_type) of every op with an estimator (a test checks that every registered op has one)."""
    return set(_ESTIMATORS)


def estimate(node, inputs: Sequence[np.ndarray | None]) -> Estimate | None:
    """The node's estimate, or None when it has no estimator or its inputs are malformed (the kernel says how)."""
    estimator = _ESTIMATORS.get((canonical_domain(node.domain), node.op_type))
    if estimator is None:
        return None
    try:
        return estimator(node, list(inputs))
    except Exception:  # noqa: BLE001  (a malformed node: the kernel raises its own, precise error)
        return None


def check(node, inputs: Sequence[np.ndarray | None], limits: Limits) -> None:
    """ResourceLimitError when the node's estimate exceeds ``limits``; nothing otherwise."""
    if limits.max_memory is None and limits.max_work is None:
        return
    found = estimate(node, inputs)
    if found is None:
        return
    if limits.max_memory is not None:
        for allocation in found.allocations:  # the largest single tensor is the clearest thing to name
            if allocation.bytes > limits.max_memory:
                raise ResourceLimitError(
                    f"{allocation.what} of shape {_show(allocation.shape)} ({_count(allocation.elements)} elements, "
                    f"{show_bytes(allocation.bytes)} at {allocation.itemsize} bytes each) exceeds max_memory "
                    f"{show_bytes(limits.max_memory)}" + _HOW,
                    limit="max_memory", requested=allocation.bytes, allowed=limits.max_memory,
                )
        if found.bytes > limits.max_memory:
            parts = ", ".join(f"{a.what} {_show(a.shape)}" for a in found.allocations if a.bytes)
            raise ResourceLimitError(
                f"its tensors ({parts}) need {show_bytes(found.bytes)} together, over max_memory "
                f"{show_bytes(limits.max_memory)}" + _HOW,
                limit="max_memory", requested=found.bytes, allowed=limits.max_memory,
            )
    if limits.max_work is not None and found.work > limits.max_work:
        shapes = ", ".join(f"{_show(x.shape)}" for x in inputs if isinstance(x, np.ndarray))
        raise ResourceLimitError(
            f"{_count(found.work)} multiply-adds (inputs {shapes}) exceed max_work {_count(limits.max_work)}" + _HOW,
            limit="max_work", requested=found.work, allowed=limits.max_work,
        )


_HOW = " (raise it with refquant.Limits, or --max-memory / --max-work on the command line)"


def _show(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _count(n: int) -> str:
    return f"{n}" if n < 10**6 else f"{n:.3g}"


def show_bytes(n: int) -> str:
    """``n`` bytes as B, KiB, MiB, GiB, TiB, PiB or EiB (three significant digits)."""
    for unit, power in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 2**power:
            return f"{n / 2**power:.3g} {unit}"
    return f"{n} B"


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([KMGTP]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


def parse_size(text: str, flag: str) -> int | None:
    """A byte count from the command line: ``4GiB``, ``512M``, ``1e9``, ``1073741824``; ``none`` lifts the limit.
    K, M, G, T, P are binary (KiB, MiB, ...) with or without ``iB``."""
    if text.strip().lower() in ("none", "unlimited"):
        return None
    match = _SIZE.match(text)
    if not match:
        raise RefquantError(f"{flag} must be a size such as 4GiB, 512MiB or 1e9 (bytes), or 'none'; got {text!r}")
    unit = (match.group(2) or "").upper().rstrip("B").rstrip("I")
    value = Fraction(match.group(1)) * _UNITS[unit]
    if value < 1:
        raise RefquantError(f"{flag} must be at least 1 byte, got {text!r}")
    return int(value)


def parse_count(text: str, flag: str) -> int | None:
    """A count from the command line: ``1e11``, ``100000000000``; ``none`` lifts the limit."""
    if text.strip().lower() in ("none", "unlimited"):
        return None
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise RefquantError(f"{flag} must be a number such as 1e11, or 'none'; got {text!r}") from None
    if value < 1 or value.denominator != 1:
        raise RefquantError(f"{flag} must be a whole number >= 1, got {text!r}")
    return int(value)


# -- shape arithmetic without numpy's limits ----------------------------------------------------------


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """Multidirectional broadcasting of Python shapes (any size: nothing is allocated); ValueError if they clash."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _dims(values: np.ndarray) -> tuple[int, ...]:
    """A 1-D integer tensor as a shape; ValueError on a negative dimension."""
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError("not a 1-D integer tensor")
    dims = tuple(int(v) for v in values)
    if any(d < 0 for d in dims):
        raise ValueError("negative dimension")
    return dims


def _present(inputs) -> list[np.ndarray]:
    return [x for x in inputs if isinstance(x, np.ndarray)]


def _out(shape, what: str = "output", itemsize: int = WORD) -> Allocation:
    return Allocation(what, tuple(int(d) for d in shape), itemsize)


# -- estimators: outputs bounded by the inputs ------------------------------------------------------------

#: ops whose outputs hold no more elements than their largest input: element-wise functions, casts, views,
#: normalizations, quantization (Split's outputs together; TopK's values and indices each). Estimate: the
#: largest input, at 8 bytes per element (twice for TopK). Constant's value is an attribute the model holds.
BOUNDED_BY_INPUT = (
    "Relu", "Round", "Not", "Sqrt", "Exp", "Erf", "Tanh", "Sigmoid", "LeakyRelu", "HardSigmoid", "HardSwish",
    "Gelu", "Cast", "Identity", "Constant", "Flatten", "Reshape", "Transpose", "Split", "Slice", "Squeeze",
    "Unsqueeze", "GatherElements", "Shape", "Softmax", "LogSoftmax", "LayerNormalization", "BatchNormalization",
    "InstanceNormalization", "TopK", "CumSum", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    "BitwiseNot", "Abs", "Neg", "Sign", "Floor", "Ceil", "Reciprocal", "Log", "Sin", "Cos", "Tan", "Asin", "Acos",
    "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf", "PRelu", "Elu", "Selu", "Celu", "Softplus",
    "Softsign", "ThresholdedRelu", "Mish", "Swish", "Shrink",
)
BOUNDED_BY_INPUT_MS = ("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QuantizeLinear", "DequantizeLinear")
#: reductions: the output is the input's shape with reduced axes of length 1 (or removed), so an empty axis
#: grows to 1: the bound is the input's shape with every 0 counted as 1 ((10**6, 0, 10**6) reduces to 10**12)
REDUCING = (
    "ReduceSum", "ReduceMean", "ReduceMin", "ReduceMax", "ArgMax", "GlobalAveragePool", "GlobalMaxPool",
    "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMin",
)
REDUCING_MS = ("QLinearGlobalAveragePool", "QLinearReduceMean")
#: multidirectional broadcasting of every input
BROADCASTING = (
    "Add", "Sub", "Mul", "Div", "Min", "Max", "Pow", "Where", "Equal", "Less", "Greater", "Clip",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift",
    "Sum", "Mean", "Mod",
)
BROADCASTING_MS = ("QLinearAdd", "QLinearMul", "QLinearWhere")


def _bounded(node, inputs) -> Estimate:
    present = _present(inputs)
    if not present:
        return Estimate(())
    largest = max(present, key=lambda x: x.size)
    copies = 2 if node.op_type == "TopK" else 1
    return Estimate((_out(largest.shape, "output (no larger than the largest input)"),) * copies)


def _reducing(node, inputs) -> Estimate:
    x = inputs[0]
    return Estimate((_out(tuple(max(d, 1) for d in x.shape), "output (the input, empty axes reduced to 1)"),))


def _broadcasting(node, inputs) -> Estimate:
    return Estimate((_out(_broadcast(*(x.shape for x in _present(inputs))), "output (broadcast of the inputs)"),))


def _joined(node, inputs) -> Estimate:
    """Concat: the inputs' elements, together."""
    return Estimate((_out((sum(x.size for x in _present(inputs)),), "output (every input joined)"),))


_estimates(*BOUNDED_BY_INPUT)(_bounded)
_estimates(*BOUNDED_BY_INPUT_MS, domain="com.microsoft")(_bounded)
_estimates(*REDUCING)(_reducing)
_estimates(*REDUCING_MS, domain="com.microsoft")(_reducing)
_estimates(*BROADCASTING)(_broadcasting)
_estimates(*BROADCASTING_MS, domain="com.microsoft")(_broadcasting)
#: the normalizations and Hardmax of refquant/ops/normalization.py: outputs the input's shape
_estimates("GroupNormalization", "RMSNormalization", "LpNormalization", "MeanVarianceNormalization", "Hardmax")(_bounded)
#: outputs no larger than the largest input: CastLike, BitCast (the same bytes), CumProd, LRN, SwiGLU (half its
#: input), the losses (per sample at most, log_prob the input's shape), RotaryEmbedding, TensorScatter (the cache)
_estimates("CastLike", "BitCast", "CumProd", "LRN", "SwiGLU", "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss",
           "RotaryEmbedding", "TensorScatter")(_bounded)  # fmt: skip
_estimates("GlobalLpPool")(_reducing)


@_estimates("HannWindow", "HammingWindow", "BlackmanWindow")
def _window_function(node, inputs) -> Estimate:
    """refquant/ops/signal.py: a window of ``size`` points and its float64 phases."""
    size = max(int(np.asarray(inputs[0]).reshape(())), 0)
    return Estimate((_out((size,), "window"), _out((size,), "phases")), size)


@_estimates("GridSample")
def _grid_sample(node, inputs) -> Estimate:
    """refquant/ops/sampling.py: Y (N, C, grid's spatial shape), its float64 accumulator, and per interpolation
    tap (1, 2**r or 4**r) a gathered (N, out..., C) block; work: taps times output elements."""
    x, grid = inputs[0], inputs[1]
    r = x.ndim - 2
    out = (x.shape[0], x.shape[1], *grid.shape[1:-1])
    mode = node.attr("mode", "linear", str)
    per_axis = 1 if mode == "nearest" else (4 if mode in ("cubic", "bicubic") else 2)
    taps = per_axis**r
    return Estimate(
        (_out(out), _out(out, "float64 accumulator"), _out(out, "gathered tap"), _out(grid.shape, "coordinates")),
        taps * math.prod(out) + grid.size,
    )


@_estimates("AffineGrid")
def _affine_grid(node, inputs) -> Estimate:
    """refquant/ops/sampling.py: the grid (N, spatial..., r) and the homogeneous base coordinates."""
    n, _, *spatial = (max(int(v), 0) for v in np.asarray(inputs[1]).reshape(-1))
    r = len(spatial)
    return Estimate(
        (_out((n, *spatial, r), "grid"), _out((*spatial, r + 1), "base coordinates")),
        n * math.prod(spatial) * r * (r + 1),
    )


@_estimates("RoiAlign")
def _roi_align(node, inputs) -> Estimate:
    """refquant/ops/roi.py: Y (num_rois, C, oh, ow) and, one roi at a time, four (C, oh, gh, ow, gw) bilinear
    terms; the grid per bin is sampling_ratio or, when 0, ceil(roi extent / bins), bounded here by the extent
    read from rois (at least 1 pixel, the larger of the two transforms)."""
    x, rois = inputs[0], inputs[1]
    oh, ow = node.attr("output_height", 1, int), node.attr("output_width", 1, int)
    ratio = node.attr("sampling_ratio", 0, int)
    scale = float(node.attr("spatial_scale", 1.0, float))
    c = x.shape[1]
    terms = work = 0
    for x1, y1, x2, y2 in np.asarray(rois, np.float64).reshape(-1, 4):
        gh = ratio or max(math.ceil(max((y2 - y1) * scale, 1.0) / oh), 0) if math.isfinite(y2 - y1) else 0
        gw = ratio or max(math.ceil(max((x2 - x1) * scale, 1.0) / ow), 0) if math.isfinite(x2 - x1) else 0
        block = c * oh * gh * ow * gw
        terms = max(terms, block)
        work += 4 * block + STEP
    out = (rois.shape[0], c, oh, ow)
    return Estimate((_out(out), _out((4 * terms,), "bilinear terms of one roi")), work)


@_estimates("MaxRoiPool")
def _max_roi_pool(node, inputs) -> Estimate:
    """refquant/ops/roi.py: Y (num_rois, C, pooled), each bin's window at most the whole image (one Python step
    per bin plus its taps)."""
    x, rois = inputs[0], inputs[1]
    ph, pw = (int(v) for v in node.attr("pooled_shape"))
    n_bins = rois.shape[0] * ph * pw
    window = x.shape[1] * x.shape[2] * x.shape[3]
    return Estimate((_out((rois.shape[0], x.shape[1], ph, pw)), _out(x.shape[1:], "float64 image")),
                    n_bins * (STEP + window))
_estimates("Concat")(_joined)
_estimates("QLinearConcat", domain="com.microsoft")(_joined)


# -- estimators: outputs shaped by values or attributes -------------------------------------------------


@_estimates("ConstantOfShape")
def _constant_of_shape(node, inputs) -> Estimate:
    return Estimate((_out(_dims(inputs[0])),))


@_estimates("Expand")
def _expand(node, inputs) -> Estimate:
    x, shape = inputs
    return Estimate((_out(_broadcast(x.shape, _dims(shape))),))


@_estimates("Gather")
def _gather(node, inputs) -> Estimate:
    data, indices = inputs
    axis = node.attr("axis", 0, int) % max(data.ndim, 1)
    return Estimate((_out(data.shape[:axis] + indices.shape + data.shape[axis + 1 :]),))


@_estimates("Range")
def _range(node, inputs) -> Estimate:
    first, last, step = (Fraction(x.reshape(()).item()) for x in inputs)  # ValueError for NaN and infinities
    length = max(math.ceil((last - first) / step), 0)
    # narrow floats: start, the steps and their rounding in float64 beside the output
    return Estimate((_out((length,)), _out((2 * length,), "float64 steps")))


@_estimates("Pad")
def _pad(node, inputs) -> Estimate:
    from .ops.shape import pad_operands

    data = inputs[0]
    padding = inputs + [None] * (4 - len(inputs))
    pads, _ = pad_operands(node, data, padding[1], padding[2], padding[3])
    rank = data.ndim
    shape = tuple(max(d + b + e, 0) for d, b, e in zip(data.shape, pads[:rank], pads[rank:]))
    return Estimate((_out(shape),))


@_estimates("CenterCropPad")
def _center_crop_pad(node, inputs) -> Estimate:
    from .ops.shape import center_crop_pad_shape

    data = inputs[0]
    axes, lengths = center_crop_pad_shape(node, data, inputs[1])
    shape = list(data.shape)
    for axis, length in zip(axes, lengths):
        shape[axis] = length
    return Estimate((_out(shape),))


@_estimates("Col2Im")
def _col2im(node, inputs) -> Estimate:
    """refquant/ops/fold.py: the input in the accumulator's type, the padded image and the output; work: one
    add per input element plus a Python step per block tap."""
    from .ops.fold import col2im_geometry

    x = inputs[0]
    image, block, _, _, pads, _ = col2im_geometry(node, x.shape, inputs[1], inputs[2])
    rank = len(image)
    c = x.shape[1] // math.prod(block)
    padded = (x.shape[0], c, *(image[i] + pads[i] + pads[i + rank] for i in range(rank)))
    return Estimate((_out(x.shape, "accumulator copy"), _out(padded, "padded image"), _out((x.shape[0], c, *image))),
                    x.size + STEP * math.prod(block))


@_estimates("MaxUnpool")
def _max_unpool(node, inputs) -> Estimate:
    """refquant/ops/fold.py: the output and the index bookkeeping (a sort of I)."""
    from .ops.fold import max_unpool_shape

    x = inputs[0]
    inferred, shape = max_unpool_shape(node, x.shape, inputs[2] if len(inputs) > 2 else None)
    return Estimate((_out(shape), _out(inferred, "scattered"), _out((3 * x.size,), "sorted indices")), x.size * max(1, x.size.bit_length()))


@_estimates("DFT")
def _dft(node, inputs) -> Estimate:
    """refquant/ops/signal.py: the complex128 signal (padded to n), its spectrum and the output, each counted
    as two words per complex element; work n log2 n per transformed line."""
    from .ops.signal import dft_geometry

    x = inputs[0]
    axis, n, _, _ = dft_geometry(node, x, *(inputs[1:] + [None, None])[:2])
    lines = math.prod(x.shape[:-1]) // max(x.shape[axis], 1)
    points = lines * max(n, x.shape[axis])
    return Estimate((_out((points, 2), "signal"), _out((points, 2), "spectrum"), _out((points, 2))),
                    points * max(1, n.bit_length()))


@_estimates("STFT")
def _stft(node, inputs) -> Estimate:
    """refquant/ops/signal.py: the framed complex signal, its spectrum and the output (two words per complex
    element); work n log2 n per frame."""
    from .ops.signal import stft_geometry

    signal = inputs[0]
    _, length, frames, _ = stft_geometry(node, *(inputs + [None, None])[:4])
    points = signal.shape[0] * frames * length
    return Estimate((_out((points, 2), "frames"), _out((points, 2), "spectrum"), _out((points, 2))),
                    points * max(1, length.bit_length()))


@_estimates("MelWeightMatrix")
def _mel_weight_matrix(node, inputs) -> Estimate:
    """refquant/ops/signal.py: the [dft_length // 2 + 1, num_mel_bins] matrix."""
    from .ops.signal import mel_geometry

    mels, n, _ = mel_geometry(*inputs[:3])
    return Estimate((_out((n // 2 + 1, mels)),), (n // 2 + 1) * mels)


@_estimates("StringConcat")
def _string_concat(node, inputs) -> Estimate:
    """refquant/ops/strings.py: the broadcast output, one Python string per element (STEP work each)."""
    shape = _broadcast(*(x.shape for x in _present(inputs)))
    return Estimate((_out(shape, "output (broadcast of the inputs)"),), math.prod(shape) * STEP)


@_estimates("StringNormalizer", "RegexFullMatch")
def _string_elements(node, inputs) -> Estimate:
    """refquant/ops/strings.py: an output no larger than the input, a Python step per element."""
    return Estimate((_out(inputs[0].shape, "output (no larger than the input)"),), inputs[0].size * STEP)


@_estimates("StringSplit")
def _string_split(node, inputs) -> Estimate:
    """refquant/ops/strings.py: X's elements times the largest number of substrings (counted by splitting)."""
    from .ops.strings import split_counts

    _, width = split_counts(node, inputs[0])
    x = inputs[0]
    return Estimate((_out(x.shape + (width,), "substrings"), _out(x.shape, "counts")), x.size * max(width, 1) * STEP)


@_estimates("TfIdfVectorizer")
def _tfidf(node, inputs) -> Estimate:
    """refquant/ops/strings.py: the [N, max(ngram_indexes) + 1] output; a Python lookup per candidate n-gram."""
    from .ops.strings import tfidf_output_size

    x = inputs[0]
    rows = x.shape[0] if x.ndim == 2 else 1
    grams = node.attr("max_gram_length", 1, int) * (node.attr("max_skip_count", 0, int) + 1)
    return Estimate((_out((rows, tfidf_output_size(node))),), x.size * max(grams, 1) * STEP)


@_estimates("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli")
def _random(node, inputs) -> Estimate:
    """refquant/ops/random.py: the output (the shape attribute's or the input's), its raw words and values."""
    from .ops.random import random_shape

    like = inputs[0] if inputs else None
    shape = random_shape(node, None if node.op_type in ("RandomNormal", "RandomUniform") else like)
    return Estimate((_out(shape), _out(shape, "random words"), _out(shape, "float64 values")), math.prod(shape))


@_estimates("Multinomial")
def _multinomial(node, inputs) -> Estimate:
    """refquant/ops/random.py: the [batch, sample_size] output and uniforms; a binary search per sample."""
    from .ops.random import multinomial_shape

    batch, samples = multinomial_shape(node, inputs[0])
    classes = inputs[0].shape[1]
    return Estimate((_out((batch, samples)), _out((batch, samples), "uniforms"), _out(inputs[0].shape, "cumulative")),
                    batch * (samples * max(1, classes.bit_length()) + classes + STEP))


@_estimates("ImageDecoder")
def _image_decoder(node, inputs) -> Estimate:
    """refquant/ops/image_decoder.py: the decoded image (4 samples per declared pixel) and its int64 working
    copies; a Python step per pixel (PNG's Average and Paeth filters run byte by byte)."""
    from .ops.image_decoder import declared_pixels

    pixels = declared_pixels(inputs[0].tobytes())
    return Estimate((_out((pixels, 4), "image"), _out((pixels, 4), "working rows")), pixels * STEP)


@_estimates("Resize")
def _resize(node, inputs) -> Estimate:
    from .ops import resize as rs

    x, roi, scales, sizes = (inputs + [None] * 4)[:4]
    if node.version < 11:
        roi, scales, sizes = None, roi, None
    axes = rs._axes(node, x.ndim)
    scales, sizes = rs._scales_and_sizes(node, roi, scales, sizes)
    transform = rs._transform_name(node)
    crops = rs._crops(roi, len(axes)) if transform == "tf_crop_and_resize" else [None] * len(axes)
    lengths, exact = rs._geometry(node, x.shape, axes, scales, sizes, crops)
    mode = node.attr("mode", "nearest", str)
    base = {"nearest": 1, "linear": 2, "cubic": 4}.get(mode, 4)
    antialias = node.version >= 18 and node.attr("antialias", 0, int) == 1
    shape, largest, work, coordinates = list(x.shape), x.size, 0, 0
    for axis, length, scale in zip(axes, lengths, exact):
        shape[axis] = length  # the kernel resizes one axis after another
        taps = base * (math.ceil(1 / scale) if antialias and scale < 1 else 1)
        elements = math.prod(shape)
        largest = max(largest, elements)
        work += elements * taps + length * STEP
        coordinates += length
    return Estimate(
        (
            _out(shape),
            _out((largest,), "intermediate (one axis resized)"),
            _out((coordinates,), "exact coordinates", COORDINATE_BYTES),
        ),
        work,
    )


_estimates("Upsample")(_resize)  # Upsample-10 is Resize-10 with scales >= 1 (spec/ops/nn.md)


@_estimates("NonMaxSuppression")
def _non_max_suppression(node, inputs) -> Estimate:
    """Selected indices: at most one (batch, class, box) triple per score; work: every pair of boxes, per class."""
    batch, classes, boxes = inputs[1].shape
    return Estimate((_out((batch * classes * boxes, 3), "selected indices"),), batch * classes * boxes * boxes)


# -- estimators: tensor, shape and indexing ops (refquant/ops/shape.py, tensor.py, indexing.py, einsum.py) --------

#: outputs no larger than the largest input (ScatterND / ScatterElements: a copy of data; Compress, ReverseSequence,
#: Trilu: a selection or copy of the input; EyeLike: the input's shape)
_estimates("DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "Scatter", "Compress", "ReverseSequence", "Trilu",
           "EyeLike")(_bounded)  # fmt: skip


@_estimates("Dropout")
def _dropout(node, inputs) -> Estimate:
    return Estimate((_out(inputs[0].shape), _out(inputs[0].shape, "mask", 1)))


@_estimates("Size")
def _size(node, inputs) -> Estimate:
    return Estimate((_out(()),))


@_estimates("Tile")
def _tile(node, inputs) -> Estimate:
    x, repeats = inputs
    counts = _dims(repeats)
    if len(counts) != x.ndim:
        raise ValueError("malformed")
    return Estimate((_out(tuple(d * r for d, r in zip(x.shape, counts))),))


@_estimates("GatherND")
def _gather_nd(node, inputs) -> Estimate:
    data, indices = inputs
    batch_dims = node.attr("batch_dims", 0, int)
    k = indices.shape[-1]
    return Estimate((_out(indices.shape[:-1] + data.shape[batch_dims + k :]), _out(indices.shape, "normalized indices")))


@_estimates("OneHot")
def _one_hot(node, inputs) -> Estimate:
    indices, depth = inputs[0], inputs[1]
    n = int(float(depth.reshape(()).astype(np.float64)))
    return Estimate((_out(indices.shape + (max(n, 0),)), _out(indices.shape + (max(n, 0),), "mask", 1)))


@_estimates("NonZero")
def _non_zero(node, inputs) -> Estimate:
    """Data-dependent: at most every element, one coordinate per axis (rank x elements)."""
    x = inputs[0]
    return Estimate((_out((max(x.ndim, 1), x.size), "coordinates (at most rank x elements)"),))


@_estimates("Unique")
def _unique(node, inputs) -> Estimate:
    """Data-dependent: Y, indices, inverse_indices and counts at most the input's elements each, and one
    Python key per element (a tuple per slice), one Python step per element."""
    x = inputs[0]
    return Estimate(
        (_out((x.size,), "unique values"), _out((3 * x.size,), "indices, inverse, counts"),
         _out((x.size,), "Python keys", COORDINATE_BYTES)),
        x.size * STEP // 10,
    )  # fmt: skip


@_estimates("Einsum")
def _einsum(node, inputs) -> Estimate:
    """The output and the direct loop over every label (an upper bound of numpy.einsum's work)."""
    from .ops.einsum import einsum_plan

    plan = einsum_plan(node.attr("equation", kind=str), [x.shape for x in _present(inputs)])
    return Estimate((_out(plan.output_shape),) + tuple(_out(x.shape, "float64 copy") for x in _present(inputs)),
                    plan.loop_size)  # fmt: skip


@_estimates("Det")
def _det(node, inputs) -> Estimate:
    x = inputs[0]
    n = x.shape[-1]
    return Estimate((_out(x.shape, "float64 copy (LU)"), _out(x.shape[:-2])), math.prod(x.shape[:-2]) * n**3)


# -- estimators: products ----------------------------------------------------------------------------


def _matmul_estimate(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> Estimate:
    """numpy.matmul's shapes: 1-D operands promoted; batch dimensions broadcast."""
    a2 = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b2 = b_shape + (1,) if len(b_shape) == 1 else b_shape
    batch = _broadcast(a2[:-2], b2[:-2])
    m, k, n = a2[-2], a2[-1], b2[-1]
    out = batch + (m, n)
    return Estimate((_out(out),), math.prod(out) * k)


@_estimates("MatMul", "MatMulInteger")
def _matmul(node, inputs) -> Estimate:
    return _matmul_estimate(inputs[0].shape, inputs[1].shape)


@_estimates("QLinearMatMul")
def _qlinear_matmul(node, inputs) -> Estimate:
    return _matmul_estimate(inputs[0].shape, inputs[3].shape)


@_estimates("MatMulIntegerToFloat", "DynamicQuantizeMatMul", domain="com.microsoft")
def _matmul_to_float(node, inputs) -> Estimate:
    return _matmul_estimate(inputs[0].shape, inputs[1].shape)


def _gemm_estimate(node, a: np.ndarray, b: np.ndarray, c) -> Estimate:
    m, k = a.shape[::-1] if node.attr("transA", 0, int) else a.shape
    n = b.shape[0] if node.attr("transB", 0, int) else b.shape[1]
    return Estimate((_out((m, n)),), m * n * k)


@_estimates("Gemm")
def _gemm(node, inputs) -> Estimate:
    return _gemm_estimate(node, inputs[0], inputs[1], None)


@_estimates("QGemm", domain="com.microsoft")
def _qgemm(node, inputs) -> Estimate:
    return _gemm_estimate(node, inputs[0], inputs[3], None)


# -- estimators: sliding windows -----------------------------------------------------------------------


def _conv_estimate(node, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> Estimate:
    """Conv, ConvInteger, QLinearConv: the padded input, im2col's columns (or, one input channel per group,
    the tap sums over the padded grid), the output; work N * M * prod(output) * C/group * prod(kernel)."""
    from .window import conv_window

    window, group = conv_window(node, tuple(x_shape), tuple(w_shape))
    n, channels = x_shape[:2]
    out_channels, taps = w_shape[0], math.prod(window.kernel)
    padded = tuple(d + b + e for d, b, e in zip(x_shape[2:], window.pads_begin, window.pads_end))
    points = math.prod(window.output)
    if w_shape[1] == 1:  # one input channel per group: tap sums over the padded grid, one numpy call per tap
        middle = _out((n, out_channels) + padded, "tap sums over the padded input")
        work = n * out_channels * math.prod(padded) * taps + taps * STEP
    else:
        middle = _out((n, channels * taps, points), "im2col columns")
        work = n * out_channels * points * (channels // group) * taps
    allocations = (_out((n, channels) + padded, "padded input"), middle, _out((n, out_channels) + window.output))
    return Estimate(allocations, work)


@_estimates("Conv", "ConvInteger")
def _conv(node, inputs) -> Estimate:
    return _conv_estimate(node, inputs[0].shape, inputs[1].shape)


@_estimates("DeformConv")
def _deform_conv(node, inputs) -> Estimate:
    """Conv's estimate (the sampled columns take im2col's place); each column value reads four corners."""
    conv = _conv_estimate(node, inputs[0].shape, inputs[1].shape)
    return Estimate(conv.allocations, 4 * conv.work)


@_estimates("FusedConv", domain="com.microsoft")
def _fused_conv(node, inputs) -> Estimate:
    return _conv_estimate(node, inputs[0].shape, inputs[1].shape)


@_estimates("QLinearConv")
def _qlinear_conv(node, inputs) -> Estimate:
    return _conv_estimate(node, inputs[0].shape, inputs[3].shape)


@_estimates("QLinearConv", domain="com.microsoft")
def _qlinear_conv_channels_last(node, inputs) -> Estimate:
    x_shape = inputs[0].shape
    if node.attr("channels_last", 0, int) == 1:
        x_shape = x_shape[:1] + x_shape[-1:] + x_shape[1:-1]
    return _conv_estimate(node, x_shape, inputs[3].shape)


@_estimates("ConvTranspose")
def _conv_transpose(node, inputs) -> Estimate:
    """The per-tap products (N, M, prod(kernel), *D), the full scatter (N, M, *full), the cropped output."""
    from .ops.nn import transposed_window

    x_shape, w_shape = inputs[0].shape, inputs[1].shape
    window, group = transposed_window(node, x_shape, w_shape)
    n, channels = x_shape[:2]
    out_channels, taps = w_shape[1] * group, math.prod(window.kernel)
    allocations = (
        _out((n, out_channels, taps) + tuple(x_shape[2:]), "per-tap products"),
        _out((n, out_channels) + window.full, "full scatter"),
        _out((n, out_channels) + window.output),
    )
    work = n * channels * math.prod(x_shape[2:]) * (out_channels // group) * taps + taps * STEP
    return Estimate(allocations, work)


def _pool_estimate(node, x_shape: tuple[int, ...], outputs: int = 1) -> Estimate:
    """A pool over (N, C, *D): the padded input, the output(s), the (output, kernel) tap mask; one numpy call
    per tap over every output point."""
    from .window import resolve_window

    ceil_mode = node.attr("ceil_mode", 0, int)
    if ceil_mode not in (0, 1) or len(x_shape) < 3:
        raise ValueError("malformed")
    window = resolve_window(node, tuple(x_shape[2:]), ceil_mode=bool(ceil_mode))
    n, channels = x_shape[:2]
    padded = tuple(d + b + e for d, b, e in zip(x_shape[2:], window.pads_begin, window.pads_end))
    taps = math.prod(window.kernel)
    out = (n, channels) + window.output
    allocations = [_out((n, channels) + padded, "padded input")]
    allocations += [_out(out, "output" if i == 0 else f"output {i}") for i in range(outputs)]
    allocations.append(_out(window.output + window.kernel, "window mask", 1))
    return Estimate(tuple(allocations), math.prod(out) * taps + taps * STEP)


@_estimates("MaxPool")
def _max_pool(node, inputs) -> Estimate:
    return _pool_estimate(node, inputs[0].shape, outputs=len([o for o in node.proto.output if o]))


@_estimates("AveragePool", "LpPool")
def _average_pool(node, inputs) -> Estimate:
    return _pool_estimate(node, inputs[0].shape)


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:1] + shape[-1:] + shape[1:-1]


@_estimates("QLinearAveragePool", domain="com.microsoft")
def _qlinear_average_pool(node, inputs) -> Estimate:
    shape = inputs[0].shape
    return _pool_estimate(node, _channels_last(shape) if node.attr("channels_last", 0, int) == 1 else shape)


@_estimates("NhwcMaxPool", domain="com.microsoft")
def _nhwc_max_pool(node, inputs) -> Estimate:
    return _pool_estimate(node, _channels_last(inputs[0].shape))


# -- estimators: com.microsoft transformer ops (refquant/ops/contrib_activations.py, contrib_matmul.py,
#    contrib_normalization.py, contrib_attention.py) ---------------------------------------------------------

_estimates("Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd", domain="com.microsoft")(_bounded)


@_estimates("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", domain="com.microsoft")
def _skip_layer_norm(node, inputs) -> Estimate:
    """The float64 sum, the output and input_skip_bias_sum: three tensors of the input's shape."""
    shape = inputs[0].shape
    return Estimate((_out(shape, "input + skip + bias"), _out(shape), _out(shape, "input_skip_bias_sum")),
                    10 * math.prod(shape))


@_estimates("EmbedLayerNormalization", "QEmbedLayerNormalization", domain="com.microsoft")
def _embed_layer_norm(node, inputs) -> Estimate:
    """The gathered rows (three tables), their sum and the output: (B, S, hidden) each."""
    shape = tuple(inputs[0].shape) + (inputs[2].shape[1],)
    return Estimate((_out(shape, "gathered embeddings (each table)"), _out(shape, "embedding_sum"), _out(shape)),
                    10 * math.prod(shape))


@_estimates("FusedMatMul", domain="com.microsoft")
def _fused_matmul(node, inputs) -> Estimate:
    def operand(shape, batch, trans):
        shape = tuple(shape)
        if len(shape) >= 2 and node.attr(batch, 0, int):
            shape = shape[1:-1] + shape[:1] + shape[-1:]
        if len(shape) >= 2 and node.attr(trans, 0, int):
            shape = shape[:-2] + shape[-1:] + shape[-2:-1]
        return shape

    return _matmul_estimate(operand(inputs[0].shape, "transBatchA", "transA"), operand(inputs[1].shape, "transBatchB", "transB"))


@_estimates("MatMulNBits", domain="com.microsoft")
def _matmul_nbits(node, inputs) -> Estimate:
    """The dequantized weight (N, K) and its codes in float64, then A @ W^T."""
    n, blocks, blob = inputs[1].shape
    codes = (n, blocks * blob * 8 // max(node.attr("bits", 4, int), 1))
    a = tuple(inputs[0].shape)
    product = _matmul_estimate(a, (a[-1] if a else 0, n))
    return Estimate((_out(codes, "unpacked codes (float64)"), _out(codes, "dequantized weight"))
                    + product.allocations, product.work + 4 * math.prod(codes))


@_estimates("GatherBlockQuantized", domain="com.microsoft")
def _gather_block_quantized(node, inputs) -> Estimate:
    """The dequantized data (its codes, zero points and scales repeated) in float64, then the gathered output."""
    data, indices = inputs[0], inputs[1]
    per = 8 // max(node.attr("bits", 4, int), 1) if data.dtype == np.uint8 else 1
    shape = tuple(data.shape[:-1]) + (data.shape[-1] * per,) if data.ndim else ()
    axis = node.attr("gather_axis", 0, int) % max(len(shape), 1)
    out = shape[:axis] + tuple(indices.shape) + shape[axis + 1:]
    return Estimate(tuple(_out(shape, what) for what in ("codes", "zero points", "scales", "dequantized data"))
                    + (_out(out),), 5 * math.prod(shape) + math.prod(out))


def _attention_estimate(node, x_shape, width: int, past) -> Estimate:
    """[Q | K | V] (B, S, width); scores, mask and probabilities (B, N, S, T); the output. Work: the projection
    B * S * D_i * width plus B * N * S * T * (H + H_v)."""
    batch, seq, hidden_in = x_shape
    heads = node.attr("num_heads", 1, int)
    sizes = node.attr("qkv_hidden_sizes", None) or [width // 3] * 3
    total = seq + (past.shape[3] if past is not None else 0)
    scores = (batch, heads, seq, total)
    allocations = (_out((batch, seq, width), "Q, K, V"), _out(scores, "attention scores"),
                   _out(scores, "attention probabilities"), _out((2, batch, heads, total, max(sizes[1] // heads, 1)), "present"),
                   _out((batch, seq, sizes[2])))
    work = batch * seq * hidden_in * width + batch * seq * total * (sizes[0] + sizes[2])
    return Estimate(allocations, work)


@_estimates("Attention")
def _onnx_attention(node, inputs) -> Estimate:
    """ai.onnx Attention: K and V with the past, the scores and probabilities (B, H, S, T), the output.
    Q, K, V are (B, heads, S, head_size) or (B, S, heads * head_size). Work: B * H * S * T * (head_size + v's)."""
    padded = inputs + [None] * 7
    q, k, v, past_key = padded[0], padded[1], padded[2], padded[4]
    if q.ndim == 4:
        batch, heads, seq, q_width = q.shape
        total, v_width = k.shape[2], v.shape[3]
    else:
        batch, seq = q.shape[:2]
        heads = max(node.attr("q_num_heads", 1, int), 1)
        q_width, total, v_width = q.shape[2] // heads, k.shape[1], v.shape[2] // max(node.attr("kv_num_heads", 1, int), 1)
    if past_key is not None:
        total += past_key.shape[2]
    scores = (batch, heads, seq, total)
    allocations = (_out(scores, "attention scores"), _out(scores, "attention probabilities"),
                   _out((batch, heads, total, max(q_width, v_width)), "present key or value"),
                   _out((batch, heads, seq, v_width)))
    return Estimate(allocations, batch * heads * seq * total * (q_width + v_width))


@_estimates("LinearAttention")
def _linear_attention(node, inputs) -> Estimate:
    """The recurrent state (B, heads, key width, value width) and the output; work: one state update per step."""
    query, key, value = inputs[:3]
    batch, steps = query.shape[:2]
    q_heads = max(node.attr("q_num_heads", 1, int), 1)
    kv_heads = max(node.attr("kv_num_heads", q_heads, int), 1)
    state = (batch, q_heads, key.shape[2] // kv_heads, value.shape[2] // kv_heads)
    output = (batch, steps, q_heads * (value.shape[2] // kv_heads))
    return Estimate((_out(state, "state"), _out(output)), steps * math.prod(state))


@_estimates("CausalConvWithState")
def _causal_conv_with_state(node, inputs) -> Estimate:
    """The input with the carried state prepended, the output; work: every tap of the depthwise kernel."""
    x, weight = inputs[:2]
    taps = weight.shape[-1]
    padded = tuple(x.shape[:-1]) + (x.shape[-1] + taps,)
    return Estimate((_out(padded, "input after the state"), _out(tuple(x.shape))), math.prod(x.shape) * taps)


@_estimates("Attention", domain="com.microsoft")
def _attention(node, inputs) -> Estimate:
    padded = inputs + [None] * 7
    return _attention_estimate(node, inputs[0].shape, inputs[1].shape[1], padded[4])


@_estimates("QAttention", domain="com.microsoft")
def _qattention(node, inputs) -> Estimate:
    padded = inputs + [None] * 9
    return _attention_estimate(node, inputs[0].shape, inputs[1].shape[1], padded[8])


@_estimates("MultiHeadAttention", domain="com.microsoft")
def _multi_head_attention(node, inputs) -> Estimate:
    """Q, K, V (with the past), the scores and probabilities (B, N, S, T), present_key/value, the output."""
    padded = inputs + [None] * 10
    q_shape, key, past = tuple(padded[0].shape), padded[1], padded[6]
    batch, seq = q_shape[:2]
    width = math.prod(q_shape[2:]) // (3 if len(q_shape) == 5 else 1)
    kv = seq if key is None else (key.shape[2] if len(key.shape) == 4 else key.shape[1])
    total = kv + (past.shape[2] if past is not None else 0)
    heads = max(node.attr("num_heads", 1, int), 1)
    scores = (batch, heads, seq, total)
    allocations = (_out((batch, seq, 3 * width), "Q, K, V"), _out((batch, total, 2 * width), "K, V with the past"),
                   _out(scores, "attention scores"), _out(scores, "attention probabilities"),
                   _out((2, batch, total, width), "present_key, present_value"), _out((batch, seq, width)))
    return Estimate(allocations, 2 * batch * seq * total * width + batch * (seq + total) * width)


# -- estimators: recurrent layers (refquant/ops/recurrent.py, contrib_recurrent.py) ---------------------------

_RECURRENT_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4, "DynamicQuantizeLSTM": 4}


def _recurrent_estimate(node, inputs) -> Estimate:
    """Y (seq, dirs, batch, hidden), the final states, X in float64 and the gates; DynamicQuantizeLSTM also
    keeps X's product with W for every step (dirs, seq, batch, 4 hidden). Work: seq x dirs x batch x gates x
    hidden x (input + hidden) multiply-adds."""
    x, w, r = inputs[0], inputs[1], inputs[2]
    gates = _RECURRENT_GATES[node.op_type]
    quantized = node.op_type == "DynamicQuantizeLSTM"
    dirs, hidden = w.shape[0], (r.shape[1] if quantized else r.shape[2])
    layout = node.attr("layout", 0, int) if not quantized and node.version >= 14 else 0
    seq, batch, size = (x.shape[1], x.shape[0], x.shape[2]) if layout else x.shape
    allocations = [_out((seq, dirs, batch, hidden), "Y"), _out((2, dirs, batch, hidden), "final states"),
                   _out((seq, batch, size), "X in float64"), _out((batch, gates * hidden), "gates")]
    if quantized:
        allocations.append(_out((dirs, seq, batch, gates * hidden), "X W for every step"))
    return Estimate(tuple(allocations), seq * dirs * batch * gates * hidden * (size + hidden))


_estimates("RNN", "GRU", "LSTM")(_recurrent_estimate)
_estimates("DynamicQuantizeLSTM", domain="com.microsoft")(_recurrent_estimate)


# -- estimators: control flow (refquant/ops/control.py) --------------------------------------------------------


@_estimates("If", "Loop", "Scan")
def _control(node, inputs) -> Estimate:
    """Nothing of its own: each node of a branch or body is checked against the limits when it runs, and
    Loop and Scan charge STEP work units per iteration, counted against max_work (spec/ops/control.md)."""
    return Estimate(())


# -- estimators: sequences and optionals (refquant/ops/sequence.py) -------------------------------------------


@_estimates("SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceAt", "SequenceErase", "SequenceLength",
            "Optional", "OptionalHasElement", "OptionalGetElement", "SequenceMap")
def _sequence_references(node, inputs) -> Estimate:
    """Nothing of their own: they hold references to arrays that exist (SequenceMap's body is checked node by
    node when it runs, STEP work units charged per element, as Loop's)."""
    return Estimate(())


@_estimates("SplitToSequence", "ConcatFromSequence")
def _sequence_copies(node, inputs) -> Estimate:
    """A copy of the input's elements: the tensor split, or all the sequence's elements concatenated."""
    x = inputs[0]
    elements = x.size if isinstance(x, np.ndarray) else sum(int(t.size) for t in x)
    return Estimate((_out((elements,), "output (the input's elements)"),), elements)
