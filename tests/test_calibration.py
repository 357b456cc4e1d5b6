"""refquant.calibrate and the calibrators against onnxruntime's calibrators (same model, same data)."""

from __future__ import annotations

import contextlib
import io
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper

import refquant
from refquant.calibration import (
    CalibrationError,
    DistributionCalibrator,
    EntropyCalibrator,
    MinMaxCalibrator,
    PercentileCalibrator,
    TensorRange,
    create_calibrator,
    entropy_threshold,
    percentile_threshold,
    select_tensors,
)
from refquant.errors import FeedError

from .float_models import MODELS, ORT_METHODS, Reader, graph_model, make_batches, ort_ranges

ort_calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")
from refquant.backends.ort_runner import make_runner  # noqa: E402


# ----------------------------------------------------------------------------
# models and data
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    paths = {}
    for name, (build, _) in MODELS.items():
        paths[name] = directory / f"{name}.onnx"
        paths[name].write_bytes(build().SerializeToString())
    return paths


def assert_identical(got, expected, what):
    """Same type (numpy scalar or array), dtype, shape and bits."""
    assert type(got) is type(expected), f"{what}: {type(got)} != {type(expected)}"
    got, expected = np.asarray(got), np.asarray(expected)
    assert (
        got.dtype == expected.dtype and got.shape == expected.shape
    ), f"{what}: {got.dtype}{got.shape} vs {expected.dtype}{expected.shape}"
    assert got.tobytes() == expected.tobytes(), f"{what}: {got} != {expected}"


def assert_matches_onnxruntime(mine, theirs, method):
    assert list(mine) == [name for name in mine if name in theirs.data] and set(mine) == set(theirs.data)
    for name, data in theirs.data.items():
        r = mine[name]
        assert_identical(r.low, data.lowest, f"{name} low")
        assert_identical(r.high, data.highest, f"{name} high")
        if method in ("entropy", "distribution"):
            assert_identical(r.hist, data.hist, f"{name} hist")
            assert_identical(r.edges, data.bins if method == "entropy" else data.hist_edges, f"{name} edges")
        if method == "distribution":
            assert_identical(r.avg, data.avg, f"{name} avg")
            assert_identical(r.std, data.std, f"{name} std")


# ----------------------------------------------------------------------------
# equal to onnxruntime
# ----------------------------------------------------------------------------

CASES = [
    ("minmax", {}),
    ("minmax", {"symmetric": True, "per_channel": True}),
    ("minmax", {"moving_average": True}),
    ("entropy", {}),
    ("entropy", {"num_bins": 256, "num_quantized_bins": 32}),
    ("percentile", {}),
    ("percentile", {"symmetric": False, "percentile": 99.0, "num_bins": 512}),
    ("distribution", {}),
    ("distribution", {"scenario": "p3", "num_bins": 512}),
]


