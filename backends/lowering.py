"""Rewrites that bridge a backend's limits without changing what a model computes.

- :func:`lower`: the same model at an older IR version / ai.onnx opset, where
  a backend loads only older ones or has no kernel for a newer op version.
  Each node keeps its meaning or the model is refused (:class:`LoweringError`).
- :func:`expose`: graph outputs added for intermediate tensors.
- :class:`Binding` (:func:`inline_feeds`, :func:`widen_outputs`): tensors of
  types a numpy binding cannot pass (float8, int4, bfloat16, ... as ml_dtypes
  arrays) travel as initializers on the way in and through an exact Cast on
  the way out.

Lowering does not use ``onnx.version_converter``: its downgrade adapters
rewrite the opset number without checking that a node's types and
attributes exist at the older version. Instead :data:`STEPS` records, for each
op version a lowering may cross, what changed, and each node is checked:

1. every ONNX version of the op between the target and the model's opset has
   a rule in :data:`STEPS` (a version without one is refused);
2. attributes the older version lacks are absent or hold a value that means
   the older behaviour (then they are dropped), and the rule's own condition holds;
3. the node's input and output types are allowed by the older schema.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from onnx import GraphProto, ModelProto, NodeProto, TensorProto, defs, helper, numpy_helper

from refquant.registry import DEFAULT_DOMAIN, canonical_domain

from .base import TensorInfo, input_type, tensor_infos

__all__ = [
    "Limits",
    "LoweringError",
    "Step",
    "STEPS",
    "lower",
    "default_opset",
    "expose",
    "inline_feeds",
    "widen_outputs",
    "unfeedable_inputs",
    "feedable",
    "Binding",
    "BindingError",
]


class LoweringError(ValueError):
    """The model cannot be brought within a backend's limits without changing its meaning."""


@dataclass(frozen=True)
class Limits:
    """What a backend loads: the newest IR version and ai.onnx opset, and which op versions have kernels.

    ``has_kernel(op_type, since_version)``, where given, says whether the
    backend runs that ai.onnx op version; a model whose op lacks a kernel is
    lowered to an opset where it has one.
    """

    ir_version: int
    opset: int
    has_kernel: Callable[[str, int], bool] | None = None


# -- the rule table ------------------------------------------------------------------------

AttributeTest = Callable[[object, NodeProto, Mapping[str, TensorInfo]], bool]


@dataclass(frozen=True)
class Step:
    """What changed when an op got a new version, and when a node can ignore it.

    ``neutral`` maps each attribute the version added to the value that keeps
    the older behaviour, or to a test ``(value, node, infos) -> bool``;
    ``refuse`` returns a reason where the node depends on the change.
    New element types need no entry: the older schema's types are always checked.
    """

    change: str
    neutral: Mapping[str, object | AttributeTest] = field(default_factory=dict)
    refuse: Callable[[NodeProto, Mapping[str, TensorInfo]], str | None] | None = None


def _per_tensor_scale(value, node, infos) -> bool:
    """An axis is meaningless where the scale (input 1) holds one value."""
    info = infos.get(node.input[1])
    return (
        info is not None
        and info.shape is not None
        and all(isinstance(d, int) for d in info.shape)
        and (int(np.prod(info.shape, dtype=np.int64)) == 1)
    )


def _output_dtype_implied(value, node, infos) -> bool:
    """QuantizeLinear's output_dtype says what the zero point's type (or the uint8 default) says anyway."""
    return value in (0, input_type(node, infos, 2) or TensorProto.UINT8)


def _output_dtype_is_scale_type(value, node, infos) -> bool:
    """DequantizeLinear's output_dtype says what the scale's type says anyway."""
    return value in (0, input_type(node, infos, 1))


_FLOAT8 = frozenset(
    {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ}
)


def _cast_to_float8(node, infos) -> str | None:
    to = next((a.i for a in node.attribute if a.name == "to"), None)
    if to in _FLOAT8:
        return "Cast to float8 changed at opset 24 (infinities now saturate for the FNUZ types)"
    return None


