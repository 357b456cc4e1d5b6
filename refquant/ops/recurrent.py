"""ai.onnx RNN, GRU and LSTM (versions 7, 14, 22): one layer, forward, reverse or bidirectional.

    RNN:  H = f(X W^T + H' R^T + Wb + Rb)
    GRU:  z = f(X Wz^T + H' Rz^T + Wbz + Rbz)      r = f(X Wr^T + H' Rr^T + Wbr + Rbr)
          h = g(X Wh^T + (r . H') Rh^T + Rbh + Wbh)          (linear_before_reset = 0)
          h = g(X Wh^T + r . (H' Rh^T + Rbh) + Wbh)          (linear_before_reset = 1)
          H = (1 - z) . h + z . H'
    LSTM: i = f(X Wi^T + H' Ri^T + Pi . C' + Wbi + Rbi)     f = f(X Wf^T + H' Rf^T + Pf . C' + Wbf + Rbf)
          c = g(X Wc^T + H' Rc^T + Wbc + Rbc)             C = f . C' + i . c
          o = f(X Wo^T + H' Ro^T + Po . C + Wbo + Rbo)     H = o . h(C)      (input_forget = 1: f = 1 - i)

The whole recurrence runs in float64 (the state is never rounded); each element of Y, Y_h and Y_c is rounded
once to T. ``clip`` bounds every activation's input. Steps past a row's sequence length leave its state alone
and write 0 into Y. spec/ops/recurrent.md states every choice.
"""

from __future__ import annotations

import numpy as np

from .. import arith
from ..checks import require_dtype, require_input
from ..dtypes import dtype_name, types_at
from ..errors import AttributeValueError, DTypeError
from ..node import Node
from ..registry import register
from .recurrent_cells import (
    RECURRENT_TYPES,
    Recurrence,
    activations_of,
    clipper,
    lstm_cell,
    lstm_flag,
    optional_param,
    read_recurrence,
    run_directions,
    to_layout,
)

VERSIONS = (7, 14, 22)


def _common(node: Node, x, w, r, b, sequence_lens, initial_h, gates: int):
    """(geometry, X (seq, batch, input) float64, W, R, Wb + Rb as float64 per direction, initial H)."""
    for value, what in ((x, "X"), (w, "W"), (r, "R")):
        require_input(value, what)
    require_dtype(x, types_at(RECURRENT_TYPES, node.version), "X")
    for value, what in ((w, "W"), (r, "R")):
        if value.dtype != x.dtype:
            raise DTypeError(f"{what} has type {dtype_name(value.dtype)}, it must match X ({dtype_name(x.dtype)})")
    shape = read_recurrence(node, x, w.shape, r.shape, sequence_lens, gates)
    x64 = (np.swapaxes(x, 0, 1) if shape.layout else x).astype(np.float64)
    bias = optional_param(b, (shape.directions, 2 * gates * shape.hidden), x, "B")
    wb, rb = bias[:, : gates * shape.hidden], bias[:, gates * shape.hidden :]
    h0 = optional_param(initial_h, (shape.directions, shape.batch, shape.hidden), x, "initial_h",
                        layout=shape.layout, state=True)
    return shape, x64, w.astype(np.float64), r.astype(np.float64), wb, rb, h0


def _outputs(shape: Recurrence, y: np.ndarray, finals, dtype) -> tuple:
    """Y, and each final state, in the node's layout, rounded once to T."""
    return (
        np.asarray(arith.narrow(to_layout(y, shape.layout, sequence=True), dtype)),
        *(np.asarray(arith.narrow(to_layout(f, shape.layout, sequence=False), dtype)) for f in finals),
    )


def _gather(x64: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """X at time rows[b] for each batch row b: (batch, input)."""
    return x64[rows, np.arange(x64.shape[1])]


@register("RNN", since=VERSIONS)
def rnn(node: Node, x, w=None, r=None, b=None, sequence_lens=None, initial_h=None):
    """Y, Y_h of a simple recurrent layer: H = f(X W^T + H' R^T + Wb + Rb) (f: Tanh by default)."""
    shape, x64, w64, r64, wb, rb, h0 = _common(node, x, w, r, b, sequence_lens, initial_h, 1)
    functions = activations_of(node, ("Tanh",), shape.directions)
    clip = clipper(node)

    def step(d, t, rows, active, states):
        (h,) = states
        (f,) = functions[d]
        return (f(clip(_gather(x64, rows) @ w64[d].T + h @ r64[d].T + wb[d] + rb[d])),)

    y, finals = run_directions(shape, [h0], step)
    return _outputs(shape, y, finals, x.dtype)


@register("GRU", since=VERSIONS)
def gru(node: Node, x, w=None, r=None, b=None, sequence_lens=None, initial_h=None):
    """Y, Y_h of a gated recurrent unit layer (gates z, r, h; f Sigmoid and g Tanh by default)."""
    shape, x64, w64, r64, wb, rb, h0 = _common(node, x, w, r, b, sequence_lens, initial_h, 3)
    linear_before_reset = node.attr("linear_before_reset", 0, int)
    if linear_before_reset not in (0, 1):
        raise AttributeValueError(f"linear_before_reset must be 0 or 1, got {linear_before_reset}")
    functions = activations_of(node, ("Sigmoid", "Tanh"), shape.directions)
    clip = clipper(node)
    n = shape.hidden

    def step(d, t, rows, active, states):
        (h,) = states
        f, g = functions[d]
        xw = _gather(x64, rows) @ w64[d].T  # (batch, 3H): z, r, h
        rz, rr, rh = r64[d][:n], r64[d][n : 2 * n], r64[d][2 * n :]
        z = f(clip(xw[:, :n] + h @ rz.T + wb[d][:n] + rb[d][:n]))
        reset = f(clip(xw[:, n : 2 * n] + h @ rr.T + wb[d][n : 2 * n] + rb[d][n : 2 * n]))
        if linear_before_reset:
            candidate = xw[:, 2 * n :] + reset * (h @ rh.T + rb[d][2 * n :]) + wb[d][2 * n :]
        else:
            candidate = xw[:, 2 * n :] + (reset * h) @ rh.T + rb[d][2 * n :] + wb[d][2 * n :]
        hidden = g(clip(candidate))
        return ((1.0 - z) * hidden + z * h,)

    y, finals = run_directions(shape, [h0], step)
    return _outputs(shape, y, finals, x.dtype)


@register("LSTM", since=VERSIONS)
def lstm(node: Node, x, w=None, r=None, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
    """Y, Y_h, Y_c of a long short-term memory layer (f Sigmoid, g Tanh, h Tanh by default)."""
    shape, x64, w64, r64, wb, rb, h0 = _common(node, x, w, r, b, sequence_lens, initial_h, 4)
    c0 = optional_param(initial_c, h0.shape, x, "initial_c", layout=shape.layout, state=True)
    peepholes = optional_param(p, (shape.directions, 3 * shape.hidden), x, "P")
    input_forget = lstm_flag(node)
    functions = activations_of(node, ("Sigmoid", "Tanh", "Tanh"), shape.directions)
    clip = clipper(node)

    def step(d, t, rows, active, states):
        h, c = states
        gates = _gather(x64, rows) @ w64[d].T + h @ r64[d].T + wb[d] + rb[d]
        return lstm_cell(functions[d], clip, input_forget, peepholes[d], gates, c)

    y, finals = run_directions(shape, [h0, c0], step)
    return _outputs(shape, y, finals, x.dtype)

