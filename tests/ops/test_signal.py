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


# -- STFT and MelWeightMatrix (spec/ops/image.md) ---------------------------------------------------------------


def _run_case(case):
    import refquant

    from ..helpers import to_array

    session = refquant.Session(case.model)
    (inputs, expected), = case.data_sets
    feeds = {spec.name: to_array(v) for spec, v in zip(case.model.graph.input, inputs)}
    return session.run(None, feeds), [to_array(w) for w in expected]


def test_stft_and_mel_node_cases():
    from ..helpers import node_cases
    from .helpers import assert_same_bits

    cases = {c.name: c for c in node_cases(r"^test_(stft|melweightmatrix)")}
    assert sorted(cases) == ["test_melweightmatrix", "test_stft", "test_stft_with_window"]
    for name in ("test_melweightmatrix", "test_stft"):
        (got,), (want,) = _run_case(cases[name])
        assert_same_bits(got, want, name)
    # the generator windows in float32, refquant in float64 (spec/ops/image.md, STFT)
    (got,), (want,) = _run_case(cases["test_stft_with_window"])
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2.0**-20 * np.abs(want).max())


def test_stft_against_the_frame_sum():
    import cmath

    x = np.array([0.5, -1.0, 2.0, 0.25, 3.0, -0.75, 1.5])  # 7 samples
    window = np.array([0.5, 1.0, 0.25, 2.0])
    step, n = 2, 4  # frames (7 - 4) // 2 + 1 = 2
    want = [[sum(x[f * step + t] * window[t] * cmath.exp(-2j * cmath.pi * k * t / n) for t in range(n))
             for k in range(n)] for f in range(2)]
    inputs = {"signal": x.reshape(1, 7, 1), "frame_step": np.array(step, np.int64), "window": window}
    (full,) = run_refquant("STFT", inputs, [np.float64], opset=17, attrs={"onesided": 0})
    assert full.shape == (1, 2, 4, 2)
    np.testing.assert_allclose(full[0, ..., 0] + 1j * full[0, ..., 1], want, rtol=0, atol=1e-14)
    (half,) = run_refquant("STFT", inputs, [np.float64], opset=17)
    np.testing.assert_array_equal(half, full[:, :, :3])
    # no window, frame_length 3: a rectangular window; a complex signal (last axis 2) with onesided=0
    z = np.stack([x, x[::-1]], axis=-1)[None]
    (c,) = run_refquant("STFT", {"signal": z, "frame_step": np.array(4, np.int32), "window": None,
                                 "frame_length": np.array(3, np.int32)}, [np.float64], opset=17, attrs={"onesided": 0})
    zc = x + 1j * x[::-1]
    want_c = [np.fft.fft(zc[f * 4:f * 4 + 3]) for f in range(2)]
    np.testing.assert_allclose(c[0, ..., 0] + 1j * c[0, ..., 1], want_c, rtol=0, atol=1e-14)


@pytest.mark.parametrize("inputs, attrs, match", [
    ({"frame_step": np.array(0, np.int64)}, {}, "frame_step must be >= 1"),
    ({"frame_step": np.array(1, np.int64), "window": np.ones(3), "frame_length": np.array(4, np.int64)}, {},
     "window has 3 points, frame_length is 4"),
    ({"frame_step": np.array(1, np.int64), "window": None, "frame_length": np.array(9, np.int64)}, {},
     r"frame_length 9 must be in \[1, signal_length 8\]"),
])
def test_stft_refuses_bad_geometry_naming_the_node(inputs, attrs, match):
    from refquant.errors import NodeError

    with pytest.raises(NodeError, match=f"STFT '#0': {match}"):
        run_refquant("STFT", {"signal": np.ones((1, 8, 1)), **inputs}, [np.float64], opset=17, attrs=attrs)
    from refquant.errors import AttributeValueError

    with pytest.raises(AttributeValueError, match="onesided=1 needs a real signal"):
        run_refquant("STFT", {"signal": np.ones((1, 8, 2)), "frame_step": np.array(1, np.int64)}, [np.float64], opset=17)


