"""Loading and validating ONNX models.

``read_model`` accepts a path, bytes or a ``ModelProto`` and returns the model
with its external data resolved: every tensor the model carries goes through
one external-data resolver with one rule (:func:`_resolve_external_data`,
spec/model.md "External data"). ``load_model`` is ``read_model`` followed by
refquant's structural checks (IR version, unique names, a topological order,
opsets). Both sides of a comparison read a model through ``read_model``: the
judge's engines receive the resolved model, never a path to resolve themselves.
Every problem becomes a :class:`~refquant.errors.ModelError` subclass with a
message that names what is wrong and where.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, GraphProto, ModelProto, SparseTensorProto, TensorProto

from .errors import ExternalDataError, ModelError, OpsetError
from .files import read_regular
from .registry import DEFAULT_DOMAIN, MAX_OPSET, canonical_domain

__all__ = ["read_model", "load_model", "opset_versions", "topological_order", "outer_names", "MIN_OPSET", "MIN_IR_VERSION", "MAX_IR_VERSION"]

#: Quantization operators start at opset 10.
MIN_OPSET = 10
#: IR versions refquant reads: 3 brought opset imports; 14 is the IR of onnx 1.23, which brought opset 28.
MIN_IR_VERSION, MAX_IR_VERSION = 3, 14


def load_model(model: str | os.PathLike | bytes | ModelProto) -> ModelProto:
    """:func:`read_model`, then check the IR version, unique names, the graph's order and the opsets."""
    proto = read_model(model)
    _check_ir_version(proto)
    _check_unique(proto.graph)
    topological_order(proto.graph)
    opset_versions(proto)
    return proto


def read_model(model: str | os.PathLike | bytes | ModelProto) -> ModelProto:
    """Parse a path or bytes (a ``ModelProto`` passes through) and resolve its external data under the one
    rule; nothing else is checked. A path is read as a regular file; external data only from its folder."""
    if isinstance(model, ModelProto):
        proto, base_dir = model, None
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto, base_dir = _parse(bytes(model), "model bytes"), None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        proto, base_dir = _parse(read_regular(path, "model file", ModelError), f"'{path}'"), path.resolve().parent
    else:
        raise ModelError(f"model must be a path, bytes or onnx.ModelProto, not {type(model).__name__}")
    _resolve_external_data(proto, base_dir)
    return proto


def _parse(data: bytes, what: str) -> ModelProto:
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{what} is not a valid ONNX model (protobuf decoding failed: {exc})") from None
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelError(f"{what} is not a valid ONNX model (no graph or no opset_import; truncated or not ONNX?)")
    return proto


def _check_ir_version(proto: ModelProto) -> None:
    """The IR version is one refquant reads (0 is "unset"; a newer one may mean what refquant has not read)."""
    if not MIN_IR_VERSION <= proto.ir_version <= MAX_IR_VERSION:
        raise ModelError(
            f"the model declares IR version {proto.ir_version}; refquant reads IR versions "
            f"{MIN_IR_VERSION} to {MAX_IR_VERSION}"
        )


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({name for name in names if name in seen or seen.add(name)})


def _check_unique(graph: GraphProto) -> None:
    """Graph inputs, initializers and each node's attributes are named once: no silent "last one wins"."""
    for what, names in (
        ("graph input", [i.name for i in graph.input]),
        ("initializer", [t.name for t in graph.initializer] + [t.values.name for t in graph.sparse_initializer]),
    ):
        twice = _duplicates(names)
        if twice:
            raise ModelError(f"{what}(s) {twice} are declared more than once")
    for index, node in enumerate(graph.node):
        twice = _duplicates(a.name for a in node.attribute)
        if twice:
            label = f"{node.op_type} '{node.name or f'#{index}'}'"
            raise ModelError(f"{label}: attribute(s) {twice} are given more than once")


