"""The view of one graph node that a kernel receives."""

from __future__ import annotations

import warnings
from typing import Any

from onnx import AttributeProto, NodeProto, helper, numpy_helper

from .errors import AttributeValueError, RefquantWarning
from .profiles import Profile

__all__ = ["Node"]

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


class Node:
    """A node bound to its kernel version and the session's profile.

    ``version`` is the since_version of the op that the model's opset selects.
    """

    __slots__ = ("proto", "op_type", "name", "domain", "version", "profile", "_attrs", "cache")

    def __init__(self, proto: NodeProto, version: int, profile: Profile, name: str):
        self.proto = proto
        self.op_type = proto.op_type
        self.name = name
        self.domain = proto.domain
        self.version = version
        self.profile = profile
        self._attrs = {a.name: a for a in proto.attribute}
        #: per-session storage for kernels that prepare constant inputs once
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

    def warn(self, message: str, category: type[Warning] = RefquantWarning) -> None:
        """Emit a warning that names this node."""
        warnings.warn(f"{self.op_type} '{self.name}': {message}", category, stacklevel=3)
