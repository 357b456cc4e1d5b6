"""GridSample and AffineGrid (refquant/ops/sampling.py, spec/ops/image.md): hand-derived small cases and the
coordinate and weight formulas written again here in float64; the edges (align_corners, every padding_mode with
samples outside the image, NaN, integer X, mode names per version)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refquant.errors import AttributeValueError, DTypeError, ShapeError

from .helpers import run_refquant

ROW = np.array([[[[10, 20, 30, 40]]]], np.float32)  # N = C = H = 1, W = 4


def _sample_row(xs, *, mode="linear", padding_mode="zeros", align_corners=0, x=ROW, opset=22):
    """GridSample of the 1 x 4 row at the normalized x coordinates ``xs`` (y = 0)."""
    grid = np.array([[[[v, 0.0] for v in xs]]], np.float32)
    (y,) = run_refquant("GridSample", {"X": x, "grid": grid}, [x.dtype], opset=opset,
                        attrs={"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners})
    return y.reshape(-1)


# without align_corners the pixel coordinate is ((n + 1) * 4 - 1) / 2: n = -1 -> -0.5, 0 -> 1.5, 1.5 -> 4.5, -3 -> -4.5
@pytest.mark.parametrize(
    ("padding_mode", "want"),
    [
        ("zeros", [5, 25, 0, 0]),  # -0.5: half of pixel -1 (0) and half of 10; 4.5 and -4.5: both taps outside
        ("border", [10, 25, 40, 10]),  # tap -1 reads pixel 0; 4.5 clamps to 3; -4.5 clamps to 0
        ("reflection", [10, 25, 35, 40]),  # 4.5 reflects by 3.5 to 2.5; -4.5 reflects twice, to 3.5
    ],
)
def test_linear_padding_modes_inside_and_outside(padding_mode, want):
    np.testing.assert_array_equal(_sample_row([-1, 0, 1.5, -3], padding_mode=padding_mode), want)


def test_align_corners_maps_the_corner_centres():
    # pixel coordinate (n + 1) / 2 * 3: n = 1/3 -> 2; n = 2 -> 4.5, outside [0, 3]
    np.testing.assert_array_equal(_sample_row([1 / 3, -1, 1], align_corners=1), [30, 10, 40])
    np.testing.assert_array_equal(_sample_row([2], align_corners=1, padding_mode="border"), [40])
    np.testing.assert_array_equal(_sample_row([2], align_corners=1, padding_mode="reflection"), [25])  # 3 - 1.5
    np.testing.assert_array_equal(_sample_row([2], align_corners=1, padding_mode="zeros"), [0])


def test_nearest_rounds_half_to_even():
    # n = 0 -> 1.5 -> 2 (30); n = -0.5 -> 0.5 -> 0 (10); n = 0.5 -> 2.5 -> 2 (30);
    # n = 1 -> 3.5 -> 4: outside (zeros), clamped to 3 (border), reflected by 3.5 to 3 (reflection)
    np.testing.assert_array_equal(_sample_row([0, -0.5, 0.5, 1], mode="nearest"), [30, 10, 30, 0])
    np.testing.assert_array_equal(_sample_row([1], mode="nearest", padding_mode="border"), [40])
    np.testing.assert_array_equal(_sample_row([1], mode="nearest", padding_mode="reflection"), [40])


def test_cubic_uses_keys_weights():
    x = np.array([[[[1, 4, 2, 8, 5, 7]]]], np.float64)
    n = float(np.float32(-0.1))  # the grid is float32; align_corners: pixel (n + 1) / 2 * 5 = 2.25, taps 1 .. 4
    a = -0.75

    def keys(s):
        s = abs(s)
        return (a + 2) * s**3 - (a + 3) * s**2 + 1 if s <= 1 else a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a

    p = (n + 1) / 2 * 5
    want = sum(keys(p - i) * x[0, 0, 0, i] for i in range(1, 5))
    got = _sample_row([n], mode="cubic", align_corners=1, x=x)
    np.testing.assert_allclose(got, [want], rtol=1e-15)


def test_nan_coordinates_give_nan_and_integer_x_is_nearest_only():
    got = _sample_row([np.nan, 0], padding_mode="border")
    assert np.isnan(got[0]) and got[1] == 25
    ints = ROW.astype(np.int32)
    np.testing.assert_array_equal(_sample_row([0, -1], mode="nearest", x=ints), [30, 10])
    with pytest.raises(DTypeError):
        _sample_row([0], x=ints)
    with pytest.raises(ShapeError):
        _sample_row([np.nan], mode="nearest", x=ints)


def test_three_dimensional_linear_at_version_20():
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 2, 2)  # value 4 z + 2 y + x
    grid = np.array([[[[[0.0, 0.0, 0.0], [1.0, -1.0, 1.0]]]]], np.float32)  # (x, y, z): centre; (1, 0, 1) corner
    (y,) = run_refquant("GridSample", {"X": x, "grid": grid}, [np.float32], opset=20, attrs={"align_corners": 1})
    np.testing.assert_array_equal(y.reshape(-1), [3.5, 5])


def test_mode_names_follow_the_version():
    np.testing.assert_array_equal(_sample_row([0], mode="bilinear", opset=16), [25])
    with pytest.raises(AttributeValueError):
        _sample_row([0], mode="linear", opset=16)
    with pytest.raises(AttributeValueError):
        _sample_row([0], mode="bilinear", opset=20)


def test_empty_grid_gives_an_empty_output():
    grid = np.zeros((1, 0, 3, 2), np.float32)
    (y,) = run_refquant("GridSample", {"X": ROW, "grid": grid}, [np.float32], opset=22)
    assert y.shape == (1, 1, 0, 3)


@pytest.mark.parametrize("align_corners", [0, 1])
def test_affine_grid_is_theta_times_the_base_coordinates(align_corners):
    theta = np.array([[[1.0, 0.5, 0.25], [0.0, 2.0, -1.0]]], np.float64)
    h, w = 2, 3

    def base(i, d):
        return -1 + 2 * i / (d - 1) if align_corners else (2 * i + 1) / d - 1

    want = np.zeros((1, h, w, 2))
    for i in range(h):
        for j in range(w):
            v = (base(j, w), base(i, h), 1.0)
            want[0, i, j] = [sum(theta[0, r, k] * v[k] for k in range(3)) for r in range(2)]
    (grid,) = run_refquant("AffineGrid", {"theta": theta, "size": np.array([1, 5, h, w], np.int64)}, [np.float64],
                           opset=20, attrs={"align_corners": align_corners})
    np.testing.assert_allclose(grid, want, rtol=0, atol=1e-15)


def test_affine_grid_single_pixel_and_3d():
    theta = np.array([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]], np.float32)
    (grid,) = run_refquant("AffineGrid", {"theta": theta, "size": np.array([1, 1, 1, 1, 2], np.int64)},
                           [np.float32], opset=20, attrs={"align_corners": 1})
    assert grid.shape == (1, 1, 1, 2, 3)
    np.testing.assert_array_equal(grid.reshape(2, 3), [[-1, -1, -1], [1, -1, -1]])  # (x, y, z); D = H = 1 -> -1
    assert math.isclose(float(grid[0, 0, 0, 1, 0]), 1.0)
