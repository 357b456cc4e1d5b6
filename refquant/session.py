"""Session: run an ONNX graph on the reference kernels.

The plan (node order, kernel per node, constant tensors) is built once per
Session; ``run`` only moves arrays through it.
"""

from __future__ import annotations

import contextvars
import os
from collections import ChainMap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto, numpy_helper

from . import budget, ops  # noqa: F401  (ops fills the registry)
from .budget import Limits
from .dtypes import np_dtype, proto_of, type_name
from .errors import (
    FeedError, KernelFailure, ModelError, NodeError, RefquantError, ResourceLimitError, ShapeError, UnsupportedOpError,
)
from .model import implicit_inputs, load_model, opset_versions, topological_order
from .node import Node, check_attributes
from .profiles import Profile, get_profile
from .registry import canonical_domain, lookup, options_family

__all__ = ["Session", "TensorSpec", "Limits", "Subgraph"]

#: (the enclosing graph's values, the session's limits) while a node with subgraphs runs: what its
#: subgraphs read outer-scope names from, and the limits their nodes are checked against
_ENCLOSING: contextvars.ContextVar = contextvars.ContextVar("refquant_enclosing", default=(None, None))


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, numpy dtype, shape (ints, names of symbolic dims, or None), and kind.

    ``kind`` is "tensor" (a numpy array), "sequence" (a list of arrays; dtype and shape then describe each
    element), "optional tensor" or "optional sequence" (None, or the element as above): spec/model.md,
    "Sequence and optional values"."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None
    kind: str = "tensor"


def _kind_of(type_proto, what: str, name: str, outer: bool = True) -> tuple[str, object]:
    """(kind, the TensorProto type of the tensors) a declared type describes; other types are refused."""
    field = type_proto.WhichOneof("value")
    if field == "tensor_type":
        return "tensor", type_proto.tensor_type
    if field == "sequence_type" and type_proto.sequence_type.elem_type.WhichOneof("value") == "tensor_type":
        return "sequence", type_proto.sequence_type.elem_type.tensor_type
    if field == "optional_type" and outer:
        kind, tensor_type = _kind_of(type_proto.optional_type.elem_type, what, name, outer=False)
        return f"optional {kind}", tensor_type
    shown = {"sequence_type": "a sequence of non-tensors", "optional_type": "an optional of an optional",
             "map_type": "a map", "sparse_tensor_type": "a sparse tensor", None: "of no declared type"}.get(field, field)
    raise ModelError(f"{what} '{name}' is {shown}; refquant runs tensors, sequences of tensors and optionals of those")


def _spec_of(value_info, what: str) -> TensorSpec:
    """The spec of a graph input or output (``what``); a negative dimension is refused, not taken as free."""
    kind, tensor_type = _kind_of(value_info.type, what, value_info.name)
    try:
        dtype = np_dtype(tensor_type.elem_type)
    except KeyError as exc:
        raise ModelError(f"{what} '{value_info.name}': {exc.args[0]}") from None
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
        )
        negative = [axis for axis, d in enumerate(shape) if isinstance(d, int) and d < 0]
        if negative:
            raise ModelError(
                f"{what} '{value_info.name}' declares dimension {negative[0]} as {shape[negative[0]]}; "
                "a dimension is a size >= 0 or a name"
            )
    return TensorSpec(value_info.name, dtype, shape, kind)


def _check_default(spec: TensorSpec, value: np.ndarray) -> None:
    """An initializer listed as a graph input is the default of that input: it has the input's dtype and shape."""
    problem = None
    if spec.kind != "tensor":
        problem = f"is a tensor, its graph input declares a {spec.kind}"
    elif value.dtype != spec.dtype:
        problem = f"has dtype {value.dtype}, its graph input declares {spec.dtype} ({type_name(proto_of(spec.dtype))})"
    elif spec.shape is not None and (
        value.ndim != len(spec.shape)
        or any(isinstance(want, int) and want > 0 and want != got for got, want in zip(value.shape, spec.shape))
    ):
        problem = f"has shape {value.shape}, its graph input declares {_show_shape(spec.shape)}"
    if problem:
        raise ModelError(f"initializer '{spec.name}' {problem}")


