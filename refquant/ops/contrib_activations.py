"""com.microsoft Gelu, FastGelu, BiasGelu, QuickGelu and BiasAdd (as onnxruntime's contrib documentation defines them).

    Gelu:      Y = 0.5 X (1 + erf(X / sqrt 2))
    BiasGelu:  C = Gelu(A + B)                          B: 1-D, the last dimension of A
    FastGelu:  Y = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))),  v = X (+ bias, 1-D, last dimension)
    QuickGelu: Y = X sigmoid(alpha X)                   alpha: attribute, default 1.702
    BiasAdd:   Y = X + bias + skip                      X, skip: (N, S, C); bias: (C)

Each is evaluated in float64 on the exact inputs (the sums included) and rounded once to T
(spec/ops/contrib.md, "Transformer operators"). Under ``float_pipeline="mlas-float32"`` float32 Gelu and
BiasGelu replay onnxruntime's float32 loops around MLAS's erf (refquant.mlas_activations.gelu, spec/mlas.md).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith, mlas_activations
from ..checks import require_dtype, require_input, require_same_type
from ..errors import ShapeError
from ..kernel_options import FloatPipelineOptions
from ..node import Node
from ..registry import MS_DOMAIN, register
from .float_functions import gelu64, quick_gelu64, tanh_gelu64

#: element types of the contrib schemas (onnxruntime 1.32)
GELU_TYPES = (T.FLOAT16, T.FLOAT, T.DOUBLE, T.BFLOAT16)
BIAS_ADD_TYPES = (T.FLOAT16, T.FLOAT)


def _last_axis_bias(bias: np.ndarray, x: np.ndarray, what: str, like: str) -> None:
    """``bias`` is 1-D with the length of ``x``'s last dimension (onnxruntime's bias_gelu_helper, fast_gelu_helper)."""
    if x.ndim == 0:
        raise ShapeError(f"{like} must have rank >= 1")
    if bias.ndim != 1 or bias.shape[0] != x.shape[-1]:
        raise ShapeError(f"{what} has shape {bias.shape}; it must be 1-D of length {x.shape[-1]}, the last dimension of {like} {x.shape}")


@register("Gelu", since=(1,), domain=MS_DOMAIN, options=FloatPipelineOptions)
def gelu(node: Node, x):
    require_dtype(x, GELU_TYPES, "X")
    if node.options.replays_mlas_float32(x.dtype):  # onnxruntime's float32 loops around MLAS's erf
        return (mlas_activations.gelu(x),)
    return (arith.narrow(gelu64(x.astype(np.float64)), x.dtype),)


@register("BiasGelu", since=(1,), domain=MS_DOMAIN, options=FloatPipelineOptions)
def bias_gelu(node: Node, a, b=None):
    require_input(b, "B")
    require_dtype(a, GELU_TYPES, "A")
    require_same_type(b, a, "B", "A")
    _last_axis_bias(b, a, "B", "A")
    if node.options.replays_mlas_float32(a.dtype):  # the float32 sum A + B, then Gelu as onnxruntime computes it
        return (mlas_activations.gelu(a + b),)
    return (arith.narrow(gelu64(a.astype(np.float64) + b.astype(np.float64)), a.dtype),)


@register("FastGelu", since=(1,), domain=MS_DOMAIN)
def fast_gelu(node: Node, x, bias=None):
    require_dtype(x, GELU_TYPES, "X")
    v = x.astype(np.float64)
    if bias is not None:
        require_same_type(bias, x, "bias")
        _last_axis_bias(bias, x, "bias", "X")
        v = v + bias.astype(np.float64)
    return (arith.narrow(tanh_gelu64(v), x.dtype),)


@register("QuickGelu", since=(1,), domain=MS_DOMAIN)
def quick_gelu(node: Node, x):
    require_dtype(x, GELU_TYPES, "X")
    alpha = float(np.float32(node.attr("alpha", 1.702, float)))
    return (arith.narrow(quick_gelu64(x.astype(np.float64), alpha), x.dtype),)


@register("BiasAdd", since=(1,), domain=MS_DOMAIN)
def bias_add(node: Node, x, bias=None, skip=None):
    require_input(bias, "bias")
    require_input(skip, "skip")
    require_dtype(x, BIAS_ADD_TYPES, "X")
    require_same_type(bias, x, "bias")
    require_same_type(skip, x, "skip")
    if x.ndim != 3:
        raise ShapeError(f"X must be 3-D (N, S, C), got shape {x.shape}")
    if skip.shape != x.shape:
        raise ShapeError(f"skip has shape {skip.shape}; it must equal X's {x.shape}")
    _last_axis_bias(bias, x, "bias", "X")
    y = x.astype(np.float64) + bias.astype(np.float64) + skip.astype(np.float64)
    return (arith.narrow(y, x.dtype),)
