"""The interface every backend adapter implements, and what they share.

    backend.run(model, feeds)      -> {graph output name: array}
    backend.run_all(model, feeds)  -> {node output name: array}, intermediates included

``model`` is a path, bytes or ``onnx.ModelProto``, read as refquant reads it
(:func:`load_model`: external data under refquant's one rule, handed to the
engine resolved); ``feeds`` maps input names to arrays. An adapter either
returns arrays or raises a :class:`BackendError` that names the backend: :class:`UnsupportedOnBackend` where the backend
documents that it does not run the model (a known limit, not a failure),
:class:`BackendUnavailable` where it cannot run here at all.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import onnx
from onnx import ModelProto, NodeProto

from refquant.errors import RefquantError
from refquant.model import read_model

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "UnsupportedOnBackend",
    "Availability",
    "Capabilities",
    "Unsupported",
    "TensorInfo",
    "tensor_infos",
    "input_type",
    "output_type",
    "load_model",
    "node_outputs",
    "import_optional",
]


class BackendError(Exception):
    """A backend could not run a model; the message names the backend."""

    def __init__(self, backend: str, message: str):
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message


class BackendUnavailable(BackendError):
    """The backend cannot run on this machine: a package, execution provider or device is missing."""


class UnsupportedOnBackend(BackendError):
    """The backend documents that it does not run this model (op, type or version): a known limit, not a failure."""


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, why."""

    available: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.available


@dataclass(frozen=True)
class TensorInfo:
    """Element type (TensorProto enum) and shape of a tensor, as far as shape inference knows them."""

    elem_type: int
    shape: tuple[int | str | None, ...] | None


@dataclass(frozen=True)
class Unsupported:
    """An op/type combination a backend documents it does not run.

    ``applies(node, infos)`` says whether ``node`` falls under it, given the
    :class:`TensorInfo` of the model's tensors (see :func:`tensor_infos`).
    """

    op_type: str
    description: str
    applies: Callable[[NodeProto, Mapping[str, TensorInfo]], bool]


@dataclass(frozen=True)
class Capabilities:
    """What a backend accepts.

    ``ir_version`` and ``opset`` are the largest IR version and ai.onnx opset it
    loads (None: unknown or unbounded); models above them are lowered where
    the semantics stay the same (:mod:`refquant.backends.lowering`). ``domains`` lists
    the other operator domains it runs. ``unsupported`` lists documented
    op/type combinations it refuses; ``notes`` are limits worth knowing that
    do not make a model unsupported.
    """

    ir_version: int | None
    opset: int | None
    domains: frozenset[str] = frozenset()
    unsupported: tuple[Unsupported, ...] = ()
    intermediates: bool = True
    notes: tuple[str, ...] = ()


def import_optional(module: str, backend: str, install: str) -> ModuleType:
    """Import an optional package, or raise :class:`BackendUnavailable` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(backend, f"package '{module}' is not installed ({install}): {exc}") from None


def load_model(model, backend: str) -> ModelProto:
    """A path, bytes or ModelProto as a ModelProto, read as refquant reads it (:func:`refquant.model.read_model`):
    external data resolved under refquant's one rule (from the model's folder only, regular files, within
    their size), so every engine runs the very tensors the reference runs and none resolves a path itself.
    A refusal is a :class:`BackendError` naming ``backend``, caused by refquant's error."""
    if not isinstance(model, (ModelProto, bytes, bytearray, memoryview, str, os.PathLike)):
        raise BackendError(backend, f"model must be a path, bytes or onnx.ModelProto, not {type(model).__name__}")
    try:
        return read_model(model)
    except RefquantError as exc:
        raise BackendError(backend, f"cannot load the model: {exc}") from exc


def model_key(model: ModelProto) -> bytes:
    """A digest that identifies a model's content."""
    return hashlib.blake2b(model.SerializeToString(deterministic=True), digest_size=16).digest()


def node_outputs(model: ModelProto) -> list[str]:
    """Names of the tensors the main graph's nodes compute, in node order."""
    return [name for node in model.graph.node for name in node.output if name]


def _info_of(value_info) -> TensorInfo | None:
    if not value_info.type.HasField("tensor_type"):
        return None
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type == onnx.TensorProto.UNDEFINED:
        return None
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim)
    return TensorInfo(tensor_type.elem_type, shape)


