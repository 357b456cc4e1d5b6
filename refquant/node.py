"""The view of one graph node that a kernel receives."""

from __future__ import annotations

import warnings
from typing import Any

from onnx import AttributeProto, NodeProto, defs, helper, numpy_helper

from .errors import AttributeValueError, RefquantWarning
from .registry import DEFAULT_DOMAIN, Kernel, canonical_domain

__all__ = ["Node", "check_attributes", "FLAG_ATTRIBUTES", "MS_ATTRIBUTES"]

#: Attributes that are 0/1 flags in every op refquant registers that has them (spec/model.md "Refused models").
FLAG_ATTRIBUTES = frozenset({
    "allowzero", "antialias", "ceil_mode", "channels_last", "count_include_pad", "exclude_outside", "exclusive",
    "keepdims", "largest", "noop_with_empty_axes", "reverse", "saturate", "select_last_index", "sorted",
    "storage_order", "training_mode", "transA", "transB",
})

_I, _F, _S, _INTS = AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.STRING, AttributeProto.INTS
_POOL = {"auto_pad": _S, "ceil_mode": _I, "kernel_shape": _INTS, "pads": _INTS, "strides": _INTS}
_ATTENTION = {"do_rotary": _I, "mask_filter_value": _F, "num_heads": _I, "past_present_share_buffer": _I,
              "qkv_hidden_sizes": _INTS, "rotary_embedding_dim": _I, "scale": _F, "unidirectional": _I}
#: {op_type: {attribute: type}} of the com.microsoft ops refquant registers: their schemas live in onnxruntime
#: (contrib_defs), not in onnx.defs; tests/test_model.py compares this table with onnxruntime's when installed.
MS_ATTRIBUTES: dict[str, dict[str, int]] = {
    "DequantizeLinear": {"axis": _I},
    "DynamicQuantizeMatMul": {},
    "DynamicQuantizeLSTM": {"activation_alpha": AttributeProto.FLOATS, "activation_beta": AttributeProto.FLOATS,
                            "activations": AttributeProto.STRINGS, "clip": _F, "direction": _S, "hidden_size": _I,
                            "input_forget": _I},
    "MatMulIntegerToFloat": {},
    "NhwcMaxPool": {**_POOL, "dilations": _INTS},
    "QGemm": {"alpha": _F, "transA": _I, "transB": _I},
    "QLinearAdd": {},
    "QLinearAveragePool": {**_POOL, "channels_last": _I, "count_include_pad": _I},
    "QLinearConcat": {"axis": _I},
    "QLinearConv": {"auto_pad": _S, "channels_last": _I, "dilations": _INTS, "group": _I, "kernel_shape": _INTS,
                    "pads": _INTS, "strides": _INTS},
    "QLinearGlobalAveragePool": {"channels_last": _I},
    "QLinearLeakyRelu": {"alpha": _F},
    "QLinearMul": {},
    "QLinearReduceMean": {"axes": _INTS, "keepdims": _I},
    "QLinearSigmoid": {},
    "QLinearSoftmax": {"axis": _I, "opset": _I},
    "QLinearWhere": {},
    "QuantizeLinear": {"axis": _I},
    # transformer ops (onnxruntime's transformer optimizer and quantize_dynamic)
    "Attention": _ATTENTION,
    "BiasAdd": {},
    "BiasGelu": {},
    "EmbedLayerNormalization": {"epsilon": _F, "mask_index_type": _I},
    "FastGelu": {},
    "FusedConv": {"activation": _S, "activation_params": AttributeProto.FLOATS, "auto_pad": _S, "dilations": _INTS,
                  "group": _I, "kernel_shape": _INTS, "pads": _INTS, "strides": _INTS},
    "FusedMatMul": {"alpha": _F, "transA": _I, "transB": _I, "transBatchA": _I, "transBatchB": _I},
    "Gelu": {},
    "MultiHeadAttention": {"mask_filter_value": _F, "num_heads": _I, "scale": _F, "unidirectional": _I},
    "QEmbedLayerNormalization": {"epsilon": _F},
    "QAttention": {"do_rotary": _I, "mask_filter_value": _F, "num_heads": _I, "past_present_share_buffer": _I,
                   "scale": _F, "unidirectional": _I},
    "QuickGelu": {"alpha": _F},
    "SkipLayerNormalization": {"epsilon": _F},
    "SkipSimplifiedLayerNormalization": {"epsilon": _F},
    # weight-only quantization (onnxruntime's MatMulNBits quantizer)
    "MatMulNBits": {"K": _I, "N": _I, "accuracy_level": _I, "bits": _I, "block_size": _I, "weight_prepacked": _I},
    "GatherBlockQuantized": {"bits": _I, "block_size": _I, "gather_axis": _I, "quantize_axis": _I},
}

_MISSING = object()