def test_mel_weight_matrix_by_hand():
    """num_mel_bins 2, dft_length 8 (5 bins), sample_rate 2000, edges 0 and mel^-1(1200): step 1200 / 4 = 300 mels;
    the corners 0, 300, 600, 900 mels are 0, 213.4, 492.0, 855.8 Hz, times 9 / 2000 floored: bins 0, 0, 2, 3."""
    upper = 700 * (10 ** (1200 / 2595) - 1)
    corners = [int(np.floor(9 * 700 * (10 ** (m / 2595) - 1) / 2000)) for m in (0, 300, 600, 900)]
    inputs = {"num_mel_bins": np.array(2, np.int64), "dft_length": np.array(8, np.int64),
              "sample_rate": np.array(2000, np.int64), "lower_edge_hertz": np.array(0.0),
              "upper_edge_hertz": np.array(upper)}
    (w,) = run_refquant("MelWeightMatrix", inputs, [np.float64], opset=17, attrs={"output_datatype": 11})
    assert corners == [0, 0, 2, 3] and w.shape == (5, 2)
    # filter 0, corners 0, 0, 2: 1 at bin 0 (no rise), falls (2 - j) / 2 over bins 0 .. 1
    # filter 1, corners 0, 2, 3: rises j / 2 over bins 0 .. 2, falls (3 - j) / 1 over bin 2
    np.testing.assert_array_equal(w, [[1, 0], [0.5, 0.5], [0, 1], [0, 0], [0, 0]])
    (ints,) = run_refquant("MelWeightMatrix", inputs, [np.int32], opset=17, attrs={"output_datatype": 6})
    np.testing.assert_array_equal(ints, [[1, 0], [0, 0], [0, 1], [0, 0], [0, 0]])


def test_mel_weight_matrix_matches_onnx_reference_on_its_float64_path():
    from .helpers import run_reference

    inputs = {"num_mel_bins": np.array(10, np.int64), "dft_length": np.array(64, np.int64),
              "sample_rate": np.array(16000, np.int64), "lower_edge_hertz": np.array(20.0),
              "upper_edge_hertz": np.array(7000.0)}
    (got,) = run_refquant("MelWeightMatrix", inputs, [np.float32], opset=17)
    (want,) = run_reference("MelWeightMatrix", inputs, [np.float32], opset=17)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (33, 10) and (got.max(axis=0) == 1).all()


def test_mel_weight_matrix_refuses_an_upper_edge_past_nyquist():
    from refquant.errors import ShapeError as Shape

    inputs = {"num_mel_bins": np.array(4, np.int64), "dft_length": np.array(8, np.int64),
              "sample_rate": np.array(8, np.int64), "lower_edge_hertz": np.array(0.0, np.float32),
              "upper_edge_hertz": np.array(1e6, np.float32)}
    with pytest.raises(Shape, match=r"MelWeightMatrix '#0': upper_edge_hertz 1000000.0 falls in spectrogram bin"):
        run_refquant("MelWeightMatrix", inputs, [np.float32], opset=17)


def test_stft_and_mel_versions_and_types_follow_the_schemas():
    from onnx import TensorProto as T

    from refquant.ops.signal import MEL_OUTPUT_TYPES, SIZE_TYPES, STFT_TYPES

    from .helpers import assert_versions_and_types_follow_the_onnx_schemas

    assert_versions_and_types_follow_the_onnx_schemas("STFT", {17: STFT_TYPES + SIZE_TYPES})
    mel = {17: SIZE_TYPES + STFT_TYPES + tuple(MEL_OUTPUT_TYPES)}
    assert_versions_and_types_follow_the_onnx_schemas("MelWeightMatrix", mel)
    assert T.BFLOAT16 in MEL_OUTPUT_TYPES
