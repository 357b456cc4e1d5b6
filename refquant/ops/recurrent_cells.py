"""The recurrent operators' shared parts (no kernels): their activation functions, attribute and input checks,
and the time loop over directions, sequence lengths and layouts.

Used by ai.onnx RNN, GRU, LSTM (refquant/ops/recurrent.py) and com.microsoft DynamicQuantizeLSTM
(refquant/ops/contrib_recurrent.py). Everything here computes in float64; the kernels round each output
element once to T. spec/ops/recurrent.md states every choice.

The loop (``run_directions``): for direction d and step t < max(sequence_lens), batch row b is *active* when
t < sequence_lens[b]; it reads X at time t (forward) or sequence_lens[b] - 1 - t (reverse), and its state is
updated only while active. Y holds each active step's hidden state at the time it read, 0 elsewhere; the
final states are the states after the row's last active step (the initial ones for a length of 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto as T

from ..checks import require_dtype
from ..dtypes import IEEE_FLOATS, dtype_name
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from .float_functions import sigmoid64

__all__ = [
    "RECURRENT_TYPES", "ACTIVATION_NAMES", "Activation", "Recurrence", "activation", "activations_of",
    "read_recurrence", "optional_param", "run_directions", "clipper", "to_layout", "lstm_cell", "lstm_flag",
]

#: T of RNN, GRU and LSTM by the version that added it (bfloat16 at 22); sequence_lens is int32 at every version
RECURRENT_TYPES = {7: IEEE_FLOATS, 22: (T.BFLOAT16,)}

Function = Callable[[np.ndarray], np.ndarray]


#: name (case-insensitive) -> (uses alpha, uses beta, default alpha, default beta, f(x, alpha, beta)); the
#: formulas of the operators' text, defaults "the same as of corresponding ONNX operators" (None: no default)
_TABLE: dict[str, tuple[bool, bool, float | None, float | None, Callable]] = {
    "relu": (False, False, None, None, lambda x, a, b: np.maximum(x, 0.0)),
    "tanh": (False, False, None, None, lambda x, a, b: np.tanh(x)),
    "sigmoid": (False, False, None, None, lambda x, a, b: sigmoid64(x)),
    "affine": (True, True, 1.0, 0.0, lambda x, a, b: a * x + b),
    "leakyrelu": (True, False, 0.01, None, lambda x, a, b: np.where(x >= 0, x, a * x)),
    "thresholdedrelu": (True, False, 1.0, None, lambda x, a, b: np.where(x >= a, x, 0.0)),
    "scaledtanh": (True, True, None, None, lambda x, a, b: a * np.tanh(b * x)),
    "hardsigmoid": (True, True, 0.2, 0.5, lambda x, a, b: np.minimum(np.maximum(a * x + b, 0.0), 1.0)),
    "elu": (True, False, 1.0, None, lambda x, a, b: np.where(x >= 0, x, a * np.expm1(x))),
    "softsign": (False, False, None, None, lambda x, a, b: x / (1.0 + np.abs(x))),
    "softplus": (False, False, None, None, lambda x, a, b: np.logaddexp(0.0, x)),
}
ACTIVATION_NAMES = (
    "Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu",
    "Softsign", "Softplus",
)


@dataclass(frozen=True)
class Activation:
    """One activation function with its alpha and beta (float32 values, as the model stores them)."""

    name: str
    alpha: float | None
    beta: float | None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _TABLE[self.name.lower()][4](x, self.alpha, self.beta)


def activation(name: str, alpha: float | None = None, beta: float | None = None) -> Activation:
    """The activation ``name`` with ``alpha``/``beta`` or the defaults of its ONNX operator."""
    entry = _TABLE.get(name.lower())
    if entry is None:
        raise AttributeValueError(f"activation '{name}' is not one of {', '.join(ACTIVATION_NAMES)}")
    uses_alpha, uses_beta, default_alpha, default_beta, _ = entry
    # the defaults are float attributes of the ONNX operators: their float32 values
    default_alpha, default_beta = (None if v is None else float(np.float32(v)) for v in (default_alpha, default_beta))
    alpha = (default_alpha if alpha is None else alpha) if uses_alpha else None
    beta = (default_beta if beta is None else beta) if uses_beta else None
    if (uses_alpha and alpha is None) or (uses_beta and beta is None):
        raise AttributeValueError(f"activation '{name}' needs activation_alpha and activation_beta (ONNX gives no default)")
    return Activation(name, alpha, beta)


def activations_of(node: Node, defaults: Sequence[str], directions: int) -> list[list[Activation]]:
    """The activations of each direction: ``activations`` lists len(defaults) names per direction (one list
    serves both directions of a bidirectional node); ``activation_alpha`` and ``activation_beta`` are consumed
    in that order, one value by each function that takes one; the rest take their ONNX operator's default."""
    per = len(defaults)
    names = node.attr("activations", None, list)
    if names is None:
        names = list(defaults) * directions
    elif len(names) == per and directions == 2:
        names = list(names) * 2
    elif len(names) != per * directions:
        raise AttributeValueError(
            f"activations lists {len(names)} functions; {node.op_type} takes {per} per direction ({per * directions})"
        )
    alphas = [float(np.float32(v)) for v in node.attr("activation_alpha", [], list)]
    betas = [float(np.float32(v)) for v in node.attr("activation_beta", [], list)]
    functions = []
    for name in names:
        entry = _TABLE.get(str(name).lower())
        if entry is None:
            raise AttributeValueError(f"activation '{name}' is not one of {', '.join(ACTIVATION_NAMES)}")
        alpha = alphas.pop(0) if entry[0] and alphas else None
        beta = betas.pop(0) if entry[1] and betas else None
        functions.append(activation(str(name), alpha, beta))
    if alphas or betas:
        raise AttributeValueError(
            f"activation_alpha/activation_beta hold {len(alphas)}/{len(betas)} value(s) more than the activations "
            f"{names} take"
        )
    return [functions[d * per : (d + 1) * per] for d in range(directions)]


