"""onnxruntime's MLAS float32 activation kernels (Tanh, Logistic, Erf, and Gelu through Erf), replayed operation
by operation.

Profile option ``float_pipeline="mlas-float32"`` (the onnxruntime profile) computes float32 Tanh, Sigmoid, Erf
and Gelu (ai.onnx approximate="none", com.microsoft Gelu and BiasGelu) with these functions instead of float64 rounded once; spec/mlas.md describes each kernel. The kernels are
the ones onnxruntime 1.32's ``MlasPlatform`` dispatches on x86-64 with AVX2 + FMA3 (onnxruntime/core/mlas/lib/
platform.cpp): ``MlasComputeTanhF32KernelFma3``, ``MlasComputeLogisticF32KernelFma3`` and
``MlasErfKernelFma3`` (AVX-512 machines dispatch the same three). Every step is one float32 IEEE operation;
each ``vfmadd`` is a fused multiply-add rounded once (:func:`refquant.lowerings.fma_float32`). The kernels
are lane-wise, and their masked last vector computes as a full one, so the result of an element does not
depend on the tensor's length or the element's position.
"""

from __future__ import annotations

import numpy as np

from .lowerings import fma_float32

__all__ = ["tanh", "logistic", "erf", "gelu"]

_F32 = np.float32
_SIGN = np.uint32(0x80000000)


def _f32(text: str) -> np.float32:
    return _F32(float.fromhex(text))


def _horner(coefficients, x: np.ndarray) -> np.ndarray:
    """fma(...fma(fma(c0, x, c1), x, c2)..., x, cn), each step rounded once (c0 x = x c0: the kernels'
    operand order does not matter)."""
    p = np.full(x.shape, coefficients[0], _F32)
    for c in coefficients[1:]:
        p = fma_float32(p, x, c)
    return p


# MlasTanhConstants (tanh.cpp): clamp range, numerator alpha_13..alpha_1, denominator beta_6..beta_0
_TANH_RANGE = _F32(9.0)
_TANH_ALPHA = tuple(_f32(c) for c in ("-0x1.3e4b80p-52", "0x1.c266fcp-43", "-0x1.7a6ffep-34", "0x1.b80082p-25", "0x1.f28694p-17", "0x1.4e1bdap-11", "0x1.40b3b8p-8"))  # fmt: skip
_TANH_BETA = tuple(_f32(c) for c in ("0x1.41a7b0p-20", "0x1.f12bacp-14", "0x1.29540ap-9", "0x1.40b3bap-8"))  # fmt: skip


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh of float32 x as ``MlasComputeTanhF32KernelFma3`` computes it (MLAS's Eigen-derived rational
    approximation; onnxruntime/core/mlas/lib/tanh.cpp ``MlasTanhConstants``, the FMA3 kernel on x86-64).

        v = min(9, max(-9, x))             (vmaxps / vminps: NaN passes through)
        s = v * v
        p = fma(...fma(fma(s, a13, a11), s, a9)..., s, a1);  p = v * p
        q = fma(fma(fma(s, b6, b4), s, b2), s, b0)
        tanh = p / q

    a13..a1 = -0x1.3e4b80p-52, 0x1.c266fcp-43, -0x1.7a6ffep-34, 0x1.b80082p-25, 0x1.f28694p-17,
    0x1.4e1bdap-11, 0x1.40b3b8p-8; b6..b0 = 0x1.41a7b0p-20, 0x1.f12bacp-14, 0x1.29540ap-9, 0x1.40b3bap-8.
    """
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore"):
        v = np.where(x < -_TANH_RANGE, -_TANH_RANGE, x)  # NaN compares false: kept
        v = np.where(v > _TANH_RANGE, _TANH_RANGE, v)
        s = v * v
        p = v * _horner(_TANH_ALPHA, s)
        q = _horner(_TANH_BETA, s)
        return p / q


# MlasLogisticConstants (logistic.cpp): clamp range, numerator alpha_9..alpha_1, denominator beta_10..beta_0
_LOGISTIC_RANGE = _F32(18.0)
_LOGISTIC_ALPHA = tuple(_f32(c) for c in ("0x1.806aa2p-35", "0x1.f09d96p-24", "0x1.fe8276p-15", "0x1.16fab0p-7", "0x1.fc7e64p-3"))  # fmt: skip
_LOGISTIC_BETA = tuple(_f32(c) for c in ("0x1.5789eap-41", "0x1.8be4f6p-28", "0x1.a62fbap-18", "0x1.be2a7ep-10", "0x1.de7c30p-4", "0x1.fc7e68p-1"))  # fmt: skip


def logistic(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) of float32 x as ``MlasComputeLogisticF32KernelFma3`` computes it (Eigen-derived
    rational approximation; onnxruntime/core/mlas/lib/logistic.cpp ``MlasLogisticConstants``,
    x86_64/LogisticKernelFma3.S).

        v = min(18, max(-18, x))           (vmaxps / vminps: NaN passes through)
        s = v * v
        p = fma(fma(fma(fma(s, a9, a7), s, a5), s, a3), s, a1);  p = v * p
        q = fma(...fma(fma(s, b10, b8), s, b6)..., s, b0)
        logistic = max(0, p / q + 0.5)    (the FMA3 kernel has no upper clamp to 1)

    a9..a1 = 0x1.806aa2p-35, 0x1.f09d96p-24, 0x1.fe8276p-15, 0x1.16fab0p-7, 0x1.fc7e64p-3;
    b10..b0 = 0x1.5789eap-41, 0x1.8be4f6p-28, 0x1.a62fbap-18, 0x1.be2a7ep-10, 0x1.de7c30p-4, 0x1.fc7e68p-1.
    """
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore"):
        v = np.where(x < -_LOGISTIC_RANGE, -_LOGISTIC_RANGE, x)
        v = np.where(v > _LOGISTIC_RANGE, _LOGISTIC_RANGE, v)
        s = v * v
        p = v * _horner(_LOGISTIC_ALPHA, s)
        q = _horner(_LOGISTIC_BETA, s)
        y = p / q + _F32(0.5)
        return np.where(y < 0, _F32(0), y)  # vmaxps(0, y): NaN passes through


