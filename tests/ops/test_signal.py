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