@pytest.mark.parametrize("runner", ["onnxruntime", "default"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("method, options", CASES)
def test_ranges_equal_onnxruntime(model_files, tmp_path, model, method, options, runner):
    """Through onnxruntime's activations, and through the default runner (the onnxruntime profile): exact."""
    shape = MODELS[model][1]
    batches = make_batches(shape, 5, seed=len(options))
    path = model_files[model]
    expected = ort_ranges(path, batches, method, options, tmp_path)
    run = make_runner(path) if runner == "onnxruntime" else None
    got = refquant.calibrate(path, Reader(batches), method, runner=run, **options)
    assert_matches_onnxruntime(got, expected, method)


@pytest.mark.parametrize(
    "method, options",
    [("minmax", {}), ("entropy", {"num_bins": 64, "num_quantized_bins": 16}), ("distribution", {"num_bins": 512})],
)
def test_float16_tensors_equal_onnxruntime(tmp_path, method, options):
    """float16 activations: numpy bins them in float16 arithmetic, the ranges stay float16."""
    model = graph_model(
        [helper.make_node("Add", ["x", "x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
        [helper.make_tensor_value_info("x", T.FLOAT16, ["N", 8])],
        [helper.make_tensor_value_info("y", T.FLOAT16, ["N", 8])],
        [],
    )
    path = tmp_path / "f16.onnx"
    path.write_bytes(model.SerializeToString())
    rng = np.random.default_rng(0)
    batches = [{"x": (rng.standard_normal((4, 8)) * 3).astype(np.float16)} for _ in range(4)]
    expected = ort_ranges(path, batches, method, options, tmp_path)
    got = refquant.calibrate(path, batches, method, runner=make_runner(path), **options)
    assert_matches_onnxruntime(got, expected, method)
    assert got["y"].low.dtype == np.float16


def test_float16_percentile_fails_where_onnxruntime_fails():
    """onnxruntime's Percentile collector bins float16 data with numpy.histogram itself. numpy 2.1 and later refuse
    2048 float16 bins over a range of about 7 ("too many bins"), numpy 2.0 makes them: refquant follows the
    numpy that onnxruntime runs with, and where it refuses refquant names the tensor."""
    x = (np.random.default_rng(0).standard_normal((4, 8)) * 3).astype(np.float16)
    try:
        np.histogram(np.abs(x), 2048, range=(np.float16(0), np.abs(x).max()))
    except ValueError:
        with pytest.raises(CalibrationError, match="tensor 'x': no 2048 float16 bins"):
            refquant.calibrate(_relu_model(), [{"x": x}], "percentile", runner=_relu_runner, tensors=["x"])
    else:
        ranges = refquant.calibrate(_relu_model(), [{"x": x}], "percentile", runner=_relu_runner, tensors=["x"])
        assert list(ranges) == ["x"]


def test_op_types_select_like_onnxruntime(model_files):
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    path = model_files["cnn"]
    for op_types in (None, ["Conv"], ["Relu", "Gemm"]):
        base = ort_calibrate.CalibraterBase(str(path), op_types_to_calibrate=op_types)
        expected, _ = base.select_tensors_to_calibrate(load_model_with_shape_infer(path))
        assert set(select_tensors(refquant.model.load_model(path), op_types)) == expected


def test_max_intermediate_outputs_compat_and_fixed(model_files, tmp_path):
    """onnxruntime keeps only the last (5 mod 2) = 1 batch; fixed keeps all five."""
    path, batches = model_files["mlp"], make_batches((4, 16), 5)
    batches[0]["x"] = batches[0]["x"] * 10  # the widest batch is the one onnxruntime discards
    expected = ort_ranges(path, batches, "minmax", {"max_intermediate_outputs": 2}, tmp_path)
    runner = make_runner(path)
    got = refquant.calibrate(path, batches, "minmax", runner=runner, max_intermediate_outputs=2)
    assert_matches_onnxruntime(got, expected, "minmax")
    last_only = refquant.calibrate(path, batches[-1:], "minmax", runner=runner)
    fixed = refquant.calibrate(path, batches, "minmax", runner=runner, max_intermediate_outputs=2, compat="fixed")
    everything = refquant.calibrate(path, batches, "minmax", runner=runner)
    assert got == last_only and fixed == everything and fixed["x"] != got["x"]
    with pytest.raises(CalibrationError, match="discards all 4 batches"):
        refquant.calibrate(path, batches[:4], "minmax", runner=runner, max_intermediate_outputs=2)


@pytest.mark.parametrize("method", list(ORT_METHODS))
def test_default_runner_gives_onnxruntime_calibrators_ranges(model_files, tmp_path, method):
    """No runner given: the interpreter's onnxruntime profile computes the activations, and every range of a
    plain CNN (13 tensors) is the one create_calibrator(...).collect_data / compute_data gives, bit for bit."""
    path = model_files["plain_cnn"]
    batches = make_batches(MODELS["plain_cnn"][1], 4, seed=3)
    expected = ort_ranges(path, batches, method, {}, tmp_path)
    assert len(expected.data) == 13
    got = refquant.calibrate(path, Reader(batches), method)
    assert_matches_onnxruntime(got, expected, method)


@pytest.mark.parametrize("model", list(MODELS))
def test_default_runner_equals_onnxruntime_runner(model_files, model):
    """The onnxruntime profile's activations are onnxruntime's: the same ranges, bit for bit (no tolerance)."""
    path = model_files[model]
    batches = make_batches(MODELS[model][1], 3)
    ours = refquant.calibrate(path, batches, "minmax")
    theirs = refquant.calibrate(path, batches, "minmax", runner=make_runner(path))
    assert list(ours) == list(theirs)
    for name in ours:
        assert_identical(ours[name].low, theirs[name].low, f"{name} low")
        assert_identical(ours[name].high, theirs[name].high, f"{name} high")


def test_profile_chooses_the_default_runner(model_files):
    """compat="fixed" (or profile="spec") computes activations in the spec's arithmetic: exactly the ranges of
    the spec interpreter's tensors; compat="onnxruntime" those of the onnxruntime profile."""
    path = model_files["plain_cnn"]
    batches = make_batches(MODELS["plain_cnn"][1], 2, seed=5)
    for profile, compat in (("spec", "fixed"), ("onnxruntime", "onnxruntime")):
        session = refquant.Session(path, profile=profile)
        activations = [session.run_all(feeds) for feeds in batches]
        for options in ({"compat": compat}, {"compat": "onnxruntime", "profile": profile}):
            got = refquant.calibrate(path, batches, "minmax", **options)
            for name, r in got.items():
                assert r.low[0] == min(a[name].min() for a in activations), (profile, name)
                assert r.high[0] == max(a[name].max() for a in activations), (profile, name)
    spec = refquant.calibrate(path, batches, "minmax", compat="fixed")
    ort = refquant.calibrate(path, batches, "minmax")
    assert any(spec[name] != ort[name] for name in spec)  # the two arithmetics differ on this model
    with pytest.raises(CalibrationError, match="no effect with runner="):
        refquant.calibrate(path, batches, "minmax", runner=make_runner(path), profile="spec")


# ----------------------------------------------------------------------------
# the threshold formulas on their own, against onnxruntime's collector
# ----------------------------------------------------------------------------


def _ort_collector(method, **options):
    defaults = dict(symmetric=False, num_bins=0, num_quantized_bins=0, percentile=99.999, scenario="same")
    return ort_calibrate.HistogramCollector(method=method, **{**defaults, **options})


def _histogram(kind, seed, bins):
    """Counts shaped like real histograms: sparse small counts, bell curves, heavy tails."""
    rng = np.random.default_rng(seed)
    if kind == "sparse":
        return rng.integers(0, 5, bins)
    if kind == "heavy":
        return (rng.pareto(1.5, bins) * 3).astype(np.int64)
    samples = rng.standard_normal(int(rng.integers(10, 2000))) * rng.uniform(0.2, 1.5)
    return np.histogram(samples, bins, range=(-3, 3))[0]


histograms = st.builds(
    _histogram,
    st.sampled_from(["sparse", "bell", "heavy"]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([16, 32, 64, 128, 256]),
)


#: histograms where onnxruntime's int64 q and its smoothing decide the threshold (found by search):
#: a float q or another eps gives another answer on ("bell", 2, 32, 4); "fixed" differs on both
SENSITIVE = [("bell", 2, 32, 4), ("sparse", 1, 32, 4)]


@pytest.mark.parametrize("kind, seed, bins, quantized_bins", SENSITIVE)
def test_entropy_threshold_on_sensitive_histograms(kind, seed, bins, quantized_bins):
    hist, edges = _histogram(kind, seed, bins), np.linspace(-3, 3, bins + 1).astype(np.float32)
    low, high = np.float32(-3), np.float32(3)
    expected = _ort_collector("entropy").get_entropy_threshold((hist, edges, low, high), quantized_bins)
    assert entropy_threshold(hist, edges, low, high, quantized_bins) == tuple(expected)
    fixed = entropy_threshold(hist, edges, low, high, quantized_bins, compat="fixed")
    assert fixed == _reference_kl_search(hist, edges, quantized_bins)
    assert fixed != tuple(expected)  # on these histograms the corrections change the threshold


@given(histograms, st.sampled_from([4, 8, 16]), st.floats(0.1, 100.0))
def test_entropy_threshold_matches_onnxruntime(hist, quantized_bins, threshold):
    if hist.sum() == 0 or quantized_bins > hist.size:
        return
    edges = np.linspace(-threshold, threshold, hist.size + 1).astype(np.float32)
    low, high = np.float32(-threshold * 0.9), np.float32(threshold * 0.95)
    expected = _ort_collector("entropy").get_entropy_threshold((hist, edges, low, high), quantized_bins)
    got = entropy_threshold(hist, edges, low, high, quantized_bins)
    assert_identical(got[0], expected[0], "low")
    assert_identical(got[1], expected[1], "high")


@given(histograms, st.floats(50.0, 100.0), st.booleans())
def test_percentile_threshold_matches_onnxruntime(hist, percentile, symmetric):
    if hist.sum() == 0:
        return
    edges = np.linspace(0 if symmetric else -4, 4, hist.size + 1).astype(np.float32)
    low, high = np.float32(-3.5), np.float32(3.75)
    collector = _ort_collector("percentile", symmetric=symmetric, percentile=percentile, num_bins=hist.size)
    collector.histogram_dict = {"t": (hist, edges, low, high)}
    with contextlib.redirect_stdout(io.StringIO()):
        expected = collector.compute_percentile()["t"]
    got = percentile_threshold(hist, edges, low, high, percentile, symmetric=symmetric)
    assert_identical(got[0], expected[0], "low")
    assert_identical(got[1], expected[1], "high")


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2, 7, 128, 1000, 2048, 4096]),
    st.floats(-30, 30),
    st.sampled_from(["values", "relu", "abs"]),
)
def test_uniform_bins_count_like_numpy_histogram(seed, num_bins, log_scale, kind):
    """The fast path's counts equal numpy.histogram's, on the edges and the floats next to them too."""
    from refquant.calibration.binning import UniformBins

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(rng.integers(1, 3000))) * 10.0**log_scale).astype(np.float32)
    x = np.maximum(x, 0) if kind == "relu" else x
    if kind == "abs":  # symmetric Percentile: a histogram of |x| over [min |x|, max |x|]
        value_range = (np.abs(x).min(), np.abs(x).max())
    else:
        threshold = np.asarray(np.abs(x).max(), np.float32)
        value_range = (-threshold, threshold)
    bins = UniformBins(value_range, num_bins, np.dtype(np.float32), nan_free=True, absolute=kind == "abs")
    near = np.concatenate(
        [bins.edges, np.nextafter(bins.edges, np.float32(np.inf)), np.nextafter(bins.edges, -np.float32(np.inf))]
    )
    near = near[(near >= bins.first) & (near <= bins.last)]
    x = np.concatenate([x, near, -near if kind == "abs" else near]).astype(np.float32)
    expected = np.histogram(np.abs(x) if kind == "abs" else x, num_bins, range=value_range)[0]
    assert bins.count(x).tolist() == expected.tolist()
    if kind != "abs":  # symmetric ranges take the fast path whenever the edges increase
        assert bins.fast == bool((np.diff(bins.edges) > 0).all())


def _reference_kl_search(hist, edges, num_quantized_bins):
    """The published algorithm (MXNet / TensorRT 2017), plain Python, float64."""
    n, zero = len(hist), len(hist) // 2
    best = None
    for i in range(num_quantized_bins // 2, zero + 1):
        start, end = zero - i, min(zero + i + 1, n)
        sliced = [float(v) for v in hist[start:end]]
        p = list(sliced)
        p[0] += float(sum(hist[:start]))
        p[-1] += float(sum(hist[end:]))
        merged = len(sliced) // num_quantized_bins
        q = [0.0] * len(p)
        for j in range(num_quantized_bins):
            lo = j * merged
            hi = len(p) if j == num_quantized_bins - 1 else lo + merged
            nonzero = [k for k in range(lo, hi) if p[k] != 0]
            for k in nonzero:
                q[k] = sum(sliced[lo:hi]) / len(nonzero)

        def smooth(d):
            zeros = sum(1 for v in d if v == 0)
            if zeros == len(d):
                return None
            eps1 = 1e-4 * zeros / (len(d) - zeros)
            return [1e-4 if v == 0 else v - eps1 for v in d]

        ps, qs = smooth(p), smooth(q)
        if ps is None or qs is None:
            kl = float("inf")
        else:
            sp, sq = sum(ps), sum(qs)
            kl = sum(a / sp * np.log((a / sp) / (b / sq)) for a, b in zip(ps, qs))
        if best is None or kl < best[0] - 1e-12:
            best = (kl, edges[start], edges[end])
    return best[1], best[2]


@given(histograms, st.sampled_from([4, 8]))
def test_fixed_entropy_is_the_reference_algorithm(hist, quantized_bins):
    if hist.sum() == 0 or quantized_bins > hist.size:
        return
    edges = np.linspace(-2, 2, hist.size + 1).astype(np.float32)
    got = entropy_threshold(hist, edges, np.float32(-2), np.float32(2), quantized_bins, compat="fixed")
    assert got == _reference_kl_search(hist, edges, quantized_bins)


def test_fixed_percentile_takes_the_upper_edge():
    """99 of 100 values lie in bins 0-1 of [0, 4): the 99th percentile is inside bin 1 = [1, 2)."""
    hist, edges = np.array([50, 49, 0, 1]), np.array([0, 1, 2, 3, 4], np.float32)
    low, high = np.float32(0), np.float32(4)
    assert percentile_threshold(hist, edges, low, high, 99.0, symmetric=True) == (np.float32(0), np.float32(1))
    assert percentile_threshold(hist, edges, low, high, 99.0, symmetric=True, compat="fixed") == (0, 2)


# ----------------------------------------------------------------------------
# streaming: shards, state files, memory
# ----------------------------------------------------------------------------

SHARD_CASES = [
    (MinMaxCalibrator, {}),
    (MinMaxCalibrator, {"per_channel": True, "moving_average": True}),
    (EntropyCalibrator, {"num_bins": 64, "num_quantized_bins": 16}),
    (PercentileCalibrator, {"num_bins": 128}),
    (PercentileCalibrator, {"num_bins": 128, "symmetric": False}),
    (DistributionCalibrator, {"num_bins": 512, "scenario": "p3"}),
]


def _activations(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "a": rng.standard_normal((2, 3, 4)).astype(np.float32) * (i + 1),
            "b": np.maximum(rng.standard_normal((2, 5)), 0).astype(np.float32),
        }
        for i in range(count)
    ]


def _single_pass(klass, options, batches):
    calibrator = klass(**options)
    for number in range(calibrator.passes):
        if number:
            calibrator.next_pass()
        for batch in batches:
            calibrator.collect(batch)
    return calibrator.compute()


@pytest.mark.parametrize("klass, options", SHARD_CASES)
def test_sharded_calibration_equals_single_pass(tmp_path, klass, options):
    batches = _activations(7)
    shards = [batches[:3], batches[3:4], batches[4:]]
    expected = _single_pass(klass, options, batches)

    def collected(calibrator, shard):
        for batch in shard:
            calibrator.collect(batch)
        calibrator.save(tmp_path / "state.json")  # every shard goes through a state file
        return klass.load(tmp_path / "state.json")

    merged = klass(**options)
    for shard in shards:
        merged.merge(collected(klass(**options), shard))
    if klass.passes == 2:
        merged.next_pass()
        template = merged
        merged = template.fork()
        for shard in shards:
            merged.merge(collected(template.fork(), shard))
    assert merged.compute() == expected


def _state_size(calibrator):
    def leaves(value):
        if isinstance(value, dict):
            return sum(leaves(v) for v in value.values())
        if isinstance(value, list):
            return sum(leaves(v) for v in value)
        return 1

    return leaves(calibrator.state_dict())


@pytest.mark.parametrize("klass, options", [case for case in SHARD_CASES if not case[1].get("moving_average")])
def test_state_size_does_not_grow_with_batches(klass, options):
    calibrator = klass(**options)
    sizes = {}
    for number in range(calibrator.passes):
        if number:
            calibrator.next_pass()
        for index, batch in enumerate(_activations(200)):
            calibrator.collect(batch)
            if index in (9, 199):
                sizes[(number, index)] = _state_size(calibrator)
    assert all(sizes[(n, 9)] == sizes[(n, 199)] for n in range(calibrator.passes)), sizes


def test_calibrate_memory_is_independent_of_batch_count(tmp_path):
    """200 batches of a one-shot generator: the peak stays that of 20 batches (feeds spill to disk)."""
    model = graph_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", T.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("y", T.FLOAT, [64, 64])],
        [],
    )

    def peak(count):
        rng = np.random.default_rng(0)
        batches = ({"x": rng.standard_normal((64, 64)).astype(np.float32)} for _ in range(count))
        tracemalloc.start()
        refquant.calibrate(
            model, batches, "percentile", runner=lambda feeds: {"x": feeds["x"], "y": np.maximum(feeds["x"], 0)}
        )
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result

    small, large = peak(20), peak(200)
    assert large < small + 256 * 1024, (small, large)  # one batch is 16 KiB; 200 stored would be 3.2 MiB