def _ceil_mode(node, infos) -> str | None:
    if any(a.name == "ceil_mode" and a.i for a in node.attribute):
        return "with ceil_mode=1, opset 22 ignores windows that start in the right padding; older versions did not say"
    return None


_TYPES = "adds element types"

#: (op_type, since_version) -> the change that version made to the op, for ai.onnx ops.
STEPS: dict[tuple[str, int], Step] = {
    ("QuantizeLinear", 13): Step("adds per-axis scales (axis)", {"axis": _per_tensor_scale}),
    ("QuantizeLinear", 19): Step("adds float8 and saturate", {"saturate": 1}),
    ("QuantizeLinear", 21): Step(
        "adds 4/16-bit types, blocked scales, output_dtype", {"block_size": 0, "output_dtype": _output_dtype_implied}
    ),
    ("QuantizeLinear", 23): Step("scale type may differ from x; adds precision", {"precision": 0}),
    ("DequantizeLinear", 13): Step("adds per-axis scales (axis)", {"axis": _per_tensor_scale}),
    ("DequantizeLinear", 21): Step("adds 4/16-bit types and blocked scales", {"block_size": 0}),
    ("DequantizeLinear", 23): Step("adds output_dtype", {"output_dtype": _output_dtype_is_scale_type}),
    ("Cast", 19): Step("adds float8 and saturate", {"saturate": 1}),
    ("Cast", 24): Step("adds float8e8m0 and round_mode", {"round_mode": "up"}, _cast_to_float8),
    ("MaxPool", 22): Step("adds bfloat16; windows starting in right padding ignored", refuse=_ceil_mode),
    ("Reshape", 14): Step("adds allowzero", {"allowzero": 0}),
    ("Shape", 15): Step("adds start and end", {"start": 0}),
    ("SpaceToDepth", 28): Step("adds mode (CRD)", {"mode": "DCR"}),
    ("DepthToSpace", 28): Step(_TYPES),
}
for _op, _versions in {
    "QuantizeLinear": (24, 25, 28),
    "DequantizeLinear": (19, 24, 25, 28),
    "Cast": (13, 21, 23, 25, 28),
    "QLinearMatMul": (21,),
    "Conv": (22,),
    "ConvTranspose": (22,),
    "MaxPool": (12,),
    "GlobalAveragePool": (22,),
    "AveragePool": (22,),
    "MatMul": (13,),
    "Gemm": (13,),
    "Add": (13, 14),
    "Sub": (13, 14),
    "Mul": (13, 14),
    "Div": (13, 14),
    "Relu": (13, 14),
    "LeakyRelu": (16,),
    "Sigmoid": (13,),
    "Tanh": (13,),
    "Sqrt": (13,),
    "Clip": (12, 13),
    "Round": (22,),
    "Min": (12, 13),
    "Max": (12, 13),
    "ReduceMin": (20,),
    "ReduceMax": (20,),
    "ReduceLogSum": (28,),
    "ReduceLogSumExp": (28,),
    "Identity": (13, 14, 16, 19, 21, 23, 24, 25),
    "Constant": (13, 19, 21, 23, 24, 25),
    "Reshape": (13, 19, 21, 23, 24, 25),
    "Flatten": (13, 21, 23, 24, 25),
    "Transpose": (13, 21, 23, 24, 25),
    "Squeeze": (21, 23, 24, 25),
    "Unsqueeze": (21, 23, 24, 25),
    "Shape": (13, 19, 21, 23, 24, 25),
    "Pad": (21, 23, 24, 25),
    "Concat": (13,),
    "Gather": (13,),
    "Slice": (13,),
    "Where": (16,),
    "Equal": (13, 19),
}.items():
    for _since in _versions:
        STEPS[(_op, _since)] = Step(_TYPES)


# -- lowering --------------------------------------------------------------------------------


