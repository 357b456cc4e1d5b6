"""MatMul and Gemm on plain (float or integer) tensors.

    MatMul: Y = A @ B                        (numpy.matmul: 1-D promotion, batch broadcasting)
    Gemm:   Y = alpha * A' @ B' + beta * C   (A' = transpose(A) if transA, same for B;
                                              C broadcasts unidirectionally to (M, N))

Floats: products and sums in float64 BLAS (alpha, beta and C applied there
too), then one rounding to T (``arith.narrow``), as for Conv. Products of
float32/float16/bfloat16 values are exact in float64, so the only error before
the final rounding is float64 summation (relative ~K * 2**-53); results agree
with backends that accumulate in T within T's rounding, not bit for bit.
Integers: the exact product, wrapped to T (two's complement).

spec/ops/float.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith, exact_products, mlas
from ..broadcast import broadcast_shapes, check_unidirectional
from ..checks import frozen, is_integer, require_input, require_types
from ..dtypes import IEEE_FLOATS, WIDE_INTS
from ..errors import AttributeValueError, ShapeError
from ..kernel_options import FloatPipelineOptions
from ..node import Node
from ..registry import register

#: element types by the version that added them (MatMul and Gemm alike)
MATMUL_TYPES = {9: IEEE_FLOATS + WIDE_INTS, 13: (T.BFLOAT16,)}

_WRAP = 2**64


def _integer_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for integer matrices, exact, then wrapped to a's type.

    Bound: every partial sum is at most K * max|a| * max|b| in magnitude; below
    2**63 exact_products.exact_matmul's int64 result is exact. Above, the products go
    through Python integers and are reduced mod 2**64 before the wrap to T.
    """
    if a.shape[-1] * exact_products.max_abs(a) * exact_products.max_abs(b) < 2**63:
        exact = exact_products.exact_matmul(a, b)
    else:
        exact = (np.matmul(a.astype(object), b.astype(object)) % _WRAP).astype(np.uint64)
    return exact.astype(a.dtype)


def _float64_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b of float operands (rank >= 2) in float64, not yet rounded to T."""
    return np.matmul(a.astype(np.float64, copy=False), b.astype(np.float64, copy=False))


def _matrix_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in T (rank >= 2): exact then wrapped for integers, one rounding for floats."""
    if is_integer(a):
        return _integer_matmul(a, b)
    return arith.narrow(_float64_matmul(a, b), a.dtype)


def _mlas_matmul(a: np.ndarray, b: np.ndarray, vector_b: bool, threads: int) -> np.ndarray:
    """refquant.mlas.sgemm as onnxruntime calls it for MatMul (rank >= 2 operands).

    With a 2-D B, A's batch rows form one (rows, K) matrix, and a 2-D constant B (an initializer
    or Constant) is prepacked. With a 1-D B (``vector_b``), the product is taken as b (1, K) times
    A's rows transposed, so every output is an M == 1 dot product.
    """
    if vector_b:
        rows = a.reshape(-1, a.shape[-1])
        return mlas.sgemm(b.T, rows.T, threads).reshape(a.shape[:-1] + (1,))
    packed = b.ndim == 2 and frozen(b)
    if b.ndim == 2 and a.ndim > 2:
        return mlas.sgemm(a.reshape(-1, a.shape[-1]), b, threads, packed=packed).reshape(a.shape[:-1] + b.shape[-1:])
    return mlas.sgemm(a, b, threads, packed=packed)


@register("MatMul", since=(9, 13), options=FloatPipelineOptions)
def matmul(node: Node, a, b):
    require_types(node, MATMUL_TYPES, {"A": a, "B": b})
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"A {a.shape} and B {b.shape} must have rank >= 1")
    # numpy.matmul: a 1-D A gains a leading 1, a 1-D B a trailing 1, removed afterwards.
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ShapeError(f"A {a.shape} and B {b.shape}: inner dimensions {a2.shape[-1]} and {b2.shape[-2]} differ")
    broadcast_shapes({"A's batch": a2.shape[:-2], "B's batch": b2.shape[:-2]})
    options: FloatPipelineOptions = node.options
    if options.replays_numpy_float32(a.dtype):  # onnx.reference: np.matmul(a, b) on the operands as given
        return (np.asarray(np.matmul(a, b)),)
    if options.replays_mlas_float32(a.dtype):  # require_types: A and B share float32
        y = _mlas_matmul(a2, b2, b.ndim == 1, options.threads)
    else:
        y = _matrix_product(a2, b2)
    if a.ndim == 1:
        y = y[..., 0, :]
    if b.ndim == 1:
        y = y[..., 0]
    return (np.asarray(y),)


