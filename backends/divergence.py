"""Known backend divergences, as data, and the classifier of differing elements.

``divergences.toml`` (shipped beside this module; spec/ links to it) lists each divergence: the backends and operators it
concerns, the profile options under which refquant reproduces it, and the
evidence. An element where a backend differs from the spec profile is

- ``exact`` when the two agree bit for bit (NaN agreeing with NaN),
- ``explained:<name>`` when the reference, run with that *profile* divergence's options, computes
  exactly the backend's value at that element, *and* one of those options can change that element:
  its condition (:mod:`refquant.backends.conditions`) holds at that element of the node that computes it, or
  at some node upstream of it (the option changed an input);
- ``attributed:<name>`` when a *defect* divergence (a backend bug no option reproduces) matches a
  node the element's tensor depends on: the node's own outputs (if the defect is documented to affect
  values, or a wrong shape or dtype through ``affects``) or any tensor computed from them. A defect
  reproduces nothing, so this is a weaker verdict, counted apart and never merged into explained;
- ``unexplained`` otherwise. A tensor of the wrong dtype or shape is unexplained unless a defect
  whose ``affects`` names "dtype" or "shape" matches the node that produces it (directly, or through
  single-input elementwise nodes that carry the shape unchanged).

No tolerance is involved: an explanation is a reproduction, local to where its option acts.
"""

from __future__ import annotations

import fnmatch
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper

from .conditions import condition_for
from refquant.errors import RefquantError
from refquant.profiles import SPEC, Profile, get_profile
from refquant.window import same_total

__all__ = ["Divergence", "OutputReport", "Replay", "load_divergences", "classify", "replay", "DIVERGENCES_FILE"]

DIVERGENCES_FILE = Path(__file__).with_name("divergences.toml")

#: what a divergence's options are replayed on (Divergence.graph)
GRAPHS = ("model", "backend-optimized")

#: how many of the largest differences a report keeps
WORST = 5

#: what a defect may be documented to affect (Divergence.affects)
AFFECTS = ("values", "shape", "dtype")

#: single-input elementwise operators: a tensor of the wrong shape or dtype passes through them with its
#: shape unchanged, so a shape defect of the node upstream still accounts for the mismatch of their output
SHAPE_PASSING = frozenset({
    "QuantizeLinear", "DequantizeLinear", "Cast", "Identity", "Relu", "Clip", "Sigmoid", "Tanh", "Abs", "Neg",
    "LeakyRelu", "Floor", "Ceil", "Round", "Sqrt", "Exp", "Erf", "Gelu", "HardSigmoid", "HardSwish",
})


@dataclass(frozen=True)
class Divergence:
    """One known way a backend's arithmetic departs from the spec profile."""

    name: str
    summary: str
    backends: tuple[str, ...]
    ops: tuple[str, ...]
    options: Mapping[str, object]
    evidence: str
    #: defects only: conditions a node must meet, all of them (spec/backends.md lists the vocabulary):
    #: {attribute: [allowed values]}; "dilated" (true) asks for some dilation > 1; "same_padding"
    #: ([kinds]) for a spatial axis whose SAME padding is one of the kinds (see same_padding_kinds); the
    #: tensor conditions (TENSOR_CONDITIONS) map an input or output index ("0", "1", ...) to what it must satisfy
    when: Mapping[str, object] = field(default_factory=dict)
    #: the graph its options are replayed on: "model" (the one given) or "backend-optimized" (the graph
    #: the backend says it runs after its own rewrites, when the caller of classify() can supply it)
    graph: str = "model"
    #: defects only: what the bug changes in the matching node's outputs ("values", "shape", "dtype"); a
    #: dtype or shape mismatch is attributed only to a defect documented to cause it
    affects: tuple[str, ...] = ("values",)

    @property
    def is_defect(self) -> bool:
        return not self.options

    def concerns(self, backend: str) -> bool:
        """True if ``backend`` matches one of the patterns."""
        return any(fnmatch.fnmatchcase(backend, pattern) for pattern in self.backends)

    def matches(self, node, values: Mapping[str, np.ndarray] | None = None, producers: Mapping | None = None) -> bool:
        """True if ``node`` is one of the ops and meets ``when`` (``producers``: tensor name -> the node
        computing it, for the conditions that look at a node's quantized sources)."""
        return (not self.ops or node.op_type in self.ops) and self._meets(node, values or {}, producers or {})

    def applies_to(self, backend: str, nodes: Iterable, values: Mapping[str, np.ndarray] | None = None) -> bool:
        """True if ``backend`` matches a pattern and some node is one of the ops (meeting ``when``).

        ``values`` (tensor name -> array: initializers, feeds, computed tensors) decides the tensor
        conditions; a tensor it lacks meets none.
        """
        nodes = list(nodes)
        producers = _producers(nodes)
        return self.concerns(backend) and any(self.matches(node, values, producers) for node in nodes)

    def _meets(self, node, values: Mapping[str, np.ndarray], producers: Mapping = {}) -> bool:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for key, allowed in self.when.items():
            if key in TENSOR_CONDITIONS:
                if not all(_tensor_meets(node, values, key, int(index), want) for index, want in allowed.items()):
                    return False
                continue
            if key == "dilated":
                if bool(allowed) != any(d > 1 for d in attrs.get("dilations", [])):
                    return False
                continue
            if key == "same_padding":
                if not set(allowed) & same_padding_kinds(node, attrs, values):
                    return False
                continue
            if key in NODE_CONDITIONS:
                if bool(allowed) != NODE_CONDITIONS[key](node, values, producers):
                    return False
                continue
            value = attrs.get(key)
            value = value.decode() if isinstance(value, bytes) else value
            if value not in allowed:
                return False
        return True

    def profile(self, base: Profile = SPEC) -> Profile:
        return base.with_options(name=f"{base.name}+{self.name}", **self.options)


