"""numpy.histogram's counts over fixed uniform bins, batch by batch, and faster where provably equal.

numpy.histogram(x, n, range=(first, last)) puts x in bin i when
edges[i] <= x < edges[i + 1] (the last bin also holds x == last), the
edges being numpy's own float edges: it estimates i from
(x - first) / (last - first) * n and corrects the estimate by comparing x
with the edges. The count of each bin is thus a function of the values
alone, and adding the counts of batches gives the counts of all the data.

For float32 data without NaN, :class:`UniformBins` uses a cheaper estimate,
i0 = trunc(x * scale + offset), biased low so that i0 is i or i - 1, and one
correction, i = i0 + (x >= edges[i0 + 1]). Both i0 and the true bin are
non-decreasing in x, so "i0 is i or i - 1 for every x" holds as soon as it
holds at each edge and at the float32 just below each edge; that is checked
once per tensor (2n points), and the numpy path is taken where it fails.
"""

from __future__ import annotations

import numpy as np

from .core import CalibrationError

__all__ = ["UniformBins", "absolute_min"]

#: values per block of the fast path: small enough to stay in cache
BLOCK = 1 << 16


def _blocks(values: np.ndarray, absolute: bool, scratch: np.ndarray):
    """``values`` (or their absolute values) in cache-sized blocks."""
    for start in range(0, values.size, BLOCK):
        block = values[start : start + BLOCK]
        yield np.abs(block, out=scratch[: block.size]) if absolute else block


def absolute_min(values: np.ndarray):
    """min |x| of 1-D ``values``, without an array of |x| as large as ``values``."""
    scratch = np.empty(min(BLOCK, values.size), values.dtype)
    return min(block.min() for block in _blocks(values, True, scratch))


class UniformBins:
    """``num_bins`` bins over ``value_range`` (numpy.histogram's ``range``) for ``dtype`` data.

    ``absolute``: count |x| instead of x (the symmetric Percentile histogram).
    """

    def __init__(self, value_range, num_bins: int, dtype: np.dtype, *, nan_free: bool, absolute: bool = False):
        self.range = value_range
        self.num_bins = num_bins
        self.absolute = absolute
        try:
            self.edges = np.histogram_bin_edges(np.empty(0, dtype), num_bins, range=value_range)
        except ValueError as exc:  # e.g. float16: too many bins for the range
            raise CalibrationError(
                f"no {num_bins} {dtype} bins over [{value_range[0]}, {value_range[1]}]: {exc}"
            ) from None
        self.first, self.last = self.edges[0], self.edges[-1]
        self.fast = nan_free and self.edges.dtype == np.float32 and self._prepare_fast_path()

    def count(self, values: np.ndarray) -> np.ndarray:
        """Counts of ``values`` (1-D; |values| when ``absolute``) per bin, exactly numpy.histogram's."""
        if not self.fast:
            return np.histogram(np.abs(values) if self.absolute else values, self.num_bins, range=self.range)[0]
        counts = np.zeros(self.num_bins + 1, np.int64)
        magnitude = np.empty(BLOCK, np.float32)
        estimate = np.empty(BLOCK, np.float32)
        index = np.empty(BLOCK, np.intp)
        upper = np.empty(BLOCK, np.float32)
        above = np.empty(BLOCK, np.bool_)
        for block in _blocks(values, self.absolute, magnitude):
            size = block.size
            if block.min() < self.first or block.max() > self.last:
                raise CalibrationError(
                    f"a value lies outside [{self.first}, {self.last}], the extremes of pass 1; "
                    "both passes must see the same batches"
                )
            self._estimate(block, estimate[:size], index[:size])
            np.take(self._upper_edges, index[:size], out=upper[:size], mode="clip")
            np.greater_equal(block, upper[:size], out=above[:size])
            index[:size] += above[:size]  # values that belong one bin up
            counts += np.bincount(index[:size], minlength=self.num_bins + 1)
        counts[self.num_bins - 1] += counts[self.num_bins]  # the last bin is closed
        return counts[: self.num_bins]

    # -- the fast path --------------------------------------------------------

    def _estimate(self, x: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> np.ndarray:
        """trunc(x * scale + offset) in float32 arithmetic (> -1 on [first, last], so truncation is floor)."""
        np.multiply(x, self._scale, out=scratch)
        np.add(scratch, self._offset, out=scratch)
        np.copyto(out, scratch, casting="unsafe")
        return out

    def _prepare_fast_path(self) -> bool:
        edges, n = self.edges, self.num_bins
        if n > 1 << 20 or not (np.diff(edges) > 0).all():
            return False
        width = self.last - self.first
        # bias: a few float32 roundings of the estimate and of the edges, relative to the bin width
        relative = max(abs(float(self.first)), abs(float(self.last))) / float(width)
        bias = 16 * relative * n * 2.0**-24
        if bias > 0.25:
            return False
        self._scale = np.float32(n) / width
        self._offset = np.float32(-self.first * self._scale - np.float32(bias))
        self._upper_edges = np.append(edges[1:], np.float32(np.inf)).astype(np.float32)
        return self._verified()

    def _verified(self) -> bool:
        """i0 >= i - 1 at each inner edge e_i, i0 <= i - 1 just below it, i0 = 0 at the first edge.

        The last bin needs no bound: an estimate of n is counted in bin n - 1.
        """
        edges, n = self.edges, self.num_bins
        inner = edges[1:-1]
        bins = np.arange(1, n)
        at = self._estimate(inner, np.empty_like(inner), np.empty(inner.size, np.intp))
        below = np.nextafter(inner, np.float32(-np.inf))
        under = self._estimate(below, np.empty_like(below), np.empty(below.size, np.intp))
        lowest = self._estimate(edges[:1], np.empty(1, np.float32), np.empty(1, np.intp))
        return bool((at >= bins - 1).all() and (under <= bins - 1).all() and lowest[0] == 0)