# ----------------------------------------------------------------------------
# data sources
# ----------------------------------------------------------------------------


def _relu_model():
    return graph_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 4])],
        [],
    )


def _relu_runner(feeds):
    return {"x": feeds["x"], "y": np.maximum(feeds["x"], 0)}


def test_every_data_source_gives_the_same_ranges(tmp_path):
    batches = [{"x": np.random.default_rng(i).standard_normal((3, 4)).astype(np.float32)} for i in range(4)]
    npz_dir, npy_dir = tmp_path / "npz", tmp_path / "npy"
    npz_dir.mkdir(), npy_dir.mkdir()
    for i, feeds in enumerate(batches):
        np.savez(npz_dir / f"{i:02d}.npz", **feeds)
        np.save(npy_dir / f"{i:02d}.npy", feeds["x"])
    np.savez(tmp_path / "stacked.npz", x=np.stack([f["x"] for f in batches]))
    sources = [batches, Reader(batches), iter(batches), npz_dir, str(npy_dir), tmp_path / "stacked.npz"]
    results = [refquant.calibrate(_relu_model(), s, "entropy", runner=_relu_runner) for s in sources]
    everything = np.concatenate([f["x"].ravel() for f in batches])
    assert results[0]["x"].high == everything.max() and results[0]["x"].hist.sum() == everything.size
    assert all(r == results[0] for r in results[1:])


