"""Checks shared by the kernels: dtypes by version, required inputs, axes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..dtypes import np_dtype, type_name, proto_of
from ..errors import AttributeValueError, DTypeError, ShapeError

__all__ = ["types_at", "require_dtype", "require_input", "normalize_axis", "dtype_name", "float_mlas", "frozen", "flag"]


def types_at(table: Mapping[int, Iterable[int]], version: int) -> frozenset[int]:
    """Union of the element types a table adds at each since_version <= ``version``."""
    return frozenset(t for since, types in table.items() if since <= version for t in types)


def dtype_name(dtype) -> str:
    try:
        return type_name(proto_of(dtype))
    except KeyError:
        return str(dtype)


def require_dtype(array: np.ndarray, allowed: Iterable[int], what: str) -> None:
    """DTypeError unless ``array``'s element type is one of ``allowed`` (TensorProto enums)."""
    allowed = set(allowed)
    if any(array.dtype == np_dtype(t) for t in allowed):
        return
    names = ", ".join(sorted(type_name(t) for t in allowed))
    raise DTypeError(f"{what} has type {dtype_name(array.dtype)}; allowed at this opset: {names}")


def require_input(value, what: str) -> np.ndarray:
    if value is None:
        raise ShapeError(f"required input '{what}' is missing")
    return value


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise AttributeValueError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def float_mlas(node, x: np.ndarray) -> bool:
    """True when float32 ``x`` takes onnxruntime's MLAS order (profile float_pipeline="mlas-float32", refquant.mlas)."""
    return x.dtype == np.float32 and node.profile.float_pipeline == "mlas-float32"


def float_numpy(node, x: np.ndarray) -> bool:
    """True when float32 ``x`` takes numpy's own float32 products, as onnx.reference calls them (profile
    float_pipeline="numpy-float32": the rounding is whatever this machine's numpy and BLAS give)."""
    return x.dtype == np.float32 and node.profile.float_pipeline == "numpy-float32"


def frozen(array: np.ndarray | None) -> bool:
    """Whether nothing writes ``array`` without first setting WRITEABLE back: read-only down to data it owns
    or to immutable bytes. The Session's constants (initializers, Constant outputs) are; a fed array may
    change between runs."""
    while isinstance(array, np.ndarray):
        if array.flags.writeable:
            return False
        array = array.base
    return array is None or isinstance(array, bytes)


def flag(node, name: str) -> bool:
    """A 0/1 attribute (default 0) as a bool; AttributeValueError for anything else."""
    value = node.attr(name, 0, int)
    if value not in (0, 1):
        raise AttributeValueError(f"{name} must be 0 or 1, got {value}")
    return bool(value)
