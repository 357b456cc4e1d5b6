"""Checks of a kernel's inputs and attributes: element types, required inputs, axes, 0/1 flags, constness.

Each check raises the error class the spec names for it (refquant.errors): DTypeError,
ShapeError, AttributeValueError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .dtypes import dtype_name, np_dtype, type_name, types_at
from .errors import AttributeValueError, DTypeError, ShapeError

__all__ = [
    "require_dtype",
    "require_same_type",
    "require_types",
    "is_integer",
    "require_input",
    "normalize_axis",
    "flag",
    "frozen",
]


def require_dtype(array: np.ndarray, allowed: Iterable[int], what: str) -> None:
    """DTypeError unless ``array``'s element type is one of ``allowed`` (TensorProto enums)."""
    allowed = set(allowed)
    if any(array.dtype == np_dtype(t) for t in allowed):
        return
    names = ", ".join(sorted(type_name(t) for t in allowed))
    raise DTypeError(f"{what} has type {dtype_name(array.dtype)}; allowed at this opset: {names}")


def require_same_type(value: np.ndarray | None, like: np.ndarray, what: str, like_what: str = "X") -> None:
    """DTypeError unless ``value`` (when given) has ``like``'s element type (ONNX's one T for both)."""
    if value is not None and value.dtype != like.dtype:
        raise DTypeError(f"{what} has type {dtype_name(value.dtype)}, it must match {like_what} ({dtype_name(like.dtype)})")


def require_types(node, table, named: Mapping[str, np.ndarray]) -> None:
    """Each named input has a type ``table`` allows at this version, and all share it (ONNX's one T)."""
    allowed = types_at(table, node.version)
    for name, array in named.items():
        require_dtype(array, allowed, name)
    if len({array.dtype for array in named.values()}) > 1:
        listing = ", ".join(f"{name} is {dtype_name(array.dtype)}" for name, array in named.items())
        raise DTypeError(f"inputs must share one element type: {listing}")


def is_integer(array: np.ndarray) -> bool:
    """Whether ``array`` holds a numpy integer type (int8 ... uint64; not the ml_dtypes 4- and 2-bit types)."""
    return array.dtype.kind in "iu"


def require_input(value, what: str) -> np.ndarray:
    if value is None:
        raise ShapeError(f"required input '{what}' is missing")
    return value


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise AttributeValueError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def flag(node, name: str) -> bool:
    """A 0/1 attribute (default 0) as a bool; AttributeValueError for anything else."""
    value = node.attr(name, 0, int)
    if value not in (0, 1):
        raise AttributeValueError(f"{name} must be 0 or 1, got {value}")
    return bool(value)


def frozen(array: np.ndarray | None) -> bool:
    """Whether nothing writes ``array`` without first setting WRITEABLE back: read-only down to data it owns
    or to immutable bytes. The Session's constants (initializers, Constant outputs) are; a fed array may
    change between runs."""
    while isinstance(array, np.ndarray):
        if array.flags.writeable:
            return False
        array = array.base
    return array is None or isinstance(array, bytes)