def test_replayed_feeds_keep_any_input_name():
    """A one-shot source is replayed from a temporary directory; 'file' collides with numpy.savez's argument."""
    model = graph_model(
        [helper.make_node("Relu", ["file"], ["y"])],
        [helper.make_tensor_value_info("file", T.FLOAT, [2])],
        [helper.make_tensor_value_info("y", T.FLOAT, [2])],
        [],
    )
    batches = ({"file": np.array([i, -i], np.float32)} for i in range(1, 4))
    r = refquant.calibrate(
        model,
        batches,
        "entropy",
        runner=lambda f: {"file": f["file"], "y": np.maximum(f["file"], 0)},
        num_bins=4,
        num_quantized_bins=4,
    )
    assert r["file"].hist.tolist() == [2, 1, 1, 2] and r["y"].hist.tolist() == [0, 0, 4, 2]


def test_histograms_cope_with_changing_shapes():
    """onnxruntime cannot stack batches of different shapes; refquant histograms all their values."""
    batches = [{"x": np.arange(6, dtype=np.float32).reshape(2, 3) - 2}, {"x": np.array([[-4.0, 9.0]], np.float32)}]
    r = refquant.calibrate(_relu_model(), batches, "entropy", runner=_relu_runner, num_bins=8, num_quantized_bins=8)
    values = np.concatenate([b["x"].ravel() for b in batches])
    assert r["x"].hist.tolist() == np.histogram(values, 8, range=(-9, 9))[0].tolist()
    assert (r["x"].low, r["x"].high) == (np.float32(-4), np.float32(9))


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------