def _integer_coefficient(value: float, name: str) -> int:
    if not float(value).is_integer():
        raise AttributeValueError(
            f"{name}={value!r} with integer inputs: ONNX does not define how to round it; "
            "refquant accepts only integral values here"
        )
    return int(value)


def _integer_gemm(product: np.ndarray, c, alpha: float, beta: float) -> np.ndarray:
    """alpha * product + beta * C in two's complement: computed mod 2**64, wrapped to T."""
    alpha = _integer_coefficient(alpha, "alpha")
    y = product.astype(np.uint64) * np.uint64(alpha % _WRAP)
    if c is not None:
        y = y + c.astype(np.uint64) * np.uint64(_integer_coefficient(beta, "beta") % _WRAP)
    return y.astype(product.dtype)


def _float_gemm(product: np.ndarray, c, alpha: float, beta: float, dtype: np.dtype) -> np.ndarray:
    """alpha * product + beta * C in float64, then one rounding to T."""
    y = product if alpha == 1 else product * alpha
    if c is not None:
        c = c.astype(np.float64, copy=False)
        y = y + (c if beta == 1 else c * beta)
    return arith.narrow(y, dtype)


def _numpy_gemm(a: np.ndarray, b: np.ndarray, c, alpha: float, beta: float) -> np.ndarray:
    """onnx.reference's float32 Gemm: np.dot(A', B') * alpha, then += C * beta (beta != 0), each in float32."""
    y = np.dot(a, b) * np.float32(alpha)
    if c is not None:
        y += c * np.float32(beta)
    return y


def _mlas_gemm(a, b, c, alpha: float, beta: float, trans_b: bool, threads: int) -> np.ndarray:
    """refquant.mlas.sgemm as onnxruntime's Gemm calls it: Y starts as C broadcast (times beta in
    float32 unless beta is 1), then MLAS accumulates alpha * A @ B' onto it; a B initializer is prepacked."""
    shape = (a.shape[0], b.shape[0] if trans_b else b.shape[1])
    start = None
    if c is not None:
        start = np.broadcast_to(c, shape) if beta == 1 else np.broadcast_to(c, shape) * np.float32(beta)
    return mlas.sgemm(a, b, threads, c=start, alpha=alpha, trans_b=trans_b, packed=frozen(b))


@register("Gemm", since=(9, 11, 13), options=FloatPipelineOptions)
def gemm(node: Node, a, b, c=None):
    if node.version < 11:
        require_input(c, "C")
    require_types(node, MATMUL_TYPES, {"A": a, "B": b} | ({} if c is None else {"C": c}))
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"A {a.shape} and B {b.shape} must be matrices (rank 2)")
    trans_a, trans_b = bool(node.attr("transA", 0, int)), bool(node.attr("transB", 0, int))
    stored_b = b
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    if a.shape[1] != b.shape[0]:
        raise ShapeError(f"A' {a.shape} and B' {b.shape} (after transA/transB): inner dimensions differ")
    alpha, beta = node.attr("alpha", 1.0, float), node.attr("beta", 1.0, float)
    if c is not None:
        check_unidirectional(c.shape, (a.shape[0], b.shape[1]), "C")
        if beta == 0:
            c = None  # beta * C is not computed, so NaN or inf in C do not propagate
    if is_integer(a):
        return (_integer_gemm(_integer_matmul(a, b), c, alpha, beta),)
    options: FloatPipelineOptions = node.options
    if options.replays_mlas_float32(a.dtype) and not trans_a:  # require_types: A, B and C share float32
        return (_mlas_gemm(a, stored_b, c, alpha, beta, trans_b, options.threads),)
    if options.replays_numpy_float32(a.dtype):
        return (_numpy_gemm(a, b, c, alpha, beta),)
    return (_float_gemm(_float64_matmul(a, b), c, alpha, beta, a.dtype),)
