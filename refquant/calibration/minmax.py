"""MinMax calibration: the range of each tensor over every batch.

    per batch:  lo_b = min(x_b), hi_b = max(x_b)        (NaN ignored; per channel: over all axes but 1)
    range:      [min_b lo_b, max_b hi_b]                 (moving_average: [mean_b lo_b, mean_b hi_b])
    symmetric:  [-m, m] with m = max(|lo|, |hi|)

Values are float32 arrays of shape (1,) (or (C,) per channel), as onnxruntime
returns them. With moving_average the per-batch extremes are kept (one value
per batch and channel) because onnxruntime's float32 mean depends on them all.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import arith
from .core import CalibrationError, Calibrator, TensorRange, check_same_dtype, decode_value, encode_value

__all__ = ["MinMaxCalibrator"]


class _Extremes:
    """One tensor's per-batch reductions: running min/max, and the list of them when needed."""

    def __init__(self, dtype: np.dtype, keep_batches: bool):
        self.dtype = dtype
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None
        self.batch_lows: list[np.ndarray] | None = [] if keep_batches else None
        self.batch_highs: list[np.ndarray] | None = [] if keep_batches else None

    def add(self, low: np.ndarray, high: np.ndarray) -> None:
        if self.low is not None and low.shape != self.low.shape:
            raise CalibrationError(f"has {low.size} channel(s) in this batch and {self.low.size} before")
        self.low = low if self.low is None else np.fmin(self.low, low)
        self.high = high if self.high is None else np.fmax(self.high, high)
        if self.batch_lows is not None:
            self.batch_lows.append(low)
            self.batch_highs.append(high)

    def merge(self, other: _Extremes) -> None:
        if other.dtype != self.dtype:
            raise CalibrationError(f"is {other.dtype} in one state and {self.dtype} in the other")
        if other.low is None:
            return
        lows, highs = other.batch_lows or [other.low], other.batch_highs or [other.high]
        if self.batch_lows is None:
            self.add(other.low, other.high)
            return
        for low, high in zip(lows, highs):
            self.add(low, high)

    def to_dict(self) -> dict:
        return {
            "dtype": self.dtype.name,
            "low": encode_value(self.low),
            "high": encode_value(self.high),
            "batch_lows": None if self.batch_lows is None else [encode_value(v) for v in self.batch_lows],
            "batch_highs": None if self.batch_highs is None else [encode_value(v) for v in self.batch_highs],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> _Extremes:
        extremes = cls(np.dtype(data["dtype"]), data["batch_lows"] is not None)
        extremes.low, extremes.high = decode_value(data["low"]), decode_value(data["high"])
        if data["batch_lows"] is not None:
            extremes.batch_lows = [decode_value(v) for v in data["batch_lows"]]
            extremes.batch_highs = [decode_value(v) for v in data["batch_highs"]]
        return extremes


def _reduced_axes(rank: int, per_channel: bool) -> tuple[int, ...] | None:
    """All axes, or all but axis 1 (onnxruntime's per-channel ReduceMin axes [0, 2, 3, ...])."""
    if not per_channel or rank < 2:
        return None
    return (0, *range(2, rank))


class MinMaxCalibrator(Calibrator):
    """Per-tensor (or per-channel) minimum and maximum, onnxruntime's MinMax calibrator.

    ``max_intermediate_outputs``: with ``compat="onnxruntime"``, onnxruntime's
    behaviour is reproduced: every N-th batch discards the batches stored so
    far, so only the last (batches mod N) count (none left is an error). With
    ``compat="fixed"`` every batch counts.
    ``averaging_constant`` only acts between separate onnxruntime collect_data
    calls; one calibration is one such call, so it is checked but unused.
    """

    method = "minmax"
    passes = 1

    def __init__(
        self,
        *,
        symmetric: bool = False,
        per_channel: bool = False,
        moving_average: bool = False,
        averaging_constant: float = 0.01,
        max_intermediate_outputs: int | None = None,
        compat: str = "onnxruntime",
    ):
        super().__init__(compat=compat)
        if not isinstance(averaging_constant, (int, float, np.number)) or (
            moving_average and not 0 <= averaging_constant <= 1
        ):
            raise CalibrationError(f"averaging_constant must be in [0, 1], got {averaging_constant}")
        if max_intermediate_outputs is not None and (
            not isinstance(max_intermediate_outputs, int) or max_intermediate_outputs < 1
        ):
            raise CalibrationError(
                f"max_intermediate_outputs must be a positive integer, got {max_intermediate_outputs!r}"
            )
        self.symmetric = bool(symmetric)
        self.per_channel = bool(per_channel)
        self.moving_average = bool(moving_average)
        self.averaging_constant = float(averaging_constant)
        self.max_intermediate_outputs = max_intermediate_outputs
        self._tensors: dict[str, _Extremes] = {}

    def _options(self) -> dict:
        return {
            "symmetric": self.symmetric,
            "per_channel": self.per_channel,
            "moving_average": self.moving_average,
            "averaging_constant": self.averaging_constant,
            "max_intermediate_outputs": self.max_intermediate_outputs,
            "compat": self.compat,
        }

    @property
    def _keeps_batches(self) -> bool:
        discards = self.compat == "onnxruntime" and self.max_intermediate_outputs is not None
        return self.moving_average or discards

    # -- collecting -------------------------------------------------------------

    def collect(self, activations: Mapping[str, np.ndarray]) -> None:
        """Fold one batch: {tensor name: array}."""
        if self._tensors and set(activations) != set(self._tensors):
            missing = sorted(set(self._tensors) - set(activations))
            extra = sorted(set(activations) - set(self._tensors))
            raise CalibrationError(f"batch {self.batches + 1} changes the tensors: missing {missing}, new {extra}")
        for name, value in activations.items():
            array = self._float_tensor(name, value)
            extremes = self._tensors.get(name)
            if extremes is None:
                extremes = self._tensors[name] = _Extremes(array.dtype, self._keeps_batches)
            else:
                check_same_dtype(name, extremes.dtype, array, self.batches + 1)
            if array.size == 0:
                raise CalibrationError(f"tensor '{name}' is empty (shape {array.shape}) in batch {self.batches + 1}")
            axes = _reduced_axes(array.ndim, self.per_channel)
            low = np.fmin.reduce(array, axis=axes, keepdims=True).reshape(-1)
            high = np.fmax.reduce(array, axis=axes, keepdims=True).reshape(-1)
            try:
                extremes.add(low, high)
            except CalibrationError as err:
                raise CalibrationError(f"tensor '{name}' {err} (per_channel needs a fixed axis 1)") from None
        self.batches += 1

    def _merge_state(self, other: MinMaxCalibrator) -> None:
        for name, extremes in other._tensors.items():
            mine = self._tensors.setdefault(name, _Extremes(extremes.dtype, self._keeps_batches))
            try:
                mine.merge(extremes)
            except CalibrationError as err:
                raise CalibrationError(f"tensor '{name}' {err}") from None

    # -- computing --------------------------------------------------------------

    def compute(self) -> dict[str, TensorRange]:
        """{tensor: TensorRange(low, high)} in the order the tensors were first seen."""
        self._require_done()
        return {name: self._range(name, extremes) for name, extremes in self._tensors.items()}

    def _surviving(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """onnxruntime drops the stored batches each time max_intermediate_outputs is reached."""
        if self.compat != "onnxruntime" or self.max_intermediate_outputs is None:
            return values
        kept = len(values) % self.max_intermediate_outputs
        if kept == 0:
            raise CalibrationError(
                f"onnxruntime's max_intermediate_outputs={self.max_intermediate_outputs} discards all "
                f"{len(values)} batches ('No data is collected'); use compat='fixed' to keep them"
            )
        return values[len(values) - kept :]

    def _range(self, name: str, extremes: _Extremes) -> TensorRange:
        if extremes.batch_lows is not None:
            lows = np.stack(self._surviving(extremes.batch_lows))
            highs = np.stack(self._surviving(extremes.batch_highs))
            if np.isnan(lows).all(axis=0).any():
                raise CalibrationError(f"tensor '{name}' holds only NaN values; it has no range")
            if self.moving_average:
                low, high = self._mean(lows), self._mean(highs)
            else:
                low, high = np.fmin.reduce(lows, axis=0), np.fmax.reduce(highs, axis=0)
        else:
            low, high = extremes.low, extremes.high
            if np.isnan(low).any():
                raise CalibrationError(f"tensor '{name}' holds only NaN values; it has no range")
        if self.symmetric:
            absmax = np.fmax(np.abs(low), np.abs(high))
            low, high = -absmax, absmax
        return TensorRange(low=low, high=high, method=self.method)

    def _mean(self, values: np.ndarray) -> np.ndarray:
        """onnxruntime: numpy's float32 nanmean over batches; fixed: float64 mean, rounded once."""
        if self.compat == "onnxruntime":
            return np.nanmean(values, axis=0)
        finite = ~np.isnan(values)
        total = np.where(finite, values, 0).astype(np.float64).sum(axis=0)
        return arith.narrow(total / finite.sum(axis=0), values.dtype)

    # -- state ------------------------------------------------------------------

    def _state(self) -> dict:
        return {"tensors": {name: e.to_dict() for name, e in self._tensors.items()}}

    def _set_state(self, state: Mapping) -> None:
        self._tensors = {name: _Extremes.from_dict(e) for name, e in state["tensors"].items()}
