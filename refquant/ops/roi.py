"""RoiAlign and MaxRoiPool (spec/ops/image.md).

    RoiAlign:   Y[r, c, ph, pw] = the average (or max) over a sampling grid in bin (ph, pw) of roi r of X[b_r, c]
                bilinearly interpolated (ONNX's and onnxruntime's sampling rule, as onnx.reference)
    MaxRoiPool: Y[r, c, ph, pw] = max of X[b_r, c] over bin (ph, pw) of roi r, rounded to whole pixels (Caffe)

Coordinates, weights and sums are float64; each output is rounded once to its type.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_same_type
from ..dtypes import IEEE_FLOATS, types_at
from ..errors import AttributeValueError, ShapeError
from ..node import Node
from ..registry import register

ROI_TYPES = {1: IEEE_FLOATS, 22: (T.BFLOAT16,)}


def roi_align_axis(start: float, bin_size: float, bins: int, grid: int, length: int):
    """Along one axis of RoiAlign: per (bin, sample) the low and high pixel, their weights and whether the
    sample is inside [-1, length] (onnx.reference's pre_calc_for_bilinear_interpolate)."""
    p = np.arange(bins, dtype=np.float64)[:, None]
    i = np.arange(grid, dtype=np.float64)[None, :]
    y = start + p * bin_size + (i + 0.5) * bin_size / grid  # (bins, grid)
    inside = (y >= -1.0) & (y <= length)
    y = np.maximum(np.where(inside, y, 0.0), 0.0)
    low = np.floor(y).astype(np.int64)
    last = low >= length - 1
    low = np.where(last, length - 1, low)
    high = np.where(last, length - 1, low + 1)
    y = np.where(last, low, y)
    frac = y - low
    return low, high, 1.0 - frac, frac, inside


@register("RoiAlign", since=(10, 16, 22))
def roi_align(node: Node, x, rois, batch_indices):
    require_dtype(x, types_at(ROI_TYPES, node.version), "X")
    require_same_type(rois, x, "rois")
    require_dtype(batch_indices, (T.INT64,), "batch_indices")
    if x.ndim != 4:
        raise ShapeError(f"X must be 4-D (N, C, H, W), got shape {x.shape}")
    if rois.ndim != 2 or rois.shape[1] != 4 or batch_indices.shape != (rois.shape[0],):
        raise ShapeError(f"rois must be (num_rois, 4) and batch_indices (num_rois,), got {rois.shape}, {batch_indices.shape}")
    mode = node.attr("mode", "avg", str)
    if mode not in ("avg", "max"):
        raise AttributeValueError(f"mode must be 'avg' or 'max', got {mode!r}")
    transform = "output_half_pixel" if node.version < 16 else node.attr("coordinate_transformation_mode", "half_pixel", str)
    if transform not in ("half_pixel", "output_half_pixel"):
        raise AttributeValueError(f"coordinate_transformation_mode must be half_pixel or output_half_pixel, got {transform!r}")
    half_pixel = transform == "half_pixel"
    oh, ow = node.attr("output_height", 1, int), node.attr("output_width", 1, int)
    sampling_ratio = node.attr("sampling_ratio", 0, int)
    scale = float(np.float32(node.attr("spatial_scale", 1.0, float)))
    if oh < 1 or ow < 1 or sampling_ratio < 0:
        raise AttributeValueError(f"output_height and output_width must be >= 1 and sampling_ratio >= 0, got {oh}, {ow}, {sampling_ratio}")
    n, channels, height, width = x.shape
    if ((batch_indices < 0) | (batch_indices >= n)).any():
        raise ShapeError(f"batch_indices must lie in [0, {n}), got {batch_indices.tolist()}")
    y = np.zeros((rois.shape[0], channels, oh, ow), np.float64)
    r64 = rois.astype(np.float64)
    offset = 0.5 if half_pixel else 0.0
    for r in range(rois.shape[0]):
        x1, y1, x2, y2 = (v * scale - offset for v in r64[r])
        roi_w, roi_h = x2 - x1, y2 - y1
        if not half_pixel:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        if not (math.isfinite(roi_w) and math.isfinite(roi_h) and math.isfinite(x1) and math.isfinite(y1)):
            y[r] = np.nan
            continue
        bin_h, bin_w = roi_h / oh, roi_w / ow
        grid_h = sampling_ratio or math.ceil(roi_h / oh)
        grid_w = sampling_ratio or math.ceil(roi_w / ow)
        if grid_h <= 0 or grid_w <= 0 or height == 0 or width == 0:
            continue  # no samples (an empty or inverted roi): 0, as onnx.reference
        count = grid_h * grid_w
        yl, yh, wyl, wyh, iny = roi_align_axis(y1, bin_h, oh, grid_h, height)
        xl, xh, wxl, wxh, inx = roi_align_axis(x1, bin_w, ow, grid_w, width)
        image = x[int(batch_indices[r])].astype(np.float64)  # (C, H, W)
        inside = iny[:, :, None, None] & inx[None, None, :, :]  # (oh, gh, ow, gw)
        terms = []
        for ya, wy in ((yl, wyl), (yh, wyh)):
            for xa, wx in ((xl, wxl), (xh, wxh)):
                w = wy[:, :, None, None] * wx[None, None, :, :]
                v = image[:, ya[:, :, None, None], xa[None, None, :, :]]  # (C, oh, gh, ow, gw)
                terms.append(np.where(inside, w * v, 0.0))
        if mode == "avg":
            samples = terms[0] + terms[1] + terms[2] + terms[3]
            y[r] = samples.sum(axis=(2, 4)) / count
        else:
            samples = np.maximum(np.maximum(terms[0], terms[1]), np.maximum(terms[2], terms[3]))
            y[r] = samples.max(axis=(2, 4))
    return (np.asarray(arith.narrow(y, x.dtype)),)


def round_half_away(v: float) -> int:
    """C's round: halves away from zero."""
    return int(math.floor(v + 0.5)) if v >= 0 else int(math.ceil(v - 0.5))


@register("MaxRoiPool", since=(1, 22))
def max_roi_pool(node: Node, x, rois):
    require_dtype(x, types_at(ROI_TYPES, node.version), "X")
    require_same_type(rois, x, "rois")
    if x.ndim != 4:
        raise ShapeError(f"X must be 4-D (N, C, H, W), got shape {x.shape}")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ShapeError(f"rois must be (num_rois, 5) [batch_index, x1, y1, x2, y2], got shape {rois.shape}")
    pooled = node.attr_ints("pooled_shape", None)
    if pooled is None or len(pooled) != 2 or min(pooled) < 1:
        raise AttributeValueError(f"pooled_shape must be two positive ints, got {pooled}")
    ph_n, pw_n = (int(v) for v in pooled)
    scale = float(np.float32(node.attr("spatial_scale", 1.0, float)))
    n, channels, height, width = x.shape
    y = np.zeros((rois.shape[0], channels, ph_n, pw_n), np.float64)
    r64 = rois.astype(np.float64)
    if not np.isfinite(r64).all():
        raise ShapeError("rois must be finite")
    for r in range(rois.shape[0]):
        b = int(r64[r, 0])  # truncated toward zero, as onnxruntime's static_cast
        if not 0 <= b < n:
            raise ShapeError(f"roi {r} has batch index {r64[r, 0]}, outside [0, {n})")
        x1, y1, x2, y2 = (round_half_away(v * scale) for v in r64[r, 1:])
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bin_h, bin_w = roi_h / ph_n, roi_w / pw_n
        image = x[b].astype(np.float64)
        for ph in range(ph_n):
            hs = min(max(math.floor(ph * bin_h) + y1, 0), height)
            he = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
            for pw in range(pw_n):
                ws = min(max(math.floor(pw * bin_w) + x1, 0), width)
                we = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                if he > hs and we > ws:
                    y[r, :, ph, pw] = image[:, hs:he, ws:we].max(axis=(1, 2))
    return (np.asarray(arith.narrow(y, x.dtype)),)