def default_opset(model: ModelProto) -> int:
    """The ai.onnx opset a model imports."""
    for entry in model.opset_import:
        if canonical_domain(entry.domain) == DEFAULT_DOMAIN:
            return entry.version
    raise LoweringError("the model does not import the ai.onnx domain")


def _walk(graph: GraphProto) -> Iterator[NodeProto]:
    """Every ai.onnx node of a graph and of its subgraphs."""
    for node in graph.node:
        if canonical_domain(node.domain) == DEFAULT_DOMAIN:
            yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _walk(sub)


@functools.cache
def _versions(op_type: str) -> tuple[int, ...]:
    """Every since_version of an ai.onnx op."""
    return tuple(
        sorted({s.since_version for s in defs.get_all_schemas_with_history() if s.name == op_type and s.domain == ""})
    )


@functools.cache
def _schema(op_type: str, opset: int):
    try:
        return defs.get_schema(op_type, opset, "")
    except defs.SchemaError:
        return None


def _label(node: NodeProto) -> str:
    return f"{node.op_type} '{node.name}'" if node.name else node.op_type


def _runs(node: NodeProto, opset: int, limits: Limits) -> bool:
    """Whether the backend has what it needs for ``node`` at ``opset``.

    Constant and ops defined by a function body need no kernel: runtimes fold
    the first and expand the second.
    """
    schema = _schema(node.op_type, opset)
    if schema is None or limits.has_kernel is None or node.op_type == "Constant":
        return schema is not None
    return (
        limits.has_kernel(node.op_type, schema.since_version)
        or schema.has_function
        or schema.has_context_dependent_function
    )


def _type_string(elem_type: int) -> str:
    return f"tensor({TensorProto.DataType.Name(elem_type).lower()})"


def _types_refused(node: NodeProto, schema, infos: Mapping[str, TensorInfo]) -> str | None:
    """Why the node's types do not fit ``schema`` (None when they do)."""
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    bound: dict[str, str] = {}
    for formals, actuals in ((schema.inputs, node.input), (schema.outputs, node.output)):
        for index, name in enumerate(actuals):
            if not name or not formals:
                continue
            formal = formals[min(index, len(formals) - 1)]
            if index >= len(formals) and formal.option != defs.OpSchema.FormalParameterOption.Variadic:
                return f"it has more inputs/outputs than opset {schema.since_version} allows"
            info = infos.get(name)
            if info is None:
                return (
                    f"the type of '{name}' is unknown, so its support at opset {schema.since_version} cannot be checked"
                )
            actual = _type_string(info.elem_type)
            allowed = constraints.get(formal.type_str, {formal.type_str})
            if actual not in allowed:
                return f"'{name}' has type {actual}, which version {schema.since_version} does not accept"
            if formal.type_str in constraints and bound.setdefault(formal.type_str, actual) != actual:
                return f"version {schema.since_version} requires '{name}' to have type {bound[formal.type_str]}"
    return None


_NO_NEUTRAL_VALUE = object()


def _attribute_drops(node: NodeProto, old, new, steps: list[Step], infos) -> tuple[list[str], str | None]:
    """(attributes ``old`` lacks that the node can drop, None), or ([], why the node needs one)."""
    neutral = {name: value for step in steps for name, value in step.neutral.items()}
    drops = []
    for attr in node.attribute:
        if attr.name in old.attributes:
            continue
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        test = neutral.get(attr.name, _NO_NEUTRAL_VALUE)
        if not (test(value, node, infos) if callable(test) else value == test):
            return [], f"attribute {attr.name}={value!r} has no equivalent before opset {new.since_version}"
        drops.append(attr.name)
    return drops, None


