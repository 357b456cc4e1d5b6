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
from ..dtypes import IEEE_FLOATS, NARROW_INTS, WIDE_INTS, np_dtype
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