SAME_PADDING_KINDS = {"negative", "odd", "uneven"}


def same_padding_kinds(node, attrs: Mapping[str, object], values: Mapping[str, np.ndarray]) -> set[str]:
    """What ONNX's SAME padding looks like on a window's spatial axes (an empty set when it cannot tell).

    Per axis of extent D, stride s and kernel extent e = (k - 1) * d + 1, the SAME total is
    (ceil(D / s) - 1) * s + e - D: "negative" when it is below 0, "odd" when odd and positive,
    and "uneven" when s does not divide D.
    """
    x = values.get(node.input[0]) if node.input else None
    weight = values.get(node.input[1]) if len(node.input) > 1 else None
    kernel = attrs.get("kernel_shape") or (weight.shape[2:] if weight is not None else None)
    if x is None or kernel is None or np.ndim(x) != len(kernel) + 2:
        return set()
    ones = [1] * len(kernel)
    kinds = set()
    for size, k, s, d in zip(np.shape(x)[2:], kernel, attrs.get("strides") or ones, attrs.get("dilations") or ones):
        total = same_total(size, (k - 1) * d + 1, s)
        if total < 0:
            kinds.add("negative")
        elif total % 2:
            kinds.add("odd")
        if size % s:
            kinds.add("uneven")
    return kinds


def _producers(nodes: Iterable) -> dict:
    """tensor name -> the node that computes it."""
    return {name: node for node in nodes for name in node.output if name}


def _centered(values: Mapping[str, np.ndarray], node, index: int, zero_point_index: int) -> np.ndarray | None:
    """node input ``index`` minus its zero point (input ``zero_point_index``, 0 when absent) as int64."""
    names = list(node.input)
    q = values.get(names[index]) if index < len(names) and names[index] else None
    if q is None or np.asarray(q).dtype.kind not in "iu":
        return None
    zp_name = names[zero_point_index] if zero_point_index < len(names) else ""
    zp = values.get(zp_name) if zp_name else 0
    if zp is None:
        return None
    zp = np.asarray(zp).astype(np.int64)
    if index == 0 and zp.ndim == 1 and zp.size > 1:  # a per-row a_zero_point
        zp = zp[:, None]
    return np.asarray(q).astype(np.int64) - zp


def _float32_sum_inexact(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """MatMulInteger: some output's sum of |a - a_zp| * |b - b_zp| exceeds 2**24, so that a float32
    accumulation (OpenVINO's) may round in some order (below it every partial sum is a float32 integer)."""
    a, b = _centered(values, node, 0, 2), _centered(values, node, 1, 3)
    if a is None or b is None or a.ndim == 0 or b.ndim == 0:
        return False
    a, b = np.abs(a), np.abs(b)
    if a.ndim == 1:
        a = a[None, :]
    if b.ndim == 1:
        b = b[:, None]
    try:
        return bool((np.matmul(a, b) > 2**24).any())
    except ValueError:
        return False


def _dequantized_source(name: str, producers: Mapping, values: Mapping[str, np.ndarray]):
    """(q, zero point) of the DequantizeLinear (per tensor) that computes ``name``, or None."""
    source = _dequantized_bytes(name, producers, values)
    return source if source is not None and source[1].size == 1 else None


def _dequantized_bytes(name: str, producers: Mapping, values: Mapping[str, np.ndarray]):
    """(q, zero point) of the DequantizeLinear (any zero-point shape) that computes ``name``, or None."""
    node = producers.get(name)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    q = values.get(node.input[0])
    zp = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.int64)
    if q is None or zp is None:
        return None
    return np.asarray(q), np.asarray(zp)