def _node_refusal(node: NodeProto, source: int, target: int, infos) -> tuple[list[str], str | None]:
    """(attributes to drop, None) where ``node`` means the same at ``target`` as at ``source``; else a reason."""
    new, old = _schema(node.op_type, source), _schema(node.op_type, target)
    if new is None:
        return [], f"ai.onnx has no {node.op_type} at opset {source}"
    if old is None:
        return [], f"{node.op_type} does not exist at opset {target}"
    if old.since_version == new.since_version:
        return [], None
    steps = []
    for version in _versions(node.op_type):
        if old.since_version < version <= new.since_version:
            step = STEPS.get((node.op_type, version))
            if step is None:
                return [], (
                    f"{node.op_type} changed at opset {version} and no lowering rule shows that the change "
                    f"keeps this node's meaning"
                )
            reason = step.refuse(node, infos) if step.refuse else None
            if reason:
                return [], reason
            steps.append(step)
    drops, reason = _attribute_drops(node, old, new, steps, infos)
    return drops, reason or _types_refused(node, old, infos)


def _target_opset(model: ModelProto, limits: Limits, infos) -> tuple[int, dict[int, list[str]]]:
    """The highest opset <= ``limits.opset`` at which every node runs and keeps its meaning,
    with the attributes to drop from each node (by id)."""
    source = default_opset(model)
    nodes = list(_walk(model.graph))
    for target in range(limits.opset, 0, -1):
        drops = {}
        for node in nodes:
            dropped, reason = _node_refusal(node, source, target, infos)
            if reason:
                raise LoweringError(f"cannot lower opset {source} to {target}: {_label(node)}: {reason}")
            drops[id(node)] = dropped
        if all(_runs(node, target, limits) for node in nodes):
            return target, drops
    raise LoweringError(f"no opset <= {limits.opset} runs every op of the model")


def _newest_opset_for_ir(ir_version: int) -> int:
    """The newest ai.onnx opset a model of ``ir_version`` may import (onnx's release table)."""
    return max((opset for _, ir, opset, *_ in helper.VERSION_TABLE if ir <= ir_version), default=1)


def lower(model: ModelProto, limits: Limits) -> ModelProto:
    """``model`` at an IR version and opset within ``limits``, meaning the same; ``model`` itself if it fits.

    The opset is also capped by what the IR version allows (onnx's release
    table); element types newer than that opset are refused with it.
    Raises :class:`LoweringError` naming the node and the change it depends on.
    """
    source = default_opset(model)
    ir_version = min(model.ir_version, limits.ir_version)
    highest = min(source, limits.opset, _newest_opset_for_ir(ir_version))
    nodes = list(_walk(model.graph))
    if highest == source and ir_version == model.ir_version and all(_runs(n, source, limits) for n in nodes):
        return model
    target, drops = _target_opset(model, Limits(ir_version, highest, limits.has_kernel), tensor_infos(model))
    lowered = ModelProto()
    lowered.CopyFrom(model)
    lowered.ir_version = ir_version
    for entry in lowered.opset_import:
        if canonical_domain(entry.domain) == DEFAULT_DOMAIN:
            entry.version = target
    for original, node in zip(nodes, _walk(lowered.graph), strict=True):
        kept = [a for a in node.attribute if a.name not in drops.get(id(original), ())]
        del node.attribute[:]
        node.attribute.extend(kept)
    return lowered


# -- intermediates and bindings --------------------------------------------------------------


def expose(model: ModelProto, names: list[str], infos: Mapping[str, TensorInfo]) -> ModelProto:
    """A copy of ``model`` that also outputs ``names`` (those whose element type is known)."""
    exposed = ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present and name in infos:
            exposed.graph.output.append(helper.make_tensor_value_info(name, infos[name].elem_type, None))
            present.add(name)
    return exposed


def feedable(dtype: np.dtype) -> bool:
    """Whether a numpy binding passes this dtype: numpy's own types do, user-defined ones (ml_dtypes) do not."""
    return np.dtype(dtype).isbuiltin != 2


def inline_feeds(model: ModelProto, feeds: Mapping[str, np.ndarray]) -> ModelProto:
    """A copy of ``model`` where the given inputs are initializers holding ``feeds``."""
    inlined = ModelProto()
    inlined.CopyFrom(model)
    kept = [i for i in inlined.graph.input if i.name not in feeds]
    del inlined.graph.input[:]
    inlined.graph.input.extend(kept)
    replaced = [t for t in inlined.graph.initializer if t.name not in feeds]
    del inlined.graph.initializer[:]
    inlined.graph.initializer.extend(replaced)
    inlined.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in feeds.items())
    return inlined