# MlasErfConstants (erf.cpp)
_ERF_UPPER = _f32("0x1.f66666p+1")  # 3.925
_ERF_SPLIT = _f32("0x1.d80000p-1")  # 0.921875
_ERF_SMALL = tuple(_f32(c) for c in ("-0x1.3a1a82p-11", "0x1.473f48p-8", "-0x1.b68bd2p-6", "0x1.ce1a46p-4", "-0x1.8126e0p-2", "0x1.06eba6p-3"))  # fmt: skip
_ERF_BIG = tuple(_f32(c) for c in ("0x1.222900p-16", "-0x1.91d2ccp-12", "0x1.fd1336p-9", "-0x1.8d6300p-6", "0x1.b55cb0p-4", "0x1.450aa0p-1", "0x1.079d0cp-3"))  # fmt: skip
_EXP_LOWER = _f32("-0x1.61814ap+6")  # -88.3762626647949
_EXP_LOG2_RECIPROCAL = _f32("0x1.715476p+0")
_EXP_LOG2_HIGH = _f32("-0x1.62e400p-1")
_EXP_LOG2_LOW = _f32("-0x1.7f7d1cp-20")
_EXP_POLYNOMIAL = tuple(_f32(c) for c in ("0x1.6a98dap-10", "0x1.1272cap-7", "0x1.555a20p-5", "0x1.55542ep-3", "0x1.fffff6p-2", "0x1.000000p+0", "0x1.000000p+0"))  # fmt: skip
_EXP_ROUNDING_BIAS = _f32("0x1.800000p+23")  # 12582912