def _attribute_value(attr: AttributeProto) -> Any:
    if attr.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type == AttributeProto.TENSORS:
        return [numpy_helper.to_array(t) for t in attr.tensors]
    if attr.type == AttributeProto.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if attr.type == AttributeProto.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if attr.type in (AttributeProto.INTS, AttributeProto.FLOATS):
        return list(helper.get_attribute_value(attr))
    return helper.get_attribute_value(attr)


def _schema_attributes(domain: str, op_type: str, opset: int) -> dict[str, int] | None:
    """{attribute: AttributeProto type} of the op's schema in effect at ``opset``, or None when unknown."""
    if canonical_domain(domain) == DEFAULT_DOMAIN:
        try:
            schema = defs.get_schema(op_type, opset, "")
        except defs.SchemaError:
            return None
        return {name: int(a.type) for name, a in schema.attributes.items()}
    if domain == "com.microsoft":
        return MS_ATTRIBUTES.get(op_type)
    return None


def _type_name(kind: int) -> str:
    return AttributeProto.AttributeType.Name(kind) if kind in AttributeProto.AttributeType.values() else str(kind)


def check_attributes(proto: NodeProto, opset: int, name: str) -> None:
    """Every attribute of the node is one its op's schema (at ``opset``) defines, of the schema's type; a
    0/1 flag (:data:`FLAG_ATTRIBUTES`) is 0 or 1. AttributeValueError naming the node and the attribute."""
    domain = proto.domain or ""
    known = _schema_attributes(domain, proto.op_type, opset)
    if known is None:
        return
    op = f"{domain or 'ai.onnx'}::{proto.op_type}"

    def refuse(message: str):
        return AttributeValueError(message).attach(proto.op_type, name)

    for attr in proto.attribute:
        if attr.name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise refuse(
                f"attribute '{attr.name}' is not defined by {op} at opset {opset} (its attributes: {listed})"
            )
        want = known[attr.name]
        if attr.type != want:
            raise refuse(
                f"attribute '{attr.name}' has type {_type_name(attr.type)}, {op} defines it as {_type_name(want)}"
            )
        if attr.name in FLAG_ATTRIBUTES and want == AttributeProto.INT and attr.i not in (0, 1):
            raise refuse(f"{attr.name} must be 0 or 1, got {attr.i}")


class Node:
    """A node bound to its kernel version and its family's profile options.

    ``version`` is the since_version of the op that the model's opset selects; ``kernel`` the function
    the session calls, ``kernel(node, *inputs) -> outputs`` (the registry's entry for that version);
    ``options`` the session profile's options for the family the kernel registered with (an object of
    :mod:`refquant.kernel_options`, or None): the only profile options a kernel sees.
    """

    __slots__ = ("proto", "op_type", "name", "domain", "version", "options", "kernel", "_attrs", "cache")

    def __init__(
        self, proto: NodeProto, version: int, name: str, *, kernel: Kernel | None = None, options: Any = None
    ):
        self.proto = proto
        self.op_type = proto.op_type
        self.name = name
        self.domain = proto.domain
        self.version = version
        self.options = options
        self.kernel = kernel
        self._attrs = {a.name: a for a in proto.attribute}
        #: per-session storage for kernels that prepare constant inputs once (only theirs)
        self.cache: dict = {}

    def __repr__(self) -> str:
        return f"<Node {self.op_type} '{self.name}' v{self.version}>"

    def has(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = _MISSING, kind: type | None = None) -> Any:
        """The attribute's value (tensors as arrays, strings as str), or ``default``.

        ``kind`` (int, float, str, list, np.ndarray) checks the value's type.
        """
        proto = self._attrs.get(name)
        if proto is None:
            if default is _MISSING:
                raise AttributeValueError(f"required attribute '{name}' is missing")
            return default
        value = _attribute_value(proto)
        if kind is float and isinstance(value, int):
            value = float(value)
        if kind is not None and not isinstance(value, kind):
            raise AttributeValueError(
                f"attribute '{name}' must be {kind.__name__}, got {type(value).__name__} {value!r}"
            )
        return value

    def attr_ints(self, name: str, default: Any = _MISSING) -> list[int] | Any:
        value = self.attr(name, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise AttributeValueError(f"attribute '{name}' must be a list of ints, got {value!r}")
        return value

    def subgraph(self, name: str):
        """The graph attribute ``name`` bound by the session (refquant.session.Subgraph): ``subgraph(inputs)``
        runs it and returns its outputs, outer-scope names read from the graph this node is in."""
        found = self.cache.get("subgraphs", {}).get(name)
        if found is None:
            raise AttributeValueError(f"required graph attribute '{name}' is missing")
        return found

    def warn(self, message: str, category: type[Warning] = RefquantWarning) -> None:
        """Emit a warning that names this node."""
        warnings.warn(f"{self.op_type} '{self.name}': {message}", category, stacklevel=3)
