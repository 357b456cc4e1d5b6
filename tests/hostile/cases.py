"""The generators of the hostile-input suite (spec/model.md "Hostile-input suite").

Each :class:`Case` has a category, an id and a ``prepare`` function that builds the case's files inside a
fresh :class:`Place` and returns what to run: an :class:`Api` call or a :class:`Cli` argv for
``refquant.cli.main``. What the case must give comes from the written rules (spec/model.md, spec/tables.md):
``expect`` (a RefquantError subclass) and ``match`` (text the one-line error holds), or, for an input the
spec accepts, ``choice`` (the sentence of spec/ that makes it legal; the test checks it is written there).

The cases are generated: every tensor slot x every hostile location, every CLI flag x bad value, every
truncation position class, every bomb op x size; :data:`CASES` holds them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.errors import (
    AttributeValueError,
    CalibrationError,
    ExternalDataError,
    FeedError,
    ModelError,
    NodeError,
    NonFiniteError,
    OpsetError,
    RefquantError,
    ResourceLimitError,
    UnsupportedOpError,
)

__all__ = ["SECRET", "Place", "Api", "Cli", "Case", "CASES", "CATEGORIES"]

#: the sentinel secret placed outside the model folder (and in the working directory): never shown anywhere
SECRET = b"HOSTILE-SENTINEL-3b9d1e-never-shown"


# -- where a case runs ---------------------------------------------------------------------------------------


class Place:
    """The folders of one case.

    ``root/secret.txt`` lies outside the model folder; ``model/`` is the model folder, where the case's files
    are built; ``out/`` is the one place the case may write; ``cwd/`` is the child's working directory (it holds
    a second copy of the secret, which a plain relative location would reach); ``tmp/`` is the child's temporary
    folder, empty again when it ends.
    """

    def __init__(self, root: Path):
        self.root, self.model, self.out = root, root / "model", root / "out"
        self.cwd, self.tmp = root / "cwd", root / "tmp"
        for folder in (self.model, self.out, self.cwd, self.tmp):
            folder.mkdir(parents=True)
        (root / "secret.txt").write_bytes(SECRET)
        (self.cwd / "secret.txt").write_bytes(SECRET)

    @property
    def secret(self) -> str:
        return str(self.root / "secret.txt")

    def file(self, name: str, data: bytes | str) -> str:
        """A file of the model folder holding ``data``."""
        path = self.model / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def save(self, model: onnx.ModelProto, name: str = "m.onnx") -> str:
        return self.file(name, model.SerializeToString())

    def fifo(self, name: str) -> str:
        path = self.model / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        return str(path)

    def link(self, name: str, target: str | Path) -> str:
        path = self.model / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        return str(path)

    def folder(self, name: str) -> str:
        (self.model / name).mkdir(parents=True, exist_ok=True)
        return str(self.model / name)

    def sparse(self, name: str, size: int) -> str:
        """A file of ``size`` bytes (zeros) that takes no disk space."""
        path = self.model / name
        with open(path, "wb") as handle:
            handle.truncate(size)
        return str(path)


@dataclass(frozen=True)
class Api:
    """Call ``call()`` in the child."""

    call: Callable[[], object]


@dataclass(frozen=True)
class Cli:
    """Run ``refquant.cli.main(argv)`` in the child."""

    argv: list[str]


@dataclass(frozen=True)
class Case:
    category: str
    id: str
    prepare: Callable[[Place], Api | Cli]
    expect: type[RefquantError] | None = RefquantError  # None: the input is legal (see ``choice``)
    match: str | tuple[str, ...] = ""  # text (every one, for a tuple) the one-line error holds
    choice: str = ""

    @property
    def matches(self) -> tuple[str, ...]:
        return (self.match,) if isinstance(self.match, str) else self.match

    @property
    def name(self) -> str:
        return f"{self.category}/{self.id}"


# -- models ---------------------------------------------------------------------------------------------------


def _tensor(name: str, value, dtype=None) -> T:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _model(nodes, inputs, outputs, initializers=(), *, opset: int = 13, ms: bool = False, ir: int = 8):
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers))
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(graph, opset_imports=imports, ir_version=ir)


def _io(name: str, elem_type: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def dq_model(opset: int = 13, **attrs) -> onnx.ModelProto:
    """x: uint8 [1, 3] -> DequantizeLinear 'dq' (scale 0.5, zero point 0) -> y: float [1, 3]."""
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], name="dq", **attrs)
    inits = [_tensor("s", 0.5, np.float32), _tensor("z", 0, np.uint8)]
    return _model([node], [_io("x", T.UINT8, [1, 3])], [_io("y", T.FLOAT, [1, 3])], inits, opset=opset,
                  ir=10 if opset >= 21 else 8)


def q_model(opset: int = 13, **attrs) -> onnx.ModelProto:
    """x: float [1, 3] -> QuantizeLinear 'q' (scale 0.5, zero point 0) -> y: uint8 [1, 3]."""
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q", **attrs)
    inits = [_tensor("s", 0.5, np.float32), _tensor("z", 0, np.uint8)]
    return _model([node], [_io("x", T.FLOAT, [1, 3])], [_io("y", T.UINT8, [1, 3])], inits, opset=opset,
                  ir=10 if opset >= 21 else 8)


def relu_model() -> onnx.ModelProto:
    """x: float [N, 3] -> Relu 'r' -> y: float [N, 3] (a float model for calibrate and debug)."""
    node = helper.make_node("Relu", ["x"], ["y"], name="r")
    return _model([node], [_io("x", T.FLOAT, ["N", 3])], [_io("y", T.FLOAT, ["N", 3])])


X = np.zeros((1, 3), np.uint8)  # the feed of dq_model


# -- case builders --------------------------------------------------------------------------------------------


def session(build: Callable[[], onnx.ModelProto], *, source: str = "path", feeds=None, **options):
    """prepare(): ``refquant.Session`` of the built model (saved as a file, or given as bytes or the proto),
    then ``run`` on ``feeds`` when given."""

    def prepare(place: Place) -> Api:
        model = build()
        given = {"path": lambda: place.save(model), "bytes": model.SerializeToString, "proto": lambda: model}[source]()

        def call():
            sess = refquant.Session(given, **options)
            return sess if feeds is None else sess.run(None, feeds)

        return Api(call)

    return prepare


def _mutated(mutate: Callable[[onnx.ModelProto], None], base=dq_model) -> Callable[[], onnx.ModelProto]:
    def build():
        model = base()
        mutate(model)
        return model

    return build


# -- malformed models -----------------------------------------------------------------------------------------


def _strict_prefix_positions(data: bytes) -> list[int]:
    """Truncation lengths, one per position class: every top-level field boundary (and one byte on either
    side), plus an even spread over the rest; all shorter than ``data``."""
    boundaries, at = {0}, 0
    while at < len(data):
        key, at = _varint(data, at)
        wire = key & 7
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            at += size
        else:
            at += {1: 8, 5: 4}[wire]
        boundaries.add(at)
    spread = set(range(0, len(data), max(1, len(data) // 16)))
    near = {b + d for b in boundaries for d in (-1, 0, 1)}
    return sorted(p for p in near | spread if 0 <= p < len(data))


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _decodes_to_a_model(data: bytes) -> bool:
    """protobuf's (not refquant's) reading: the bytes decode as a ModelProto with a graph and an opset import."""
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception:  # noqa: BLE001  (protobuf's DecodeError and friends)
        return False
    return proto.HasField("graph") and bool(proto.opset_import)


def _garbled(data: bytes, limit: int = 36) -> list[tuple[int, int]]:
    """(position, new byte) single-byte corruptions that protobuf itself cannot decode into a model (the
    others are other valid models, not bad inputs), spread evenly over the positions."""
    bad = [
        (index, value)
        for index in range(len(data))
        for value in (0xFF, 0x00, 0x80)
        if data[index] != value and not _decodes_to_a_model(data[:index] + bytes([value]) + data[index + 1:])
    ]
    step = max(1, len(bad) // limit)
    return bad[::step][:limit]


def _bytes_model(data: bytes):
    return lambda: data


def _raw(data_of: Callable[[], bytes], source: str):
    def prepare(place: Place) -> Api:
        data = data_of()
        given = place.file("m.onnx", data) if source == "path" else data
        return Api(lambda: refquant.Session(given))

    return prepare


def _set_ir(version):
    return lambda m: setattr(m, "ir_version", version)


def _set_opsets(*pairs):
    def mutate(model):
        del model.opset_import[:]
        model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in pairs)

    return mutate


def _replace_node(op_type: str, domain: str = "", inputs=("x", "s", "z"), outputs=("y",), **attrs):
    def mutate(model):
        del model.graph.node[:]
        model.graph.node.append(helper.make_node(op_type, list(inputs), list(outputs), name="n", domain=domain,
                                                 **attrs))

    return mutate


def _add_node(op_type: str, inputs, outputs, name="extra", **attrs):
    return lambda m: m.graph.node.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))


def _append(field_name: str, item):
    return lambda m: getattr(m.graph, field_name).append(item)


def _with_attribute(attribute: onnx.AttributeProto, base=dq_model):
    def mutate(model):
        model.graph.node[0].attribute.append(attribute)

    return _mutated(mutate, base)


def _declare_output(elem_type: int, shape):
    def mutate(model):
        del model.graph.output[:]
        model.graph.output.append(_io("y", elem_type, shape))

    return mutate


def _declare_input(elem_type: int, shape):
    def mutate(model):
        del model.graph.input[:]
        model.graph.input.append(_io("x", elem_type, shape))

    return mutate


def _corrupt_initializer(**fields):
    def mutate(model):
        tensor = model.graph.initializer[0]
        for key, value in fields.items():
            setattr(tensor, key, value)

    return mutate


def _flag_model(op_type: str, inputs: int, flag: str, value: int, opset: int = 13, **attrs):
    """A one-node model whose node sets the 0/1 flag ``flag`` to ``value`` (refused when the Session binds)."""

    def build():
        names = [f"i{k}" for k in range(inputs)]
        node = helper.make_node(op_type, names, ["y"], name="n", **{flag: value}, **attrs)
        return _model([node], [_io(n, T.FLOAT, None) for n in names], [_io("y", T.FLOAT, None)], opset=opset)

    return build


def _sequence_input(model):
    """A sequence of sequences (sequences of tensors run since the Sequence ops: spec/model.md)."""
    del model.graph.input[:]
    inner = helper.make_sequence_type_proto(helper.make_tensor_type_proto(T.UINT8, [1, 3]))
    model.graph.input.append(helper.make_value_info("x", helper.make_sequence_type_proto(inner)))


def malformed() -> Iterator[Case]:
    """Models refquant must refuse: bytes that are no model, truncations and garbles, IR versions, opsets,
    unknown ops and domains, duplicates, missing inputs, cycles, bad attributes, contradicting declarations."""
    cat = "malformed"
    junk = {
        "empty": b"", "nul": b"\0", "text": b"hello, this is not onnx\n", "json": b'{"graph": {}}',
        "random": np.random.default_rng(12).integers(0, 256, 512, dtype=np.uint8).tobytes(),
        "npy-header": b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
        "zip": b"PK\x05\x06" + b"\0" * 18,
    }
    for name, data in junk.items():
        for source in ("path", "bytes"):
            yield Case(cat, f"junk-{name}-{source}", _raw(_bytes_model(data), source), ModelError, "not a valid ONNX model")
    good = dq_model().SerializeToString()
    assert onnx.ModelProto.FromString(good).ListFields()[-1][0].name == "opset_import"  # the last field
    for length in _strict_prefix_positions(good):
        yield Case(cat, f"truncated-at-{length}", _raw(_bytes_model(good[:length]), "path"), ModelError,
                   "not a valid ONNX model")
    for index, value in _garbled(good):
        data = good[:index] + bytes([value]) + good[index + 1:]
        yield Case(cat, f"garbled-byte-{index}-to-{value:#04x}", _raw(_bytes_model(data), "path"), ModelError,
                   "not a valid ONNX model")
    for version in (0, 1, 2, 15, 99, -1, 2**62):
        yield Case(cat, f"ir-version-{version}", session(_mutated(_set_ir(version))), ModelError, "IR version")
    for version in (0, 1, 9, 29, 1000, -5):
        yield Case(cat, f"ai.onnx-opset-{version}", session(_mutated(_set_opsets(("", version)))), OpsetError,
                   f"opset {version}")
    for version in (0, 2, 1000, -1):
        yield Case(cat, f"com.microsoft-opset-{version}",
                   session(_mutated(_set_opsets(("", 13), ("com.microsoft", version)))), OpsetError,
                   f"com.microsoft opset {version}")
    yield Case(cat, "domain-imported-twice", session(_mutated(_set_opsets(("", 13), ("ai.onnx", 13)))), OpsetError,
               "more than once")
    yield Case(cat, "no-default-domain", session(_mutated(_set_opsets(("com.microsoft", 1)))), OpsetError,
               "does not import the default ONNX domain")
    yield Case(cat, "no-opset-import", session(_mutated(_set_opsets())), ModelError, "no graph or no opset_import")
    unknown_ops = {
        "unknown-op": (_replace_node("NoSuchOp"), UnsupportedOpError, "no refquant kernel for ai.onnx::NoSuchOp"),
        "empty-op-type": (_replace_node(""), UnsupportedOpError, "no refquant kernel"),
        "op-newer-than-opset": (_replace_node("Gelu", inputs=("x",)), UnsupportedOpError, "Gelu at opset 13"),
        "unimported-domain": (_replace_node("Op", domain="com.evil"), ModelError, "domain 'com.evil' is not imported"),
    }
    for name, (mutate, error, match) in unknown_ops.items():
        yield Case(cat, name, session(_mutated(mutate)), error, match)
    yield Case(cat, "imported-unknown-domain",
               session(_mutated(lambda m: (_set_opsets(("", 13), ("com.evil", 1))(m), _replace_node("Op", "com.evil")(m)))),
               UnsupportedOpError, "com.evil::Op")
    structure = {
        "duplicate-graph-input": (_append("input", _io("x", T.UINT8, [1, 3])), "graph input(s) ['x']"),
        "duplicate-initializer": (_append("initializer", _tensor("s", 0.25, np.float32)), "initializer(s) ['s']"),
        "duplicate-attribute": (lambda m: m.graph.node[0].attribute.extend(
            [helper.make_attribute("axis", 1), helper.make_attribute("axis", 0)]), "attribute(s) ['axis']"),
        "output-produced-twice": (_add_node("Identity", ["x"], ["y"]), "output 'y' is also produced by"),
        "output-overwrites-input": (_add_node("Identity", ["s"], ["x"]), "overwrites a graph input or initializer"),
        "output-overwrites-initializer": (_add_node("Identity", ["x"], ["z"]), "overwrites a graph input"),
        "input-nobody-produces": (_add_node("Identity", ["ghost"], ["g"]), "input 'ghost' is not a graph input"),
        "output-nobody-produces": (_append("output", _io("ghost", T.FLOAT, [1])), "graph output 'ghost' is not produced"),
        "self-loop": (_add_node("Identity", ["loop"], ["loop"]), "cycle"),
        "two-node-cycle": (lambda m: (_add_node("Identity", ["b"], ["a"], "ca")(m), _add_node("Identity", ["a"], ["b"], "cb")(m)),
                           "cycle"),
        "three-node-cycle": (lambda m: [_add_node("Identity", [i], [o], f"c{o}")(m) for i, o in ("ab", "bc", "ca")],
                             "cycle"),
        "sparse-initializer": (_append("sparse_initializer", helper.make_sparse_tensor(
            _tensor("sp", [1.0], np.float32), _tensor("spi", [0], np.int64), [2])), "sparse initializers"),
        "sequence-input": (_sequence_input, "a sequence of non-tensors"),
        "negative-input-dim": (_declare_input(T.UINT8, [1, -3]), "declares dimension 1 as -3"),
        "negative-output-dim": (_declare_output(T.FLOAT, [-1, 3]), "declares dimension 0 as -1"),
        "undefined-input-type": (_declare_input(T.UNDEFINED, [1, 3]), "graph input 'x'"),
        "unknown-input-type": (_declare_input(99, [1, 3]), "graph input 'x'"),
        "initializer-raw-data-too-short": (_corrupt_initializer(raw_data=b"\0\0\0"), "initializer 's' cannot be decoded"),
        "initializer-unknown-type": (_corrupt_initializer(data_type=99), "initializer 's'"),
        "default-of-another-dtype": (_append("input", _io("s", T.DOUBLE, [])), "initializer 's' has dtype float32"),
        "default-of-another-shape": (_append("input", _io("s", T.FLOAT, [4])), "initializer 's' has shape ()"),
    }
    for name, (mutate, match) in structure.items():
        yield Case(cat, name, session(_mutated(mutate)), ModelError, match)
    yield Case(cat, "not-a-model-object", lambda place: Api(lambda: refquant.Session(12345)), ModelError,
               "must be a path, bytes or onnx.ModelProto")
    q21 = lambda: q_model(21)  # noqa: E731
    attributes = {
        "axis-float": helper.make_attribute("axis", 1.0),
        "axis-string": helper.make_attribute("axis", "1"),
        "axis-list": helper.make_attribute("axis", [1]),
        "axis-tensor": helper.make_attribute("axis", _tensor("a", 1, np.int64)),
        "saturate-5": helper.make_attribute("saturate", 5),
        "saturate-minus-1": helper.make_attribute("saturate", -1),
        "block_size-float": helper.make_attribute("block_size", 1.5),
        "unknown-attribute": helper.make_attribute("my_hint", 1),
        "output_dtype-string": helper.make_attribute("output_dtype", "uint8"),
    }
    for name, attribute in attributes.items():
        yield Case(cat, f"QuantizeLinear-{name}", session(_with_attribute(attribute, q21)), AttributeValueError,
                   f"QuantizeLinear 'q': attribute '{attribute.name}'" if "saturate" not in name
                   else "saturate must be 0 or 1")
    flags = [("Gemm", 2, "transA", 2, {}), ("Gemm", 2, "transB", -1, {}), ("ReduceMax", 1, "keepdims", 2, {}),
             ("MaxPool", 1, "ceil_mode", 3, {"kernel_shape": [2, 2]}),
             ("AveragePool", 1, "count_include_pad", 2, {"kernel_shape": [2, 2]}),
             ("CumSum", 2, "exclusive", 7, {}), ("CumSum", 2, "reverse", 2, {}), ("TopK", 2, "largest", 2, {}),
             ("TopK", 2, "sorted", 9, {}), ("ArgMax", 1, "select_last_index", 2, {})]
    for op_type, inputs, flag, value, attrs in flags:
        yield Case(cat, f"{op_type}-{flag}-{value}", session(_flag_model(op_type, inputs, flag, value, **attrs)),
                   AttributeValueError, f"{flag} must be 0 or 1, got {value}")
    declarations = {
        "output-declared-int8": (T.INT8, [1, 3], "has dtype float32, the model declares int8"),
        "output-declared-float16": (T.FLOAT16, [1, 3], "has dtype float32, the model declares float16"),
        "output-declared-rank-1": (T.FLOAT, [3], "has shape [1, 3], the model declares [3]"),
        "output-declared-rank-3": (T.FLOAT, [1, 3, 1], "has shape [1, 3], the model declares [1, 3, 1]"),
    }
    for name, (elem_type, shape, match) in declarations.items():
        yield Case(cat, name, session(_mutated(_declare_output(elem_type, shape)), feeds={"x": X}), ModelError,
                   f"graph output 'y' (computed by DequantizeLinear 'dq') {match}")
    yield Case(cat, "declared-size-is-not-enforced", session(_mutated(_declare_output(T.FLOAT, [7, 9])), feeds={"x": X}),
               None, choice="Declared sizes are not enforced")


# -- memory and work bombs ------------------------------------------------------------------------------------


def _bomb(nodes, inits, *, ms: bool = False, opset: int = 17) -> onnx.ModelProto:
    return _model(nodes, [], [_io("y", T.FLOAT, None)], inits, opset=opset, ms=ms)


def _node(op_type, inputs, name="bomb", **attrs):
    return helper.make_node(op_type, inputs, ["y" if name == "bomb" else name], name=name, **attrs)


def _ones(shape, dtype=np.float32):
    return np.ones(shape, dtype)


def _constant_of_shape(shape):
    return _bomb([_node("ConstantOfShape", ["s"])], [_tensor("s", shape, np.int64)])


def _expand(shape):
    return _bomb([_node("Expand", ["x", "s"])], [_tensor("x", _ones(1)), _tensor("s", shape, np.int64)])


def _range(start, limit, delta):
    dtype = np.int64 if isinstance(start, int) else np.float32
    inits = [_tensor(n, v, dtype) for n, v in (("a", start), ("b", limit), ("c", delta))]
    return _bomb([_node("Range", ["a", "b", "c"])], inits)


def _resize_scales(factor):
    scales = _tensor("scales", [1, 1, factor, factor], np.float32)
    return _bomb([_node("Resize", ["x", "", "scales"], mode="nearest")], [_tensor("x", _ones((1, 1, 4, 4))), scales])


def _resize_sizes(size):
    sizes = _tensor("sizes", [1, 1, size, size], np.int64)
    return _bomb([_node("Resize", ["x", "", "", "sizes"], mode="linear")], [_tensor("x", _ones((1, 1, 4, 4))), sizes])


def _pad(amount, mode="constant"):
    pads = _tensor("p", [0, 0, amount, amount], np.int64)
    return _bomb([_node("Pad", ["x", "p"], mode=mode)], [_tensor("x", _ones((1, 1))), pads])


def _broadcast(op_type, n):
    a, b = _tensor("a", _ones((n, 1))), _tensor("b", _ones((1, n)))
    if op_type == "Where":
        return _bomb([_node("Where", ["c", "a", "b"])], [_tensor("c", np.ones((n, 1), bool)), a, b])
    return _bomb([_node(op_type, ["a", "b"])], [a, b])


def _gather(n):
    return _bomb([_node("Gather", ["x", "i"])], [_tensor("x", _ones((1, n))), _tensor("i", np.zeros(n, np.int64))])


def _qparams(prefix, zero_type=np.uint8):
    return [_tensor(f"{prefix}_s", 0.5, np.float32), _tensor(f"{prefix}_z", 0, zero_type)]


def _qlinear_conv(pad, *, ms=False):
    inputs = ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z"]
    layout = (1, 4, 4, 1) if ms else (1, 1, 4, 4)
    attrs = {"channels_last": 1} if ms else {}
    node = helper.make_node("QLinearConv", inputs, ["y"], name="bomb", pads=[pad] * 4,
                            domain="com.microsoft" if ms else "", **attrs)
    inits = [_tensor("x", np.zeros(layout, np.uint8)), _tensor("w", np.zeros((1, 1, 1, 1), np.uint8)),
             *_qparams("x"), *_qparams("w"), *_qparams("y")]
    return _bomb([node], inits, ms=ms)


def _conv(pad):
    inits = [_tensor("x", _ones((1, 1, 4, 4))), _tensor("w", _ones((1, 1, 1, 1)))]
    return _bomb([_node("Conv", ["x", "w"], pads=[pad] * 4)], inits)


def _conv_transpose(stride):
    inits = [_tensor("x", _ones((1, 1, 4, 4))), _tensor("w", _ones((1, 1, 1, 1)))]
    return _bomb([_node("ConvTranspose", ["x", "w"], strides=[stride, stride])], inits)


def _pool(op_type, pad):
    attrs = {"count_include_pad": 1} if op_type == "AveragePool" else {}
    return _bomb([_node(op_type, ["x"], kernel_shape=[3, 3], pads=[pad] * 4, **attrs)], [_tensor("x", _ones((1, 1, 4, 4)))])


def _made(shape, name, dtype=np.float32):
    """A ConstantOfShape node making ``name`` of ``shape`` (so the model stays a few hundred bytes)."""
    value = numpy_helper.from_array(np.ones(1, dtype))
    return helper.make_node("ConstantOfShape", [f"{name}_shape"], [name], name=name, value=value), _tensor(
        f"{name}_shape", shape, np.int64)


def _product(op_type, m, k, n):
    """A product of [m, k] by [k, n] made by ConstantOfShape: work m*k*n."""
    integer = op_type in ("MatMulInteger", "QLinearMatMul")
    dtype = np.uint8 if integer else np.float32
    make_a, shape_a = _made([m, k], "a", dtype)
    make_b, shape_b = _made([k, n], "b", dtype)
    if op_type == "QLinearMatMul":
        inputs, extra = ["a", "a_s", "a_z", "b", "b_s", "b_z", "y_s", "y_z"], [*_qparams("a"), *_qparams("b"), *_qparams("y")]
    else:
        inputs, extra = ["a", "b"], []
    return _bomb([make_a, make_b, _node(op_type, inputs)], [shape_a, shape_b, *extra])


def _qlinear_conv_work(size):
    make_x, shape_x = _made([1, 16, size, size], "x", np.uint8)
    make_w, shape_w = _made([64, 16, 9, 9], "w", np.uint8)
    inputs = ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z"]
    return _bomb([make_x, make_w, _node("QLinearConv", inputs)],
                 [shape_x, shape_w, *_qparams("x"), *_qparams("w"), *_qparams("y")])


def _reduce_empty(n):
    make, shape = _made([n, 0, n], "e")
    return _bomb([make, _node("ReduceMax", ["e"], axes=[1], keepdims=1)], [shape], opset=17)


def _tile_then_dequantize(shape):
    """A bomb that is not the graph's only node: ConstantOfShape 'bomb' feeding a DequantizeLinear."""
    make = helper.make_node("ConstantOfShape", ["s"], ["c"], name="bomb", value=numpy_helper.from_array(np.ones(1, np.uint8)))
    dq = helper.make_node("DequantizeLinear", ["c", "q_s", "q_z"], ["y"], name="dq")
    return _bomb([make, dq], [_tensor("s", shape, np.int64), *_qparams("q")])


