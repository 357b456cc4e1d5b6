"""Loading and validating ONNX models.

``load_model`` accepts a path, bytes or a ``ModelProto`` and returns a
validated model with external data resolved; every problem becomes a
:class:`~refquant.errors.ModelError` subclass with a message that names what
is wrong and where.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto, TensorProto

from .errors import ExternalDataError, ModelError, OpsetError
from .registry import DEFAULT_DOMAIN, MAX_OPSET

__all__ = ["load_model", "opset_versions", "topological_order", "MIN_OPSET"]

#: Quantization operators start at opset 10.
MIN_OPSET = 10


def load_model(model: str | os.PathLike | bytes | ModelProto) -> ModelProto:
    """Parse, resolve external data, and check structure and opsets."""
    if isinstance(model, ModelProto):
        proto, base_dir = model, None
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto, base_dir = _parse(bytes(model), "model bytes"), None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model file '{path}': {exc.strerror or exc}") from None
        proto, base_dir = _parse(data, f"'{path}'"), path.resolve().parent
    else:
        raise ModelError(f"model must be a path, bytes or onnx.ModelProto, not {type(model).__name__}")
    _resolve_external_data(proto, base_dir)
    topological_order(proto.graph)
    opset_versions(proto)
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


def opset_versions(proto: ModelProto) -> dict[str, int]:
    """{domain: version} imported by the model, checked against what refquant runs."""
    versions = {}
    for entry in proto.opset_import:
        domain = DEFAULT_DOMAIN if entry.domain in ("", "ai.onnx") else entry.domain
        versions[domain] = entry.version
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


def topological_order(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes in an order where every input is computed first.

    Raises :class:`ModelError` for an input nobody produces, an output produced
    twice or overwriting a graph input/initializer, and for cycles.
    """
    given = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    given |= {t.values.name for t in graph.sparse_initializer}
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
        for name in node.input:
            if not name or name in given:
                continue
            if name not in producer:
                raise ModelError(
                    f"{labels[index]}: input '{name}' is not a graph input, an initializer or any node's output"
                )
            deps.add(producer[name])
        waiting_on.append(deps)
    for out in graph.output:
        if out.name not in given and out.name not in producer:
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


def _resolve_external_data(proto: ModelProto, base_dir: Path | None) -> None:
    """Load tensors stored outside the model file, refusing paths that escape its directory."""
    tensors = list(proto.graph.initializer) + [
        a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")
    ]
    for tensor in tensors:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location")
        what = f"initializer '{tensor.name}'"
        if not location:
            raise ExternalDataError(f"{what} is stored externally but names no location")
        if base_dir is None:
            raise ExternalDataError(
                f"{what} is stored in external file '{location}'; load the model from its path, not from bytes"
            )
        target = (base_dir / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(base_dir):
            raise ExternalDataError(
                f"{what}: external data location '{location}' resolves outside the model's directory "
                f"'{base_dir}'; refusing to read it"
            )
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise ExternalDataError(f"{what}: external data offset/length are not integers") from None
        try:
            with open(target, "rb") as handle:
                handle.seek(offset)
                data = handle.read() if length is None else handle.read(length)
        except OSError as exc:
            raise ExternalDataError(f"{what}: cannot read external data '{location}': {exc.strerror or exc}") from None
        if length is not None and len(data) != length:
            raise ExternalDataError(
                f"{what}: external data '{location}' holds {len(data)} bytes at offset {offset}, expected {length}"
            )
        tensor.raw_data = data
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]
