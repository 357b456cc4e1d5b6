"""onnxruntime's MLAS float32 kernels, replayed operation by operation.

Profile option ``float_pipeline="mlas-float32"`` (the onnxruntime profile) routes
float32 MatMul, Gemm, Conv, Softmax, LayerNormalization and GlobalAveragePool here.
Every function below performs the same float32 operations, in the same order,
as the x86-64 kernel it names, so its result is bit-identical to onnxruntime's; each rounding step is a float32 numpy operation or
:func:`refquant.lowerings.fma_float32` (one rounding, as a fused multiply-add).

The orders were read from the MLAS sources and measured against onnxruntime
1.32 on an x86-64 CPU with AVX-512F (tests/test_mlas.py); spec/profiles.md
lists the evidence. Only the Softmax sum depends on the vector width: the
AVX-512F kernel sums 16 lanes, an AVX2-only CPU 8 (not emulated).
"""

from __future__ import annotations

import numpy as np

from .lowerings import fma_float32
from .window import Window

__all__ = ["mean", "sgemm", "conv", "conv_algorithm", "layer_norm", "softmax"]

F32 = np.float32

# ----------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------


def mean(rows: np.ndarray) -> np.ndarray:
    """Mean of each row of a float32 (..., n) array (MLAS ReduceAdd, GlobalAveragePool).

    Four float32 lane sums over elements 4i + j, the lanes added as (l0 + l2) + (l1 + l3),
    the n mod 4 remaining elements added one by one, then one float32 division by n.
    """
    total = _four_lane_sum(rows)
    return total / F32(rows.shape[-1])


def _four_lane_sum(rows: np.ndarray) -> np.ndarray:
    """Σ rows over the last axis in 4 lanes of rows' type, reduced (l0 + l2) + (l1 + l3), then the tail."""
    n = rows.shape[-1]
    whole = n - n % 4
    lanes = np.zeros(rows.shape[:-1] + (4,), rows.dtype)
    for start in range(0, whole, 4):
        lanes += rows[..., start : start + 4]
    total = (lanes[..., 0] + lanes[..., 2]) + (lanes[..., 1] + lanes[..., 3])
    for i in range(whole, n):
        total += rows[..., i]
    return total


def _horizontal_sum8(lanes: np.ndarray) -> np.ndarray:
    """AVX 8-lane reduction: ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))."""
    r = lanes[..., :4] + lanes[..., 4:]
    return (r[..., 0] + r[..., 2]) + (r[..., 1] + r[..., 3])


def _horizontal_sum16(lanes: np.ndarray) -> np.ndarray:
    """AVX-512 16-lane reduction: a = lo8 + hi8, then ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))."""
    a = lanes[..., :8] + lanes[..., 8:]
    pairs = a[..., 0::2] + a[..., 1::2]
    return (pairs[..., 0] + pairs[..., 1]) + (pairs[..., 2] + pairs[..., 3])


# ----------------------------------------------------------------------------
# SGEMM (MatMul)
# ----------------------------------------------------------------------------

_STRIDE_N = 128
_STRIDE_K = 128


def _strides(n: int, k: int) -> tuple[int, int]:
    """(N block, K block) of MlasSgemmOperation and MlasConvOperation: 128 x 128, traded against each
    other for thin shapes."""
    stride_n, stride_k = _STRIDE_N, _STRIDE_K
    if n >= k:
        while stride_k // 2 >= k:
            stride_n, stride_k = stride_n * 2, stride_k // 2
    else:
        while stride_n > 16 and stride_n // 2 >= n:
            stride_n, stride_k = stride_n // 2, stride_k * 2
    return stride_n, stride_k


def _stride_k(n: int, k: int) -> int:
    """K-block length of MlasSgemmOperation."""
    return _strides(n, k)[1]


_THREAD_COMPLEXITY = 64 * 1024  # multiply-adds per thread (MLAS_SGEMM_THREAD_COMPLEXITY)
_THREAD_ALIGN_N = 16  # N is split between threads in multiples of 16 columns
_PACKED_STRIDE_K = 256  # K block of a prepacked B (MLAS_SGEMM_PACKED_STRIDEK)