def clipper(node: Node) -> Callable[[np.ndarray], np.ndarray]:
    """x clipped to [-clip, clip] (the ``clip`` attribute, float32), or x itself without one."""
    if not node.has("clip"):
        return lambda x: x
    bound = float(np.float32(node.attr("clip", kind=float)))
    if not bound >= 0:
        raise AttributeValueError(f"clip must be >= 0, got {bound}")
    return lambda x: np.clip(x, -bound, bound)


@dataclass(frozen=True)
class Recurrence:
    """A recurrent node's checked geometry (layout 0 views) and its per-row sequence lengths."""

    directions: int
    reverse: tuple[bool, ...]  # per direction
    seq_length: int
    batch: int
    input_size: int
    hidden: int
    lengths: np.ndarray  # int64, (batch,)
    layout: int


def to_layout(y: np.ndarray, layout: int, *, sequence: bool) -> np.ndarray:
    """Y (seq, dirs, batch, hidden) or a state (dirs, batch, hidden) in the node's layout."""
    if not layout:
        return y
    return np.ascontiguousarray(np.transpose(y, (2, 0, 1, 3) if sequence else (1, 0, 2)))


def read_recurrence(node: Node, x: np.ndarray, w_shape: tuple[int, ...], r_shape: tuple[int, ...],
                    sequence_lens, gates: int, *, weights_transposed: bool = False) -> Recurrence:
    """Check direction, layout, hidden_size, X, W and R shapes and sequence_lens; X's type is the caller's."""
    direction = node.attr("direction", "forward", str)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise AttributeValueError(f"direction must be forward, reverse or bidirectional, got '{direction}'")
    directions = 2 if direction == "bidirectional" else 1
    reverse = (False, True) if directions == 2 else (direction == "reverse",)
    layout = node.attr("layout", 0, int) if node.version >= 14 else 0
    if layout not in (0, 1):
        raise AttributeValueError(f"layout must be 0 or 1, got {layout}")
    if x.ndim != 3:
        raise ShapeError(f"X must have rank 3, got shape {x.shape}")
    seq_length, batch, input_size = (x.shape[1], x.shape[0], x.shape[2]) if layout else x.shape
    if len(r_shape) != 3:
        raise ShapeError(f"R must have rank 3, got shape {r_shape}")
    hidden = r_shape[1] if weights_transposed else r_shape[2]
    if node.has("hidden_size") and node.attr("hidden_size", kind=int) != hidden:
        raise ShapeError(f"hidden_size is {node.attr('hidden_size')}, R has shape {r_shape} (hidden size {hidden})")
    if weights_transposed:
        want_w, want_r = (directions, input_size, gates * hidden), (directions, hidden, gates * hidden)
    else:
        want_w, want_r = (directions, gates * hidden, input_size), (directions, gates * hidden, hidden)
    if tuple(w_shape) != want_w:
        raise ShapeError(f"W has shape {tuple(w_shape)}, expected {want_w} (direction {direction}, X {x.shape})")
    if tuple(r_shape) != want_r:
        raise ShapeError(f"R has shape {tuple(r_shape)}, expected {want_r}")
    if sequence_lens is None:
        lengths = np.full(batch, seq_length, np.int64)
    else:
        require_dtype(sequence_lens, {T.INT32}, "sequence_lens")
        if sequence_lens.shape != (batch,):
            raise ShapeError(f"sequence_lens has shape {sequence_lens.shape}, expected ({batch},): one per batch row")
        lengths = sequence_lens.astype(np.int64)
        if ((lengths < 0) | (lengths > seq_length)).any():
            raise ShapeError(f"sequence_lens {lengths.tolist()} must lie in [0, {seq_length}] (X's sequence length)")
    return Recurrence(directions, reverse, seq_length, batch, input_size, hidden, lengths, layout)


