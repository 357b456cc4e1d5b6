"""com.microsoft FusedConv: Conv, plus the optional sum input Z, then an activation (onnxruntime's
contrib_ops/cpu/fused_conv.cc: the Conv kernel with an MLAS_ACTIVATION; Z added before the activation).

    Y = activation(B[m] + sum_{c, t} W[m, c, t] * Xpad[n, g(m) * C/group + c, j * s + t * d] + Z)

activation (activation_params): Relu, Tanh, Sigmoid, LeakyRelu (alpha), Clip (min, max), HardSigmoid
(alpha, beta); absent: none. Spec profile: the sum in float64 (refquant.window's geometry, as Conv's spec body
in refquant/ops/nn.py), the activation in float64, one rounding to float32. spec/ops/contrib.md.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_same_type
from ..errors import AttributeValueError, ShapeError
from ..node import Node
from ..registry import MS_DOMAIN, register
from ..window import conv_bias, conv_columns, conv_output, conv_window, grouped_weights, pad

#: onnxruntime registers FusedConv for float on the CPU (and float16 only on ARM builds)
FUSED_CONV_TYPES = (T.FLOAT,)
#: activation -> number of activation_params (fused_conv.cc's GetFusedActivationAttr, activation_functors)
ACTIVATIONS = {"Relu": 0, "Tanh": 0, "Sigmoid": 0, "LeakyRelu": 1, "Clip": 2, "HardSigmoid": 2}


def _activation(node: Node):
    name = node.attr("activation", None, str)
    params = [float(np.float32(p)) for p in (node.attr("activation_params", [], list))]
    if name is None or name == "":
        return lambda y: y
    if name not in ACTIVATIONS:
        raise AttributeValueError(f"activation {name!r} is not supported (one of {', '.join(ACTIVATIONS)})")
    if len(params) != ACTIVATIONS[name]:
        raise AttributeValueError(f"activation {name} needs {ACTIVATIONS[name]} activation_params, got {params}")
    if name == "Relu":
        return lambda y: np.maximum(y, 0.0)
    if name == "Tanh":
        return np.tanh
    if name == "Sigmoid":
        return lambda y: 1.0 / (1.0 + np.exp(-y))
    if name == "LeakyRelu":
        return lambda y: np.where(y >= 0, y, params[0] * y)
    if name == "Clip":
        return lambda y: np.minimum(np.maximum(y, params[0]), params[1])
    return lambda y: np.clip(params[0] * y + params[1], 0.0, 1.0)  # HardSigmoid


@register("FusedConv", since=(1,), domain=MS_DOMAIN)
def fused_conv(node: Node, x, w, b=None, z=None):
    require_dtype(x, FUSED_CONV_TYPES, "X")
    require_same_type(w, x, "W")
    require_same_type(b, x, "B")
    require_same_type(z, x, "Z")
    activation = _activation(node)
    window, group = conv_window(node, x.shape, w.shape)
    columns = conv_columns(pad(x.astype(np.float64), window, 0.0), window, group)
    y = conv_output(np.matmul(grouped_weights(w.astype(np.float64), group), columns), window)
    if b is not None:
        y += conv_bias(b.astype(np.float64), w.shape[0], len(window.kernel))
    if z is not None:
        if z.shape != y.shape:
            raise ShapeError(f"Z has shape {z.shape}; it must be the output's {y.shape}")
        y = y + z.astype(np.float64)
    return (arith.narrow(activation(y), x.dtype),)
