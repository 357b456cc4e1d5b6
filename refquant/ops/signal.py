"""ai.onnx's signal ops (spec/ops/image.md): the window functions, DFT, STFT and MelWeightMatrix.

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
from ..checks import require_dtype, require_same_type
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


STFT_TYPES = IEEE_FLOATS + (T.BFLOAT16,)


def _scalar(value, what: str) -> int:
    require_dtype(value, SIZE_TYPES, what)
    if value.size != 1 or value.ndim > 1:
        raise ShapeError(f"{what} must be a scalar, got shape {value.shape}")
    return int(value.reshape(()))


def stft_geometry(node: Node, signal, frame_step, window=None, frame_length=None) -> tuple[int, int, int, bool]:
    """STFT's (frame step, frame length, frames, onesided), checked against the signal's shape."""
    if signal.ndim != 3 or signal.shape[-1] not in (1, 2):
        raise ShapeError(f"signal must be [batch, signal_length, 1 or 2], got shape {signal.shape}")
    step = _scalar(frame_step, "frame_step")
    if step < 1:
        raise ShapeError(f"frame_step must be >= 1, got {step}")
    if window is not None and window.ndim != 1:
        raise ShapeError(f"window must be 1-D, got shape {window.shape}")
    if frame_length is not None:
        length = _scalar(frame_length, "frame_length")
        if window is not None and window.shape[0] != length:
            raise ShapeError(f"window has {window.shape[0]} points, frame_length is {length}: they must be equal")
    else:
        length = signal.shape[1] if window is None else window.shape[0]
    if not 1 <= length <= signal.shape[1]:
        raise ShapeError(f"frame_length {length} must be in [1, signal_length {signal.shape[1]}]")
    onesided = bool(node.attr("onesided", 1, int))
    if onesided and signal.shape[-1] == 2:
        raise AttributeValueError("onesided=1 needs a real signal (last axis 1); a complex signal needs onesided=0")
    return step, length, (signal.shape[1] - length) // step + 1, onesided


@register("STFT", since=(17,))
def stft(node: Node, signal, frame_step, window=None, frame_length=None):
    """The short-time Fourier transform: frames = (signal_length - frame_length) // frame_step + 1 frames, frame
    f the samples [f * frame_step, f * frame_step + frame_length), each multiplied by the window (all ones when
    omitted) and transformed (numpy's complex128 FFT of length frame_length, from float64 values); onesided
    keeps the frame_length // 2 + 1 first frequencies. Output [batch, frames, bins, 2], rounded once to the
    signal's type."""
    require_dtype(signal, STFT_TYPES, "signal")
    require_same_type(window, signal, "window", "signal")
    step, length, frames, onesided = stft_geometry(node, signal, frame_step, window, frame_length)
    x64 = signal.astype(np.float64)
    z = x64[..., 0] if signal.shape[-1] == 1 else x64[..., 0] + 1j * x64[..., 1]  # [batch, signal_length]
    starts = np.arange(frames) * step
    framed = z[:, starts[:, None] + np.arange(length)[None, :]]  # [batch, frames, frame_length]
    if window is not None:
        framed = framed * window.astype(np.float64)
    spectrum = np.fft.fft(framed, n=length, axis=-1)
    if onesided:
        spectrum = spectrum[..., : length // 2 + 1]
    y = np.stack([spectrum.real, spectrum.imag], axis=-1)
    return (np.asarray(arith.narrow(y, signal.dtype)),)


MEL_OUTPUT_TYPES = WINDOW_OUTPUT_TYPES


def mel_geometry(num_mel_bins, dft_length, sample_rate) -> tuple[int, int, int]:
    """MelWeightMatrix's (mel bins, DFT length, sample rate), checked."""
    mels = _scalar(num_mel_bins, "num_mel_bins")
    n = _scalar(dft_length, "dft_length")
    rate = _scalar(sample_rate, "sample_rate")
    if mels < 1 or n < 1 or rate < 1:
        raise ShapeError(f"num_mel_bins ({mels}), dft_length ({n}) and sample_rate ({rate}) must be >= 1")
    return mels, n, rate


@register("MelWeightMatrix", since=(17,))
def mel_weight_matrix(node: Node, num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz):
    """Triangular filters on the mel scale mel(f) = 2595 log10(1 + f / 700), as onnx.reference and onnxruntime
    compute them (spec/ops/image.md, MelWeightMatrix): num_mel_bins + 2 points spaced (mel(upper) - mel(lower)) /
    (num_mel_bins + 2) apart from mel(lower), each back in hertz and to the spectrogram bin
    floor((dft_length + 1) * f / sample_rate); filter i rises from bin b[i] to 1 at b[i + 1] and falls to 0 at b[i + 2].
    float64 throughout, rounded once to output_datatype (integer types truncate, as Cast)."""
    mels, n, rate = mel_geometry(num_mel_bins, dft_length, sample_rate)
    edges = []
    for value, what in ((lower_edge_hertz, "lower_edge_hertz"), (upper_edge_hertz, "upper_edge_hertz")):
        require_dtype(value, STFT_TYPES, what)
        if value.size != 1 or value.ndim > 1:
            raise ShapeError(f"{what} must be a scalar, got shape {value.shape}")
        edges.append(float(value.reshape(())))
    lower, upper = edges
    if not 0 <= lower <= upper:
        raise ShapeError(f"the edges must satisfy 0 <= lower_edge_hertz <= upper_edge_hertz, got {lower}, {upper}")
    out_type = node.attr("output_datatype", T.FLOAT, int)
    if out_type not in MEL_OUTPUT_TYPES:
        raise AttributeValueError(f"output_datatype {out_type} is not one of MelWeightMatrix's output types")
    bins = n // 2 + 1
    low_mel = 2595 * np.log1p(lower / 700) / np.log(10)
    high_mel = 2595 * np.log1p(upper / 700) / np.log(10)
    step = (high_mel - low_mel) / (mels + 2)
    hertz = 700 * np.expm1((np.arange(mels + 2) * step + low_mel) / 2595 * np.log(10))
    points = np.floor((n + 1) * hertz / rate).astype(np.int64)
    if points[-1] >= bins:
        raise ShapeError(
            f"upper_edge_hertz {upper} falls in spectrogram bin {int(points[-1])}, past the last of the "
            f"{bins} bins of a {n}-point DFT at sample_rate {rate}"
        )
    w = np.zeros((bins, mels), np.float64)
    for i in range(mels):
        left, center, right = (int(v) for v in points[i:i + 3])
        if center == left:
            w[center, i] = 1.0
        else:
            j = np.arange(left, center + 1)
            w[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            w[j, i] = (right - j) / (right - center)
    dtype = np_dtype(out_type)
    if np.dtype(dtype).kind in "iu":
        return (np.trunc(w).astype(dtype),)
    return (np.asarray(arith.narrow(w, dtype)),)