def test_empty_reader_is_an_error():
    for method in ("minmax", "entropy"):
        with pytest.raises(CalibrationError, match="no data"):
            refquant.calibrate(_relu_model(), Reader([]), method, runner=_relu_runner)


def test_per_channel_needs_a_fixed_channel_count():
    calibrator = MinMaxCalibrator(per_channel=True)
    calibrator.collect({"t": np.zeros((1, 3, 2), np.float32)})
    with pytest.raises(CalibrationError, match="tensor 't' has 4 channel"):
        calibrator.collect({"t": np.zeros((1, 4, 2), np.float32)})


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile", "distribution"])
def test_nan_only_tensor_is_an_error(method):
    batches = [{"x": np.full((2, 4), np.nan, np.float32)}]
    with pytest.raises(CalibrationError, match="tensor 'x' holds only NaN"):
        refquant.calibrate(_relu_model(), batches, method, runner=_relu_runner, tensors=["x"])


def test_nan_values_are_ignored():
    x = np.array([[1.0, np.nan, -3.0, 2.0]], np.float32)
    r = refquant.calibrate(_relu_model(), [{"x": x}], "entropy", runner=_relu_runner, tensors=["x"])
    assert (r["x"].low, r["x"].high, r["x"].hist.sum()) == (np.float32(-3), np.float32(2), 3)


