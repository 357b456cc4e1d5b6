"""Quantization parameters (refquant/qparams.py): a scale or zero point broadcast per tensor, per axis or
per block. The kernels' own parameter rules are tested through the kernels (tests/ops/)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from refquant.errors import QuantParamError
from refquant.qparams import broadcast_param


def test_broadcast_param_shapes():
    x_shape = (2, 5, 3)
    assert broadcast_param(np.array([7.0]), x_shape, axis=1, what="s").shape == ()
    assert broadcast_param(np.arange(5.0), x_shape, axis=-2, what="s").shape == (1, 5, 1)
    blocked = broadcast_param(np.arange(6.0).reshape(2, 1, 3), x_shape, axis=1, block_size=5, what="s")
    assert blocked.shape == x_shape and (blocked[:, 4] == blocked[:, 0]).all()
    with pytest.raises(QuantParamError, match="block_size must be >= 0"):
        broadcast_param(np.ones((2, 1, 3)), x_shape, axis=1, block_size=-1, what="s")


# ----------------------------------------------------------------------------
# Tests added for mutation testing (spec/mutation.md): expected values from the ONNX formulas and by hand
# ----------------------------------------------------------------------------

import re  # noqa: E402

from onnx import helper  # noqa: E402

from refquant.errors import DTypeError, ShapeError  # noqa: E402
from refquant.node import Node  # noqa: E402
from refquant.qparams import (  # noqa: E402
    QParams,
    check_dequantize_zero_point,
    check_same_shape,
    channel_param,
    contrib_qdq_params,
    matmul_param,
    operand_params,
    per_tensor_params,
    scalar_param,
    zero_point_of,
)


def _contrib_node(**attrs) -> Node:
    return Node(helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], domain="com.microsoft", **attrs), 1, "q")


def test_contrib_qdq_params_per_tensor_and_per_axis():
    """com.microsoft QuantizeLinear: no 'axis' -> one value (0-d); axis=0 -> 1-D of length x.shape[0], shaped
    (2, 1) to broadcast against x of shape (2, 3)."""
    x = np.zeros((2, 3), np.float32)
    scale, zp = contrib_qdq_params(_contrib_node(), x, np.array([0.5], np.float32), np.array([3], np.uint8), "y")
    assert scale.shape == zp.shape == () and float(scale) == 0.5 and int(zp) == 3 and zp.dtype == np.uint8
    scale, zp = contrib_qdq_params(
        _contrib_node(axis=0), x, np.array([0.5, 2.0], np.float32), np.array([3, 4], np.uint8), "y"
    )
    assert scale.shape == zp.shape == (2, 1)
    assert scale.ravel().tolist() == [0.5, 2.0] and zp.ravel().tolist() == [3, 4]
    scale, zp = contrib_qdq_params(_contrib_node(axis=0), x, np.array([0.5, 2.0], np.float32), None, "y")
    assert zp is None and scale.shape == (2, 1)


@pytest.mark.parametrize("size", [2, 3])
def test_contrib_qdq_params_without_axis_refuses_per_axis(size):
    x = np.zeros((size, 3), np.float32)
    message = f"y_scale has shape ({size},): without the 'axis' attribute the parameters are per tensor (one value)"
    with pytest.raises(QuantParamError, match=re.escape(message)):
        contrib_qdq_params(_contrib_node(), x, np.ones(size, np.float32), np.zeros(size, np.uint8), "y")


def test_check_dequantize_zero_point_messages():
    with pytest.raises(DTypeError, match=re.escape("x_zero_point has type uint8, it must match x (int8)")):
        check_dequantize_zero_point(np.zeros(2, np.int8), np.array(0, np.uint8))
    message = "int32 input takes no zero point (or zero): the spec defines none for it"
    with pytest.raises(QuantParamError, match="^" + re.escape(message) + "$"):
        check_dequantize_zero_point(np.zeros(2, np.int32), np.array(1, np.int32))
    check_dequantize_zero_point(np.zeros(2, np.int32), np.array(0, np.int32))  # zero is allowed


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_zero_point_of_absent_is_a_zero_of_the_tensor_type(dtype):
    zp = zero_point_of(None, np.zeros(3, dtype), "a")
    assert zp.dtype == dtype and zp.shape == () and int(zp) == 0


def test_check_same_shape_one_value_each():
    """(1,) and () both hold one value: the same per-tensor parameter; (2,) and () do not match."""
    check_same_shape(np.ones(1, np.float32), np.zeros((), np.uint8), "a")
    check_same_shape(np.ones((), np.float32), np.zeros((1, 1), np.uint8), "a")
    with pytest.raises(QuantParamError, match="a_scale has shape"):
        check_same_shape(np.ones(2, np.float32), np.zeros((), np.uint8), "a")


def test_one_value_parameters_become_0_d():
    one = np.full((1, 1), 0.5, np.float32)
    assert scalar_param(one, "s").shape == ()
    assert channel_param(one, 4, 4, "s").shape == ()
    assert matmul_param(one, (2, 3), per_row=True, what="s").shape == ()


def test_matmul_param_per_row_and_per_column():
    """Per row of a (M = 2): 1-D [2] -> (2, 1); per column of b (N = 3): 1-D [3] stays (3,)."""
    rows = matmul_param(np.array([1.0, 2.0]), (4, 2, 5), per_row=True, what="a_scale")
    assert rows.shape == (2, 1) and rows.ravel().tolist() == [1.0, 2.0]
    assert matmul_param(np.array([1.0, 2.0, 3.0]), (5, 3), per_row=False, what="b_scale").shape == (3,)


@pytest.mark.parametrize(
    "param_shape, per_row, expected",
    [((3, 4, 1), True, "[..., M, 1]"), ((2, 4, 1), True, "[..., M, 1]"), ((3, 1, 5), False, "[..., 1, N]")],
)
def test_matmul_param_must_broadcast_to_the_operand(param_shape, per_row, expected):
    """(3, 4, 1) does not broadcast against (1, 4, 5) or (2, 4, 5) (3 vs 1 broadcasts to 3, not 1; 3 vs 2 fails)."""
    shape = (1, 4, 5) if param_shape == (2, 4, 1) else (2, 4, 5)
    message = f"per-{'row' if per_row else 'column'} parameters of an operand of shape {shape} have shape {expected}"
    with pytest.raises(QuantParamError, match=re.escape(message)):
        matmul_param(np.ones(param_shape), shape, per_row=per_row, what="s")


def test_operand_params_shapes_both():
    scale, zp = operand_params(np.ones(2, np.float32), np.zeros(2, np.uint8), (2, 3), per_row=True, what="a")
    assert scale.shape == zp.shape == (2, 1)


# ---- QParams: (q - zero_point) * scale and saturate(round_half_even(real / scale) + zero_point)


def test_qparams_dequantize_by_hand():
    """scale 0.5, zero point 3 (int8): (5 - 3) * 0.5 = 1, (-128 - 3) * 0.5 = -65.5, (127 - 3) * 0.5 = 62."""
    p = QParams(np.array(0.5, np.float32), np.array(3, np.int8))
    q = np.array([5, -128, 127], np.int8)
    got = p.dequantize(q)
    assert got.dtype == np.float64 and got.tolist() == [1.0, -65.5, 62.0]
    got32 = p.dequantize(q, np.float32)
    assert got32.dtype == np.float32 and got32.tolist() == [1.0, -65.5, 62.0]


def test_qparams_quantize_by_hand():
    """scale 0.5, zero point 3: 1 / 0.5 + 3 = 5; -100 / 0.5 + 3 = -197 -> -128; 1.25 / 0.5 = 2.5 -> 2 (even) + 3.

    Precision: 1.5 / f32(0.2) = 7.49999988... (exact rational below), within 2**-22 of 7.5 where the float32
    ulp is 2**-21: float32 rounds it to the tie 7.5 and then to 8 (even); float64 keeps it below 7.5: 7."""
    p = QParams(np.array(0.5, np.float32), np.array(3, np.int8))
    got = p.quantize(np.array([1.0, -100.0, 1.25]))
    assert got.dtype == np.int8 and got.tolist() == [5, -128, 5]
    p = QParams(np.array(0.2, np.float32), np.array(0, np.uint8))
    x = np.array([1.5], np.float32)
    exact = Fraction(1.5) / Fraction(float(p.scale))
    assert Fraction(15, 2) - Fraction(1, 2**22) < exact < Fraction(15, 2)
    assert p.quantize(x).tolist() == [7]
    assert p.quantize(x, np.float32).tolist() == [8]


def test_qparams_same_as():
    a = QParams(np.array(0.5, np.float32), np.array(3, np.int8))
    assert a.same_as(QParams(np.array(0.5, np.float32), np.array(3, np.int8)))
    assert not a.same_as(QParams(np.array(0.25, np.float32), np.array(3, np.int8)))
    assert not a.same_as(QParams(np.array(0.5, np.float32), np.array(4, np.int8)))
    assert not a.same_as(QParams(np.array(0.25, np.float32), np.array(4, np.int8)))


def test_per_tensor_params():
    like = np.zeros(3, np.uint8)
    p = per_tensor_params(np.array([0.5], np.float32), None, like, "x")
    assert p.scale.shape == p.zero_point.shape == () and p.zero_point.dtype == np.uint8 and int(p.zero_point) == 0
    p = per_tensor_params(np.array(0.5, np.float32), np.array([7], np.uint8), like, "x", zero_point_required=True)
    assert float(p.scale) == 0.5 and int(p.zero_point) == 7 and p.zero_point.shape == ()


@pytest.mark.parametrize(
    "scale, zero_point, required, error, message",
    [
        (None, None, False, ShapeError, "required input 'x_scale' is missing"),
        (np.array(0.5, np.float32), None, True, ShapeError, "required input 'x_zero_point' is missing"),
        (np.array(0.5, np.float64), None, False, DTypeError, "x_scale has type double; allowed at this opset: float"),
        (np.array(-1.0, np.float32), None, False, QuantParamError, "x_scale must be finite and > 0"),
        (np.array(0.5, np.float32), np.array(0, np.int8), False, DTypeError, "x_zero_point has type int8"),
        (np.ones(2, np.float32), None, False, QuantParamError, "x_scale must be a scalar (per tensor)"),
        (np.array(0.5, np.float32), np.zeros(2, np.uint8), False, QuantParamError,
         "x_zero_point must be a scalar (per tensor)"),
    ],
)  # fmt: skip
def test_per_tensor_params_errors_name_the_tensor(scale, zero_point, required, error, message):
    with pytest.raises(error, match=re.escape(message)):
        per_tensor_params(scale, zero_point, np.zeros(3, np.uint8), "x", zero_point_required=required)


# ---- check_scale, check_params, broadcast_params, qdq_params (ONNX QuantizeLinear / DequantizeLinear rules)

from refquant.errors import AttributeValueError  # noqa: E402
from refquant.qparams import broadcast_params, check_params, check_scale, qdq_params  # noqa: E402


def test_check_scale_counts_invalid_values_only_for_several():
    """A scale must be finite and > 0. One value: the message ends at the value; several: it also says how many
    are invalid (by hand: [1.0, -2.0] has 1 of 2 invalid, the first -2.0; [0.0, inf, 3.0] has 2 of 3, first 0.0)."""
    with pytest.raises(QuantParamError, match="^" + re.escape("s must be finite and > 0, got -1.0") + "$"):
        check_scale(np.array(-1.0, np.float32), "s")
    with pytest.raises(QuantParamError, match="^" + re.escape("s must be finite and > 0, got 0.0") + "$"):
        check_scale(np.array([0.0], np.float32), "s")
    message = "s must be finite and > 0, got -2.0 (1 of 2 values are invalid)"
    with pytest.raises(QuantParamError, match="^" + re.escape(message) + "$"):
        check_scale(np.array([1.0, -2.0], np.float32), "s")
    message = "s must be finite and > 0, got 0.0 (2 of 3 values are invalid)"
    with pytest.raises(QuantParamError, match="^" + re.escape(message) + "$"):
        check_scale(np.array([0.0, np.inf, 3.0], np.float32), "s")


@pytest.mark.parametrize(
    "scale_shape, zp_shape",
    [((), (1,)), ((1,), ()), ((1, 1), (1,)), ((3,), (3,)), ((), ())],
)
def test_check_params_same_shape_or_one_value_each(scale_shape, zp_shape):
    """ONNX: y_zero_point's shape must match y_scale's; one value each is one per-tensor parameter, () or (1,)."""
    check_params(np.ones(scale_shape, np.float32), np.zeros(zp_shape, np.uint8))


@pytest.mark.parametrize("scale_shape, zp_shape", [((3,), ()), ((3,), (1,)), ((), (2,)), ((1,), (3,)), ((2,), (3,))])
def test_check_params_refuses_other_shapes(scale_shape, zp_shape):
    """One value against several is no match in either order (a per-axis scale needs a per-axis zero point)."""
    message = f"zero point has shape {zp_shape}, scale has {scale_shape}: they must match"
    with pytest.raises(QuantParamError, match="^" + re.escape(message) + "$"):
        check_params(np.ones(scale_shape, np.float32), np.zeros(zp_shape, np.uint8))


def test_broadcast_params_default_is_per_axis():
    """block_size defaults to 0 (the ONNX default: not blocked): a 1-D scale of length x.shape[1] = 3 is per axis,
    shaped (1, 3) against x of shape (2, 3)."""
    scale, zp = broadcast_params(np.array([0.5, 1.0, 2.0]), np.array([1, 2, 3], np.uint8), (2, 3), axis=1)
    assert scale.shape == zp.shape == (1, 3)
    assert scale.ravel().tolist() == [0.5, 1.0, 2.0] and zp.ravel().tolist() == [1, 2, 3]


def test_broadcast_params_names_the_zero_point():
    """The scale (3,) fits x (2, 3) along axis 1; the zero point (2,) does not, and the message says so."""
    message = "zero point has shape (2,), expected a scalar or a 1-D tensor of length 3 (input dimension 1)"
    with pytest.raises(QuantParamError, match="^" + re.escape(message) + "$"):
        broadcast_params(np.ones(3), np.zeros(2, np.uint8), (2, 3), axis=1, block_size=0)
    message = (
        "zero point has shape (2, 1), expected (2, 2) for blocked quantization of shape (2, 4) "
        "along axis 1 with block_size 2"
    )
    with pytest.raises(QuantParamError, match="^" + re.escape(message) + "$"):
        broadcast_params(np.ones((2, 2)), np.zeros((2, 1), np.uint8), (2, 4), axis=1, block_size=2)


def _qdq_node(version: int, **attrs) -> Node:
    return Node(helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], **attrs), version, "q")


def test_qdq_params_axis_defaults_to_1():
    """ONNX QuantizeLinear (opset 13 on): axis defaults to 1. x (2, 3, 4) with a scale of 3 values -> (1, 3, 1)."""
    x = np.zeros((2, 3, 4), np.float32)
    for version in (13, 21):
        node = _qdq_node(version)
        scale, zp = qdq_params(node, x, np.array([1.0, 2.0, 3.0]), np.zeros(3, np.uint8), axis_allowed=True)
        assert scale.shape == zp.shape == (1, 3, 1) and scale.ravel().tolist() == [1.0, 2.0, 3.0]


def test_qdq_params_checks_the_zero_point_shape_first():
    """A 0-d scale with a zero point of 3 values would each broadcast against x (2, 3), but they must match."""
    message = "zero point has shape (3,), scale has (): they must match"
    with pytest.raises(QuantParamError, match="^" + re.escape(message) + "$"):
        qdq_params(_qdq_node(13), np.zeros((2, 3), np.float32), np.array(0.5), np.zeros(3, np.uint8), axis_allowed=True)


@pytest.mark.parametrize("name, value", [("axis", 1.0), ("block_size", 2.0)])
def test_qdq_params_int_attributes(name, value):
    """axis and block_size are INT attributes: a FLOAT one is refused, even where the parameters are per tensor."""
    node = _qdq_node(21, **{name: value})
    message = f"attribute '{name}' must be int, got float {value!r}"
    with pytest.raises(AttributeValueError, match="^" + re.escape(message) + "$"):
        qdq_params(node, np.zeros((2, 4), np.float32), np.array(0.5), np.array(0, np.uint8), axis_allowed=True)


def test_qdq_params_block_size_from_opset_21_only():
    """block_size exists from opset 21: before it, qdq_params ignores the attribute (per axis, (1, 4));
    at 21, block_size 2 along axis 1 of x (2, 4) takes a scale of shape (2, ceil(4 / 2)) = (2, 2),
    each value repeated over its block of 2: [[1, 2], [3, 4]] -> [[1, 1, 2, 2], [3, 3, 4, 4]]."""
    x = np.zeros((2, 4), np.float32)
    scale, _ = qdq_params(_qdq_node(19, block_size=2), x, np.array([1.0, 2.0, 3.0, 4.0]), None, axis_allowed=True)
    assert scale.shape == (1, 4) and scale.ravel().tolist() == [1.0, 2.0, 3.0, 4.0]
    scale, _ = qdq_params(_qdq_node(21, block_size=2), x, np.array([[1.0, 2.0], [3.0, 4.0]]), None, axis_allowed=True)
    assert scale.tolist() == [[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0]]