#: Carrier of each integer type a binding cannot return (float types travel as float32).
_CARRIER = {
    TensorProto.INT4: TensorProto.INT8,
    TensorProto.INT2: TensorProto.INT8,
    TensorProto.UINT4: TensorProto.UINT8,
    TensorProto.UINT2: TensorProto.UINT8,
}


def widen_outputs(model: ModelProto) -> tuple[ModelProto, dict[str, tuple[str, np.dtype]]]:
    """Cast each graph output a numpy binding cannot return to an exact carrier type.

    Integer types narrower than 8 bits travel as int8/uint8, float types as
    float32 (every float8/float4/float6/bfloat16 value is a float32 value).
    Returns the new model and {carrier output name: (original name, original dtype)};
    ``carrier_array.astype(dtype)`` restores the original values exactly.
    """
    widened = ModelProto()
    widened.CopyFrom(model)
    carriers = {}
    outputs = []
    for output in widened.graph.output:
        elem_type = output.type.tensor_type.elem_type if output.type.HasField("tensor_type") else None
        dtype = helper.tensor_dtype_to_np_dtype(elem_type) if elem_type else None
        if dtype is None or feedable(dtype):
            outputs.append(output)
            continue
        carrier = _CARRIER.get(elem_type, TensorProto.FLOAT)
        name = f"{output.name}__as_{TensorProto.DataType.Name(carrier).lower()}"
        widened.graph.node.append(helper.make_node("Cast", [output.name], [name], to=carrier))
        outputs.append(helper.make_tensor_value_info(name, carrier, None))
        carriers[name] = (output.name, dtype)
    del widened.graph.output[:]
    widened.graph.output.extend(outputs)
    return widened, carriers


def unfeedable_inputs(model: ModelProto) -> dict[str, np.dtype]:
    """Graph inputs (not initializers) whose type a numpy binding cannot pass, with their dtypes."""
    initializers = {t.name for t in model.graph.initializer}
    found = {}
    for value_info in model.graph.input:
        if value_info.name in initializers or not value_info.type.HasField("tensor_type"):
            continue
        dtype = helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
        if not feedable(dtype):
            found[value_info.name] = dtype
    return found


class BindingError(ValueError):
    """A feed does not match the type the model declares for an input that must be inlined."""


@dataclass(frozen=True)
class Binding:
    """A model prepared for a numpy binding (:func:`widen_outputs`, :func:`unfeedable_inputs`).

    ``split(feeds)`` moves the feeds the binding cannot pass into a copy of the
    model; ``restore(outputs)`` turns carrier outputs back into the original types.
    """

    model: ModelProto
    carriers: dict[str, tuple[str, np.dtype]]
    inline: dict[str, np.dtype]

    @classmethod
    def of(cls, model: ModelProto) -> Binding:
        widened, carriers = widen_outputs(model)
        return cls(widened, carriers, unfeedable_inputs(widened))

    def split(self, feeds: Mapping[str, np.ndarray]) -> tuple[ModelProto, dict[str, np.ndarray]]:
        """(model with the unfeedable inputs inlined, the remaining feeds)."""
        for name, dtype in self.inline.items():
            if name in feeds and feeds[name].dtype != dtype:
                raise BindingError(f"input '{name}' has dtype {feeds[name].dtype}, the model declares {dtype}")
        inlined = inline_feeds(self.model, {n: v for n, v in feeds.items() if n in self.inline})
        return inlined, {n: v for n, v in feeds.items() if n not in self.inline}

    def restore(self, outputs: Iterable[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """{original output name: value}, carriers cast back to their original dtype."""
        results = {}
        for name, value in outputs:
            original = self.carriers.get(name)
            if original:
                results[original[0]] = np.asarray(value).astype(original[1])
            else:
                results[name] = np.asarray(value)
        return results