def test_infinite_values_are_an_error_for_histograms():
    batches = [{"x": np.array([[1.0, np.inf, 0.0, 2.0]], np.float32)}]
    with pytest.raises(CalibrationError, match="infinite"):
        refquant.calibrate(_relu_model(), batches, "percentile", runner=_relu_runner)


@pytest.mark.parametrize("bad, counts", [(np.nan, "1 NaN and 0 infinite"), (-np.inf, "0 NaN and 1 infinite")])
def test_finite_data_refuses_nan_and_inf_naming_batch_and_input(bad, counts):
    """finite_data=True (what `refquant calibrate` passes, since it writes tables): no inf/nan range."""
    good = np.array([[1.0, 0.5, -3.0, 2.0]], np.float32)
    batches = [{"x": good}, {"x": good}, {"x": np.array([[1.0, bad, 0.0, 2.0]], np.float32)}]
    for method in ("minmax", "entropy"):
        with pytest.raises(CalibrationError, match=f"batch 3, input 'x': {counts} value\\(s\\); calibration data must be finite"):
            refquant.calibrate(_relu_model(), batches, method, runner=_relu_runner, finite_data=True)
    # by default NaN is ignored and MinMax reports the infinite range (spec/calibration.md); the tables refuse it
    ranges = refquant.calibrate(_relu_model(), batches, "minmax", runner=_relu_runner, tensors=["x"])
    if np.isinf(bad):
        assert ranges["x"].low == -np.inf


