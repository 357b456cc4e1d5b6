"""Data movement: refquant/ops/shape.py (Transpose, Concat, Split, Slice, Squeeze, Unsqueeze, Gather,
GatherElements, Shape, Expand, ConstantOfShape, Pad; spec/ops/float.md).

Expected values come from independent sources:
- the since_versions of the ONNX schemas (onnx.defs);
- onnx.reference.ReferenceEvaluator, bit for bit, on hypothesis-drawn inputs;
- hand-derived values for refquant's documented choices and errors.
The ONNX backend node cases of these ops run in test_onnx_node_cases.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import AttributeValueError, ShapeError

from .helpers import (
    FLOATS,
    assert_same_bits,
    assert_versions_are_the_schema_versions_from_opset_10,
    run_reference,
    run_refquant,
)


@pytest.mark.parametrize(
    "op",
    "GatherElements Transpose Concat Split Slice Squeeze Unsqueeze Gather Shape Expand ConstantOfShape Pad".split(),
)
def test_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


@given(x=FLOATS, data=st.data())
def test_transpose_and_gather_match_onnx_reference_bit_for_bit(x, data):
    perm = data.draw(st.permutations(range(x.ndim)))
    inputs = {"x": x}
    got = run_refquant("Transpose", inputs, [np.float32], opset=21, attrs={"perm": list(perm)})
    assert_same_bits(got[0], run_reference("Transpose", inputs, [np.float32], opset=21, attrs={"perm": list(perm)})[0])
    size = x.shape[0]
    indices = data.draw(hnp.arrays(np.int64, (3,), elements=st.integers(-size, size - 1)))
    inputs = {"x": x, "i": indices}
    assert_same_bits(run_refquant("Gather", inputs, [np.float32], opset=13)[0],
                     run_reference("Gather", inputs, [np.float32], opset=13)[0])  # fmt: skip


@given(x=FLOATS, data=st.data())
def test_gather_elements_matches_onnx_reference(x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))  # onnx.reference slices shapes wrongly for negative axes
    size = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = data.draw(st.integers(1, 4))
    indices = data.draw(hnp.arrays(data.draw(st.sampled_from([np.int32, np.int64])), tuple(shape),
                                   elements=st.integers(-size, size - 1)))  # fmt: skip
    inputs = {"x": x, "i": indices}
    got = run_refquant("GatherElements", inputs, [np.float32], opset=13, attrs={"axis": axis})
    assert_same_bits(got[0], run_reference("GatherElements", inputs, [np.float32], opset=13, attrs={"axis": axis})[0])
    negative = run_refquant("GatherElements", inputs, [np.float32], opset=13, attrs={"axis": axis - x.ndim})
    assert_same_bits(negative[0], got[0])


def test_gather_elements_accepts_shorter_index_axes_and_refuses_bad_indices():
    data = np.arange(12, dtype=np.int64).reshape(3, 4)
    indices = np.array([[2, 0]], np.int64)  # shorter than data on both axes
    assert run_refquant("GatherElements", {"d": data, "i": indices}, [np.int64], opset=13)[0].tolist() == [[8, 1]]
    with pytest.raises(ShapeError, match=r"indices must lie in \[-3, 2\]"):
        run_refquant("GatherElements", {"d": data, "i": np.array([[3]], np.int64)}, [np.int64], opset=13)
    with pytest.raises(ShapeError, match="exceeds data"):
        run_refquant("GatherElements", {"d": data, "i": np.zeros((1, 5), np.int64)}, [np.int64], opset=13)


@given(x=FLOATS, data=st.data())
def test_pad_matches_onnx_reference(x, data):
    mode = data.draw(st.sampled_from(["constant", "reflect", "edge"]))
    limit = [n - 1 if mode == "reflect" else 3 for n in x.shape]  # reflect: pads < the axis length
    pads = [data.draw(st.integers(0, m)) for m in limit + limit]  # every begin, then every end
    opset = data.draw(st.sampled_from([13, 18, 21]))
    inputs = {"x": x, "pads": np.array(pads, np.int64), "value": np.array(1.5, np.float32)}
    attrs = {"mode": mode}
    (got,) = run_refquant("Pad", inputs, [np.float32], opset=opset, attrs=attrs)
    assert_same_bits(got, run_reference("Pad", inputs, [np.float32], opset=opset, attrs=attrs)[0])


@given(x=FLOATS, data=st.data())
def test_split_18_with_num_outputs_matches_onnx_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    length = x.shape[axis]
    # parts of ceil(length / n), the last smaller: n must leave the last part non-empty
    parts = data.draw(st.sampled_from([n for n in range(1, length + 1) if (n - 1) * -(-length // n) < length]))
    attrs = {"axis": axis, "num_outputs": parts}
    got = run_refquant("Split", {"x": x}, [np.float32] * parts, opset=18, attrs=attrs)
    want = run_reference("Split", {"x": x}, [np.float32] * parts, opset=18, attrs=attrs)
    assert len(got) == len(want) == parts
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same_bits(g, w, f"output {i}")


# ----------------------------------------------------------------------------
# Tile, DepthToSpace, SpaceToDepth, Size (spec/ops/tensor.md)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Tile", "DepthToSpace", "SpaceToDepth", "Size"])
def test_tensor_md_versions_are_the_schema_versions_from_opset_10(op):
    assert_versions_are_the_schema_versions_from_opset_10(op)


@given(x=FLOATS, data=st.data())
def test_tile_matches_onnx_reference(x, data):
    repeats = np.array(data.draw(st.lists(st.integers(0, 3), min_size=x.ndim, max_size=x.ndim)), np.int64)
    inputs = {"x": x, "r": repeats}
    assert_same_bits(run_refquant("Tile", inputs, [np.float32], opset=13)[0],
                     run_reference("Tile", inputs, [np.float32], opset=13)[0])  # fmt: skip


def test_tile_refusals():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ShapeError, match="one value per axis"):
        run_refquant("Tile", {"x": x, "r": np.array([2], np.int64)}, [np.float32], opset=13)
    with pytest.raises(ShapeError, match=">= 0"):
        run_refquant("Tile", {"x": x, "r": np.array([2, -1], np.int64)}, [np.float32], opset=13)


@pytest.mark.parametrize(("mode", "opset"), [("DCR", 13), ("CRD", 13), ("DCR", 28), ("CRD", 28)])
def test_depth_to_space_and_back(mode, opset):
    x = np.arange(2 * 8 * 2 * 3, dtype=np.int32).reshape(2, 8, 2, 3)
    attrs = {"blocksize": 2, "mode": mode}
    (y,) = run_refquant("DepthToSpace", {"x": x}, [np.int32], opset=opset, attrs=attrs)
    assert_same_bits(y, run_reference("DepthToSpace", {"x": x}, [np.int32], opset=opset, attrs=attrs)[0])
    assert y.shape == (2, 2, 4, 6)
    back_attrs = {"blocksize": 2} | ({"mode": mode} if opset >= 28 else {})
    if mode == "CRD" and opset < 28:
        return  # SpaceToDepth has no mode before 28
    (z,) = run_refquant("SpaceToDepth", {"y": y}, [np.int32], opset=opset, attrs=back_attrs)
    assert_same_bits(z, x)  # the inverse, in the same mode


def test_depth_to_space_refusals():
    with pytest.raises(ShapeError, match="not a multiple of blocksize"):
        run_refquant("DepthToSpace", {"x": np.zeros((1, 3, 2, 2), np.float32)}, [np.float32], opset=13,
                     attrs={"blocksize": 2})  # fmt: skip
    with pytest.raises(ShapeError, match="multiples of blocksize"):
        run_refquant("SpaceToDepth", {"x": np.zeros((1, 1, 3, 2), np.float32)}, [np.float32], opset=13,
                     attrs={"blocksize": 2})  # fmt: skip


def test_size_of_every_shape():
    for shape in [(), (0,), (2, 3), (4, 0, 5)]:
        (y,) = run_refquant("Size", {"x": np.zeros(shape, np.float32)}, [np.int64], opset=13)
        assert y.dtype == np.int64 and y.shape == () and int(y) == int(np.prod(shape))


# -- CenterCropPad (spec/ops/image.md): odd and even crops and pads, hand-derived.


def _ccp(x, shape, **attrs):
    (y,) = run_refquant("CenterCropPad", {"input_data": x, "shape": np.array(shape, np.int64)}, [x.dtype], opset=18,
                        attrs=attrs or None)
    return y


def test_odd_and_even_crops_and_pads():
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(_ccp(x, [2]), [2, 3])  # d = 3: start 1, the extra element cut at the end
    np.testing.assert_array_equal(_ccp(x, [3]), [2, 3, 4])  # d = 2: one from each end
    np.testing.assert_array_equal(_ccp(x, [8]), [0, 1, 2, 3, 4, 5, 0, 0])  # d = 3: 1 before, 2 after
    np.testing.assert_array_equal(_ccp(x, [6]), [1, 2, 3, 4, 5, 0])  # d = 1: nothing before


def test_pad_with_odd_difference_puts_the_extra_at_the_end():
    x = np.array([7, 8], np.int32)
    np.testing.assert_array_equal(_ccp(x, [5]), [0, 7, 8, 0, 0])
    np.testing.assert_array_equal(_ccp(x, [0]), np.zeros(0, np.int32))


def test_axes_crop_one_and_pad_another():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    y = _ccp(x, [2, 5], axes=[1, 0])  # axis 1: 4 -> 2 (cols 1, 2); axis 0: 3 -> 5 (1 row before, 1 after)
    want = np.zeros((5, 2))
    want[1:4] = x[:, 1:3]
    np.testing.assert_array_equal(y, want)
    strings = _ccp(np.array(["a", "b"], dtype=object), [3])
    assert strings.tolist() == ["a", "b", ""]
    with pytest.raises(AttributeValueError):
        _ccp(x, [1, 1], axes=[0, -2])
    with pytest.raises(ShapeError):
        _ccp(x, [1])
