"""Quantization parameters (refquant/qparams.py): a scale or zero point broadcast per tensor, per axis or
per block. The kernels' own parameter rules are tested through the kernels (tests/ops/)."""

from __future__ import annotations

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
