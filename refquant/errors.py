"""Every error refquant raises is a :class:`RefquantError`.

Errors raised while a node runs are :class:`NodeError` subclasses; the session
attaches the node, so the message reads ``QLinearConv 'conv1': w_scale has 3
values, expected 16 (one per output channel)``.
"""

from __future__ import annotations

__all__ = [
    "RefquantError",
    "ModelError",
    "OpsetError",
    "ExternalDataError",
    "UnsupportedOpError",
    "FeedError",
    "NodeError",
    "AttributeValueError",
    "DTypeError",
    "ShapeError",
    "QuantParamError",
    "NonFiniteError",
    "AccumulatorOverflowError",
    "KernelFailure",
    "ResourceLimitError",
    "CalibrationError",
    "RefquantWarning",
    "AccumulatorOverflowWarning",
]


class RefquantError(Exception):
    """Base class of every refquant error."""


class ModelError(RefquantError):
    """The model cannot be loaded or is malformed (bytes, graph, initializers)."""


class OpsetError(ModelError):
    """The model imports an opset refquant does not run."""


class ExternalDataError(ModelError):
    """External tensor data is missing, unreadable or outside the model's directory."""


class UnsupportedOpError(ModelError):
    """No kernel is registered for (domain, op_type, version)."""


class FeedError(RefquantError):
    """A feed is missing, unknown, or has the wrong dtype or shape."""


class NodeError(RefquantError):
    """A node cannot be computed from its inputs and attributes.

    Kernels raise it without a node; the session fills in ``op_type`` and
    ``node_name`` before it reaches the user.
    """

    def __init__(self, message: str, *, op_type: str | None = None, node_name: str | None = None):
        super().__init__(message)
        self.message = message
        self.op_type = op_type
        self.node_name = node_name

    def attach(self, op_type: str, node_name: str) -> NodeError:
        if self.op_type is None:
            self.op_type, self.node_name = op_type, node_name
        return self

    def __str__(self) -> str:
        if self.op_type is None:
            return self.message
        return f"{self.op_type} '{self.node_name}': {self.message}"


class AttributeValueError(NodeError):
    """An attribute is missing, of the wrong type or out of range."""


class DTypeError(NodeError):
    """An input has a dtype the operator (at this version) does not accept."""


class ShapeError(NodeError):
    """Input shapes are inconsistent with each other or with the attributes."""


class QuantParamError(NodeError):
    """A scale or zero point is invalid: zero, negative, non-finite, wrong shape or type."""


class NonFiniteError(NodeError):
    """NaN (or infinity) reached an operator whose profile refuses it."""


class AccumulatorOverflowError(NodeError):
    """An exact result does not fit its int32 output and the profile says int32_overflow='error'."""


class KernelFailure(NodeError):
    """An unexpected failure inside a kernel (a refquant bug or an unforeseen input)."""


class ResourceLimitError(NodeError):
    """A node would allocate or compute more than the session's limits allow (refquant.Limits: ``max_memory``
    bytes, ``max_work`` multiply-adds), or ran out of memory. Checked from shapes before the kernel runs.

    ``limit`` names the limit ("max_memory", "max_work", or "memory" when the machine ran out), ``requested``
    what the node needs, ``allowed`` the limit (None when the machine ran out).
    """

    def __init__(self, message: str, *, limit: str, requested: int | None = None, allowed: int | None = None, **kw):
        super().__init__(message, **kw)
        self.limit, self.requested, self.allowed = limit, requested, allowed


class CalibrationError(RefquantError):
    """Calibration cannot proceed: empty data, inconsistent batches, NaN-only tensors, bad options or state."""


class RefquantWarning(UserWarning):
    """Base class of refquant warnings."""


class AccumulatorOverflowWarning(RefquantWarning):
    """An int32 accumulator would overflow; the message names the node and the rule applied."""
