"""com.microsoft FusedMatMul (as onnxruntime's contrib documentation defines it).

    FusedMatMul: Y = alpha * A' @ B'     numpy.matmul shapes (batch dimensions broadcast)
                 A' = A with, for transBatchA, axis 0 moved to position rank - 2, then, for transA,
                      the last two axes swapped (B' alike)

Floats: products and sums in float64, times alpha in float64, one rounding to T (the MatMul rule of
spec/ops/float.md); spec/ops/contrib.md.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..broadcast import broadcast_shapes
from ..checks import flag, require_dtype, require_input, require_same_type
from ..errors import ShapeError
from ..node import Node
from ..registry import MS_DOMAIN, register

FUSED_MATMUL_TYPES = (T.FLOAT16, T.FLOAT, T.DOUBLE, T.BFLOAT16)


def fused_operand(x: np.ndarray, trans_batch: bool, trans: bool, what: str) -> np.ndarray:
    """The operand as FusedMatMul multiplies it (a view)."""
    if x.ndim == 0:
        raise ShapeError(f"{what} must have rank >= 1, got a scalar")
    if x.ndim == 1:
        if trans or trans_batch:
            raise ShapeError(f"{what} is 1-D: transA/transB/transBatchA/transBatchB need rank >= 2")
        return x
    if trans_batch:
        x = np.moveaxis(x, 0, x.ndim - 2)
    if trans:
        x = np.swapaxes(x, -1, -2)
    return x


@register("FusedMatMul", since=(1,), domain=MS_DOMAIN)
def fused_matmul(node: Node, a, b=None):
    require_input(b, "B")
    require_dtype(a, FUSED_MATMUL_TYPES, "A")
    require_same_type(b, a, "B", "A")
    a2 = fused_operand(a, flag(node, "transBatchA"), flag(node, "transA"), "A")
    b2 = fused_operand(b, flag(node, "transBatchB"), flag(node, "transB"), "B")
    inner_a = a2.shape[-1]
    inner_b = b2.shape[0] if b2.ndim == 1 else b2.shape[-2]
    if inner_a != inner_b:
        raise ShapeError(f"A' has shape {a2.shape} and B' {b2.shape}: inner dimensions {inner_a} and {inner_b} differ")
    if a2.ndim > 2 or b2.ndim > 2:
        broadcast_shapes({"A' batch": a2.shape[:-2], "B' batch": b2.shape[:-2]})
    alpha = float(np.float32(node.attr("alpha", 1.0, float)))
    y = alpha * np.matmul(a2.astype(np.float64), b2.astype(np.float64))
    return (arith.narrow(y, a.dtype),)