def _u8s8_pairs_saturate(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """MatMul of DequantizeLinear(uint8 or int8 x, per tensor) by DequantizeLinear(int8 2-D w, per tensor or
    per column): some adjacent pair along K (k even, k + 1) of products of the stored bytes,
    x[k] * w[k] + x[k+1] * w[k+1], leaves int16, where OpenVINO's int8 GEMM on AVX2 (VPMADDUBSW) saturates it
    (spec/backends.md). An int8 x enters the GEMM shifted to unsigned bytes, x + 128."""
    from refquant.lowerings import pairwise_saturation_excess

    if len(node.input) < 2:
        return False
    x, w = _dequantized_source(node.input[0], producers, values), _dequantized_bytes(node.input[1], producers, values)
    if x is None or w is None or x[0].dtype not in (np.uint8, np.int8) or w[0].dtype != np.int8 or w[0].ndim != 2 or x[0].ndim < 1:
        return False
    x_q = x[0] if x[0].ndim > 1 else x[0][None, :]
    if x_q.dtype == np.int8:
        x_q = x_q.astype(np.int32) + 128
    if x_q.shape[-1] != w[0].shape[0]:
        return False
    return bool(pairwise_saturation_excess(x_q, w[0]).any())


def _qlinear_float32_inexact(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """QLinearMatMul / QLinearConv: OpenVINO's lowering is modelled (per-tensor 8-bit operands, float32 or
    float16 scales) but its float32 accumulation, bias included, is not exact in any order
    (refquant.ops.qlinear_lowered.float32_accumulation_inexact, the test the emulation itself applies)."""
    from refquant.ops.qlinear_lowered import float32_accumulation_inexact

    inputs = [values.get(name) if name else None for name in node.input]
    return float32_accumulation_inexact(node.op_type, inputs)


def _quantized_conv(node, values: Mapping[str, np.ndarray], producers: Mapping):
    """(x_q, x zero point, w_q, w zero point) of a quantized convolution: QLinearConv's own inputs, or a Conv of
    DequantizeLinear(x, per tensor) and DequantizeLinear(w); None otherwise."""
    names = list(node.input)
    if node.op_type == "QLinearConv":
        arrays = [values.get(names[i]) if i < len(names) and names[i] else None for i in (0, 2, 3, 5)]
        return None if any(a is None for a in arrays) else tuple(np.asarray(a) for a in arrays)
    if node.op_type != "Conv" or len(names) < 2:
        return None
    x, w = _dequantized_source(names[0], producers, values), _dequantized_bytes(names[1], producers, values)
    return None if x is None or w is None else (x[0], x[1], w[0], w[1])


def _group(node) -> int:
    return next((int(helper.get_attribute_value(a)) for a in node.attribute if a.name == "group"), 1)


def _grouped_gemm(node, w_q: np.ndarray) -> bool:
    """group > 1 and not depthwise (one input and one output channel per group): OpenVINO's int8 convolution
    then runs oneDNN's GEMM kernel (jit_gemm_I8 / jit_gemm_i8 in the runtime graph)."""
    group = _group(node)
    return group > 1 and w_q.ndim >= 3 and not (w_q.shape[0] == group and w_q.shape[1] == 1)


def _s8_conv_odd_weights(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """Conv of DequantizeLinear(int8 x, zero point 0) and DequantizeLinear(int8 w, zero point 0), or QLinearConv
    with those operands, some w odd: OpenVINO's int8 convolution with a signed source on AVX2 (no VNNI) halves
    the weights (oneDNN's 0.5 weight adjustment, rounded to even) and doubles the result (spec/backends.md)."""
    operands = _quantized_conv(node, values, producers)
    if operands is None:
        return False
    x_q, x_zp, w_q, w_zp = operands
    if x_q.dtype != np.int8 or w_q.dtype != np.int8 or np.any(x_zp) or np.any(w_zp):
        return False
    return bool((w_q.astype(np.int64) % 2).any())


def _padded(node, x_q: np.ndarray, w_q: np.ndarray) -> bool:
    """Some pad of the convolution is positive (explicit pads, or an auto_pad SAME total)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        ones = [1] * (x_q.ndim - 2)
        kernel = attrs.get("kernel_shape") or w_q.shape[2:]
        return any(
            same_total(size, (k - 1) * d + 1, s) > 0
            for size, k, s, d in zip(x_q.shape[2:], kernel, attrs.get("strides") or ones, attrs.get("dilations") or ones)
        )
    return auto == "NOTSET" and any(p > 0 for p in attrs.get("pads", ()))


def _u8_gemm_conv3d_padded(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """A 3-D grouped (not depthwise) convolution of uint8 x with a nonzero zero point and some padding: OpenVINO's
    GEMM int8 kernel (jit_gemm_I8) compensates the padded taps of some axes as bytes 0, not as the zero point."""
    operands = _quantized_conv(node, values, producers)
    if operands is None:
        return False
    x_q, x_zp, w_q, _ = operands
    if x_q.dtype != np.uint8 or x_q.ndim != 5 or not np.any(x_zp):
        return False
    return _grouped_gemm(node, w_q) and _padded(node, x_q, w_q)


def _u8_conv_pairs_saturate(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """Convolution (not depthwise) of uint8 x by int8 w with weight zero point 0 (a QDQ Conv or a QLinearConv),
    where two products of the stored bytes can leave int16 together, 2 * max(x) * max|w| > 32767: OpenVINO's
    int8 kernels (jit_avx2_I8, and jit_gemm_I8 for grouped convolutions) add adjacent products along K with
    VPMADDUBSW on AVX2, which saturates (spec/backends.md). Their K order is not measured, so the bound uses
    the extremes."""
    operands = _quantized_conv(node, values, producers)
    if operands is None:
        return False
    x_q, _, w_q, w_zp = operands
    not_depthwise = _group(node) == 1 or _grouped_gemm(node, w_q)
    if x_q.dtype != np.uint8 or w_q.dtype != np.int8 or np.any(w_zp) or not not_depthwise:
        return False
    return 2 * int(x_q.max(initial=0)) * max(int(w_q.max(initial=0)), -int(w_q.min(initial=0))) > 32767


def _u8_gemm_output_wraps(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """QuantizeLinear to uint8 (per tensor) of a grouped (not depthwise) Conv of DequantizeLinear(uint8 x) and
    DequantizeLinear(int8 w), some rint(z / scale) + zero point at or above 32768: OpenVINO's GEMM int8 kernel
    (jit_gemm_I8) converts its requantized output to uint8 through int16 (unsigned saturation to 65535, then
    signed packing), so it gives 0 there instead of 255."""
    if node.op_type != "QuantizeLinear" or len(node.input) < 3:
        return False
    conv = producers.get(node.input[0])
    operands = None if conv is None else _quantized_conv(conv, values, producers)
    z, scale, zp = (values.get(name) for name in node.input[:3])
    if operands is None or conv.op_type != "Conv" or z is None or scale is None or zp is None:
        return False
    x_q, _, w_q, _ = operands
    zp = np.asarray(zp)
    if x_q.dtype != np.uint8 or w_q.dtype != np.int8 or zp.dtype != np.uint8 or np.asarray(scale).size != 1:
        return False
    with np.errstate(all="ignore"):
        level = np.rint(np.asarray(z, np.float64) / float(np.asarray(scale, np.float64).reshape(()))) + float(zp.reshape(()))
    return _grouped_gemm(conv, w_q) and bool((level >= 32768).any())


def _pool_axes(node, values: Mapping[str, np.ndarray]):
    """Per spatial axis of a pool with explicit pads: (D, k, s, d, pad_begin, pad_end, ceil_mode); None otherwise."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto = attrs.get("auto_pad", b"NOTSET")
    x = values.get(node.input[0]) if node.input else None
    kernel = attrs.get("kernel_shape")
    if (auto.decode() if isinstance(auto, bytes) else auto) != "NOTSET" or x is None or not kernel:
        return None
    rank = len(kernel)
    ones, pads = [1] * rank, list(attrs.get("pads") or [0] * 2 * rank)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    return [
        (size, k, s, d, pads[axis], pads[axis + rank], ceil_mode)
        for axis, (size, k, s, d) in enumerate(
            zip(np.shape(x)[2:], kernel, attrs.get("strides") or ones, attrs.get("dilations") or ones)
        )
    ]


def _unit_stride_pool_padding(node, values: Mapping[str, np.ndarray], producers: Mapping) -> bool:
    """MaxPool with every stride and dilation 1 (onnx.reference's CommonPool path, which mishandles explicit
    padding: spec/ops/nn.md) and some explicit pad."""
    axes = _pool_axes(node, values) if node.op_type == "MaxPool" else None
    if not axes or any(s != 1 or d != 1 for _, _, s, d, *_ in axes):
        return False
    return any(begin + end > 0 for *_, begin, end, _ in axes)


#: node conditions (``key = true`` or ``false``): computed from the node's tensors and their producers
NODE_CONDITIONS = {
    "float32_sum_inexact": _float32_sum_inexact,
    "u8s8_pairs_saturate": _u8s8_pairs_saturate,
    "qlinear_float32_inexact": _qlinear_float32_inexact,
    "s8_conv_odd_weights": _s8_conv_odd_weights,
    "u8_gemm_conv3d_padded": _u8_gemm_conv3d_padded,
    "u8_gemm_output_wraps": _u8_gemm_output_wraps,
    "u8_conv_pairs_saturate": _u8_conv_pairs_saturate,
    "unit_stride_pool_padding": _unit_stride_pool_padding,
}


def _outside(array: np.ndarray, bounds) -> bool:
    values = array.astype(np.float64)
    return bool(((values < bounds[0]) | (values > bounds[1])).any())


#: condition -> (the node's inputs or outputs, test of one tensor against the condition's value)
TENSOR_CONDITIONS = {
    "input_rank": ("input", lambda array, ranks: array.ndim in ranks),  # its rank is one of these
    "input_type": ("input", lambda array, names: array.dtype.name in names),  # its element type is one of these
    "input_min_size": ("input", lambda array, size: array.size >= size),  # it holds at least this many elements
    "input_outside": ("input", _outside),  # some element lies outside [low, high]
    "input_equals": ("input", lambda array, wanted: bool(np.isin(array.astype(np.float64), wanted).any())),
    "output_type": ("output", lambda array, names: array.dtype.name in names),
}


def _tensor_meets(node, values: Mapping[str, np.ndarray], condition: str, index: int, want) -> bool:
    side, test = TENSOR_CONDITIONS[condition]
    names = node.input if side == "input" else node.output
    array = values.get(names[index]) if index < len(names) and names[index] else None
    return array is not None and test(np.asarray(array), want)


def _profile_options(name: str | None, path: Path) -> dict:
    """The options by which the named profile departs from the spec profile ({} when no profile is named)."""
    if name is None:
        return {}
    try:
        profile = get_profile(name)
    except RefquantError:
        raise RefquantError(f"{path}: unknown profile {name!r}") from None
    return {
        f.name: getattr(profile, f.name)
        for f in fields(profile)
        if f.name != "name" and getattr(profile, f.name) != getattr(SPEC, f.name)
    }


def load_divergences(path: str | Path | None = None) -> list[Divergence]:
    """Parse the divergences file (default: the one shipped beside this module)."""
    path = Path(path or DIVERGENCES_FILE)
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("divergence", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RefquantError(f"cannot read divergences file '{path}': {exc}") from None
    divergences = []
    for index, entry in enumerate(entries):
        missing = {"name", "summary", "backends", "evidence"} - set(entry)
        if missing or sum(key in entry for key in ("options", "profile", "when")) != 1:
            raise RefquantError(
                f"{path}: divergence #{index + 1} lacks {sorted(missing) or 'exactly one of options / profile / when'}"
            )
        divergence = Divergence(
            name=entry["name"],
            summary=entry["summary"],
            backends=tuple(entry["backends"]),
            ops=tuple(entry.get("ops", ())),
            options=dict(entry["options"]) if "options" in entry else _profile_options(entry.get("profile"), path),
            evidence=entry["evidence"],
            when=dict(entry.get("when", {})),
            graph=entry.get("graph", "model"),
            affects=tuple(entry.get("affects", ("values",))),
        )
        if not divergence.affects or set(divergence.affects) - set(AFFECTS) or ("affects" in entry and "when" not in entry):
            raise RefquantError(
                f"{path}: divergence '{divergence.name}': affects lists some of {', '.join(AFFECTS)} "
                "(defects only)"
            )
        if divergence.graph not in GRAPHS or (divergence.graph != "model" and "when" in entry):
            raise RefquantError(
                f"{path}: divergence '{divergence.name}': graph must be one of {', '.join(GRAPHS)} "
                "(and a defect's is the model)"
            )
        divergence.profile()  # unknown option names or values fail here, with the option named
        for key, value in divergence.when.items():
            if key in TENSOR_CONDITIONS and not (isinstance(value, dict) and all(i.isdigit() for i in value)):
                raise RefquantError(
                    f"{path}: divergence '{divergence.name}': {key} must map tensor indices "
                    f"(\"0\", \"1\", ...) to values"
                )
        unknown = set(divergence.when.get("same_padding", ())) - SAME_PADDING_KINDS
        if unknown:
            raise RefquantError(
                f"{path}: divergence '{divergence.name}': same_padding kinds are {sorted(SAME_PADDING_KINDS)}, "
                f"not {sorted(unknown)}"
            )
        divergences.append(divergence)
    names = [d.name for d in divergences]
    if len(set(names)) != len(names):
        raise RefquantError(f"{path}: divergence names repeat: {sorted(n for n in names if names.count(n) > 1)}")
    return divergences


@dataclass
class OutputReport:
    """How one tensor of a backend compares with the reference."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int = 0
    exact: int = 0
    explained: dict[str, int] = field(default_factory=dict)
    #: elements a defect accounts for without reproducing them (a weaker verdict than explained)
    attributed: dict[str, int] = field(default_factory=dict)
    unexplained: int = 0
    max_abs_diff: float = 0.0
    worst: list[dict] = field(default_factory=list)
    problem: str | None = None  # a mismatch of dtype or shape: nothing element-wise to classify
    reference_error: str | None = None  # the spec profile refuses the input (e.g. NaN): no element is exact

    @property
    def status(self) -> str:
        """unexplained, attributed, explained or exact: the weakest verdict of its elements."""
        if (self.problem and not self.attributed) or self.unexplained:
            return "unexplained"
        if self.attributed:
            return "attributed"
        return "explained" if self.explained else "exact"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "status": self.status,
            "size": self.size,
            "exact": self.exact,
            "explained": dict(self.explained),
            "attributed": dict(self.attributed),
            "unexplained": self.unexplained,
            "max_abs_diff": self.max_abs_diff,
            "worst": self.worst,
            "problem": self.problem,
            "reference_error": self.reference_error,
        }


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality of values, NaN equal to NaN."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 == b64) | (np.isnan(a64) & np.isnan(b64))


# -- the graph's dataflow ------------------------------------------------------------------------------------------


def _downstream(nodes: Sequence, sources: Iterable[str]) -> set[str]:
    """The tensors ``sources`` and every tensor computed from them (``nodes`` in topological order)."""
    reached = set(sources)
    for node in nodes:
        if any(name in reached for name in node.input if name):
            reached.update(name for name in node.output if name)
    return reached


def _node_key(proto) -> tuple:
    attrs = tuple(sorted(a.SerializeToString() for a in proto.attribute))
    return (proto.domain or "", proto.op_type, tuple(proto.input), tuple(proto.output), attrs)


def _same_constant(a, b) -> bool:
    x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _call_node(node, inputs: list) -> tuple | None:
    """The node run alone on ``inputs`` (None where refquant refuses them), warnings silenced."""
    from refquant.session import Session

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return Session._call(node, inputs)
        except RefquantError:
            return None


def _partial_run(session, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str | None]:
    """Every tensor the spec computes, skipping the nodes it refuses (and what depends on them), and the
    first refusal's message (None when it refuses nothing)."""
    from refquant.session import Session

    try:
        values = dict(session.constants)
        values.update(session._check_feeds(feeds))
    except RefquantError as exc:
        return {}, str(exc)
    error = None
    with np.errstate(all="ignore"):
        for node in session._plan:
            if any(name and name not in values for name in node.proto.input):
                continue
            try:
                results = Session._call(node, [values[name] if name else None for name in node.proto.input])
            except RefquantError as exc:
                error = error or str(exc)
                continue
            values.update((name, value) for name, value in zip(node.proto.output, results) if name)
    return values, error


@dataclass
class Replay:
    """A profile divergence's options replayed on a graph, and where they can change each tensor.

    ``values`` holds every tensor of the replay. ``masks`` maps a tensor to the elements where some
    option's condition holds at the node computing it (refquant.backends.conditions); ``tainted`` holds the
    tensors computed from a node where some condition held (or that the backend's rewrite introduced).
    """

    values: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    producer_inputs: dict[str, tuple[str, ...]]
    tainted: set[str]

    def allowed(self, name: str) -> np.ndarray | bool:
        """Where an option can have changed tensor ``name``: every element when an input of its node was
        changed, else the elements where a condition holds at its node (False where none does)."""
        inputs = self.producer_inputs.get(name)
        if inputs is None:
            return False
        if any(i in self.tainted for i in inputs):
            return True
        return self.masks.get(name, False)


def replay(
    model,
    options: Mapping[str, object],
    feeds: Mapping[str, np.ndarray],
    *,
    base_model=None,
    profile: Profile | None = None,
) -> Replay:
    """Run ``model`` with the spec profile plus ``options`` and find, per tensor, where they can act.

    At each node of an op some option concerns, the node is run alone on the replay's inputs with the
    spec profile: where the spec refuses them and the options do not, every element of the node is the
    options' doing; otherwise an option with an element-wise condition marks the elements where it holds,
    and the options without one mark where the node's value under them differs from the spec's.
    ``base_model``: the model a backend rewrote into ``model``; the nodes that the rewrite added, and
    those reading an initializer it added or changed, count as changed everywhere. Raises RefquantError
    where the replay itself fails.
    """
    from refquant.session import Session

    profile = profile or SPEC.with_options(name="replay", **options)
    session = Session(model, profile=profile)
    takes = {value.name for value in session.model.graph.input}
    values = session.run_all({name: value for name, value in feeds.items() if name in takes})
    conditions = {option: condition_for(option) for option in options}
    differing_options = {o: v for o, v in options.items() if conditions[o].where is None}
    spec_session = Session(session.model)
    differs_session = None
    original, changed = None, set()
    if base_model is not None:
        original = {_node_key(proto) for proto in base_model.graph.node}
        before = {tensor.name: tensor for tensor in base_model.graph.initializer}
        changed = {tensor.name for tensor in session.model.graph.initializer
                   if tensor.name not in before or not _same_constant(tensor, before[tensor.name])}
    masks: dict[str, np.ndarray] = {}
    producer_inputs: dict[str, tuple[str, ...]] = {}
    fired: list[str] = []
    for step, node in enumerate(session._plan):
        proto = node.proto
        outputs = [values.get(name) for name in proto.output]
        for name in proto.output:
            if name:
                producer_inputs[name] = tuple(i for i in proto.input if i)
        if any(o is None for name, o in zip(proto.output, outputs) if name):
            continue
        named = [(j, name) for j, name in enumerate(proto.output) if name]
        if original is not None and (_node_key(proto) not in original or changed.intersection(proto.input)):
            node_masks = [True] * len(outputs)
        else:
            concerned = [o for o in options if conditions[o].concerns(proto.op_type)]
            if not concerned:
                continue
            inputs = [values[name] if name else None for name in proto.input]
            spec = _call_node(spec_session._plan[step], inputs)
            if spec is None:
                node_masks = [True] * len(outputs)
            else:
                node_masks = [np.zeros(np.shape(o), bool) for o in outputs]
                differs = [o for o in concerned if conditions[o].where is None]
                for option in concerned:
                    if conditions[option].where is None:
                        continue
                    try:
                        found = conditions[option].where(node, inputs, outputs)
                    except (RefquantError, ValueError, TypeError, IndexError, KeyError, ArithmeticError):
                        differs.append(option)  # no answer: fall back on running the node
                        continue
                    for j, mask in enumerate(found[: len(outputs)]):
                        node_masks[j] = node_masks[j] | np.broadcast_to(np.asarray(mask, bool), np.shape(outputs[j]))
                if differs:
                    if differs_session is None or any(o not in differing_options for o in differs):
                        chosen = {o: options[o] for o in set(differs) | set(differing_options)}
                        differs_session = Session(session.model, profile=SPEC.with_options(name="differs", **chosen))
                        differing_options = chosen
                    other = _call_node(differs_session._plan[step], inputs)
                    for j, want in enumerate(spec[: len(outputs)]):
                        got = None if other is None or j >= len(other) else other[j]
                        shapes = {np.shape(want), np.shape(outputs[j])} | ({np.shape(got)} if got is not None else set())
                        if got is None or len(shapes) > 1 or got.dtype != want.dtype:
                            node_masks[j] = np.ones(np.shape(outputs[j]), bool)
                        else:
                            node_masks[j] = node_masks[j] | ~_same(got, want)
        for j, name in named:
            mask = node_masks[j] if j < len(node_masks) else False
            masks[name] = mask = np.broadcast_to(np.asarray(mask, bool), np.shape(outputs[j]))
            if np.any(mask):
                fired.append(name)
    tainted = _downstream([node.proto for node in session._plan], fired)
    return Replay(values, masks, producer_inputs, tainted)


@dataclass
class _DefectScope:
    """The tensors a defect can concern: computed from a matching node (values) or carrying its shape."""

    own: set[str]  # the matching nodes' outputs
    downstream: set[str]  # own, and every tensor computed from them
    shaped: set[str]  # own, and the outputs of shape-passing nodes fed by them

    def attributes_values(self, defect: Divergence, name: str) -> bool:
        if name not in self.downstream:
            return False
        return name not in self.own or "values" in defect.affects

    def attributes_mismatch(self, defect: Divergence, name: str, kind: str) -> bool:
        return kind in defect.affects and name in self.shaped


def _defect_scope(defect: Divergence, protos: Sequence, values: Mapping[str, np.ndarray]) -> _DefectScope:
    producers = _producers(protos)
    own = {name for proto in protos if defect.matches(proto, values, producers) for name in proto.output if name}
    shaped = set(own)
    for proto in protos:
        if proto.op_type in SHAPE_PASSING and proto.input and proto.input[0] in shaped:
            shaped.update(name for name in proto.output if name)
    return _DefectScope(own, _downstream(protos, own), shaped)


def classify(
    model,
    feeds: Mapping[str, np.ndarray],
    backend: str,
    outputs: Mapping[str, np.ndarray],
    *,
    reference: Mapping[str, np.ndarray] | None = None,
    divergences: list[Divergence] | None = None,
    optimized_model: Callable[[], object] | None = None,
) -> list[OutputReport]:
    """Compare a backend's ``outputs`` (tensor name -> array) with the spec reference, element by element.

    ``reference`` may pass precomputed spec-profile tensors (e.g. from ``Session.run_all``);
    emulating sessions run only when some element differs. When the spec profile refuses a node
    (NaN, say), the tensors computed from it have no reference: no element of them is exact and only
    a divergence can account for the backend's values. ``optimized_model`` returns the graph the
    backend runs after its own rewrites (or None); it is called only if a ``graph = "backend-optimized"``
    divergence is needed.
    """
    from refquant.session import Session

    session = Session(model)
    reference_error = None
    if reference is None:
        reference, reference_error = _partial_run(session, feeds)
    protos = [node.proto for node in session._plan]  # in topological order
    known = {tensor.name: numpy_helper.to_array(tensor) for tensor in session.model.graph.initializer}
    known.update(feeds)
    known.update(reference)
    candidates = [d for d in (divergences if divergences is not None else load_divergences())
                  if d.applies_to(backend, protos, known)]
    defects = [(d, _defect_scope(d, protos, known)) for d in candidates if d.is_defect]
    candidates = [d for d in candidates if not d.is_defect]
    replays: dict[str, Replay | None] = {}

    def replayed(divergence: Divergence) -> Replay | None:
        if divergence.name not in replays:
            base = None
            graph = session.model
            if divergence.graph != "model":
                graph, base = optimized_model and optimized_model(), session.model
            try:
                replays[divergence.name] = None if graph is None else replay(
                    graph, divergence.options, feeds, base_model=base, profile=divergence.profile()
                )
            except RefquantError:
                replays[divergence.name] = None
        return replays[divergence.name]

    reports = []
    for name, got in outputs.items():
        got = np.asarray(got)
        want = reference.get(name)
        if want is None:
            report = OutputReport(name, str(got.dtype), tuple(got.shape), size=int(got.size))
            report.reference_error = reference_error or f"the reference computes no tensor '{name}'"
            want, differ = got, np.ones(got.shape, bool)
        else:
            report = OutputReport(name, str(want.dtype), tuple(want.shape), size=int(want.size))
            if got.dtype != want.dtype or got.shape != want.shape:
                report.problem = f"backend gives {got.dtype} {list(got.shape)}, reference {want.dtype} {list(want.shape)}"
                kind = "dtype" if got.dtype != want.dtype else "shape"
                defect = next((d for d, scope in defects if scope.attributes_mismatch(d, name, kind)), None)
                if defect is not None:
                    report.attributed[defect.name] = int(got.size)
                reports.append(report)
                continue
            differ = np.asarray(~_same(got, want))  # an array, not a numpy scalar, for a 0-d tensor
        labels = np.full(want.shape, "", dtype=object)
        report.exact = int(want.size - differ.sum())
        for divergence in candidates:
            if not differ.any():
                break
            other = replayed(divergence)
            if other is None or name not in other.values or np.shape(other.values[name]) != got.shape:
                continue
            explained = differ & _same(got, other.values[name])
            if explained.any():
                explained &= other.allowed(name)
            if explained.any():
                labels[explained] = f"explained:{divergence.name}"
                report.explained[divergence.name] = int(explained.sum())
                differ &= ~explained
        for defect, scope in defects:
            if differ.any() and scope.attributes_values(defect, name):
                labels[differ] = f"attributed:{defect.name}"
                report.attributed[defect.name] = int(differ.sum())
                differ[...] = False
        labels[differ] = "unexplained"
        report.unexplained = int(differ.sum())
        _note_worst(report, got, want, labels)
        reports.append(report)
    return reports


def _note_worst(report: OutputReport, got: np.ndarray, want: np.ndarray, labels: np.ndarray) -> None:
    """Record max |diff| (in the tensor's own units: quantized steps for integer tensors) and the worst elements."""
    changed = labels != ""
    if not changed.any() or report.reference_error:
        return
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, ranked below as the worst difference
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN against a number is the worst kind of difference
    diff = np.where(changed, diff, -1.0)
    report.max_abs_diff = float(diff.max())
    # unexplained first, then by size of the difference
    order = np.lexsort((-diff.ravel(), (labels.ravel() != "unexplained")))[:WORST]
    for flat in order:
        if not changed.ravel()[flat]:
            break
        index = np.unravel_index(flat, want.shape)
        report.worst.append({
            "index": [int(i) for i in index],
            "reference": want[index].item() if want.dtype.kind in "iufb" else float(want[index]),
            "backend": got[index].item() if got.dtype.kind in "iufb" else float(got[index]),
            "class": labels[index],
        })