def erf(x: np.ndarray) -> np.ndarray:
    """erf of float32 x as ``MlasErfKernelFma3`` computes it (onnxruntime/core/mlas/lib/erf.cpp
    ``MlasErfConstants``, x86_64/ErfKernelFma3.S; the polynomials of njuffa's faithfully rounded erff).

        a = |x|;  a = 3.925 < a ? 3.925 : a        (vminps: NaN passes through)
        s = a * a
        small = fma(fma(...fma(fma(S0, s, S1), s, S2)..., s, S5m1), a, a)    used where a < 0.921875
        b = (a >= 0.921875) ? a : 0
        r = -fma(fma(...fma(B0, b, B1)..., b, B6m1), b, b)
        r = max(r, -0x1.61814ap+6)    (-88.3762626647949)
        e: t = fma(1/ln2, r, 0x1.8p23) - 0x1.8p23;  f = fma(t, log2_lo, fma(t, log2_hi, r))
           e = fma(...fma(E0, f, E1)..., f, E6) * 2**int(t)
        big = 1 - e        (+0 where a < 0.921875: b = 0 gives e = 1)
        erf = (small | big) with x's sign bit or-ed in (bitwise)

    S0..S5m1 = -0x1.3a1a82p-11, 0x1.473f48p-8, -0x1.b68bd2p-6, 0x1.ce1a46p-4, -0x1.8126e0p-2, 0x1.06eba6p-3;
    B0..B6m1 = 0x1.222900p-16, -0x1.91d2ccp-12, 0x1.fd1336p-9, -0x1.8d6300p-6, 0x1.b55cb0p-4, 0x1.450aa0p-1,
    0x1.079d0cp-3; log2_hi = -0x1.62e4p-1, log2_lo = -0x1.7f7d1cp-20; E0..E6 = 0x1.6a98dap-10,
    0x1.1272cap-7, 0x1.555a20p-5, 0x1.55542ep-3, 0x1.fffff6p-2, 1, 1.
    """
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore", over="ignore"):
        sign = x.view(np.uint32) & _SIGN
        a = np.abs(x)
        a = np.where(_ERF_UPPER < a, _ERF_UPPER, a)
        s = a * a
        small = fma_float32(_horner(_ERF_SMALL, s), a, a)
        big_lane = _ERF_SPLIT <= a
        small = np.where(big_lane, _F32(0), small)
        b = np.where(big_lane, a, _F32(0))
        r = -fma_float32(_horner(_ERF_BIG, b), b, b)
        r = np.where(r > _EXP_LOWER, r, _EXP_LOWER)  # vmaxps(r, lower): a NaN r gives lower
        t = fma_float32(_EXP_LOG2_RECIPROCAL, r, _EXP_ROUNDING_BIAS) - _EXP_ROUNDING_BIAS
        f = fma_float32(t, _EXP_LOG2_LOW, fma_float32(t, _EXP_LOG2_HIGH, r))
        # t is an integer in [-32, 0] (-r <= about 18 for a <= 3.925), so 2**t is a normal float32: the
        # kernel's (t + 127) << 23 bits, and the product with it is exact
        e = _horner(_EXP_POLYNOMIAL, f) * np.ldexp(_F32(1), t.astype(np.int32)).astype(_F32)
        big = _F32(1) - e
        bits = small.view(np.uint32) | big.view(np.uint32) | sign
        return bits.view(_F32)


_INV_SQRT2 = _f32("0x1.6a09e6p-1")  # float32(0.70710678118654752440)


def gelu(x: np.ndarray) -> np.ndarray:
    """Gelu of float32 x as onnxruntime 1.32's CPU Gelu kernels compute it (ai.onnx Gelu with
    approximate="none", com.microsoft Gelu and BiasGelu, the latter on the float32 sum x = A + B):
    MLAS's erf between two float32 loops (onnxruntime/core/mlas/lib/gelu.cpp ``MlasGeluKernel``, the
    contrib kernels' ``temp = x * 0.5f``).

        y = (0.5 * x) * (erf(x * 0x1.6a09e6p-1) + 1)

    each operation one float32 rounding, erf being :func:`erf` (``MlasErfKernelFma3``).
    """
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore", over="ignore"):
        return (_F32(0.5) * x) * (erf(x * _INV_SQRT2) + _F32(1))