def sgemm(
    a: np.ndarray,
    b: np.ndarray,
    threads: int = 1,
    *,
    c: np.ndarray | None = None,
    alpha: float = 1.0,
    trans_b: bool = False,
    packed: bool = False,
) -> np.ndarray:
    """alpha * a @ b' + c for float32 (..., M, K) a and b' = b or b transposed, as MlasGemmBatch computes it.

    ``c`` (float32, of the result's shape) is the accumulated C (beta = 1); None means beta = 0.
    ``packed``: B is a constant onnxruntime prepacked (a 2-D initializer of MatMul or Gemm).
    The batch of products is split between up to ``threads`` threads (:func:`_thread_parts`);
    each part is computed alone (:func:`_sgemm_part`).
    """
    bt = np.swapaxes(b, -1, -2) if trans_b else b
    m, k = a.shape[-2:]
    n = bt.shape[-1]
    shape = np.broadcast_shapes(a.shape[:-2], bt.shape[:-2]) + (m, n)
    a = np.broadcast_to(a, shape[:-2] + (m, k))
    bt = np.broadcast_to(bt, shape[:-2] + (k, n))
    result = np.empty(shape, F32)
    batch = int(np.prod(shape[:-2], dtype=np.int64))
    kernel = _Kernel(F32(alpha), trans_b, packed, column_vector=n == 1 and (k == 1 or not trans_b))
    for rows, columns in _thread_parts(m, n, k, batch, threads):
        part_c = None if c is None else np.broadcast_to(c, shape)[..., rows, columns]
        result[..., rows, columns] = kernel.part(a[..., rows, :], bt[..., columns], part_c)
    return result


