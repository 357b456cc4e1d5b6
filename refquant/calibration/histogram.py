"""Histogram calibration: Entropy, Percentile and Distribution.

onnxruntime histograms every stored batch at once: one histogram over
(-t, t), t = max|x| over all the data (or, for symmetric Percentile, of |x|
over [min|x|, max|x|]). Those edges are known only after the last batch, so
refquant makes two passes over the data and keeps only counts:

    pass 1: min, max (and min |x|) of each tensor    -> the range and edges numpy would use
    pass 2: counts += numpy's counts of the batch     -> the counts of one histogram of all batches

Binning is elementwise, so the summed counts equal onnxruntime's single
histogram; memory is O(num_bins) per tensor whatever the number of batches.
The thresholds then follow onnxruntime's formulas (compat="onnxruntime") or
their corrected versions (compat="fixed"); spec/calibration.md gives both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import arith
from .binning import UniformBins, absolute_min
from .core import CalibrationError, Calibrator, TensorRange, check_same_dtype, decode_value, encode_value

__all__ = [
    "HistogramCalibrator",
    "EntropyCalibrator",
    "PercentileCalibrator",
    "DistributionCalibrator",
    "entropy_threshold",
    "percentile_threshold",
    "distribution_moments",
]

#: smoothing of empty bins in the KL search (onnxruntime's and MXNet's 0.0001)
SMOOTHING_EPS = 0.0001


# ----------------------------------------------------------------------------
# per-tensor observations (pass 1) and counts (pass 2)
# ----------------------------------------------------------------------------


def _extreme(pick, current, new):
    """``pick(current, new)`` (Python's min or max), where None means nothing seen yet."""
    if current is None or new is None:
        return new if current is None else current
    return pick(current, new)


class _Observed:
    """A tensor's extremes over pass 1; NaN is ignored and counted."""

    def __init__(self, dtype: np.dtype, absolute: bool):
        self.dtype = dtype
        self.absolute = absolute
        self.count = 0  # values that are not NaN
        self.nans = 0
        self.low = self.high = self.abs_low = None  # numpy scalars of dtype

    def add(self, values: np.ndarray) -> None:
        low, high = values.min(), values.max()
        if np.isnan(low) or np.isnan(high):  # rare: count NaN and ignore it
            nans = int(np.count_nonzero(np.isnan(values)))
            self.nans += nans
            if nans == values.size:
                return
            low, high = np.fmin.reduce(values), np.fmax.reduce(values)
            values = values[~np.isnan(values)]
        self.count += values.size
        self.low, self.high = _extreme(min, self.low, low), _extreme(max, self.high, high)
        if self.absolute:
            self.abs_low = _extreme(min, self.abs_low, absolute_min(values))

    def merge(self, other: _Observed) -> None:
        self.count += other.count
        self.nans += other.nans
        self.low, self.high = _extreme(min, self.low, other.low), _extreme(max, self.high, other.high)
        self.abs_low = _extreme(min, self.abs_low, other.abs_low)

    def histogram_range(self, name: str):
        """The ``range`` argument onnxruntime's single numpy.histogram call would get."""
        if self.count == 0:
            what = f"only NaN values ({self.nans})" if self.nans else "no values"
            raise CalibrationError(f"tensor '{name}' holds {what}; it has no histogram (leave it out with tensors=)")
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise CalibrationError(
                f"tensor '{name}' has infinite values (range [{self.low}, {self.high}]); histogram methods "
                "need finite data (MinMax reports infinite ranges)"
            )
        if self.absolute:
            return self.abs_low, max(np.abs(self.low), np.abs(self.high))
        threshold = np.asarray(max(np.abs(self.low), np.abs(self.high)), dtype=self.dtype)
        return -threshold, threshold

    def to_dict(self) -> dict:
        return {
            "dtype": self.dtype.name,
            "absolute": self.absolute,
            "count": self.count,
            "nans": self.nans,
            "low": encode_value(self.low),
            "high": encode_value(self.high),
            "abs_low": encode_value(self.abs_low),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> _Observed:
        observed = cls(np.dtype(data["dtype"]), bool(data["absolute"]))
        observed.count, observed.nans = int(data["count"]), int(data["nans"])
        observed.low, observed.high = decode_value(data["low"]), decode_value(data["high"])
        observed.abs_low = decode_value(data["abs_low"])
        return observed


# ----------------------------------------------------------------------------
# the calibrators
# ----------------------------------------------------------------------------


class HistogramCalibrator(Calibrator):
    """Two passes: extremes, then counts over edges fixed by the extremes.

    Sharded data: collect pass 1 on each shard, ``merge`` them, call
    ``next_pass`` on the merged calibrator, give each shard a ``fork()`` of it
    for pass 2, and ``merge`` the forks back.
    """

    passes = 2

    def __init__(self, *, num_bins: int, compat: str = "onnxruntime"):
        super().__init__(compat=compat)
        if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
            raise CalibrationError(f"num_bins must be a positive integer, got {num_bins!r}")
        self.num_bins = int(num_bins)
        self._observed: dict[str, _Observed] = {}
        self._bins: dict[str, UniformBins] = {}
        self._counts: dict[str, np.ndarray] = {}

    def _options(self) -> dict:
        return {"num_bins": self.num_bins, "compat": self.compat}

    @property
    def _absolute(self) -> bool:
        """Whether the histogram is of |x| (symmetric Percentile)."""
        return False

    # -- collecting -------------------------------------------------------------

    def collect(self, activations: Mapping[str, np.ndarray]) -> None:
        """Pass 1: extremes of each tensor; pass 2: histogram counts."""
        known = self._observed if self.pass_index == 0 else self._counts
        if known and set(activations) != set(known):
            missing, extra = sorted(set(known) - set(activations)), sorted(set(activations) - set(known))
            raise CalibrationError(
                f"batch {self.batches + 1} of pass {self.pass_index + 1} changes the tensors: "
                f"missing {missing}, new {extra}"
            )
        for name, value in activations.items():
            array = self._float_tensor(name, value)
            if self.pass_index == 0:
                self._observe(name, array)
            else:
                self._count(name, array)
        self.batches += 1

    def _observe(self, name: str, array: np.ndarray) -> None:
        observed = self._observed.get(name)
        if observed is None:
            observed = self._observed[name] = _Observed(array.dtype, self._absolute)
        else:
            check_same_dtype(name, observed.dtype, array, self.batches + 1)
        if array.size:
            observed.add(array.reshape(-1))

    def _count(self, name: str, array: np.ndarray) -> None:
        observed = self._observed[name]
        if array.dtype != observed.dtype:
            raise CalibrationError(f"tensor '{name}' is {array.dtype} in pass 2, {observed.dtype} in pass 1")
        self._counts[name] += self._bins[name].count(array.reshape(-1))

    def _finish_pass(self) -> None:
        if self.batches == 0:
            raise CalibrationError("no data was collected in pass 1 (the reader returned no batch)")
        self._bins = {name: self._layout(name, observed) for name, observed in self._observed.items()}
        self._counts = {name: np.zeros(self.num_bins, np.int64) for name in self._observed}
        self.batches = 0

    def _layout(self, name: str, observed: _Observed) -> UniformBins:
        value_range = observed.histogram_range(name)
        try:
            return UniformBins(
                value_range, self.num_bins, observed.dtype, nan_free=observed.nans == 0, absolute=self._absolute
            )
        except CalibrationError as err:
            raise CalibrationError(f"tensor '{name}': {err} (onnxruntime fails there too)") from None

    def fork(self) -> HistogramCalibrator:
        """An empty calibrator in pass 2 with this one's edges, for a shard of pass 2."""
        if self.pass_index != 1:
            raise CalibrationError("fork() gives shards the edges of pass 2; call next_pass() first")
        twin = type(self)(**self._options())
        twin.pass_index = 1
        twin._set_state(self._state())
        twin._counts = {name: np.zeros_like(c) for name, c in self._counts.items()}
        return twin

    def _merge_state(self, other: HistogramCalibrator) -> None:
        if self.pass_index == 0:
            for name, observed in other._observed.items():
                mine = self._observed.get(name)
                if mine is None:
                    self._observed[name] = _Observed.from_dict(observed.to_dict())
                elif mine.dtype != observed.dtype:
                    raise CalibrationError(
                        f"tensor '{name}' is {observed.dtype} in one state and {mine.dtype} in the other"
                    )
                else:
                    mine.merge(observed)
            return
        if set(other._counts) != set(self._counts) or any(
            other._observed[name].to_dict() != self._observed[name].to_dict() for name in self._counts
        ):
            raise CalibrationError("pass-2 states have different edges; give every shard a fork() of one calibrator")
        for name, counts in other._counts.items():
            self._counts[name] += counts

    # -- computing --------------------------------------------------------------

    def edges(self, name: str) -> np.ndarray:
        """Tensor ``name``'s num_bins + 1 edges, as numpy.histogram builds them."""
        return self._bins[name].edges.copy()

    def compute(self) -> dict[str, TensorRange]:
        """{tensor: TensorRange} in the order the tensors were first seen."""
        self._require_done()
        ranges = {}
        for name, counts in self._counts.items():
            observed = self._observed[name]
            if int(counts.sum()) != observed.count:
                raise CalibrationError(
                    f"tensor '{name}': pass 2 histogrammed {int(counts.sum())} values, pass 1 saw {observed.count}; "
                    "both passes must see the same batches"
                )
            ranges[name] = self._result(counts.copy(), self.edges(name), observed.low, observed.high)
        return ranges

    def _result(self, hist, edges, low, high) -> TensorRange:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "observed": {name: o.to_dict() for name, o in self._observed.items()},
            "counts": {name: c.tolist() for name, c in self._counts.items()} if self.pass_index else None,
        }

    def _set_state(self, state: Mapping) -> None:
        self._observed = {name: _Observed.from_dict(o) for name, o in state["observed"].items()}
        if self.pass_index:
            self._bins = {name: self._layout(name, o) for name, o in self._observed.items()}
            self._counts = {name: np.asarray(c, dtype=np.int64) for name, c in state["counts"].items()}


class EntropyCalibrator(HistogramCalibrator):
    """The threshold pair whose clipped histogram has the least KL divergence from the data's.

    onnxruntime defaults: num_bins 128, num_quantized_bins 128 (one candidate:
    the result is then the [min, max] range).
    """

    method = "entropy"

    def __init__(self, *, num_bins: int = 128, num_quantized_bins: int = 128, compat: str = "onnxruntime"):
        super().__init__(num_bins=num_bins, compat=compat)
        if not isinstance(num_quantized_bins, (int, np.integer)) or not 1 <= num_quantized_bins <= self.num_bins:
            raise CalibrationError(
                f"num_quantized_bins must be an integer in [1, num_bins={self.num_bins}], got {num_quantized_bins!r}"
            )
        self.num_quantized_bins = int(num_quantized_bins)

    def _options(self) -> dict:
        return {"num_bins": self.num_bins, "num_quantized_bins": self.num_quantized_bins, "compat": self.compat}

    def _result(self, hist, edges, low, high) -> TensorRange:
        lo, hi = entropy_threshold(hist, edges, low, high, self.num_quantized_bins, compat=self.compat)
        return TensorRange(low=lo, high=hi, hist=hist, edges=edges, method=self.method)


class PercentileCalibrator(HistogramCalibrator):
    """The range holding ``percentile`` percent of the values.

    symmetric: a histogram of |x| and +-(the percentile of |x|); otherwise the
    (100 - p) / 2 and (100 + p) / 2 percentiles of x. onnxruntime defaults:
    num_bins 2048, percentile 99.999, symmetric True.
    """

    method = "percentile"

    def __init__(
        self,
        *,
        num_bins: int = 2048,
        percentile: float = 99.999,
        symmetric: bool = True,
        compat: str = "onnxruntime",
    ):
        super().__init__(num_bins=num_bins, compat=compat)
        if not isinstance(percentile, (int, float, np.number)) or not 0 <= percentile <= 100:
            raise CalibrationError(f"percentile must be a number in [0, 100], got {percentile!r}")
        self.percentile = float(percentile)
        self.symmetric = bool(symmetric)

    def _options(self) -> dict:
        return {
            "num_bins": self.num_bins,
            "percentile": self.percentile,
            "symmetric": self.symmetric,
            "compat": self.compat,
        }

    @property
    def _absolute(self) -> bool:
        return self.symmetric

    def _result(self, hist, edges, low, high) -> TensorRange:
        lo, hi = percentile_threshold(
            hist, edges, low, high, self.percentile, symmetric=self.symmetric, compat=self.compat
        )
        return TensorRange(low=lo, high=hi, hist=hist, edges=edges, method=self.method)


class DistributionCalibrator(HistogramCalibrator):
    """Mean and standard deviation of the values (for float8 scales); range = the histogram's span.

    scenario "same": moments of the bin centres c; "p3": of sign(c) * |c|^(1/3).
    onnxruntime defaults: num_bins 2048 (at least 512), scenario "same".
    """

    method = "distribution"

    def __init__(self, *, num_bins: int = 2048, scenario: str = "same", compat: str = "onnxruntime"):
        super().__init__(num_bins=num_bins, compat=compat)
        if self.num_bins < 512:
            raise CalibrationError(f"Distribution needs num_bins >= 512, got {self.num_bins}")
        if scenario not in ("same", "p3"):
            raise CalibrationError(f"scenario must be 'same' or 'p3', got {scenario!r}")
        self.scenario = scenario

    def _options(self) -> dict:
        return {"num_bins": self.num_bins, "scenario": self.scenario, "compat": self.compat}

    def _result(self, hist, edges, low, high) -> TensorRange:
        avg, std = distribution_moments(hist, edges, power=1.0 if self.scenario == "same" else 1.0 / 3.0)
        return TensorRange(
            low=edges.min(), high=edges.max(), hist=hist, edges=edges, avg=avg, std=std, method=self.method
        )


# ----------------------------------------------------------------------------
# thresholds from a histogram
# ----------------------------------------------------------------------------


def _clip(low, high, observed_low, observed_high):
    """onnxruntime clips each threshold to the observed extreme (keeping the extreme's type)."""
    if low < observed_low:
        low = observed_low
    if high > observed_high:
        high = observed_high
    return low, high


def percentile_threshold(hist, edges, low, high, percentile: float, *, symmetric: bool, compat: str = "onnxruntime"):
    """(low, high) holding ``percentile`` percent of the histogram, clipped to [low, high].

    onnxruntime: cdf = cumsum(hist / total), i = searchsorted(cdf, p / 100) and
    the threshold is edges[i], the lower edge of the bin where the cdf reaches
    p (values in that bin are clipped). fixed: an upper bound takes the upper
    edge edges[i + 1], with i from the integer cumulative counts.
    """
    dtype = edges.dtype
    total = hist.sum()
    if compat == "onnxruntime":
        cdf = np.cumsum(hist / total)

        def bound(fraction: float, upper: bool):
            return edges[np.searchsorted(cdf, fraction)]

    else:
        cumulative = np.cumsum(hist)

        def bound(fraction: float, upper: bool):
            index = min(int(np.searchsorted(cumulative, fraction * total)), hist.size - 1)
            return edges[index + 1] if upper else edges[index]

    if symmetric:
        edge = np.array(bound(percentile / 100.0, True), dtype=dtype)
        bounds = -edge, edge
    else:
        cut = (100.0 - percentile) / 200.0
        bounds = np.array(bound(cut, False), dtype=dtype), np.array(bound(1.0 - cut, True), dtype=dtype)
    if compat != "onnxruntime":  # onnxruntime's bounds are 0-d arrays or scalars by accident
        bounds = tuple(dtype.type(b) for b in bounds)
    return _clip(*bounds, low, high)


def _candidates(num_bins: int, num_quantized_bins: int):
    """(start, end) bin slices tried by the KL search, centred on bin num_bins // 2."""
    zero = num_bins // 2
    for i in range(num_quantized_bins // 2, zero + 1):
        yield zero - i, min(zero + i + 1, num_bins)


def entropy_threshold(hist, edges, low, high, num_quantized_bins: int, *, compat: str = "onnxruntime"):
    """The (edges[start], edges[end]) with the least KL(p || q), clipped to [low, high].

    p: hist[start:end] with the mass outside added to its first and last bins;
    q: hist[start:end] merged into num_quantized_bins groups and spread back
    over p's non-zero bins; both smoothed (eps 1e-4). compat="onnxruntime"
    follows onnxruntime's arithmetic (int64 q, float32 KL); "fixed" the
    reference algorithm (float q, zero where p is, float64 KL).
    """
    divergence = _kl_onnxruntime if compat == "onnxruntime" else _kl_reference
    best, best_kl = None, np.inf
    with np.errstate(all="ignore"):
        for start, end in _candidates(hist.size, num_quantized_bins):
            p = hist[start:end].copy()
            p[0] += hist[:start].sum()
            p[-1] += hist[end:].sum()
            kl = divergence(p, hist[start:end], num_quantized_bins)
            if compat == "onnxruntime":
                kl = float(np.asarray(kl, dtype=edges.dtype))  # onnxruntime stores it in the edges' type
            if best is None or kl < best_kl:
                best, best_kl = (start, end), kl
    start, end = best
    return _clip(edges[start], edges[end], low, high)


def _group_sums(values: np.ndarray, num_groups: int) -> tuple[np.ndarray, int]:
    """Sums over num_groups groups of len // num_groups values; the remainder joins the last group."""
    width = values.size // num_groups
    sums = values[: num_groups * width].reshape(num_groups, width).sum(axis=1)
    sums[-1] += values[num_groups * width :].sum()
    return sums, width


def _smooth_float32(p: np.ndarray):
    """onnxruntime's smoothing: zeros become eps, the non-zeros give up eps * zeros / non-zeros."""
    is_zero = (p == 0).astype(np.float32)
    is_nonzero = (p != 0).astype(np.float32)
    zeros = is_zero.sum()
    nonzeros = p.size - zeros
    if not nonzeros:
        return None
    eps1 = SMOOTHING_EPS * float(zeros) / float(nonzeros)
    smoothed = p.astype(np.float32)
    smoothed += SMOOTHING_EPS * is_zero + (-eps1) * is_nonzero
    return smoothed


def _kl_onnxruntime(p: np.ndarray, sliced: np.ndarray, num_quantized_bins: int):
    """KL(p || q) as onnxruntime computes it: q truncated to int64, tail bins 0, float32 sums."""
    quantized, width = _group_sums(sliced, num_quantized_bins)
    nonzero = (p[: num_quantized_bins * width] != 0).reshape(num_quantized_bins, width).sum(axis=1)
    q = np.zeros(p.size, np.int64)
    q[: num_quantized_bins * width] = np.repeat(np.where(nonzero > 0, quantized // np.maximum(nonzero, 1), 0), width)
    p, q = _smooth_float32(p), _smooth_float32(q)
    if p is None or q is None:
        return np.inf
    pk = p / np.sum(p)
    qk = q / np.sum(q)
    return np.sum(pk * np.log(pk / qk))


def _smooth_float64(p: np.ndarray):
    zero = p == 0
    zeros = int(zero.sum())
    if zeros == p.size:
        return None
    return np.where(zero, SMOOTHING_EPS, p - SMOOTHING_EPS * zeros / (p.size - zeros))


def _kl_reference(p: np.ndarray, sliced: np.ndarray, num_quantized_bins: int):
    """KL(p || q) of the published algorithm: float q over p's non-zero bins, float64 throughout."""
    groups = np.minimum(np.arange(p.size) // (p.size // num_quantized_bins), num_quantized_bins - 1)
    nonzero = p != 0
    quantized = np.bincount(groups, weights=sliced.astype(np.float64), minlength=num_quantized_bins)
    norm = np.bincount(groups, weights=nonzero, minlength=num_quantized_bins)
    q = np.where(nonzero, quantized[groups] / np.maximum(norm[groups], 1), 0.0)
    p, q = _smooth_float64(p.astype(np.float64)), _smooth_float64(q)
    if p is None or q is None:
        return np.inf
    pk, qk = p / p.sum(), q / q.sum()
    return float(np.sum(pk * np.log(pk / qk)))


def distribution_moments(hist, edges, *, power: float = 1.0):
    """(avg, std) of the bin centres c (power 1) or of sign(c) |c|^power, weighted by the counts.

    Sums in float64 (counts times float32 centres), results in the edges' type:
    avg = sum(h c) / sum(h), std = sqrt(sum(h c^2) / sum(h) - avg^2).
    """
    centres = (edges[:-1] + edges[1:]) * 0.5
    with np.errstate(all="ignore"):
        if power != 1:
            sign = np.abs(centres) / centres
            sign[~np.isfinite(sign)] = 1
            centres = np.abs(centres) ** power * sign
        total = hist.sum()
        avg = (hist * centres).sum() / total
        std = ((hist * centres**2).sum() / total - avg**2) ** 0.5
    return arith.narrow(np.asarray(avg), edges.dtype), arith.narrow(np.asarray(std), edges.dtype)
