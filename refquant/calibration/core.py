"""What every calibrator shares: the result type, the error, option checks and state files.

A calibrator sees activations one batch at a time (``collect``), merges with
another calibrator that saw other batches (``merge``), and turns what it saw
into ranges (``compute``). Its state is a JSON document (``save``/``load``):
exact for float32 values and integer counts, and independent of the number
of batches except where a method says otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from ..errors import CalibrationError
from ..files import load_json

__all__ = ["CalibrationError", "TensorRange", "Calibrator", "COMPAT_MODES", "check_same_dtype", "encode_value", "decode_value"]

#: "onnxruntime": the numbers onnxruntime's calibrators give (every release in refquant.ort_releases:
#: calibrate.py did not change between them), activations included (the default runner replays
#: onnxruntime's float arithmetic); "fixed": its defects corrected, the spec's arithmetic (spec/calibration.md)
COMPAT_MODES = ("onnxruntime", "fixed")


def check_same_dtype(name: str, before: np.dtype, array: np.ndarray, batch: int) -> None:
    """A tensor keeps its dtype from batch to batch: ranges of two dtypes are not one range."""
    if array.dtype != before:
        raise CalibrationError(f"tensor '{name}' is {array.dtype} in batch {batch}, {before} before")


# ----------------------------------------------------------------------------
# exact JSON encoding of numpy values
# ----------------------------------------------------------------------------


def encode_value(value):
    """numpy array or scalar -> JSON-able dict that keeps dtype, shape and every bit.

    float32/float16 values widen exactly to Python floats; a numpy scalar
    (``shape`` null) stays distinct from a 0-d array (``shape`` []).
    """
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.name, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return {"dtype": value.dtype.name, "shape": None, "data": value.item()}
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode_value(data):
    """Inverse of :func:`encode_value`."""
    if data is None:
        return None
    try:
        dtype = np.dtype(data["dtype"])
        if data["shape"] is None:
            return dtype.type(data["data"])
        return np.asarray(data["data"], dtype=dtype).reshape(data["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"malformed value in a calibration document: {exc}") from None


# ----------------------------------------------------------------------------
# the result
# ----------------------------------------------------------------------------


@dataclass
class TensorRange:
    """A tensor's calibrated range and, where the method has them, its statistics.

    ``low``/``high`` keep onnxruntime's types: float32 arrays of shape (1,) (or
    (C,) per channel) for MinMax, float32 scalars for the histogram methods.
    ``hist``/``edges``: the histogram (counts, num_bins + 1 edges);
    ``avg``/``std``: Distribution's moments; ``method``: the method's name.
    """

    low: np.ndarray | np.generic
    high: np.ndarray | np.generic
    hist: np.ndarray | None = None
    edges: np.ndarray | None = None
    avg: np.ndarray | np.generic | None = None
    std: np.ndarray | np.generic | None = None
    method: str | None = None

    def to_dict(self) -> dict:
        """A JSON-able dict; ``TensorRange.from_dict(r.to_dict()) == r`` bit for bit."""
        out = {f.name: encode_value(getattr(self, f.name)) for f in fields(self) if f.name != "method"}
        out["method"] = self.method
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> TensorRange:
        if not isinstance(data, Mapping) or "low" not in data or "high" not in data:
            raise CalibrationError("a tensor range needs 'low' and 'high'")
        values = {f.name: decode_value(data.get(f.name)) for f in fields(cls) if f.name != "method"}
        return cls(**values, method=data.get("method"))

    def __eq__(self, other) -> bool:
        if not isinstance(other, TensorRange):
            return NotImplemented
        return self.method == other.method and all(
            _same_value(getattr(self, f.name), getattr(other, f.name)) for f in fields(self) if f.name != "method"
        )


def _same_value(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if type(a) is not type(b) or a.dtype != b.dtype or np.shape(a) != np.shape(b):
        return False
    return bool(np.array_equal(a, b, equal_nan=True))


# ----------------------------------------------------------------------------
# the calibrator protocol
# ----------------------------------------------------------------------------


class Calibrator:
    """Base class: option handling, state documents, merge checks.

    Subclasses define ``method``, ``passes``, ``_options()`` (the constructor's
    keyword arguments), ``collect``, ``compute``, ``_state()`` / ``_set_state()``
    and ``_merge_state(other)``.
    """

    method: str = ""
    #: how many passes over the data ``compute`` needs (``next_pass`` between them)
    passes: int = 1

    def __init__(self, *, compat: str = "onnxruntime"):
        if compat not in COMPAT_MODES:
            raise CalibrationError(f"compat must be one of {COMPAT_MODES}, got {compat!r}")
        self.compat = compat
        self.pass_index = 0
        self.batches = 0

    # -- options --------------------------------------------------------------

    def _options(self) -> dict:
        return {"compat": self.compat}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({opts})"

    # -- passes ---------------------------------------------------------------

    def next_pass(self) -> None:
        """Finish the current pass over the data and start the next one."""
        if self.pass_index + 1 >= self.passes:
            raise CalibrationError(
                f"{self.method} makes {self.passes} pass(es) over the data; there is no pass {self.pass_index + 2}"
            )
        self._finish_pass()
        self.pass_index += 1

    def _finish_pass(self) -> None:
        raise NotImplementedError

    def _require_done(self) -> None:
        if self.pass_index + 1 < self.passes:
            raise CalibrationError(
                f"{self.method} needs {self.passes} passes over the same data; call next_pass() and "
                f"collect every batch again before compute() (refquant.calibrate does this for you)"
            )
        if self.batches == 0:
            raise CalibrationError("no data was collected (the reader returned no batch)")

    # -- merging --------------------------------------------------------------

    def merge(self, other: Calibrator) -> Calibrator:
        """Fold in what ``other`` saw (other batches, same options, same pass); returns self."""
        if type(other) is not type(self) or other._options() != self._options():
            raise CalibrationError(f"cannot merge {other!r} into {self!r}: the methods or options differ")
        if other.pass_index != self.pass_index:
            raise CalibrationError(
                f"cannot merge a calibrator in pass {other.pass_index + 1} into one in pass {self.pass_index + 1}"
            )
        self._merge_state(other)
        self.batches += other.batches
        return self

    def _merge_state(self, other: Calibrator) -> None:
        raise NotImplementedError

    # -- state documents ------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume or merge this calibrator, as a JSON-able dict."""
        return {
            "format": "refquant.calibration/1",
            "calibrator": type(self).__name__,
            "options": self._options(),
            "pass_index": self.pass_index,
            "batches": self.batches,
            "state": self._state(),
        }

    @classmethod
    def from_state_dict(cls, document: Mapping) -> Calibrator:
        from . import CALIBRATORS  # the registry of classes by name

        if not isinstance(document, Mapping) or document.get("format") != "refquant.calibration/1":
            raise CalibrationError("not a refquant calibration state (missing 'format': 'refquant.calibration/1')")
        klass = {c.__name__: c for c in CALIBRATORS.values()}.get(document.get("calibrator"))
        if klass is None or (cls is not Calibrator and klass is not cls):
            raise CalibrationError(f"the state is for {document.get('calibrator')!r}, not {cls.__name__}")
        try:
            calibrator = klass(**document["options"])
            calibrator.pass_index = int(document["pass_index"])
            calibrator.batches = int(document["batches"])
            calibrator._set_state(document["state"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CalibrationError(f"malformed {klass.__name__} state: {type(exc).__name__}: {exc}") from None
        return calibrator

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as handle:
            json.dump(self.state_dict(), handle)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibrator:
        return cls.from_state_dict(load_json(path, "calibration state", CalibrationError))

    def _state(self) -> dict:
        raise NotImplementedError

    def _set_state(self, state: Mapping) -> None:
        raise NotImplementedError

    # -- shared checks --------------------------------------------------------

    @staticmethod
    def _float_tensor(name: str, value) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype not in (np.float16, np.float32):
            raise CalibrationError(
                f"tensor '{name}' has dtype {array.dtype}; calibration takes float32 or float16 tensors"
            )
        return array