def opset_versions(proto: ModelProto) -> dict[str, int]:
    """{domain: version} imported by the model, checked against what refquant runs.

    Each domain is imported once; a domain refquant has kernels for must import a version from 1 to
    the newest refquant knows (other domains are left to the nodes that use them).
    """
    versions = {}
    for entry in proto.opset_import:
        domain = canonical_domain(entry.domain)
        if domain in versions:
            raise OpsetError(f"the model imports domain '{entry.domain or 'ai.onnx'}' more than once")
        versions[domain] = entry.version
    for domain, version in versions.items():
        if domain != DEFAULT_DOMAIN and domain in MAX_OPSET and not 1 <= version <= MAX_OPSET[domain]:
            raise OpsetError(
                f"the model imports {domain} opset {version}; refquant knows {domain} opsets 1 to {MAX_OPSET[domain]}"
            )
    default = versions.get(DEFAULT_DOMAIN)
    if default is None:
        raise OpsetError("the model does not import the default ONNX domain (ai.onnx)")
    if default < MIN_OPSET:
        raise OpsetError(
            f"the model imports ai.onnx opset {default}; refquant needs opset >= {MIN_OPSET}, "
            "where the quantization operators begin. Re-export the model at opset >= 10 "
            "(e.g. onnx.version_converter.convert_version(model, 13))."
        )
    if default > MAX_OPSET[DEFAULT_DOMAIN]:
        raise OpsetError(
            f"the model imports ai.onnx opset {default}; refquant knows the semantics "
            f"up to opset {MAX_OPSET[DEFAULT_DOMAIN]}"
        )
    return versions


def outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph reads without defining them: its nodes' inputs (and, recursively, what their own
    subgraphs read) that are not its inputs, initializers or node outputs: names of the enclosing graphs."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    used: set[str] = set()
    for node in graph.node:
        defined.update(name for name in node.output if name)
        used.update(name for name in node.input if name)
        used |= implicit_inputs(node)
    used.update(o.name for o in graph.output)
    return used - defined


def implicit_inputs(node: onnx.NodeProto) -> set[str]:
    """The enclosing-scope names a node's subgraph attributes (If's branches, Loop's and Scan's body) read."""
    names: set[str] = set()
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH or attr.HasField("g"):
            names |= outer_names(attr.g)
        for graph in attr.graphs:
            names |= outer_names(graph)
    return names


