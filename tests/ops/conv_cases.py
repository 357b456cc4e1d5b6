"""Convolutions defined independently of refquant, shared by the integer and the float Conv tests: the ONNX
padding formulas, a loop-by-loop convolution, and a hypothesis strategy for valid convolution geometries."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st


def explicit_pads(auto_pad, spatial, kernel, strides, dilations, pads):
    """pads for NOTSET / VALID / SAME_*, from the ONNX formulas."""
    rank = len(spatial)
    if auto_pad == "NOTSET":
        return list(pads)
    if auto_pad == "VALID":
        return [0] * 2 * rank
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin + end


def naive_conv(x, w, group, strides, dilations, pads):
    """y[n, m, j] = sum over (c, t) of w[m, c, t] * xpad[n, group_of(m) * C/g + c, j * s + t * d]; loops, int64/float64."""
    rank = w.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + rank]) for i in range(rank)])
    extent = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dilations)]
    out = [(xp.shape[2 + i] - extent[i]) // strides[i] + 1 for i in range(rank)]
    y = np.zeros((x.shape[0], w.shape[0], *out), dtype=np.result_type(x, w))
    per_group_in, per_group_out = x.shape[1] // group, w.shape[0] // group
    for m in range(w.shape[0]):
        g = m // per_group_out
        for position in itertools.product(*map(range, out)):
            taps = tuple(slice(p * s, p * s + e, d) for p, s, e, d in zip(position, strides, extent, dilations))
            patch = xp[(slice(None), slice(g * per_group_in, (g + 1) * per_group_in), *taps)]
            y[(slice(None), m, *position)] = (patch * w[m]).reshape(x.shape[0], -1).sum(axis=1)
    return y


@st.composite
def conv_cases(draw, max_rank=3):
    """x shape, w shape and attributes of a valid convolution (any rank 1..3, groups, depthwise)."""
    rank = draw(st.integers(1, max_rank))
    group = draw(st.integers(1, 3))
    per_group_in = draw(st.integers(1, 2))
    per_group_out = draw(st.integers(1, 2))
    kernel = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    strides = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    dilations = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))
    pads = draw(st.lists(st.integers(0, 2), min_size=2 * rank, max_size=2 * rank)) if auto_pad == "NOTSET" else None
    max_side = 7 if rank < 3 else 4
    spatial = [
        draw(st.integers(max(1, (k - 1) * d + 1 - (0 if pads is None else pads[i] + pads[i + rank])), max_side + 2 * d))
        for i, (k, d) in enumerate(zip(kernel, dilations))
    ]
    if auto_pad == "VALID":
        spatial = [max(s, (k - 1) * d + 1) for s, k, d in zip(spatial, kernel, dilations)]
    attrs = {"group": group, "strides": strides, "dilations": dilations, "auto_pad": auto_pad}
    if draw(st.booleans()):
        attrs["kernel_shape"] = kernel
    if pads is not None:
        attrs["pads"] = pads
    x_shape = (draw(st.integers(1, 2)), group * per_group_in, *spatial)
    w_shape = (group * per_group_out, per_group_in, *kernel)
    explicit = explicit_pads(auto_pad, spatial, kernel, strides, dilations, pads)
    return x_shape, w_shape, attrs, (group, strides, dilations, explicit)