def bombs() -> Iterator[Case]:
    """Small models whose nodes would allocate or compute without bound: each is refused from its shapes before
    its kernel runs (ResourceLimitError naming the node 'bomb' and the limit)."""
    huge = ([10**6, 10**6], [2**40], [2**20] * 3, [10**4] * 4, [2**62, 2**62], [1, 10**12])
    families: list[tuple[str, Callable[[], onnx.ModelProto], str]] = []
    for shape in huge:
        tag = "x".join(map(str, shape))
        families += [(f"ConstantOfShape-{tag}", lambda s=shape: _constant_of_shape(s), "max_memory"),
                     (f"Expand-{tag}", lambda s=shape: _expand(s), "max_memory")]
        families.append((f"ConstantOfShape-then-DequantizeLinear-{tag}", lambda s=shape: _tile_then_dequantize(s),
                         "max_memory"))
    families += [
        ("Range-int-1e12", lambda: _range(0, 10**12, 1), "max_memory"),
        ("Range-int-down-1e12", lambda: _range(10**12, 0, -1), "max_memory"),
        ("Range-int-2e62", lambda: _range(0, 2**62, 1), "max_memory"),
        ("Range-float-1e12", lambda: _range(0.0, 1e12, 1.0), "max_memory"),
        ("Range-float-tiny-step", lambda: _range(0.0, 1.0, 1e-12), "max_memory"),
    ]
    families += [(f"Resize-scales-{f:g}", lambda f=f: _resize_scales(f), "max_memory") for f in (1e4, 1e6, 3e9)]
    families += [(f"Resize-sizes-{s}", lambda s=s: _resize_sizes(s), "max_memory") for s in (10**5, 10**7)]
    families += [(f"Pad-{mode}-{n}", lambda n=n, mode=mode: _pad(n, mode), "max_memory")
                 for mode in ("constant", "edge") for n in (10**5, 10**6, 2**40)]
    families += [(f"broadcast-{op}-{n}", lambda op=op, n=n: _broadcast(op, n), "max_memory")
                 for op in ("Add", "Mul", "Sub", "Max", "Where") for n in (10**5,)]
    families += [("Gather-1e5", lambda: _gather(10**5), "max_memory")]
    families += [(f"{op}-pads-{p}", lambda op=op, p=p: _pool(op, p), "max_memory")
                 for op in ("AveragePool", "MaxPool") for p in (10**5, 10**6)]
    families += [(f"Conv-pads-{p}", lambda p=p: _conv(p), "max_memory") for p in (10**5, 10**6)]
    families += [(f"QLinearConv-pads-{p}", lambda p=p: _qlinear_conv(p), "max_memory") for p in (10**5, 10**6)]
    families += [("com.microsoft-QLinearConv-pads-1e6", lambda: _qlinear_conv(10**6, ms=True), "max_memory")]
    families += [(f"ConvTranspose-strides-{s}", lambda s=s: _conv_transpose(s), "max_memory") for s in (10**5, 10**6)]
    families += [(f"{op}-work", lambda op=op: _product(op, 3000, 3000, 3000), "max_work")
                 for op in ("MatMul", "Gemm", "MatMulInteger", "QLinearMatMul")]
    families += [("MatMul-thin-work", lambda: _product("MatMul", 10**6, 2, 10**4), "max_memory")]
    families += [("QLinearConv-work-512", lambda: _qlinear_conv_work(512), "max_work")]
    families += [(f"ReduceMax-empty-axis-{n}", lambda n=n: _reduce_empty(n), "max_memory") for n in (10**5, 10**6)]
    for name, build, limit in families:
        op_type = next(node.op_type for node in build().graph.node if node.name == "bomb")
        yield Case("bombs", name, session(build, feeds={}), ResourceLimitError, f"{op_type} 'bomb':")
    small = refquant.Limits(max_memory=2**20, max_work=10**6)
    for name, build in {"custom-memory-ConstantOfShape-1Mi": lambda: _constant_of_shape([1024, 1024]),
                        "custom-work-MatMul-200": lambda: _product("MatMul", 200, 200, 200),
                        "custom-memory-Pad": lambda: _pad(1000)}.items():
        yield Case("bombs", name, session(build, feeds={}, limits=small), ResourceLimitError, "'bomb':")
    yield Case("bombs", "negative-shape", session(lambda: _constant_of_shape([-1, 5]), feeds={}), NodeError,
               "ConstantOfShape 'bomb'")