def _to_array(tensor: TensorProto, what: str) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # onnx raises bare ValueError/TypeError for malformed tensors
        raise ModelError(f"{what} '{tensor.name}' cannot be decoded: {exc}") from None


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` and the arrays it views made read-only: kernels may keep what they derive from it (node.cache)."""
    view = array
    while isinstance(view, np.ndarray):
        view.setflags(write=False)
        view = view.base
    return array


def _run_nodes(plan, values, last_use: Mapping[str, int], limits: Limits, keep_all: bool) -> None:
    """The one graph runner: the nodes of ``plan`` in order, reading and writing ``values`` (a dict for the
    main graph; a ChainMap of the subgraph's own values over its enclosing graph's for a subgraph)."""
    for step, node in enumerate(plan):
        inputs = [values[name] if name else None for name in node.proto.input]
        results = Session._call(node, inputs, limits, values)
        for name, value in zip(node.proto.output, results):
            if name:
                values[name] = value
        if not keep_all:
            for name in node.proto.input:
                if name and last_use.get(name) == step:
                    values.pop(name, None)
            for name in node.cache.get("implicit", ()):
                if last_use.get(name) == step:
                    values.pop(name, None)


def _last_uses(plan, outputs: Sequence[str]) -> dict[str, int]:
    last = {}
    for step, node in enumerate(plan):
        for name in [*node.proto.input, *node.cache.get("implicit", ())]:
            last[name] = step
    for name in outputs:
        last[name] = len(plan)
    return last


def _declared_type(value_info) -> tuple[np.dtype | None, tuple | None]:
    """(numpy dtype, shape: ints and None) a subgraph input or output declares; None where it declares none."""
    if not value_info.type.HasField("tensor_type"):
        return None, None
    tensor_type = value_info.type.tensor_type
    try:
        dtype = np_dtype(tensor_type.elem_type) if tensor_type.elem_type else None
    except KeyError:
        dtype = None
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return dtype, shape


class Subgraph:
    """A graph attribute (If's branches, Loop's and Scan's body) bound once, at Session build, like the main
    graph: kernels, options and constants resolved; run by the session's one graph runner.

    ``subgraph(inputs)`` binds the subgraph's inputs in order and returns its outputs; names it does not
    define are read from the enclosing graph's values (at any depth). ``output_types``: each output's
    declared (dtype, shape), None where undeclared. ``count_iterations(n)`` raises ResourceLimitError when
    n iterations (each charged budget.STEP work units) exceed the session's max_work.
    """

    def __init__(self, label: str, graph: GraphProto, constants: dict, plan: list[Node]):
        self.label = label
        self.constants = constants
        self.plan = plan
        self.input_names = [i.name for i in graph.input]
        self.output_names = [o.name for o in graph.output]
        self.output_types = [_declared_type(o) for o in graph.output]
        self._last_use = _last_uses(plan, self.output_names)

    def __repr__(self) -> str:
        return f"<Subgraph {self.label}: {len(self.plan)} node(s)>"

    def __call__(self, inputs: Sequence) -> list:
        scope, limits = _ENCLOSING.get()
        if len(inputs) != len(self.input_names):
            raise ShapeError(f"{self.label} takes {len(self.input_names)} input(s), got {len(inputs)}")
        local = dict(self.constants)
        local.update(zip(self.input_names, inputs))
        values = local if scope is None else ChainMap(local, scope)
        try:
            _run_nodes(self.plan, values, self._last_use, budget.default_limits() if limits is None else limits, False)
        except NodeError as err:
            if err.op_type is not None:  # the path: "Loop 'loop1': body / Add 'add3': ..."
                err.message = f"{self.label} / {err.op_type} '{err.node_name}': {err.message}"
                err.op_type = err.node_name = None
            raise
        missing = [name for name in self.output_names if name not in values]
        if missing:
            raise ModelError(f"{self.label}: output(s) {missing} are not computed (an outer-scope name not in scope?)")
        return [values[name] for name in self.output_names]

    def count_iterations(self, iterations: int) -> None:
        _, limits = _ENCLOSING.get()
        limits = budget.default_limits() if limits is None else limits
        if limits.max_work is not None and iterations * budget.STEP > limits.max_work:
            raise ResourceLimitError(
                f"{iterations} iterations of {self.label} ({budget.STEP} work units charged each) exceed max_work "
                f"{limits.max_work} (raise it with refquant.Limits, or --max-work on the command line)",
                limit="max_work", requested=iterations * budget.STEP, allowed=limits.max_work,
            )


class Session:
    """Run a model on the reference kernels.

    >>> sess = Session("model.onnx")                        # doctest: +SKIP
    >>> y, = sess.run(None, {"x": x})                       # doctest: +SKIP

    ``model`` is a path, bytes or ``onnx.ModelProto``; ``profile`` a profile
    name ("spec") or a :class:`~refquant.profiles.Profile`; ``limits`` what one node
    may allocate and compute (:class:`~refquant.budget.Limits`; by default
    :func:`refquant.budget.default_limits`): each node is checked from its input
    shapes before its kernel runs (ResourceLimitError).
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes | ModelProto,
        *,
        profile: str | Profile = "spec",
        limits: Limits | None = None,
    ):
        if limits is not None and not isinstance(limits, Limits):
            raise RefquantError(f"limits must be a refquant.Limits, not {type(limits).__name__}")
        self.limits = budget.default_limits() if limits is None else limits
        self.profile = get_profile(profile)
        self._family_options: dict[type, object] = {}
        self.model = load_model(model)
        graph = self.model.graph
        versions = opset_versions(self.model)
        if graph.sparse_initializer:
            raise ModelError("sparse initializers are not supported; densify them first")
        self.constants = {t.name: _read_only(_to_array(t, "initializer")) for t in graph.initializer}
        self.inputs = [_spec_of(i, "graph input") for i in graph.input if i.name not in self.constants]
        self.outputs = [_spec_of(o, "graph output") for o in graph.output]
        self._overridable = {i.name: _spec_of(i, "graph input") for i in graph.input if i.name in self.constants}
        for spec in self._overridable.values():
            _check_default(spec, self.constants[spec.name])
        main_names = {i.name for i in graph.input} | set(self.constants)
        main_names |= {name for node in graph.node for name in node.output if name}
        self._plan = [
            self._bind(proto, index, versions, main_names) for index, proto in enumerate(topological_order(graph))
        ]
        self._last_use = _last_uses(self._plan, [o.name for o in self.outputs])
        self._producers = {name: node for node in self._plan for name in node.proto.output if name}

    # -- building -------------------------------------------------------------

    def _bind(self, proto, index: int, versions: dict[str, int], outer: set[str]) -> Node:
        """``outer``: the names the enclosing graphs define (for the subgraphs of the node)."""
        name = proto.name or f"#{index}"
        domain = canonical_domain(proto.domain)
        if domain not in versions:
            raise ModelError(f"{proto.op_type} '{name}': domain '{domain}' is not imported by the model")
        found = lookup(domain, proto.op_type, versions[domain])
        if found is None:
            raise UnsupportedOpError(
                f"{proto.op_type} '{name}': no refquant kernel for {domain or 'ai.onnx'}::{proto.op_type} "
                f"at opset {versions[domain]} (see `refquant ops`)"
            )
        version, kernel = found
        check_attributes(proto, versions[domain], name)
        family = options_family(domain, proto.op_type)
        node = Node(proto, version, name, kernel=kernel, options=None if family is None else self._options_of(family))
        graphs = {a.name: a.g for a in proto.attribute if a.type == AttributeProto.GRAPH}
        if graphs:
            node.cache["subgraphs"] = {
                attr: self._bind_subgraph(f"{attr}", g, versions, outer, proto.op_type, name)
                for attr, g in graphs.items()
            }
            node.cache["implicit"] = tuple(sorted(implicit_inputs(proto)))
        return node

    def _bind_subgraph(self, label: str, graph: GraphProto, versions, outer: set[str], op_type: str, name: str):
        """A subgraph bound as the main graph is: structure checked, nodes bound (recursively), constants read."""
        try:
            if graph.sparse_initializer:
                raise ModelError("sparse initializers are not supported; densify them first")
            constants = {t.name: _read_only(_to_array(t, "initializer")) for t in graph.initializer}
            inner = outer | {i.name for i in graph.input} | set(constants)
            inner |= {n for node in graph.node for n in node.output if n}
            order = topological_order(graph, outer)
            plan = [self._bind(proto, index, versions, inner) for index, proto in enumerate(order)]
        except NodeError as err:
            if err.op_type is not None:
                err.message = f"{label} / {err.op_type} '{err.node_name}': {err.message}"
                err.op_type = err.node_name = None
            raise err.attach(op_type, name)
        except ModelError as err:
            raise type(err)(f"{op_type} '{name}': {label}: {err}") from None
        return Subgraph(label, graph, constants, plan)

    def _options_of(self, family: type):
        """The profile's options for one op family (refquant.kernel_options), built once per session."""
        if family not in self._family_options:
            self._family_options[family] = family.of(self.profile)
        return self._family_options[family]

    # -- running --------------------------------------------------------------

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Compute the requested graph outputs (all when ``output_names`` is None). A sequence input is fed,
        and a sequence output returned, as a list of arrays; an empty optional as None (spec/model.md)."""
        names = [o.name for o in self.outputs] if output_names is None else list(output_names)
        known = {o.name for o in self.outputs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise FeedError(f"unknown output name(s) {unknown}; graph outputs are {sorted(known)}")
        values = self._execute(feeds, keep_all=False)
        return [values[n] for n in names]

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor the graph holds or computes: inputs, initializers, intermediates, outputs."""
        return self._execute(feeds, keep_all=True)

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise FeedError(f"feeds must be a mapping of input name to array, not {type(feeds).__name__}")
        specs = {s.name: s for s in self.inputs} | self._overridable
        unknown = [n for n in feeds if n not in specs]
        if unknown:
            raise FeedError(f"unknown input(s) {unknown}; the model's inputs are {[s.name for s in self.inputs]}")
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise FeedError(f"missing input(s) {missing}")
        checked = {}
        for name, value in feeds.items():
            checked[name] = _check_feed(specs[name], value)
        return checked

    def _execute(self, feeds, *, keep_all: bool) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = dict(self.constants)
        values.update(self._check_feeds(feeds))
        with np.errstate(all="ignore"):
            _run_nodes(self._plan, values, self._last_use, self.limits, keep_all)
        self._check_outputs(values)
        return values

    def _check_outputs(self, values: Mapping[str, np.ndarray]) -> None:
        """Each graph output has its declared element type and rank: a kernel result that contradicts them is
        refused (ModelError naming the output), never returned as if the model had said so. Declared sizes are
        not enforced: onnx's shape inference, which exporters write into models, sizes ceil_mode pools without
        ONNX's rule that a window starts inside the input or its left padding (spec/model.md "Refused models")."""
        for spec in self.outputs:
            if spec.name not in values:
                continue
            value = values[spec.name]
            node = self._producers.get(spec.name)
            source = f" (computed by {node.op_type} '{node.name}')" if node is not None else ""
            label = f"graph output '{spec.name}'{source}"
            if value is None:
                if spec.kind.startswith("optional"):
                    continue
                raise ModelError(f"{label} is an empty optional, the model declares a {spec.kind}")
            if isinstance(value, list) != spec.kind.endswith("sequence"):
                got = "a sequence" if isinstance(value, list) else "a tensor"
                raise ModelError(f"{label} is {got}, the model declares a {spec.kind}")
            for index, element in enumerate(value if isinstance(value, list) else [value]):
                where = f"{label} element {index}" if isinstance(value, list) else label
                if element.dtype != spec.dtype:
                    raise ModelError(
                        f"{where} has dtype {element.dtype}, the model declares "
                        f"{spec.dtype} ({type_name(proto_of(spec.dtype))})"
                    )
                if spec.shape is not None and element.ndim != len(spec.shape):
                    raise ModelError(
                        f"{where} has shape {list(element.shape)}, the model declares {_show_shape(spec.shape)}"
                    )

    @staticmethod
    def _call(node: Node, inputs: list, limits: Limits | None = None, scope: Mapping | None = None) -> tuple:
        """Run one node: its budget checked first (``limits``, default_limits() when None), then its kernel.
        ``scope``: the values of the graph the node is in, which its subgraphs (if any) read outer names from."""
        limits = budget.default_limits() if limits is None else limits
        token = _ENCLOSING.set((scope, limits)) if "subgraphs" in node.cache else None
        try:
            budget.check(node, inputs, limits)
            results = node.kernel(node, *inputs)
        except MemoryError:
            shapes = ", ".join(str(list(x.shape)) for x in inputs if isinstance(x, np.ndarray))
            raise ResourceLimitError(
                f"ran out of memory (inputs {shapes or 'none'}); lower refquant.Limits(max_memory=...) "
                "(--max-memory) to have such a node refused before it allocates",
                limit="memory",
            ).attach(node.op_type, node.name) from None
        except NodeError as err:
            raise err.attach(node.op_type, node.name)
        except RefquantError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, ArithmeticError) as exc:
            raise KernelFailure(f"unexpected {type(exc).__name__}: {exc}").attach(node.op_type, node.name) from exc
        finally:
            if token is not None:
                _ENCLOSING.reset(token)
        wanted = sum(1 for name in node.proto.output if name)
        if len(results) < len(node.proto.output) and wanted > len(results):
            raise KernelFailure(
                f"kernel returned {len(results)} output(s), the node names {len(node.proto.output)}"
            ).attach(node.op_type, node.name)
        # numpy ufuncs turn 0-d arrays into scalars; tensors stay arrays; a sequence (list) and an empty
        # optional (None) pass as they are (spec/model.md, "Sequence and optional values")
        return tuple(result if result is None or isinstance(result, list) else np.asarray(result) for result in results)


def _check_feed(spec: TensorSpec, value):
    """A feed checked against its input's declared kind, dtype and rank: an array, a list of arrays (a sequence:
    a list or tuple fed) or None (an empty optional)."""
    if value is None:
        if spec.kind.startswith("optional"):
            return None
        raise FeedError(f"input '{spec.name}' is None; the model declares a {spec.kind}, not an optional")
    if spec.kind.endswith("sequence"):
        if not isinstance(value, (list, tuple)):
            raise FeedError(f"input '{spec.name}' is a sequence: feed a list of arrays, not {type(value).__name__}")
        return [_check_array(f"input '{spec.name}' element {i}", spec, x) for i, x in enumerate(value)]
    if isinstance(value, (list, tuple)) and any(isinstance(x, np.ndarray) for x in value):
        raise FeedError(f"input '{spec.name}' is a {spec.kind}: feed an array, not a list of arrays")
    return _check_array(f"input '{spec.name}'", spec, value)


def _check_array(label: str, spec: TensorSpec, value) -> np.ndarray:
    array = np.asarray(value)
    if spec.dtype == object and array.dtype.kind == "U":
        array = array.astype(object)  # numpy's fixed-width str_ array: a string tensor is an object array of str
    if array.dtype != spec.dtype:
        raise FeedError(f"{label} has dtype {array.dtype}, the model declares {spec.dtype} ({type_name(proto_of(spec.dtype))})")
    if spec.shape is not None:
        if array.ndim != len(spec.shape):
            raise FeedError(
                f"{label} has rank {array.ndim} (shape {array.shape}), "
                f"the model declares rank {len(spec.shape)} {_show_shape(spec.shape)}"
            )
        for axis, (got, want) in enumerate(zip(array.shape, spec.shape)):
            if isinstance(want, int) and want > 0 and got != want:
                raise FeedError(
                    f"{label} has shape {array.shape}, the model declares "
                    f"{_show_shape(spec.shape)} (dimension {axis} must be {want})"
                )
    return array


def _show_shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
