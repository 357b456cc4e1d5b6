"""HannWindow, HammingWindow, BlackmanWindow (refquant/ops/signal.py, spec/ops/image.md): the ONNX formulas
written again here in float64, and the edges."""

from __future__ import annotations

import numpy as np
import pytest

from refquant.errors import ShapeError

from .helpers import run_refquant


@pytest.mark.parametrize("periodic", [0, 1])
def test_window_functions_match_their_formulas(periodic):
    import math

    size = 5
    n_den = size if periodic else size - 1
    want = {
        "HannWindow": [math.sin(math.pi * n / n_den) ** 2 for n in range(size)],
        "HammingWindow": [25 / 46 - 21 / 46 * math.cos(2 * math.pi * n / n_den) for n in range(size)],
        "BlackmanWindow": [0.42 - 0.5 * math.cos(2 * math.pi * n / n_den) + 0.08 * math.cos(4 * math.pi * n / n_den)
                           for n in range(size)],
    }
    for op, values in want.items():
        (got,) = run_refquant(op, {"size": np.array(size, np.int64)}, [np.float64], opset=17,
                              attrs={"periodic": periodic, "output_datatype": 11})
        np.testing.assert_allclose(got, values, rtol=0, atol=1e-15)


def test_window_function_edges():
    (empty,) = run_refquant("HannWindow", {"size": np.array(0, np.int32)}, [np.float32], opset=17)
    assert empty.shape == (0,) and empty.dtype == np.float32
    (one,) = run_refquant("HannWindow", {"size": np.array(1, np.int64)}, [np.float32], opset=17, attrs={"periodic": 0})
    assert np.isnan(one).all()
    (ints,) = run_refquant("HannWindow", {"size": np.array(4, np.int64)}, [np.int32], opset=17,
                           attrs={"output_datatype": 6})
    np.testing.assert_array_equal(ints, [0, 0, 1, 0])
    with pytest.raises(ShapeError):
        run_refquant("BlackmanWindow", {"size": np.array(-1, np.int64)}, [np.float32], opset=17)


def test_dft_against_the_sum_formula():
    import cmath

    x = np.array([[1.0, -2.0, 0.5, 3.0, 0.25]])  # (1, 5), real
    n = 5
    want = [sum(x[0, t] * cmath.exp(-2j * cmath.pi * k * t / n) for t in range(n)) for k in range(n)]
    (y,) = run_refquant("DFT", {"input": x[..., None]}, [np.float64], opset=17, attrs={"axis": 1})
    np.testing.assert_allclose(y[0, :, 0] + 1j * y[0, :, 1], want, rtol=0, atol=1e-14)
    (half,) = run_refquant("DFT", {"input": x[..., None]}, [np.float64], opset=17, attrs={"axis": 1, "onesided": 1})
    assert half.shape == (1, 3, 2)
    # dft_length 8 zero-pads; inverse divides by n
    (padded,) = run_refquant("DFT", {"input": x[..., None], "dft_length": np.array(8, np.int64)}, [np.float64],
                             opset=20)
    want8 = [sum(x[0, t] * cmath.exp(-2j * cmath.pi * k * t / 8) for t in range(5)) for k in range(8)]
    np.testing.assert_allclose(padded[0, :, 0] + 1j * padded[0, :, 1], want8, rtol=0, atol=1e-14)
    (back,) = run_refquant("DFT", {"input": padded}, [np.float64], opset=20, attrs={"inverse": 1})
    np.testing.assert_allclose(back[0, :5, 0], x[0], rtol=0, atol=1e-15)
    assert np.abs(back[0, 5:]).max() < 1e-15