# -- external data --------------------------------------------------------------------------------------------


def _external(tensor: T, location: str, **entries) -> T:
    """``tensor`` marked as stored in ``location`` (its inline data dropped)."""
    tensor.ClearField("raw_data")
    tensor.data_location = T.EXTERNAL
    del tensor.external_data[:]
    for key, value in {"location": location, **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return tensor


def _stored(location: str) -> T:
    return _external(_tensor("t", [1.0], np.float32), location)


def _sparse_stored(location: str) -> onnx.SparseTensorProto:
    return helper.make_sparse_tensor(_external(_tensor("sp", [1.0], np.float32), location), _tensor("i", [0], np.int64), [2])


def _constant_tensors(location):
    node = helper.make_node("Constant", [], ["c"], name="c")
    node.attribute.append(helper.make_attribute("value", [_stored(location)]))
    return node


def _if_node(location):
    body = helper.make_graph([], "body", [], [_io("t", T.FLOAT, [1])], [_stored(location)])
    return helper.make_node("If", ["x"], ["c"], name="i", then_branch=body, else_branch=body)


#: every place a model carries a tensor: slot -> (add a tensor stored at a location to dq_model, the label)
SLOTS: dict[str, tuple[Callable[[onnx.ModelProto, str], None], str]] = {
    "initializer": (lambda m, loc: _external(m.graph.initializer[0], loc), "initializer 's'"),
    "sparse-initializer": (lambda m, loc: m.graph.sparse_initializer.append(_sparse_stored(loc)),
                           "sparse initializer 'sp' (values)"),
    "TENSOR": (lambda m, loc: m.graph.node.append(helper.make_node("Constant", [], ["c"], name="c", value=_stored(loc))),
               "Constant 'c' attribute 'value'"),
    "TENSORS": (lambda m, loc: m.graph.node.append(_constant_tensors(loc)), "Constant 'c' attribute 'value' tensor 0"),
    "SPARSE_TENSOR": (lambda m, loc: m.graph.node.append(
        helper.make_node("ConstantOfShape", ["x"], ["c"], name="c", value=_sparse_stored(loc))),
        "ConstantOfShape 'c' attribute 'value' (values)"),
    "subgraph": (lambda m, loc: m.graph.node.append(_if_node(loc)), "If 'i' attribute 'else_branch' subgraph"),
    "function": (lambda m, loc: m.functions.append(helper.make_function(
        "local", "f", [], ["c"], [helper.make_node("Constant", [], ["c"], value=_stored(loc))],
        [helper.make_opsetid("", 13)])), "function 'f': Constant '#0' attribute 'value'"),
}


def _locations(place: Place) -> dict[str, str]:
    """Hostile external-data locations, built in ``place``."""
    place.folder("sub")
    place.link("link-out", place.secret)
    place.link("link-dev", "/dev/zero")
    place.link("dir-link", place.root)
    place.fifo("fifo.bin")
    return {
        "dotdot": "../secret.txt", "absolute": place.secret, "sub-dotdot": "sub/../../secret.txt",
        "symlink-out": "link-out", "symlink-device": "link-dev", "folder-symlink-out": "dir-link/secret.txt",
        "fifo": "fifo.bin", "dot": ".", "folder": "sub", "missing": "missing.bin", "nul": "w\0.bin", "empty": "",
        "dotdot-only": "..",
    }


#: what the error says for each hostile location
_PROBLEMS = {
    "dotdot": "resolves outside the model's directory", "absolute": "resolves outside the model's directory",
    "sub-dotdot": "resolves outside the model's directory", "symlink-out": "resolves outside the model's directory",
    "symlink-device": "resolves outside the model's directory",
    "folder-symlink-out": "resolves outside the model's directory", "fifo": "is a FIFO, not a regular file",
    "dot": "is a directory", "folder": "is a directory", "missing": "No such file", "nul": "contains a NUL byte",
    "empty": "names no location", "dotdot-only": "resolves outside the model's directory",
}
LOCATION_NAMES = list(_PROBLEMS)


def _slot_case(slot: str, location_name: str):
    def prepare(place: Place) -> Api:
        location = _locations(place)[location_name]
        model = dq_model()
        SLOTS[slot][0](model, location)
        path = place.save(model)
        return Api(lambda: refquant.Session(path))

    return prepare


def _cwd_case(slot: str, source: str):
    """The model as bytes or a proto, naming 'secret.txt', which the working directory holds."""

    def build():
        model = dq_model()
        SLOTS[slot][0](model, "secret.txt")
        return model

    return session(build, source=source)


def _range_case(size: int, **entries):
    def prepare(place: Place) -> Api:
        model = dq_model()
        _external(model.graph.initializer[0], "w.bin", **entries)
        place.file("w.bin", np.float32(0.5).tobytes())
        if size > 4:
            place.sparse("w.bin", size)
        path = place.save(model)
        return Api(lambda: refquant.Session(path))

    return prepare


def external_data() -> Iterator[Case]:
    """Every tensor slot x every hostile location; models without a folder; offsets and lengths."""
    for slot, (_, label) in SLOTS.items():
        for location_name in LOCATION_NAMES:
            problem = _PROBLEMS[location_name]
            yield Case("external-data", f"{slot}-{location_name}", _slot_case(slot, location_name), ExternalDataError,
                       (label, problem))
        for source in ("bytes", "proto"):
            yield Case("external-data", f"{slot}-from-{source}", _cwd_case(slot, source), ExternalDataError,
                       "no folder to read it from")
    ranges = {
        "offset-past-end": (4, {"offset": 8}, "reach past its end"),
        "negative-offset": (4, {"offset": -1, "length": 4}, "reach past its end"),
        "range-past-end": (4, {"offset": 2, "length": 4}, "reach past its end"),
        "huge-length": (4, {"length": 10**12}, "reach past its end"),
        "huge-offset": (4, {"offset": 2**70, "length": 4}, "reach past its end"),
        "negative-length": (4, {"length": -4}, "reach past its end"),
        "length-not-integer": (4, {"length": "4k"}, "not integers"),
        "offset-not-integer": (4, {"offset": "abc"}, "not integers"),
        "no-length-huge-file": (3 * 2**30, {}, "initializer 's'"),
        "length-larger-than-tensor": (3 * 2**30, {"length": 2 * 2**30}, "initializer 's'"),
    }
    for name, (size, entries, match) in ranges.items():
        yield Case("external-data", name, _range_case(size, **entries), ExternalDataError, ("initializer 's'", match))


# -- feeds ----------------------------------------------------------------------------------------------------


def _feeding(feeds_of: Callable[[], object], base=dq_model, outputs=None):
    def prepare(place: Place) -> Api:
        path = place.save(base())
        feeds = feeds_of()
        return Api(lambda: refquant.Session(path).run(outputs, feeds))

    return prepare


def feeds() -> Iterator[Case]:
    """Session.run with feeds the spec refuses (spec/model.md "Feeds") and NaN where the spec profile refuses it."""
    cat = "feeds"
    for dtype in ("int8", "uint16", "int32", "int64", "float16", "float32", "float64", "bool", "complex64", "object",
                  "<U1", "S1", "datetime64[s]"):
        yield Case(cat, f"dtype-{dtype}", _feeding(lambda d=dtype: {"x": np.zeros((1, 3), d)}), FeedError,
                   "input 'x' has dtype")
    for shape in ((), (3,), (1, 1, 3), (1, 3, 1)):
        yield Case(cat, f"rank-{len(shape)}-{shape}", _feeding(lambda s=shape: {"x": np.zeros(s, np.uint8)}), FeedError,
                   "input 'x' has rank")
    for shape in ((1, 4), (2, 3), (0, 3), (1, 0)):
        yield Case(cat, f"shape-{shape}", _feeding(lambda s=shape: {"x": np.zeros(s, np.uint8)}), FeedError,
                   "input 'x' has shape")
    wrong = {
        "missing": ({}, "missing input(s) ['x']"),
        "extra-name": ({"x": X, "nope": X}, "unknown input(s) ['nope']"),
        "wrong-case": ({"X": X}, "unknown input(s) ['X']"),
        "python-list": ({"x": [[1, 2, 3]]}, "has dtype int64"),
        "string-value": ({"x": "abc"}, "has dtype <U3"),
    }
    for name, (given, match) in wrong.items():
        yield Case(cat, name, _feeding(lambda g=given: g), FeedError, match)
    for name, given in {"list": [("x", X)], "none": None, "array": X, "string": "x"}.items():
        yield Case(cat, f"not-a-mapping-{name}", _feeding(lambda g=given: g), FeedError, "feeds must be a mapping")
    yield Case(cat, "unknown-output", _feeding(lambda: {"x": X}, outputs=["nope"]), FeedError, "unknown output name")
    for name, value in {"nan": np.nan, "nan-among-values": [1.0, np.nan, 2.0]}.items():
        yield Case(cat, name, _feeding(lambda v=value: {"x": np.broadcast_to(np.float32(v), (1, 3)).copy()}, q_model),
                   NonFiniteError, "QuantizeLinear 'q'")
    yield Case(cat, "inf-saturates", _feeding(lambda: {"x": np.full((1, 3), np.inf, np.float32)}, q_model), None,
               choice="saturation of every out-of-range value (including inf")
    yield Case(cat, "symbolic-dims-any-size", _feeding(lambda: {"x": np.zeros((5, 3), np.float32)}, relu_model), None,
               choice="Symbolic dimensions accept any size")


# -- the command line -----------------------------------------------------------------------------------------


def _cli(argv_of: Callable[[Place], list[str]]):
    return lambda place: Cli([str(a) for a in argv_of(place)])


def _hostile_paths(place: Place) -> dict[str, str]:
    """Model paths that are no model file."""
    return {
        "missing": str(place.model / "missing.onnx"),
        "folder": place.folder("folder.onnx"),
        "fifo": place.fifo("fifo.onnx"),
        "device": "/dev/zero",
        "nul": str(place.model / "m\0.onnx"),
        "empty-name": "",
        "garbage": place.file("garbage.onnx", b"garbage"),
        "truncated": place.file("truncated.onnx", dq_model().SerializeToString()[:40]),
        "symlink-to-secret": place.link("secret.onnx", place.secret),
    }


PATH_NAMES = ["missing", "folder", "fifo", "device", "nul", "empty-name", "garbage", "truncated", "symlink-to-secret"]


def _arrays(place: Place) -> dict[str, str]:
    """--input files that are no one .npy array of the right kind."""
    np.save(place.model / "float64.npy", np.zeros((1, 3)))
    np.save(place.model / "good.npy", X)
    np.savez(place.model / "arrays.npz", x=X)
    np.save(place.model / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    header = b"\x93NUMPY\x01\x00" + (2**16 - 1).to_bytes(2, "little") + b"{" * (2**16 - 1)
    return {
        "missing": str(place.model / "missing.npy"),
        "fifo": place.fifo("fifo.npy"),
        "folder": place.folder("folder.npy"),
        "device": "/dev/zero",
        "npz": str(place.model / "arrays.npz"),
        "pickled": str(place.model / "pickled.npy"),
        "garbage": place.file("garbage.npy", b"\x93NUMPY garbage"),
        "huge-header": place.file("huge.npy", header),
        "wrong-dtype": str(place.model / "float64.npy"),
        "symlink-to-secret": place.link("secret.npy", place.secret),
        "good": str(place.model / "good.npy"),
    }


ARRAY_NAMES = ["missing", "fifo", "folder", "device", "npz", "pickled", "garbage", "huge-header", "wrong-dtype",
               "symlink-to-secret"]


def _existing_file(place: Place) -> str:
    return place.file("existing.txt", b"keep me")


#: bad output places: name -> (path in ``place``, what the error says)
def _outputs(place: Place) -> dict[str, str]:
    existing = _existing_file(place)
    return {"existing-file": existing, "under-a-file": f"{existing}/sub/x", "existing-folder": place.folder("a-folder")}


def _flag_cases(command: str, base: Callable[[Place], list], bad: dict[str, list], category: str = "cli"):
    """One case per (flag, bad value): ``base(place)`` followed by ``flag=value`` (one word, so that argparse
    takes a value such as ``-inf`` as the flag's, not as an option)."""
    for flag, values in bad.items():
        for value in values:
            name = value if isinstance(value, str) else value.__name__
            argv = (lambda place, f=flag, v=value: [*base(place), f"{f}={v(place) if callable(v) else v}"])
            yield Case(category, f"{command} {flag}={name}"[:80], _cli(argv), match=flag if flag in NAMED_FLAGS else "")


#: the flags whose every refusal names the flag (spec/model.md "Command line")
NAMED_FLAGS = {"--seed", "--per-op", "--examples", "--repeat", "--dim", "--time-limit", "--save", "--save-failures",
               "--out", "--json", "--plot", "--format", "--max-memory", "--max-work"}


def _named(name: str, value: Callable[[Place], str]) -> Callable[[Place], str]:
    value.__name__ = name
    return value


def _out_file(kind: str):
    def value(place: Place) -> str:
        return _outputs(place)[kind]

    value.__name__ = kind
    return value


def _array_value(kind: str, name: str = "x"):
    def value(place: Place) -> str:
        return f"{name}={_arrays(place)[kind]}"

    value.__name__ = f"{name}={kind}"
    return value


BAD_SEEDS = ["-1", str(2**64), str(-(2**70))]
BAD_SIZES = ["abc", "-1", "0", "1.5.5G", "nan", "inf", "0.5", "", "12 parsecs"]
BAD_COUNTS = ["abc", "-5", "0", "inf", "nan", "1.5", "-1e3"]
BAD_DIMS = ["n=abc", "n=-5", "n=", "=3", "n", "n=1.5", "N=99999999999", "N=1e3"]
BAD_TIMES = ["0", "-1", "nan", "inf", "-inf"]


def _limit_flags() -> dict[str, list]:
    return {"--max-memory": BAD_SIZES, "--max-work": BAD_COUNTS}


def _calibration_data(place: Place) -> dict[str, str]:
    """--data values that are no calibration data."""
    data = place.model / "data"
    place.folder("data/empty")
    place.fifo("data/fifo-batches/0.npz")
    np.savez(data / "pickled.npz", x=np.array([{"a": 1}], dtype=object))
    place.file("data/corrupt.npz", b"PK\x03\x04" + b"\0" * 40)
    np.savez(data / "unequal.npz", x=np.zeros((2, 1, 3), np.float32), w=np.zeros((3, 1, 3), np.float32))
    np.savez(data / "nan.npz", x=np.full((2, 1, 3), np.nan, np.float32))
    np.savez(data / "inf.npz", x=np.full((2, 1, 3), np.inf, np.float32))
    np.savez(data / "scalar.npz", x=np.float32(1))
    place.folder("data/mixed")
    np.save(data / "mixed" / "a.npy", np.zeros((1, 3), np.float32))
    np.savez(data / "mixed" / "b.npz", x=np.zeros((1, 3), np.float32))
    return {
        "missing": str(data / "missing"), "fifo": place.fifo("data/fifo.npz"), "empty-folder": str(data / "empty"),
        "fifo-in-folder": str(data / "fifo-batches"), "pickled": str(data / "pickled.npz"),
        "corrupt": str(data / "corrupt.npz"), "unequal-batches": str(data / "unequal.npz"),
        "nan": str(data / "nan.npz"), "inf": str(data / "inf.npz"), "scalar": str(data / "scalar.npz"),
        "mixed-kinds": str(data / "mixed"), "a-text-file": place.file("data/notes.txt", b"hello"),
        "symlink-to-secret": place.link("data/secret.npz", place.secret),
    }


DATA_NAMES = ["missing", "fifo", "empty-folder", "fifo-in-folder", "pickled", "corrupt", "unequal-batches", "nan",
              "inf", "scalar", "mixed-kinds", "a-text-file", "symlink-to-secret"]


def _data_value(kind: str):
    def value(place: Place) -> str:
        return _calibration_data(place)[kind]

    value.__name__ = kind
    return value


def _good_data(place: Place) -> str:
    np.savez(place.model / "good.npz", x=np.random.default_rng(0).standard_normal((2, 1, 3)).astype(np.float32))
    return str(place.model / "good.npz")


def cli_cases() -> Iterator[Case]:
    """Every command with bad values: model paths, every checked flag x bad values, output places."""
    run_base = lambda p: ["run", p.save(dq_model())]  # noqa: E731
    relu_run = lambda p: ["run", p.save(relu_model())]  # noqa: E731
    for kind in PATH_NAMES:
        for command in ("run", "compare"):
            extra = ["--backends", "reference"] if command == "compare" else []
            yield Case("cli", f"{command}-model-{kind}",
                       _cli(lambda p, c=command, k=kind, e=extra: [c, _hostile_paths(p)[k], *e]))
    yield from _flag_cases("run", relu_run, {"--dim": BAD_DIMS})
    yield from _flag_cases("run", run_base, {
        "--seed": BAD_SEEDS,
        "--input": [_array_value(kind) for kind in ARRAY_NAMES] + ["x", "=a.npy", _array_value("good", "nope")],
        "--save": [_out_file("existing-file"), _out_file("under-a-file")],
        "--profile": ["nope", ""],
        **_limit_flags(),
    })
    compare_base = lambda p: ["compare", p.save(dq_model()), "--backends", "reference"]  # noqa: E731
    yield from _flag_cases("compare", compare_base, {
        "--seed": BAD_SEEDS[:1], "--input": [_array_value("fifo"), _array_value("pickled")],
        "--json": [_out_file("existing-folder"), _out_file("under-a-file")],
        "--backends": ["nope", "reference,nope"], "--dim": BAD_DIMS[:2], **_limit_flags(),
    })
    yield Case("cli", "compare--save-without--all-tensors",
               _cli(lambda p: [*compare_base(p), "--save", str(p.out / "r")]), match="--all-tensors")
    yield from _flag_cases("check", lambda p: ["check", "--backends", "reference"], {
        "--per-op": ["-1", "10001", str(10**9)], "--seed": BAD_SEEDS,
        "--json": [_out_file("existing-folder"), _out_file("under-a-file")],
        "--save-failures": [_out_file("existing-file"), _out_file("under-a-file")],
        "--time-limit": BAD_TIMES,
    })
    yield from _flag_cases("check", lambda p: ["check"], {"--backends": ["nope", "reference,nope"]})
    yield from _flag_cases("fuzz", lambda p: ["fuzz", "--backends", "reference", "--out", str(p.out / "r")], {
        "--examples": ["0", "-1", "100001", str(10**9)], "--seed": BAD_SEEDS[:2],
        "--ops": ["nope", "QLinearConv,nope"], "--time-limit": BAD_TIMES[:3],
    })
    yield from _flag_cases("fuzz", lambda p: ["fuzz", "--backends", "reference"], {
        "--out": [_out_file("existing-file"), _out_file("under-a-file")], "--backends": ["nope"],
    })
    yield from _flag_cases("bench", lambda p: ["bench", "--quick", "--backends", "reference"], {
        "--repeat": ["-1", "0", "10001", str(10**9)], "--ops": ["nope"],
        "--models": [_named(k, lambda p, k=k: _hostile_paths(p)[k]) for k in PATH_NAMES[:4]] + ["a.onnx,,b.onnx"],
        "--json": [_out_file("existing-folder")], "--plot": [_out_file("under-a-file")],
        **{flag: values[:3] for flag, values in _limit_flags().items()},
    })
    yield from _flag_cases("bench", lambda p: ["bench", "--quick"], {"--backends": ["nope"]})
    calibrate_base = lambda p: ["calibrate", p.save(relu_model()), "--data", _good_data(p), "--out",  # noqa: E731
                                str(p.out / "tables"), "--runner", "refquant", "--quiet"]
    for kind in PATH_NAMES:
        yield Case("cli", f"calibrate-model-{kind}", _cli(lambda p, k=kind: [
            "calibrate", _hostile_paths(p)[k], "--data", _good_data(p), "--out", str(p.out / "t"), "--quiet"]))
    yield from _flag_cases("calibrate", lambda p: ["calibrate", p.save(relu_model()), "--out", str(p.out / "t"),
                                                   "--runner", "refquant", "--quiet"],
                           {"--data": [_data_value(kind) for kind in DATA_NAMES]})
    yield from _flag_cases("calibrate", calibrate_base, {
        "--out": [_out_file("existing-file"), _out_file("under-a-file")], "--format": ["nope", "json,nope"],
        "--plot": [_named("with-minmax", lambda p: str(p.out / "plots"))], "--profile": ["nope"], **_limit_flags(),
    })
    method_options = {
        "entropy": {"--num-bins": ["-1", "0"], "--num-quantized-bins": ["-3"]},
        "percentile": {"--percentile": ["101", "-1", "nan"], "--num-bins": ["0"]},
        "minmax": {"--averaging-constant": ["2", "nan", "-0.5"]},
    }
    for method, bad in method_options.items():
        extra = ["--moving-average"] if method == "minmax" else []
        yield from _flag_cases(f"calibrate-{method}", lambda p, m=method, e=extra: [*calibrate_base(p), "--method", m, *e],
                               bad)
    yield Case("cli", "calibrate--runner-onnxruntime--profile",
               _cli(lambda p: [*calibrate_base(p)[:-3], "--runner", "onnxruntime", "--profile", "spec", "--quiet"]),
               match="--profile")
    debug_base = lambda p: ["debug", p.save(relu_model(), "f.onnx"), p.save(relu_model(), "q.onnx"),  # noqa: E731
                            "--data", _good_data(p)]
    for kind in PATH_NAMES[:5]:
        yield Case("cli", f"debug-float-model-{kind}", _cli(lambda p, k=kind: [
            "debug", _hostile_paths(p)[k], p.save(relu_model(), "q.onnx"), "--data", _good_data(p)]))
        yield Case("cli", f"debug-quant-model-{kind}", _cli(lambda p, k=kind: [
            "debug", p.save(relu_model(), "f.onnx"), _hostile_paths(p)[k], "--data", _good_data(p)]))
    yield from _flag_cases("debug", lambda p: debug_base(p)[:3], {"--data": [_data_value(k) for k in DATA_NAMES[:6]]})
    yield from _flag_cases("debug", debug_base, {
        "--json": [_out_file("existing-folder"), _out_file("under-a-file")], "--plot": [_out_file("under-a-file")],
        "--profile": ["nope"], **{flag: values[:2] for flag, values in _limit_flags().items()},
    })
    for kind in ("missing", "a-file", "empty-folder"):
        yield Case("cli", f"replay-directory-{kind}", _cli(lambda p, k=kind: ["replay", {
            "missing": str(p.model / "nope"), "a-file": _existing_file(p), "empty-folder": p.folder("empty")}[k]]))
    for flag in ("--max-memory", "--max-work"):
        yield Case("cli", f"run {flag}=1e400-is-a-limit", _cli(lambda p, f=flag: [*run_base(p), f"{f}=1e400"]), None,
                   choice="A limit larger than any machine")
    yield Case("cli", "ops-writes-nothing", _cli(lambda p: ["ops"]), None, choice="`refquant ops` lists them")


# -- calibration tables ---------------------------------------------------------------------------------------


def _json_table(**changes) -> str:
    """An onnxruntime calibration.json for one tensor 't' with lowest -1, highest 1, fields replaced by ``changes``
    (a value None removes the field)."""
    entry = {"lowest": {"data": [-1.0], "dtype": "float32", "CLS": "numpy.array"},
             "highest": {"data": [1.0], "dtype": "float32", "CLS": "numpy.array"}, "CLS": "TensorData"}
    document = {"CLS": "TensorsData", "data": {"t": entry},
                "calibration_method": {"CLS": "CalibrationMethod", "value": "CalibrationMethod.MinMax"}}
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = document
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(key)
        else:
            target[key] = value
    return json.dumps(document)


def _array_field(data, dtype="float32"):
    return {"data": data, "dtype": dtype, "CLS": "numpy.array"}


JSON_TABLES = {
    "lowest-abc": _json_table(data__t__lowest="abc"),
    "lowest-true": _json_table(data__t__lowest=True),
    "lowest-nan": _json_table(data__t__lowest=_array_field([float("nan")])),
    "highest-inf": _json_table(data__t__highest=_array_field([float("inf")])),
    "low-above-high": _json_table(data__t__lowest=_array_field([2.0])),
    "shapes-differ": _json_table(data__t__lowest=_array_field([-1.0, -2.0])),
    "object-dtype": _json_table(data__t__lowest=_array_field([-1.0], "object")),
    "string-dtype": _json_table(data__t__lowest=_array_field(["a"], "<U1")),
    "unconvertible-data": _json_table(data__t__lowest=_array_field(["x"])),
    "unknown-dtype": _json_table(data__t__lowest=_array_field([-1.0], "float1024")),
    "unknown-method": _json_table(calibration_method__value="CalibrationMethod.Guess"),
    "no-lowest": _json_table(data__t__lowest=None),
    "no-data": _json_table(data=None),
    "data-a-string": _json_table(data="t"),
    "entry-a-list": _json_table(data__t=[1, 2]),
    "top-level-list": "[1, 2, 3]",
    "top-level-string": '"table"',
    "empty": "",
    "truncated": _json_table()[:40],
    "deep-nesting": "[" * 200_000,
    "invalid-utf8": "\udcff",
    "negative-histogram": _json_table(calibration_method__value="CalibrationMethod.Entropy",
                                      data__t__hist=_array_field([1, -1], "int64"),
                                      data__t__bins=_array_field([0.0, 1.0, 2.0])),
}

TEXT_TABLES = {
    "abc": "t abc\n", "nan": "t nan\n", "inf": "t inf\n", "negative": "t -1\n", "float32-overflow": "t 1e39\n",
    "no-value": "t\n", "twice": "t 1\nt 2\n", "invalid-utf8": "t \udcff\n",
}

TENSORRT_TABLES = {
    "not-hex": "t: zzzz", "nan-bits": "t: 7fc00000", "inf-bits": "t: 7f800000", "negative-bits": "t: bf800000",
    "twice": "t: 3c010204\nt: 3c010204", "no-colon": "t 3c010204", "too-long": "t: 3c01020400",
}


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _table(name: str, data_of: Callable[[Place], str] | bytes | str):
    from refquant.calibration.tables import read_table

    def prepare(place: Place) -> Api:
        path = data_of(place) if callable(data_of) else place.file(name, _encoded(data_of) if isinstance(data_of, str)
                                                                      else data_of)
        return Api(lambda: read_table(path))

    return prepare


def tables() -> Iterator[Case]:
    """read_table on hostile calibration tables (spec/tables.md "Reading tables: what is refused")."""
    from refquant.calibration.tables import flatbuffers_table

    cat = "tables"
    for name, text in JSON_TABLES.items():
        yield Case(cat, f"json-{name}", _table("calibration.json", text), CalibrationError, "calibration.json")
    for name, text in TEXT_TABLES.items():
        yield Case(cat, f"cache-{name}", _table("calibration.cache", text), CalibrationError, "calibration.cache")
    for name, text in TENSORRT_TABLES.items():
        yield Case(cat, f"tensorrt-{name}", _table("trt.cache", f"TRT-8601-EntropyCalibration2\n{text}\n"),
                   CalibrationError, "trt.cache")
    for name, value in {"abc": "abc", "empty": "", "nan": "nan", "negative": "-1", "inf": "inf"}.items():
        yield Case(cat, f"flatbuffers-value-{name}", _table("calibration.flatbuffers", flatbuffers_table({"t": value})),
                   CalibrationError, "tensor 't'")
    good = flatbuffers_table({"conv1": "0.5", "x": "3.25"})
    last_nul = good.rindex(b"conv1\0") + len("conv1")
    for length in range(0, last_nul + 1, 6):
        yield Case(cat, f"flatbuffers-truncated-at-{length}", _table("calibration.flatbuffers", good[:length]),
                   CalibrationError, "is not a valid calibration.flatbuffers")
    for suffix in ("json", "flatbuffers", "cache"):
        name = f"calibration.{suffix}"
        files = {
            "fifo": lambda p, n=name: p.fifo(n), "folder": lambda p, n=name: p.folder(n),
            "device": lambda p, n=name: p.link(n, "/dev/zero"), "missing": lambda p, n=name: str(p.model / n),
            "huge": lambda p, n=name: p.sparse(n, 3 * 2**30),
        }
        for kind, make in files.items():
            yield Case(cat, f"{suffix}-{kind}", _table(name, make), CalibrationError, name)


# -- reproducer directories -----------------------------------------------------------------------------------


def _reproducer(place: Place) -> Path:
    """A minimal valid reproducer: model.onnx, inputs.npz, report.json (replay runs it on 'reference')."""
    from refquant.backends.conformance import save_arrays

    directory = place.model / "repro"
    directory.mkdir()
    (directory / "model.onnx").write_bytes(dq_model().SerializeToString())
    save_arrays(directory / "inputs.npz", {"x": X})
    (directory / "report.json").write_text('{"backends": ["reference"]}')
    return directory


def _replace(name: str, how: Callable[[Place, Path], None]):
    """Replace the reproducer's file ``name`` with ``how(place, path)``."""

    def mutate(place: Place, directory: Path) -> None:
        path = directory / name
        path.unlink()
        how(place, path)

    return mutate


def _bytes_of(data: bytes):
    return lambda place, path: path.write_bytes(data)


def _npz_of(**arrays):
    return lambda place, path: np.savez(path, **arrays)


def _outside_copy(name: str):
    """A symlink to a file outside the reproducer (and the model folder), holding the secret."""

    def how(place: Place, path: Path) -> None:
        outside = place.root / f"outside-{name}"
        outside.write_bytes(SECRET)
        path.symlink_to(outside)

    return how


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as .npy bytes under ``path``, whatever its suffix (np.save would add .npy)."""
    with open(path, "wb") as handle:
        np.save(handle, array)


def _external_model(place: Place, path: Path) -> None:
    model = dq_model()
    _external(model.graph.initializer[0], "../../secret.txt")
    path.write_bytes(model.SerializeToString())


REPRODUCER_MUTATIONS: dict[str, Callable[[Place, Path], None]] = {
    **{f"missing-{n}": (lambda n: lambda place, d: (d / n).unlink())(n) for n in ("model.onnx", "inputs.npz", "report.json")},
    **{f"report-{k}": _replace("report.json", _bytes_of(v)) for k, v in {
        "invalid-utf8": b"\xff\xfe{}", "deep-nesting": b"[" * 200_000, "truncated": b'{"backends": ["ref',
        "empty": b"", "list": b"[]", "no-backends": b"{}", "backends-a-string": b'{"backends": "reference"}',
        "backends-empty": b'{"backends": []}', "backends-numbers": b'{"backends": [1, 2]}',
        "backends-null": b'{"backends": null}', "backends-unknown": b'{"backends": ["nope"]}',
        "backends-nested": b'{"backends": [["reference"]]}', "a-string": b'"reference"'}.items()},
    **{f"{n}-symlink-out": _replace(n, _outside_copy(n)) for n in ("model.onnx", "inputs.npz", "report.json")},
    **{f"{n}-fifo": _replace(n, lambda place, path: os.mkfifo(path)) for n in ("model.onnx", "inputs.npz", "report.json")},
    **{f"{n}-folder": _replace(n, lambda place, path: path.mkdir()) for n in ("model.onnx", "inputs.npz", "report.json")},
    "inputs-pickled": _replace("inputs.npz", _npz_of(x=np.array([{"a": 1}], dtype=object), __dtypes__=np.array("{}"))),
    "inputs-dtypes-not-ml_dtypes": _replace("inputs.npz", _npz_of(x=X, __dtypes__=np.array('{"x": "float32"}'))),
    "inputs-dtypes-unknown": _replace("inputs.npz", _npz_of(x=X, __dtypes__=np.array('{"x": "finfo"}'))),
    "inputs-dtypes-invalid-json": _replace("inputs.npz", _npz_of(x=X, __dtypes__=np.array("{"))),
    "inputs-dtypes-a-list": _replace("inputs.npz", _npz_of(x=X, __dtypes__=np.array("[1]"))),
    "inputs-corrupt-zip": _replace("inputs.npz", _bytes_of(b"PK\x03\x04" + b"\0" * 60)),
    "inputs-an-npy": _replace("inputs.npz", lambda place, path: _save_npy(path, X)),
    "model-garbage": _replace("model.onnx", _bytes_of(b"garbage")),
    "model-truncated": _replace("model.onnx", _bytes_of(dq_model().SerializeToString()[:30])),
    "model-external-data-outside": _replace("model.onnx", _external_model),
}


def _replay(mutation: str, *extra: str):
    def prepare(place: Place) -> Cli:
        directory = _reproducer(place)
        REPRODUCER_MUTATIONS[mutation](place, directory)
        return Cli(["replay", str(directory), *extra])

    return prepare


def reproducers() -> Iterator[Case]:
    """``refquant replay DIR`` on damaged reproducer directories."""
    for name in REPRODUCER_MUTATIONS:
        yield Case("reproducers", name, _replay(name))
    yield Case("reproducers", "valid-reproducer-replays", lambda place: Cli(["replay", str(_reproducer(place))]), None,
               choice="`replay DIR` reads `model.onnx`, `inputs.npz` and `report.json` only inside `DIR`")


# -- all of them ----------------------------------------------------------------------------------------------

GENERATORS = {
    "malformed": malformed, "bombs": bombs, "external-data": external_data, "feeds": feeds, "cli": cli_cases,
    "tables": tables, "reproducers": reproducers,
}
CASES: list[Case] = [case for generate in GENERATORS.values() for case in generate()]
CATEGORIES = sorted({case.category for case in CASES})
