"""The window functions of ai.onnx's signal ops (spec/ops/image.md).

    HannWindow:     w[n] = sin^2(pi n / N)
    HammingWindow:  w[n] = 25/46 - 21/46 cos(2 pi n / N)
    BlackmanWindow: w[n] = 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)

n = 0 .. size - 1; N = size when ``periodic`` (the default), size - 1 when not. Each is computed in float64 and
rounded once to ``output_datatype`` (float by default); integer types take the float64 value truncated toward
zero, as Cast.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype
from ..dtypes import IEEE_FLOATS, NARROW_INTS, WIDE_INTS, np_dtype, types_at
from ..errors import AttributeValueError, ShapeError
from ..node import Node
from ..registry import register

SIZE_TYPES = (T.INT32, T.INT64)
WINDOW_OUTPUT_TYPES = IEEE_FLOATS + (T.BFLOAT16,) + WIDE_INTS + NARROW_INTS

_FORMULAS = {
    "HannWindow": lambda phase: np.sin(phase / 2) ** 2,
    "HammingWindow": lambda phase: 25.0 / 46.0 - (1.0 - 25.0 / 46.0) * np.cos(phase),
    "BlackmanWindow": lambda phase: 0.42 - 0.5 * np.cos(phase) + 0.08 * np.cos(2 * phase),
}


def _window_kernel(formula):
    def kernel(node: Node, size):
        require_dtype(size, SIZE_TYPES, "size")
        if size.size != 1 or size.ndim > 1:
            raise ShapeError(f"size must be a scalar, got shape {size.shape}")
        n = int(size.reshape(()))
        if n < 0:
            raise ShapeError(f"size must be >= 0, got {n}")
        out_type = node.attr("output_datatype", T.FLOAT, int)
        if out_type not in WINDOW_OUTPUT_TYPES:
            raise AttributeValueError(f"output_datatype {out_type} is not one of the window output types")
        periodic = node.attr("periodic", 1, int)
        denominator = n if periodic else n - 1
        dtype = np_dtype(out_type)
        with np.errstate(invalid="ignore", divide="ignore"):
            phase = 2 * np.pi * np.arange(n, dtype=np.float64) / denominator
            w = formula(phase)
        if np.dtype(dtype).kind in "iu":
            if np.isnan(w).any():
                raise ShapeError("a symmetric window of size 1 divides by size - 1 = 0: NaN has no integer value")
            return (np.trunc(w).astype(dtype),)
        return (np.asarray(arith.narrow(w, dtype)),)

    return kernel


for _op, _formula in _FORMULAS.items():
    register(_op, since=(17,))(_window_kernel(_formula))


DFT_TYPES = {17: IEEE_FLOATS + (T.BFLOAT16,)}


def dft_geometry(node: Node, x, dft_length=None, axis_input=None) -> tuple[int, int, bool, bool]:
    """DFT's (signal axis, transform length, inverse, onesided); the axis counts X's axes, the last (1 real or
    2 real, imaginary) excluded from the range."""
    if x.ndim < 2 or x.shape[-1] not in (1, 2):
        raise ShapeError(f"input must be (..., signal, 1 or 2), got shape {x.shape}")
    if node.version >= 20:
        axis = -2 if axis_input is None else int(np.asarray(axis_input).reshape(()))
    else:
        axis = node.attr("axis", 1, int)
    if not -x.ndim <= axis < x.ndim - 1 or axis == -1:
        raise AttributeValueError(f"axis {axis} must name a signal axis of input {x.shape} (not the last)")
    axis %= x.ndim
    inverse, onesided = bool(node.attr("inverse", 0, int)), bool(node.attr("onesided", 0, int))
    if dft_length is None:
        n = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    else:
        require_dtype(dft_length, SIZE_TYPES, "dft_length")
        n = int(np.asarray(dft_length).reshape(()))
    if n < 1:
        raise ShapeError(f"dft_length must be >= 1, got {n}")
    return axis, n, inverse, onesided


@register("DFT", since=(17, 20))
def dft(node: Node, x, dft_length=None, axis_input=None):
    """The discrete Fourier transform along one axis (numpy's complex128 FFT), as onnx.reference: zero-padded or
    truncated to dft_length; onesided keeps the n // 2 + 1 first frequencies; inverse divides by n, and with
    onesided is the real inverse of a one-sided spectrum (last axis 1)."""
    require_dtype(x, types_at(DFT_TYPES, node.version), "input")
    axis, n, inverse, onesided = dft_geometry(node, x, dft_length, axis_input)
    x64 = x.astype(np.float64)
    signal = x64[..., 0] if x.shape[-1] == 1 else x64[..., 0] + 1j * x64[..., 1]
    if inverse:
        if onesided:
            y = np.fft.irfft(signal, n=n, axis=axis)[..., None]
        else:
            z = np.fft.ifft(signal, n=n, axis=axis)
            y = np.stack([z.real, z.imag], axis=-1)
    else:
        z = np.fft.fft(signal, n=n, axis=axis)
        if onesided:
            z = np.take(z, np.arange(n // 2 + 1), axis=axis)
        y = np.stack([z.real, z.imag], axis=-1)
    return (np.asarray(arith.narrow(y, x.dtype)),)
