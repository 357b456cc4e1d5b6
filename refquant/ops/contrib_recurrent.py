"""com.microsoft DynamicQuantizeLSTM (onnxruntime's contrib op, version 1): ai.onnx LSTM whose two products
take int8/uint8 weights and dynamically quantized (uint8) activations.

    W: (dirs, input, 4H), R: (dirs, H, 4H)        int8 or uint8, gates i, o, f, c along the last axis
    W_scale, W_zero_point: (dirs,) or (dirs, 4H)  per direction or per column (R_scale, R_zero_point likewise)
    (Xq, sx, zx) = DynamicQuantizeLinear(X[:max(sequence_lens)])         once, for every step and direction
    (Hq, sh, zh) = DynamicQuantizeLinear(float32(H'))                    each step, the whole batch's H'
    gates        = sx * sW[j] * ((Xq - zx) @ (W - zW))[j] + sh * sR[j] * ((Hq - zh) @ (R - zR))[j] + Wb + Rb
    then ai.onnx LSTM's cell (peepholes, clip, activations, input_forget) on these gates

Integer products exact (int64); everything else in float64, each output element rounded once to float32.
The semantics are onnxruntime's CPU kernel's (contrib_ops/cpu/quantization/dynamic_quantize_lstm.cc, through
providers/cpu/rnn/uni_directional_lstm.cc and the quantized ComputeGemm of rnn_helpers.cc); spec/ops/recurrent.md
("DynamicQuantizeLSTM") states every choice and where onnxruntime computes otherwise.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_input
from ..dtypes import EIGHT_BIT_INTS, dtype_name
from ..errors import DTypeError, ShapeError
from ..kernel_options import DynamicQuantizeMatMulOptions
from ..node import Node
from ..qparams import check_scale
from ..registry import MS_DOMAIN, register
from .dynamic_quantization import dynamic_quantize
from .integer_products import exact_integer_matmul, minus_zero_point, u8s8_pair_excess
from .recurrent_cells import (
    activations_of,
    clipper,
    lstm_cell,
    lstm_flag,
    optional_param,
    read_recurrence,
    run_directions,
)


def _weight_params(scale, zero_point, weights: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(scale float64 (dirs, 4H), zero point int16 (dirs, 1, 4H)) from per-direction or per-column parameters."""
    require_input(scale, f"{what}_scale")
    require_input(zero_point, f"{what}_zero_point")
    require_dtype(scale, {T.FLOAT}, f"{what}_scale")
    check_scale(scale, f"{what}_scale")
    if zero_point.dtype != weights.dtype:
        raise DTypeError(
            f"{what}_zero_point has type {dtype_name(zero_point.dtype)}, it must match {what} ({dtype_name(weights.dtype)})"
        )
    dirs, columns = weights.shape[0], weights.shape[2]
    for value, name in ((scale, f"{what}_scale"), (zero_point, f"{what}_zero_point")):
        if value.shape not in ((dirs,), (dirs, columns)):
            raise ShapeError(
                f"{name} has shape {value.shape}: ({dirs},) per direction or ({dirs}, {columns}) per column"
            )
    scale64 = np.broadcast_to(scale.astype(np.float64).reshape(dirs, -1), (dirs, columns))
    zp = np.broadcast_to(zero_point.reshape(dirs, 1, -1), (dirs, 1, columns))
    return scale64, zp


def _product(q: np.ndarray, q_scale, q_zero_point, weights: np.ndarray, w_scale: np.ndarray, w_zero_point,
             saturate_pairs: bool) -> np.ndarray:
    """q_scale * w_scale[j] * ((q - q_zp) @ (weights - w_zp))[j] in float64; the integer product exact, plus,
    with ``saturate_pairs`` (profile option avx2_u8s8_saturation), what onnxruntime's U8S8 GEMM without VNNI
    changes (int8 weights)."""
    acc = exact_integer_matmul(
        minus_zero_point(q, q_zero_point).astype(np.int64), minus_zero_point(weights, w_zero_point).astype(np.int64)
    )
    excess = u8s8_pair_excess(q, weights) if saturate_pairs else None
    if excess is not None:
        acc = acc + excess
    return acc.astype(np.float64) * (float(q_scale) * w_scale)


