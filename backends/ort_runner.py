"""A calibration runner on onnxruntime: ``refquant.calibrate(..., runner=make_runner(model))``.

The model gets every calibrated tensor as an extra graph output, as
onnxruntime's own calibrators do, and runs with graph optimizations
disabled (their setting), so the activations are the ones they see.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import ModelProto, helper

from refquant.calibration.data import select_tensors
from refquant.errors import ModelError
from refquant.model import load_model

__all__ = ["make_runner"]


def _with_outputs(model: ModelProto, tensors: Sequence[str]) -> ModelProto:
    """A copy of ``model`` whose graph also outputs ``tensors``."""
    inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    types = {
        info.name: info.type.tensor_type.elem_type
        for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
        if info.type.HasField("tensor_type")
    }
    augmented = ModelProto()
    augmented.CopyFrom(model)
    present = {o.name for o in augmented.graph.output}
    for name in tensors:
        if name in present:
            continue
        if name not in types:
            raise ModelError(f"tensor '{name}' has no inferred type; onnxruntime cannot output it")
        augmented.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    return augmented


def make_runner(
    model: str | os.PathLike | bytes | ModelProto,
    tensors: Sequence[str] | None = None,
    *,
    op_types: Sequence[str] | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    intra_op_threads: int = 1,
):
    """``runner(feeds) -> {name: array}`` for the calibrated tensors (default: refquant's selection).

    ``intra_op_threads`` defaults to 1: ``refquant.calibrate`` runs the model
    on the next batch while it histograms the current one, so one inference
    thread and the histogramming share two cores; onnxruntime's default (0,
    one thread per core, spinning while idle) competes with the histogramming.
    Raise it where there are cores to spare.
    """
    import onnxruntime

    proto = load_model(model)
    names = list(tensors) if tensors is not None else select_tensors(proto, op_types)
    augmented = _with_outputs(proto, names)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    session = onnxruntime.InferenceSession(augmented.SerializeToString(), options, providers=list(providers))
    outputs = [o.name for o in session.get_outputs()]
    graph_inputs = {i.name for i in session.get_inputs()}

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = session.run(None, dict(feeds))
        # an output that is also an input may alias the feed (onnxruntime issue 21922): copy it
        return {name: (value.copy() if name in graph_inputs else value) for name, value in zip(outputs, values)}

    return run