def _thread_parts(m: int, n: int, k: int, batch: int, threads: int) -> list[tuple[slice, slice]]:
    """The (rows, columns) each thread computes of every product in the batch (MlasGemmBatch).

    Threads: min(threads, M N K / 65536 + 1), shared by the batch (rounded up per product);
    a product with N > M is split along N in blocks of 16 columns, otherwise along M;
    MlasPartitionWork gives the first (total mod parts) parts one extra unit.
    """
    target = min(threads, m * n * k // _THREAD_COMPLEXITY + 1)
    per_product = -(-target // batch)
    if n > m:
        blocks = -(-n // _THREAD_ALIGN_N)
        parts = _partition(blocks, min(per_product, blocks))
        return [(slice(0, m), slice(start * _THREAD_ALIGN_N, min(n, stop * _THREAD_ALIGN_N))) for start, stop in parts]
    return [(slice(start, stop), slice(0, n)) for start, stop in _partition(m, min(per_product, m))]


def _partition(total: int, parts: int) -> list[tuple[int, int]]:
    """MlasPartitionWork: ``parts`` contiguous ranges of ``total`` units, the first total mod parts one longer."""
    size, extra = divmod(total, parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


class _Kernel:
    """MlasSgemmOperation (or MlasSgemmPackedOperation) on one thread's part of one product."""

    def __init__(self, alpha: np.float32, trans_b: bool, packed: bool, column_vector: bool):
        self.alpha, self.trans_b, self.packed, self.column_vector = alpha, trans_b, packed, column_vector

    def part(self, a: np.ndarray, b: np.ndarray, c: np.ndarray | None) -> np.ndarray:
        """a (..., m, K) times b (..., K, n), accumulated onto c.

        A prepacked B always takes the blocked kernel with K blocks of 256. Otherwise, with
        alpha = 1: M == 1 takes :func:`_sgemm_m1` (B as stored) or :func:`_dot_rows` (B
        transposed); N == 1 with B a column vector takes :func:`_dot_rows` with A and B swapped.
        Everything else takes :meth:`blocked` with the K block :func:`_stride_k` of the part.
        """
        m, k = a.shape[-2:]
        n = b.shape[-1]
        start = np.zeros(a.shape[:-2] + (m, n), F32) if c is None else c
        if k == 0:
            return start
        if self.packed:
            return self.blocked(a, b, c, _PACKED_STRIDE_K)
        if self.alpha == 1 and m == 1:
            if self.trans_b:
                return _dot_rows(a[..., 0, :], np.swapaxes(b, -1, -2), start[..., 0, :])[..., np.newaxis, :]
            return _sgemm_m1(a[..., 0, :], b, start[..., 0, :])[..., np.newaxis, :]
        if self.alpha == 1 and n == 1 and self.column_vector:
            return _dot_rows(b[..., :, 0], a, start[..., :, 0])[..., np.newaxis]
        return self.blocked(a, b, c, _stride_k(n, k))

    def blocked(self, a: np.ndarray, b: np.ndarray, c: np.ndarray | None, stride: int) -> np.ndarray:
        """SgemmKernelFma3 / Avx512F: per K block one fused multiply-add chain from 0 in k order per output,
        c = fma(a[k], b[k], c); the first block without C is stored as chain * alpha, every other
        block is accumulated as fma(chain, alpha, result) (chain + result when alpha is 1)."""
        k = a.shape[-1]
        result = c
        for begin in range(0, k, stride):
            chain = np.zeros(a.shape[:-1] + b.shape[-1:], F32)
            for i in range(begin, min(k, begin + stride)):
                chain = fma_float32(a[..., :, i : i + 1], b[..., i : i + 1, :], chain)
            if result is None:
                result = chain if self.alpha == 1 else chain * self.alpha
            else:
                result = chain + result if self.alpha == 1 else fma_float32(chain, self.alpha, result)
        return result


# ----------------------------------------------------------------------------
# Convolution (MlasConv, NCHW)
# ----------------------------------------------------------------------------

_MAX_THREADS = 16  # MLAS_MAXIMUM_THREAD_COUNT


def conv_algorithm(window: Window, spatial: tuple[int, ...], channels: int, filters: int, groups: int) -> str:
    """MlasConvPrepare's choice for ``window`` over ``spatial``, per group of ``groups``: ``channels`` input
    channels, ``filters`` output channels. "depthwise-multiplier2" (two filters per one-channel group,
    7x7, stride 2, pads 3) is not replayed by :func:`conv`.

    "direct": pointwise (every kernel extent, stride 1, no padding), B is the input itself;
    "direct-transposed": one input channel, stride 1, no padding or dilation, the kernel as wide as the
    input (1-D convolutions count as 2-D of height 1), B is read transposed (as tall as the input and
    one wide: "direct"); "expand": more filters than
    output points, one GEMM over the whole im2col matrix; "segmented": MlasConvOperation's blocks.
    """
    kernel, pads = window.kernel, window.pads_begin + window.pads_end
    if (len(spatial) == 2 and groups > 1 and filters == 2 and channels == 1 and kernel == (7, 7)
            and window.strides == (2, 2) and pads == (3, 3, 3, 3) and window.dilations == (1, 1)):
        return "depthwise-multiplier2"  # an AVX-512F direct kernel whose order is not replayed
    if all(s == 1 for s in window.strides) and not any(pads):
        if all(k == 1 for k in kernel):
            return "direct"
        if len(spatial) <= 2 and channels == 1 and all(d == 1 for d in window.dilations):
            if kernel[-1] == spatial[-1]:
                return "direct-transposed"
            if len(spatial) == 2 and kernel[0] == spatial[0] and kernel[1] == 1:
                return "direct"
    return "expand" if filters > int(np.prod(window.output)) else "segmented"


def conv(weights: np.ndarray, columns: np.ndarray, bias: np.ndarray | None, algorithm: str, threads: int = 1):
    """MlasConv for float32: ``weights`` (group, M, K), im2col ``columns`` (N, group, K, P), ``bias``
    (group, M) or None; returns (N, group, M, P).

    Per image and group, Y = W @ columns by :func:`sgemm`, then Y + bias in float32 (MlasActivation).
    "segmented" computes, per segment of P (one per thread, :func:`_conv_segments`), blocks of the
    :func:`_strides` of the segment: each N block sums its K blocks by successive GEMMs onto the
    partial result (beta = 1). With several images or groups onnxruntime gives each thread whole
    images and groups, so GEMMs are single-threaded (direct, segmented) or split as MlasGemm splits
    them (expand, and direct for one image and group).
    """
    images, groups = columns.shape[:2]
    single = images * groups == 1
    result = np.empty((images, groups) + weights.shape[1:2] + columns.shape[-1:], F32)
    for image, group in np.ndindex(images, groups):
        w, col = weights[group], columns[image, group]
        if algorithm == "segmented":
            y = np.empty(result.shape[2:], F32)
            for segment in _conv_segments(w.shape[0], col.shape[0], col.shape[1], threads if single else 1):
                y[:, segment] = _conv_segment(w, col[:, segment])
        elif algorithm == "direct-transposed":
            y = sgemm(w, col.T, threads if single else 1, trans_b=True)
        else:
            y = sgemm(w, col, threads if single or algorithm == "expand" else 1)
        result[image, group] = y if bias is None else y + bias[group][:, np.newaxis]
    return result


def _conv_segments(m: int, k: int, p: int, threads: int) -> list[slice]:
    """MlasConvPrepare's thread stride over the P output points: threads by complexity M P K / 65536 + 1
    (at most 16 and ``threads``), P / threads rounded up to a multiple of 16; one segment when it covers P."""
    target = min(m * p * k // _THREAD_COMPLEXITY + 1, _MAX_THREADS, threads)
    stride = -(-p // target)
    if target > 1:
        stride = -(-stride // _THREAD_ALIGN_N) * _THREAD_ALIGN_N
    if stride >= p:
        return [slice(0, p)]
    return [slice(start, min(p, start + stride)) for start in range(0, p, stride)]


def _conv_segment(w: np.ndarray, col: np.ndarray) -> np.ndarray:
    """MlasConvOperation on one segment: N blocks, each the sum of its K blocks, GEMM after GEMM."""
    k, p = col.shape
    stride_n, stride_k = _strides(p, k)
    y = np.empty((w.shape[0], p), F32)
    for n0 in range(0, p, stride_n):
        block = None
        for k0 in range(0, k, stride_k):
            block = sgemm(w[:, k0 : k0 + stride_k], col[k0 : k0 + stride_k, n0 : n0 + stride_n], c=block)
        y[:, n0 : n0 + stride_n] = block
    return y


def _sgemm_m1(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """SgemmKernelM1Avx (no fused multiply-adds): vector a (..., K) times b (..., K, N), onto c (..., N).

    Rounded products p[k] = a[k] * b[k, :]; each group of four k is summed ((p0 + p1) + p2) + p3
    and added to the result, then a remaining pair (p0 + p1), then a last single k. ``c`` is +0
    without a C (the kernel masks C to zero on its first pass).
    """
    products = np.moveaxis(a[..., :, np.newaxis] * b, -2, 0)  # (K, ..., N), float32 rounding
    result = c
    k = len(products)
    i = 0
    while i < k:
        width = 4 if k - i >= 4 else (2 if k - i >= 2 else 1)
        group = products[i]
        for j in range(i + 1, i + width):
            group = group + products[j]
        result = group + result
        i += width
    return result


def _dot_rows(vector: np.ndarray, rows: np.ndarray, c: np.ndarray) -> np.ndarray:
    """SgemmKernelM1TransposeBAvx (no fused multiply-adds): dot products of vector (..., K) with rows (..., R, K), onto c (..., R).

    Each row's rounded products go to eight lanes (k mod 8); rows go in blocks of four, then two,
    then one, each block reducing its lanes its own way (:data:`_DOT_REDUCTIONS`), then adding c.
    """
    k = rows.shape[-1]
    products = rows * vector[..., np.newaxis, :]  # float32 rounding
    lanes = np.zeros(products.shape[:-1] + (8,), F32)
    for start in range(0, k, 8):
        chunk = products[..., start : start + 8]
        lanes[..., : chunk.shape[-1]] += chunk
    count = rows.shape[-2]
    blocks = [4] * (count // 4) + [2] * (count % 4 // 2) + [1] * (count % 2)
    result = np.empty(products.shape[:-1], F32)
    row = 0
    for size in blocks:
        part = slice(row, row + size)
        result[..., part] = _DOT_REDUCTIONS[size](lanes[..., part, :]) + c[..., part]
        row += size
    return result


#: lane reductions of SgemmKernelM1TransposeBAvx by row-block size (x = one row's 8 lanes)
_DOT_REDUCTIONS = {
    4: lambda x: (((x[..., 0] + x[..., 1]) + x[..., 2]) + x[..., 3]) + (((x[..., 4] + x[..., 5]) + x[..., 6]) + x[..., 7]),
    2: lambda x: ((x[..., 0] + x[..., 2]) + (x[..., 4] + x[..., 6])) + ((x[..., 1] + x[..., 3]) + (x[..., 5] + x[..., 7])),
    1: lambda x: ((x[..., 0] + x[..., 1]) + (x[..., 2] + x[..., 3])) + ((x[..., 4] + x[..., 5]) + (x[..., 6] + x[..., 7])),
}


# ----------------------------------------------------------------------------
# LayerNormalization
# ----------------------------------------------------------------------------


def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, epsilon: float):
    """LayerNormalization of the rows of float32 (R, n) x; returns (Y, Mean, InvStdDev).

    n >= 8 (MlasLayerNormKernelAvx2):
        mean = float32(Σx / n), Σx in four float64 lanes reduced (l0 + l2) + (l1 + l3),
        the n mod 4 tail added one by one in float64;
        var = Σ(x - mean)² in eight float32 lanes of fused multiply-adds
        (:func:`_horizontal_sum8`), the n mod 8 tail one by one: a first group of four
        as rounded product then sum, the rest fused;
        inv = 1 / sqrt(var / n + epsilon);
        Y = fma((x - mean) * inv, scale, bias), or ((x - mean) * inv) * scale without bias.
    n < 8: :func:`_layer_norm_scalar`.
    """
    n = x.shape[-1]
    if n < 8:
        return _layer_norm_scalar(x, scale, bias, epsilon)
    x64 = x.astype(np.float64)
    mean = (_four_lane_sum(x64) / n).astype(F32)[:, np.newaxis]
    centred = x - mean
    whole = n - n % 8
    lanes = np.zeros((x.shape[0], 8), F32)
    for start in range(0, whole, 8):
        d = centred[:, start : start + 8]
        lanes = fma_float32(d, d, lanes)
    var = _horizontal_sum8(lanes)
    unfused = whole + 4 if n - whole >= 4 else whole
    for i in range(whole, n):
        d = centred[:, i]
        var = var + d * d if i < unfused else fma_float32(d, d, var)
    inv = F32(1) / np.sqrt(var / F32(n) + F32(epsilon))
    normalized = centred * inv[:, np.newaxis]
    if bias is None:
        y = normalized * scale
    else:
        y = fma_float32(normalized, scale, bias)
    return y, mean[:, 0], inv


def _layer_norm_scalar(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, epsilon: float):
    """onnxruntime's portable loop (rows shorter than 8): Welford's update in float32, no fused operations.

    For k = 1..n: delta = x_k - mean; mean += delta / k; m2 += delta * (x_k - mean).
    std = sqrt(m2 / n + epsilon); Y = (x - mean) / std * scale + bias; InvStdDev = 1 / std.
    """
    mean = np.zeros(x.shape[0], F32)
    m2 = np.zeros(x.shape[0], F32)
    for k in range(x.shape[-1]):
        delta = x[:, k] - mean
        mean = mean + delta / F32(k + 1)
        m2 = m2 + delta * (x[:, k] - mean)
    std = np.sqrt(m2 / F32(x.shape[-1]) + F32(epsilon))
    y = (x - mean[:, np.newaxis]) / std[:, np.newaxis] * scale
    if bias is not None:
        y = y + bias
    return y, mean, F32(1) / std


# ----------------------------------------------------------------------------
# Softmax (AVX-512F)
# ----------------------------------------------------------------------------

#: MlasExpConstants (compute.cpp)
_LOWER_RANGE = F32(-103.9720840454)
_ROUNDING_BIAS = F32(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer
_LOG2_RECIPROCAL = F32(1.44269504088896341)
_LOG2_HIGH = F32(-6.93145752e-1)
_LOG2_LOW = F32(-1.42860677e-6)
_POLYNOMIAL = tuple(F32(float.fromhex(c)) for c in ("0x1.694000p-10", "0x1.125edcp-7", "0x1.555b5ap-5", "0x1.555450p-3", "0x1.fffff6p-2", "0x1.000000p+0", "0x1.000000p+0"))  # fmt: skip


def _exp(v: np.ndarray) -> np.ndarray:
    """MLAS's float32 exp of v (ComputeSumExpF32KernelAvx512F), v already shifted by -max.

    v = max(v, -103.972); m = fma(v, 1/ln2, bias) - bias (v / ln2 rounded to an integer);
    r = fma(m, -ln2_low, fma(m, -ln2_high, v)); p = Horner's rule in fused multiply-adds
    over the seven coefficients; exp = p * 2**m rounded once (VSCALEFPS).
    """
    v = np.maximum(_LOWER_RANGE, v)
    biased = fma_float32(v, _LOG2_RECIPROCAL, _ROUNDING_BIAS)
    m = biased - _ROUNDING_BIAS
    r = fma_float32(m, _LOG2_LOW, fma_float32(m, _LOG2_HIGH, v))
    p = np.full_like(r, _POLYNOMIAL[0])
    for coefficient in _POLYNOMIAL[1:]:
        p = fma_float32(p, r, coefficient)
    return np.ldexp(p.astype(np.float64), m.astype(np.int64)).astype(F32)  # exact in float64, then one rounding


def _sum_exp(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exp(x - max), Σ exp) per row of float32 (R, n), summed in 16 float32 lanes.

    Element i adds into lane i mod 16 in index order (the kernel's 48-element blocks add
    their three vectors in order, then masked 16-element vectors); :func:`_horizontal_sum16`.
    """
    negative_max = -np.max(rows, axis=-1, keepdims=True)
    e = _exp(rows + negative_max)
    lanes = np.zeros((rows.shape[0], 16), F32)
    for start in range(0, rows.shape[-1], 16):
        chunk = e[:, start : start + 16]
        lanes[:, : chunk.shape[-1]] += chunk
    return e, _horizontal_sum16(lanes)


def softmax(rows: np.ndarray) -> np.ndarray:
    """Softmax of each row of float32 (R, n): exp(x - max) * float32(1 / Σ exp) (MlasComputeSoftmax)."""
    e, total = _sum_exp(rows)
    return e * (F32(1) / total)[:, np.newaxis]
