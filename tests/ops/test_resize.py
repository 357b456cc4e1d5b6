"""Resize and Upsample: refquant/ops/resize.py (Resize 10, 11, 13, 18, 19; Upsample 10; spec/ops/nn.md).

Expected values come from independent sources:
- the since_versions of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator on hypothesis-drawn inputs: equal values for nearest, within one
  float32 ulp for linear, within CUBIC_BOUND (its float32 cubic weights) for cubic;
- exact weights and sums on Python fractions from the ONNX definition, rounded once (linear, cubic,
  antialias, exclude_outside);
- hand-derived golden values for each mode and coordinate transformation, and for the choices the spec
  page states (where the ONNX text and the node cases part ways, the text).
The ONNX backend node cases of Resize run in test_onnx_node_cases.py; Upsample's one case (opset 9) runs here
at opset 10.
"""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refquant
from refquant.errors import AttributeValueError, DTypeError, NonFiniteError, ShapeError

from ..helpers import node_cases, to_array
from .helpers import (
    CONTRADICTS_THE_TEXT,
    FLOATS,
    assert_same_bits,
    assert_versions_are_the_schema_versions_from_opset_10,
    node_case_feeds,
    run_reference,
    run_refquant,
    ulps,
)


@pytest.mark.parametrize("op", ["Resize", "Upsample"])
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


TRANSFORMS = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
#: an empty roi: a present input (the test models name each skipped input "", only once)
NO_ROI = np.zeros(0, np.float32)
#: scales whose float32 value is a simple fraction (so float64 coordinates are exact, or nearly)
SCALES = [0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 0.25, 4.0]
DOWN_SCALES = [0.25, 0.5, 0.6, 0.75]  # 0.6: a float32 that is no short fraction
CUBIC_COEFFS = [-0.75, -0.5, -1.0, -0.6]
#: onnx.reference's cubic weights are float32: cubic_coeff_a reaches it as np.float32, and NumPy 2
#: keeps float32 when it meets Python floats (the ratio) and ints. Measured over the CUBIC_COEFFS and
#: ratios in [0, 1]: sum |its weight - the exact weight| <= 24 * 2^-24 per output (4 taps), <= 104 *
#: 2^-24 with antialias (4 / s taps, s >= 1/8). Per axis that moves Y by at most that times max|X|;
#: an earlier axis' error is carried on with factor sum |w| <= 1.5 (a in [-1, -0.5]), and
#: exclude_outside's renormalisation divides by a kept sum >= 0.7 (so x 1.5 at most): over 3 axes
#: (1 + 1.5 + 1.5^2) * 1.5 * 104 * 2^-24 < 2^-14 (refquant's own float64 error, < 2^-45, is negligible).
#: Measured: 80 * 2^-24 at worst.
CUBIC_BOUND = 2.0**-14


def _within_cubic_bound(got, want, magnitude):
    return got.shape == want.shape and np.all(np.abs(got.astype(np.float64) - want) <= CUBIC_BOUND * magnitude)


def _within_one_ulp(got, want, magnitude):
    """Both round a float64 value once to float32; their float64 values differ by a few float64 ulps
    of the terms, so by one float32 ulp at most, except near 0 where the terms cancel."""
    return got.shape == want.shape and np.all((ulps(got, want) <= 1) | (np.abs(got - want) <= 2.0**-40 * magnitude))


@st.composite
def resize_cases(draw, downsample=False):
    side = 6 if downsample else 5
    x = draw(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=side),
                        elements=st.floats(-20, 20, width=32)))  # fmt: skip
    transform = draw(st.sampled_from(TRANSFORMS))
    if draw(st.booleans()):
        scales = np.array([draw(st.sampled_from(DOWN_SCALES if downsample else SCALES)) for _ in x.shape], np.float32)
        lengths = [int(d * s) for d, s in zip(x.shape, scales)]
        sized = {"scales": scales}
    else:
        lengths = [draw(st.integers(1, d if downsample else 8)) for d in x.shape]
        sized = {"scales": None, "sizes": np.array(lengths, np.int64)}
    assume(min(lengths) >= 1)
    if transform == "align_corners" and "sizes" not in sized:
        # onnx.reference's fractional scale * D (in float64) agrees with the output length only when it is whole
        assume(all((d * float(s)).is_integer() for d, s in zip(x.shape, sized["scales"])))
    if transform == "pytorch_half_pixel":
        assume(min(lengths) > 1)  # onnx.reference reads -0.5 where the ONNX text says 0 (spec/ops/nn.md)
    return x, transform, sized