def test_calibrate_command_refuses_non_finite_data(tmp_path, capsys):
    import onnx

    from refquant import cli

    onnx.save(_relu_model(), tmp_path / "f.onnx")
    np.savez(tmp_path / "data.npz", x=np.array([[[1.0, 2.0, 3.0, 4.0]], [[1.0, np.inf, 3.0, 4.0]]], np.float32))
    status = cli.main(["calibrate", str(tmp_path / "f.onnx"), "--data", str(tmp_path / "data.npz"),
                       "--runner", "refquant", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "batch 2, input 'x': 0 NaN and 1 infinite value(s)" in err, err
    assert not (tmp_path / "out" / "calibration.cache").exists()


def test_option_errors():
    with pytest.raises(CalibrationError, match="num_bins >= 512"):
        create_calibrator("distribution", num_bins=256)
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        create_calibrator("kl")
    with pytest.raises(CalibrationError, match="unknown: \\['num_bins'\\]"):
        create_calibrator("minmax", num_bins=10)
    with pytest.raises(CalibrationError, match="percentile must be a number in"):
        create_calibrator("percentile", percentile=101)
    with pytest.raises(CalibrationError, match="percentile must be a number in"):
        create_calibrator("percentile", percentile="99")
    with pytest.raises(CalibrationError, match="compat must be"):
        create_calibrator("minmax", compat="ort")
    with pytest.raises(CalibrationError, match="num_quantized_bins"):
        create_calibrator("entropy", num_bins=64, num_quantized_bins=128)


def test_two_pass_protocol_errors():
    calibrator = EntropyCalibrator()
    calibrator.collect({"t": np.ones(4, np.float32)})
    with pytest.raises(CalibrationError, match="next_pass"):
        calibrator.compute()
    calibrator.next_pass()
    calibrator.collect({"t": np.ones(3, np.float32)})  # one value fewer than pass 1
    with pytest.raises(CalibrationError, match="same batches"):
        calibrator.compute()
    with pytest.raises(CalibrationError, match="pass 2"):
        EntropyCalibrator().merge(calibrator)
    with pytest.raises(CalibrationError, match="options differ"):
        calibrator.merge(EntropyCalibrator(num_bins=256))


def test_bad_state_files(tmp_path):
    calibrator = MinMaxCalibrator()
    calibrator.collect({"t": np.ones(3, np.float32)})
    calibrator.save(tmp_path / "minmax.json")
    with pytest.raises(CalibrationError, match="not EntropyCalibrator"):
        EntropyCalibrator.load(tmp_path / "minmax.json")
    document = json.loads((tmp_path / "minmax.json").read_text())
    del document["state"]["tensors"]
    (tmp_path / "broken.json").write_text(json.dumps(document))
    with pytest.raises(CalibrationError, match="malformed MinMaxCalibrator state"):
        MinMaxCalibrator.load(tmp_path / "broken.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(CalibrationError, match="calibration state '.*text.json' is not valid JSON"):
        MinMaxCalibrator.load(tmp_path / "text.json")


def test_bad_data_is_a_feed_error(tmp_path):
    with pytest.raises(FeedError, match="single feed dict"):
        refquant.calibrate(_relu_model(), {"x": np.ones((1, 4), np.float32)}, runner=_relu_runner)
    with pytest.raises(FeedError, match="does not exist"):
        refquant.calibrate(_relu_model(), tmp_path / "missing", runner=_relu_runner)
    with pytest.raises(FeedError, match="batch 1 is a ndarray"):
        refquant.calibrate(_relu_model(), [np.ones((1, 4), np.float32)], runner=_relu_runner)


def test_tensor_range_round_trips_json():
    ranges = refquant.calibrate(
        _relu_model(),
        [{"x": np.linspace(-1, 3, 8, dtype=np.float32).reshape(2, 4)}],
        "distribution",
        runner=_relu_runner,
    )
    for r in ranges.values():
        back = TensorRange.from_dict(json.loads(json.dumps(r.to_dict())))
        assert back == r and type(back.low) is type(r.low) and back.avg.dtype == np.float32


# ----------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------


def _cli(argv):
    import argparse

    from refquant.cli import calibrate as cli

    parser = argparse.ArgumentParser(prog="refquant")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_tables_and_ranges(tmp_path, capsys):
    model = tmp_path / "relu.onnx"
    model.write_bytes(_relu_model().SerializeToString())
    data = tmp_path / "data"
    data.mkdir()
    batches = [{"x": np.random.default_rng(i).standard_normal((3, 4)).astype(np.float32)} for i in range(3)]
    for i, feeds in enumerate(batches):
        np.savez(data / f"{i}.npz", **feeds)
    out = tmp_path / "out"
    argv = [
        "calibrate",
        str(model),
        "--data",
        str(data),
        "--method",
        "percentile",
        "--percentile",
        "99",
        "--out",
        str(out),
    ]
    assert _cli([*argv, "--format", "json,cache,trt"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.cache",
        "calibration.json",
        "calibration.trt.cache",
        "ranges.json",
    ]
    expected = refquant.calibrate(model, batches, "percentile", percentile=99.0)
    saved = json.loads((out / "ranges.json").read_text())
    assert {name: TensorRange.from_dict(r) for name, r in saved.items()} == expected
    captured = capsys.readouterr()
    assert "pass 2/2 [" in captured.err and "3/3 batches" in captured.err and "percentile: 2 tensors" in captured.out
    assert "activations: onnxruntime " in captured.out  # installed, so the default runs onnxruntime itself
    assert _cli([*argv, "--quiet", "--runner", "refquant"]) == 0
    assert "activations: refquant interpreter, profile onnxruntime" in capsys.readouterr().out
    assert _cli([*argv, "--quiet", "--compat", "fixed"]) == 0
    assert "activations: refquant interpreter, profile spec" in capsys.readouterr().out
    with pytest.raises(refquant.errors.RefquantError, match="no effect with --runner onnxruntime"):
        _cli([*argv, "--runner", "onnxruntime", "--profile", "spec"])
    with pytest.raises(refquant.errors.RefquantError, match="unknown table format"):
        _cli([*argv, "--format", "json,xml"])
    with pytest.raises(CalibrationError, match="minmax takes the options"):
        _cli(["calibrate", str(model), "--data", str(data), "--num-bins", "64", "--out", str(out)])


def test_cli_plot(tmp_path):
    model = tmp_path / "relu.onnx"
    model.write_bytes(_relu_model().SerializeToString())
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32))
    argv = [
        "calibrate",
        str(model),
        "--data",
        str(tmp_path / "data.npz"),
        "--method",
        "entropy",
        "--out",
        str(tmp_path / "out"),
    ]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(refquant.errors.RefquantError, match="needs matplotlib"):
            _cli([*argv, "--quiet", "--plot", str(tmp_path / "plots")])
        return
    assert _cli([*argv, "--quiet", "--plot", str(tmp_path / "plots")]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["x.png", "y.png"]