@register("DynamicQuantizeLSTM", since=(1,), domain=MS_DOMAIN, options=DynamicQuantizeMatMulOptions)
def dynamic_quantize_lstm(node: Node, x, w=None, r=None, b=None, sequence_lens=None, initial_h=None,
                          initial_c=None, p=None, w_scale=None, w_zero_point=None, r_scale=None, r_zero_point=None):
    """Y, Y_h, Y_c of an LSTM layer with quantized W and R and dynamically quantized X and H (float32)."""
    for value, what in ((x, "X"), (w, "W"), (r, "R")):
        require_input(value, what)
    require_dtype(x, {T.FLOAT}, "X")
    require_dtype(w, EIGHT_BIT_INTS, "W")
    require_dtype(r, EIGHT_BIT_INTS, "R")
    shape = read_recurrence(node, x, w.shape, r.shape, sequence_lens, 4, weights_transposed=True)
    ws, wzp = _weight_params(w_scale, w_zero_point, w, "W")
    rs, rzp = _weight_params(r_scale, r_zero_point, r, "R")
    n = shape.hidden
    bias = optional_param(b, (shape.directions, 8 * n), x, "B")
    h0 = optional_param(initial_h, (shape.directions, shape.batch, n), x, "initial_h")
    c0 = optional_param(initial_c, h0.shape, x, "initial_c")
    peepholes = optional_param(p, (shape.directions, 3 * n), x, "P")
    input_forget = lstm_flag(node)
    functions = activations_of(node, ("Sigmoid", "Tanh", "Tanh"), shape.directions)
    clip = clipper(node)
    options: DynamicQuantizeMatMulOptions = node.options
    quantize, saturate = options.quantize_a, options.product.saturate_u8s8_pairs
    with_y = bool(node.proto.output) and bool(node.proto.output[0])

    steps = int(shape.lengths.max(initial=0))
    xw = np.zeros((shape.directions, shape.seq_length, shape.batch, 4 * n), np.float64)
    if steps:
        xq, x_scale, x_zp = dynamic_quantize(np.ascontiguousarray(x[:steps]), quantize)
        flat = xq.reshape(-1, shape.input_size)
        for d in range(shape.directions):
            xw[d, :steps] = _product(flat, x_scale, x_zp, w[d], ws[d], wzp[d], saturate).reshape(steps, shape.batch, 4 * n)
    batch = np.arange(shape.batch)
    started = shape.lengths > 0
    # what onnxruntime's buffer holds for H' in a row whose sequence has ended: 0 where Y is an output (the
    # zeros written into Y), else the row's last hidden state (0 for a row that never started)
    previous_active = np.ones(shape.batch, bool)

    def step(d, t, rows, active, states):
        nonlocal previous_active
        h, c = states
        if t == 0:
            previous_active = np.ones(shape.batch, bool)
        ended = ~previous_active
        gemm_h = np.where((ended & (with_y | ~started))[:, None], 0.0, h)
        hq, h_scale, h_zp = dynamic_quantize(gemm_h.astype(np.float32), quantize)
        gates = xw[d, rows, batch] + _product(hq, h_scale, h_zp, r[d], rs[d], rzp[d], saturate) + bias[d, : 4 * n] + bias[d, 4 * n :]
        previous_active = active
        return lstm_cell(functions[d], clip, input_forget, peepholes[d], gates, c)

    y, (y_h, y_c) = run_directions(shape, [h0, c0], step)
    return tuple(np.asarray(arith.narrow(v, np.float32)) for v in (y, y_h, y_c))
