"""Calibration: activation ranges as onnxruntime's calibrators compute them, streamed.

    refquant.calibrate(model, data, method="minmax" | "entropy" | "percentile" | "distribution", **options)

spec/calibration.md states each method's formulas, where refquant matches
onnxruntime bit for bit (the releases of refquant.ort_releases; activations
computed with onnxruntime's float arithmetic by default), and what
``compat="fixed"`` corrects;
spec/tables.md the calibration table formats.
"""

from .api import CALIBRATORS, calibrate, create_calibrator
from .core import CalibrationError, Calibrator, TensorRange
from .data import feed_source, select_tensors
from .histogram import (
    DistributionCalibrator,
    EntropyCalibrator,
    HistogramCalibrator,
    PercentileCalibrator,
    distribution_moments,
    entropy_threshold,
    percentile_threshold,
)
from .minmax import MinMaxCalibrator
from .tables import read_table, write_tables

__all__ = [
    "calibrate",
    "create_calibrator",
    "CALIBRATORS",
    "CalibrationError",
    "Calibrator",
    "TensorRange",
    "MinMaxCalibrator",
    "HistogramCalibrator",
    "EntropyCalibrator",
    "PercentileCalibrator",
    "DistributionCalibrator",
    "entropy_threshold",
    "percentile_threshold",
    "distribution_moments",
    "select_tensors",
    "feed_source",
    "read_table",
    "write_tables",
]
