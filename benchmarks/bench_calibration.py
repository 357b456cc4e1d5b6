"""onnxruntime's calibrators vs refquant.calibrate: time, peak memory and ranges, per method.

    python benchmarks/bench_calibration.py [--batches 64] [--batch-size 8] [--methods entropy,percentile]

The model is a CNN with 22 activation tensors (Conv, Relu, Add, MaxPool,
GlobalAveragePool, Flatten, Gemm) on 3x64x64 images; the data, seeded normal
batches, come from a CalibrationDataReader on both sides. Each run is a fresh
subprocess, so "peak" is that process's maximum resident set size (the
Python interpreter and imports included, about 100 MB). refquant computes
the activations with onnxruntime (``backends.ort_runner``, the same
settings onnxruntime's calibrators use), so both sides see identical
activations and "ranges" reports whether every low/high is bit-identical.
refquant's histogram methods make two passes over the data (spec/calibration.md):
the model runs twice, and the reader's feeds are replayed from a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

CONFIGS = {
    "minmax": ("MinMax", {}),
    "entropy": ("Entropy", {}),
    "entropy-2048": ("Entropy", {"num_bins": 2048, "num_quantized_bins": 128}),
    "percentile": ("Percentile", {}),
    "distribution": ("Distribution", {}),
}


def cnn(seed=0, widths=(16, 32, 64), classes=10) -> onnx.ModelProto:
    """Three stages of conv-relu-conv-relu-add-maxpool, then global pooling and a classifier."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def weight(name, shape, scale):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def conv(x, cin, cout, name):
        w = weight(name + "_w", (cout, cin, 3, 3), (2.0 / (cin * 9)) ** 0.5)
        b = weight(name + "_b", (cout,), 0.1)
        nodes.append(helper.make_node("Conv", [x, w, b], [name], name=name, pads=[1, 1, 1, 1]))
        return name

    def relu(x, name):
        nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    x, cin = "input", 3
    for i, c in enumerate(widths):
        a = relu(conv(x, cin, c, f"conv{i}a"), f"relu{i}a")
        b = relu(conv(a, c, c, f"conv{i}b"), f"relu{i}b")
        nodes.append(helper.make_node("Add", [a, b], [f"add{i}"], name=f"add{i}"))
        nodes.append(
            helper.make_node("MaxPool", [f"add{i}"], [f"pool{i}"], name=f"pool{i}", kernel_shape=[2, 2], strides=[2, 2])
        )
        x, cin = f"pool{i}", c
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat"))
    nodes.append(
        helper.make_node(
            "Gemm",
            ["flat", weight("fc_w", (cin, classes), cin**-0.5), weight("fc_b", (classes,), 0.1)],
            ["logits"],
            name="fc",
        )
    )
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("input", T.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", T.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


class Reader:
    """CalibrationDataReader: seeded batches, generated one at a time."""

    def __init__(self, batches, batch_size):
        self.left, self.batch_size = batches, batch_size
        self.rng = np.random.default_rng(0)

    def get_next(self):
        if self.left == 0:
            return None
        self.left -= 1
        return {"input": self.rng.standard_normal((self.batch_size, 3, 64, 64)).astype(np.float32)}


def _as_list(value):
    return np.asarray(value, dtype=np.float32).ravel().tolist()


def worker(engine, config, model_path, batches, batch_size, out_path):
    """Calibrate once in this process; write seconds, peak RSS and ranges to ``out_path``."""
    method, options = CONFIGS[config]
    reader = Reader(batches, batch_size)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    if engine == "onnxruntime":
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

        with tempfile.TemporaryDirectory() as tmp:
            calibrator = create_calibrator(
                model_path, None, os.path.join(tmp, "augmented.onnx"), CalibrationMethod[method], extra_options=options
            )
            with contextlib.redirect_stdout(io.StringIO()):
                calibrator.collect_data(reader)
                computed = calibrator.compute_data()
        ranges = {name: (_as_list(d.lowest), _as_list(d.highest)) for name, d in computed.data.items()}
    else:
        import refquant
        from refquant.backends.ort_runner import make_runner

        result = refquant.calibrate(model_path, reader, method.lower(), runner=make_runner(model_path), **options)
        ranges = {name: (_as_list(r.low), _as_list(r.high)) for name, r in result.items()}
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_start
    with open(out_path, "w") as handle:
        json.dump({"seconds": seconds, "cpu": cpu, "peak_mb": usage.ru_maxrss / 1024, "ranges": ranges}, handle)


def run_worker(engine, config, model_path, args):
    """The best of ``args.repeat`` fresh runs (least wall time)."""
    results = []
    for _ in range(args.repeat):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            out = handle.name
        command = [sys.executable, __file__, "--worker", engine, "--config", config, "--model", model_path]
        command += ["--batches", str(args.batches), "--batch-size", str(args.batch_size), "--out", out]
        subprocess.run(command, check=True)
        with open(out) as handle:
            results.append(json.load(handle))
        os.unlink(out)
    return min(results, key=lambda r: r["seconds"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--methods", default=",".join(CONFIGS), help=f"comma-separated, of {','.join(CONFIGS)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine and method; the fastest is shown")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.config, args.model, args.batches, args.batch_size, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "cnn.onnx")
        onnx.save(cnn(), model_path)
        print(f"CNN, 22 activation tensors, {args.batches} batches of {args.batch_size}x3x64x64")
        print(f"{'':14} {'wall seconds':^27} {'CPU seconds':^20} {'peak RSS MB':^26}")
        columns = f"{'ort':>7} {'refquant':>9} {'speedup':>8} {'ort':>6} {'refquant':>9} {'ratio':>5}"
        print(f"{'method':14} {columns} {'ort':>6} {'refquant':>9} {'ratio':>9}  ranges")
        for config in args.methods.split(","):
            ort = run_worker("onnxruntime", config, model_path, args)
            ours = run_worker("refquant", config, model_path, args)
            same = ort["ranges"] == {name: ours["ranges"].get(name) for name in ort["ranges"]}
            print(
                f"{config:14} {ort['seconds']:7.2f} {ours['seconds']:9.2f} {ort['seconds'] / ours['seconds']:7.1f}x "
                f"{ort['cpu']:6.2f} {ours['cpu']:9.2f} {ort['cpu'] / ours['cpu']:4.1f}x "
                f"{ort['peak_mb']:6.0f} {ours['peak_mb']:9.0f} {ours['peak_mb'] / ort['peak_mb']:9.2f}  "
                f"{'identical' if same else 'DIFFERENT'} ({len(ort['ranges'])} tensors)"
            )


if __name__ == "__main__":
    main()
