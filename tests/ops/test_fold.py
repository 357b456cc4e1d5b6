"""Col2Im (refquant/ops/fold.py, spec/ops/image.md): overlapping blocks summed, written again here as a loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from refquant.errors import ShapeError

from .helpers import run_refquant


def _col2im(x, image, block, **attrs):
    (y,) = run_refquant("Col2Im", {"input": x, "image_shape": np.array(image, np.int64),
                                   "block_shape": np.array(block, np.int64)}, [x.dtype], opset=18, attrs=attrs or None)
    return y


def _loop(x, image, block, strides, dilations, pads):
    n, ck, _ = x.shape
    k = int(np.prod(block))
    rank = len(image)
    padded = [image[i] + pads[i] + pads[i + rank] for i in range(rank)]
    blocks = [(padded[i] - (block[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(rank)]
    y = np.zeros((n, ck // k, *padded))
    for b in range(n):
        for c in range(ck // k):
            for t, tap in enumerate(itertools.product(*(range(v) for v in block))):
                for l, pos in enumerate(itertools.product(*(range(v) for v in blocks))):
                    p = tuple(pos[i] * strides[i] + tap[i] * dilations[i] for i in range(rank))
                    y[(b, c, *p)] += x[b, c * k + t, l]
    return y[(slice(None), slice(None), *(slice(pads[i], pads[i] + image[i]) for i in range(rank)))]


def test_overlapping_blocks_add():
    # 1 x 3 image, blocks of 2, stride 1: 2 blocks; the middle pixel gets both blocks' taps
    x = np.array([[[1, 10], [2, 20]]], np.float64)  # taps (rows) x blocks (columns)
    np.testing.assert_array_equal(_col2im(x, [1, 3], [1, 2]), [[[[1, 12, 20]]]])


@pytest.mark.parametrize(("strides", "dilations", "pads"), [((1, 1), (1, 1), (0, 0, 0, 0)), ((2, 1), (1, 2), (1, 0, 1, 1))])
def test_col2im_matches_a_loop(strides, dilations, pads):
    image, block = [4, 5], [2, 2]
    padded = [image[i] + pads[i] + pads[i + 2] for i in range(2)]
    blocks = [(padded[i] - (block[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(2)]
    x = np.random.default_rng(1).standard_normal((2, 3 * 4, blocks[0] * blocks[1]))
    got = _col2im(x, image, block, strides=list(strides), dilations=list(dilations), pads=list(pads))
    np.testing.assert_allclose(got, _loop(x, image, block, strides, dilations, pads), rtol=0, atol=1e-14)


def test_integers_and_wrong_shapes():
    x = np.array([[[100, 100], [100, 100]]], np.int8)
    np.testing.assert_array_equal(_col2im(x, [1, 3], [1, 2]), np.array([[[[100, -56, 100]]]], np.int8))  # wraps
    with pytest.raises(ShapeError):
        _col2im(np.zeros((1, 2, 3)), [1, 3], [1, 2])


def _unpool(x, i, output_shape=None, **attrs):
    inputs = {"X": x, "I": np.asarray(i, np.int64).reshape(x.shape)}
    if output_shape is not None:
        inputs["output_shape"] = np.array(output_shape, np.int64)
    (y,) = run_refquant("MaxUnpool", inputs, [x.dtype], opset=22, attrs=attrs)
    return y


def test_max_unpool_scatters_into_the_inferred_shape():
    x = np.array([[[[5, 6], [7, 8]]]], np.float32)
    # inferred: (2 - 1) * 2 + 2 = 4 per axis; indices into the 4 x 4 image
    y = _unpool(x, [5, 7, 13, 15], kernel_shape=[2, 2], strides=[2, 2])
    want = np.zeros((1, 1, 4, 4), np.float32)
    want.reshape(-1)[[5, 7, 13, 15]] = [5, 6, 7, 8]
    np.testing.assert_array_equal(y, want)
    # output_shape 5 x 5: the 4 x 4 result at the top left (onnx.reference), indices still into 4 x 4
    y5 = _unpool(x, [5, 7, 13, 15], [1, 1, 5, 5], kernel_shape=[2, 2], strides=[2, 2])
    assert y5.shape == (1, 1, 5, 5)
    np.testing.assert_array_equal(y5[:, :, :4, :4], want)
    assert not y5[:, :, 4].any() and not y5[:, :, :, 4].any()


def test_max_unpool_repeated_index_and_bad_indices():
    x = np.array([[[1, 2, 3]]], np.float64)
    y = _unpool(x, [0, 0, 2], kernel_shape=[1])  # inferred length 3; index 0 twice: the last (2) stays
    np.testing.assert_array_equal(y, [[[2, 0, 3]]])
    with pytest.raises(ShapeError):
        _unpool(x, [0, 1, 3], kernel_shape=[1])
    with pytest.raises(ShapeError):
        _unpool(x, [0, 1, 2], [1, 1, 2], kernel_shape=[1])