def input_type(node: NodeProto, infos: Mapping[str, TensorInfo], index: int) -> int | None:
    """Element type of a node's input ``index`` (None where absent or unknown)."""
    if index >= len(node.input) or not node.input[index]:
        return None
    info = infos.get(node.input[index])
    return info.elem_type if info else None


def output_type(node: NodeProto, infos: Mapping[str, TensorInfo], index: int = 0) -> int | None:
    """Element type of a node's output ``index`` (None where unknown)."""
    info = infos.get(node.output[index]) if index < len(node.output) else None
    return info.elem_type if info else None


def tensor_infos(model: ModelProto) -> dict[str, TensorInfo]:
    """Type and shape of every tensor of the main graph that is declared or that onnx's shape inference finds."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # inference failing on one node must not hide the declared types
        inferred = model
    graph = inferred.graph
    infos = {}
    for value_info in [*graph.input, *graph.value_info, *graph.output]:
        info = _info_of(value_info)
        if info is not None:
            infos[value_info.name] = info
    for tensor in graph.initializer:
        infos[tensor.name] = TensorInfo(tensor.data_type, tuple(tensor.dims))
    return infos


class _Cache:
    """A small least-recently-used map (prepared models, sessions)."""

    def __init__(self, size: int = 4):
        self._size = size
        self._items: OrderedDict = OrderedDict()

    def get(self, key, make: Callable[[], object]):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = make()
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


class Backend(abc.ABC):
    """One runtime behind the common interface.

    Subclasses set ``name``, implement :meth:`availability`, :attr:`version`,
    :attr:`capabilities` and :meth:`_prepare` / :meth:`_execute`; the base
    class loads the model, refuses documented unsupported combinations and
    caches what ``_prepare`` builds per model.
    """

    name: str = "backend"

    def __init__(self):
        self._prepared = _Cache()

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether this backend can run here; never raises."""

    @property
    @abc.abstractmethod
    def version(self) -> str | None:
        """Version of the runtime behind the adapter (None where it is not installed)."""

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """IR/opset accepted and documented unsupported combinations."""

    def run(self, model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph outputs, by name, in graph order."""
        return self._run(model, feeds, intermediates=False)

    def run_all(self, model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every node output the backend can expose (all of them where the type is known), by name.

        Exposing a tensor makes it a graph output; an optimizing runtime cannot
        fuse a node whose output must be kept, so intermediates may come from
        a less fused graph than :meth:`run` uses.
        """
        return self._run(model, feeds, intermediates=True)

    def optimized_model(self, model, feeds: Mapping[str, np.ndarray]) -> ModelProto | None:
        """The graph the backend runs for ``model`` and ``feeds`` after its own rewrites (fusions), where
        it can say; None where it cannot or does not rewrite. The classifier replays divergences with
        ``graph = "backend-optimized"`` on it."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- for subclasses -----------------------------------------------------------

    def require_available(self) -> None:
        status = self.availability()
        if not status:
            raise BackendUnavailable(self.name, status.reason or "not available")

    def check_supported(self, model: ModelProto, infos: Mapping[str, TensorInfo]) -> None:
        """Raise :class:`UnsupportedOnBackend` for the first node under a documented unsupported combination."""
        rules = self.capabilities.unsupported
        for node in model.graph.node:
            for rule in rules:
                if node.op_type == rule.op_type and rule.applies(node, infos):
                    label = f"{node.op_type} '{node.name}'" if node.name else node.op_type
                    raise UnsupportedOnBackend(self.name, f"{label}: {rule.description}")

    def _run(self, model, feeds, *, intermediates: bool) -> dict[str, np.ndarray]:
        self.require_available()
        if not isinstance(feeds, Mapping):
            raise BackendError(self.name, f"feeds must map input names to arrays, not {type(feeds).__name__}")
        proto = load_model(model, self.name)
        key = (model_key(proto), intermediates)
        prepared = self._prepared.get(key, lambda: self._prepare(proto, intermediates))
        results = self._execute(prepared, {name: np.asarray(value) for name, value in feeds.items()})
        if not intermediates:
            return results
        order = [name for name in node_outputs(proto) if name in results]
        return {name: results[name] for name in order} | results

    @abc.abstractmethod
    def _prepare(self, model: ModelProto, intermediates: bool):
        """Everything that depends on the model alone (sessions, rewritten graphs); cached per model."""

    @abc.abstractmethod
    def _execute(self, prepared, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a prepared model on ``feeds``."""