def topological_order(graph: onnx.GraphProto, outer: Iterable[str] = ()) -> list[onnx.NodeProto]:
    """The graph's nodes in an order where every input is computed first.

    A node's inputs include the names its subgraphs read from this graph (:func:`implicit_inputs`);
    ``outer``: names a subgraph may read from its enclosing graphs (empty for the main graph).
    Raises :class:`ModelError` for an input nobody produces, an output produced
    twice or overwriting a graph input/initializer, and for cycles.
    """
    given = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    given |= {t.values.name for t in graph.sparse_initializer}
    outer = set(outer) - given
    producer: dict[str, int] = {}
    labels = [f"{n.op_type} '{n.name or f'#{i}'}'" for i, n in enumerate(graph.node)]
    for index, node in enumerate(graph.node):
        for name in node.output:
            if not name:
                continue
            if name in given:
                raise ModelError(f"{labels[index]}: output '{name}' overwrites a graph input or initializer")
            if name in producer:
                raise ModelError(f"{labels[index]}: output '{name}' is also produced by {labels[producer[name]]}")
            producer[name] = index
    waiting_on = []
    for index, node in enumerate(graph.node):
        deps = set()
        for name in [*node.input, *sorted(implicit_inputs(node))]:
            if not name or name in given:
                continue
            if name not in producer:
                if name in outer:
                    continue
                raise ModelError(
                    f"{labels[index]}: input '{name}' is not a graph input, an initializer or any node's output"
                    + (" (read by a subgraph of the node)" if name not in node.input else "")
                )
            deps.add(producer[name])
        waiting_on.append(deps)
    for out in graph.output:
        if out.name not in given and out.name not in producer and out.name not in outer:
            raise ModelError(f"graph output '{out.name}' is not produced by any node, input or initializer")
    consumers: dict[int, list[int]] = {}
    for index, deps in enumerate(waiting_on):
        for dep in deps:
            consumers.setdefault(dep, []).append(index)
    remaining = [len(deps) for deps in waiting_on]
    ready = [i for i, count in enumerate(remaining) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers.get(index, ()):
            remaining[consumer] -= 1
            if remaining[consumer] == 0:
                heapq.heappush(ready, consumer)
    if len(order) < len(graph.node):
        stuck = next(i for i, count in enumerate(remaining) if count)
        raise ModelError(f"the graph has a cycle through {labels[stuck]}")
    return [graph.node[i] for i in order]


def _sparse_tensors(sparse: SparseTensorProto, label: str) -> Iterator[tuple[TensorProto, str]]:
    yield sparse.values, f"{label} (values)"
    yield sparse.indices, f"{label} (indices)"


def _attribute_tensors(attr: AttributeProto, label: str) -> Iterator[tuple[TensorProto, str]]:
    """Every tensor an attribute holds, whatever its declared type says: t, tensors, sparse ones, subgraphs."""
    if attr.HasField("t"):
        yield attr.t, label
    for index, tensor in enumerate(attr.tensors):
        yield tensor, f"{label} tensor {index}"
    if attr.HasField("sparse_tensor"):
        yield from _sparse_tensors(attr.sparse_tensor, label)
    for index, sparse in enumerate(attr.sparse_tensors):
        yield from _sparse_tensors(sparse, f"{label} sparse tensor {index}")
    if attr.HasField("g"):
        yield from _graph_tensors(attr.g, f"{label} subgraph: ")
    for index, graph in enumerate(attr.graphs):
        yield from _graph_tensors(graph, f"{label} subgraph {index}: ")


def _node_tensors(nodes, prefix: str) -> Iterator[tuple[TensorProto, str]]:
    for index, node in enumerate(nodes):
        label = f"{prefix}{node.op_type} '{node.name or f'#{index}'}'"
        for attr in node.attribute:
            yield from _attribute_tensors(attr, f"{label} attribute '{attr.name}'")


def _graph_tensors(graph: GraphProto, prefix: str = "") -> Iterator[tuple[TensorProto, str]]:
    for tensor in graph.initializer:
        yield tensor, f"{prefix}initializer '{tensor.name}'"
    for sparse in graph.sparse_initializer:
        yield from _sparse_tensors(sparse, f"{prefix}sparse initializer '{sparse.values.name}'")
    yield from _node_tensors(graph.node, prefix)


def _model_tensors(proto: ModelProto) -> Iterator[tuple[TensorProto, str]]:
    """Every tensor a model carries, with a label naming where: the graph's initializers, sparse
    initializers and node attributes (TENSOR, TENSORS, SPARSE_TENSOR(S)), recursively through subgraphs,
    local functions and training graphs."""
    yield from _graph_tensors(proto.graph)
    for function in proto.functions:
        yield from _node_tensors(function.node, f"function '{function.name}': ")
    for index, info in enumerate(proto.training_info):
        yield from _graph_tensors(info.initialization, f"training graph {index} (initialization): ")
        yield from _graph_tensors(info.algorithm, f"training graph {index} (algorithm): ")


def _resolve_external_data(proto: ModelProto, base_dir: Path | None) -> None:
    """Read every externally stored tensor of the model into it, under one rule.

    The location is relative and resolves (symlinks followed) inside ``base_dir``, the model file's
    folder; it names a regular file (never a FIFO or device: checked before opening); offset and length
    are non-negative integers within the file's size, and no length means "to the end of the file".
    A model without a folder (bytes, ModelProto) may not reference external data at all.
    """
    for tensor, what in _model_tensors(proto):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location")
        if not location:
            raise ExternalDataError(f"{what} is stored externally but names no location")
        if base_dir is None:
            raise ExternalDataError(
                f"{what} is stored in external file '{location}'; a model given as bytes or a ModelProto has no "
                "folder to read it from: load the model from its path"
            )
        target = _inside(base_dir, location, what)
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise ExternalDataError(f"{what}: external data offset/length are not integers") from None
        tensor.raw_data = read_regular(
            target, f"{what}: external data", ExternalDataError, offset=offset, length=length
        )
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


def _inside(base_dir: Path, location: str, what: str) -> Path:
    """``location`` resolved against ``base_dir``, refused when it is absolute or leads outside it."""
    if "\0" in location:
        raise ExternalDataError(f"{what}: external data location {location!r} contains a NUL byte")
    outside = ExternalDataError(
        f"{what}: external data location '{location}' resolves outside the model's directory "
        f"'{base_dir}'; refusing to read it"
    )
    if os.path.isabs(location):
        raise outside
    try:
        target = (base_dir / location).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise outside from None
    if not target.is_relative_to(base_dir):
        raise outside
    return target
