"""``refquant.calibrate``: model + data -> {tensor: TensorRange}, like onnxruntime's calibrators."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from onnx import ModelProto

from ..model import load_model
from ..profiles import Profile
from .core import CalibrationError, Calibrator, TensorRange
from .data import Runner, activations_of, default_profile, default_runner, feed_source, select_tensors
from .histogram import DistributionCalibrator, EntropyCalibrator, PercentileCalibrator
from .minmax import MinMaxCalibrator

__all__ = ["calibrate", "create_calibrator", "CALIBRATORS"]

#: the calibrator class of each method name
CALIBRATORS: dict[str, type[Calibrator]] = {
    "minmax": MinMaxCalibrator,
    "entropy": EntropyCalibrator,
    "percentile": PercentileCalibrator,
    "distribution": DistributionCalibrator,
}

#: Progress callback: (pass number from 1, number of passes, batches done, total batches or None)
Progress = Callable[[int, int, int, "int | None"], None]


def create_calibrator(method: str = "minmax", **options) -> Calibrator:
    """The calibrator for ``method`` with onnxruntime's ``create_calibrator`` defaults.

    Options: minmax: symmetric, per_channel, moving_average, averaging_constant,
    max_intermediate_outputs; entropy: num_bins, num_quantized_bins;
    percentile: num_bins, percentile, symmetric; distribution: num_bins,
    scenario; all: compat ("onnxruntime" or "fixed").
    """
    klass = CALIBRATORS.get(str(method).lower())
    if klass is None:
        raise CalibrationError(f"unknown calibration method {method!r}; use one of {sorted(CALIBRATORS)}")
    known = list(inspect.signature(klass).parameters)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise CalibrationError(f"{method} takes the options {known}; unknown: {unknown}")
    return klass(**options)


def calibrate(
    model: str | os.PathLike | bytes | ModelProto,
    data,
    method: str = "minmax",
    *,
    runner: Runner | None = None,
    profile: str | Profile | None = None,
    op_types: Sequence[str] | None = None,
    tensors: Sequence[str] | None = None,
    progress: Progress | None = None,
    finite_data: bool = False,
    **options,
) -> dict[str, TensorRange]:
    """Calibrate ``model`` on ``data``: {tensor name: TensorRange}, in graph order.

    Reproduces ``create_calibrator(model, op_types, calibrate_method=method,
    extra_options=options).collect_data(reader)`` then ``compute_data()``
    (``compat="onnxruntime"``, the default) in memory O(num_bins x tensors).

    runner: ``runner(feeds) -> {name: array}`` returning at least the
    calibrated tensors. Default: the refquant interpreter's ``run_all`` under
    ``profile``; ``refquant.backends.ort_runner.make_runner`` builds one on onnxruntime.
    profile: the interpreter profile of the default runner. Default: with
    ``compat="onnxruntime"`` the ``"onnxruntime"`` profile, whose float kernels
    replay onnxruntime's (MLAS) arithmetic, so the activations, and the ranges,
    are onnxruntime's bit for bit where the profile replays the model's float
    ops (spec/calibration.md, "The forward pass"); with ``compat="fixed"`` the ``"spec"``
    profile (each float result the exact value rounded once).
    op_types: calibrate only the inputs and outputs of these node types;
    tensors: calibrate exactly these tensors instead.
    finite_data: refuse a batch whose float inputs hold NaN or infinity (CalibrationError naming the batch
    and the input), as ``refquant calibrate`` does: the tables it writes hold finite values only.
    By default NaN in a tensor is ignored and MinMax reports an infinite range (spec/calibration.md).
    """
    proto = load_model(model)
    calibrator = create_calibrator(method, **options)
    names = list(tensors) if tensors is not None else select_tensors(proto, op_types)
    if not names:
        raise CalibrationError("no tensor to calibrate (no float tensor among the selected nodes' inputs and outputs)")
    if runner is not None and profile is not None:
        raise CalibrationError("profile= chooses the default runner's arithmetic; it has no effect with runner=")
    if profile is None:
        profile = default_profile(options.get("compat", "onnxruntime"))
    run = runner if runner is not None else default_runner(proto, profile)
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in initializers]
    source = feed_source(data, inputs)
    with ThreadPoolExecutor(1, thread_name_prefix="refquant-runner") as worker:
        for pass_number, batches in enumerate(source.passes(calibrator.passes), 1):
            if pass_number > 1:
                calibrator.next_pass()
            elif finite_data:
                batches = _finite_batches(batches)
            for index, activations in enumerate(_prefetched(worker, run, batches, names), 1):
                calibrator.collect(activations)
                if progress is not None:
                    progress(pass_number, calibrator.passes, index, source.length)
    return calibrator.compute()


def _finite_batches(batches) -> Iterator[dict]:
    """The batches, each float input checked for NaN and infinity first (the first pass sees every batch)."""
    for index, feeds in enumerate(batches, 1):
        for name, value in feeds.items():
            array = np.asarray(value)
            if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
                continue
            wide = array.astype(np.float64)
            nan, inf = int(np.isnan(wide).sum()), int(np.isinf(wide).sum())
            if nan or inf:
                raise CalibrationError(
                    f"batch {index}, input '{name}': {nan} NaN and {inf} infinite value(s); calibration data "
                    "must be finite, or the tables would hold inf/nan ranges"
                )
        yield feeds


def _prefetched(worker: ThreadPoolExecutor, run: Runner, batches, names) -> Iterator[dict]:
    """The activations of each batch, the model running on the next batch meanwhile.

    The runner works in ``worker`` while the caller histograms: onnxruntime and
    numpy release the GIL, so the two overlap. One batch is in flight.
    """
    pending = None
    for index, feeds in enumerate(batches, 1):
        future = worker.submit(activations_of, run, feeds, names, index)
        if pending is not None:
            yield pending.result()
        pending = future
    if pending is not None:
        yield pending.result()
