"""Window maxima, and which taps of a window read the input: shared by MaxPool and GlobalMaxPool
(refquant/ops/nn.py) and the com.microsoft pools (refquant/ops/contrib_pool.py: NhwcMaxPool, QLinearAveragePool).

    MaxPool: y = max over the taps of each window inside the input (padding never wins)

NaN propagates; +0 is above -0 (spec/ops/nn.md).
"""

from __future__ import annotations

import numpy as np

from ..checks import is_integer
from ..errors import AttributeValueError
from ..node import Node
from ..window import Window, pad, resolve_window, windows

__all__ = ["taps_inside", "window_max", "is_positive_zero", "zero_sign_of_max"]


def taps_inside(taps: list[np.ndarray], window: Window, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Boolean (*output, *kernel): True where the tap reads the input, False in the padding.

    Raises when some output would pool padding only.
    """
    rank = len(spatial_shape)
    mask = np.ones((1,) * 2 * rank, dtype=bool)
    for axis, (coords, size) in enumerate(zip(taps, spatial_shape)):
        inside = (coords >= 0) & (coords < size)
        empty = ~inside.any(axis=1)
        if empty.any():
            raise AttributeValueError(
                f"output {int(np.argmax(empty))} along spatial axis {axis} would pool padding only "
                f"(padding {window.pads_begin[axis]} + {window.pads_end[axis]}, kernel {window.kernel[axis]}, "
                f"dilation {window.dilations[axis]})"
            )
        shape = [1] * 2 * rank
        shape[axis], shape[rank + axis] = inside.shape
        mask = mask & inside.reshape(shape)
    return mask


def _window_max(view: np.ndarray, kernel: tuple[int, ...]) -> np.ndarray:
    """Maximum over the trailing kernel axes of a window view, one np.maximum per tap (NaN propagates)."""
    taps = list(np.ndindex(kernel))
    y = view[(Ellipsis, *taps[0])].copy()
    for tap in taps[1:]:
        np.maximum(y, view[(Ellipsis, *tap)], out=y)
    if is_integer(y) or not (y == 0).any():
        return y
    positive_zero = np.any([is_positive_zero(view[(Ellipsis, *tap)]) for tap in taps], axis=0)
    return zero_sign_of_max(y, positive_zero)


def is_positive_zero(values: np.ndarray) -> np.ndarray:
    """Boolean: True where ``values`` is +0 (not -0)."""
    return (values == 0) & ~np.signbit(values)


def zero_sign_of_max(y: np.ndarray, positive_zero: np.ndarray) -> np.ndarray:
    """A zero maximum is +0 when some reduced value is +0, else -0 (IEEE 754-2019 maximum: -0 < +0);
    np.maximum keeps whichever zero came first and np.max whichever its vector order meets."""
    zero = np.zeros((), y.dtype)
    return np.where(y == 0, np.where(positive_zero, zero, -zero), y)


def window_max(node: Node, x: np.ndarray, *, ceil_mode: bool):
    """(window, padded window view, Y) of MaxPool on (N, C, D1, ...) ``x``: the maximum over each window,
    padding excluded (it is filled with a value never above a real element)."""
    window = resolve_window(node, x.shape[2:], ceil_mode=ceil_mode)
    lowest = np.iinfo(x.dtype).min if is_integer(x) else -np.inf
    view = windows(pad(x, window, lowest), window)
    return window, view, _window_max(view, window.kernel)
