"""RoiAlign, MaxRoiPool and NonMaxSuppression (refquant/ops/roi.py, spec/ops/image.md): hand-derived cases on
X = 4 y + x (bilinear interpolation reproduces it exactly), and the edges: half_pixel vs output_half_pixel,
sampling_ratio 0, points outside the image, max mode's per-corner rule, empty and inverted rois, NaN, Caffe's
rounding in MaxRoiPool. NonMaxSuppression: its ONNX node cases bit for bit, hand-derived ties, thresholds and
degenerate boxes, and onnx.reference on random boxes without score ties."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.errors import AttributeValueError, ShapeError

from ..helpers import node_cases
from .helpers import (
    assert_same_bits,
    assert_versions_are_the_schema_versions_from_opset_10,
    check_against_reference,
    node_case_outputs,
    run_refquant,
)

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # X[y, x] = 4 y + x


def _align(rois, *, opset=22, x=X, batch=None, **attrs):
    rois = np.asarray(rois, x.dtype).reshape(-1, 4)
    batch = np.zeros(len(rois), np.int64) if batch is None else np.asarray(batch, np.int64)
    (y,) = run_refquant("RoiAlign", {"X": x, "rois": rois, "batch_indices": batch}, [x.dtype], opset=opset,
                        attrs=attrs)
    return y


def test_half_pixel_and_output_half_pixel():
    # half_pixel: start -0.5, points at 0.5 and 2.5 per axis: mean 4 * 1.5 + 1.5; output_half_pixel: 1 and 3
    assert _align([0, 0, 4, 4], sampling_ratio=2).item() == 7.5
    assert _align([0, 0, 4, 4], sampling_ratio=2, coordinate_transformation_mode="output_half_pixel").item() == 10
    assert _align([0, 0, 4, 4], sampling_ratio=2, opset=10).item() == 10  # version 10: output_half_pixel only


def test_sampling_ratio_zero_takes_ceil_of_the_bin():
    # 2 x 2 bins of 2 pixels: 2 points per axis per bin at -0.5 + 0.5 + {0, 1} (bin 0) and {2, 3} (bin 1)
    y = _align([0, 0, 4, 4], output_height=2, output_width=2, sampling_ratio=0)
    np.testing.assert_array_equal(y[0, 0], [[4 * 0.5 + 0.5, 4 * 0.5 + 2.5], [4 * 2.5 + 0.5, 4 * 2.5 + 2.5]])


def test_points_beyond_the_last_pixel_and_outside():
    # output_half_pixel, one point at 2 + 4 / 2 = 4: inside [-1, 4], reads the last pixel (3, 3)
    assert _align([2, 2, 6, 6], sampling_ratio=1, coordinate_transformation_mode="output_half_pixel").item() == 15
    # the point at 6 is outside [-1, 4]: 0
    assert _align([5, 5, 7, 7], sampling_ratio=1, coordinate_transformation_mode="output_half_pixel").item() == 0


def test_max_mode_takes_the_largest_weighted_corner():
    # output_half_pixel, points on whole pixels (1, 3): the largest pixel, 15
    assert _align([0, 0, 4, 4], mode="max", sampling_ratio=2, coordinate_transformation_mode="output_half_pixel").item() == 15
    # half_pixel: point (2.5, 2.5) has corners 10, 11, 14, 15 at weight 1/4 each: 15 / 4, larger than the others'
    assert _align([0, 0, 4, 4], mode="max", sampling_ratio=2).item() == 3.75
    # a point on a negative pixel: max(1 * v, 0 * ...) = 0
    assert _align([1, 1, 3, 3], x=-1 - X, mode="max", sampling_ratio=1,
                  coordinate_transformation_mode="output_half_pixel").item() == 0


def test_empty_inverted_and_nan():
    y = _align(np.zeros((0, 4)), output_height=2, output_width=3)
    assert y.shape == (0, 1, 2, 3)
    assert _align([3, 3, 1, 1]).item() == 0  # half_pixel: negative extent, no points
    # output_half_pixel: the extent becomes 1; one point per axis at 3 * 1 + 0.5 = 3.5: the last pixel
    assert _align([3, 3, 1, 1], coordinate_transformation_mode="output_half_pixel").item() == 15
    x = X.copy()
    x[0, 0, 1, 1] = np.nan
    assert np.isnan(_align([0, 0, 4, 4], x=x, sampling_ratio=2)).all()
    with pytest.raises(ShapeError):
        _align([0, 0, 4, 4], batch=[1])


def test_float64_average_against_the_formula():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    roi = [0.7, 1.3, 4.1, 3.9]
    got = _align(roi, x=x, batch=[1], output_height=2, output_width=3, sampling_ratio=3, spatial_scale=0.5)

    def bilinear(img, yy, xx):
        if yy < -1 or yy > 5 or xx < -1 or xx > 6:
            return 0.0
        yy, xx = max(yy, 0.0), max(xx, 0.0)
        y0, x0 = min(int(yy), 4), min(int(xx), 5)
        yy, xx = (y0 if y0 == 4 else yy), (x0 if x0 == 5 else xx)
        y1, x1 = min(y0 + 1, 4), min(x0 + 1, 5)
        ly, lx = yy - y0, xx - x0
        return ((1 - ly) * (1 - lx) * img[y0, x0] + (1 - ly) * lx * img[y0, x1] + ly * (1 - lx) * img[y1, x0]
                + ly * lx * img[y1, x1])

    sx, sy = roi[0] * 0.5 - 0.5, roi[1] * 0.5 - 0.5
    bw, bh = (roi[2] - roi[0]) * 0.5 / 3, (roi[3] - roi[1]) * 0.5 / 2
    for c in range(3):
        for ph in range(2):
            for pw in range(3):
                pts = [bilinear(x[1, c], sy + ph * bh + (i + 0.5) * bh / 3, sx + pw * bw + (j + 0.5) * bw / 3)
                       for i in range(3) for j in range(3)]
                assert abs(got[0, c, ph, pw] - sum(pts) / 9) < 1e-12


def _max_pool(rois, pooled, x=X, **attrs):
    (y,) = run_refquant("MaxRoiPool", {"X": x, "rois": np.asarray(rois, x.dtype).reshape(-1, 5)}, [x.dtype],
                        opset=22, attrs={"pooled_shape": pooled, **attrs})
    return y


def test_max_roi_pool_bins_and_rounding():
    np.testing.assert_array_equal(_max_pool([0, 0, 0, 3, 3], [2, 2])[0, 0], [[5, 7], [13, 15]])
    # scale 0.5: 1 * 0.5 rounds half away from zero to 1, 5 * 0.5 to 3: rows and columns 1..3
    assert _max_pool([0, 1, 1, 5, 5], [1, 1], spatial_scale=0.5).item() == 15
    np.testing.assert_array_equal(_max_pool([0, 0, 0, 0, 0], [1, 2])[0, 0], [[0, 0]])  # 1 pixel, 2 bins: both (0, 0)
    assert _max_pool([0, 10, 10, 12, 12], [1, 1]).item() == 0  # wholly outside
    x2 = np.concatenate([X, X + 100])
    assert _max_pool([1.9, 0, 0, 1, 1], [1, 1], x=x2).item() == 105  # batch index truncated to 1
    with pytest.raises(ShapeError):
        _max_pool([2, 0, 0, 1, 1], [1, 1], x=x2)


# ----------------------------------------------------------------------------
# NonMaxSuppression
# ----------------------------------------------------------------------------

NMS_CASES = node_cases(r"^test_nonmaxsuppression_")


def test_nms_versions_are_the_schema_versions_from_opset_10():
    assert_versions_are_the_schema_versions_from_opset_10("NonMaxSuppression")


@pytest.mark.parametrize("case", NMS_CASES, ids=lambda c: c.name)
def test_nms_node_case(case):
    assert len(NMS_CASES) == 10  # onnx 1.23.2
    for got, want in node_case_outputs(case):
        assert_same_bits(got, want, case.name)


def _nms(boxes, scores, limit=10, iou=0.5, score=None, *, opset=11, **attrs):
    inputs = {"boxes": np.asarray(boxes, np.float32).reshape(1, -1, 4),
              "scores": np.asarray(scores, np.float32).reshape(1, 1, -1),
              "max_output_boxes_per_class": np.array([limit], np.int64),
              "iou_threshold": np.array([iou], np.float32),
              "score_threshold": None if score is None else np.array([score], np.float32)}
    (y,) = run_refquant("NonMaxSuppression", inputs, [np.int64], opset=opset, attrs=attrs)
    assert y.dtype == np.int64 and y.ndim == 2 and y.shape[1] == 3
    return y[:, 2].tolist()


UNIT = [0, 0, 1, 1]


def test_nms_ties_go_to_the_lower_box_index_and_rank_orders_the_output():
    far = [5, 5, 6, 6]
    assert _nms([far, UNIT, UNIT, far], [0.5, 0.7, 0.7, 0.5]) == [1, 0]  # 1 before 2 (tie), 0 before 3
    assert _nms([far, UNIT], [0.1, 0.9], limit=1) == [1]


def test_nms_iou_equal_to_the_threshold_is_kept_and_score_equal_to_the_threshold_too():
    # IoU of [0, 0, 1, 1] and [0, 0.5, 1, 1.5]: 0.5 / 1.5 = 1/3; with threshold 0.5 both stay, 0.25 one
    half = [0, 0.5, 1, 1.5]
    assert _nms([UNIT, half], [0.9, 0.8], iou=0.5) == [0, 1]
    assert _nms([UNIT, half], [0.9, 0.8], iou=0.25) == [0]
    # IoU exactly 0.5: [0, 0, 1, 1] and [0, 0, 1, 2] (1 / 2): not strictly greater, kept
    assert _nms([UNIT, [0, 0, 1, 2]], [0.9, 0.8], iou=0.5) == [0, 1]
    # "score less than score_threshold are removed": 0.5 stays at threshold 0.5
    assert _nms([UNIT, [3, 3, 4, 4]], [0.5, 0.25], score=0.5) == [0]


def test_nms_nan_scores_degenerate_boxes_and_corner_order():
    assert _nms([UNIT, [3, 3, 4, 4]], [np.nan, 0.1]) == [1]
    # a zero-area box never suppresses nor is suppressed
    assert _nms([UNIT, [0, 0, 0, 1], UNIT], [0.9, 0.8, 0.7]) == [0, 1]
    # corners in any diagonal order: [1, 1, 0, 0] is the unit box
    assert _nms([UNIT, [1, 1, 0, 0]], [0.9, 0.8]) == [0]
    # center_point_box: [x_center, y_center, width, height]
    assert _nms([[0.5, 0.5, 1, 1], [0.5, 0.6, 1, 1]], [0.9, 0.8], center_point_box=1) == [0]
    assert _nms([UNIT], [0.9], limit=0) == [] and _nms([UNIT], [0.9], limit=-3) == []


@pytest.mark.parametrize("seed", range(6))
def test_nms_matches_onnx_reference_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 10, (2, 30, 2, 2)).astype(np.float32)
    boxes = np.concatenate([corners[:, :, 0], corners[:, :, 0] + rng.uniform(0.5, 4, (2, 30, 2))], axis=2)
    inputs = {"boxes": boxes.astype(np.float32), "scores": rng.permutation(180).reshape(2, 3, 30).astype(np.float32) / 180,
              "max_output_boxes_per_class": np.array([int(rng.integers(1, 12))], np.int64),
              "iou_threshold": np.array([rng.uniform(0.1, 0.7)], np.float32),
              "score_threshold": np.array([0.1 + 1 / 360], np.float32)}  # fmt: skip
    check_against_reference("NonMaxSuppression", inputs, [np.int64], opset=11,
                            attrs={"center_point_box": int(seed % 2)})


@pytest.mark.parametrize(("boxes", "scores", "attrs", "error", "message"), [
    (np.ones((1, 2, 3)), np.ones((1, 1, 2)), {}, ShapeError, r"boxes must have shape \(num_batches, spatial_dimension, 4\)"),
    (np.ones((1, 2, 4)), np.ones((1, 1, 3)), {}, ShapeError, r"scores must have shape"),
    (np.ones((1, 2, 4)), np.ones((1, 1, 2)), {"center_point_box": 2}, AttributeValueError,
     "center_point_box must be 0 or 1, got 2"),
])  # fmt: skip
def test_nms_errors_name_the_node_and_the_problem(boxes, scores, attrs, error, message):
    with pytest.raises(error, match="NonMaxSuppression '#0': " + message):
        run_refquant("NonMaxSuppression", {"boxes": boxes.astype(np.float32), "scores": scores.astype(np.float32)},
                     [np.int64], opset=11, attrs=attrs)
    with pytest.raises(ShapeError, match=r"iou_threshold must lie in \[0, 1\], got 1.5"):
        _nms([UNIT], [0.9], iou=1.5)
