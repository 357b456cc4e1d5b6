"""Control flow with subgraphs: If, Loop, Scan (spec/ops/control.md).

A kernel runs its graph attributes through ``node.subgraph(name)``: the session binds each subgraph once,
when it builds (kernels and options resolved, as for the main graph), and runs it with the session's one
graph runner; names the subgraph does not define are read from the enclosing graph's values. Each node of
a branch or body is checked against the session's limits when it runs; Loop and Scan also count their
iterations against max_work (``count_iterations``), so a Loop with a huge trip count stops with
ResourceLimitError instead of running without bound.
"""

from __future__ import annotations

import numpy as np

from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register

__all__ = ["if_", "loop", "scan"]

_VERSIONS = (1, 11, 13, 16, 19, 21, 23, 24, 25)


def _scalar(value: np.ndarray, what: str):
    array = np.asarray(value)
    if array.size != 1:
        raise ShapeError(f"{what} must hold one element, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def _stack(items: list, what: str) -> np.ndarray:
    shapes = {np.shape(x) for x in items}
    if len(shapes) > 1:
        raise ShapeError(f"{what}: the iterations produced shapes {sorted(map(list, shapes))}; a scan output "
                         "stacks values of one shape")
    dtypes = {np.asarray(x).dtype for x in items}
    if len(dtypes) > 1:
        raise DTypeError(f"{what}: the iterations produced dtypes {sorted(map(str, dtypes))}")
    return np.stack([np.asarray(x) for x in items])


def _empty_scan_output(declared, what: str) -> np.ndarray:
    """A scan output of zero iterations: shape (0, *the body output's declared shape), unknown sizes as 0;
    (0,) when the body declares no shape; the declared element type (spec/ops/control.md)."""
    dtype, shape = declared
    if dtype is None:
        raise DTypeError(f"{what}: zero iterations and the body declares no element type for it")
    dims = () if shape is None else tuple(0 if d is None else d for d in shape)
    return np.zeros((0, *dims), dtype)


@register("If", since=_VERSIONS)
def if_(node: Node, cond):
    """Run then_branch when cond (one bool element) is true, else_branch otherwise; the branch's outputs.
    The branches' outputs may differ in shape (and, before opset 11, were required to agree: not checked)."""
    if cond is None:
        raise ShapeError("cond is required")
    branch = node.subgraph("then_branch" if bool(_scalar(cond, "cond")) else "else_branch")
    outputs = branch([])
    if len(outputs) != len(node.proto.output):
        raise ShapeError(f"{branch.label} has {len(outputs)} output(s), the node names {len(node.proto.output)}")
    return tuple(outputs)


@register("Loop", since=_VERSIONS)
def loop(node: Node, trip_count=None, cond=None, *initial):
    """for i in range(M) while cond: (cond, carried..., scans...) = body(i, cond, carried...).

    Outputs: the final loop-carried values, then each scan output stacked on a new axis 0. M and cond are both
    optional (absent: no bound from it). The body sees cond as a bool scalar (True when the input is absent)."""
    body = node.subgraph("body")
    carried = list(initial)
    n = len(carried)
    if len(body.input_names) != n + 2:
        raise ShapeError(f"body takes {len(body.input_names)} input(s); Loop with {n} loop-carried value(s) "
                         f"gives it {n + 2} (iteration number, condition, the loop-carried values)")
    k = len(body.output_names) - 1 - n
    if k < 0:
        raise ShapeError(f"body has {len(body.output_names)} output(s); it must return the condition and the "
                         f"{n} loop-carried value(s)")
    limit = None if trip_count is None else int(_scalar(trip_count, "M"))
    keep_going = True if cond is None else bool(_scalar(cond, "cond"))
    scans: list[list] = [[] for _ in range(k)]
    i = 0
    while keep_going and (limit is None or i < limit):
        body.count_iterations(i + 1)
        outputs = body([np.array(i, np.int64), np.array(keep_going), *carried])
        keep_going = bool(_scalar(outputs[0], "the body's condition output"))
        carried = list(outputs[1 : 1 + n])
        for collected, value in zip(scans, outputs[1 + n :]):
            collected.append(value)
        i += 1
    stacked = []
    for index, collected in enumerate(scans):
        what = f"scan output {index} ('{body.output_names[1 + n + index]}')"
        stacked.append(_stack(collected, what) if collected else
                       _empty_scan_output(body.output_types[1 + n + index], what))
    return (*carried, *stacked)


def _axes(node: Node, name: str, count: int, default: int) -> list[int]:
    values = node.attr_ints(name, [default] * count)
    if len(values) != count:
        raise AttributeValueError(f"{name} has {len(values)} value(s), the node has {count} of those")
    return values


@register("Scan", since=(9, 11, 16, 19, 21, 23, 24, 25))
def scan(node: Node, *inputs):
    """Scan (opset 9 form): N states, M scan inputs sliced along scan_input_axes (in scan_input_directions);
    body(states..., slices...) -> (states..., scan elements...); scan outputs stacked along
    scan_output_axes, in scan_output_directions (1: the last iteration's element first)."""
    body = node.subgraph("body")
    m = node.attr("num_scan_inputs", kind=int)
    n = len(inputs) - m
    if m < 1 or n < 0:
        raise AttributeValueError(f"num_scan_inputs is {m}; the node has {len(inputs)} input(s)")
    k = len(body.output_names) - n
    if len(body.input_names) != n + m or k < 0:
        raise ShapeError(f"body takes {len(body.input_names)} input(s) and has {len(body.output_names)} output(s); "
                         f"Scan gives it {n} state(s) and {m} scan input(s)")
    states, xs = list(inputs[:n]), [np.asarray(x) for x in inputs[n:]]
    in_dirs = _axes(node, "scan_input_directions", m, 0)
    in_axes = _axes(node, "scan_input_axes", m, 0)
    out_dirs = _axes(node, "scan_output_directions", k, 0)
    out_axes = _axes(node, "scan_output_axes", k, 0)
    for name, values in (("scan_input_directions", in_dirs), ("scan_output_directions", out_dirs)):
        if any(v not in (0, 1) for v in values):
            raise AttributeValueError(f"{name} must be 0 (forward) or 1 (reverse), got {values}")
    axes = []
    for index, (x, axis) in enumerate(zip(xs, in_axes)):
        if not -x.ndim <= axis < x.ndim:
            raise AttributeValueError(f"scan_input_axes[{index}] = {axis} is outside rank {x.ndim}")
        axes.append(axis % x.ndim)
    lengths = {x.shape[axis] for x, axis in zip(xs, axes)}
    if len(lengths) != 1:
        raise ShapeError(f"the scan inputs have sequence lengths {sorted(lengths)} along their scan axes; "
                         "they must agree")
    length = lengths.pop()
    scans: list[list] = [[] for _ in range(k)]
    for t in range(length):
        body.count_iterations(t + 1)
        slices = [np.take(x, length - 1 - t if d else t, axis=axis) for x, d, axis in zip(xs, in_dirs, axes)]
        outputs = body([*states, *slices])
        states = list(outputs[:n])
        for collected, value in zip(scans, outputs[n:]):
            collected.append(value)
    results = []
    for index, collected in enumerate(scans):
        what = f"scan output {index} ('{body.output_names[n + index]}')"
        if collected:
            stacked = _stack(collected[::-1] if out_dirs[index] else collected, what)
        else:
            stacked = _empty_scan_output(body.output_types[n + index], what)
        axis = out_axes[index]
        if not -stacked.ndim <= axis < stacked.ndim:
            raise AttributeValueError(f"scan_output_axes[{index}] = {axis} is outside rank {stacked.ndim}")
        results.append(np.moveaxis(stacked, 0, axis % stacked.ndim))
    return (*states, *results)
