"""ONNX broadcasting rules, checked before any arithmetic.

- multidirectional (numpy) broadcasting: Add, Sub, Mul, Div, Min, Max, the
  batch dimensions of MatMul;
- unidirectional broadcasting: B broadcasts to A's shape and A is unchanged
  (Gemm's C against (M, N)).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import ShapeError

__all__ = ["broadcast_shapes", "check_unidirectional"]


def _show(named: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in named.items())


def broadcast_shapes(named: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The multidirectional broadcast of ``{name: shape}``; ShapeError naming every shape otherwise."""
    try:
        return np.broadcast_shapes(*named.values())
    except ValueError:
        raise ShapeError(f"shapes do not broadcast (multidirectional broadcasting): {_show(named)}") from None


def check_unidirectional(shape: tuple[int, ...], target: tuple[int, ...], what: str) -> None:
    """ShapeError unless ``shape`` broadcasts to ``target`` without changing it."""
    try:
        if np.broadcast_shapes(shape, target) == tuple(target):
            return
    except ValueError:
        pass
    raise ShapeError(
        f"{what} has shape {tuple(shape)}, which does not broadcast to {tuple(target)} (unidirectional broadcasting)"
    )
