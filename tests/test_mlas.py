"""refquant.mlas: onnxruntime's MLAS float32 kernels, bit for bit (profile float_pipeline="mlas-float32").

Golden values: onnxruntime 1.32 CPU (ORT_DISABLE_ALL, x86-64) on hypothesis-drawn shapes and values,
run through ``refquant.Session(profile="onnxruntime")``; hand-derived K-block lengths from
MlasSgemmOperation's rule; and properties of the orders (a product that is exact in every
order, row independence, the spec profile staying the correctly rounded value).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant import mlas
from refquant.backends import strategies as rqs
from refquant.window import Window

from .ops.helpers import assert_same_bits

ort = pytest.importorskip("onnxruntime")


def _host_has_avx512f() -> bool:
    from refquant.host import cpu_flags

    return "avx512f" in cpu_flags()


#: onnxruntime sums Softmax's exponentials in 16 lanes with AVX-512F, in 8 without (not emulated)
needs_avx512f = pytest.mark.skipif(not _host_has_avx512f(), reason="refquant.mlas.softmax replays the AVX-512F kernel")


def _model(op, inputs, n_outputs=1, opset=17, **attrs):
    names = [f"in{i}" for i in range(len(inputs))]
    outputs = [f"out{i}" for i in range(n_outputs)]
    graph = helper.make_graph(
        [helper.make_node(op, names, outputs, **attrs)],
        op,
        [helper.make_tensor_value_info(n, T.FLOAT, list(v.shape)) for n, v in zip(names, inputs)],
        [helper.make_tensor_value_info(n, T.FLOAT, None) for n in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, dict(zip(names, inputs))


def _assert_matches_onnxruntime(op, inputs, n_outputs=1, opset=17, threads=1, **attrs):
    """onnxruntime with ``threads`` intra-op threads against the onnxruntime profile with mlas_threads=threads."""
    model, feeds = _model(op, inputs, n_outputs, opset, **attrs)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    want = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    profile = refquant.profiles.ONNXRUNTIME.with_options(mlas_threads=threads)
    got = refquant.Session(model, profile=profile).run(None, feeds)
    for g, w in zip(got, want):
        assert_same_bits(g, w)
    return got


def _normal(shape, seed, spread=3.0, offset=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * spread + offset).astype(np.float32)


# ----------------------------------------------------------------------------- MatMul


@pytest.mark.parametrize("n, k, want", [(40, 300, 256), (16, 1000, 1024), (300, 40, 64), (128, 128, 128), (8, 8, 8), (600, 600, 128), (1, 5000, 1024), (5000, 1, 1)])  # fmt: skip
def test_sgemm_k_block_follows_mlas_stride_rule(n, k, want):
    """Hand-derived from MlasSgemmOperation: StrideN = StrideK = 128; N >= K halves StrideK while
    StrideK / 2 >= K; otherwise doubles StrideK while StrideN > 16 and StrideN / 2 >= N."""
    assert mlas._stride_k(n, k) == want


@given(m=st.integers(1, 40), k=st.integers(1, 600), n=st.integers(1, 90), threads=st.integers(1, 4), seed=st.integers(0, 2**16))  # fmt: skip
def test_matmul_matches_onnxruntime(m, k, n, threads, seed):
    """Products above 65536 multiply-adds are split between threads, each part with its own K blocks."""
    _assert_matches_onnxruntime("MatMul", [_normal((m, k), seed), _normal((k, n), seed + 1)], threads=threads)


@pytest.mark.parametrize("m, k, n, threads, parts", [(7, 257, 37, 2, [(0, 7, 0, 32), (0, 7, 32, 37)]), (7, 257, 37, 1, [(0, 7, 0, 37)]), (40, 600, 10, 3, [(0, 14, 0, 10), (14, 27, 0, 10), (27, 40, 0, 10)]), (7, 100, 37, 2, [(0, 7, 0, 37)])])  # fmt: skip
def test_sgemm_thread_split_follows_mlas_gemm_batch(m, k, n, threads, parts):
    """Hand-derived: min(threads, MNK / 65536 + 1) threads; N > M splits 16-column blocks (3 blocks: 2 + 1),
    else rows (40 x 600 x 10: 4 wanted, 3 allowed, 40 = 14 + 13 + 13); 7 x 100 x 37 = 25900 multiply-adds stays on one thread."""
    got = [(r.start, r.stop, c.start, c.stop) for r, c in mlas._thread_parts(m, n, k, 1, threads)]
    assert got == parts


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_mlas_threads_must_be_a_positive_integer(bad):
    with pytest.raises(refquant.errors.RefquantError, match="mlas_threads must be an integer >= 1"):
        refquant.profiles.ONNXRUNTIME.with_options(mlas_threads=bad)


def test_sgemm_thread_split_changes_the_rounding():
    a, b = _normal((7, 257), 0), _normal((257, 37), 1)
    assert not np.array_equal(mlas.sgemm(a, b, 1), mlas.sgemm(a, b, 2))
    _assert_matches_onnxruntime("MatMul", [a, b], threads=2)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((2, 3, 1, 20), (3, 20, 9)), ((2, 3, 5, 20), (3, 20, 9)), ((4, 1, 12), (12, 7)), ((3, 6, 12), (12, 7)), ((12,), (12, 5)), ((6, 13), (13,)), ((2, 3, 7), (7,)), ((6, 13), (13, 1)), ((1, 12, 16), (1, 16, 12))],  # fmt: skip
)
def test_batched_and_vector_matmul_matches_onnxruntime(a_shape, b_shape):
    """Batches, a 2-D B that folds A's batch into M (so (4, 1, 12) is not an M == 1 product),
    a 1-D B (M == 1 products of b and A's rows) and an (K, 1) B (the N == 1 kernel)."""
    _assert_matches_onnxruntime("MatMul", [_normal(a_shape, 1), _normal(b_shape, 2)])


def test_sgemm_is_exact_where_every_partial_sum_is():
    """Small integers: every order gives the exact product, M == 1 and M > 1 alike."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(-8, 8, (5, 300)).astype(np.float32), rng.integers(-8, 8, (300, 7)).astype(np.float32)
    exact = a.astype(np.int64) @ b.astype(np.int64)
    assert np.array_equal(mlas.sgemm(a, b), exact)
    assert np.array_equal(mlas.sgemm(a[:1], b), exact[:1])


def test_spec_profile_matmul_stays_correctly_rounded():
    a, b = _normal((12, 300), 3), _normal((300, 12), 4)
    model, feeds = _model("MatMul", [a, b])
    (got,) = refquant.Session(model).run(None, feeds)
    assert_same_bits(got, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))
    assert not np.array_equal(got, mlas.sgemm(a, b))  # the two pipelines do differ on this product


# ----------------------------------------------------------------------------- Softmax


@needs_avx512f
@given(rows=st.integers(1, 6), n=st.integers(1, 120), spread=st.sampled_from([0.1, 4.0, 40.0]), seed=st.integers(0, 2**16))
def test_softmax_matches_onnxruntime(rows, n, spread, seed):
    _assert_matches_onnxruntime("Softmax", [_normal((rows, n), seed, spread)], axis=-1)


@needs_avx512f
@pytest.mark.parametrize("opset, axis", [(13, 1), (13, 0), (11, 1), (11, 2)])
def test_softmax_axes_match_onnxruntime(opset, axis):
    """Softmax-13 over one inner axis; Softmax-11 over the flattened axes axis..n-1."""
    _assert_matches_onnxruntime("Softmax", [_normal((3, 5, 7), 5)], opset=opset, axis=axis)


@needs_avx512f
def test_softmax_exponent_reaches_subnormals_like_vscalefps():
    """x - max down to -103.97 (the kernel's clamp) gives subnormal exponentials, rounded once."""
    x = np.array([[0.0, -87.0, -90.0, -100.0, -103.0, -103.9, -120.0, -1e30]], np.float32)
    (y,) = _assert_matches_onnxruntime("Softmax", [x], axis=-1)
    assert 0 < y[0, 3] < np.finfo(np.float32).tiny


def test_mlas_exp_is_within_two_ulps_of_exp():
    v = np.linspace(-100, 0, 20001, dtype=np.float32)
    exact = np.exp(v.astype(np.float64))
    error = np.abs(mlas._exp(v) - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert error.max() < 2


# ----------------------------------------------------------------------------- LayerNormalization


@given(rows=st.integers(1, 8), n=st.integers(1, 70), bias=st.booleans(), offset=st.sampled_from([0.0, 0.7, 300.0]), seed=st.integers(0, 2**16))  # fmt: skip
def test_layer_normalization_matches_onnxruntime(rows, n, bias, offset, seed):
    """n < 8: the portable Welford loop; n >= 8: the AVX2 kernel with its 4- and 8-lane tails. Mean and InvStdDev too."""
    x = _normal((rows, n), seed, 3.0, offset)
    scale, b = _normal((n,), seed + 1, 0.1, 1.0), _normal((n,), seed + 2, 0.1)
    _assert_matches_onnxruntime("LayerNormalization", [x, scale, b] if bias else [x, scale], n_outputs=3, axis=-1)


def test_layer_normalization_over_two_axes_matches_onnxruntime():
    x = _normal((2, 3, 4, 5), 7)
    _assert_matches_onnxruntime("LayerNormalization", [x, _normal((4, 5), 8), _normal((4, 5), 9)], n_outputs=3, axis=2)


def test_layer_normalization_rows_are_independent():
    x = _normal((6, 21), 10)
    scale, b = _normal((21,), 11), _normal((21,), 12)
    together = mlas.layer_norm(x, scale, b, 1e-5)
    for i in range(6):
        alone = mlas.layer_norm(x[i : i + 1], scale, b, 1e-5)
        for t, a in zip(together, alone):
            assert_same_bits(t[i : i + 1], a)


# ----------------------------------------------------------------------------- constant B and Gemm


def _assert_gemm_matches_onnxruntime(op, a, b, c=None, constant_b=False, **attrs):
    """``op`` (MatMul or Gemm) with B fed or stored as an initializer (which onnxruntime prepacks)."""
    named = [("in0", a), ("in1", b)] + ([("in2", c)] if c is not None else [])
    feeds = {n: v for n, v in named if not (constant_b and n == "in1")}
    graph = helper.make_graph(
        [helper.make_node(op, [n for n, _ in named], ["out0"], **attrs)],
        op,
        [helper.make_tensor_value_info(n, T.FLOAT, list(v.shape)) for n, v in feeds.items()],
        [helper.make_tensor_value_info("out0", T.FLOAT, None)],
        [numpy_helper.from_array(b, "in1")] if constant_b else [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    (want,) = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    (got,) = refquant.Session(model, profile="onnxruntime").run(None, feeds)
    assert_same_bits(got, want)


@given(m=st.integers(1, 8), k=st.integers(1, 600), n=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_matmul_with_constant_b_matches_onnxruntime(m, k, n, seed):
    """A 2-D initializer B is prepacked: K blocks of 256, no M == 1 or N == 1 kernel."""
    _assert_gemm_matches_onnxruntime("MatMul", _normal((m, k), seed), _normal((k, n), seed + 1), constant_b=True)


@given(
    m=st.integers(1, 8), k=st.integers(1, 300), n=st.integers(1, 20), trans_b=st.booleans(), constant_b=st.booleans(),
    alpha=st.sampled_from([1.0, 0.3, 2.0]), beta=st.sampled_from([1.0, 0.0, 0.7]),
    c_shape=st.sampled_from(["none", "row", "full", "scalar"]), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_gemm_matches_onnxruntime(m, k, n, trans_b, constant_b, alpha, beta, c_shape, seed):
    """Y starts as C (times beta), MLAS accumulates alpha * A @ B' onto it: fma(chain, alpha, Y) per K block."""
    a, b = _normal((m, k), seed), _normal((n, k) if trans_b else (k, n), seed + 1)
    c = {"none": None, "row": _normal((n,), seed + 2), "full": _normal((m, n), seed + 2), "scalar": _normal((1,), seed + 2)}[c_shape]
    _assert_gemm_matches_onnxruntime("Gemm", a, b, c, constant_b, transB=int(trans_b), alpha=alpha, beta=beta)


# ----------------------------------------------------------------------------- Conv


@given(geometry=rqs.conv_geometries(max_channels=4), bias=st.booleans(), wide=st.booleans(), threads=st.integers(1, 3), seed=st.integers(0, 2**16))  # fmt: skip
def test_conv_matches_onnxruntime(geometry, bias, wide, threads, seed):
    """Every MlasConvPrepare algorithm: pointwise GEMM, the transposed-B GEMM of a full-width kernel,
    one GEMM over the whole im2col matrix, and MlasConvOperation's N and K blocks (wide: K > 128)."""
    attrs = geometry.attrs
    same = attrs.get("auto_pad", "NOTSET").startswith("SAME")
    assume(not (same and any(d > 1 for d in attrs.get("dilations", []))))  # onnxruntime refuses it (spec/backends.md)
    x_shape, w_shape = list(geometry.x_shape), list(geometry.w_shape)
    if wide:  # 48 input channels per group: K = 48 * kernel taps crosses MLAS's 128-long K blocks
        group = geometry.attrs.get("group", 1)
        x_shape[1], w_shape[1] = 48 * group, 48
    inputs = [_normal(x_shape, seed), _normal(w_shape, seed + 1)] + ([_normal(w_shape[:1], seed + 2)] if bias else [])
    _assert_matches_onnxruntime("Conv", inputs, threads=threads, **geometry.attrs)


@pytest.mark.parametrize(
    "x_shape, w_shape, attrs",
    [
        ([1, 32, 20, 20], [32, 32, 3, 3], {"pads": [1, 1, 1, 1]}),  # K 288: three K blocks summed GEMM after GEMM
        ([2, 6, 9, 9], [6, 1, 3, 3], {"group": 6, "strides": [2, 2]}),  # depthwise: M = 1 per group
        ([1, 1, 7, 5], [4, 1, 3, 5], {}),  # one channel, kernel as wide as the input: B read transposed
        ([1, 3, 11], [5, 3, 11], {}),  # 1-D, the same as 2-D of height 1
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_algorithms_match_onnxruntime(x_shape, w_shape, attrs, threads):
    inputs = [_normal(x_shape, 1), _normal(w_shape, 2), _normal(w_shape[:1], 3)]
    _assert_matches_onnxruntime("Conv", inputs, threads=threads, **attrs)


@pytest.mark.parametrize(
    "channels, spatial, kernel, strides, pads, filters, output, groups, want",
    [
        (8, (8, 8), (1, 1), (1, 1), (0, 0, 0, 0), 16, (8, 8), 1, "direct"),  # pointwise
        (1, (7, 5), (3, 5), (1, 1), (0, 0, 0, 0), 4, (5, 1), 1, "direct-transposed"),  # kernel as wide as x
        (1, (7, 5), (7, 1), (1, 1), (0, 0, 0, 0), 4, (1, 5), 1, "direct"),  # kernel as tall as x, one wide
        (8, (8, 8), (3, 3), (1, 1), (1, 1, 1, 1), 8, (8, 8), 1, "segmented"),  # 8 filters <= 64 points
        (8, (2, 2), (1, 1), (1, 1), (1, 1, 1, 1), 8, (4, 4), 1, "segmented"),  # padded pointwise: not direct
        (8, (4, 4), (3, 3), (1, 1), (0, 0, 0, 0), 16, (2, 2), 1, "expand"),  # 16 filters > 4 points
        (1, (16, 16), (7, 7), (2, 2), (3, 3, 3, 3), 2, (8, 8), 4, "depthwise-multiplier2"),
        (1, (16, 16), (7, 7), (2, 2), (3, 3, 3, 3), 2, (8, 8), 1, "segmented"),  # one group: not that kernel
    ],
)
def test_conv_algorithm_follows_mlas_conv_prepare(channels, spatial, kernel, strides, pads, filters, output, groups, want):
    """Hand-derived from MlasConvPrepare (dilations 1)."""
    rank = len(spatial)
    window = Window(kernel, strides, (1,) * rank, pads[:rank], pads[rank:], output)
    assert mlas.conv_algorithm(window, spatial, channels, filters, groups) == want


@pytest.mark.parametrize(
    "m, k, p, threads, want",
    [
        (64, 576, 3136, 2, [(0, 1568), (1568, 3136)]),  # 64 * 3136 * 576 / 65536 + 1 > 2: ceil(3136 / 2) = 1568 = 98 * 16
        (64, 576, 3136, 1, [(0, 3136)]),
        (8, 72, 64, 2, [(0, 64)]),  # 8 * 64 * 72 / 65536 + 1 = 1 thread
        (32, 288, 50, 4, [(0, 16), (16, 32), (32, 48), (48, 50)]),  # 4 threads: ceil(50 / 4) = 13, aligned to 16
    ],
)
def test_conv_segments_follow_mlas_conv_prepare(m, k, p, threads, want):
    assert [(s.start, s.stop) for s in mlas._conv_segments(m, k, p, threads)] == want


def test_depthwise_multiplier2_kernel_keeps_the_exact_sum():
    """MLAS runs its AVX-512F 7x7 stride-2 kernel there; refquant does not replay its order and gives the
    correctly rounded sum, as the spec profile does."""
    x, w = _normal([1, 4, 16, 16], 1), _normal([8, 1, 7, 7], 2)
    model, feeds = _model("Conv", [x, w], group=4, strides=[2, 2], pads=[3, 3, 3, 3])
    spec = refquant.Session(model).run(None, feeds)[0]
    assert_same_bits(refquant.Session(model, profile="onnxruntime").run(None, feeds)[0], spec)