@given(case=resize_cases(), nearest_mode=st.sampled_from(NEAREST_MODES))
def test_resize_nearest_matches_onnx_reference(case, nearest_mode):
    x, transform, sized = case
    inputs = {"x": x, "roi": NO_ROI, **sized}
    attrs = {"mode": "nearest", "coordinate_transformation_mode": transform, "nearest_mode": nearest_mode}
    (got,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    (want,) = run_reference("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    # equal values; onnx.reference picks by a weighted sum 0 * a + 1 * b, which turns -0.0 into +0.0
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert set(got.ravel().tolist()) <= set(x.ravel().tolist())


@given(case=resize_cases())
def test_resize_linear_is_within_one_ulp_of_onnx_reference(case):
    """Both interpolate in float64 (in other orders) and round once to float32."""
    x, transform, sized = case
    inputs = {"x": x, "roi": NO_ROI, **sized}
    attrs = {"mode": "linear", "coordinate_transformation_mode": transform}
    (got,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    (want,) = run_reference("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    assert _within_one_ulp(got, want, np.max(np.abs(x)))


@given(case=resize_cases(), a=st.sampled_from(CUBIC_COEFFS), exclude_outside=st.sampled_from([0, 1]))
def test_resize_cubic_is_near_onnx_reference(case, a, exclude_outside):
    """Within CUBIC_BOUND * max|X|: onnx.reference's cubic weights are float32 (see CUBIC_BOUND)."""
    x, transform, sized = case
    inputs = {"x": x, "roi": NO_ROI, **sized}
    attrs = {"mode": "cubic", "coordinate_transformation_mode": transform, "cubic_coeff_a": a,
             "exclude_outside": exclude_outside}  # fmt: skip
    (got,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    (want,) = run_reference("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    assert _within_cubic_bound(got, want, np.max(np.abs(x)))


@given(case=resize_cases(downsample=True), mode=st.sampled_from(["linear", "cubic"]),
       exclude_outside=st.sampled_from([0, 1]), opset=st.sampled_from([18, 19]))  # fmt: skip
def test_resize_antialias_is_near_onnx_reference(case, mode, exclude_outside, opset):
    """linear: within one ulp (onnx.reference's weights are float64); cubic: CUBIC_BOUND."""
    x, transform, sized = case
    inputs = {"x": x, "roi": NO_ROI, **sized}
    attrs = {"mode": mode, "coordinate_transformation_mode": transform, "antialias": 1, "exclude_outside": exclude_outside}
    (got,) = run_refquant("Resize", inputs, [np.float32], opset=opset, attrs=attrs)
    (want,) = run_reference("Resize", inputs, [np.float32], opset=opset, attrs=attrs)
    within = _within_one_ulp if mode == "linear" else _within_cubic_bound
    assert within(got, want, np.max(np.abs(x)))


#: roi ends: multiples of 1/8, so onnx.reference's float64 coordinates are exact wherever the exact
#: coordinate is 0 or D - 1 (the extrapolation bounds) or a nearest-mode tie
ROI_ENDS = st.integers(-4, 12).map(lambda k: k / 8)


@given(x=FLOATS, data=st.data(), mode=st.sampled_from(["nearest", "linear", "cubic"]),
       extrapolation_value=st.sampled_from([0.0, -1.5, 10.0, 100.0]))  # fmt: skip
def test_resize_tf_crop_and_resize_is_near_onnx_reference(x, data, mode, extrapolation_value):
    lengths = [data.draw(st.integers(1, 6)) for _ in x.shape]
    # onnx.reference divides by its float64 (L / D) * D, which must be L itself
    assume(all((length / d) * d == length for length, d in zip(lengths, x.shape)))
    roi = np.array([data.draw(ROI_ENDS) for _ in range(2 * x.ndim)], np.float32)
    inputs = {"x": x, "roi": roi, "scales": None, "sizes": np.array(lengths, np.int64)}
    attrs = {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": extrapolation_value}
    if mode == "nearest":
        attrs["nearest_mode"] = data.draw(st.sampled_from(NEAREST_MODES))
    if mode == "cubic":
        attrs["exclude_outside"] = data.draw(st.sampled_from([0, 1]))
    (got,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    (want,) = run_reference("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    magnitude = max(np.max(np.abs(x)), abs(extrapolation_value))  # onnx.reference interpolates extrapolated rows
    if mode == "nearest":
        assert got.shape == want.shape and np.array_equal(got, want)
    else:
        assert (_within_one_ulp if mode == "linear" else _within_cubic_bound)(got, want, magnitude)


def _exact_weights(kernel, radius, coords, size, stretch, exclude_outside):
    """(L, D) matrix of exact weights from the definition: K((i - x) s) over every integer i, ends
    clamped or left out, each row divided by its sum."""
    matrix = np.full((len(coords), size), Fraction(0), dtype=object)
    for y, x in enumerate(coords):
        for i in range(int(x - radius / stretch) - 2, int(x + radius / stretch) + 3):
            if exclude_outside and not 0 <= i < size:
                continue
            matrix[y, min(max(i, 0), size - 1)] += kernel(abs(i - x) * stretch)
        matrix[y] /= sum(matrix[y])
    return matrix


@given(x=FLOATS, data=st.data(), mode=st.sampled_from(["linear", "cubic"]), antialias=st.sampled_from([0, 1]),
       exclude_outside=st.sampled_from([0, 1]), transform=st.sampled_from(["half_pixel", "asymmetric"]))  # fmt: skip
def test_resize_linear_and_cubic_are_within_one_ulp_of_their_exact_definition(
    x, data, mode, antialias, exclude_outside, transform
):
    """Y from exact weights and exact sums, rounded once. refquant rounds each weight once to
    float64 and sums (<= 16 taps per axis, 3 axes) in float64: off by < 2^-45 max|X|, so within one
    float32 ulp, or within 2^-40 max|X| where the terms cancel to near 0."""
    choices = [Fraction(float(np.float32(s))) for s in SCALES + [0.6]]
    scales = [data.draw(st.sampled_from([s for s in choices if d * s >= 1])) for d in x.shape]
    lengths = [int(d * s) for d, s in zip(x.shape, scales)]
    a = Fraction(float(np.float32(data.draw(st.sampled_from(CUBIC_COEFFS)))))

    def kernel(t):  # t >= 0
        if mode == "linear":
            return max(1 - t, Fraction(0))
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else Fraction(0)

    exact = np.vectorize(Fraction, otypes=[object])(x.astype(np.float64))
    for axis, (d, length, s) in enumerate(zip(x.shape, lengths, scales)):
        half = Fraction(1, 2) if transform == "half_pixel" else 0
        coords = [(y + half) / s - half for y in range(length)]
        stretch = min(s, Fraction(1)) if antialias else Fraction(1)
        matrix = _exact_weights(kernel, 1 if mode == "linear" else 2, coords, d, stretch, exclude_outside)
        exact = np.moveaxis(np.tensordot(matrix, exact, axes=([1], [axis])), 0, axis)
    want = np.vectorize(float, otypes=[np.float64])(exact).astype(np.float32)  # two roundings: maybe the other neighbour
    attrs = {"mode": mode, "coordinate_transformation_mode": transform, "antialias": antialias,
             "exclude_outside": exclude_outside, "cubic_coeff_a": float(a)}  # fmt: skip
    inputs = {"x": x, "roi": NO_ROI, "scales": np.array([float(s) for s in scales], np.float32)}
    (got,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=attrs)
    assert _within_one_ulp(got, want, np.max(np.abs(x)))


@given(case=resize_cases(), mode=st.sampled_from(["linear", "cubic"]))
def test_resize_antialias_upsampling_and_exclude_outside_in_plain_linear_change_nothing(case, mode):
    """antialias stretches the kernel by max(1, 1 / scale): nothing on an axis that is not
    downsampled; linear without antialias reads at most one sample beyond an end, whose weight
    clamping and exclude_outside both hand to the end sample."""
    x, transform, sized = case
    inputs = {"x": x, "roi": NO_ROI, **sized}
    base = {"mode": mode, "coordinate_transformation_mode": transform}
    (plain,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=base)
    given = sized["scales"] if sized["scales"] is not None else sized["sizes"] / np.array(x.shape)
    if np.all(given >= 1):
        (antialiased,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=base | {"antialias": 1})
        assert_same_bits(antialiased, plain)
    if mode == "linear":
        (excluded,) = run_refquant("Resize", inputs, [np.float32], opset=19, attrs=base | {"exclude_outside": 1})
        assert_same_bits(excluded, plain)


def _resize(x, opset, attrs, scales=None, sizes=None, roi=NO_ROI):
    inputs = {"x": x} if opset < 11 else {"x": x, "roi": roi}
    inputs |= {"scales": scales} if opset < 11 else {"scales": scales, "sizes": sizes}
    return run_refquant("Resize", inputs, [x.dtype], opset=opset, attrs=attrs)[0]


def test_resize_10_is_asymmetric_with_floor():
    """ONNX's Resize 10 -> 11 converter: asymmetric, nearest_mode floor. onnxruntime 1.32 takes the
    ceiling when downsampling instead: [1, 4] here (spec/ops/nn.md)."""
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 5)
    assert _resize(x, 10, {}, np.array([1, 0.4], np.float32)).tolist() == [[1, 3]]  # x = 0, 2.5
    assert _resize(x, 10, {}, np.array([1, 1.5], np.float32)).tolist() == [[1, 1, 2, 3, 3, 4, 5]]
    linear = _resize(x, 10, {"mode": "linear"}, np.array([1, 0.4], np.float32))
    assert linear.tolist() == [[1, 3.5]]


def test_align_corners_divides_by_the_output_length_less_one():
    """x 2x4, scales 0.6: output 1x2; width x = y * (4 - 1) / (2 - 1) reads x[3] = 4 (onnxruntime too).
    The node case divides by 0.6 * 4 - 1 = 1.4 instead (3.142857). The cubic case (x 4x4 = 1..16,
    scales 0.8: 3x3, x = 0, 1.5, 3 on both axes) divides by 2.2: refquant and onnxruntime read the
    ramp at 1.5 exactly (a cubic kernel reproduces a linear function: its taps 0..3 lie inside)."""
    by_name = {c.name: c for c in node_cases(r"^test_resize_") if c.name in CONTRADICTS_THE_TEXT}
    linear = by_name["test_resize_downsample_scales_linear_align_corners"]
    (got,) = refquant.Session(linear.model).run(None, node_case_feeds(linear, linear.data_sets[0][0]))
    assert got.tolist() == [[[[1.0, 4.0]]]]
    cubic = by_name["test_resize_downsample_scales_cubic_align_corners"]
    (got,) = refquant.Session(cubic.model).run(None, node_case_feeds(cubic, cubic.data_sets[0][0]))
    assert got.tolist() == [[[[1, 2.5, 4], [7, 8.5, 10], [13, 14.5, 16]]]]


def test_resize_integers_round_half_to_even_and_nearest_ties_follow_nearest_mode():
    x = np.array([[0, 255, 10]], np.uint8)
    # half_pixel, scale 2: x = y / 2 - 1/4 clamped: 0, 1/4, 3/4, 5/4, 7/4, 2
    assert _resize(x, 19, {"mode": "linear"}, np.array([1, 2], np.float32)).tolist() == [[0, 64, 191, 194, 71, 10]]
    # asymmetric, scale 4: x = y / 4: 0, 0.75, 1.5, 2.25, 3, ... (1.5 rounds to 2, 2.25 to 2)
    ramp = _resize(np.array([[0, 3]], np.uint8), 19, {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
                   np.array([1, 4], np.float32))  # fmt: skip
    assert ramp.tolist() == [[0, 1, 2, 2, 3, 3, 3, 3]]
    row = np.array([[10, 20, 30]], np.int32)  # asymmetric, scale 2: x = 0, 0.5, 1, 1.5, 2, 2.5
    for mode, picked in (("round_prefer_floor", [10, 10, 20, 20, 30, 30]), ("round_prefer_ceil", [10, 20, 20, 30, 30, 30]),
                         ("floor", [10, 10, 20, 20, 30, 30]), ("ceil", [10, 20, 20, 30, 30, 30])):  # fmt: skip
        attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": mode}
        assert _resize(row, 13, attrs, np.array([1, 2], np.float32)).tolist() == [picked]


def test_resize_cubic_golden_values():
    """Keys' kernel with a = -3/4: K(t) = 5/4 t^3 - 9/4 t^2 + 1 (t <= 1), -3/4 (t - 1)(t - 2)^2 (1 < t < 2),
    so K(1/4) = 225/256, K(3/4) = 67/256, K(5/4) = -27/256, K(7/4) = -9/256 (sum 1)."""
    x = np.array([0, 1, 4, 9], np.float32)
    up = _resize(x, 19, {"mode": "cubic"}, np.array([2], np.float32))
    # half_pixel, scale 2: y = 0 reads x = (0 + 1/2) / 2 - 1/2 = -1/4, taps -2, -1, 0, 1 (|i - x| < 2):
    # X[0] (-9 + 67 + 225) / 256 + X[1] (-27 / 256) = -27/256 (taps -2 and -1 clamped to 0)
    assert up[0] == np.float32(-27 / 256)
    # y = 3: x = 5/4, taps 0..3: 0 (-27) + 1 (225) + 4 (67) + 9 (-9), / 256 = (225 + 268 - 81) / 256 = 412/256
    assert up[3] == np.float32(412 / 256)
    # exclude_outside: taps -2, -1 dropped, 225 and -27 renormalised by 198: -27/198 = -3/22
    excluded = _resize(x, 19, {"mode": "cubic", "exclude_outside": 1}, np.array([2], np.float32))
    assert excluded[0] == np.float32(-3 / 22)
    # a = -1/2: K(t) = 3/2 t^3 - 5/2 t^2 + 1, -1/2 (t - 1)(t - 2)^2: K(1/4) = (3 - 20 + 128)/128 = 111/128,
    # K(3/4) = (81 - 180 + 128)/128 = 29/128, K(5/4) = -9/128, K(7/4) = -3/128 (sum 1); y = 0: X[1] K(5/4) = -9/128
    half = _resize(x, 19, {"mode": "cubic", "cubic_coeff_a": -0.5}, np.array([2], np.float32))
    assert half[0] == np.float32(-9 / 128)
    # uint8 [0, 255], scale 2: x = -1/4, 1/4, 3/4, 5/4: 255 * (-27, 58, 198, 283) / 256 = -26.9, 57.8, 197.2,
    # 281.9: rounded half to even and saturated to [0, 255]
    ints = _resize(np.array([0, 255], np.uint8), 19, {"mode": "cubic"}, np.array([2], np.float32))
    assert ints.tolist() == [0, 58, 197, 255]


def test_resize_antialias_golden_values():
    """X = 0..7, scale 1/2, half_pixel: y = 0 reads x = 1/2; the kernel stretched by 2 reaches |i - x| < 2R."""
    x = np.arange(8, dtype=np.float32)
    scales = np.array([0.5], np.float32)
    # linear: K((i - 1/2) / 2) for i = -1..2: 1/4, 3/4, 3/4, 1/4 (sum 2): X[0] (1/4 + 3/4) / 2 + X[1] 3/8 + X[2] 1/8
    # = 3/8 + 2/8 = 5/8; y = 1 (x = 5/2, taps 1..4): (1 + 3 * 2 + 3 * 3 + 4) / 8 = 20/8; y = 2: 36/8;
    # y = 3 (x = 13/2, taps 5..8, 8 clamped to 7): (5 + 3 * 6 + 3 * 7 + 7) / 8 = 51/8
    linear = _resize(x, 18, {"mode": "linear", "antialias": 1}, scales)
    assert linear.tolist() == [5 / 8, 20 / 8, 36 / 8, 51 / 8]
    # exclude_outside: tap -1 dropped: (1 * 3/4 + 2 * 1/4) / (7/4) = 5/7
    excluded = _resize(x, 18, {"mode": "linear", "antialias": 1, "exclude_outside": 1}, scales)
    assert excluded[0] == np.float32(5 / 7)
    # cubic: |i - 1/2| / 2 = 7/4, 5/4, 3/4, 1/4, 1/4, 3/4, 5/4, 7/4 for i = -3..4, weights (x 256) -9, -27, 67, 225,
    # 225, 67, -27, -9 (sum 512): taps <= 0 read X[0] = 0: (225 * 1 + 67 * 2 - 27 * 3 - 9 * 4) / 512 = 242/512
    cubic = _resize(x, 18, {"mode": "cubic", "antialias": 1}, scales)
    assert cubic[0] == np.float32(242 / 512)
    # upsampling: max(1, 1 / scale) = 1, the kernel as it is
    up = np.array([2], np.float32)
    assert_same_bits(_resize(x, 18, {"mode": "cubic", "antialias": 1}, up), _resize(x, 18, {"mode": "cubic"}, up))


def test_resize_tf_crop_and_resize_golden_values():
    """X = i^2 (D = 8): x = start * 7 + y (end - start) 7 / (L - 1)."""
    x = (np.arange(8) ** 2).astype(np.float32)
    attrs = {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}
    sizes = np.array([3], np.int64)
    # roi [1/4, 3/4]: x = 7/4 + 7/4 y = 1.75, 3.5, 5.25: 1/4 * 1 + 3/4 * 4, (9 + 16) / 2, 3/4 * 25 + 1/4 * 36
    crop = _resize(x, 19, attrs, sizes=sizes, roi=np.array([0.25, 0.75], np.float32))
    assert crop.tolist() == [3.25, 12.5, 27.75]
    # roi [-1/4, 5/4]: x = -7/4, 7/2, 35/4: outside [0, 7] at both ends
    wide = _resize(x, 19, attrs | {"extrapolation_value": -1.0}, sizes=sizes, roi=np.array([-0.25, 1.25], np.float32))
    assert wide.tolist() == [-1.0, 12.5, -1.0]
    # L = 1: x = (start + end) / 2 * 7 = 0.35 * 7 = 2.45 (roi float32 0.2 and 0.5), linear in X = 0..7
    single = _resize(np.arange(8, dtype=np.float32), 19, attrs, sizes=np.array([1], np.int64),
                     roi=np.array([0.2, 0.5], np.float32))  # fmt: skip
    assert single.tolist() == [np.float32((Fraction(float(np.float32(0.2))) + Fraction(1, 2)) / 2 * 7)]
    # scales: L = floor(D (end - start) scale) = floor(8 * 1/2 * 3/2) = 6 (the ONNX text; onnx.reference,
    # onnxruntime and ONNX's shape inference give floor(8 * 3/2) = 12); x = 7/4 + 7/10 y
    scaled = _resize(x, 19, attrs, np.array([1.5], np.float32), roi=np.array([0.25, 0.75], np.float32))
    assert scaled.shape == (6,) and scaled[0] == 3.25 and scaled[5] == 27.75
    # a flipped roi reads the axis backwards
    flipped = _resize(np.arange(4, dtype=np.float32), 19, attrs, sizes=np.array([4], np.int64),
                      roi=np.array([1, 0], np.float32))  # fmt: skip
    assert flipped.tolist() == [3, 2, 1, 0]
    # 2-D, extrapolated along either axis: X 2x2, roi rows [0, 1], columns [-1, 1], sizes 2x3: column x = -1, 0, 1
    grid = _resize(np.array([[1, 2], [3, 4]], np.float32), 19, attrs | {"extrapolation_value": 9.0},
                   sizes=np.array([2, 3], np.int64), roi=np.array([0, -1, 1, 1], np.float32))  # fmt: skip
    assert grid.tolist() == [[9, 1, 2], [9, 3, 4]]


def test_resize_extrapolation_value_is_rounded_to_t():
    """nearest, uint8: the extrapolated outputs are extrapolation_value rounded half to even, saturated."""
    x = np.array([10, 20, 30, 40], np.uint8)
    roi = np.array([-1, 2], np.float32)  # D = L = 4: x = -1 * 3 + y * 3 * 3 / 3 = -3, 0, 3, 6
    attrs = {"coordinate_transformation_mode": "tf_crop_and_resize"}
    sizes = np.array([4], np.int64)
    for value, filled in ((7.5, 8), (6.5, 6), (300.0, 255), (-3.0, 0)):
        got = _resize(x, 19, attrs | {"extrapolation_value": value}, sizes=sizes, roi=roi)
        assert got.tolist() == [filled, 10, 40, filled]
    flags = np.array([False, True, True, False])
    booleans = _resize(flags, 19, attrs | {"extrapolation_value": 0.5}, sizes=sizes, roi=roi)
    assert booleans.tolist() == [True, False, False, True]  # 0.5 != 0, as Cast float -> bool
    with pytest.raises(NonFiniteError, match="extrapolation_value nan is NaN"):
        _resize(x, 19, attrs | {"extrapolation_value": float("nan")}, sizes=sizes, roi=roi)
    with pytest.raises(DTypeError, match="string X"):
        _resize(np.array(["a", "b", "c", "d"], dtype=object), 19, attrs, sizes=sizes, roi=roi)
    # a roi inside the axis extrapolates nothing: strings are fine
    strings = _resize(np.array(["a", "b", "c", "d"], dtype=object), 19, attrs, sizes=np.array([2], np.int64),
                      roi=np.array([0, 1], np.float32))  # fmt: skip
    assert strings.tolist() == ["a", "d"]


@pytest.mark.parametrize(
    "opset, attrs, scales, sizes, error, message",
    [
        (10, {"mode": "cubic"}, [1, 2], None, AttributeValueError, "mode 'cubic' is not supported"),
        (13, {"coordinate_transformation_mode": "tf_half_pixel_for_nn"}, [1, 2], None, AttributeValueError, "not supported at opset 13"),
        (19, {"mode": "cubic", "cubic_coeff_a": float("inf")}, [1, 2], None, AttributeValueError, "cubic_coeff_a must be finite"),
        (19, {"mode": "cubic", "cubic_coeff_a": float("nan")}, [1, 2], None, AttributeValueError, "cubic_coeff_a must be finite"),
        (19, {"mode": "nearest", "antialias": 1}, [1, 0.5], None, AttributeValueError, "antialias=1 applies to modes linear and cubic"),
        (19, {"mode": "linear", "antialias": 2}, [1, 0.5], None, AttributeValueError, "antialias must be 0 or 1"),
        (19, {"mode": "cubic", "exclude_outside": -1}, [1, 2], None, AttributeValueError, "exclude_outside must be 0 or 1"),
        # a = -9, exclude_outside, x = -1/4: the taps left, K(1/4) = (54 - 3a)/64 and K(5/4) = 9a/64, sum to 0
        (19, {"mode": "cubic", "cubic_coeff_a": -9.0, "exclude_outside": 1}, [1, 2], None, AttributeValueError, "sum to 0"),
        (19, {"coordinate_transformation_mode": "tf_crop_and_resize"}, [1, 2], None, ShapeError, "needs roi: 4 values"),
        (19, {}, [1, 2], [2, 4], ShapeError, "exactly one of scales and sizes"),
        (19, {}, None, None, ShapeError, "exactly one of scales and sizes"),
        (19, {}, [1, 2, 3], None, ShapeError, r"scales has shape \(3,\), expected \(2,\)"),
        (19, {}, [1, 0], None, NonFiniteError, "must be finite and > 0"),
        (19, {"axes": [1, -1]}, [2, 2], None, AttributeValueError, "name an axis twice"),
    ],
)  # fmt: skip
def test_resize_errors(opset, attrs, scales, sizes, error, message):
    scales = None if scales is None else np.array(scales, np.float32)
    sizes = None if sizes is None else np.array(sizes, np.int64)
    with pytest.raises(error, match=message):
        _resize(np.ones((2, 3), np.float32), opset, attrs, scales, sizes)


@pytest.mark.parametrize(
    "roi, scales, error, message",
    [
        ([0, 0, 1], None, ShapeError, r"roi has shape \(3,\), expected \(4,\): every start, then every end"),
        ([[0, 0], [1, 1]], None, ShapeError, r"roi has shape \(2, 2\), expected \(4,\)"),
        ([0, 0, 1, np.inf], None, NonFiniteError, "roi .* must be finite"),
        (np.array([0, 0, 1, 1], np.int64), None, DTypeError, "roi has type int64"),
        ([0, 1, 1, 0], [1, 2], ShapeError, r"axis 1 would have length floor\(D \(end - start\) scale\) = -6 < 0"),
    ],
)
def test_resize_roi_errors(roi, scales, error, message):
    roi = roi if isinstance(roi, np.ndarray) else np.array(roi, np.float32)
    scales = None if scales is None else np.array(scales, np.float32)
    sizes = None if scales is not None else np.array([2, 4], np.int64)
    with pytest.raises(error, match=message):
        _resize(np.ones((2, 3), np.float32), 19, {"coordinate_transformation_mode": "tf_crop_and_resize"}, scales, sizes,
                roi=roi)  # fmt: skip


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_linear_and_cubic_need_numbers(mode):
    with pytest.raises(DTypeError, match=f"{mode} Resize needs numbers; X has type bool"):
        _resize(np.ones((2, 3), bool), 19, {"mode": mode}, np.array([1, 2], np.float32))


def test_resize_axes_and_aspect_ratio_policy():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    got = _resize(x, 18, {"axes": [2, 1]}, sizes=np.array([6, 4], np.int64))  # sizes per listed axis
    assert got.shape == (1, 4, 6)
    # not_larger: scale = min(5/2, 9/3) = 2.5; lengths round half up: 2 * 2.5 = 5, 3 * 2.5 = 7.5 -> 8
    smaller = _resize(x, 18, {"axes": [1, 2], "keep_aspect_ratio_policy": "not_larger"}, sizes=np.array([5, 9], np.int64))
    assert smaller.shape == (1, 5, 8)
    # tf_crop_and_resize with axes: roi holds a start and an end per listed axis, [start_2, start_1, end_2, end_1]
    crop = _resize(x, 18, {"axes": [2, 1], "coordinate_transformation_mode": "tf_crop_and_resize", "mode": "linear"},
                   sizes=np.array([2, 1], np.int64), roi=np.array([0, 0, 1, 0], np.float32))  # fmt: skip
    assert crop.tolist() == [[[0, 2]]]  # row x = 0 (L = 1: (0 + 0) / 2), columns x = 0, 2


# ----------------------------------------------------------------------------
# Upsample (10): Resize-10 with scales >= 1
# ----------------------------------------------------------------------------


def test_upsample_node_case_raised_to_opset_10():
    """test_upsample_nearest imports opset 9, below refquant's 10; Upsample-9 and Upsample-10 (the deprecated
    schema) have the same attributes, inputs and rule, so the case runs at 10 (spec/ops/nn.md, Upsample)."""
    (case,) = node_cases(r"^test_upsample_nearest$")
    model = copy.deepcopy(case.model)
    assert model.opset_import[0].version == 9
    model.opset_import[0].version = 10
    session = refquant.Session(model)
    for inputs, expected in case.data_sets:
        (got,) = session.run(None, node_case_feeds(case, inputs))
        assert_same_bits(got, np.asarray(to_array(expected[0])), case.name)


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=3), elements=st.floats(-9, 9, width=32)),
       data=st.data())  # fmt: skip
def test_upsample_nearest_with_whole_scales_equals_onnx_reference(x, data):
    scales = np.array([data.draw(st.integers(1, 3)) for _ in range(x.ndim)], np.float32)
    inputs = {"X": x, "scales": scales}
    (got,) = run_refquant("Upsample", inputs, [np.float32], opset=10, attrs={"mode": "nearest"})
    (want,) = run_reference("Upsample", inputs, [np.float32], opset=10, attrs={"mode": "nearest"})
    assert_same_bits(got, want)


def test_upsample_hand_cases():
    x = np.array([[0.0, 1.0, 2.0]], np.float32)
    # linear, asymmetric: x = y / 2 -> 0, .5, 1, 1.5, 2, 2.5 (beyond the last pixel: clamped to it)
    (y,) = run_refquant("Upsample", {"X": x, "scales": np.array([1, 2], np.float32)}, [np.float32], opset=10,
                        attrs={"mode": "linear"})
    np.testing.assert_array_equal(y, [[0, 0.5, 1, 1.5, 2, 2]])
    # nearest, scale 1.5: L = floor(4.5) = 4, x = y / 1.5 rounded down: 0, 0, 1, 2
    (y,) = run_refquant("Upsample", {"X": x, "scales": np.array([1, 1.5], np.float32)}, [np.float32], opset=13)
    np.testing.assert_array_equal(y, [[0, 0, 1, 2]])


@pytest.mark.parametrize(("scales", "attrs", "error", "message"), [
    ([1.0, 0.5], {}, ShapeError, r"Upsample '#0': scales \[1.0, 0.5\] must be finite and >= 1"),
    ([2.0], {}, ShapeError, r"Upsample '#0': scales has shape \(1,\), expected \(2,\)"),
    ([1.0, 2.0], {"mode": "cubic"}, AttributeValueError, "Upsample '#0': mode 'cubic' is not supported"),
])  # fmt: skip
def test_upsample_errors_name_the_node(scales, attrs, error, message):
    with pytest.raises(error, match=message):
        run_refquant("Upsample", {"X": np.ones((2, 2), np.float32), "scales": np.array(scales, np.float32)},
                     [np.float32], opset=10, attrs=attrs)