def optional_param(value, shape: tuple[int, ...], like: np.ndarray, what: str, *, layout: int = 0,
                   state: bool = False) -> np.ndarray:
    """An optional input as float64 of ``shape`` (layout 0), zeros when absent. A state input (initial_h,
    initial_c) comes in the node's layout."""
    if value is None:
        return np.zeros(shape, np.float64)
    if value.dtype != like.dtype:
        raise DTypeError(f"{what} has type {dtype_name(value.dtype)}, it must match X ({dtype_name(like.dtype)})")
    if state and layout:
        value = np.transpose(value, (1, 0, 2)) if value.ndim == 3 else value
    if value.shape != shape:
        want = (shape[1], shape[0], shape[2]) if state and layout else shape
        got = np.transpose(value, (1, 0, 2)).shape if state and layout else value.shape
        raise ShapeError(f"{what} has shape {got}, expected {want}")
    return value.astype(np.float64)


#: step(direction, t, rows, active, states) -> new states: rows[b] is the time index row b reads at step t
#: (meaningful where active[b]); states a tuple of (batch, hidden) float64 arrays, the hidden state first
Step = Callable[[int, int, np.ndarray, np.ndarray, tuple], tuple]


def run_directions(shape: Recurrence, initial: Sequence[np.ndarray], step: Step) -> tuple[np.ndarray, list[np.ndarray]]:
    """(Y (seq, dirs, batch, hidden) float64, [final state (dirs, batch, hidden) for each state]).

    ``initial``: each state's (dirs, batch, hidden) initial value."""
    y = np.zeros((shape.seq_length, shape.directions, shape.batch, shape.hidden), np.float64)
    finals = [np.array(s, np.float64, copy=True) for s in initial]
    steps = int(shape.lengths.max(initial=0))
    batch = np.arange(shape.batch)
    for d in range(shape.directions):
        states = tuple(f[d].copy() for f in finals)
        for t in range(steps):
            active = t < shape.lengths
            rows = np.where(active, shape.lengths - 1 - t, 0) if shape.reverse[d] else np.full(shape.batch, t)
            new = step(d, t, rows, active, states)
            states = tuple(np.where(active[:, None], n, s) for n, s in zip(new, states))
            y[rows[active], d, batch[active]] = states[0][active]
        for f, s in zip(finals, states):
            f[d] = s
    return y, finals


def lstm_cell(functions, clip, input_forget: bool, peepholes: np.ndarray, gates: np.ndarray, c: np.ndarray):
    """(H, C) of one LSTM step from the gates' pre-activations (batch, 4H) in iofc order, without the
    peephole terms, which this adds (``peepholes``: Pi, Po, Pf, each (H,)), and the previous cell state C'."""
    f, g, h = functions
    n = c.shape[-1]
    p_i, p_o, p_f = peepholes[:n], peepholes[n : 2 * n], peepholes[2 * n :]
    i = f(clip(gates[:, :n] + p_i * c))
    forget = 1.0 - i if input_forget else f(clip(gates[:, 2 * n : 3 * n] + p_f * c))
    cell = forget * c + i * g(clip(gates[:, 3 * n :]))
    o = f(clip(gates[:, n : 2 * n] + p_o * cell))
    return o * h(clip(cell)), cell


def lstm_flag(node: Node) -> bool:
    """input_forget (0 or 1)."""
    value = node.attr("input_forget", 0, int)
    if value not in (0, 1):
        raise AttributeValueError(f"input_forget must be 0 or 1, got {value}")
    return bool(value)
