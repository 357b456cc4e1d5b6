"""RoiAlign, MaxRoiPool and NonMaxSuppression (spec/ops/image.md).

    RoiAlign:   Y[r, c, ph, pw] = the average (or max) over a sampling grid in bin (ph, pw) of roi r of X[b_r, c]
                bilinearly interpolated (ONNX's and onnxruntime's sampling rule, as onnx.reference)
    MaxRoiPool: Y[r, c, ph, pw] = max of X[b_r, c] over bin (ph, pw) of roi r, rounded to whole pixels (Caffe)
    NonMaxSuppression: [batch, class, box] of the boxes kept, greedily by score, whose IoU with every box
                kept before is <= iou_threshold

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


# ----------------------------------------------------------------------------
# NonMaxSuppression
# ----------------------------------------------------------------------------


def _optional_scalar(value, name: str, default, kind):
    """A scalar input (0-D or one element), or ``default`` when it is missing or empty."""
    if value is None or value.size == 0:
        return default
    if value.size != 1:
        raise ShapeError(f"{name} must be a scalar, got shape {value.shape}")
    return kind(value.reshape(()))


def _box_edges(boxes: np.ndarray, center_point_box: int):
    """float64 (y_min, x_min, y_max, x_max) of (S, 4) boxes: corners [y1, x1, y2, x2] in any diagonal order,
    or [x_center, y_center, width, height] (center +- half the extent, as given: a negative extent stays)."""
    b = boxes.astype(np.float64)
    if center_point_box == 0:
        return np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 0], b[:, 2]), \
            np.maximum(b[:, 1], b[:, 3])
    return b[:, 1] - b[:, 3] / 2, b[:, 0] - b[:, 2] / 2, b[:, 1] + b[:, 3] / 2, b[:, 0] + b[:, 2] / 2


def _overlaps(edges, areas: np.ndarray, one: int, others: np.ndarray, iou_threshold: float) -> bool:
    """Whether box ``one`` has IoU > iou_threshold with any of ``others``; a box of non-positive area, boxes
    that do not overlap (or NaN coordinates) count as IoU 0."""
    y0, x0, y1, x1 = edges
    height = np.minimum(y1[one], y1[others]) - np.maximum(y0[one], y0[others])
    width = np.minimum(x1[one], x1[others]) - np.maximum(x0[one], x0[others])
    inter = height * width
    union = areas[one] + areas[others] - inter
    valid = (height > 0) & (width > 0) & (areas[one] > 0) & (areas[others] > 0) & (union > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(valid, inter / np.where(valid, union, 1.0), 0.0)
    return bool(np.any(iou > iou_threshold))


@register("NonMaxSuppression", since=(10, 11))
def non_max_suppression(node: Node, boxes, scores, max_output_boxes_per_class=None, iou_threshold=None,
                        score_threshold=None):
    """Per batch and class: boxes by score, highest first (a lower box index first on equal scores), each kept
    unless its IoU with a box kept before is > iou_threshold, at most max_output_boxes_per_class; boxes scoring
    below score_threshold (or NaN) are never kept. Rows [batch, class, box], by batch, class, then rank."""
    require_dtype(boxes, {T.FLOAT}, "boxes")
    require_dtype(scores, {T.FLOAT}, "scores")
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise ShapeError(f"boxes must have shape (num_batches, spatial_dimension, 4), got {boxes.shape}")
    if scores.ndim != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ShapeError(f"scores must have shape (num_batches, num_classes, spatial_dimension) = "
                         f"({boxes.shape[0]}, C, {boxes.shape[1]}), got {scores.shape}")
    center_point_box = node.attr("center_point_box", 0, int)
    if center_point_box not in (0, 1):
        raise AttributeValueError(f"center_point_box must be 0 or 1, got {center_point_box}")
    if max_output_boxes_per_class is not None:
        require_dtype(max_output_boxes_per_class, {T.INT64}, "max_output_boxes_per_class")
    for value, name in ((iou_threshold, "iou_threshold"), (score_threshold, "score_threshold")):
        if value is not None:
            require_dtype(value, {T.FLOAT}, name)
    limit = max(_optional_scalar(max_output_boxes_per_class, "max_output_boxes_per_class", 0, int), 0)
    iou_limit = _optional_scalar(iou_threshold, "iou_threshold", 0.0, float)
    if not 0.0 <= iou_limit <= 1.0:
        raise ShapeError(f"iou_threshold must lie in [0, 1], got {iou_limit}")
    score_limit = _optional_scalar(score_threshold, "score_threshold", None, float)
    selected = []
    for b in range(boxes.shape[0] if limit else 0):
        edges = _box_edges(boxes[b], center_point_box)
        areas = (edges[2] - edges[0]) * (edges[3] - edges[1])
        for c in range(scores.shape[1]):
            s = scores[b, c].astype(np.float64)
            candidates = np.flatnonzero(~np.isnan(s) if score_limit is None else s >= score_limit)
            order = candidates[np.lexsort((candidates, -s[candidates]))]  # score descending, then index
            kept: list[int] = []
            for box in order:
                if len(kept) == limit:
                    break
                if not kept or not _overlaps(edges, areas, int(box), np.array(kept), iou_limit):
                    kept.append(int(box))
            selected += [(b, c, box) for box in kept]
    return (np.array(selected, np.int64).reshape(-1, 3),)
